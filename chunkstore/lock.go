package chunkstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/internal/holder"
	"github.com/zeebo/blake3"
)

// Locks. The store lock ("writer") is taken in one of two modes:
//
//   - shared, by a write session (LockSession): backups of different
//     sources run at once, each writing its own packs (in its own temp area)
//     and its own index files; nothing they write conflicts, since packs and
//     index files are named by their content. A session also holds its
//     source's lock exclusively, so a second backup of the same source
//     waits for the first.
//   - exclusive (LockExclusive, and LockWriter, which callers have always
//     used and which stays exclusive): repair, changing the passphrase,
//     and later garbage collection, which must not race a writer.
//
// The locks are the backend's (backend.Backend.Lock): they die with their
// holder, even on kill -9, at once on a local store and after their stale
// time on a remote one (package s3), but for the source's lock of a
// session, which a holder that died on this host frees at once (take).
//
// Adopting what an interrupted writer left. A session's first writer
// reads its source's journal (journal.go): the packs an earlier session
// of the source made visible without indexing them, which it indexes from
// their headers; it lists no pack, so it costs the same with 10^3 packs
// stored or 10^7. It never reads another source's journal: that session
// may be running. The exclusive lock walks every pack once when taken
// (repair and garbage collection decide from which packs are present),
// which finds every session's leftovers; its first writer indexes them
// and clears every journal. A pack left complete in a dead session's
// temp area (journaled, not yet committed) is adopted before the temp
// area is cleaned (journal_temp.go). The exclusive lock of a dry run
// does neither, nor consolidates: it changes nothing (LockDryRun).

// LockInfo describes a holder of the store lock.
type LockInfo struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Purpose string    `json:"purpose"`
	Since   time.Time `json:"since"`
	Mode    string    `json:"mode,omitempty"`   // "shared" or "exclusive"
	Source  string    `json:"source,omitempty"` // the source of a write session
	// Holder is the token of the holder's process (internal/holder): its
	// file on the holder's host is flocked for as long as the process
	// lives, so a judge on that host can tell it is gone (HolderDead).
	// Absent from the locks of a local store (they die with their
	// holder), when the process had no holder directory, and from the
	// infos of older versions; such holders are never judged dead.
	Holder string `json:"holder,omitempty"`
	// Boot is the boot id of the holder's kernel (holder.BootID), written
	// with Holder: a judge finds a holder dead only in the same boot, so
	// that a clone of the machine's disk, an image or a restore of it,
	// which boots with another, never judges the original's holders.
	// Absent with Holder, and when the kernel gives none (never dead then).
	Boot string `json:"boot,omitempty"`
}

// NewLockInfo describes this process as a holder, for purpose, in mode
// ("shared", "exclusive", "session"), for source if a write session's:
// what every lock this process takes tells of it. It carries no holder
// token: a store adds it to the locks of a backend that keeps them past
// their holder's death (lockInfo).
func NewLockInfo(purpose, mode, source string) LockInfo {
	host, _ := os.Hostname()
	return LockInfo{PID: os.Getpid(), Host: host, Purpose: purpose, Since: time.Now().UTC(), Mode: mode, Source: source}
}

// lockInfo is NewLockInfo as JSON for a lock of s's backend, with this
// process's holder token (making its holder file at the first call) when
// the backend's locks outlive their holder, so that a judge on this host
// can tell when it is gone (HolderDead). A local store's locks die with
// their holder: they need no token, and a process that takes only those
// leaves no holder file behind.
func (s *Store) lockInfo(purpose, mode, source string) []byte {
	i := NewLockInfo(purpose, mode, source)
	if staleLockerOf(s.be) != nil {
		if i.Holder = holder.Token(); i.Holder != "" {
			i.Boot = holder.BootID()
		}
	}
	b, _ := json.Marshal(i)
	return b
}

