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
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

type alertOut struct {
	ID     uint64 `json:"id"`
	Job    string `json:"job"`
	Group  string `json:"group"`
	Source string `json:"source"`
	Member string `json:"member"`
	Count  int    `json:"count"`
	Action string `json:"action"`
}

func (e *env) alerts() []alertOut {
	e.t.Helper()
	var out []alertOut
	must(e.t, json.Unmarshal([]byte(e.ok("alerts", "--json")), &out))
	return out
}

// TestServeAPI drives recall serve through its socket with the command
// line: status, a group's backup queued in the server and followed with
// its progress, a member that is gone producing an alert, the alert
// cleared by a good backup; with the server stopped the same commands
// work on the home.
func TestServeAPI(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	good, gone := filepath.Join(dir, "good"), filepath.Join(dir, "gone")
	for _, d := range []string{good, gone} {
		must(t, os.MkdirAll(d, 0o755))
	}
	for i := 0; i < 3; i++ {
		writeRandom(t, filepath.Join(good, fmt.Sprintf("big%d", i)), int64(i), 16<<20)
	}
	writeRandom(t, filepath.Join(gone, "f"), 9, 1<<20)
	e.ok("init")
	e.ok("group", "create", "g", "--member", good, "--sync", "1h")
	e.ok("group", "create", "f", "--member", gone, "--sync", "1h")
	must(t, os.RemoveAll(gone))

	// As under its unit: a service manager's socket, a webhook for
	// alerts, the metrics endpoint.
	hooked := make(chan string, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var n struct{ Event, Summary string }
		if json.Unmarshal(b, &n) == nil {
			hooked <- n.Event + ": " + n.Summary
		}
	}))
	defer hook.Close()
	heard := func(want string) {
		t.Helper()
		for {
			select {
			case got := <-hooked:
				if strings.HasPrefix(got, want) {
					return
				}
			case <-time.After(time.Minute):
				t.Fatalf("no webhook call %q within a minute", want)
			}
		}
	}
	manager, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "notify.sock"), Net: "unixgram"})
	must(t, err)
	defer manager.Close()
	e.vars = append(e.vars, "NOTIFY_SOCKET="+filepath.Join(dir, "notify.sock"))

	sock := filepath.Join(dir, "run", "recall.sock")
	cfg := filepath.Join(dir, "recall.toml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("home = %q\nsocket = %q\nconcurrency = 1\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[[notify.webhook]]\nurl = %q\non = [\"alert\", \"alert-cleared\"]\n", e.home, sock, hook.URL)), 0o644))
	// Every command finds the socket through the configuration.
	e.vars = append(e.vars, "RECALL_CONFIG="+cfg)

	s := e.serve("--log-format", "json")
	var addr struct{ Addr string }
	must(t, json.Unmarshal([]byte(s.await(`"msg":"metrics endpoint listening"`)), &addr)) // before the API
	s.await(`"msg":"API listening"`, sock)
	buf := make([]byte, 64)
	must(t, manager.SetReadDeadline(time.Now().Add(time.Minute)))
	if n, err := manager.Read(buf); err != nil || string(buf[:n]) != "READY=1" {
		t.Errorf("the service manager heard %q, %v; want READY=1", buf[:n], err)
	}
	// Both new groups are backed up at once; f's member is gone.
	s.await(`"msg":"alert opened"`, `"group":"f"`)
	heard("alert: alert 1: backup of " + gone + " failed")
	s.await(`"msg":"member backed up"`, good)
	fi, err := os.Stat(sock)
	must(t, err)
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want 0660", fi.Mode().Perm())
	}

	out := e.ok("status")
	if want := fmt.Sprintf("server: pid %d", s.cmd.Process.Pid); !strings.Contains(out, want) || !strings.Contains(out, "group g: next run") || !strings.Contains(out, "alerts: 1 active") {
		t.Errorf("recall status through the socket:\n%s\nwant %q, g's next run and one alert", out, want)
	}

	al := e.alerts()
	if len(al) != 1 || al[0].Job != "backup" || al[0].Group != "f" || al[0].Member != gone || al[0].Count != 1 || !strings.Contains(al[0].Action, "is gone") {
		t.Fatalf("alerts --json: %+v, want f's member gone", al)
	}

	// The backup runs in the server (its log says so) and the command
	// follows it.
	r := e.run("backup", "--group", "g", "--progress-interval", "100ms")
	if r.code != 0 {
		t.Fatalf("backup --group g through the server: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	m := regexp.MustCompile(`queued in recall serve as server job (\d+)`).FindStringSubmatch(r.stderr)
	if m == nil || !strings.Contains(r.stderr, "running, member "+good) || !strings.Contains(r.stderr, ": ok") {
		t.Errorf("backup --group g stderr:\n%s\nwant the job queued, running with its member, then ok", r.stderr)
	}
	if !strings.Contains(r.stdout, "member "+good+": point ") {
		t.Errorf("backup --group g stdout:\n%s", r.stdout)
	}
	s.await(`"msg":"backup started"`, `"group":"g"`)
	if m != nil {
		// A job that ended is followed to its one last line.
		r := e.run("jobs", "--follow", m[1], "--json")
		var v struct {
			ID      json.Number `json:"id"`
			State   string      `json:"state"`
			Members []struct {
				Point string `json:"point"`
			} `json:"members"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &v) != nil || v.ID.String() != m[1] || v.State != "ok" || len(v.Members) != 1 || v.Members[0].Point == "" {
			t.Errorf("jobs --follow %s --json: exit %d, stdout %q, stderr %q", m[1], r.code, r.stdout, r.stderr)
		}
	}
	// --json prints the points, as without a server.
	var pts []struct {
		MessageType string `json:"message_type"`
		ID          string `json:"id"`
		Group       string `json:"group"`
		Source      string `json:"source"`
	}
	must(t, json.Unmarshal([]byte(e.ok("backup", "--group", "g", "--json")), &pts))
	if len(pts) != 1 || pts[0].Group != "g" || pts[0].ID == "" || pts[0].MessageType != "summary" {
		t.Errorf("backup --group g --json through the server: %+v, want g's point", pts)
	}

	// A failing member fails the command as it would without a server,
	// and counts on the open alert.
	if r := e.run("backup", "--group", "f"); r.code != 1 || !strings.Contains(r.stdout, "member "+gone+": failed") {
		t.Errorf("backup --group f: exit %d\nstdout: %s\nstderr: %s\nwant exit 1 and the member failed", r.code, r.stdout, r.stderr)
	}
	if al := e.alerts(); len(al) != 1 || al[0].Count != 2 {
		t.Errorf("alerts after a second failure: %+v, want f's counted twice", al)
	}

	// The member back, a good backup clears the alert.
	must(t, os.MkdirAll(gone, 0o755))
	writeRandom(t, filepath.Join(gone, "f"), 9, 1<<20)
	e.ok("backup", "--group", "f")
	s.await(`"msg":"alert cleared"`, `"group":"f"`)
	heard("alert-cleared: alert 1 cleared")
	resp, err := http.Get("http://" + addr.Addr + "/metrics")
	must(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`recall_jobs_total{job="backup",result="failed"}`, `recall_jobs_total{job="backup",result="ok"}`, `recall_source_last_success_timestamp_seconds{group="f",source=`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	if al := e.alerts(); len(al) != 0 {
		t.Errorf("alerts after a good backup: %+v, want none", al)
	}
	if r := e.run("alerts", "ack", "1"); r.code == 0 || !strings.Contains(r.stderr, "no such active alert") {
		t.Errorf("ack of a cleared alert: exit %d, stderr %q", r.code, r.stderr)
	}
	if out := e.ok("jobs"); !strings.Contains(out, "JOB") {
		t.Errorf("recall jobs with a server:\n%s", out)
	}

	// A backup of a group whose backup the server runs already follows
	// that job, and does not also say it queued one.
	slow := filepath.Join(dir, "slow")
	must(t, os.MkdirAll(slow, 0o755))
	writeRandom(t, filepath.Join(slow, "f"), 12, 3<<20)
	e.ok("group", "create", "slow", "--member", slow, "--limit", "1MiB/s")
	s.await(`"msg":"backup started"`, `"group":"slow"`)
	// Its first backup running, status says so, not to run it, nor a
	// next run of "now" whenever asked.
	if out := e.ok("status"); !strings.Contains(out, "group slow: first backup running as server job") ||
		!strings.Contains(out, "(group slow) has no recovery point yet: the group's backup is running as server job") {
		t.Errorf("status while slow's first backup runs:\n%s", out)
	}
	if r := e.run("backup", "--group", "slow"); r.code != 0 || !strings.Contains(r.stderr, "following it") || strings.Contains(r.stderr, "queued in recall serve") {
		t.Errorf("backup --group slow while the server runs it: exit %d\nstderr: %s\nwant the running job followed, no other queued", r.code, r.stderr)
	}

	must(t, s.cmd.Process.Signal(syscall.SIGTERM))
	if code := s.wait(); code != 0 {
		t.Fatalf("recall serve stopped by SIGTERM: exit %d; log:\n%s", code, s.log)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket after the stop: %v, want it removed", err)
	}
	// No server: the commands work on the home.
	if out := e.ok("status"); strings.Contains(out, "server:") || !strings.Contains(out, "store:") {
		t.Errorf("recall status with no server:\n%s", out)
	}
	if al := e.alerts(); len(al) != 0 {
		t.Errorf("alerts with no server: %+v", al)
	}
	if r := e.run("jobs", "--socket", sock); r.code == 0 || !strings.Contains(r.stderr, "no recall serve answers") {
		t.Errorf("jobs --socket with no server: exit %d, stderr %q", r.code, r.stderr)
	}
}
