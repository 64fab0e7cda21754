package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
)

// apiServer is a server with its API on a socket, on a fake clock.
type apiServer struct {
	*running
	socket string

	mu     sync.Mutex
	alerts []AlertEvent
}

func startAPIServer(t *testing.T, home string) *apiServer {
	t.Helper()
	a := &apiServer{socket: filepath.Join(filepath.Dir(home), "run", "recall.sock")}
	clock := NewFakeClock(week0.Add(9*time.Hour + 5*time.Minute))
	st, err := engine.Open(engine.StoreDir(home), chunkstore.OpenOptions{})
	must(t, err)
	srv, err := New(Options{Home: home, Store: st, Clock: clock, Concurrency: 2, MaxWait: 48 * time.Hour, Log: testLog(t), Socket: a.socket,
		OnAlert: func(e AlertEvent) {
			a.mu.Lock()
			a.alerts = append(a.alerts, e)
			a.mu.Unlock()
		}})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	a.running = &running{srv: srv, clock: clock, stop: func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		srv.Close()
		st.Close()
	}}
	t.Cleanup(func() { a.running.stop() })
	return a
}

func (a *apiServer) alertEvents() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, e := range a.alerts {
		out = append(out, fmt.Sprintf("%s %d %s", e.Kind, e.Alert.ID, e.Alert.Source))
	}
	return out
}

func unixClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
}

// call makes one request and decodes the answer into out; it returns the
// status code.
func call(t *testing.T, c *http.Client, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://recall"+APIVersion+path, body)
	resp, err := c.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %q", method, path, err, b)
		}
	}
	return resp.StatusCode
}

