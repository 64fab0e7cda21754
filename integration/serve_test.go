package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// served is a recall serve process and its log lines.
type served struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines chan string
	log   *strings.Builder
}

func (e *env) serve(args ...string) *served {
	e.t.Helper()
	cmd := e.command(append([]string{"serve"}, args...)...)
	pipe, err := cmd.StderrPipe()
	must(e.t, err)
	must(e.t, cmd.Start())
	s := &served{t: e.t, cmd: cmd, lines: make(chan string, 1000), log: &strings.Builder{}}
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	e.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return s
}

// await reads the log until a line holds every one of words, and returns
// it; the server ending first, or two minutes passing, fails the test.
func (s *served) await(words ...string) string {
	s.t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("recall serve ended before logging %q; log:\n%s", words, s.log)
			}
			s.log.WriteString(l + "\n")
			all := true
			for _, w := range words {
				all = all && strings.Contains(l, w)
			}
			if all {
				return l
			}
		case <-deadline:
			s.t.Fatalf("recall serve did not log %q in 2 minutes; log:\n%s", words, s.log)
		}
	}
}

// wait returns the exit code once the process ends, reading the rest of
// its log.
func (s *served) wait() int {
	for l := range s.lines {
		s.log.WriteString(l + "\n")
	}
	err := s.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	must(s.t, err)
	return 0
}

type jobOut struct {
	Number uint64 `json:"number"`
	Kind   string `json:"kind"`
	Group  string `json:"group"`
	Status string `json:"status"`
	Error  string `json:"error"`
}

func (e *env) jobs() []jobOut {
	e.t.Helper()
	var jobs []jobOut
	must(e.t, json.Unmarshal([]byte(e.ok("jobs", "--json", "--last", "0")), &jobs))
	return jobs
}

// TestServeKilledDuringBackup: recall serve killed with -9 in the middle
// of a group's backup; the job shows interrupted, the store verifies
// clean, and the restarted server makes the run; a second server on the
// home refuses, naming the first's pid.
func TestServeKilledDuringBackup(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(t.TempDir(), "data")
	must(t, os.MkdirAll(src, 0o755))
	for i := 0; i < 6; i++ {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("big%d", i)), int64(i), 12<<20)
	}
	e.ok("init")
	e.ok("group", "create", "g", "--member", src, "--sync", "1h")
	cfg := filepath.Join(t.TempDir(), "recall.toml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("home = %q\nsocket = %q\nconcurrency = 1\n", e.home, filepath.Join(t.TempDir(), "recall.sock"))), 0o644))

	// A new group is backed up at once.
	s := e.serve("--config", cfg)
	s.await("member backup running", src)
	must(t, s.cmd.Process.Signal(syscall.SIGKILL))
	s.wait()
	if out := e.ok("points", "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("the kill came after the backup made its point: %s", out)
	}
	jobs := e.jobs()
	if len(jobs) != 1 || jobs[0].Kind != "backup" || jobs[0].Group != "g" || jobs[0].Status != "interrupted" {
		t.Fatalf("jobs after kill -9: %+v, want one interrupted backup of g", jobs)
	}
	e.ok("verify", "--read-data")

	s = e.serve("--config", cfg, "--log-format", "json")
	s.await(`"msg":"job interrupted"`, `"job":"backup"`, fmt.Sprintf(`"catalog_job":%d`, jobs[0].Number))
	// One "job" key, the kind, as the README's jq filters read it. (Fix:
	// the member lines carried "job" twice, the second the job's
	// number, which is what jq and most parsers keep.)
	if l := s.await(`"msg":"member backed up"`, src); strings.Count(l, `"job":`) != 1 || !strings.Contains(l, `"job":"backup"`) || !strings.Contains(l, `"catalog_job":`) {
		t.Errorf("member line %s: want one job key, the kind, and catalog_job", l)
	}

	second := e.run("serve", "--config", cfg)
	if want := fmt.Sprintf("pid %d", s.cmd.Process.Pid); second.code != 6 || !strings.Contains(second.stderr, want) {
		t.Errorf("second recall serve on the home: exit %d, stderr %q; want exit 6 (locked) naming %s", second.code, second.stderr, want)
	}

	// A hangup (the terminal of 'recall serve &' closed) is logged and
	// ignored; it killed the server at once, mid-job, without a word.
	must(t, s.cmd.Process.Signal(syscall.SIGHUP))
	s.await("SIGHUP ignored")
	must(t, s.cmd.Process.Signal(syscall.SIGTERM))
	if code := s.wait(); code != 0 {
		t.Errorf("recall serve stopped by SIGTERM: exit %d; log:\n%s", code, s.log)
	}
	jobs = nil
	for _, j := range e.jobs() {
		if j.Kind == "backup" {
			jobs = append(jobs, j)
		}
	}
	if len(jobs) != 2 || jobs[0].Status != "interrupted" || !strings.Contains(jobs[0].Error, "ended before") || jobs[1].Status != "ok" {
		t.Errorf("backups after the restart: %+v, want the interrupted one recorded so, then the run made", jobs)
	}
	e.ok("verify", "--read-data")
}

