package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/recall-backup/recall/chunkstore"
)

// Store is an open chunk store as the engine hands it out: a Reader to
// anyone, a write Session only to whoever takes the lock. The command line
// and the server open it once and call the same methods.
type Store struct {
	st *chunkstore.Store
	r  *Reader
}

// Open opens the store in dir. Nothing is locked: reading needs no lock.
// The errors are chunkstore's (ErrNoStore, ErrNoPassword,
// ErrWrongPassword, ...), so a caller may ask for a passphrase and retry.
func Open(dir string, o chunkstore.OpenOptions) (*Store, error) {
	st, err := chunkstore.Open(dir, o)
	if err != nil {
		return nil, err
	}
	return NewStore(st), nil
}

// NewStore wraps a store the caller opened; Close closes it.
func NewStore(st *chunkstore.Store) *Store { return &Store{st: st, r: NewReader(st)} }

// Reader returns the read-only view of the store; it stays valid until
// Close.
func (s *Store) Reader() *Reader { return s.r }

// Close closes the store. Sessions must be closed first.
func (s *Store) Close() error { return s.st.Close() }

// Dir is the store's directory.
func (s *Store) Dir() string { return s.st.Dir() }

// Config is the store's configuration as read at Open (and as changed by
// a session that changed it).
func (s *Store) Config() *chunkstore.Config { return s.st.Config() }

// Encrypted reports whether the store's blobs are encrypted.
func (s *Store) Encrypted() bool { return s.st.Encrypted() }

// ConfigProblem says what is wrong with the store's config files ("" when
// nothing is): the next write session or repair rewrites them.
func (s *Store) ConfigProblem() string { return s.st.ConfigProblem() }

// LockOptions say how to wait for the store's lock.
type LockOptions struct {
	// Wait is how long to wait for a holder to finish (0: not at all);
	// then the error wraps chunkstore.ErrLocked and names the holder.
	Wait time.Duration
	// OnWait, if not nil, is called once, from the waiting goroutine, with
	// the holder when the lock is busy.
	OnWait func(chunkstore.LockInfo)
}

// SessionOptions describe a write session.
type SessionOptions struct {
	// Purpose is what the lock file tells a process that waits for it
	// ("backup of /srv", "forget point 1a2b3c4d").
	Purpose string
	// Source is the data source the session writes points of, "" when it
	// writes none. Sessions of different sources may run at once; a second
	// session of the same source waits for the first.
	Source string
	// Exclusive sessions run alone: repair and changing the passphrase
	// need one; backups and forget do not.
	Exclusive bool
	// Blobs says the session will save blobs (a backup): its writer is
	// set up as the lock is taken, so that a store that cannot be written
	// to fails before any work starts. Otherwise the first SaveBlob sets
	// it up.
	Blobs bool
	// DryRun says the session changes nothing (an exclusive one: a
	// repair's dry run). On a store whose file system is read-only it
	// then holds no lock, and Session.Note says so.
	DryRun bool
	LockOptions
}

// Session takes the store's lock and returns the write session it hands
// out. The caller must Close it.
func (s *Store) Session(ctx context.Context, o SessionOptions) (*Session, error) {
	var lock *chunkstore.Lock
	var note string
	var err error
	if o.DryRun && o.Exclusive {
		lock, note, err = s.st.LockDryRun(ctx, o.Purpose, o.Wait, o.OnWait)
	} else {
		lock, err = s.lock(ctx, o)
	}
	if err != nil {
		return nil, err
	}
	ss := &Session{s: s, lock: lock, source: o.Source, exclusive: o.Exclusive, Note: note}
	if o.Blobs {
		if _, err := ss.writer(); err != nil {
			lock.Unlock()
			return nil, err
		}
	}
	return ss, nil
}

// lock is the one place the store's lock is taken. A session of a named
// source shares the store with sessions of other sources (each writes its
// own packs and index files) and waits for another session of the same
// source; an Exclusive session, or one of no source, runs alone.
func (s *Store) lock(ctx context.Context, o SessionOptions) (*chunkstore.Lock, error) {
	if o.Exclusive || o.Source == "" {
		return s.st.LockExclusive(ctx, o.Purpose, o.Wait, o.OnWait)
	}
	return s.st.LockSession(ctx, o.Source, o.Purpose, o.Wait, o.OnWait)
}