// HolderDead reports whether the holder whose info (LockInfo as JSON) is
// info is known to be gone: its info names this host name, this kernel's
// boot and a holder token whose file in this process's holder directory
// no process flocks any more (holder.Dead). Anything else is alive: an
// info that does not parse, or has no token or no boot id, another host
// name or boot (a clone of this machine's disk, an image or a restore of
// it), a holder whose file this process cannot see (another container,
// another /run) or that is held. A clone of this machine's memory
// snapshot is the same host, boot and directory to the judge: see package
// holder for what that costs. A backend whose locks outlive their holder
// (package s3: Backend.SetHolderDead) frees such a holder's lock at once,
// for a Lock call that asks for it (backend.FreeDeadHere), instead of
// after its stale time.
func HolderDead(info []byte) bool {
	i, err := parseLockInfo(info)
	if err != nil || i.Holder == "" || i.Boot == "" || i.Boot != holder.BootID() {
		return false
	}
	if host, err := os.Hostname(); err != nil || host == "" || i.Host != host {
		return false
	}
	return holder.Dead(i.Holder)
}

func (i LockInfo) String() string {
	return fmt.Sprintf("pid %d on %s (%s, since %s)", i.PID, i.Host, i.Purpose, i.Since.Format(time.RFC3339))
}

// storeLock is the name of the store lock (locks/writer in a local store,
// where older versions held it the same way, exclusively).
const storeLock = "writer"

// Lock is a held store lock: exclusive, or a write session's shared lock
// with its source's lock.
type Lock struct {
	s      *Store
	mode   backend.LockMode
	source string // a session's source; "" for the exclusive lock
	tag    string // the temp tag of its writers' packs
	// journal is the journal tag of its writers' packs: tag, or
	// journalExclusive for the exclusive lock.
	journal string
	held    []backend.Unlocker
	// lost are the Lost channels of the parts held that can be lost
	// (backend.LostNotifier), with the parts' names; set by take.
	lost []lostPart

	mu      sync.Mutex
	adopted bool // the first writer's adoption of leftovers is done
	// kept are the journal entries of the packs an interrupted session
	// of the source left, which this session adopted: dropped once it
	// commits a point (adoptJournal).
	kept []ID
}

// LockWriter takes the exclusive store lock, waiting up to wait for
// holders to finish (0: do not wait). onWait, if not nil, is called once
// with a holder when the lock is busy. The error names the holder. It is
// LockExclusive under the name every caller knows.
func (s *Store) LockWriter(ctx context.Context, purpose string, wait time.Duration, onWait func(LockInfo)) (*Lock, error) {
	return s.LockExclusive(ctx, purpose, wait, onWait)
}

// LockExclusive takes the store lock alone: no write session and no other
// exclusive holder is inside while it is held. Repair and garbage
// collection need it. Waiting and the error are as LockWriter's. It walks
// the packs once (see Refresh), so what it decides knows which packs are
// missing or truncated.
func (s *Store) LockExclusive(ctx context.Context, purpose string, wait time.Duration, onWait func(LockInfo)) (*Lock, error) {
	return s.lockExclusive(ctx, purpose, wait, onWait, false)
}

// LockDryRun is LockExclusive for a run that changes nothing (a dry
// run): the same pack walk, but what interrupted writers left in the
// temp areas is neither adopted nor removed, and the index is not
// consolidated (LockExclusive does all three, which a dry run must not);
// the note it returns tells what a run that writes would adopt and
// remove first, since that can change what it finds. On a store whose
// file system is read-only (an administrator's read-only mount, or one
// the kernel remounted read-only after disk errors), where no lock can
// be taken, it returns a lock that holds nothing, and the note says so
// too. What it finds is then only as good as the store's state while it
// runs.
func (s *Store) LockDryRun(ctx context.Context, purpose string, wait time.Duration, onWait func(LockInfo)) (*Lock, string, error) {
	l, err := s.lockExclusive(ctx, purpose, wait, onWait, true)
	if err != nil {
		return nil, "", err
	}
	var notes []string
	if l.held == nil {
		notes = append(notes, readOnlyNote(s.Dir()))
	}
	if n := s.tempNote(ctx); n != "" {
		notes = append(notes, n)
	}
	return l, strings.Join(notes, "; "), nil
}

