package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/internal/golden"
)

func memberResult(member string, err error) engine.MemberResult {
	r := engine.MemberResult{Member: member, Source: "src" + member, Job: 7, Err: err}
	if err == nil || errors.Is(err, engine.ErrWarnings) {
		r.Point = &engine.Point{}
	}
	return r
}

func backupDone(group string, rs ...engine.MemberResult) Event {
	var err error
	for _, r := range rs {
		if r.Point == nil {
			err = fmt.Errorf("%w: %s", engine.ErrMembersFailed, r.Member)
		}
	}
	return Event{Kind: "finished", Job: "backup", Group: group, Results: rs, Err: err}
}

// TestAlertsLifecycle: a failure opens an alert, a repeat counts, a good
// backup of the source clears it, an ack closes one, and what is open
// survives a reload of the file.
func TestAlertsLifecycle(t *testing.T) {
	home := t.TempDir()
	if _, err := chunkstore.Init(engine.StoreDir(home), chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	gone := &fs.PathError{Op: "lstat", Path: "/m1", Err: syscall.ENOENT}
	full := fmt.Errorf("write pack: %w", syscall.ENOSPC)
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	type step struct {
		ev   Event    // a finished job; zero: ack
		ack  uint64   // alert to ack
		want []string // the events, "kind id"
		open []string // the open alerts after it, "id job group source count"
	}
	steps := []step{
		{ev: backupDone("g", memberResult("/m1", gone), memberResult("/m2", nil)),
			want: []string{"opened 1"}, open: []string{"1 backup g src/m1 1"}},
		{ev: backupDone("g", memberResult("/m1", gone), memberResult("/m2", full)),
			want: []string{"opened 2"}, open: []string{"1 backup g src/m1 2", "2 backup g src/m2 1"}},
		// Shutdown cancellations are no failures.
		{ev: backupDone("g", memberResult("/m1", fmt.Errorf("backup: %w", ErrShutdown))),
			open: []string{"1 backup g src/m1 2", "2 backup g src/m2 1"}},
		{ev: Event{Kind: "finished", Job: "gc", Err: full},
			want: []string{"opened 3"}, open: []string{"1 backup g src/m1 2", "2 backup g src/m2 1", "3 gc   1"}},
		// A point with warnings still protects the source.
		{ev: backupDone("g", memberResult("/m1", fmt.Errorf("2 entries: %w", engine.ErrWarnings))),
			want: []string{"cleared 1"}, open: []string{"2 backup g src/m2 1", "3 gc   1"}},
		{ack: 2, want: []string{"acked 2"}, open: []string{"3 gc   1"}},
		// After an ack the same condition opens a new alert.
		{ev: backupDone("g", memberResult("/m2", full)),
			want: []string{"opened 4"}, open: []string{"3 gc   1", "4 backup g src/m2 1"}},
		{ev: Event{Kind: "finished", Job: "gc"}, want: []string{"cleared 3"}, open: []string{"4 backup g src/m2 1"}},
	}
	for i, s := range steps {
		// Each step reads the file afresh: what is open survives a restart.
		a, err := loadAlerts(home)
		must(t, err)
		now := t0.Add(time.Duration(i) * time.Hour)
		var evs []AlertEvent
		if s.ack != 0 {
			ev, err := a.ack(s.ack)
			must(t, err)
			evs = []AlertEvent{*ev}
		} else {
			evs, err = a.noteJob(s.ev, now)
			must(t, err)
		}
		var got []string
		for _, e := range evs {
			got = append(got, fmt.Sprintf("%s %d", e.Kind, e.Alert.ID))
		}
		if strings.Join(got, ",") != strings.Join(s.want, ",") {
			t.Errorf("step %d: events %q, want %q", i, got, s.want)
		}
		got = nil
		for _, x := range a.list() {
			got = append(got, fmt.Sprintf("%d %s %s %s %d", x.ID, x.Job, x.Group, x.Source, x.Count))
		}
		if strings.Join(got, ",") != strings.Join(s.open, ",") {
			t.Errorf("step %d: open %q, want %q", i, got, s.open)
		}
	}
	list, err := ReadAlerts(home)
	must(t, err)
	if len(list) != 1 || !list[0].Since.Equal(t0.Add(6*time.Hour)) || list[0].Count != 1 {
		t.Errorf("alerts read back: %+v", list)
	}
	if _, err := AckAlert(home, 99); !errors.Is(err, ErrNoAlert) {
		t.Errorf("ack of an unknown alert: %v, want ErrNoAlert", err)
	}
	if _, err := AckAlert(home, 4); err != nil {
		t.Fatal(err)
	}
	if list, _ := ReadAlerts(home); len(list) != 0 {
		t.Errorf("after AckAlert: %+v", list)
	}
	if _, err := ReadAlerts(t.TempDir()); !errors.Is(err, chunkstore.ErrNoStore) {
		t.Errorf("alerts of a directory with no store: %v, want ErrNoStore", err)
	}
}

// TestAlertRepeat: a repeated failure keeps the alert's first time and
// counts, and takes the latest error and action.
func TestAlertRepeat(t *testing.T) {
	a, err := loadAlerts(t.TempDir())
	must(t, err)
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	for i, err := range []error{syscall.ENOSPC, syscall.ENOSPC, fmt.Errorf("%w by pid 42", chunkstore.ErrLocked)} {
		if _, err := a.noteJob(backupDone("g", memberResult("/m", err)), t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	l := a.list()
	if len(l) != 1 {
		t.Fatalf("alerts: %+v, want one", l)
	}
	x := l[0]
	if x.Count != 3 || !x.Since.Equal(t0) || !x.Last.Equal(t0.Add(2*time.Minute)) || !strings.Contains(x.Error, "pid 42") || !strings.Contains(x.Action, "store lock") {
		t.Errorf("alert after three failures: %+v", x)
	}
}

func TestAlertActions(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w by pid 42 on h (backup of x)", chunkstore.ErrLocked), "holds the store lock"},
		{&fs.PathError{Op: "lstat", Path: "/m", Err: syscall.ENOENT}, "member /m is gone"},
		{fmt.Errorf("write: %w", syscall.ENOSPC), "free space"},
		{fmt.Errorf("open catalog: %w", engine.ErrCatalogBusy), "holds the catalog"},
		{os.ErrPermission, "must run as root"},
		{errors.New("pre-script exited 1"), "see job 7"},
		// A check that could not read packs: a disk to check or access
		// to give back, never a repair (it found no damage).
		{fmt.Errorf("%w: no damage found, but 1 packs recall could not read were not verified", engine.ErrVerifyIncomplete), "check the disk"},
	} {
		f := Alert{Job: "backup", Group: "g", Member: "/m", CatalogJob: 7}
		if got := suggest(&f, c.err); !strings.Contains(got, c.want) {
			t.Errorf("%v: action %q, want it to say %q", c.err, got, c.want)
		}
	}
	// Something the member's backup needs is missing, the member is
	// there: the action no longer calls the member gone. (It said so for
	// a missing exclude file.)
	there := t.TempDir()
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("the group's exclude file: %w", &fs.PathError{Op: "open", Path: "/etc/x.txt", Err: syscall.ENOENT}), "an exclude file of group g is missing"},
		{&fs.PathError{Op: "open", Path: "/elsewhere", Err: syscall.ENOENT}, "see job 7"},
	} {
		f := Alert{Job: "backup", Group: "g", Member: there, CatalogJob: 7}
		if got := suggest(&f, c.err); !strings.Contains(got, c.want) || strings.Contains(got, "is gone") {
			t.Errorf("%v (member there): action %q, want it to say %q", c.err, got, c.want)
		}
	}
}