// TestAPIBackupAndAlerts drives the API over its socket: a member that
// is gone fails the group's first backup and opens an alert; the member
// back, a backup queued through the API and followed to its end clears
// it; an ack closes another.
func TestAPIBackupAndAlerts(t *testing.T) {
	f := newFixture(t)
	must(t, os.RemoveAll(f.memA))
	a := startAPIServer(t, f.home)
	a.srv.WaitIdle() // the groups' first backups
	c := unixClient(a.socket)

	fi, err := os.Stat(a.socket)
	must(t, err)
	if fi.Mode().Perm() != 0o660 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("socket mode %v, want a socket of mode 0660", fi.Mode())
	}

	var list struct{ Alerts []Alert }
	if code := call(t, c, "GET", "/alerts", nil, &list); code != 200 || len(list.Alerts) != 1 {
		t.Fatalf("GET /alerts: %d %+v, want the alert of the gone member", code, list)
	}
	al := list.Alerts[0]
	if al.Job != "backup" || al.Group != "a" || al.Member != f.memA || al.Count != 1 || !strings.Contains(al.Action, "is gone") || !al.Since.Equal(a.clock.Now()) {
		t.Errorf("alert %+v", al)
	}
	if got := a.alertEvents(); len(got) != 1 || !strings.HasPrefix(got[0], "opened 1 ") {
		t.Errorf("OnAlert heard %q, want one opened", got)
	}

	var st StatusView
	if code := call(t, c, "GET", "/status", nil, &st); code != 200 || st.Server.PID != os.Getpid() || st.Alerts != 1 || st.StoreStatus == nil || len(st.Schedule) != 2 {
		t.Errorf("GET /status: %d %+v", code, st)
	}

	var queued struct{ Jobs []uint64 }
	if code := call(t, c, "POST", "/backup", map[string]string{"group": "nope"}, nil); code != http.StatusNotFound {
		t.Errorf("POST /backup of an unknown group: %d, want 404", code)
	}
	// Still gone: the repeat counts.
	if code := call(t, c, "POST", "/backup", map[string]string{"group": "a"}, &queued); code != http.StatusAccepted || len(queued.Jobs) != 1 {
		t.Fatalf("POST /backup: %d %+v", code, queued)
	}
	states := follow(t, c, queued.Jobs[0])
	if last := states[len(states)-1]; last.State != "failed" || len(last.Members) != 1 || last.Members[0].State != "failed" {
		t.Errorf("followed job ended %+v, want failed", last)
	}
	call(t, c, "GET", "/alerts", nil, &list)
	if len(list.Alerts) != 1 || list.Alerts[0].Count != 2 {
		t.Errorf("alerts after a second failure: %+v, want one counted twice", list.Alerts)
	}

	must(t, os.MkdirAll(f.memA, 0o755))
	must(t, os.WriteFile(filepath.Join(f.memA, "f"), bytes.Repeat([]byte("y"), 3<<20), 0o644))
	call(t, c, "POST", "/backup", map[string]string{"group": "a"}, &queued)
	states = follow(t, c, queued.Jobs[0])
	last := states[len(states)-1]
	if last.State != "ok" || len(last.Members) != 1 || last.Members[0].Point == "" || last.Members[0].Progress == nil || last.Members[0].Progress.BytesDone != 3<<20 {
		t.Errorf("followed job ended %+v, want ok with a point and 3 MiB read", last)
	}
	if states[0].State != "queued" && states[0].State != "running" {
		t.Errorf("first state %+v", states[0])
	}
	call(t, c, "GET", "/alerts", nil, &list)
	if len(list.Alerts) != 0 {
		t.Errorf("alerts after a good backup: %+v, want none", list.Alerts)
	}
	if got := a.alertEvents(); len(got) != 2 || !strings.HasPrefix(got[1], "cleared 1 ") {
		t.Errorf("OnAlert heard %q, want opened then cleared", got)
	}

	// Ack: b's alert is closed by hand.
	must(t, os.RemoveAll(f.memB))
	call(t, c, "POST", "/backup", map[string]string{"group": "b"}, &queued)
	follow(t, c, queued.Jobs[0])
	call(t, c, "GET", "/alerts", nil, &list)
	if len(list.Alerts) != 1 {
		t.Fatalf("alerts: %+v, want b's", list.Alerts)
	}
	var acked Alert
	if code := call(t, c, "POST", fmt.Sprintf("/alerts/%d/ack", list.Alerts[0].ID), nil, &acked); code != 200 || acked.ID != list.Alerts[0].ID {
		t.Errorf("ack: %d %+v", code, acked)
	}
	if code := call(t, c, "POST", fmt.Sprintf("/alerts/%d/ack", list.Alerts[0].ID), nil, nil); code != http.StatusNotFound {
		t.Errorf("second ack: %d, want 404", code)
	}
	var jobs struct{ Jobs []JobView }
	call(t, c, "GET", "/jobs", nil, &jobs)
	if len(jobs.Jobs) < 5 || jobs.Jobs[0].ID != queued.Jobs[0] {
		t.Errorf("GET /jobs: %+v, want the first backups, the three queued, newest first", jobs.Jobs)
	}
}

// follow reads GET /jobs/{id}?follow=1 to its end.
func follow(t *testing.T, c *http.Client, id uint64) []JobView {
	t.Helper()
	resp, err := c.Get(fmt.Sprintf("http://recall%s/jobs/%d?follow=1", APIVersion, id))
	must(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("follow job %d: %s %s", id, resp.Status, resp.Header.Get("Content-Type"))
	}
	var out []JobView
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var v JobView
		must(t, json.Unmarshal(sc.Bytes(), &v))
		out = append(out, v)
	}
	if len(out) == 0 || !out[len(out)-1].Done() {
		t.Fatalf("follow job %d: stream ended before the job: %+v", id, out)
	}
	return out
}

func TestMayWrite(t *testing.T) {
	for _, c := range []struct {
		uid  uint32
		want bool
	}{{0, true}, {1, false}, {1000, false}, {65534, false}} {
		if got := MayWrite(c.uid); got != c.want {
			t.Errorf("MayWrite(%d) = %v, want %v", c.uid, got, c.want)
		}
	}
}

// peerChildEnv makes the test binary a client of the socket it names,
// run as another user by TestAPIPeerCredentials.
const peerChildEnv = "RECALL_API_TEST_PEER_SOCKET"

