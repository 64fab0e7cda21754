package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/backendtest"
	"github.com/recall-backup/recall/internal/testskip"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		b, err := Create(filepath.Join(t.TempDir(), "store"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// A holder that writes its info into the lock file itself (a release that
// knew only the exclusive lock) is named; a holder file nobody holds (its
// holder died) is not, and is removed.
func TestLockHolders(t *testing.T) {
	b, err := Create(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(b.Location(), "locks")
	dead := filepath.Join(dir, "writer.1-dead")
	if err := os.WriteFile(dead, []byte("dead holder"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "writer"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("old release"), 0)
	_, err = b.Lock(context.Background(), "writer", backend.Shared, []byte("new"))
	var le *backend.LockedError
	if !errors.As(err, &le) || len(le.Holders) != 1 || string(le.Holders[0]) != "old release" {
		t.Fatalf("lock held by an old release: %v", err)
	}
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead holder's file was kept: %v", err)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	l, err := b.Lock(context.Background(), "writer", backend.Exclusive, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "writer")); string(got) != "x" {
		t.Errorf("an exclusive holder left %q in the lock file, want its info", got)
	}
	l.Unlock()
	if got, _ := os.ReadFile(filepath.Join(dir, "writer")); len(got) != 0 {
		t.Errorf("the lock file after unlock: %q", got)
	}
}

// die does to a held lock what the kernel does when its holder is killed
// with -9: its descriptors close, so its flocks go, and nothing else
// happens (no Unlock removes its holder file).
func die(t *testing.T, u backend.Unlocker) {
	t.Helper()
	l := u.(*lock)
	l.holder.Close()
	l.f.Close()
}

// lockDirNames lists the files of the locks directory.
func lockDirNames(t *testing.T, b *Backend) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(b.Location(), "locks"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// Holders killed with -9 leave nothing that piles up: taking the lock
// (shared or exclusive) removes their holder files and keeps the living
// holders' ones; a lock taken exclusively, removed and released leaves no
// file at all (what garbage collection does to a dead session's
// registration).
func TestLockDeadHoldersRemoved(t *testing.T) {
	ctx := context.Background()
	b, err := Create(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		reg, err := b.Lock(ctx, "session-abc", backend.Exclusive, []byte("session"))
		if err != nil {
			t.Fatal(err)
		}
		die(t, reg)
		s1, err := b.Lock(ctx, "store", backend.Shared, []byte("dies"))
		if err != nil {
			t.Fatal(err)
		}
		die(t, s1)
		living, err := b.Lock(ctx, "store", backend.Shared, []byte("lives"))
		if err != nil {
			t.Fatal(err)
		}
		// Taking the store lock swept the dead shared holder.
		var storeHolders int
		for _, n := range lockDirNames(t, b) {
			if strings.HasPrefix(n, "store.") {
				storeHolders++
			}
		}
		if storeHolders != 1 {
			t.Fatalf("round %d: %d holder files of the store lock with one living holder: %v", round, storeHolders, lockDirNames(t, b))
		}
		probe, err := b.Lock(ctx, "session-abc", backend.Exclusive, []byte("probe"))
		if err != nil {
			t.Fatalf("round %d: the lock of a dead holder: %v", round, err)
		}
		if err := b.Remove(ctx, backend.Handle{Type: backend.Locks, Name: "session-abc"}); err != nil {
			t.Fatal(err)
		}
		probe.Unlock()
		living.Unlock()
		want := []string{"store"}
		if got := lockDirNames(t, b); !slices.Equal(got, want) {
			t.Fatalf("round %d: locks/ holds %v, want %v", round, got, want)
		}
	}
}

// A holder's temp file left by a process killed between its creation and
// its rename is removed by the next lock, once it is a minute old and no
// one holds it; a younger one may be a holder on its way, and stays.
func TestDeadHolderTempRemoved(t *testing.T) {
	dir := t.TempDir()
	b, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	locks := filepath.Join(dir, "locks")
	os.MkdirAll(locks, 0o700)
	old, young := filepath.Join(locks, ".tmp-holder-1"), filepath.Join(locks, ".tmp-holder-2")
	for _, p := range []string{old, young} {
		if err := os.WriteFile(p, []byte(`{"pid":1}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-2 * time.Minute)
	os.Chtimes(old, long, long)
	u, err := b.Lock(context.Background(), "writer", backend.Shared, []byte("me"))
	if err != nil {
		t.Fatal(err)
	}
	u.Unlock()
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead holder's temp file a minute old stays: %v", err)
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("a young temp file was removed: %v", err)
	}
}

// CleanTemp, which the store's exclusive lock calls, removes the temp
// files killed writers left beside the files they were writing, gc's
// plan's included, and nothing else.
func TestCleanTempRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	b, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left, kept []string
	for _, d := range []string{"", "index", "points", "gc"} {
		os.MkdirAll(filepath.Join(dir, d), 0o700)
		tmp, own := filepath.Join(dir, d, ".tmp-plan-123"), filepath.Join(dir, d, "plan")
		os.WriteFile(tmp, []byte("x"), 0o600)
		os.WriteFile(own, []byte("x"), 0o600)
		left, kept = append(left, tmp), append(kept, own)
	}
	if err := b.CleanTemp(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	for _, p := range left {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s stays: %v", p, err)
		}
	}
	for _, p := range kept {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
}

// The reserve is set aside once, given up by Release, and a file system
// without room for it gets none: backend.ErrNoSpace, and no temp file
// left holding part of it.
func TestReserve(t *testing.T) {
	if os.Geteuid() != 0 {
		testskip.Skip(t, "needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=8m"); err != nil {
		testskip.Skip(t, "mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	b, err := Create(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	free := func() int64 {
		var st syscall.Statfs_t
		syscall.Statfs(dir, &st)
		return int64(st.Bavail) * st.Bsize
	}
	f0 := free()
	for range 2 {
		if err := b.Reserve(ctx, 4<<20); err != nil {
			t.Fatal(err)
		}
	}
	if got := f0 - free(); got != 4<<20 {
		t.Errorf("reserve took %d bytes, want %d", got, 4<<20)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx); err != nil {
		t.Errorf("release without a reserve: %v", err)
	}
	if got := free(); got != f0 {
		t.Errorf("after release %d bytes free, want %d", got, f0)
	}
	// A file system with less room than the reserve gets what it has
	// free, and ErrNoSpace says the reserve is short. Before, it got
	// none: a collection that failed on a full store (which gives up its
	// reserve and writes a little) left it with no reserve for good, and
	// no later collection had room to write its plan.
	reserve := filepath.Join(b.dir, reserveName)
	size := func() int64 {
		fi, err := os.Stat(reserve)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	if err := b.Reserve(ctx, 16<<20); !errors.Is(err, backend.ErrNoSpace) || !strings.Contains(err.Error(), b.dir) {
		t.Errorf("reserve larger than the file system: %v", err)
	}
	if ents, _ := filepath.Glob(filepath.Join(b.dir, ".tmp-*")); len(ents) != 0 || size() < f0-64<<10 || free() > 64<<10 {
		t.Errorf("a reserve that did not fit whole: left %v, %d bytes set aside, %d free of %d", ents, size(), free(), f0)
	}
	// It never shrinks, and grows in place once there is room.
	short := size()
	if err := b.Reserve(ctx, 16<<20); !errors.Is(err, backend.ErrNoSpace) || size() != short {
		t.Errorf("reserve again on a full file system: %v, %d bytes set aside, want %d", err, size(), short)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.Release(ctx))
	filler := filepath.Join(dir, "filler")
	must(os.WriteFile(filler, make([]byte, 6<<20), 0o600))
	if err := b.Reserve(ctx, 4<<20); !errors.Is(err, backend.ErrNoSpace) || size() == 0 || size() >= 4<<20 {
		t.Errorf("reserve with %d bytes free: %v, %d set aside", f0-6<<20, err, size())
	}
	must(os.Remove(filler))
	must(b.Reserve(ctx, 4<<20))
	if got := size(); got != 4<<20 {
		t.Errorf("reserve grown once there is room: %d bytes, want %d", got, 4<<20)
	}
}
