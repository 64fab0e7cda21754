package s3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/recall-backup/recall/chunkstore/backend"
)

// A lock is objects under locks/ (the protocol is in the package
// comment):
//
//	locks/<name>                    the lock's name, written by each holder
//	                                once it holds the lock (empty); what
//	                                Stat, List and Remove of backend.Locks see
//	locks/<name>/<m>1-<token>-<ms>  one per holder: m is s (shared) or x
//	                                (exclusive), 1 the format, token 16
//	                                random hex digits, ms the holder's
//	                                LockStale in milliseconds (absent in
//	                                the names of older versions); the body
//	                                is the holder's info; its modification
//	                                time (the server's clock) its last
//	                                refresh
//
// The stale time is in the name because it is each process's own setting
// (--s3-lock-stale), not the store's: a judge with a shorter one must not
// take a live holder that refreshes on its longer schedule for dead.

// holderFormat is the version of the holder objects' names.
const holderFormat = "1"

type holder struct {
	key   string
	mode  backend.LockMode
	stale time.Duration // the holder's own LockStale; 0: not in its name
	mod   time.Time     // the server's time of its last write
}

// holderName is the object name of a holder in mode with token whose
// stale time is stale.
func holderName(mode backend.LockMode, token string, stale time.Duration) string {
	m := "s"
	if mode == backend.Exclusive {
		m = "x"
	}
	return m + holderFormat + "-" + token + "-" + strconv.FormatInt(stale.Milliseconds(), 10)
}

// parseHolder reads a holder object's name; ok is false for a name of
// another format, which a holder of this format treats as exclusive (an
// unknown holder must not be ignored). stale is 0 when the name does not
// carry the holder's stale time (older versions, other formats).
func parseHolder(name string) (mode backend.LockMode, stale time.Duration, ok bool) {
	switch {
	case strings.HasPrefix(name, "s"+holderFormat+"-"):
		mode, ok = backend.Shared, true
	case strings.HasPrefix(name, "x"+holderFormat+"-"):
		mode, ok = backend.Exclusive, true
	default:
		return backend.Exclusive, 0, false
	}
	if _, ms, found := strings.Cut(name[len(holderFormat)+2:], "-"); found {
		if n, err := strconv.ParseInt(ms, 10, 64); err == nil && n > 0 {
			stale = time.Duration(n) * time.Millisecond
		}
	}
	return mode, stale, ok
}

// legacyStale is the stale time assumed of a holder whose name does not
// say its own: the default, which older versions used unless told
// otherwise.
const legacyStale = 30 * time.Minute

// staleAfter is how long holder h may go without a refresh before this
// backend takes it for dead: the longer of h's own stale time and ours,
// since h refreshes on the schedule of its own.
func (b *Backend) staleAfter(h holder) time.Duration {
	s := h.stale
	if s == 0 {
		s = legacyStale
	}
	return max(s, b.cfg.LockStale)
}

// holders lists the holder objects of lock name.
func (b *Backend) holders(ctx context.Context, name string) ([]holder, error) {
	prefix := b.dir(backend.Locks.String()) + name + "/"
	var out []holder
	err := b.do(ctx, func(ctx context.Context) error {
		out = out[:0]
		for o := range b.core.Client.ListObjects(ctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if o.Err != nil {
				return o.Err
			}
			mode, stale, _ := parseHolder(strings.TrimPrefix(o.Key, prefix))
			out = append(out, holder{key: o.Key, mode: mode, stale: stale, mod: o.LastModified})
		}
		return nil
	})
	return out, err
}

// Lock takes lock name in mode (see the package comment for the protocol
// and what it guarantees). Taken, it costs three listings, two PUTs and
// the re-check delay; refused, usually one listing and a GET per holder.
func (b *Backend) Lock(ctx context.Context, name string, mode backend.LockMode, info []byte) (backend.Unlocker, error) {
	if err := (backend.Handle{Type: backend.Locks, Name: name}).Valid(); err != nil {
		return nil, fmt.Errorf("lock name %q: %w", name, err)
	}
	if mode != backend.Shared && mode != backend.Exclusive {
		return nil, fmt.Errorf("lock %s: unknown mode %v", name, mode)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s lock %s: %w", b.Location(), name, err)
	}
	// A lock held by others is refused before writing anything, so that
	// a waiter trying again and again does not make the holders' own
	// checks fail (contenders that see each other all back off). Only
	// with the server's clock known from an earlier lock: holders not
	// refreshed for the stale time are judged by the protocol below.
	if skew, ok := b.serverSkew(); ok {
		hs, err := b.holders(ctx, name)
		if err != nil {
			return nil, b.fail("lock "+name, err)
		}
		if busy := b.conflicts(hs, "", mode, time.Now().Add(skew), false); len(busy) > 0 {
			if err := b.lockedError(ctx, name, busy); err != nil {
				return nil, err
			}
		}
	}
	tok := make([]byte, 8)
	rand.Read(tok)
	l := &lock{b: b, name: name, key: b.dir(backend.Locks.String()) + name + "/" + holderName(mode, hex.EncodeToString(tok), b.cfg.LockStale), info: info,
		stop: make(chan struct{}), done: make(chan struct{}), lostc: make(chan struct{})}
	l.start = time.Now()
	l.deadline = l.start.Add(b.cfg.LockStale - b.cfg.LockRefresh)
	if err := b.put(ctx, l.key, info); err != nil {
		return nil, b.fail("lock "+name, err)
	}
	l.refreshed = time.Now()
	err := l.check(ctx, mode)
	if err == nil {
		// A holder whose object the first listing missed (a listing
		// that lags behind writes) is seen by now.
		t := time.NewTimer(b.cfg.LockRecheck)
		select {
		case <-t.C:
			err = l.check(ctx, mode)
		case <-ctx.Done():
			t.Stop()
			err = fmt.Errorf("%s lock %s: %w", b.Location(), name, ctx.Err())
		}
	}
	if err == nil {
		err = b.put(ctx, b.key(backend.Handle{Type: backend.Locks, Name: name}), nil)
		if err != nil {
			err = b.fail("lock "+name, err)
		}
	}
	if err != nil {
		b.remove(context.WithoutCancel(ctx), l.key)
		return nil, err
	}
	go l.refresh()
	return l, nil
}

