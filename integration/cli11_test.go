package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"golang.org/x/sys/unix"
)

// runBare runs the binary with exactly args (no --home put first) and
// extra environment.
func runBare(t *testing.T, vars []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(recallBin, args...)
	cmd.Env = append(os.Environ(), vars...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run recall %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

func TestGlobalFlagsAfterCommand(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "f"), []byte("after the command"), 0o644)
	target := filepath.Join(t.TempDir(), "out")
	for _, args := range [][]string{
		{"init", "--home", home},
		{"backup", src, "--home", home, "--source", "s"},
		{"backup", "--home=" + home, src, "--source=s"},
		{"points", "--json", "--home", home},
		{"restore", "latest", "--target", target, "--home", home},
		{"backup", "--home", home, "--source", "s", "--", src},
	} {
		if r := runBare(t, []string{"RECALL_HOME="}, args...); r.code != 0 {
			t.Fatalf("recall %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	var pts []struct{ ID string }
	e := &env{t: t, home: home}
	if err := json.Unmarshal([]byte(e.ok("points", "--json")), &pts); err != nil || len(pts) != 3 {
		t.Fatalf("points: %v, %d points, want 3", err, len(pts))
	}
	if b, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(b) != "after the command" {
		t.Errorf("restored file: %q, %v", b, err)
	}
	// After "--" a flag is an argument: this backs up a path named --home.
	if r := runBare(t, nil, "backup", "--home", home, "--", "--home"); r.code == 0 || !strings.Contains(r.stderr, "--home") {
		t.Errorf("backup -- --home: exit %d, %s; want a failure naming the path", r.code, r.stderr)
	}
}

// exceptConfig drops the config and its copy from a storeFiles listing.
func exceptConfig(listing string) string {
	var keep []string
	for _, l := range strings.Split(listing, "\n") {
		if p, _, _ := strings.Cut(l, " "); filepath.Base(p) != "config" && filepath.Base(p) != "config.copy" {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func TestKeyPasswd(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	data := writeRandom(t, filepath.Join(src, "f"), 1, 2_000_000)
	e.vars = []string{"RECALL_PASSWORD=old passphrase"}
	e.ok("init", "--encrypt")
	e.ok("backup", "--source", "s", src)
	before := exceptConfig(storeFiles(t, e.home))
	newFile := filepath.Join(t.TempDir(), "new")
	os.WriteFile(newFile, []byte("new passphrase\n"), 0o600)

	var out struct {
		ID         string
		Store      string
		Encryption struct {
			Cipher string
			KDF    string `json:"kdf"`
		}
	}
	if err := json.Unmarshal([]byte(e.ok("key", "passwd", "--new-password-file", newFile, "--json")), &out); err != nil || out.ID == "" || out.Encryption.KDF != "argon2id" {
		t.Errorf("key passwd --json: %+v, %v", out, err)
	}
	if r := e.run("points"); r.code != 5 || !strings.Contains(r.stderr, "wrong passphrase") {
		t.Errorf("old passphrase after key passwd: exit %d, %s; want 5", r.code, r.stderr)
	}
	e.vars = []string{"RECALL_PASSWORD_FILE=" + newFile}
	e.ok("verify", "--read-data")
	dst := filepath.Join(t.TempDir(), "out")
	e.ok("restore", "latest", "--target", dst)
	if got := mustRead(t, filepath.Join(dst, "f")); !bytes.Equal(got, data) {
		t.Error("restored file differs after key passwd")
	}
	if after := exceptConfig(storeFiles(t, e.home)); after != before {
		t.Error("key passwd changed store files other than the config")
	}
	// A new backup works and keeps the new passphrase.
	e.ok("backup", "--source", "s", src)
	e.vars = []string{"RECALL_PASSWORD=old passphrase"}
	if r := e.run("points"); r.code != 5 {
		t.Errorf("old passphrase after a backup: exit %d, %s; want 5", r.code, r.stderr)
	}

	// A plaintext store has no passphrase to change.
	p := newEnv(t)
	p.ok("init")
	if r := p.run("key", "passwd", "--new-password-file", newFile); r.code != 1 || !strings.Contains(r.stderr, "not encrypted") {
		t.Errorf("key passwd on a plaintext store: exit %d, %s", r.code, r.stderr)
	}
}

func TestPasswordSources(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "f"), []byte("x"), 0o644)
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("pw\n"), 0o600)
	e.ok("init", "--encrypt", "--password-command", "echo pw")
	for _, tc := range []struct {
		vars []string
		args []string
	}{
		{nil, []string{"backup", "--source", "s", src, "--password-command", "printf 'pw\\nnot this'"}},
		{[]string{"RECALL_PASSWORD_COMMAND=echo pw"}, []string{"points"}},
		{[]string{"RECALL_PASSWORD_FILE=" + pwFile}, []string{"points"}},
		{[]string{"RECALL_PASSWORD=wrong"}, []string{"points", "--password-file", pwFile}},
	} {
		e.vars = tc.vars
		e.ok(tc.args...)
	}
	e.vars = nil
	if r := e.run("points", "--password-command", "exit 7"); r.code != 5 || !strings.Contains(r.stderr, `password command "exit 7" failed`) {
		t.Errorf("failing password command: exit %d, %s", r.code, r.stderr)
	}
	for _, env := range [][]string{nil, {"RECALL_PASSWORD="}} {
		e.vars = env
		r := e.run("points")
		if r.code != 5 {
			t.Errorf("no passphrase: exit %d, want 5", r.code)
		}
		for _, way := range []string{"RECALL_PASSWORD", "--password-file", "RECALL_PASSWORD_FILE", "--password-command", "RECALL_PASSWORD_COMMAND", "terminal"} {
			if !strings.Contains(r.stderr, way) {
				t.Errorf("no passphrase: the message does not name %s: %s", way, r.stderr)
			}
		}
	}
	// init --encrypt without a passphrase: on the home's store it is
	// refused as existing, not for the passphrase; on a new home it
	// asks for the new store's passphrase, not an encrypted store's.
	e.vars = nil
	if r := e.run("init", "--encrypt"); r.code != 1 || !strings.Contains(r.stderr, "store already exists") {
		t.Errorf("init --encrypt on the store, no passphrase: exit %d, %s", r.code, r.stderr)
	}
	n := newEnv(t)
	if r := n.run("init", "--encrypt"); r.code != 5 || !strings.Contains(r.stderr, "init --encrypt needs the new store's passphrase") {
		t.Errorf("init --encrypt, no passphrase: exit %d, %s", r.code, r.stderr)
	}
	// A plaintext store runs no password command.
	p := newEnv(t)
	p.ok("init")
	marker := filepath.Join(t.TempDir(), "ran")
	p.ok("points", "--password-command", "touch "+marker+"; echo pw")
	if _, err := os.Stat(marker); err == nil {
		t.Error("the password command ran for a plaintext store")
	}
}

// terminal is a pseudo-terminal a command runs on as its controlling
// terminal; what the command writes to it is collected.
type terminal struct {
	t    *testing.T
	ptmx *os.File
	mu   sync.Mutex
	seen bytes.Buffer
	more chan struct{} // a token after each read
}

func newTerminal(t *testing.T) (*terminal, *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		skip(t, "no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	term := &terminal{t: t, ptmx: ptmx, more: make(chan struct{}, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			term.mu.Lock()
			term.seen.Write(buf[:n])
			term.mu.Unlock()
			select {
			case term.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return term, tty
}

// start runs recall ARGS with the terminal as its stdin and controlling
// terminal; stdout and stderr are collected apart.
func (term *terminal) start(e *env, tty *os.File, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	term.t.Helper()
	cmd := e.command(args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		term.t.Fatal(err)
	}
	return cmd, &out, &errb
}

// answer waits for prompt on the terminal, then types line.
func (term *terminal) answer(prompt, line string) {
	term.t.Helper()
	term.wait(prompt)
	if _, err := term.ptmx.WriteString(line + "\n"); err != nil {
		term.t.Fatal(err)
	}
}

// echoOn reports whether the terminal echoes what is typed.
func echoOn(t *testing.T, tty *os.File) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tio.Lflag&unix.ECHO != 0
}

// wait waits for prompt to appear on the terminal and consumes it.
func (term *terminal) wait(prompt string) {
	term.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		term.mu.Lock()
		i := strings.Index(term.seen.String(), prompt)
		if i >= 0 {
			term.seen.Next(i + len(prompt))
		}
		term.mu.Unlock()
		if i >= 0 {
			break
		}
		select {
		case <-term.more:
		case <-deadline:
			term.t.Fatalf("no prompt %q on the terminal; it shows %q", prompt, term.seen.String())
		}
	}
}

// wait waits for cmd, killing it after a minute (a prompt nobody answers).
func wait(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not finish: waiting for an answer?", cmd.Args)
		return -1
	}
}

func TestPassphrasePrompt(t *testing.T) {
	term, tty := newTerminal(t)
	defer tty.Close()
	e := newEnv(t)
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "f"), []byte("asked"), 0o644)

	// init asks twice; answers that differ make no store.
	cmd, _, errb := term.start(e, tty, "init", "--encrypt")
	term.answer("passphrase for the new store", "s3cret")
	term.answer("the same again: ", "s3kret")
	if code := wait(t, cmd); code == 0 || !strings.Contains(errb.String(), "differ") {
		t.Fatalf("init with differing answers: exit %d, %s", code, errb)
	}
	if _, err := os.Stat(filepath.Join(e.home, "store", "config")); err == nil {
		t.Fatal("init made a store from differing answers")
	}
	cmd, _, errb = term.start(e, tty, "init", "--encrypt")
	term.answer("passphrase for the new store", "s3cret")
	term.answer("the same again: ", "s3cret")
	if code := wait(t, cmd); code != 0 {
		t.Fatalf("init: exit %d, %s", code, errb)
	}
	e.vars = []string{"RECALL_PASSWORD=s3cret"}
	e.ok("backup", "--source", "s", src)
	e.vars = nil

	// A command on an encrypted store asks once.
	cmd, out, errb := term.start(e, tty, "points", "--json")
	term.answer("passphrase for store "+filepath.Join(e.home, "store")+": ", "s3cret")
	if code := wait(t, cmd); code != 0 || !strings.Contains(out.String(), `"source": "s"`) {
		t.Fatalf("points after a prompt: exit %d, %s%s", code, out, errb)
	}
	// A wrong answer is a wrong passphrase.
	cmd, _, _ = term.start(e, tty, "points")
	term.answer("passphrase for store", "nope")
	if code := wait(t, cmd); code != 5 {
		t.Errorf("points with a wrong answer: exit %d, want 5", code)
	}
	// The answer is not echoed; interrupted at the prompt, the command
	// stops and turns the echo back on.
	cmd, _, _ = term.start(e, tty, "points")
	term.wait("passphrase for store")
	if echoOn(t, tty) {
		t.Error("the terminal echoes while the passphrase is asked for")
	}
	cmd.Process.Signal(os.Interrupt)
	if code := wait(t, cmd); code != 130 {
		t.Errorf("points interrupted at the prompt: exit %d, want 130", code)
	}
	if !echoOn(t, tty) {
		t.Error("the terminal's echo stayed off after an interrupted prompt")
	}
	// key passwd asks for the old passphrase once and the new one twice.
	cmd, _, errb = term.start(e, tty, "key", "passwd")
	term.answer("passphrase for store", "s3cret")
	term.answer("new passphrase for store", "n3w")
	term.answer("the same again: ", "n3w")
	if code := wait(t, cmd); code != 0 {
		t.Fatalf("key passwd on a terminal: exit %d, %s", code, errb)
	}
	e.vars = []string{"RECALL_PASSWORD=n3w"}
	e.ok("points")

	// A plaintext store asks nothing: the command ends unanswered.
	p := newEnv(t)
	p.ok("init")
	cmd, _, errb = term.start(p, tty, "points")
	if code := wait(t, cmd); code != 0 {
		t.Errorf("points on a plaintext store on a terminal: exit %d, %s", code, errb)
	}
	term.mu.Lock()
	if s := term.seen.String(); strings.Contains(s, "passphrase") {
		t.Errorf("asked on a plaintext store: %q", s)
	}
	term.mu.Unlock()
}

