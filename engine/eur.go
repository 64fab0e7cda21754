package engine

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrNoEndUserRecovery: the data source's protection group has end-user
// recovery off, so its points are not offered to end users (the mounted
// tree, its shares).
var ErrNoEndUserRecovery = errors.New("end-user recovery is off")

// NoEndUserRecovery reads, from the catalog of home, the data sources
// whose protection group has end-user recovery off, each mapped to its
// group's name. It is for long-lived readers that must not stand in the
// way of backups (a mount) and for commands that only look: the catalog is
// opened read-only (a shared lock, held for one read transaction), never
// created, migrated or moved aside, waiting at most wait for a writer to
// close it (ErrCatalogBusy after that). A home without a catalog, or with
// one from before groups, has no such source.
func NoEndUserRecovery(home string, wait time.Duration) (off map[string]string, err error) {
	path := CatalogPath(home)
	defer func() {
		// bbolt panics on some damaged pages; the mount must outlive them.
		if p := recover(); p != nil {
			off, err = nil, fmt.Errorf("catalog %s: %w (bbolt: %v; the next command that writes it moves it aside)", path, errCatalogDamaged, p)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: wait})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%s: %w (waited %s)", path, ErrCatalogBusy, wait)
	}
	if err != nil {
		var pe *os.PathError
		var errno syscall.Errno
		switch {
		case errors.Is(err, os.ErrNotExist):
			return map[string]string{}, nil // no catalog (opened read-only, it is never created)
		case errors.As(err, &pe) || errors.As(err, &errno):
			return nil, fmt.Errorf("read catalog %s: %w", path, err)
		}
		return nil, fmt.Errorf("catalog %s: %w (bbolt: %v; the next command that writes it moves it aside)", path, errCatalogDamaged, err)
	}
	defer db.Close()
	off = map[string]string{}
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketGroups) == nil {
			return nil
		}
		all, err := loadGroups(tx)
		for _, g := range all {
			if g.Policy.Defaults().EndUserRecovery == "off" {
				for _, src := range g.Sources() {
					off[src] = g.Name
				}
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return off, nil
}

// EndUserRecoveryWatch keeps NoEndUserRecovery's answer for a long-lived
// reader and reads the catalog again only when its file changed (another
// inode, size or modification time): a call costs one stat otherwise. A
// file modified in the last second is read again on every call, since a
// write in the same clock tick as the last read leaves its time as it was.
// It is safe for concurrent use.
type EndUserRecoveryWatch struct {
	home string
	wait time.Duration

	mu    sync.Mutex
	stamp string
	off   map[string]string
}

// NewEndUserRecoveryWatch watches the catalog of home; each read waits at
// most wait for a writer.
func NewEndUserRecoveryWatch(home string, wait time.Duration) *EndUserRecoveryWatch {
	return &EndUserRecoveryWatch{home: home, wait: wait}
}

// Off returns the data sources whose group has end-user recovery off,
// with their group's names; the map is shared and must not be modified.
// When the catalog cannot be read it returns the error and reads again on
// the next call.
func (w *EndUserRecoveryWatch) Off() (map[string]string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	stamp := ""
	var st syscall.Stat_t
	if err := syscall.Stat(CatalogPath(w.home), &st); err == nil {
		mtime := time.Unix(st.Mtim.Unix())
		if time.Since(mtime) > time.Second {
			stamp = fmt.Sprint(st.Dev, st.Ino, st.Size, st.Mtim.Nano())
		}
	} else if errors.Is(err, os.ErrNotExist) {
		stamp = "none"
	}
	if stamp != "" && stamp == w.stamp {
		return w.off, nil
	}
	off, err := NoEndUserRecovery(w.home, w.wait)
	if err != nil {
		w.stamp = ""
		return nil, err
	}
	w.stamp, w.off = stamp, off
	return off, nil
}
