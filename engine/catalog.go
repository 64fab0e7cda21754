package engine

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The catalog is <home>/catalog.db, a bbolt file. It holds what the store
// cannot: the history of jobs, including the ones that failed and so left
// no recovery point. It is rebuildable in the sense that losing it loses
// only that history; every point is in the store.
//
// Schema, version 1:
//
//	meta/
//	    "version"        -> u64 big endian: schema version
//	jobs/
//	    <u64 job number> -> JSON Job (number big endian, so keys only grow)
//
// No bucket is keyed by chunk hash: random keys cost bbolt ~50x write
// amplification at scale; the chunk index lives in the store's index files.
//
// A process opens the catalog only for a short transaction (one job start,
// one job end, one listing), so several backups waiting on each other for
// the store lock never wait on the catalog for long; a mount never opens it.
const catalogVersion = 1

var (
	bucketMeta = []byte("meta")
	bucketJobs = []byte("jobs")
	keyVersion = []byte("version")
)

// migration brings the schema from version-1 to version.
type migration struct {
	version int
	apply   func(tx *bolt.Tx) error
}

// migrations run in order; each has a test.
var migrations = []migration{
	{1, func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketJobs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}},
}

// Job is one run of a command that changes or checks the store.
type Job struct {
	Number   uint64    `json:"number"`
	Kind     string    `json:"kind"` // backup, restore, verify, forget
	Source   string    `json:"source,omitempty"`
	Path     string    `json:"path,omitempty"`
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitempty"`
	// Status: running, ok, warnings, failed. A job left "running" by a
	// process that died shows as such; Jobs reports it as "interrupted".
	Status   string `json:"status"`
	Point    string `json:"point,omitempty"`
	Stats    *Stats `json:"stats,omitempty"`
	Warnings int    `json:"warnings,omitempty"`
	Error    string `json:"error,omitempty"`
}

// ErrCatalogBusy: another process held the catalog for longer than the timeout.
var ErrCatalogBusy = errors.New("catalog is in use by another recall process")

// Catalog is an open catalog.
type Catalog struct {
	db   *bolt.DB
	path string
}

// OpenCatalog opens (creating and migrating) the catalog at path, waiting
// up to timeout for another process to close it.
func OpenCatalog(path string, timeout time.Duration) (*Catalog, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%s: %w (waited %s)", path, ErrCatalogBusy, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	c := &Catalog{db: db, path: path}
	if err := c.migrate(); err != nil {
		db.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the catalog.
func (c *Catalog) Close() error { return c.db.Close() }

func (c *Catalog) migrate() error {
	return c.db.Update(func(tx *bolt.Tx) error {
		have := 0
		if m := tx.Bucket(bucketMeta); m != nil {
			if v := m.Get(keyVersion); len(v) == 8 {
				have = int(binary.BigEndian.Uint64(v))
			}
		}
		if have > catalogVersion {
			return fmt.Errorf("catalog %s has schema version %d; this recall knows up to %d", c.path, have, catalogVersion)
		}
		for _, m := range migrations {
			if m.version <= have {
				continue
			}
			if err := m.apply(tx); err != nil {
				return fmt.Errorf("catalog migration to version %d: %w", m.version, err)
			}
			have = m.version
		}
		return tx.Bucket(bucketMeta).Put(keyVersion, binary.BigEndian.AppendUint64(nil, uint64(have)))
	})
}

// StartJob records a new running job and returns its number.
func (c *Catalog) StartJob(j *Job) error {
	return c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		n, err := b.NextSequence()
		if err != nil {
			return err
		}
		j.Number, j.Status, j.PID = n, "running", os.Getpid()
		if j.Host == "" {
			j.Host, _ = os.Hostname()
		}
		v, _ := json.Marshal(j)
		return b.Put(binary.BigEndian.AppendUint64(nil, n), v)
	})
}

// FinishJob stores the final state of a job started with StartJob.
func (c *Catalog) FinishJob(j *Job) error {
	return c.db.Update(func(tx *bolt.Tx) error {
		v, _ := json.Marshal(j)
		return tx.Bucket(bucketJobs).Put(binary.BigEndian.AppendUint64(nil, j.Number), v)
	})
}

// Jobs returns the last n jobs (all when n <= 0), oldest first. Values are
// copied out of the transaction.
func (c *Catalog) Jobs(n int) ([]Job, error) {
	var out []Job
	err := c.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bucketJobs).Cursor()
		for k, v := cur.Last(); k != nil && (n <= 0 || len(out) < n); k, v = cur.Prev() {
			j, err := decodeJob(v)
			if err != nil {
				return fmt.Errorf("catalog job %x: %w", k, err)
			}
			if j.Status == "running" && !processAlive(j.PID, j.Host) {
				j.Status = "interrupted"
			}
			out = append(out, j)
		}
		return nil
	})
	for i, k := 0, len(out)-1; i < k; i, k = i+1, k-1 {
		out[i], out[k] = out[k], out[i]
	}
	return out, err
}

func processAlive(pid int, host string) bool {
	if h, _ := os.Hostname(); h != host {
		return true // cannot tell
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	return p.Signal(syscallZero) == nil
}

var syscallZero = syscall.Signal(0)