func readOnlyNote(dir string) string {
	return fmt.Sprintf("store %s is on a read-only file system: this dry run holds no lock, so a backup or gc running elsewhere can change what it finds", dir)
}

// readOnlyFS reports whether err is a write refused by a read-only file
// system.
func readOnlyFS(err error) bool { return errors.Is(err, syscall.EROFS) }

func (s *Store) lockExclusive(ctx context.Context, purpose string, wait time.Duration, onWait func(LockInfo), dryRun bool) (*Lock, error) {
	l := &Lock{s: s, mode: backend.Exclusive, journal: journalExclusive}
	if err := l.take(ctx, purpose, wait, onWait); err != nil && (!dryRun || !readOnlyFS(err)) {
		return nil, err
	}
	// A dry run changes nothing, whatever the file system: it neither
	// adopts, cleans nor consolidates (before, only a read-only one
	// skipped them, so a "repair --dry-run" adopted the packs left in
	// tmp/, emptied tmp/ and could consolidate the index). Its report is
	// of the store as it is; LockDryRun's note tells what a run that
	// writes would adopt first. On a read-only file system it holds no
	// lock (LockDryRun says so).
	if !dryRun {
		// Temp files left by any writer that died are ours to clean
		// now, once the packs finished in them are adopted
		// (journal_temp.go).
		if _, _, err := s.adoptTemp(ctx, "", journalExclusive); err != nil {
			l.Unlock()
			return nil, err
		}
		if tc, ok := s.be.(backend.TempCleaner); ok {
			// Only what writers left: CleanTemp removes nothing else
			// (the local backend: its own names, in tmp/ and its
			// directories).
			if err := tc.CleanTemp(ctx, ""); err != nil {
				fmt.Fprintf(os.Stderr, "recall: store %s: %v (temp files of interrupted writers stay; the next exclusive lock tries again)\n", s.Dir(), err)
			}
		}
	}
	// What needs the exclusive lock (repair, forget, GC) decides from
	// which packs are present: the lock's one pack walk is done now.
	if err := s.walkPacks(); err != nil {
		l.Unlock()
		return nil, err
	}
	if dryRun {
		return l, nil
	}
	// Consolidating needs every writer to agree on one base, so it is
	// done only here, alone, and only when the recent part is worth it.
	if s.idx.wantsConsolidation() {
		if _, err := s.consolidateIndex(); err != nil {
			fmt.Fprintf(os.Stderr, "recall: %v (the index stays as it was; 'recall repair index' consolidates it)\n", err)
		}
	}
	return l, nil
}

// ConsolidateIndex writes one consolidated index file holding every place
// the store's index knows, superseding every index file loaded so far,
// and makes it the index's base; it returns the new file's name, or ""
// when there was nothing to consolidate. The superseded files stay until
// garbage collection removes them after its grace period, so readers that
// listed them meanwhile still find them. It needs the exclusive lock:
// write sessions would each build on their own base.
func (l *Lock) ConsolidateIndex() (string, error) {
	if err := l.needExclusive("consolidating the index"); err != nil {
		return "", err
	}
	return l.s.consolidateIndex()
}

