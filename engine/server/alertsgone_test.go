package server

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/engine"
)

// TestAlertsOfGoneSubjectsClose: the alerts of a group that is deleted
// (a failing pre-script's) and of a member taken out of its group (one
// that is gone) close by themselves at the scheduler's next look, each
// with the reason, where no later job could ever clear them.
func TestAlertsOfGoneSubjectsClose(t *testing.T) {
	f := newFixture(t)
	memC := filepath.Join(filepath.Dir(f.memA), "c")
	must(t, os.MkdirAll(memC, 0o755))
	must(t, engine.WithCatalog(f.home, time.Second, t.Logf, func(cat *engine.Catalog) error {
		if _, err := cat.EditGroup("a", week0, func(g *engine.Group) error {
			g.Members = append(g.Members, memC)
			return nil
		}); err != nil {
			return err
		}
		_, err := cat.EditGroup("b", week0, func(g *engine.Group) error {
			g.Policy.PreScript = "echo flush failed >&2; exit 1"
			return nil
		})
		return err
	}))
	must(t, os.RemoveAll(f.memA))
	a := startAPIServer(t, f.home)
	a.srv.WaitIdle()
	if got := a.srv.Alerts(); len(got) != 2 {
		t.Fatalf("alerts after the first backups: %+v, want member a's (gone) and group b's (pre-script)", got)
	}

	must(t, engine.WithCatalog(f.home, time.Second, t.Logf, func(cat *engine.Catalog) error {
		if err := cat.DeleteGroup("b"); err != nil {
			return err
		}
		_, err := cat.EditGroup("a", week0, func(g *engine.Group) error {
			g.Members = []string{memC}
			return nil
		})
		return err
	}))
	looked := a.clock.Waited()
	a.srv.wake <- struct{}{}
	<-looked
	a.srv.WaitIdle()
	if got := a.srv.Alerts(); len(got) != 0 {
		t.Errorf("alerts after group b was deleted and member a taken out: %+v, want none", got)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	reasons := map[string]string{}
	for _, e := range a.alerts {
		if e.Kind == "cleared" {
			reasons[e.Alert.Group] = e.Reason
		}
	}
	if want := "member " + f.memA + " is no longer in group a"; reasons["a"] != want {
		t.Errorf("member a's alert cleared with reason %q, want %q", reasons["a"], want)
	}
	if want := "group b was deleted"; reasons["b"] != want {
		t.Errorf("group b's alert cleared with reason %q, want %q", reasons["b"], want)
	}
}

// TestMountAlertOfOldPathCloses: a mount alert kept from before a
// restart, for a path the configuration no longer has (it was wrong and
// was fixed), closes when the mounts are supervised again, naming the
// reason; the configured mount's own alert is left to its attempts.
func TestMountAlertOfOldPathCloses(t *testing.T) {
	srv, alerts := newMountServer(t)
	old := filepath.Join(t.TempDir(), "wrong")
	ev, err := srv.alerts.fail(Alert{Job: "mount", Source: old}, errors.New("fuse: mount point is not a directory"), week0)
	must(t, err)
	if ev == nil {
		t.Fatal("no alert opened for the old path")
	}
	fm := &fakeMounts{starts: make(chan *exec.Cmd, 10)}
	path := filepath.Join(t.TempDir(), "right")
	stop := srv.SuperviseMounts([]MountConfig{{Path: path}}, MountsOptions{Start: fm.start, Check: time.Hour, StopGrace: 10 * time.Second})
	defer stop()
	awaitStart(t, fm)
	got := awaitAlert(t, alerts)
	if got.Kind != "cleared" || got.Alert.Source != old || !strings.Contains(got.Reason, "no longer in the configuration") {
		t.Fatalf("event for the old path's alert: %+v, want cleared, saying it is no longer configured", got)
	}
	if act := srv.Alerts(); len(act) != 0 {
		t.Errorf("active alerts: %+v, want none", act)
	}
}