// TestAPIPeerCredentials connects from processes running as nobody: a
// member of the socket's group reads but gets 403 on a write; a
// non-member cannot connect at all.
func TestAPIPeerCredentials(t *testing.T) {
	if sock := os.Getenv(peerChildEnv); sock != "" {
		peerChild(sock)
		return
	}
	if os.Getuid() != 0 {
		t.Fatal("this test runs as root: it starts clients as nobody")
	}
	nobody, err := user.Lookup("nobody")
	must(t, err)
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	f := newFixture(t)
	a := startAPIServer(t, f.home)
	a.srv.WaitIdle()
	fi, err := os.Stat(a.socket)
	must(t, err)
	sockGID := fi.Sys().(*syscall.Stat_t).Gid

	// The test binary, where nobody can run it; the directories on the
	// way to the socket, where nobody can pass.
	dir := filepath.Dir(filepath.Dir(a.socket))
	must(t, os.Chmod(dir, 0o755))
	self, err := os.Executable()
	must(t, err)
	bin := filepath.Join(dir, "api.test")
	b, err := os.ReadFile(self)
	must(t, err)
	must(t, os.WriteFile(bin, b, 0o755))

	for _, c := range []struct {
		name   string
		groups []uint32
		want   string
	}{
		{"member", []uint32{sockGID}, "read 200 write 403"},
		{"non-member", nil, "connect: permission denied"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin, "-test.run=^TestAPIPeerCredentials$")
			cmd.Env = append(os.Environ(), peerChildEnv+"="+a.socket)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: c.groups}}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "peer: "+c.want) {
				t.Errorf("as nobody (%s): %s, want %q", c.name, out, c.want)
			}
		})
	}
}

// peerChild reads and writes through the socket and prints what it got.
func peerChild(sock string) {
	conn, err := net.Dial("unix", sock)
	if err != nil {
		if errors.Is(err, syscall.EACCES) {
			fmt.Println("peer: connect: permission denied")
		} else {
			fmt.Println("peer: connect:", err)
		}
		return
	}
	conn.Close()
	c := unixClient(sock)
	read, err := c.Get("http://recall" + APIVersion + "/alerts")
	if err != nil {
		fmt.Println("peer: read:", err)
		return
	}
	read.Body.Close()
	write, err := c.Post("http://recall"+APIVersion+"/backup", "application/json", strings.NewReader(`{"group":"a"}`))
	if err != nil {
		fmt.Println("peer: write:", err)
		return
	}
	write.Body.Close()
	fmt.Printf("peer: read %d write %d\n", read.StatusCode, write.StatusCode)
}

// TestAPIWriteWithoutCredentials: a request whose connection gave no
// peer credentials may read but not write.
func TestAPIWriteWithoutCredentials(t *testing.T) {
	s := &Server{o: Options{Home: "/h"}}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"POST", "/backup", http.StatusForbidden},
		{"POST", "/alerts/1/ack", http.StatusForbidden},
		{"GET", "/ping", http.StatusOK},
	} {
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest(c.method, APIVersion+c.path, strings.NewReader(`{"group":"a"}`)))
		if w.Code != c.want || w.Header().Get(HomeHeader) != "/h" {
			t.Errorf("%s %s: %d %q, want %d", c.method, c.path, w.Code, w.Body, c.want)
		}
	}
}

// A call the API does not have is answered in JSON, as its errors are
// documented, with 404 or 405 and Allow. (Fix: net/http's plain text.)
func TestAPIUnknownCallJSON(t *testing.T) {
	s := &Server{o: Options{Home: "/h"}}
	for _, c := range []struct {
		method, path string
		want         int
		allow        string
	}{
		{"GET", "/nope", http.StatusNotFound, ""},
		{"GET", "/backup", http.StatusMethodNotAllowed, "POST"},
		{"DELETE", "/jobs/1", http.StatusMethodNotAllowed, "GET, HEAD"},
	} {
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest(c.method, APIVersion+c.path, nil))
		var body struct{ Error string }
		if w.Code != c.want || json.Unmarshal(w.Body.Bytes(), &body) != nil || !strings.Contains(body.Error, c.method+" "+APIVersion+c.path) || w.Header().Get("Allow") != c.allow {
			t.Errorf("%s %s: %d %q (Allow %q), want %d in JSON (Allow %q)", c.method, c.path, w.Code, w.Body, w.Header().Get("Allow"), c.want, c.allow)
		}
	}
}