// A background mount gets the passphrase its command was given on the
// terminal: its server has no terminal to ask on.
func TestMountAfterPrompt(t *testing.T) {
	requireFUSE(t)
	term, tty := newTerminal(t)
	defer tty.Close()
	e := newEnv(t)
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "f"), []byte("mounted after a prompt"), 0o644)
	e.vars = []string{"RECALL_PASSWORD=s3cret"}
	e.ok("init", "--encrypt")
	e.ok("backup", "--source", "s", src)
	e.vars = nil
	mnt := t.TempDir()
	cmd, out, errb := term.start(e, tty, "mount", "--json", mnt)
	term.answer("passphrase for store", "s3cret")
	if code := wait(t, cmd); code != 0 {
		t.Fatalf("mount after a prompt: exit %d, %s%s", code, out, errb)
	}
	var mj struct {
		Home       string `json:"home"`
		Mountpoint string `json:"mountpoint"`
		PID        int    `json:"server_pid"`
		Log        string `json:"log"`
	}
	if err := json.Unmarshal(out.Bytes(), &mj); err != nil || mj.PID <= 0 || mj.Mountpoint != mnt || mj.Home != e.home || mj.Log == "" {
		t.Fatalf("mount --json: %+v, %v: %q", mj, err, out)
	}
	mi := &mountInfo{dir: mnt, pid: mj.PID}
	t.Cleanup(func() { mi.stop(e) })
	if b, err := os.ReadFile(filepath.Join(mnt, "s", "latest", "f")); err != nil || string(b) != "mounted after a prompt" {
		t.Errorf("file in the mount: %q, %v", b, err)
	}
}