func (s *Store) consolidateIndex() (string, error) {
	if err := s.Refresh(); err != nil {
		return "", err
	}
	if !s.idx.hasRecent() {
		return "", nil // the base holds everything already, or nothing is stored
	}
	var out *leaveOut
	s.fmu.Lock()
	if len(s.missingPacks) > 0 {
		out = &leaveOut{drop: maps.Clone(s.missingPacks)} // read after fmu is released
	}
	s.fmu.Unlock()
	sup := s.loadedIndexIDs()
	name, err := s.idx.consolidateFile(s.be, s.keys, sup, out)
	if err != nil {
		return "", storeWriteError(s.Dir(), err)
	}
	s.markIndexLoaded(name.String())
	// Before, nothing recorded the files this one supersedes, so they
	// stayed for good: skipped by every open, but listed and kept.
	if err := s.recordRetire(bg, name, sup); err != nil {
		return "", err
	}
	return name.String(), nil
}

// loadedIndexIDs returns the ids of the index files loaded so far, sorted:
// what a consolidated index file written now supersedes. A file that did
// not decode (indexUnreadable) was tried, not loaded: nothing of it is in
// the index, so no consolidated file supersedes it, and it is never
// removed as superseded. It stays, named, for 'recall repair index'.
func (s *Store) loadedIndexIDs() []ID {
	s.fmu.Lock()
	ids := make([]ID, 0, len(s.loadedI))
	for name := range s.loadedI {
		if _, bad := s.idxProblems[name]; bad {
			continue
		}
		if id, err := ParseID(name); err == nil {
			ids = append(ids, id)
		}
	}
	s.fmu.Unlock()
	sortIDs(ids)
	return ids
}

// LockSession takes the store lock shared, for a write session of source:
// other sessions (of other sources) may write at once, an exclusive holder
// may not; a session of the same source waits, as for a holder of the
// exclusive lock. Waiting and the error are as LockWriter's.
func (s *Store) LockSession(ctx context.Context, source, purpose string, wait time.Duration, onWait func(LockInfo)) (*Lock, error) {
	if source == "" {
		return nil, errors.New("lock a write session: no source named")
	}
	tag := sessionTag(source)
	l := &Lock{s: s, mode: backend.Shared, source: source, tag: tag, journal: tag}
	// take registers the session for garbage collection too (sessions.go).
	if err := l.take(ctx, purpose, wait, onWait); err != nil {
		return nil, err
	}
	// What an earlier session of this source left being written is
	// garbage now, but for the packs it finished (journal_temp.go);
	// other sessions' temp areas are theirs.
	if _, _, err := s.adoptTemp(ctx, l.tag, l.journal); err != nil {
		l.Unlock()
		return nil, err
	}
	if tc, ok := s.be.(backend.TempCleaner); ok {
		tc.CleanTemp(ctx, l.tag)
	}
	return l, nil
}

// sessionTag names what belongs to the write sessions of source: their
// source lock, temp area and journal.
func sessionTag(source string) string {
	sum := blake3.Sum256([]byte(source))
	return sourceLockPrefix + hex.EncodeToString(sum[:16])
}

// sourceLockPrefix starts the name of every source's lock.
const sourceLockPrefix = "source-"

// ErrLockLost: a lock was lost while held (a remote lock not refreshed
// in time, or taken by another as stale); its holder writes nothing more.
var ErrLockLost = errors.New("the store lock was lost")

type lostPart struct {
	name string
	ch   <-chan struct{}
}

// Lost returns an error wrapping ErrLockLost once a part of the lock is
// lost (see backend.LostNotifier), nil while it is held. The writers the
// lock hands out check it before each blob, pack and index file, so that
// a session that lost its lock stops instead of writing beside another
// holder; a session checks it before committing a point.
func (l *Lock) Lost() error {
	for _, p := range l.lost {
		select {
		case <-p.ch:
			return fmt.Errorf("store %s: %w (%s): another process may hold it now, so nothing more is written; the packs written so far are kept and the next run reuses them; check the connection to the store and run again",
				l.s.Dir(), ErrLockLost, p.name)
		default:
		}
	}
	return nil
}

