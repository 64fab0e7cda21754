package chunkstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// Session registrations: how garbage collection knows which write
// sessions could have learned of a blob before it hid the blob's pack.
//
// Every write session (LockSession) also holds a lock of its own, named
// "session-<random hex>", exclusively, for as long as it runs; the
// holder's info (LockInfo) says when it started. Garbage collection lists
// these locks (backend.List of backend.Locks) and tests each without
// waiting: one it cannot take belongs to a living session; one it can take
// belongs to a session that ended, even by kill -9, since a backend lock
// dies with its holder (on a remote store, when it goes stale: the probe
// does not free a dead holder's lock at once, backend.FreeDeadHere, so a
// killed session's requests still in flight have landed by then). A
// session removes its lock's file as it ends; garbage collection removes
// the files of dead ones it finds.
//
// A registration is made before the session's first writer loads the
// index (Lock.NewWriter refreshes it), so a session that is not yet
// registered when garbage collection lists them, after its new index file
// is durable, can only deduplicate against that index.

// sessionPrefix starts the name of every session registration lock.
const sessionPrefix = "session-"

// sessionReg is a held registration: its lock, whose file goes with it.
type sessionReg struct {
	be   backend.Backend
	name string
	u    backend.Unlocker
}

// Lost is the registration lock's Lost channel (nil, never closed, for a
// lock that cannot be lost): a session whose registration is lost may be
// taken for ended by garbage collection, which then deletes what it
// relies on, so it has lost its lock as surely as with the store lock.
func (r *sessionReg) Lost() <-chan struct{} {
	if ln, ok := r.u.(backend.LostNotifier); ok {
		return ln.Lost()
	}
	return nil
}

var _ backend.LostNotifier = (*sessionReg)(nil)

// Unlock removes the registration's file while it still holds the lock (a
// prober that opens the name afterwards makes a new file, takes it, finds
// it dead and removes it), then releases the lock.
func (r *sessionReg) Unlock() error {
	r.be.Remove(bg, backend.Handle{Type: backend.Locks, Name: r.name})
	return r.u.Unlock()
}

// register makes the session's registration; releasing it removes its
// file, and its loss (sessionReg.Lost) is the session's.
func (l *Lock) register(ctx context.Context, purpose string) (backend.Unlocker, error) {
	info := l.s.lockInfo(purpose, "session", l.source)
	for range 8 {
		tok := make([]byte, 12)
		rand.Read(tok)
		name := sessionPrefix + hex.EncodeToString(tok)
		u, err := l.s.be.Lock(ctx, name, backend.Exclusive, info)
		if err != nil {
			if errors.Is(err, backend.ErrLocked) {
				continue // a prober holds this name for the moment
			}
			return nil, fmt.Errorf("register write session in store %s: %w", l.s.Dir(), err)
		}
		// A prober may have taken the fresh lock before this session did,
		// found it "dead" and removed its file: then this lock is on a file
		// no listing shows, which would hide the session from garbage
		// collection. The prober removes the file before it releases the
		// lock, so after taking it the file's presence is the answer.
		if _, err := l.s.be.Stat(ctx, backend.Handle{Type: backend.Locks, Name: name}); err != nil {
			u.Unlock()
			continue
		}
		return &sessionReg{be: l.s.be, name: name, u: u}, nil
	}
	return nil, fmt.Errorf("register write session in store %s: no free registration name after 8 tries", l.s.Dir())
}

// SessionInfo is a living write session, as its registration tells it.
type SessionInfo struct {
	Name string `json:"name"` // the registration's name
	LockInfo
}

// liveSessions lists the registrations of the write sessions running now
// and removes those of sessions that ended without removing theirs.
func (s *Store) liveSessions(ctx context.Context) ([]SessionInfo, error) {
	var names []string
	err := s.be.List(ctx, backend.Locks, func(name string, _ int64) error {
		if strings.HasPrefix(name, sessionPrefix) {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list write sessions of store %s: %w", s.Dir(), err)
	}
	var out []SessionInfo
	for _, name := range names {
		info, alive, err := s.probeSession(ctx, name)
		if err != nil {
			return nil, err
		}
		if alive {
			out = append(out, SessionInfo{Name: name, LockInfo: info})
		}
	}
	return out, nil
}

// probeSession tells whether the session registered as name still runs,
// without waiting, and removes the registration of one that ended.
func (s *Store) probeSession(ctx context.Context, name string) (LockInfo, bool, error) {
	me := s.lockInfo("garbage collection: probe of a write session", "exclusive", "")
	// Only staleness ends a session here (no backend.FreeDeadHere): one
	// whose process died on this host may still have its point's manifest
	// written by an object store that received it whole, after the
	// collection's last mark, naming packs it would delete.
	u, err := s.be.Lock(ctx, name, backend.Exclusive, me)
	var busy *backend.LockedError
	if errors.As(err, &busy) {
		info, _ := lockHolder(busy)
		return info, true, nil
	}
	if err != nil {
		return LockInfo{}, false, fmt.Errorf("probe write session %s of store %s: %w", name, s.Dir(), err)
	}
	s.be.Remove(ctx, backend.Handle{Type: backend.Locks, Name: name})
	u.Unlock()
	return LockInfo{}, false, nil
}
