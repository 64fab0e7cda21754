package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeNotifiesAndExports: recall serve under a unit-like environment
// (a service manager's notify socket and watchdog) tells the manager it
// is ready and alive; a group whose member is gone makes a failed backup
// that reaches the webhook, while the target that is down changes
// nothing; the metrics endpoint and the textfile show both jobs; the job
// lines of the JSON log carry their fields.
func TestServeNotifiesAndExports(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	for _, d := range []string{good, bad} {
		must(t, os.MkdirAll(d, 0o755))
		must(t, os.WriteFile(filepath.Join(d, "f"), []byte("data of "+d), 0o644))
	}
	e.ok("init")
	e.ok("group", "create", "good", "--member", good, "--sync", "1h")
	e.ok("group", "create", "bad", "--member", bad, "--sync", "1h")
	must(t, os.RemoveAll(bad))

	bodies := make(chan []byte, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- b
	}))
	defer hook.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	down := "http://" + ln.Addr().String() + "/hook"
	ln.Close()

	sock := filepath.Join(dir, "notify.sock")
	manager, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	must(t, err)
	defer manager.Close()
	textfile := filepath.Join(dir, "recall.prom")
	cfg := filepath.Join(dir, "recall.toml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`home = %q
concurrency = 2

[metrics]
listen = "127.0.0.1:0"
textfile = %q

[[notify.webhook]]
url = %q
on = ["failure", "success"]

[[notify.webhook]]
url = %q
on = ["failure"]
`, e.home, textfile, hook.URL, down)), 0o644))

	e.vars = append(e.vars, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000")
	s := e.serve("--config", cfg, "--log-format", "json")
	// The manager reads its socket all along, as systemd does: the
	// watchdog pings every 100 ms, and a queue left full would hold up
	// the server's messages.
	heard := make(chan string, 64)
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := manager.Read(buf)
			if err != nil {
				close(heard)
				return
			}
			if m := string(buf[:n]); m != "WATCHDOG=1" {
				heard <- m
			} else {
				select {
				case heard <- m:
				default: // the test waits for none of the surplus pings
				}
			}
		}
	}()
	hear := func(want string) {
		t.Helper()
		seen := map[string]bool{}
		timeout := time.After(time.Minute)
		for {
			select {
			case m, ok := <-heard:
				if !ok {
					t.Fatalf("the service manager's socket closed; it heard %v, not %s", seen, want)
				}
				if m == want {
					return
				}
				seen[m] = true
			case <-timeout:
				t.Fatalf("the service manager heard %v in a minute, not %s; log:\n%s", seen, want, s.log)
			}
		}
	}
	hear("READY=1")
	hear("WATCHDOG=1")
	var addr struct{ Addr string }
	must(t, json.Unmarshal([]byte(s.await(`"msg":"metrics endpoint listening"`)), &addr))

	got := map[string]string{}
	for len(got) < 2 {
		select {
		case b := <-bodies:
			var n struct{ Event, Group, Summary, Job string }
			must(t, json.Unmarshal(b, &n))
			if n.Job != "backup" {
				// The prune that follows a group's first backup (it
				// makes the group's first recovery point) succeeds
				// whatever the backup did.
				continue
			}
			got[n.Group] = n.Event
			if n.Group == "bad" && !strings.Contains(string(b), bad) {
				t.Errorf("the failure's body does not name the member %s: %s", bad, b)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("webhook calls: %v after 2 minutes; log:\n%s", got, s.log)
		}
	}
	if got["bad"] != "failure" || got["good"] != "success" {
		t.Errorf("webhook calls %v, want a failure for bad, a success for good", got)
	}
	s.await(`"msg":"job finished"`, `"job":"backup"`, `"group":"bad"`, `"result":"failed"`, `"members_failed":1`)
	s.await(`"msg":"notification not sent; retrying"`, down)

	resp, err := http.Get("http://" + addr.Addr + "/metrics")
	must(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	file, err := os.ReadFile(textfile)
	must(t, err)
	for _, text := range []struct{ where, text string }{{"endpoint", string(metrics)}, {"textfile", string(file)}} {
		for _, want := range []string{
			`recall_jobs_total{job="backup",result="failed"} 1`,
			`recall_jobs_total{job="backup",result="ok"} 1`,
			`recall_source_backup_errors_total{group="bad",source=`,
			`recall_source_last_success_timestamp_seconds{group="good",source=`,
			"recall_store_size_bytes ",
		} {
			if !strings.Contains(text.text, want) {
				t.Errorf("metrics %s lacks %q:\n%s", text.where, want, text.text)
			}
		}
	}

	// A second server with the same configuration is refused for the
	// home, naming the first, before it would collide on the port.
	cfg2 := filepath.Join(dir, "second.toml")
	must(t, os.WriteFile(cfg2, []byte(fmt.Sprintf("home = %q\n[metrics]\nlisten = %q\n", e.home, addr.Addr)), 0o644))
	second := e.run("serve", "--config", cfg2)
	if want := fmt.Sprintf("pid %d", s.cmd.Process.Pid); second.code != 6 || !strings.Contains(second.stderr, want) {
		t.Errorf("second recall serve on the home and port: exit %d, stderr %q; want exit 6 naming %s", second.code, second.stderr, want)
	}

	must(t, s.cmd.Process.Signal(syscall.SIGTERM))
	if code := s.wait(); code != 0 {
		t.Errorf("recall serve stopped by SIGTERM: exit %d; log:\n%s", code, s.log)
	}
	hear("STOPPING=1")
	// The good group's job is in the catalog as ok: the target that is
	// down changed nothing.
	for _, j := range e.jobs() {
		if j.Kind == "backup" && j.Group == "good" && j.Status != "ok" {
			t.Errorf("backup of good: %+v, want ok", j)
		}
	}
}

// TestNotifyTest: recall notify test reports each target, and fails when
// one is down.
func TestNotifyTest(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	hits := make(chan string, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hits <- string(b)
	}))
	defer hook.Close()
	cfg := filepath.Join(dir, "recall.toml")
	write := func(extra string) {
		must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("[[notify.webhook]]\nurl = %q\non = [\"success\"]\n%s", hook.URL, extra)), 0o644))
	}
	write("")
	out := e.ok("notify", "test", "--config", cfg)
	if !strings.Contains(out, "ok     webhook "+hook.URL) {
		t.Errorf("notify test output %q", out)
	}
	if b := <-hits; !strings.Contains(b, `"event":"test"`) {
		t.Errorf("webhook body %s", b)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	down := ln.Addr().String()
	ln.Close()
	write(fmt.Sprintf("[[notify.mail]]\nto = \"ops@example.org\"\nsmtp = %q\n", down))
	r := e.run("notify", "test", "--config", cfg)
	if r.code == 0 || !strings.Contains(r.stdout, "FAILED mail to ops@example.org by "+down) || !strings.Contains(r.stdout, "ok     webhook") {
		t.Errorf("notify test with a mail relay down: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