// SavePoint is Store.SavePoint for a holder of l: it is refused once l is
// lost, and a save under way (a remote backend retries for minutes) is
// cancelled the moment a part of l is lost, so that no point is written
// after another process may have taken the lock (garbage collection,
// alone then, may be deleting the packs the point refers to).
func (l *Lock) SavePoint(manifest []byte) (ID, error) {
	if err := l.Lost(); err != nil {
		return ID{}, err
	}
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	for _, p := range l.lost {
		go func(ch <-chan struct{}) {
			select {
			case <-ch:
				cancel()
			case <-ctx.Done():
			}
		}(p.ch)
	}
	id, err := l.s.savePoint(ctx, manifest)
	if lerr := l.Lost(); lerr != nil {
		// Lost during the save: a manifest written now may refer to packs
		// that garbage collection, alone by now, deletes; it is taken
		// back (best effort) rather than left to name missing data.
		if err == nil {
			l.s.be.Remove(bg, backend.Handle{Type: backend.Points, Name: id.String()})
		}
		return ID{}, lerr
	}
	if err == nil {
		// The point refers to what it reused of the packs adopted: the
		// rest is garbage like any other now.
		l.mu.Lock()
		kept := l.kept
		l.kept = nil
		l.mu.Unlock()
		l.s.journalDrop(l.journal, kept)
	}
	return id, err
}

// Waiting for a busy lock: attempts spaced by a wait drawn at random
// between half and all of a bound that doubles from lockRetryMin to
// lockRetryMax. An attempt on a remote store costs a few round trips and
// the backend's re-check delay, and contenders that try at the same
// moments see each other and all back off (package s3): random waits
// part them, and a long wait does not hammer the holder's store.
const (
	lockRetryMin = 100 * time.Millisecond
	lockRetryMax = 2 * time.Second
)

// lockRetryWait is the wait before the next attempt after n failed ones.
func lockRetryWait(n int) time.Duration {
	bound := lockRetryMax
	if n < 8 && lockRetryMin<<n < lockRetryMax {
		bound = lockRetryMin << n
	}
	return bound/2 + rand.N(bound/2+1)
}