// TestSecondServerSameSocketOtherHome: a second server on another home
// with the same socket fails in New, before its caller starts anything
// with side effects (mounts, alerts, notifications): as ErrHomeBusy (exit
// 6), saying that another server answers on the socket and naming its
// pid and home, not that the home is owned. Its home is left free.
func TestSecondServerSameSocketOtherHome(t *testing.T) {
	f := newFixture(t)
	a := startAPIServer(t, f.home)
	other := newFixture(t)
	st, err := engine.Open(engine.StoreDir(other.home), chunkstore.OpenOptions{})
	must(t, err)
	defer st.Close()
	srv, err := New(Options{Home: other.home, Store: st, Clock: NewFakeClock(week0), Socket: a.socket})
	if err == nil {
		srv.Close()
		t.Fatalf("second server on another home with socket %s: started, want refused", a.socket)
	}
	msg := err.Error()
	if !errors.Is(err, ErrHomeBusy) || !errors.Is(err, ErrSocketBusy) {
		t.Errorf("error %v: want ErrSocketBusy, an ErrHomeBusy", err)
	}
	for _, want := range []string{a.socket, "answers on the socket", fmt.Sprintf("pid %d", os.Getpid()), "home " + f.home} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "owns this home") {
		t.Errorf("error %q says the home is owned; it is the socket", msg)
	}
	// The first server still answers; the other home is free.
	var info ServerInfo
	if code := call(t, unixClient(a.socket), "GET", "/ping", nil, &info); code != http.StatusOK || info.Home != f.home {
		t.Errorf("first server after the refusal: %d %+v", code, info)
	}
	srv, err = New(Options{Home: other.home, Store: st, Clock: NewFakeClock(week0)})
	must(t, err)
	srv.Close()
}

// A request body that never finishes is given up after bodyTimeout and
// answered, and the connection does not hold the server: before, such a
// client (or many idle keep-alive ones) held a descriptor each for good,
// and a few hundred locked everyone out ("accept4: too many open files").
func TestAPISlowBodyGivenUp(t *testing.T) {
	old := bodyTimeout
	bodyTimeout = 300 * time.Millisecond
	t.Cleanup(func() { bodyTimeout = old })
	f := newFixture(t)
	a := startAPIServer(t, f.home)
	a.srv.WaitIdle()
	c, err := net.Dial("unix", a.socket)
	must(t, err)
	defer c.Close()
	_, err = c.Write([]byte("POST " + APIVersion + "/backup HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"group\":"))
	must(t, err)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a body that never finishes: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	// The server answers others as before.
	r, err := unixClient(a.socket).Get("http://r" + APIVersion + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
}

// Status through the server tells a source with no point the error of
// its last backup, as the status without a server does, not to run the
// backup that fails again.
func TestAPIStatusNoPointLastJobFailed(t *testing.T) {
	f := newFixture(t)
	must(t, engine.WithCatalog(f.home, time.Second, t.Logf, func(cat *engine.Catalog) error {
		_, err := cat.EditGroup("b", week0, func(g *engine.Group) error {
			g.Policy.PreScript = "echo flush failed >&2; exit 1"
			return nil
		})
		return err
	}))
	a := startAPIServer(t, f.home)
	a.srv.WaitIdle() // the groups' first backups: b's fails
	var st StatusView
	if code := call(t, unixClient(a.socket), "GET", "/status", nil, &st); code != 200 || st.StoreStatus == nil {
		t.Fatalf("GET /status: %d %+v", code, st)
	}
	var got string
	for _, w := range st.Warnings {
		if strings.Contains(w, "(group b) has no recovery point yet") {
			got = w
		}
	}
	if !strings.Contains(got, "its last backup, job ") || !strings.Contains(got, "exit status 1") || !strings.Contains(got, "fix that") {
		t.Errorf("GET /status: b's warning %q, want its last backup's failure (the pre-script's)", got)
	}
}