func TestJSONOutputs(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "f"), []byte("x"), 0o644)
	var ini struct {
		ID         string          `json:"id"`
		Store      string          `json:"store"`
		Version    int             `json:"version"`
		Encryption json.RawMessage `json:"encryption"`
	}
	if err := json.Unmarshal([]byte(e.ok("init", "--json")), &ini); err != nil || len(ini.ID) != 32 || ini.Version != chunkstore.ConfigVersion ||
		ini.Store != filepath.Join(e.home, "store") || ini.Encryption != nil {
		t.Errorf("init --json: %+v, %v", ini, err)
	}
	p := parsePoint(t, e.ok("backup", "--source", "s", "--json", src))
	var fg struct {
		ID, Source, Name string
		Time             time.Time
	}
	if err := json.Unmarshal([]byte(e.ok("forget", "--json", p.ID[:8])), &fg); err != nil || fg.ID != p.ID || fg.Source != "s" ||
		!strings.HasPrefix(fg.Name, "@GMT-") || fg.Time.IsZero() {
		t.Errorf("forget --json: %+v, %v", fg, err)
	}
	var v struct {
		Version     string `json:"version"`
		GoVersion   string `json:"go_version"`
		StoreFormat int    `json:"store_format"`
	}
	if err := json.Unmarshal([]byte(e.ok("version", "--json")), &v); err != nil || v.Version == "" || !strings.HasPrefix(v.GoVersion, "go") || v.StoreFormat != chunkstore.ConfigVersion {
		t.Errorf("version --json: %+v, %v", v, err)
	}
}

