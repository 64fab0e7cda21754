package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/internal/testchild"
	"github.com/recall-backup/recall/internal/testskip"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// runProbe runs the app with a command "probe" whose action is fn, on
// args after "recall" (global flags may come before or after probe).
func runProbe(t *testing.T, fn func(c *cli.Context) error, args ...string) error {
	t.Helper()
	app := newApp()
	app.Commands = append(app.Commands, &cli.Command{Name: "probe", Action: fn})
	return app.Run(interspersed(app, append([]string{"recall"}, args...)))
}

func TestPasswordSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	os.WriteFile(file, []byte("from file\r\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	defer func(d time.Duration) { passwordCommandTimeout = d }(passwordCommandTimeout)
	passwordCommandTimeout = 500 * time.Millisecond
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
		err  string // part of the error, "" for none
		code int
	}{
		// A source that gives no passphrase is exit 5, as no passphrase
		// at all. (Fix: a missing password file was exit 1.)
		{name: "nothing", want: ""},
		{name: "RECALL_PASSWORD", env: map[string]string{"RECALL_PASSWORD": "from env"}, want: "from env"},
		{name: "file", args: []string{"--password-file", file}, want: "from file"},
		{name: "file after the command", args: []string{"probe", "--password-file=" + file}, want: "from file"},
		{name: "RECALL_PASSWORD_FILE", env: map[string]string{"RECALL_PASSWORD_FILE": file}, want: "from file"},
		{name: "file over RECALL_PASSWORD", env: map[string]string{"RECALL_PASSWORD": "env"}, args: []string{"--password-file", file}, want: "from file"},
		{name: "command", args: []string{"--password-command", "printf 'first\\nsecond\\n'"}, want: "first"},
		{name: "command after the command", args: []string{"probe", "--password-command", "echo cmd"}, want: "cmd"},
		{name: "RECALL_PASSWORD_COMMAND", env: map[string]string{"RECALL_PASSWORD_COMMAND": "echo cmd env"}, want: "cmd env"},
		{name: "command over RECALL_PASSWORD", env: map[string]string{"RECALL_PASSWORD": "env"}, args: []string{"--password-command", "echo cmd"}, want: "cmd"},
		{name: "failing command", args: []string{"--password-command", "echo oops >&2; exit 3"}, err: `password command "echo oops >&2; exit 3" failed: exit status 3`, code: exitAuth},
		{name: "command without a line end", args: []string{"--password-command", "printf pw"}, want: "pw"},
		{name: "failing command without a line end", args: []string{"--password-command", "printf pw; exit 3"}, err: "failed: exit status 3", code: exitAuth},
		{name: "silent command", args: []string{"--password-command", "true"}, err: `password command "true" printed no passphrase`, code: exitAuth},
		{name: "missing file", args: []string{"--password-file", filepath.Join(dir, "nope")}, err: "password file", code: exitAuth},
		{name: "empty file", args: []string{"--password-file", empty}, err: "password file " + empty + " is empty", code: exitAuth},
		{name: "hanging command", args: []string{"--password-command", "exec sleep 30"}, err: "printed no passphrase within", code: exitAuth},
		{name: "file and command", env: map[string]string{"RECALL_PASSWORD_FILE": file}, args: []string{"--password-command", "echo x"}, err: "both set", code: exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"RECALL_PASSWORD", "RECALL_PASSWORD_FILE", "RECALL_PASSWORD_COMMAND"} {
				t.Setenv(k, tc.env[k])
			}
			args := tc.args
			if len(args) == 0 || args[0] != "probe" {
				args = append(append([]string{}, args...), "probe")
			}
			var got string
			err := runProbe(t, func(c *cli.Context) (err error) {
				got, err = password(c)
				return err
			}, args...)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || exitCode(err) != tc.code {
					t.Fatalf("got %q, %v (exit %d); want an error with %q, exit %d", got, err, exitCode(err), tc.err, tc.code)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// The first line a password command prints is taken when printed: the
// command is not waited for, whether it goes on running past the
// timeout, leaves a child holding its output, or just runs a while.
func TestPasswordCommandKeepsRunning(t *testing.T) {
	defer func(d time.Duration) { passwordCommandTimeout = d }(passwordCommandTimeout)
	passwordCommandTimeout = 500 * time.Millisecond
	for _, tc := range []struct{ command, want, err string }{
		{command: "echo pw1; sleep 2", want: "pw1"},      // runs past the timeout
		{command: "echo pw1; sleep 2 &", want: "pw1"},    // a child keeps the output open
		{command: "echo pw1; exec sleep 2", want: "pw1"}, // the command itself goes on
		{command: "echo pw1; sleep 0.3", want: "pw1"},    // within the timeout, not waited for
		{command: "echo; sleep 2", err: "no passphrase on its first line"},
	} {
		t.Run(tc.command, func(t *testing.T) {
			start := time.Now()
			got, err := runPasswordCommand(context.Background(), tc.command)
			if took := time.Since(start); took > 250*time.Millisecond {
				t.Errorf("took %s: the command was waited for", took)
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("got %q, %v; want an error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// fakeTerminal answers prompts from answers in turn and records them;
// with no answers left it has no terminal.
type fakeTerminal struct {
	answers []string
	prompts []string
}

func (f *fakeTerminal) read(_ context.Context, prompt string) (string, error) {
	f.prompts = append(f.prompts, prompt)
	if len(f.answers) == 0 {
		return "", errNoTerminal
	}
	a := f.answers[0]
	f.answers = f.answers[1:]
	return a, nil
}

func useTerminal(t *testing.T, answers ...string) *fakeTerminal {
	f := &fakeTerminal{answers: answers}
	old := readPassword
	readPassword = f.read
	t.Cleanup(func() { readPassword = old })
	return f
}

func TestNewPassword(t *testing.T) {
	for _, tc := range []struct {
		name    string
		given   string
		answers []string
		want    string
		err     string
		asked   int
	}{
		{name: "given", given: "g", want: "g", asked: 0},
		{name: "asked twice", answers: []string{"s3cret", "s3cret"}, want: "s3cret", asked: 2},
		{name: "answers differ", answers: []string{"s3cret", "secret"}, err: "differ", asked: 2},
		{name: "empty", answers: []string{""}, err: "empty", asked: 1},
		{name: "no terminal", err: errNoTerminal.Error(), asked: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			term := useTerminal(t, tc.answers...)
			var got string
			err := runProbe(t, func(c *cli.Context) (err error) {
				got, err = newPassword(c, tc.given, "new passphrase")
				return err
			}, "probe")
			if len(term.prompts) != tc.asked {
				t.Errorf("asked %d times (%q), want %d", len(term.prompts), term.prompts, tc.asked)
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want an error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// The terminal is asked only for an encrypted store, and only when no
// passphrase was given otherwise.
func TestOpenStoreAsksOnlyWhenNeeded(t *testing.T) {
	for _, k := range []string{"RECALL_PASSWORD", "RECALL_PASSWORD_FILE", "RECALL_PASSWORD_COMMAND"} {
		t.Setenv(k, "")
	}
	plain, enc := t.TempDir(), t.TempDir()
	if _, err := chunkstore.Init(filepath.Join(plain, "store"), chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chunkstore.Init(filepath.Join(enc, "store"), chunkstore.InitOptions{Encrypt: true, Password: "pw", KDFMemoryKB: 1024}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		home    string
		env     string // RECALL_PASSWORD
		answers []string
		asked   int
		code    int
	}{
		{name: "plaintext", home: plain, answers: []string{"unused"}, asked: 0, code: exitOK},
		{name: "encrypted, given", home: enc, env: "pw", answers: []string{"unused"}, asked: 0, code: exitOK},
		{name: "encrypted, asked", home: enc, answers: []string{"pw"}, asked: 1, code: exitOK},
		{name: "encrypted, asked wrong", home: enc, answers: []string{"nope"}, asked: 1, code: exitAuth},
		{name: "encrypted, no terminal", home: enc, asked: 1, code: exitAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("RECALL_PASSWORD", tc.env)
			term := useTerminal(t, tc.answers...)
			err := runProbe(t, func(c *cli.Context) error {
				st, err := openStore(c)
				if err == nil {
					st.Close()
				}
				return err
			}, "probe", "--home", tc.home)
			if exitCode(err) != tc.code {
				t.Errorf("exit %d (%v), want %d", exitCode(err), err, tc.code)
			}
			if len(term.prompts) != tc.asked {
				t.Errorf("asked %d times, want %d", len(term.prompts), tc.asked)
			}
			if tc.asked > 0 && !strings.Contains(term.prompts[0], tc.home) {
				t.Errorf("prompt %q does not name the store", term.prompts[0])
			}
			if tc.name == "encrypted, no terminal" && (err == nil || !errors.Is(err, chunkstore.ErrNoPassword) || !strings.Contains(err.Error(), "--password-command")) {
				t.Errorf("no terminal: %v, want the ways to give a passphrase", err)
			}
		})
	}
}

func TestVersionOf(t *testing.T) {
	modified, clean := true, false
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want versionJSON
		line string
	}{
		{name: "no build info", want: versionJSON{Version: "dev"}, line: "recall dev;"},
		{name: "devel, no vcs", bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			want: versionJSON{Version: "dev", GoVersion: "go1.26.8"}, line: "recall dev; go1.26.8"},
		{name: "module version and vcs", bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-11-29T12:00:00Z"}, {Key: "vcs.modified", Value: "false"}}},
			want: versionJSON{Version: "v1.2.3", GoVersion: "go1.26.8", Revision: "0123456789abcdef0123", Time: "2026-11-29T12:00:00Z", Modified: &clean},
			line: "recall v1.2.3 (commit 0123456789ab of 2026-11-29T12:00:00Z); go1.26.8"},
		{name: "modified tree", bi: &debug.BuildInfo{GoVersion: "go1.26.8", Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}},
			want: versionJSON{Version: "dev", GoVersion: "go1.26.8", Revision: "abc", Modified: &modified},
			line: "recall dev (commit abc, with changes not committed); go1.26.8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := versionOf(tc.bi)
			if tc.want.GoVersion == "" {
				tc.want.GoVersion = got.GoVersion // the running toolchain's
			}
			tc.want.Platform, tc.want.StoreFormat = got.Platform, chunkstore.ConfigVersion
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if !strings.HasPrefix(got.String(), tc.line) {
				t.Errorf("line %q, want it to start %q", got.String(), tc.line)
			}
		})
	}
}

// passwordChildEnv holds, as a JSON array, the arguments of the recall
// that TestPasswordCommandChild runs.
const passwordChildEnv = "RECALL_TEST_PASSWORD_CHILD"

// TestPasswordCommandChild is not a test of its own: it is the recall
// process TestPasswordCommandStoppedWithItsGroup interrupts, and does
// nothing without passwordChildEnv. It says "ready", then runs recall
// as main does, until a signal stops it.
func TestPasswordCommandChild(t *testing.T) {
	var args []string
	if err := json.Unmarshal([]byte(os.Getenv(passwordChildEnv)), &args); err != nil {
		return
	}
	ctx, _ := stopOnSignal()
	fmt.Println("ready")
	app := newApp()
	err := app.RunContext(ctx, interspersed(app, append([]string{"recall"}, args...)))
	fmt.Fprintf(os.Stderr, "recall %q: %v\n", args, err)
}

// A recall interrupted while its password command runs stops what the
// command started too: the command runs in a process group of its own,
// killed whole. (Fix: only sh was killed, and "sleep 100" of
// "sleep 100; echo pw" ran on, reparented to init.)
func TestPasswordCommandStoppedWithItsGroup(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if _, err := chunkstore.Init(filepath.Join(home, "store"), chunkstore.InitOptions{Encrypt: true, Password: "pw", KDFMemoryKB: 1024}); err != nil {
		t.Fatal(err)
	}
	// The command's grandchild says its pid through a FIFO, which the
	// open below waits on: no polling for it to start.
	fifo := filepath.Join(dir, "pid")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	command := fmt.Sprintf("sh -c 'echo $$ > %s; exec sleep 100'; echo pw", fifo)
	args, _ := json.Marshal([]string{"--home", home, "--password-command", command, "points"})
	cmd, _ := testchild.Start(t, "TestPasswordCommandChild", passwordChildEnv+"="+string(args),
		"RECALL_PASSWORD=", "RECALL_PASSWORD_FILE=", "RECALL_PASSWORD_COMMAND=")
	pidc := make(chan []byte, 1)
	go func() { b, _ := os.ReadFile(fifo); pidc <- b }()
	var pid int
	select {
	case b := <-pidc:
		var err error
		if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			t.Fatalf("the command's child wrote %q", b)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the password command's child never started")
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	// Its end, as the kernel tells it: a pidfd turns readable once the
	// process has ended (a zombie until init reaps it included).
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd of the password command's child: %v", err)
	}
	defer unix.Close(pidfd)

	cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("recall did not end on SIGTERM")
	}
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 10_000)
	for err == unix.EINTR {
		n, err = unix.Poll(fds, 10_000)
	}
	if err != nil || n != 1 {
		t.Fatalf("the password command's child %d still runs 10s after recall ended (poll: %d, %v)", pid, n, err)
	}
}

// passwordTTYEnv makes TestPasswordCommandTTYChild run a password
// command that reads the terminal.
const passwordTTYEnv = "RECALL_TEST_PASSWORD_TTY"

// TestPasswordCommandTTYChild is not a test of its own: it is the
// process TestPasswordCommandReadsTerminal starts on a terminal, and does
// nothing without passwordTTYEnv. It prints what a password command that
// reads the terminal answered, and whether the terminal was given back.
func TestPasswordCommandTTYChild(t *testing.T) {
	if os.Getenv(passwordTTYEnv) == "" {
		return
	}
	passwordCommandTimeout = 20 * time.Second
	pw, err := runPasswordCommand(context.Background(), `read pw && echo "got $pw"`)
	pg, gerr := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	fmt.Printf("%q %v; terminal ours again: %v\n", pw, err, gerr == nil && pg == unix.Getpgrp())
}

// A password command in its own process group still reads the terminal
// recall runs on (a prompt): its group has the terminal while it runs,
// and recall has it back after.
func TestPasswordCommandReadsTerminal(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		testskip.Skip(t, "no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPasswordCommandTTYChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), passwordTTYEnv+"=1")
	cmd.Stdin, cmd.Stderr = tty, os.Stderr
	var out strings.Builder
	cmd.Stdout = &out
	// A session of its own, the terminal its controlling one.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	go io.Copy(io.Discard, ptmx) // the echo
	if _, err := ptmx.WriteString("s3cret\n"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if want := `"got s3cret" <nil>; terminal ours again: true`; !strings.Contains(out.String(), want) {
		t.Errorf("password command on a terminal: %q, want %q", out.String(), want)
	}
}

// With no passphrase and no terminal, a tape key file's export or import
// exits 5 naming where a passphrase comes from, as a store's open does
// (it exited 1 with "no terminal to ask for the passphrase on").
func TestKeyFilePasswordNoTerminal(t *testing.T) {
	err := keyFilePassword(fmt.Errorf("read: %w", errNoTerminal))
	if exitCode(err) != exitAuth || !strings.Contains(err.Error(), "RECALL_PASSWORD") || !strings.Contains(err.Error(), "--password-command") {
		t.Errorf("%v (exit %d), want exit %d naming the passphrase's sources", err, exitCode(err), exitAuth)
	}
	other := errors.New("x")
	if keyFilePassword(other) != other {
		t.Errorf("another error was changed")
	}
}
