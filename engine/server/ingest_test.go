package server

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/internal/wsbgen"
)

// stampTree gives every file and directory under dir the modification
// time t: WSB's writes as the server's fake clock sees them.
func stampTree(t *testing.T, dir string, at time.Time) {
	t.Helper()
	must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, at, at)
	}))
}

// TestServerIngestsSources: the server looks into a registered source's
// staging tree every 30 seconds: it waits while WSB writes, ingests a
// complete image once it has settled, runs the job once for an
// incomplete image (which fails and opens an alert naming what is
// missing), again only when the tree changes, and the alert clears when
// the next complete image is ingested.
func TestServerIngestsSources(t *testing.T) {
	dir := simDir(t)
	home, staging := filepath.Join(dir, "home"), filepath.Join(dir, "staging", "srv01")
	must(t, os.MkdirAll(staging, 0o755))
	must(t, os.MkdirAll(home, 0o755))
	_, err := chunkstore.Init(engine.StoreDir(home), chunkstore.InitOptions{})
	must(t, err)
	must(t, engine.WithCatalog(home, time.Second, t.Logf, func(cat *engine.Catalog) error {
		if _, err := cat.AddSource(engine.Source{Name: "srv01", Kind: engine.KindBMR, Computer: "SRV01", Staging: staging}, week0); err != nil {
			return err
		}
		_, err := cat.CreateGroup(engine.Group{Name: "bmr", Members: []string{staging}, Policy: polB}, week0)
		return err
	}))
	vols := []wsbgen.VolumeSpec{{Letter: "C:", FS: "NTFS", Size: 16 << 20, Allocated: 2 << 20, Critical: true}}
	write := func(gen int, truncate bool, at time.Time) *wsbgen.Backup {
		b, err := wsbgen.Generate(staging, wsbgen.Options{Seed: 3, Generation: gen, Truncate: truncate, Volumes: vols})
		must(t, err)
		stampTree(t, filepath.Join(staging, "WindowsImageBackup"), at)
		return b
	}
	at := func(d time.Duration) time.Time { return week0.Add(d) }
	b0 := write(0, false, at(-time.Hour))

	clock := NewFakeClock(week0)
	r := start(t, home, clock, nil)
	defer func() {
		if r != nil {
			r.stop()
		}
	}()
	jobs := func() (ok, failed int) {
		js := jobsOf(t, home)
		return count(js, "backup", "bmr", "ok"), count(js, "backup", "bmr", "failed")
	}
	ingested := func() string {
		var src engine.Source
		must(t, engine.WithCatalog(home, time.Second, t.Logf, func(cat *engine.Catalog) (err error) {
			src, err = cat.Source("srv01")
			return err
		}))
		return src.Ingested
	}

	r.until(at(time.Hour))
	if ok, failed := jobs(); ok != 1 || failed != 0 || ingested() != filepath.Base(b0.Dir) {
		t.Fatalf("after the first hour: %d ok, %d failed, ingested %q; want generation 0 ingested once", ok, failed, ingested())
	}

	// WSB writes the next backup at 01:00; it is settled at 01:02.
	clock.Set(at(time.Hour))
	b1 := write(1, false, at(time.Hour))
	r.until(at(time.Hour + 119*time.Second))
	if ok, _ := jobs(); ok != 1 {
		t.Fatalf("an image written %s ago was ingested (settle time %s)", 119*time.Second, engine.DefaultSettle)
	}
	r.until(at(time.Hour + 151*time.Second))
	if ok, failed := jobs(); ok != 2 || failed != 0 || ingested() != filepath.Base(b1.Dir) {
		t.Fatalf("30 s after settling: %d ok, %d failed, ingested %q; want generation 1 ingested", ok, failed, ingested())
	}

	// A transfer cut short at 02:00: one failed job and an alert naming
	// what is missing, however often the server looks.
	clock.Set(at(2 * time.Hour))
	b2 := write(2, true, at(2*time.Hour))
	r.until(at(3 * time.Hour))
	if ok, failed := jobs(); ok != 2 || failed != 1 {
		t.Fatalf("an hour after a cut transfer: %d ok, %d failed; want one failed job", ok, failed)
	}
	alerts := r.srv.Alerts()
	if len(alerts) != 1 || alerts[0].Source != "srv01" || alerts[0].Count != 1 {
		t.Fatalf("alerts %+v; want one of source srv01", alerts)
	}
	if !strings.Contains(alerts[0].Action, "wbadmin start backup") {
		t.Errorf("alert's action %q does not say to run the backup again", alerts[0].Action)
	}
	for _, m := range b2.Missing {
		if !strings.Contains(alerts[0].Error, filepath.ToSlash(m)) {
			t.Errorf("alert %q does not name %s", alerts[0].Error, m)
		}
	}
	// Something writes into the tree again, still incomplete: one more run.
	clock.Set(at(3 * time.Hour))
	stampTree(t, filepath.Join(staging, "WindowsImageBackup"), at(3*time.Hour))
	r.until(at(4 * time.Hour))
	if _, failed := jobs(); failed != 2 {
		t.Errorf("after the tree changed: %d failed jobs, want 2", failed)
	}

	// The next complete backup is ingested and clears the alert.
	clock.Set(at(4 * time.Hour))
	b3 := write(3, false, at(4*time.Hour))
	r.until(at(5 * time.Hour))
	if ok, _ := jobs(); ok != 3 || ingested() != filepath.Base(b3.Dir) {
		t.Errorf("after a complete backup: %d ok, ingested %q, want %s", ok, ingested(), filepath.Base(b3.Dir))
	}
	if a := r.srv.Alerts(); len(a) != 0 {
		t.Errorf("alerts after a good ingestion: %+v", a)
	}
	r.stop()
	r = nil
	pts, err := pointsOfSource(home, "srv01")
	must(t, err)
	if len(pts) != 3 {
		t.Errorf("%d points of srv01, want 3", len(pts))
	}
}

func pointsOfSource(home, source string) ([]*engine.Point, error) {
	st, err := engine.Open(engine.StoreDir(home), chunkstore.OpenOptions{})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	all, err := st.Reader().Points()
	var out []*engine.Point
	for _, p := range all {
		if p.Source == source {
			out = append(out, p)
		}
	}
	return out, err
}
