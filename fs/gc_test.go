package fs

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
)

// Garbage collection under a mounted tree: the forgotten point goes from
// the tree at the next update; a file of it already open fails its reads
// (EIO, logged with the path), never giving other bytes; a file of a kept
// point whose chunks the collection moved to a new pack keeps reading.
func TestTreeAfterGC(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	a1, b := randomBytes(11, 3<<20), randomBytes(12, 200<<10)
	writeFile(t, filepath.Join(src, "a"), a1, 0o644)
	writeFile(t, filepath.Join(src, "b"), b, 0o644)
	p1 := ts.backup(src, "s", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	writeFile(t, filepath.Join(src, "a"), randomBytes(13, 3<<20), 0o644)
	ts.backup(src, "s", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))

	tr, _, log := ts.faultyTree(t, Options{})
	pts := tr.Source("s").Points()
	old, kept := pts[0], pts[1]
	hOld, err := lookupPath(t, old.Root(), "a").Open()
	if err != nil {
		t.Fatal(err)
	}
	keptB := lookupPath(t, kept.Root(), "b")

	// Another process forgets the first point and collects: the pack of
	// the first backup is mostly dead (a), so b is copied out and the
	// pack deleted.
	if err := ts.forget(p1.ID); err != nil {
		t.Fatal(err)
	}
	gcStore, err := engine.Open(ts.dir, chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := engine.GC(context.Background(), gcStore, engine.GCOptions{})
	gcStore.Close()
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksRewritten == 0 || rep.PacksDeleted < 2 {
		t.Fatalf("gc did not rewrite and delete: %+v", rep)
	}

	if _, err := tr.Update(); err != nil {
		t.Fatal(err)
	}
	if n := len(tr.Source("s").Points()); n != 1 {
		t.Errorf("after gc the tree shows %d points, want 1", n)
	}
	got, err := readAll(t, keptB, 64<<10)
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("file of the kept point whose chunk moved: %d bytes, %v", len(got), err)
	}
	buf := make([]byte, 64<<10)
	n, err := hOld.ReadAt(buf, 0)
	if err == nil || n != 0 || !errors.Is(err, ErrDamaged) || errno(err) != syscall.EIO {
		t.Fatalf("read of an open file of the collected point: %d bytes, %v (errno %v)", n, err, errno(err))
	}
	if lines := strings.Join(log.all(), "\n"); !strings.Contains(lines, "s/"+old.Name+"/a") {
		t.Errorf("the failed read is not logged with its path:\n%s", lines)
	}
}