func TestServeBadConfig(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	dir := t.TempDir()
	for _, c := range []struct{ name, text, want string }{
		{"concurrency", "home = \"/x\"\n\nconcurrency = 0\n", "recall.toml:3: concurrency \"0\": allowed: 1 to 256"},
		{"unknown key", "[metrics]\nlisten = \"127.0.0.1:9745\"\nlisen = \"x\"\n", "recall.toml:3: unknown key \"metrics.lisen\": allowed: listen"},
		{"notify event", "[[notify.webhook]]\nurl = \"https://hooks.example/recall\"\non = [\"failure\", \"oops\"]\n", "recall.toml:3: notify.webhook.on \"oops\": allowed: failure, alert, alert-cleared, success"},
		{"syntax", "home = \n", "recall.toml:1:"},
		// A mount inside the store is refused before anything starts,
		// as 'recall mount' refuses it: the server made the directory
		// in the store and retried the mount for ever.
		{"mount in store", "[[mount]]\npath = \"" + filepath.Join(e.home, "store", "x") + "\"\n", "is inside the store"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, "recall.toml")
			must(t, os.WriteFile(p, []byte(c.text), 0o644))
			r := e.run("serve", "--config", p)
			if r.code != 2 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", r.code, r.stderr, c.want)
			}
			if _, err := os.Stat(filepath.Join(e.home, "store", "x")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a directory was made in the store (%v)", err)
			}
		})
	}
	// RECALL_CONFIG names the file as --config does.
	e.vars = append(e.vars, "RECALL_CONFIG="+filepath.Join(dir, "absent.toml"))
	if r := e.run("serve"); r.code == 0 || !strings.Contains(r.stderr, "absent.toml") {
		t.Errorf("RECALL_CONFIG naming no file: exit %d, stderr %q", r.code, r.stderr)
	}
}

// recall serve started by systemd (NOTIFY_SOCKET set) on an encrypted
// store with no passphrase exits 5 naming the unit's environment file,
// where the README's set-up puts RECALL_PASSWORD_FILE. (Fix: the unit
// read no passphrase at all and was restarted every 10 s.)
func TestServeUnderSystemdNamesEnvironmentFile(t *testing.T) {
	e := newEnv(t)
	e.vars = []string{"RECALL_PASSWORD=secret"}
	e.ok("init", "--encrypt")
	cfg := filepath.Join(t.TempDir(), "recall.toml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("home = %q\nsocket = %q\n", e.home, filepath.Join(t.TempDir(), "recall.sock"))), 0o644))
	e.vars = []string{"NOTIFY_SOCKET=" + filepath.Join(t.TempDir(), "notify")}
	r := e.run("serve", "--config", cfg)
	if r.code != 5 || !strings.Contains(r.stderr, "RECALL_PASSWORD_FILE=/etc/recall/passphrase") || !strings.Contains(r.stderr, "/etc/recall/environment") {
		t.Errorf("serve without a passphrase under systemd: exit %d\n%s", r.code, r.stderr)
	}
	unit, err := os.ReadFile("../dist/recall.service")
	must(t, err)
	if !strings.Contains(string(unit), "EnvironmentFile=-/etc/recall/environment") {
		t.Errorf("the unit reads no /etc/recall/environment")
	}
}

// A group created while the server runs is backed up at once, as status
// says ("next run" now), not at the scheduler's next minute. (Fix: group
// create wrote the catalog and nothing told the server: about 65 s.)
func TestServeGroupCreateWakesScheduler(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(t.TempDir(), "data")
	must(t, os.MkdirAll(src, 0o755))
	must(t, os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644))
	e.ok("init")
	sock := filepath.Join(t.TempDir(), "recall.sock")
	cfg := filepath.Join(t.TempDir(), "recall.toml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("home = %q\nsocket = %q\n", e.home, sock)), 0o644))
	e.vars = []string{"RECALL_CONFIG=" + cfg}
	s := e.serve("--config", cfg)
	s.await("API listening")
	time.Sleep(2 * time.Second) // its first look at the groups (none) is done: it sleeps a minute
	start := time.Now()
	e.ok("group", "create", "g", "--member", src, "--sync", "1h")
	s.await("member backed up", src)
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the new group's first backup came %s after group create, want at once", d.Round(time.Second))
	}
	must(t, s.cmd.Process.Signal(syscall.SIGTERM))
	s.wait()
}