// TestAlertsFileV1 pins the file's format.
func TestAlertsFileV1(t *testing.T) {
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	a := &alerts{file: alertsFile{Version: alertsVersion, Next: 3, Alerts: []*Alert{
		{ID: 1, Job: "backup", Group: "g", Source: "m", Member: "/m", Error: "lstat /m: no such file or directory", Action: "member /m is gone", Since: t0, Last: t0.Add(time.Hour), Count: 2, CatalogJob: 12},
		{ID: 2, Job: "gc", Error: "no space left on device", Action: "free space", Since: t0, Last: t0, Count: 1},
	}}}
	b := a.encode()
	golden.Check(t, "alerts-v1.golden", b)
	home := t.TempDir()
	must(t, os.WriteFile(filepath.Join(home, AlertsFile), b, 0o644))
	back, err := loadAlerts(home)
	must(t, err)
	if string(back.encode()) != string(b) {
		t.Errorf("read back differs:\n%s\nwant:\n%s", back.encode(), b)
	}
	must(t, os.WriteFile(filepath.Join(home, AlertsFile), []byte(`{"version": 2}`), 0o644))
	if _, err := loadAlerts(home); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("a file of version 2: %v", err)
	}
}

// TestJobResult: every report of a job (API, log, metrics, notifications)
// names its end the same way; a group job where a member failed is failed
// even though other members made points with warnings.
func TestJobResult(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{fmt.Errorf("backup: %w", engine.ErrWarnings), "warnings"},
		{fmt.Errorf("%w: %w", engine.ErrMembersFailed, engine.ErrWarnings), "failed"},
		{fmt.Errorf("backup: %w", ErrShutdown), "interrupted"},
		{fmt.Errorf("backup: %w (%w)", context.Canceled, engine.ErrWarnings), "interrupted"},
		{errors.New("disk on fire"), "failed"},
	} {
		if got := result(tc.err); got != tc.want {
			t.Errorf("result(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// A catalog found damaged and replaced by the server opens an alert (job
// catalog), which stays until acked: its groups are gone, and the server
// protects nothing until they are back. (Fix: a line in the log only.)
func TestCatalogReplacedAlert(t *testing.T) {
	f := newFixture(t)
	cat := engine.CatalogPath(f.home)
	must(t, os.Truncate(cat, 9000)) // cut short: damaged
	r := start(t, f.home, NewFakeClock(week0), nil)
	defer r.stop()
	r.srv.WaitIdle()
	as, err := ReadAlerts(f.home)
	must(t, err)
	if len(as) != 1 || as[0].Job != "catalog" || !strings.Contains(as[0].Error, engine.CatalogReplaced) || !strings.Contains(as[0].Action, "recall apply -f groups.toml") {
		t.Fatalf("alerts after the catalog was replaced: %+v", as)
	}
	r.clock.Set(week0.Add(48 * time.Hour))
	r.srv.WaitIdle()
	if as, _ := ReadAlerts(f.home); len(as) != 1 {
		t.Errorf("the catalog alert closed by itself: %+v", as)
	}
}

// A running job that waits for the store lock says whose it is in its
// view, until it has the lock (its first member starts) or ends: status
// and jobs showed "running" with no member and no word of the wait.
func TestJobViewWaiting(t *testing.T) {
	s := &Server{o: Options{Clock: NewFakeClock(week0), Log: slog.New(slog.DiscardHandler)}, hooks: hooks{nextJob: 1}}
	view := func() JobView {
		t.Helper()
		js := s.Jobs()
		if len(js) != 1 {
			t.Fatalf("jobs %+v, want one", js)
		}
		return js[0]
	}
	s.track(Event{Kind: "queued", Job: "backup", Group: "g"})
	s.track(Event{Kind: "started", Job: "backup", Group: "g"})
	s.track(Event{Kind: "waiting", Job: "backup", Group: "g", Waiting: "pid 42 on h (backup of /srv)"})
	if v := view(); v.State != "running" || v.Waiting != "pid 42 on h (backup of /srv)" {
		t.Errorf("waiting job: %+v", v)
	}
	s.track(Event{Kind: "member", Job: "backup", Group: "g", Member: "/srv"})
	if v := view(); v.Waiting != "" {
		t.Errorf("job with the lock still waits: %+v", v)
	}
}