// SetHolderDead gives the judge of holders known to be dead: dead tells,
// from the info a holder gave its Lock, whether it died on this very
// host (package chunkstore's HolderDead reads its LockInfo). A holder
// that would refuse a Lock whose context asks for it
// (backend.FreeDeadHere) and is judged dead has its object removed at
// once, as a stale one has, instead of keeping the lock for its stale
// time. The backend knows nothing of what infos say, so without a judge,
// or without FreeDeadHere, only staleness frees a dead holder's lock.
// Call it before the first Lock.
func (b *Backend) SetHolderDead(dead func(info []byte) bool) { b.dead = dead }

// LockStale is how long a holder of this backend's locks may go without
// a refresh before it is taken for dead (Config.LockStale): what a
// refused caller is told a dead holder's lock takes to free itself.
func (b *Backend) LockStale() time.Duration { return b.cfg.LockStale }

// serverSkew returns the server's clock minus this machine's, as last
// measured by a lock's check.
func (b *Backend) serverSkew() (time.Duration, bool) {
	v := b.skew.Load()
	if v == nil {
		return 0, false
	}
	return v.(time.Duration), true
}

// conflicts returns the holders of hs other than own that conflict with
// mode and are not stale at the server's time now; stale ones are
// removed when remove is set.
func (b *Backend) conflicts(hs []holder, own string, mode backend.LockMode, now time.Time, remove bool) []holder {
	var busy []holder
	for _, h := range hs {
		switch {
		case h.key == own:
		case now.Sub(h.mod) > b.staleAfter(h):
			if remove {
				b.remove(context.Background(), h.key) // its holder died, or lost the lock
			}
		case mode == backend.Exclusive || h.mode == backend.Exclusive:
			busy = append(busy, h)
		}
	}
	return busy
}

// maxInfo bounds what is read of a holder's info: a lock object is
// anyone's to write, and an info is a line of JSON.
const maxInfo = 64 << 10

// lockedError reads the info of the holders in busy and returns a
// *backend.LockedError naming them, or nil when ctx asks for it
// (backend.FreeDeadHere) and every one is dead by the judge SetHolderDead
// gave (died on this host): such a holder's object is removed, as a stale
// one's is, and it neither refuses the lock nor is named. Without
// FreeDeadHere the judge is not asked: its answer would change nothing,
// and asking costs a file's open and flock on this host. One gone
// meanwhile still refuses (it may have been a contender backing off),
// unnamed; one unreadable refuses with an empty info. The infos are read
// only here, of holders that would conflict, so taking a free lock costs
// no GET.
func (b *Backend) lockedError(ctx context.Context, name string, busy []holder) error {
	le := &backend.LockedError{Name: name}
	dead := 0
	for _, h := range busy {
		var info []byte
		err := b.do(ctx, func(ctx context.Context) error {
			info = nil
			body, _, _, err := b.core.GetObject(ctx, b.cfg.Bucket, h.key, minio.GetObjectOptions{})
			if err != nil {
				return err
			}
			defer body.Close()
			info, err = io.ReadAll(io.LimitReader(body, maxInfo))
			return err
		})
		if code(err) == "NoSuchKey" {
			continue
		}
		if err != nil {
			info = nil // a body cut short is no info
		}
		if err == nil && b.dead != nil && backend.IsFreeDeadHere(ctx) && b.dead(info) {
			dead++
			b.remove(context.WithoutCancel(ctx), h.key) // its holder died on this host
			continue
		}
		le.Holders = append(le.Holders, info) // empty when unreadable
	}
	if dead == len(busy) {
		return nil
	}
	return le
}