// Session is write access to the store, held under its lock: save blobs,
// flush them, commit and remove points, and (exclusive sessions) repair.
// Its methods may be called from several goroutines, except Close.
type Session struct {
	s         *Store
	lock      *chunkstore.Lock
	source    string
	exclusive bool
	// Note is what the caller should tell of how the session was taken
	// (a dry run on a read-only store holds no lock), or "".
	Note string

	mu sync.Mutex
	w  *chunkstore.Writer // made by the first blob saved, dropped by Flush
}

// ErrNotExclusive: an operation that must run alone was given a shared
// session.
var ErrNotExclusive = errors.New("needs an exclusive write session")

// Reader returns the read-only view of the session's store. It sees what
// the session has flushed.
func (ss *Session) Reader() *Reader { return ss.s.r }

// Source is the data source the session was opened for ("" for none).
func (ss *Session) Source() string { return ss.source }

// writer returns the session's writer, making it first: that adopts the
// packs an interrupted writer left, so their blobs are reused.
func (ss *Session) writer() (*chunkstore.Writer, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.w == nil {
		w, err := ss.lock.NewWriter()
		if err != nil {
			return nil, err
		}
		ss.w = w
	}
	return ss.w, nil
}

// SaveBlob stores data under id unless the store has it, and reports
// whether it was new. data is not retained. The blob is durable only after
// Flush.
func (ss *Session) SaveBlob(t chunkstore.BlobType, id chunkstore.ID, data []byte) (bool, error) {
	w, err := ss.writer()
	if err != nil {
		return false, err
	}
	return w.SaveBlob(t, id, data)
}

// Flush makes every blob saved so far durable and indexed; only then may a
// point that refers to them be committed.
func (ss *Session) Flush() error {
	ss.mu.Lock()
	w := ss.w
	ss.w = nil
	ss.mu.Unlock()
	if w == nil {
		return nil
	}
	return w.Flush()
}

// Abort drops the blobs saved since the last Flush that are not yet in a
// finished pack. Finished packs stay; the next session reuses them.
func (ss *Session) Abort() {
	ss.mu.Lock()
	w := ss.w
	ss.w = nil
	ss.mu.Unlock()
	if w != nil {
		w.Abort()
	}
}

// CommitPoint durably writes p's manifest and sets p.ID. Every blob p
// refers to must be flushed already.
func (ss *Session) CommitPoint(p *Point) (chunkstore.ID, error) {
	// A point committed after the lock was lost could join a store that
	// garbage collection, running alone now, is sweeping.
	if err := ss.lock.Lost(); err != nil {
		return chunkstore.ID{}, err
	}
	id, err := ss.lock.SavePoint(encodePoint(p)) // cancelled if the lock is lost meanwhile
	if err != nil {
		return chunkstore.ID{}, err
	}
	p.ID = id
	return id, nil
}

// RemovePoint removes a point's manifest; a point that is not there gives
// an error wrapping chunkstore.ErrNotFound. Its blobs stay until garbage
// collection.
func (ss *Session) RemovePoint(id chunkstore.ID) error {
	if err := ss.lock.Lost(); err != nil {
		return err
	}
	return ss.s.st.RemovePoint(id)
}

// ChangePassword reseals the store's key under a new passphrase. It needs
// an exclusive session.
func (ss *Session) ChangePassword(oldPassword, newPassword string) error {
	if !ss.exclusive {
		return fmt.Errorf("change passphrase: %w", ErrNotExclusive)
	}
	return ss.lock.ChangePassword(oldPassword, newPassword)
}

// Close drops what was not flushed and releases the lock.
func (ss *Session) Close() error {
	ss.Abort()
	return ss.lock.Unlock()
}

// StoreDir is where a home keeps its store.
func StoreDir(home string) string { return filepath.Join(home, "store") }
