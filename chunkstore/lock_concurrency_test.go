package chunkstore

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// The writer lock admits one writer at a time, across separately opened
// stores as across processes (flock conflicts between two open files even
// in one process). A second writer asking while the first is inside must
// be told it waits (onWait) and get in only after the first left; getting
// in first is two writers inside at once.
func TestWriterLockExcludesSecondWriter(t *testing.T) {
	dir, s1 := newStore(t, false)
	s2, err := Open(dir, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()

	var inside atomic.Int32
	enter := func(who string) {
		if n := inside.Add(1); n != 1 {
			t.Errorf("%s entered the writer lock with %d writers inside", who, n)
		}
	}
	first, err := s1.LockWriter(context.Background(), "first", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	enter("first")

	waiting := make(chan LockInfo, 1)
	got := make(chan error, 1)
	go func() {
		l, err := s2.LockWriter(context.Background(), "second", time.Minute, func(i LockInfo) { waiting <- i })
		if err == nil {
			enter("second")
			inside.Add(-1)
			err = l.Unlock()
		}
		got <- err
	}()
	select {
	case info := <-waiting:
		if info.Purpose != "first" {
			t.Errorf("the waiting writer is told the holder is %+v", info)
		}
	case err := <-got:
		t.Fatalf("the second writer did not wait for the first (err %v)", err)
	}
	// Without waiting: refused at once.
	if l, err := s2.LockWriter(context.Background(), "no wait", 0, nil); !errors.Is(err, ErrLocked) {
		if l != nil {
			l.Unlock()
		}
		t.Errorf("a writer not waiting: %v, want ErrLocked", err)
	}
	inside.Add(-1)
	if err := first.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("the second writer after the first left: %v", err)
	}
}
