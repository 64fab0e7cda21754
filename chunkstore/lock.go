package chunkstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// LockInfo describes the holder of the writer lock.
type LockInfo struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Purpose string    `json:"purpose"`
	Since   time.Time `json:"since"`
}

func (i LockInfo) String() string {
	return fmt.Sprintf("pid %d on %s (%s, since %s)", i.PID, i.Host, i.Purpose, i.Since.Format(time.RFC3339))
}

// Lock is the store's exclusive writer lock: an flock on
// <store>/locks/writer, so it dies with its holder, even on kill -9.
type Lock struct {
	s *Store
	f *os.File
}

// LockWriter takes the writer lock, waiting up to wait for a holder to
// finish (0: do not wait). onWait, if not nil, is called once with the
// holder when the lock is busy. The error names the holder.
func (s *Store) LockWriter(ctx context.Context, purpose string, wait time.Duration, onWait func(LockInfo)) (*Lock, error) {
	p := filepath.Join(s.dir, "locks", "writer")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	deadline := time.Now().Add(wait)
	told := false
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		info := readLockInfo(p)
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w by %s; wait for it to finish or stop it", ErrLocked, info)
		}
		if !told && onWait != nil {
			onWait(info)
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	host, _ := os.Hostname()
	b, _ := json.Marshal(LockInfo{PID: os.Getpid(), Host: host, Purpose: purpose, Since: time.Now().UTC()})
	f.Truncate(0)
	f.WriteAt(b, 0)
	// Temp files left by a writer that died are ours to clean now.
	if ents, err := os.ReadDir(filepath.Join(s.dir, "tmp")); err == nil {
		for _, e := range ents {
			os.Remove(filepath.Join(s.dir, "tmp", e.Name()))
		}
	}
	for _, d := range []string{"index", "points", "damaged"} {
		if ents, err := os.ReadDir(filepath.Join(s.dir, d)); err == nil {
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".tmp-") {
					os.Remove(filepath.Join(s.dir, d, e.Name()))
				}
			}
		}
	}
	return &Lock{s: s, f: f}, nil
}

func readLockInfo(p string) LockInfo {
	var i LockInfo
	b, err := os.ReadFile(p)
	if err == nil {
		i, _ = parseLockInfo(b)
	}
	return i
}

// NewWriter returns a writer for this lock's store. Packs left by an
// interrupted writer are indexed first, so their blobs are reused.
func (l *Lock) NewWriter() (*Writer, error) {
	if err := l.s.healConfig(); err != nil {
		return nil, storeWriteError(l.s.dir, err)
	}
	// Directories a careless hand removed are the store's own to recreate.
	for _, d := range []string{"index", "points", "tmp"} {
		if err := os.MkdirAll(filepath.Join(l.s.dir, d), 0o700); err != nil {
			return nil, storeWriteError(l.s.dir, err)
		}
	}
	if err := l.s.Refresh(); err != nil {
		return nil, err
	}
	l.s.fmu.Lock()
	orphans := l.s.orphans
	l.s.orphans = nil
	l.s.fmu.Unlock()
	for len(orphans) > 0 {
		n := min(len(orphans), indexEvery)
		if _, err := l.s.writeIndexFile(orphans[:n]); err != nil {
			return nil, storeWriteError(l.s.dir, err)
		}
		orphans = orphans[n:]
	}
	return l.s.newWriter(), nil
}

// Unlock releases the lock.
func (l *Lock) Unlock() error {
	l.f.Truncate(0)
	return l.f.Close()
}

// Store returns the store this lock belongs to.
func (l *Lock) Store() *Store { return l.s }
