package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/backendtest"
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
