package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/local"
)

// losingBackend hands out locks that a test can make lost, as a remote
// lock whose refreshes failed is.
type losingBackend struct {
	backend.Backend
	mu    sync.Mutex
	locks []*losableLock
}

type losableLock struct {
	backend.Unlocker
	name string
	once sync.Once
	ch   chan struct{}
}

func (l *losableLock) Lost() <-chan struct{} { return l.ch }
func (l *losableLock) lose()                 { l.once.Do(func() { close(l.ch) }) }

var _ backend.LostNotifier = (*losableLock)(nil)

func (b *losingBackend) Lock(ctx context.Context, name string, mode backend.LockMode, info []byte) (backend.Unlocker, error) {
	u, err := b.Backend.Lock(ctx, name, mode, info)
	if err != nil {
		return nil, err
	}
	l := &losableLock{Unlocker: u, name: name, ch: make(chan struct{})}
	b.mu.Lock()
	b.locks = append(b.locks, l)
	b.mu.Unlock()
	return l, nil
}

// loseAll makes every lock handed out so far lost.
func (b *losingBackend) loseAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.locks {
		l.lose()
	}
}

// loseSessions makes the session registrations handed out so far lost.
func (b *losingBackend) loseSessions() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.locks {
		if strings.HasPrefix(l.name, sessionPrefix) {
			l.lose()
		}
	}
}

