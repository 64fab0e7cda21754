package chunkstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/local"
)

// gatedLocks is a backend whose Lock waits until want calls are in flight
// at once (or a generous bound passes), and records the most it saw.
type gatedLocks struct {
	backend.Backend
	want int

	mu      sync.Mutex
	flight  int
	most    int
	arrived chan struct{}
}

func (g *gatedLocks) Lock(ctx context.Context, name string, mode backend.LockMode, info []byte) (backend.Unlocker, error) {
	g.mu.Lock()
	g.flight++
	g.most = max(g.most, g.flight)
	if g.flight == g.want {
		close(g.arrived)
	}
	g.mu.Unlock()
	select {
	case <-g.arrived:
	case <-time.After(5 * time.Second): // taken one at a time: never all in flight
	}
	u, err := g.Backend.Lock(ctx, name, mode, info)
	g.mu.Lock()
	g.flight--
	g.mu.Unlock()
	return u, err
}

// A write session asks for its three locks (the store's, its source's, its
// registration) at once: on an object store each costs round trips and a
// re-check delay, which one after another added up to most of a small
// backup. It holds all three, and releases them all.
func TestSessionTakesItsLocksAtOnce(t *testing.T) {
	dir, _ := newStore(t, false)
	g := &gatedLocks{Backend: local.Open(dir), want: 3, arrived: make(chan struct{})}
	s, err := OpenBackend(g, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.LockSession(bg, "/srv/a", "backup", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	most := g.most
	g.mu.Unlock()
	if most != 3 {
		t.Errorf("at most %d lock requests in flight at once, want 3", most)
	}
	if len(l.held) != 3 {
		t.Errorf("session holds %d locks, want 3", len(l.held))
	}
	live, err := s.liveSessions(bg)
	if err != nil || len(live) != 1 {
		t.Errorf("live sessions while held: %v, %v; want one", live, err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if x, err := s.LockExclusive(bg, "repair", 0, nil); err != nil {
		t.Errorf("exclusive lock after the session: %v", err)
	} else {
		x.Unlock()
	}
}
