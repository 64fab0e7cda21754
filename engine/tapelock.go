package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/recall-backup/recall/chunkstore"
)

// One tape job at a time per home. A job reads the media catalog when it
// starts and writes what it did when it ends, hours later: two jobs at
// once (a goal the server runs and a 'recall tape erase' beside it, or two
// writes) would each save their own view of a set, and the later save
// would undo the other's. So every tape job (write, copy, label, erase,
// catalog, restore, key import) holds <home>/tape.lock, an flock that dies
// with its holder, even on kill -9. The holder writes who it is into the
// file (chunkstore.LockInfo as JSON), so a job that finds it busy names it.
// The set's revision (TapeSet.Revision) is checked besides, so a job that
// took no lock still cannot save over a newer set.

// tapeLockWait is how long a tape job waits for another to finish before
// it gives up naming it.
var tapeLockWait = TapeCatalogWait

// tapeLockFile is the lock's file in home.
func tapeLockFile(home string) string { return filepath.Join(home, "tape.lock") }

// The staging stores of tape restores are directories tape-restore-* in
// the home. A user may make a directory of that name too, so a staging
// store is only ever removed by the job that made it, or, left by a killed
// one, when it holds recall's marker (stagingMarker, written into it
// before anything else): a directory without one is not recall's to
// remove. Staging stores of a recall older than the marker are left, and
// named once per process.
const (
	stagingPrefix = "tape-restore-"
	stagingMarker = ".recall-tape-staging"
	stagingMagic  = "recall tape staging store v1"
)

// newStagingDir makes a staging store directory in home, its marker
// written first.
func newStagingDir(home string) (string, error) {
	d, err := os.MkdirTemp(home, stagingPrefix)
	if err != nil {
		return "", err
	}
	m := filepath.Join(d, stagingMarker)
	body := fmt.Sprintf("%s\npid %d\ncreated %s\n", stagingMagic, os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	if err := os.WriteFile(m, []byte(body), 0o600); err != nil {
		os.Remove(m)
		os.Remove(d) // made just now, empty
		return "", fmt.Errorf("staging store %s: %w", d, err)
	}
	return d, nil
}

// isStaging reports whether the directory d holds the marker a staging
// store is made with.
func isStaging(d string) bool {
	m := filepath.Join(d, stagingMarker)
	fi, err := os.Lstat(m)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > 4096 {
		return false
	}
	b, err := os.ReadFile(m)
	return err == nil && strings.HasPrefix(string(b), stagingMagic+"\n")
}

// isStagingName reports whether the path p is a staging store's name in
// home: tape-restore-* directly in it. A target there would be taken
// for a staging store.
func isStagingName(home, p string) bool {
	if ok, _ := filepath.Match(stagingPrefix+"*", filepath.Base(p)); !ok {
		return false
	}
	parent, h := filepath.Dir(p), filepath.Clean(home)
	if a, err := filepath.Abs(h); err == nil {
		h = a
	}
	if parent == h {
		return true
	}
	a, errA := os.Stat(parent)
	b, errB := os.Stat(h)
	return errA == nil && errB == nil && os.SameFile(a, b)
}

// unmarkedStaging holds the unmarked tape-restore-* directories already
// named, so a server running tape jobs for months names each once.
var unmarkedStaging sync.Map

// removeStaleStaging removes the staging stores of tape restores that a
// killed restore left: only a tape restore makes them, under the tape
// lock, and removes its own when it ends, so one found by the lock's new
// holder has no owner. Each is as large as the packs the restore had
// read. Only a directory holding the staging marker is removed.
func removeStaleStaging(home string, warn func(string, ...any)) {
	dirs, _ := filepath.Glob(filepath.Join(home, stagingPrefix+"*"))
	for _, d := range dirs {
		if fi, err := os.Lstat(d); err != nil || !fi.IsDir() {
			continue
		}
		if !isStaging(d) {
			if _, told := unmarkedStaging.LoadOrStore(d, true); !told && warn != nil {
				warn("left %s: it has the name of a tape restore's staging store but not recall's marker (%s); if an older recall's stopped tape restore left it, remove it by hand", d, stagingMarker)
			}
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			if warn != nil {
				warn("the staging store %s a stopped tape restore left could not be removed: %v", d, err)
			}
			continue
		}
		if warn != nil {
			warn("removed the staging store %s a stopped tape restore left", d)
		}
	}
}

// lockTape takes the tape lock of home for purpose, waiting up to
// tapeLockWait; the error wraps chunkstore.ErrLocked and names the holder.
// warn is told once that the job waits. The caller calls the returned
// function to release it.
func lockTape(ctx context.Context, home, purpose string, warn func(string, ...any)) (func(), error) {
	if err := tapeHome(home); err != nil {
		return nil, err
	}
	p := tapeLockFile(home)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("tape lock %s: %w", p, err)
	}
	deadline := time.Now().Add(tapeLockWait)
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("tape lock %s: %w", p, err)
		}
		holder := tapeLockHolder(p)
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("tape jobs of home %s: %w by %s; one tape job runs at a time: wait for it to finish or stop it", home, chunkstore.ErrLocked, holder)
		}
		if !told && warn != nil {
			warn("waiting for the tape job of %s to finish", holder)
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	info, _ := json.Marshal(chunkstore.NewLockInfo(purpose, "exclusive", ""))
	if err := f.Truncate(0); err == nil {
		f.WriteAt(info, 0)
	}
	removeStaleStaging(home, warn)
	return func() {
		f.Truncate(0)
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// tapeLockHolder names the holder the lock file records, or says it is
// unknown (a holder that has not written it yet).
func tapeLockHolder(p string) string {
	b, err := os.ReadFile(p)
	var info chunkstore.LockInfo
	if err == nil {
		json.Unmarshal(b, &info)
	}
	if info.PID == 0 {
		return "another process (it has not said which yet)"
	}
	return info.String()
}
