package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Write sessions of different sources hold the store lock together and
// write at once; each one's blobs are durable and indexed by its own
// Flush, and all of them read back.
func TestSessionsOfDifferentSourcesWriteAtOnce(t *testing.T) {
	dir, s := newStore(t, true)
	s2 := reopen(t, dir) // another process, as far as locks go
	var wg sync.WaitGroup
	saved := make([]map[ID][]byte, 2)
	// Both locks are held before either writes: the sessions overlap.
	locks := make([]*Lock, 2)
	for i, st := range []*Store{s, s2} {
		l, err := st.LockSession(bg, []string{"/srv/a", "/srv/b"}[i], "backup", 0, nil)
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		locks[i] = l
	}
	for i, l := range locks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer l.Unlock()
			w, err := l.NewWriter()
			if err != nil {
				t.Error(err)
				return
			}
			saved[i] = map[ID][]byte{}
			for j := range 5 {
				data := randBytes(int64(10*i+j), 50_000)
				id := l.Store().Hash(data)
				if _, err := w.SaveBlob(DataBlob, id, data); err != nil {
					t.Error(err)
					return
				}
				saved[i][id] = data
			}
			if err := w.Flush(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	s3 := reopen(t, dir)
	for _, m := range saved {
		for id, data := range m {
			if got, err := s3.LoadBlob(id, nil); err != nil || !bytes.Equal(got, data) {
				t.Errorf("blob %s: %v", id.Short(), err)
			}
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Errorf("temp areas left after both sessions: %d", len(ents))
	}
}

// lockAttempt takes a lock in a goroutine, reporting when it is told to
// wait and when it is in.
type lockAttempt struct {
	waiting chan LockInfo
	got     chan *Lock
	err     chan error
}

func attempt(take func(context.Context, time.Duration, func(LockInfo)) (*Lock, error)) *lockAttempt {
	a := &lockAttempt{waiting: make(chan LockInfo, 1), got: make(chan *Lock, 1), err: make(chan error, 1)}
	go func() {
		l, err := take(bg, time.Minute, func(i LockInfo) { a.waiting <- i })
		if err != nil {
			a.err <- err
			return
		}
		a.got <- l
	}()
	return a
}

// mustWait checks that the attempt was told to wait for holder, and is
// not in.
func (a *lockAttempt) mustWait(t *testing.T, holderPurpose string) {
	t.Helper()
	select {
	case i := <-a.waiting:
		if i.Purpose != holderPurpose {
			t.Errorf("told to wait for %+v, want the holder %q", i, holderPurpose)
		}
	case l := <-a.got:
		l.Unlock()
		t.Fatal("got the lock while it was held in a conflicting mode")
	case err := <-a.err:
		t.Fatal(err)
	}
}

// mustGet waits for the attempt to get in (it must, once the holder left).
func (a *lockAttempt) mustGet(t *testing.T) *Lock {
	t.Helper()
	select {
	case l := <-a.got:
		return l
	case err := <-a.err:
		t.Fatal(err)
	}
	return nil
}

func TestLockModes(t *testing.T) {
	session := func(s *Store, source, purpose string) func(context.Context, time.Duration, func(LockInfo)) (*Lock, error) {
		return func(ctx context.Context, wait time.Duration, onWait func(LockInfo)) (*Lock, error) {
			return s.LockSession(ctx, source, purpose, wait, onWait)
		}
	}
	exclusive := func(s *Store, purpose string) func(context.Context, time.Duration, func(LockInfo)) (*Lock, error) {
		return func(ctx context.Context, wait time.Duration, onWait func(LockInfo)) (*Lock, error) {
			return s.LockExclusive(ctx, purpose, wait, onWait)
		}
	}
	cases := []struct {
		name          string
		first, second func(s *Store) func(context.Context, time.Duration, func(LockInfo)) (*Lock, error)
	}{
		{"a second session of the same source waits",
			func(s *Store) func(context.Context, time.Duration, func(LockInfo)) (*Lock, error) {
				return session(s, "/srv/a", "first")
			},
			func(s *Store) func(context.Context, time.Duration, func(LockInfo)) (*Lock, error) {
				return session(s, "/srv/a", "second")
			}},
		{"exclusive waits for a session",
			func(s *Store) func(context.Context, time.Duration, func(LockInfo)) (*Lock, error) {
				return session(s, "/srv/a", "first")
			},
			func(s *Store) func(context.Context, time.Duration, func(LockInfo)) (*Lock, error) {
				return exclusive(s, "repair")
			}},
		{"a session waits for exclusive",
			func(s *Store) func(context.Context, time.Duration, func(LockInfo)) (*Lock, error) {
				return exclusive(s, "first")
			},
			func(s *Store) func(context.Context, time.Duration, func(LockInfo)) (*Lock, error) {
				return session(s, "/srv/b", "backup")
			}},
		{"LockWriter is exclusive",
			func(s *Store) func(context.Context, time.Duration, func(LockInfo)) (*Lock, error) {
				return session(s, "/srv/a", "first")
			},
			func(s *Store) func(context.Context, time.Duration, func(LockInfo)) (*Lock, error) {
				return func(ctx context.Context, wait time.Duration, onWait func(LockInfo)) (*Lock, error) {
					return s.LockWriter(ctx, "forget", wait, onWait)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, s := newStore(t, false)
			s2 := reopen(t, dir)
			first, err := c.first(s)(bg, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Without waiting: refused at once, naming the holder.
			if l, err := c.second(s2)(bg, 0, nil); !errors.Is(err, ErrLocked) || !bytes.Contains([]byte(err.Error()), []byte("first")) {
				if l != nil {
					l.Unlock()
				}
				t.Fatalf("not waiting: %v, want ErrLocked naming the holder", err)
			}
			a := attempt(c.second(s2))
			a.mustWait(t, "first")
			first.Unlock()
			a.mustGet(t).Unlock()
		})
	}
	// Sessions of other sources, and one session beside another's
	// source, do not wait.
	_, s := newStore(t, false)
	a, err := s.LockSession(bg, "/srv/a", "a", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Unlock()
	b, err := s.LockSession(bg, "/srv/b", "b", 0, nil)
	if err != nil {
		t.Fatalf("a session of another source: %v", err)
	}
	b.Unlock()
	if _, err := a.RebuildIndex(true); err == nil || !bytes.Contains([]byte(err.Error()), []byte("exclusive")) {
		t.Errorf("repair under a session's shared lock: %v", err)
	}
}

// What a crashed session left being written is cleaned by the next
// session of the same source, and left alone by sessions of others (it
// might be theirs, still writing).
func TestSessionTempAreas(t *testing.T) {
	dir, s := newStore(t, false)
	crashed := func(source string) string {
		l, err := s.LockSession(bg, source, "backup", 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		w, err := l.NewWriter()
		if err != nil {
			t.Fatal(err)
		}
		data := randBytes(1, 1000)
		if _, err := w.SaveBlob(DataBlob, s.Hash(data), data); err != nil {
			t.Fatal(err)
		}
		// Dies without Abort or Unlock's cleaning: drop only the locks.
		for _, u := range l.held {
			u.Unlock()
		}
		return filepath.Join(dir, "tmp", l.tag)
	}
	area := crashed("/srv/a")
	if ents, _ := os.ReadDir(area); len(ents) != 1 {
		t.Fatalf("the crashed session's temp area has %d files, want its open pack", len(ents))
	}
	other, err := s.LockSession(bg, "/srv/b", "backup", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	other.Unlock()
	if ents, _ := os.ReadDir(area); len(ents) != 1 {
		t.Errorf("a session of another source cleaned the temp area: %d files left", len(ents))
	}
	same, err := s.LockSession(bg, "/srv/a", "backup", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer same.Unlock()
	if _, err := os.Stat(area); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the next session of the source left the temp area: %v", err)
	}
}