// take takes the store lock in l's mode and, for a session, its source's
// lock and its registration (sessions.go), trying again after a growing,
// random wait (lockRetryWait) until wait has passed.
//
// An attempt asks for all of them at once and keeps them only if it got
// them all. On a remote store each costs round trips and the backend's
// re-check delay (package s3: a PUT, a listing, LockRecheck, another
// listing), and taken one after another they were most of a small
// backup's time. Nothing is lost by asking at once: each lock gives its
// own guarantee whatever else its holder holds; an attempt that misses
// one releases the others before it waits, so a waiting session holds
// nothing (no registration that garbage collection would wait for); and
// since no attempt waits for a lock while holding another, there is no
// order to keep against deadlock.
func (l *Lock) take(ctx context.Context, purpose string, wait time.Duration, onWait func(LockInfo)) error {
	info := l.s.lockInfo(purpose, l.mode.String(), l.source)
	// The parts are taken at once; the registration, if any, comes last,
	// so that it is released first (its file goes while the session
	// still holds the store lock).
	type part struct {
		name  string
		take  func() (backend.Unlocker, error)
		named bool // its errors name the store already
	}
	parts := []part{{name: storeLock, take: func() (backend.Unlocker, error) { return l.s.be.Lock(ctx, storeLock, l.mode, info) }}}
	if l.source != "" {
		// A holder of the source's lock that died on this host frees it at
		// once (backend.FreeDeadHere): what it may still have in flight is
		// harmless to the next session of its source. A late index file
		// covers packs durable before it was sent, and a late point
		// manifest names such packs only. A late point DELETE of a killed
		// forget or prune removes only a point that session chose to
		// remove. A late pack whose journal entry this session already
		// dropped (its pack was not there yet) is indexed by no one until
		// the next exclusive pack walk adopts it: a leak until then, never
		// a loss; a late entry names a pack that is there or is dropped by
		// the next adopter. The store lock is not freed so: a session meets
		// there only exclusive holders (repair, a change of passphrase, a
		// tape import), whose late removals or rewrites could take what
		// this session deduplicates against.
		free := backend.FreeDeadHere(ctx)
		parts = append(parts,
			part{name: l.tag, take: func() (backend.Unlocker, error) { return l.s.be.Lock(free, l.tag, backend.Exclusive, info) }},
			// The registration counts for Lost too: a session whose
			// registration is lost may be taken for ended by garbage
			// collection.
			part{name: "registration", take: func() (backend.Unlocker, error) { return l.register(ctx, purpose) }, named: true})
	}
	deadline := time.Now().Add(wait)
	told := false
	attempt := 0
	for {
		held := make([]backend.Unlocker, len(parts))
		errs := make([]error, len(parts))
		var wg sync.WaitGroup
		for i, p := range parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				held[i], errs[i] = p.take()
			}()
		}
		wg.Wait()
		var busy *backend.LockedError
		var failed error
		for i, err := range errs {
			var b *backend.LockedError
			switch {
			case err == nil:
			case errors.As(err, &b):
				if busy == nil {
					busy = b
				}
			case failed == nil:
				failed = err
				if !parts[i].named {
					failed = fmt.Errorf("lock store %s: %w", l.s.Dir(), err)
				}
				if readOnlyFS(err) {
					failed = fmt.Errorf("%w: %s needs to write there; remount it read-write (verify, restore, mount and every --dry-run work on it as it is)", failed, purpose)
				}
			}
			if u := held[i]; u != nil {
				l.held = append(l.held, u)
				if ln, ok := u.(backend.LostNotifier); ok {
					l.lost = append(l.lost, lostPart{parts[i].name, ln.Lost()})
				}
			}
		}
		if failed != nil {
			l.release()
			return failed
		}
		if busy == nil {
			return nil
		}
		l.release()
		who, others := lockHolder(busy)
		if time.Now().After(deadline) {
			more := ""
			if others > 0 {
				more = fmt.Sprintf(" and %d other(s)", others)
			}
			return fmt.Errorf("%w by %s%s; wait for it to finish or stop it%s", ErrLocked, who, more, staleNote(l.s.be, busy.Name))
		}
		if !told && onWait != nil {
			onWait(who)
			told = true
		}
		pause := min(lockRetryWait(attempt), time.Until(deadline)+time.Millisecond)
		attempt++
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
}

// staleLocker is a backend whose locks outlive a holder that died until
// they go stale (package s3): its LockStale is this process's setting.
type staleLocker interface {
	backend.Backend
	LockStale() time.Duration
}

// staleNote tells, for a backend whose locks go stale, when a dead
// holder of the busy lock name frees it and where the lock is; "" for a
// local store, whose locks die with their holder. Only a source's lock
// frees at once when its holder died here (take).
func staleNote(be backend.Backend, name string) string {
	sl := staleLockerOf(be)
	if sl == nil {
		return ""
	}
	here := ""
	if strings.HasPrefix(name, sourceLockPrefix) {
		here = "a holder killed on this machine, if this version of recall, frees it at once for the next session of the same source; any other "
	} else {
		here = "a holder that died "
	}
	return fmt.Sprintf(" (%sfrees its lock at %s --s3-lock-stale after its last refresh: %v here, or the holder's own if longer)", here, sl.Location(), sl.LockStale())
}

// staleLockerOf returns the backend under be (be itself, or what the
// wrappers that have a Remote wrap) whose locks outlive a holder that
// died until they go stale, or nil: a local store's die with it.
func staleLockerOf(be backend.Backend) staleLocker {
	for {
		if sl, ok := be.(staleLocker); ok {
			return sl
		}
		r, ok := be.(interface{ Remote() backend.Backend })
		if !ok {
			return nil
		}
		be = r.Remote()
	}
}