// A session whose registration alone is lost has lost its lock: garbage
// collection may take it for ended and delete packs it relies on. So for
// a copy's session held without opening the store.
func TestSessionRegistrationLost(t *testing.T) {
	for _, held := range []string{"LockSession", "HoldSession"} {
		t.Run(held, func(t *testing.T) {
			dir, _ := newStore(t, false)
			be := &losingBackend{Backend: local.Open(dir)}
			var lost func() error
			if held == "LockSession" {
				s, err := OpenBackend(be, OpenOptions{})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				l, err := s.LockSession(bg, "/srv", "backup", 0, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Unlock()
				lost = l.Lost
			} else {
				h, err := HoldSession(bg, be, "/srv", "copy", 0, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer h.Unlock()
				lost = h.Lost
			}
			if err := lost(); err != nil {
				t.Fatalf("Lost while held: %v", err)
			}
			be.loseSessions()
			if err := lost(); !errors.Is(err, ErrLockLost) {
				t.Fatalf("Lost after the registration was lost: %v, want ErrLockLost", err)
			}
		})
	}
}

// A writer whose lock is lost writes nothing more: the next blob, the
// pack it would finish and Flush fail with ErrLockLost; what was flushed
// before stays readable; a new writer is refused.
func TestLockLostStopsWrites(t *testing.T) {
	for _, exclusive := range []bool{false, true} {
		t.Run(map[bool]string{false: "session", true: "exclusive"}[exclusive], func(t *testing.T) {
			dir, _ := newStore(t, false)
			be := &losingBackend{Backend: local.Open(dir)}
			s, err := OpenBackend(be, OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var l *Lock
			if exclusive {
				l, err = s.LockExclusive(bg, "repair", 0, nil)
			} else {
				l, err = s.LockSession(bg, "/srv", "backup", 0, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l.Unlock()
			w, err := l.NewWriter()
			if err != nil {
				t.Fatal(err)
			}
			before := bytes.Repeat([]byte("kept"), 1000)
			if _, err := w.SaveBlob(DataBlob, s.Hash(before), before); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := l.Lost(); err != nil {
				t.Fatalf("Lost before the lock is lost: %v", err)
			}
			unflushed := bytes.Repeat([]byte("open"), 1000)
			if _, err := w.SaveBlob(DataBlob, s.Hash(unflushed), unflushed); err != nil {
				t.Fatal(err)
			}
			be.loseAll()
			after := bytes.Repeat([]byte("late"), 1000)
			if _, err := w.SaveBlob(DataBlob, s.Hash(after), after); !errors.Is(err, ErrLockLost) {
				t.Errorf("SaveBlob after the lock was lost: %v, want ErrLockLost", err)
			}
			if err := w.Flush(); !errors.Is(err, ErrLockLost) {
				t.Errorf("Flush after the lock was lost: %v, want ErrLockLost", err)
			}
			if _, err := l.NewWriter(); !errors.Is(err, ErrLockLost) {
				t.Errorf("NewWriter after the lock was lost: %v, want ErrLockLost", err)
			}
			r, err := Open(dir, OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if got, err := r.LoadBlob(s.Hash(before), nil); err != nil || !bytes.Equal(got, before) {
				t.Errorf("blob flushed before the loss: %v", err)
			}
			for _, b := range [][]byte{unflushed, after} {
				if r.Has(s.Hash(b)) {
					t.Errorf("a blob saved around the loss reached the store")
				}
			}
		})
	}
}

// The waits between lock attempts are random, grow, and stay within
// their bounds.
func TestLockRetryWait(t *testing.T) {
	cases := []struct {
		n        int
		min, max time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 400 * time.Millisecond, 800 * time.Millisecond},
		{5, time.Second, 2 * time.Second},
		{40, time.Second, 2 * time.Second},
	}
	for _, c := range cases {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := lockRetryWait(c.n)
			if d < c.min || d > c.max {
				t.Fatalf("lockRetryWait(%d) = %v, want within [%v, %v]", c.n, d, c.min, c.max)
			}
			seen[d] = true
		}
		if len(seen) < 50 {
			t.Errorf("lockRetryWait(%d): %d distinct waits of 200: not random", c.n, len(seen))
		}
	}
}

// hangingPoints is a backend whose saves of points hang until their
// context is done, as a remote backend's retries against an unreachable
// gateway go on for minutes.
type hangingPoints struct {
	*losingBackend
	saving chan struct{}
}

func (b *hangingPoints) Save(ctx context.Context, h backend.Handle, data []byte) error {
	if h.Type != backend.Points {
		return b.losingBackend.Save(ctx, h, data)
	}
	b.saving <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

// A point being saved when the lock is lost is abandoned at once, with
// ErrLockLost, rather than written later beside another holder.
func TestSavePointStopsAtLost(t *testing.T) {
	dir, _ := newStore(t, false)
	lb := &losingBackend{Backend: local.Open(dir)}
	be := &hangingPoints{losingBackend: lb, saving: make(chan struct{}, 1)}
	s, err := OpenBackend(be, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.LockSession(bg, "/srv", "backup", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := l.SavePoint([]byte("manifest"))
		done <- err
	}()
	<-be.saving
	lb.loseAll()
	select {
	case err := <-done:
		if !errors.Is(err, ErrLockLost) {
			t.Fatalf("SavePoint when the lock was lost: %v, want ErrLockLost", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SavePoint went on 10 s after the lock was lost")
	}
	if _, err := l.SavePoint([]byte("manifest")); !errors.Is(err, ErrLockLost) {
		t.Fatalf("SavePoint after the lock was lost: %v, want ErrLockLost", err)
	}
}

// staleBackend is a backend whose locks go stale, as package s3's do.
type staleBackend struct{ backend.Backend }

func (staleBackend) LockStale() time.Duration { return 30 * time.Minute }

// remoteOf wraps a backend as a cache of it does.
type remoteOf struct{ backend.Backend }

func (r remoteOf) Remote() backend.Backend { return r.Backend }

// A busy lock on a store whose locks go stale says when a dead holder's
// frees itself, and where it is; a local store's (flock) says nothing of it.
func TestBusyLockSaysStale(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wrap  func(backend.Backend) backend.Backend
		stale bool
	}{
		{"local", func(b backend.Backend) backend.Backend { return b }, false},
		{"stale", func(b backend.Backend) backend.Backend { return staleBackend{b} }, true},
		{"cached", func(b backend.Backend) backend.Backend { return remoteOf{staleBackend{b}} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := newStore(t, false)
			s, err := OpenBackend(tc.wrap(local.Open(dir)), OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			l, err := s.LockExclusive(bg, "first", 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Unlock()
			s2, err := OpenBackend(tc.wrap(local.Open(dir)), OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			_, err = s2.LockExclusive(bg, "second", 0, nil)
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("second exclusive lock: %v, want ErrLocked", err)
			}
			says := strings.Contains(err.Error(), "--s3-lock-stale") && strings.Contains(err.Error(), "30m0s") && strings.Contains(err.Error(), dir)
			if says != tc.stale {
				t.Errorf("busy lock: %v; want a word of --s3-lock-stale and the store: %v", err, tc.stale)
			}
		})
	}
}
