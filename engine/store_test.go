package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
)

// openSession takes a write session on an open store; the caller closes it.
func openSession(t testing.TB, st *chunkstore.Store, o SessionOptions) *Session {
	t.Helper()
	s, err := NewStore(st).Session(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Reading is a type: restore, verify and the recovery tree get a Reader,
// so nothing a Reader or its StoreReader offers may write or lead to what
// writes.
func TestReaderCannotWrite(t *testing.T) {
	writers := map[reflect.Type]bool{
		reflect.TypeOf(&chunkstore.Store{}):  true,
		reflect.TypeOf(&chunkstore.Lock{}):   true,
		reflect.TypeOf(&chunkstore.Writer{}): true,
		reflect.TypeOf(&Store{}):             true,
		reflect.TypeOf(&Session{}):           true,
	}
	writes := []string{"LockWriter", "NewWriter", "SaveBlob", "SavePoint", "RemovePoint", "CommitPoint", "Close", "Store", "Session",
		"RebuildIndex", "SalvagePacks", "HealConfig", "ChangePassword"}
	for _, typ := range []reflect.Type{reflect.TypeOf((*StoreReader)(nil)).Elem(), reflect.TypeOf(&Reader{})} {
		for _, name := range writes {
			if _, ok := typ.MethodByName(name); ok {
				t.Errorf("%v has write method %s", typ, name)
			}
		}
		for i := 0; i < typ.NumMethod(); i++ {
			m := typ.Method(i)
			ft := m.Type
			for j := 0; j < ft.NumOut(); j++ {
				if writers[ft.Out(j)] {
					t.Errorf("%v.%s returns %v, which can write", typ, m.Name, ft.Out(j))
				}
			}
		}
	}
}

// Sessions of different sources share the store; a second session of the
// same source, and an exclusive one, wait up to their wait, are told whom
// they wait for, and then fail naming the holder.
func TestSessionLock(t *testing.T) {
	ts := newTestStore(t)
	s := NewStore(ts.st)
	first, err := s.Session(context.Background(), SessionOptions{Purpose: "backup of /first", Source: "first"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.Session(context.Background(), SessionOptions{Purpose: "backup of /other", Source: "other",
		LockOptions: LockOptions{Wait: 0}})
	if err != nil {
		t.Fatalf("a session of another source: %v, want it beside the first", err)
	}
	for _, o := range []SessionOptions{
		{Purpose: "backup of /first again", Source: "first"},
		{Purpose: "repair", Exclusive: true},
	} {
		var told []chunkstore.LockInfo
		o.LockOptions = LockOptions{Wait: 150 * time.Millisecond, OnWait: func(h chunkstore.LockInfo) { told = append(told, h) }}
		_, err = s.Session(context.Background(), o)
		if !errors.Is(err, chunkstore.ErrLocked) || !strings.Contains(err.Error(), "backup of /") {
			t.Errorf("%s: %v, want ErrLocked naming a holder", o.Purpose, err)
		}
		if len(told) != 1 || !strings.HasPrefix(told[0].Purpose, "backup of /") {
			t.Errorf("%s: told %+v, want a holder once", o.Purpose, told)
		}
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := s.Session(context.Background(), SessionOptions{Purpose: "repair", Exclusive: true})
	if err != nil {
		t.Fatalf("after both closed: %v", err)
	}
	second.Close()
}

// What must run alone refuses a shared session.
func TestExclusiveOnly(t *testing.T) {
	ts := newTestStore(t)
	s := openSession(t, ts.st, SessionOptions{Purpose: "test"})
	defer s.Close()
	for name, run := range map[string]func() error{
		"repair index":      func() error { _, err := RepairIndex(context.Background(), s, RepairOptions{}); return err },
		"repair packs":      func() error { _, err := RepairPacks(context.Background(), s, RepairOptions{}); return err },
		"repair points":     func() error { _, err := RepairPoints(context.Background(), s, RepairPointsOptions{}); return err },
		"change passphrase": func() error { return s.ChangePassword("a", "b") },
	} {
		if err := run(); !errors.Is(err, ErrNotExclusive) {
			t.Errorf("%s in a shared session: %v, want ErrNotExclusive", name, err)
		}
	}
}

// A backup writes points of the source its session was opened for only.
func TestBackupSessionSource(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	writeFiles(t, src, map[string][]byte{"f": []byte("x")})
	source, err := BackupSource(src, "")
	if err != nil || source != SourceName(src) {
		t.Fatalf("BackupSource: %q, %v; want %q", source, err, SourceName(src))
	}
	if _, err := BackupSource(src, "a/b"); !errors.Is(err, ErrBadOption) {
		t.Errorf("BackupSource with an invalid name: %v", err)
	}
	s := openSession(t, ts.st, SessionOptions{Purpose: "test", Source: "other", Blobs: true})
	defer s.Close()
	if p, err := Backup(context.Background(), s, BackupOptions{Path: src}); err == nil || p != nil {
		t.Errorf("backup of %s in a session of source other: %v, %v", source, p, err)
	}
	if ids, _ := ts.r.ListPoints(); len(ids) != 0 {
		t.Errorf("%d points written", len(ids))
	}
}

func TestForget(t *testing.T) {
	ts := newTestStore(t)
	s := NewStore(ts.st)
	src := t.TempDir()
	writeFiles(t, src, map[string][]byte{"f": []byte("x")})
	old, err := ts.backup(BackupOptions{Path: src, Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, src, map[string][]byte{"f": []byte("y")})
	latest, err := ts.backup(BackupOptions{Path: src, Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	bad := ts.st.Hash([]byte("damaged manifest"))
	if err := os.WriteFile(filepath.Join(ts.st.Dir(), "points", bad.String()), []byte("not this id's bytes"), 0o600); err != nil {
		t.Fatal(err)
	}

	if _, err := s.Forget(context.Background(), "0000", "", LockOptions{}); !errors.Is(err, chunkstore.ErrNotFound) {
		t.Errorf("forget of no point: %v", err)
	}
	f, err := s.Forget(context.Background(), "latest", "s", LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Point.ID != latest.ID || len(f.Before) != 3 {
		t.Errorf("forgot %s with %d points before, want %s with 3", f.Point.ID.Short(), len(f.Before), latest.ID.Short())
	}
	f, err = s.Forget(context.Background(), bad.String()[:12], "", LockOptions{})
	if err != nil {
		t.Fatalf("forget of a damaged manifest: %v", err)
	}
	if f.Point.ID != bad || f.Point.Damaged == "" || f.Before != nil {
		t.Errorf("forgot %+v, want the damaged point %s", f.Point, bad.Short())
	}
	ids, err := ts.r.ListPoints()
	if err != nil || len(ids) != 1 || ids[0] != old.ID {
		t.Errorf("left %v (%v), want only %s", ids, err, old.ID.Short())
	}
	// Forgetting takes the lock: it waits for a session, then gives up.
	held := openSession(t, ts.st, SessionOptions{Purpose: "backup of " + src})
	defer held.Close()
	if _, err := s.Forget(context.Background(), old.ID.String(), "", LockOptions{}); !errors.Is(err, chunkstore.ErrLocked) {
		t.Errorf("forget while a session is open: %v, want ErrLocked", err)
	}
	if _, err := ts.r.LoadPoint(old.ID); err != nil {
		t.Errorf("point gone though the lock was not taken: %v", err)
	}
}

func TestRunJob(t *testing.T) {
	home := t.TempDir()
	var warned []string
	warn := func(f string, a ...any) { warned = append(warned, fmt.Sprintf(f, a...)) }
	// A home without a store gets no catalog.
	if _, err := RunJob(home, &Job{Kind: "verify"}, warn, func() (*Point, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(CatalogPath(home)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("catalog made in a home without a store: %v", err)
	}
	if _, err := chunkstore.Init(StoreDir(home), chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	pt := &Point{ID: chunkstore.ID{1}, Source: "s", Errors: []PathError{{Path: "x", Error: "unreadable"}}}
	boom := errors.New("boom")
	for _, tc := range []struct {
		p      *Point
		err    error
		status string
	}{
		{nil, nil, "ok"},
		{pt, fmt.Errorf("%w: 1 entry", ErrWarnings), "warnings"},
		{nil, boom, "failed"},
	} {
		p, err := RunJob(home, &Job{Kind: "backup", Path: "/src"}, warn, func() (*Point, error) { return tc.p, tc.err })
		if p != tc.p || err != tc.err {
			t.Errorf("RunJob returned %v, %v; want what the job returned", p, err)
		}
	}
	var jobs []Job
	if err := WithCatalog(home, time.Second, warn, func(c *Catalog) (err error) { jobs, err = c.Jobs(0); return err }); err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 3 {
		t.Fatalf("%d jobs recorded, want 3", len(jobs))
	}
	byStatus := map[string]Job{}
	for _, j := range jobs {
		byStatus[j.Status] = j
		if j.Finished.Before(j.Started) || j.Kind != "backup" {
			t.Errorf("job %+v", j)
		}
	}
	if j := byStatus["warnings"]; j.Point != pt.ID.String() || j.Source != "s" || j.Warnings != 1 {
		t.Errorf("warnings job %+v, want the point's id, source and warnings", j)
	}
	if j := byStatus["failed"]; j.Error != "boom" {
		t.Errorf("failed job %+v, want its error", j)
	}
	if _, ok := byStatus["ok"]; !ok {
		t.Errorf("no ok job in %+v", jobs)
	}
	if len(warned) != 0 {
		t.Errorf("warnings %q", warned)
	}
}
