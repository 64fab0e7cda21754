package chunkstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/local"
)

// lockCall is one Lock a recordingBackend was asked for.
type lockCall struct {
	name     string
	mode     backend.LockMode
	freeDead bool // the call asked to free a holder dead here at once
}

// recordingBackend is a backend whose locks, as an object store's,
// outlive their holder until stale, and which records every Lock call.
type recordingBackend struct {
	backend.Backend
	mu    sync.Mutex
	calls []lockCall
}

func (*recordingBackend) LockStale() time.Duration { return 30 * time.Minute }

func (r *recordingBackend) Lock(ctx context.Context, name string, mode backend.LockMode, info []byte) (backend.Unlocker, error) {
	r.mu.Lock()
	r.calls = append(r.calls, lockCall{name, mode, backend.IsFreeDeadHere(ctx)})
	r.mu.Unlock()
	return r.Backend.Lock(ctx, name, mode, info)
}

func (r *recordingBackend) take() []lockCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// lockKind names the locks of a store by what they guard.
func lockKind(name string) string {
	switch {
	case name == storeLock:
		return "store"
	case name == gcLock:
		return "gc"
	case strings.HasPrefix(name, "source-"):
		return "source"
	case strings.HasPrefix(name, sessionPrefix):
		return "registration"
	}
	return name
}

// Only a session's source lock frees a holder that died here at once
// (backend.FreeDeadHere): a dead session's late requests are harmless to
// the next session of its source, and to nothing else. Every other lock
// of the store, in every mode and by every caller, waits for a dead
// holder's to go stale.
func TestFreeDeadOnlySourceLock(t *testing.T) {
	dir, _ := newStore(t, false)
	rec := &recordingBackend{Backend: local.Open(dir)}
	s, err := OpenBackend(rec, OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		name string
		do   func() error
		want map[string]backend.LockMode // lock kind -> mode
	}{
		{"LockSession", func() error {
			l, err := s.LockSession(bg, "www", "backup", 0, nil)
			if err == nil {
				err = l.Unlock()
			}
			return err
		}, map[string]backend.LockMode{"store": backend.Shared, "source": backend.Exclusive, "registration": backend.Exclusive}},
		{"HoldSession", func() error {
			h, err := HoldSession(bg, rec, "www", "copy", 0, nil)
			if err == nil {
				err = h.Unlock()
			}
			return err
		}, map[string]backend.LockMode{"store": backend.Shared, "source": backend.Exclusive, "registration": backend.Exclusive}},
		{"LockExclusive", func() error {
			l, err := s.LockExclusive(bg, "repair", 0, nil)
			if err == nil {
				err = l.Unlock()
			}
			return err
		}, map[string]backend.LockMode{"store": backend.Exclusive}},
		{"lockGC", func() error {
			release, err := s.lockGC(bg, 0, false)
			if err == nil {
				release()
			}
			return err
		}, map[string]backend.LockMode{"store": backend.Shared, "gc": backend.Exclusive}},
		{"probeSession", func() error {
			_, _, err := s.probeSession(bg, sessionPrefix+"0123456789abcdef01234567")
			return err
		}, map[string]backend.LockMode{"registration": backend.Exclusive}},
	} {
		rec.take()
		if err := tc.do(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var kinds []string
		for _, c := range rec.take() {
			k := lockKind(c.name)
			kinds = append(kinds, k)
			if mode, ok := tc.want[k]; !ok || mode != c.mode {
				t.Errorf("%s: lock %s (%s) %v, want one of %v", tc.name, c.name, k, c.mode, tc.want)
			}
			if want := k == "source"; c.freeDead != want {
				t.Errorf("%s: lock %s (%s, %v) asks to free a holder dead here at once: %v, want %v", tc.name, c.name, k, c.mode, c.freeDead, want)
			}
		}
		for k := range tc.want {
			if !slices.Contains(kinds, k) {
				t.Errorf("%s: took no %s lock (took %q)", tc.name, k, kinds)
			}
		}
	}
}

// A refusal on a store whose locks go stale tells that a holder killed
// here frees the lock at once only when the busy lock is a source's: the
// only one freed so.
func TestBusyLockSaysFreedAtOnce(t *testing.T) {
	dir, _ := newStore(t, false)
	open := func() *Store {
		s, err := OpenBackend(&recordingBackend{Backend: local.Open(dir)}, OpenOptions{Password: "pw"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	for _, tc := range []struct {
		name   string
		hold   func() (*Lock, error)
		take   func() (*Lock, error)
		atOnce bool
	}{
		{"a source's lock",
			func() (*Lock, error) { return a.LockSession(bg, "www", "backup", 0, nil) },
			func() (*Lock, error) { return b.LockSession(bg, "www", "backup", 0, nil) }, true},
		{"the store lock, exclusive",
			func() (*Lock, error) { return a.LockExclusive(bg, "repair", 0, nil) },
			func() (*Lock, error) { return b.LockSession(bg, "www", "backup", 0, nil) }, false},
		{"the store lock, shared",
			func() (*Lock, error) { return a.LockSession(bg, "www", "backup", 0, nil) },
			func() (*Lock, error) { return b.LockExclusive(bg, "repair", 0, nil) }, false},
	} {
		held, err := tc.hold()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		l, err := tc.take()
		if err == nil {
			l.Unlock()
		}
		held.Unlock()
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("%s: %v, want %v", tc.name, err, ErrLocked)
		}
		t.Logf("%s: %v", tc.name, err)
		if got := strings.Contains(err.Error(), "at once"); got != tc.atOnce || !strings.Contains(err.Error(), "--s3-lock-stale") {
			t.Errorf("%s busy: %v; want a word of --s3-lock-stale, and of freeing at once: %v", tc.name, err, tc.atOnce)
		}
	}
}