// key passwd stopped between its two writes (config.copy sealed with the
// new passphrase, config still with the old) is finished by running it
// again with the new passphrase, as the message says: both files end
// sealed with it, and the old passphrase no longer opens the store.
// (Fix: "the passphrase is unchanged, and nothing was written", and the
// old passphrase kept working.)
func TestKeyPasswdFinishesHalfWayChange(t *testing.T) {
	e := newEnv(t)
	e.vars = []string{"RECALL_PASSWORD=old passphrase"}
	e.ok("init", "--encrypt")
	config := filepath.Join(e.home, "store", "config")
	oldConfig := mustRead(t, config)
	newFile := filepath.Join(t.TempDir(), "new")
	must(t, os.WriteFile(newFile, []byte("new passphrase\n"), 0o600))
	e.ok("key", "passwd", "--new-password-file", newFile)
	must(t, os.WriteFile(config, oldConfig, 0o600)) // as if stopped before the second write

	e.vars = []string{"RECALL_PASSWORD_FILE=" + newFile}
	if r := e.run("verify"); !strings.Contains(r.stderr, "stopped half way") {
		t.Fatalf("verify after a half-way change: exit %d, %s", r.code, r.stderr)
	}
	if r := e.run("key", "passwd", "--new-password-file", newFile); r.code != 0 || strings.Contains(r.stdout, "unchanged") {
		t.Fatalf("key passwd to finish it: exit %d, %s%s", r.code, r.stdout, r.stderr)
	}
	if !bytes.Equal(mustRead(t, config), mustRead(t, config+".copy")) {
		t.Errorf("config and config.copy still differ")
	}
	if r := e.run("verify"); r.code != 0 || strings.Contains(r.stderr, "half way") {
		t.Errorf("verify after finishing: exit %d, %s", r.code, r.stderr)
	}
	e.vars = []string{"RECALL_PASSWORD=old passphrase"}
	if r := e.run("points"); r.code != 5 {
		t.Errorf("old passphrase after finishing the change: exit %d, %s; want 5", r.code, r.stderr)
	}
}

// A command's last lines, the error it ends with, quote what it was given:
// a path made to hold a newline and a terminal's escape sequence must
// neither forge a line of recall's own nor reach the terminal raw.
func TestFinalErrorLineEscaped(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	bad := filepath.Join(t.TempDir(), "gone\nrecall: completed\x1b[2J")
	r := e.run("backup", "--source", "s", bad)
	if r.code == 0 {
		t.Fatalf("backup of a missing path succeeded:\n%s", r.stderr)
	}
	if strings.ContainsRune(r.stderr, 0x1b) {
		t.Errorf("stderr holds a raw escape: %q", r.stderr)
	}
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "recall: completed") {
			t.Errorf("a path forged a line: %q", r.stderr)
		}
	}
	// Its newline starts an indented line (errors.Join's lines are
	// shown so too), its escape is spelled out.
	if !strings.Contains(r.stderr, "gone\n  recall: completed\\x1b[2J") {
		t.Errorf("the error does not name the path, escaped: %q", r.stderr)
	}
}