// check lists the holders of l's lock: the stale ones it removes; a
// living one in a conflicting mode gives a *backend.LockedError.
func (l *lock) check(ctx context.Context, mode backend.LockMode) error {
	b := l.b
	hs, err := b.holders(ctx, l.name)
	if err != nil {
		return b.fail("lock "+l.name, err)
	}
	// The server's clock now, from the time it gave l's own object: no
	// client's clock is compared with another's or with the server's.
	// It is behind the server's by at most the PUT's duration, so a
	// holder is judged stale late, never early.
	var now time.Time
	for _, h := range hs {
		if h.key == l.key {
			b.skew.Store(h.mod.Sub(l.refreshed))
			now = h.mod.Add(time.Since(l.refreshed))
		}
	}
	if now.IsZero() {
		return fmt.Errorf("%s lock %s: the listing does not show the lock object just written (%s): this gateway's listings lag behind its writes, and its locks cannot be trusted",
			b.Location(), l.name, l.key)
	}
	if busy := b.conflicts(hs, l.key, mode, now, true); len(busy) > 0 {
		return b.lockedError(ctx, l.name, busy)
	}
	return nil
}

type lock struct {
	b    *Backend
	name string
	key  string
	info []byte

	once       sync.Once
	stop, done chan struct{}

	mu        sync.Mutex
	refreshed time.Time // local time the first write of key was answered (check's clock)
	start     time.Time // local time the last write of key that succeeded began
	deadline  time.Time // start + LockStale - LockRefresh: Lost closes then
	lost      error
	lostc     chan struct{} // closed when lost is set
}

// Lost returns a channel closed when the lock is lost while held (see
// refresh): a holder that selects on it can stop its work at once, as
// restic cancels a command whose lock was not refreshed in time, instead
// of learning it at Unlock.
func (l *lock) Lost() <-chan struct{} { return l.lostc }

// refresh rewrites the holder object every LockRefresh until Unlock. A
// holder that finds its object gone (taken for stale by another), or
// could not rewrite it for LockStale-LockRefresh, has lost the lock;
// Lost and Unlock say so.
//
// Others may take the lock LockStale after the server's time of the last
// rewrite, which is after the start of that rewrite's attempt; so the
// deadline is counted from the attempt's start, a timer closes Lost at
// the deadline on its own (an attempt in flight may hang), each attempt
// is cut off at the deadline, and an attempt that starts past it cannot
// revive the lock: another may have it by then.
func (l *lock) refresh() {
	defer close(l.done)
	b := l.b
	margin := b.cfg.LockStale - b.cfg.LockRefresh
	var lastErr error
	var errMu sync.Mutex
	expire := func() {
		l.mu.Lock()
		late, deadline := time.Since(l.start), l.deadline
		l.mu.Unlock()
		if time.Now().Before(deadline) {
			return // refreshed meanwhile; the timer was reset
		}
		errMu.Lock()
		err := lastErr
		errMu.Unlock()
		l.setLost(fmt.Errorf("%s lock %s: lost: not refreshed for %v, and others may take it as stale after %v: %v", b.Location(), l.name, late.Round(time.Millisecond), b.cfg.LockStale, err))
	}
	l.mu.Lock()
	timer := time.AfterFunc(time.Until(l.deadline), expire)
	l.mu.Unlock()
	defer timer.Stop()
	t := time.NewTicker(b.cfg.LockRefresh)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.lostc:
			return
		case <-t.C:
		}
		start := time.Now()
		l.mu.Lock()
		deadline := l.deadline
		l.mu.Unlock()
		if !start.Before(deadline) {
			expire()
			return
		}
		if cut := start.Add(b.cfg.LockRefresh); cut.Before(deadline) {
			deadline = cut
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		_, err := b.core.StatObject(ctx, b.cfg.Bucket, l.key, minio.StatObjectOptions{})
		if code(err) == "NoSuchKey" {
			cancel()
			l.setLost(fmt.Errorf("%s lock %s: lost: its object was removed as stale by another holder", b.Location(), l.name))
			return
		}
		if err == nil {
			err = b.put(ctx, l.key, l.info)
		}
		cancel()
		if err != nil {
			errMu.Lock()
			lastErr = err
			errMu.Unlock()
			continue
		}
		l.mu.Lock()
		select {
		case <-l.lostc: // the timer fired while the attempt ran: too late
			l.mu.Unlock()
			return
		default:
		}
		l.start, l.deadline = start, start.Add(margin)
		timer.Reset(time.Until(l.deadline))
		l.mu.Unlock()
	}
}

func (l *lock) setLost(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.lostc:
		return // lost already
	default:
	}
	l.lost = err
	close(l.lostc)
}

// Unlock stops the refresh and removes the holder object. It returns an
// error when the lock was lost while held (what it protected may have
// been done beside another holder).
func (l *lock) Unlock() error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		ctx, cancel := context.WithTimeout(context.Background(), l.b.cfg.RequestTimeout)
		defer cancel()
		if rerr := l.b.remove(ctx, l.key); rerr != nil {
			err = l.b.fail("unlock "+l.name, rerr)
		}
		l.mu.Lock()
		if l.lost != nil {
			err = l.lost
		}
		l.mu.Unlock()
	})
	return err
}