// lockHolder returns the first holder a busy lock names, and how many
// more there are.
func lockHolder(e *backend.LockedError) (LockInfo, int) {
	var first LockInfo
	for _, h := range e.Holders {
		if info, err := parseLockInfo(h); err == nil || info.PID != 0 {
			first = info
			break
		}
	}
	return first, max(len(e.Holders)-1, 0)
}

func (l *Lock) release() {
	for i := len(l.held) - 1; i >= 0; i-- {
		l.held[i].Unlock()
	}
	l.held, l.lost = nil, nil
}

// Exclusive reports whether the lock is the exclusive one.
func (l *Lock) Exclusive() bool { return l.mode == backend.Exclusive }

// Source returns the source of a write session ("" for the exclusive lock).
func (l *Lock) Source() string { return l.source }

// needExclusive refuses what only the exclusive lock may do.
func (l *Lock) needExclusive(what string) error {
	if l.mode != backend.Exclusive {
		return fmt.Errorf("%s needs the store's exclusive lock, and a write session of %q holds it shared", what, l.source)
	}
	return nil
}

// NewWriter returns a writer for this lock's store, after loading new
// index files. The first writer of a lock adopts what interrupted writers
// left (see Locks above): a session's, the packs its source's journal
// names; the exclusive lock's, what its pack walk found, after which it
// clears every journal. Adopted packs get index files, so their blobs are
// reused. Packs a reader's pack walk found unindexed in this process are
// indexed by any writer.
func (l *Lock) NewWriter() (*Writer, error) {
	if err := l.s.healConfig(); err != nil {
		return nil, storeWriteError(l.s.Dir(), err)
	}
	if err := l.s.Refresh(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	first := !l.adopted
	l.adopted = true
	l.mu.Unlock()
	failed := func(err error) (*Writer, error) {
		if first {
			l.mu.Lock()
			l.adopted = false // the next writer tries again
			l.mu.Unlock()
		}
		return nil, err
	}
	if first && !l.Exclusive() {
		// A session learns pack sizes afresh (Store.Has): a pack removed
		// or cut since an earlier session of this process is noticed.
		l.s.idx.forgetPackSizes()
	}
	l.s.fmu.Lock()
	orphans := l.s.orphans
	l.s.orphans = nil
	l.s.fmu.Unlock()
	for len(orphans) > 0 {
		n := min(len(orphans), indexEvery)
		if _, err := l.s.writeIndexFile(orphans[:n]); err != nil {
			l.s.fmu.Lock()
			l.s.orphans = append(l.s.orphans, orphans...)
			l.s.fmu.Unlock()
			return failed(storeWriteError(l.s.Dir(), err))
		}
		orphans = orphans[n:]
	}
	if first {
		var err error
		if l.Exclusive() {
			err = l.s.dropJournals()
		} else {
			var kept []ID
			_, kept, err = l.s.adoptJournal(l.tag, true)
			l.mu.Lock()
			l.kept = kept
			l.mu.Unlock()
		}
		if err != nil {
			return failed(err)
		}
	}
	if err := l.Lost(); err != nil {
		return failed(err)
	}
	if first {
		l.s.keepReserve()
	}
	w := l.s.newWriter(l.tag)
	w.journal = l.journal
	w.lost = l.Lost
	return w, nil
}

// Unlock releases the lock. A session's temp area goes with it (its
// writers are done: Flush or Abort).
func (l *Lock) Unlock() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if tc, ok := l.s.be.(backend.TempCleaner); ok && l.tag != "" && len(l.held) > 0 {
		tc.CleanTemp(bg, l.tag)
	}
	var first error
	for i := len(l.held) - 1; i >= 0; i-- {
		if err := l.held[i].Unlock(); err != nil && first == nil {
			first = err
		}
	}
	l.held = nil
	return first
}

// Store returns the store this lock belongs to.
func (l *Lock) Store() *Store { return l.s }
