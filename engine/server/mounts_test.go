package server

import (
	"context"
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
	"github.com/recall-backup/recall/engine"
)

// fakeMounts stands in for the mount server: each start is a `sleep`
// child, or the next of its errors; the test hears of each start.
type fakeMounts struct {
	mu     sync.Mutex
	errs   []error
	starts chan *exec.Cmd // nil cmd: a start that failed
	seen   []MountConfig
}

func (f *fakeMounts) start(ctx context.Context, m MountConfig) (*exec.Cmd, error) {
	f.mu.Lock()
	f.seen = append(f.seen, m)
	var err error
	if len(f.errs) > 0 {
		err, f.errs = f.errs[0], f.errs[1:]
	}
	f.mu.Unlock()
	if st, serr := os.Stat(m.Path); serr != nil || !st.IsDir() {
		err = errors.Join(err, errors.New("mount point not prepared"))
	}
	if err != nil {
		f.starts <- nil
		return nil, err
	}
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	f.starts <- cmd
	return cmd, nil
}

func newMountServer(t *testing.T) (*Server, chan AlertEvent) {
	t.Helper()
	home := t.TempDir()
	if _, err := chunkstore.Init(engine.StoreDir(home), chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	alerts := make(chan AlertEvent, 10)
	srv, err := New(Options{Home: home, Log: testLog(t), OnAlert: func(e AlertEvent) { alerts <- e }})
	must(t, err)
	t.Cleanup(srv.Close)
	return srv, alerts
}

func awaitStart(t *testing.T, f *fakeMounts) *exec.Cmd {
	t.Helper()
	select {
	case c := <-f.starts:
		return c
	case <-time.After(30 * time.Second):
		t.Fatal("the supervisor made no start in 30s")
	}
	return nil
}

func awaitAlert(t *testing.T, alerts chan AlertEvent) AlertEvent {
	t.Helper()
	select {
	case ev := <-alerts:
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no alert event in 30s")
	}
	return AlertEvent{}
}

// TestMountsRemountAndAlert: a mount that cannot be made opens an alert
// and is tried again; once made the alert clears; its server killed, it
// is started again; stop ends the server and waits for it.
func TestMountsRemountAndAlert(t *testing.T) {
	srv, alerts := newMountServer(t)
	f := &fakeMounts{errs: []error{errors.New("fuse: device not found")}, starts: make(chan *exec.Cmd, 10)}
	path := filepath.Join(t.TempDir(), "not", "yet", "there")
	stop := srv.SuperviseMounts([]MountConfig{{Path: path, AllowOther: true}}, MountsOptions{
		Start: f.start, Check: 10 * time.Millisecond, Backoff: []time.Duration{time.Millisecond}, StopGrace: 10 * time.Second,
	})
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()

	if c := awaitStart(t, f); c != nil {
		t.Fatal("the first start, which fails, gave a command")
	}
	ev := awaitAlert(t, alerts)
	if ev.Kind != "opened" || ev.Alert.Job != "mount" || ev.Alert.Source != path || ev.Alert.Error != "fuse: device not found" || ev.Alert.Action == "" {
		t.Fatalf("alert after the failed mount: %+v", ev)
	}
	opened := ev.Alert.ID
	if got := srv.Alerts(); len(got) != 1 || got[0].ID != opened {
		t.Fatalf("active alerts: %+v, want the mount's", got)
	}
	first := awaitStart(t, f)
	if first == nil {
		t.Fatal("the second start failed")
	}
	if ev := awaitAlert(t, alerts); ev.Kind != "cleared" || ev.Alert.ID != opened {
		t.Fatalf("alert after the mount was made: %+v, want cleared", ev)
	}
	if got := srv.Alerts(); len(got) != 0 {
		t.Fatalf("active alerts once mounted: %+v", got)
	}

	must(t, first.Process.Kill())
	second := awaitStart(t, f)
	if second == nil || second.Process.Pid == first.Process.Pid {
		t.Fatalf("after the kill: start %v, want a new server", second)
	}

	stop()
	stopped = true
	// stop waited for the server: it is reaped, so signalling it fails.
	if err := second.Process.Signal(syscall.Signal(0)); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("mount server after stop: signal 0 gave %v, want it gone", err)
	}
	if ws, ok := second.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGTERM {
		t.Errorf("mount server ended by %v, want SIGTERM", second.ProcessState)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.seen {
		if m.Path != path || !m.AllowOther {
			t.Errorf("started with %+v, want the [[mount]] as configured", m)
		}
	}
}

// TestMountAlertWrongPassphrase: a mount server that cannot open the
// store because its passphrase changed opens an alert that says so,
// not one about FUSE; the alert clears once a later start mounts.
func TestMountAlertWrongPassphrase(t *testing.T) {
	srv, alerts := newMountServer(t)
	wrong := fmt.Errorf("open store /h/store: %w: the passphrase from the password file /etc/recall/passphrase does not open the store", chunkstore.ErrWrongPassword)
	f := &fakeMounts{errs: []error{wrong}, starts: make(chan *exec.Cmd, 10)}
	path := filepath.Join(t.TempDir(), "m")
	stop := srv.SuperviseMounts([]MountConfig{{Path: path}}, MountsOptions{
		Start: f.start, Check: 10 * time.Millisecond, Backoff: []time.Duration{time.Millisecond}, StopGrace: 10 * time.Second,
	})
	defer stop()

	awaitStart(t, f)
	ev := awaitAlert(t, alerts)
	if ev.Kind != "opened" || ev.Alert.Job != "mount" || !strings.Contains(ev.Alert.Error, "/etc/recall/passphrase") {
		t.Fatalf("alert after the mount failed with a wrong passphrase: %+v", ev)
	}
	if a := ev.Alert.Action; !strings.Contains(a, "passphrase changed") || !strings.Contains(a, "next attempt") || strings.Contains(a, "/dev/fuse") {
		t.Errorf("action %q: want it to say the passphrase changed and where to put the new one, not to look at FUSE", a)
	}
	// Any other cause keeps the advice about FUSE.
	if a := suggest(&Alert{Job: "mount", Source: path}, errors.New("fuse: device not found")); !strings.Contains(a, "/dev/fuse") {
		t.Errorf("action for a FUSE error: %q", a)
	}
	// A directory holding files: move them, not look at FUSE.
	notEmpty := errors.New("mount point " + path + " is not empty (1 entry: x): the tree would hide them")
	if a := suggest(&Alert{Job: "mount", Source: path}, notEmpty); !strings.Contains(a, "holds files") || strings.Contains(a, "/dev/fuse") {
		t.Errorf("action for a mount point that is not empty: %q", a)
	}
	if c := awaitStart(t, f); c == nil {
		t.Fatal("the second start failed")
	}
	if ev := awaitAlert(t, alerts); ev.Kind != "cleared" {
		t.Fatalf("alert once mounted: %+v, want cleared", ev)
	}
}
