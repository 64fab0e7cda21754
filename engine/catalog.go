package engine

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/recall-backup/recall/internal/atomicfile"
)

// The catalog is <home>/catalog.db, a bbolt file. It holds what the store
// cannot: the history of jobs, including the ones that failed and so left
// no recovery point, and the protection groups. It is rebuildable in the
// sense that losing it loses only that history and the groups' current
// definitions (a groups.toml applied again restores them); every point is
// in the store, and says which group and policy version it was made under.
//
// Schema, version 4:
//
//	meta/
//	    "version"        -> u64 big endian: schema version
//	jobs/
//	    <u64 job number> -> JSON Job (number big endian, so keys only grow)
//	groups/              (version 2)
//	    <group name>     -> JSON Group (members, policy, policy version;
//	                        from version 4, "sources": the members that
//	                        are registered sources, staging dir -> name)
//	tape_libraries/      (version 3)
//	    <library name>   -> JSON TapeLibrary (emulated: dir; mtx: changer, drives)
//	tape_pools/          (version 3)
//	    <pool name>      -> JSON TapePool (library, retention, encrypt, compress,
//	                        allocation, key fingerprint; the key itself is a
//	                        0600 file, tape.go says why)
//	tape_media/          (version 3)
//	    <barcode>        -> JSON TapeMedium (volume id, pool, set, sequence,
//	                        state free|writing|full|expired, written, expiry,
//	                        library, last slot, next file number)
//	tape_sets/           (version 3)
//	    <set id (uuid)>  -> JSON TapeSet (pool, created, expiry, barcodes by
//	                        sequence, and the set's media catalog: every
//	                        file, pack and point it holds, as its catalog
//	                        files on tape say)
//	sources/             (version 4)
//	    <source name>    -> JSON Source (kind bmr|systemstate, computer,
//	                        staging dir, reservation, settle time, share
//	                        user, last Backup folder ingested, its size)
//
// Groups, sources, libraries, pools, cartridges and sets are keyed by name, barcode
// or uuid: there are tens of thousands at most, and every reader wants them
// by that key. The tape buckets are rebuildable from the cartridges
// themselves ('recall tape catalog'), which is what a fresh server does.
//
// No bucket is keyed by chunk hash: random keys cost bbolt ~50x write
// amplification at scale; the chunk index lives in the store's index files.
//
// A process opens the catalog only for a short transaction (one job start,
// one job end, one listing), so several backups waiting on each other for
// the store lock never wait on the catalog for long; a mount opens it only
// read-only, for the groups' end-user recovery (eur.go), and never waits long.
const catalogVersion = 4

var (
	bucketMeta = []byte("meta")
	bucketJobs = []byte("jobs")
	// bucketGroups holds the protection groups (version 2).
	bucketGroups = []byte("groups")
	keyVersion   = []byte("version")
	// The media catalog of the tape tier (version 3).
	bucketTapeLibraries = []byte("tape_libraries")
	bucketTapePools     = []byte("tape_pools")
	bucketTapeMedia     = []byte("tape_media")
	bucketTapeSets      = []byte("tape_sets")
	// bucketSources holds the registered data sources (version 4).
	bucketSources = []byte("sources")
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
	{2, func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketGroups)
		return err
	}},
	{3, func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTapeLibraries, bucketTapePools, bucketTapeMedia, bucketTapeSets} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}},
	{4, func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketSources)
		return err
	}},
}

// Job is one run of a command that changes or checks the store.
type Job struct {
	Number   uint64    `json:"number"`
	Kind     string    `json:"kind"` // backup, restore, verify, forget, prune, gc
	Source   string    `json:"source,omitempty"`
	Path     string    `json:"path,omitempty"`
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"` // omitempty keeps a zero time.Time: running jobs and those whose process died have none
	// FoundInterrupted is, for a job whose process died before it ended,
	// when recall serve found it so and recorded it interrupted; its end
	// is not known, so Finished stays zero.
	FoundInterrupted time.Time `json:"found_interrupted,omitzero"`
	// Status: running, ok, warnings, skipped, failed. A job left "running" by a
	// process that died shows as such; Jobs reports it as "interrupted".
	Status   string `json:"status"`
	Point    string `json:"point,omitempty"`
	Stats    *Stats `json:"stats,omitempty"`
	Warnings int    `json:"warnings,omitempty"`
	Error    string `json:"error,omitempty"`
	// Group is the protection group a backup ran for ("" for a backup
	// of a path).
	Group string `json:"group,omitempty"`
	// Scripts are the group's pre- and post-scripts this job ran, with
	// their output.
	Scripts []ScriptRun `json:"scripts,omitempty"`
}

// ErrCatalogBusy: another process held the catalog for longer than the timeout.
var ErrCatalogBusy = errors.New("catalog is in use by another recall process")

// errCatalogDamaged marks a catalog file that bbolt cannot read: an open or
// check error, or a panic (bbolt panics on some corrupt pages, at open or
// later inside a transaction).
var errCatalogDamaged = errors.New("damaged")

// Catalog is an open catalog.
//
// The catalog is only history, so it never stands between a user and the
// store: a file bbolt cannot read is moved aside as
// catalog.db.damaged-<UTC time> and a fresh catalog takes its place, at open
// or when a transaction panics. Each such move is reported by Notes.
type Catalog struct {
	db      *bolt.DB
	path    string
	timeout time.Duration
	notes   []string
	// readOnly: the file could not be opened for writing (a read-only
	// mount, another user's home): it is read as it is, and records fail.
	readOnly bool
}

// OpenCatalog opens (creating and migrating) the catalog at path, waiting
// up to timeout for another process to close it. A damaged file is moved
// aside and replaced (see Catalog); errors left are ErrCatalogBusy, a
// schema newer than this recall knows, and the file system's own (no
// permission, read-only, no space), which moving the file would not cure.
func OpenCatalog(path string, timeout time.Duration) (*Catalog, error) {
	c := &Catalog{path: path, timeout: timeout}
	err := c.open()
	if errors.Is(err, errCatalogDamaged) {
		if err = c.moveAside(err); err == nil {
			err = c.open()
		}
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// CatalogReplaced is in the note (Notes) of a damaged catalog moved aside
// and replaced by a fresh one: what a server raises an alert for.
const CatalogReplaced = "started a fresh catalog"

// Notes returns what the catalog did on its own that the user should hear
// about: each damaged file moved aside, with both paths.
func (c *Catalog) Notes() []string { return c.notes }

// open opens, checks and migrates c.path; damage of any kind comes back
// wrapping errCatalogDamaged.
func (c *Catalog) open() (err error) {
	// Locked first, then checked, then opened by bbolt through the same
	// descriptor. A home that cannot be written is read as it is:
	// listings need no writing (jobs and status work), and what records
	// a job fails.
	// An empty file that was there before this open is no new catalog
	// (bbolt would take it for one and start afresh without a word): the
	// catalog it was is gone, cut to nothing by a crash, a full disk or a
	// careless hand. One this open creates, or that another process
	// created and has not initialised yet, is new.
	_, statErr := os.Lstat(c.path)
	f, ro, rwErr, err := lockCatalogFile(c.path, c.timeout)
	if err == nil {
		if fi, serr := f.Stat(); serr == nil && fi.Size() == 0 && statErr == nil {
			f.Close()
			return fmt.Errorf("catalog %s: %w (the file is empty)", c.path, errCatalogDamaged)
		}
		var lost bool
		if lost, err = precheckCatalog(f, c.path); err != nil {
			f.Close()
			return err
		}
		if lost {
			c.keepLastCommit(f, ro)
		}
	}
	// A fault in the mapped file that the check above did not foresee
	// becomes a panic, which the recover below turns into damage.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			c.closeDB()
			err = fmt.Errorf("catalog %s: %w (bbolt: %v)", c.path, errCatalogDamaged, p)
		}
	}()
	var db *bolt.DB
	if err == nil {
		c.readOnly = ro
		db, err = bolt.Open(c.path, 0o600, &bolt.Options{Timeout: c.timeout, ReadOnly: ro,
			OpenFile: func(string, int, os.FileMode) (*os.File, error) { return f, nil }})
		if err != nil && ro {
			// Not readable as it is either (an empty file bbolt would
			// have to write first): what keeps it from being written
			// is the error, not damage.
			err = rwErr
		}
	}
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("%s: %w (waited %s)", c.path, ErrCatalogBusy, c.timeout)
	}
	if err != nil {
		var pe *os.PathError
		var errno syscall.Errno
		if errors.As(err, &pe) || errors.As(err, &errno) {
			return fmt.Errorf("open catalog %s: %w", c.path, err)
		}
		return fmt.Errorf("catalog %s: %w (bbolt: %v)", c.path, errCatalogDamaged, err)
	}
	c.db = db
	// The catalog is small (job records), so checking every page on open
	// is cheap, and it finds damage before a write spreads it. bbolt
	// checks in a goroutine of its own, which goes on after its first
	// error: it is waited for to the end. Left running, it read pages
	// after closeDB unmapped the file (a fault no recover catches), or
	// stayed blocked for good on its next error.
	if err := db.View(func(tx *bolt.Tx) error {
		var first error
		for cerr := range tx.Check() {
			if first == nil {
				first = cerr
			}
		}
		return first
	}); err != nil {
		c.closeDB()
		return fmt.Errorf("catalog %s: %w (check: %v)", c.path, errCatalogDamaged, err)
	}
	if err := c.migrate(); err != nil {
		c.closeDB()
		return err
	}
	return nil
}

// keepLastCommit copies the catalog f, whose newer meta page is damaged,
// aside before it is opened, and notes it: bbolt reads the file as it was
// one commit earlier, and its next commit (the migration check on open
// makes one) writes over the damaged page. That commit's own pages are
// still in the copy, for whoever wants to dig them out.
func (c *Catalog) keepLastCommit(f *os.File, readOnly bool) {
	what := fmt.Sprintf("catalog %s: the record of its last change is damaged (its newer meta page fails its checksum), so it reads as it was one change earlier: the protection group, source, tape record or job recorded last may be missing: check 'recall group list', 'recall source list', 'recall tape list' and 'recall jobs'", c.path)
	if readOnly {
		c.notes = append(c.notes, what+"; the file cannot be written here, so it is read as it is")
		return
	}
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<40))
	aside := c.path + ".damaged-" + time.Now().UTC().Format("20060102T150405.000000000Z")
	if err == nil {
		err = atomicfile.Write(aside, b, 0o600)
	}
	if err != nil {
		c.notes = append(c.notes, fmt.Sprintf("%s; a copy of the file as found could not be kept (%v)", what, err))
		return
	}
	c.notes = append(c.notes, fmt.Sprintf("%s; a copy of the file as found is kept at %s", what, aside))
}

// closeDB closes the bbolt handle, which may itself panic on a damaged file.
func (c *Catalog) closeDB() {
	if c.db == nil {
		return
	}
	func() {
		defer func() { recover() }()
		c.db.Close()
	}()
	c.db = nil
}

// moveAside renames the damaged catalog to catalog.db.damaged-<UTC time>
// (no ':' in the name) so a fresh one can be created in its place; the file
// is kept for whoever wants to look into it.
func (c *Catalog) moveAside(why error) error {
	c.closeDB()
	stamp := time.Now().UTC().Format("20060102T150405Z")
	aside := c.path + ".damaged-" + stamp
	for i := 2; ; i++ {
		if _, err := os.Lstat(aside); errors.Is(err, os.ErrNotExist) {
			break
		}
		aside = fmt.Sprintf("%s.damaged-%s-%d", c.path, stamp, i)
	}
	if err := os.Rename(c.path, aside); err != nil {
		return fmt.Errorf("%v; moving it aside failed: %w (move or remove %s by hand: it holds job history, protection groups and the tape media catalog)", why, err, c.path)
	}
	c.notes = append(c.notes, fmt.Sprintf("%v; moved it aside to %s and "+CatalogReplaced+" at %s (only job history, protection groups and the tape media catalog are lost: every recovery point is in the store; re-create groups with 'recall apply -f groups.toml' and re-read cartridges with 'recall tape catalog')", why, aside, c.path))
	return nil
}

// guard runs fn (one transaction) and turns a bbolt panic into moving the
// damaged file aside and running fn once more on a fresh catalog.
func (c *Catalog) guard(fn func() error) error {
	err := c.try(fn)
	if !errors.Is(err, errCatalogDamaged) {
		return err
	}
	if err := c.moveAside(err); err != nil {
		return err
	}
	if err := c.open(); err != nil {
		return err
	}
	return c.try(fn)
}

func (c *Catalog) try(fn func() error) (err error) {
	if c.db == nil {
		return fmt.Errorf("catalog %s: %w", c.path, bolterrors.ErrDatabaseNotOpen)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("catalog %s: %w (bbolt: %v)", c.path, errCatalogDamaged, p)
		}
	}()
	return fn()
}

// Close closes the catalog.
func (c *Catalog) Close() error {
	c.closeDB()
	return nil
}

func (c *Catalog) migrate() error {
	if c.readOnly {
		return c.db.View(func(tx *bolt.Tx) error {
			have := 0
			if m := tx.Bucket(bucketMeta); m != nil {
				if v := m.Get(keyVersion); len(v) == 8 {
					have = int(binary.BigEndian.Uint64(v))
				}
			}
			if have != catalogVersion {
				return fmt.Errorf("catalog %s cannot be written and has schema version %d, not %d: open it once where it can be written", c.path, have, catalogVersion)
			}
			return nil
		})
	}
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
	return c.guard(func() error { return c.startJob(j) })
}

func (c *Catalog) startJob(j *Job) error {
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
// If the catalog was replaced since StartJob, the job is recorded in the
// fresh one: under its number, with the sequence moved past it so no later
// job takes that number, or under a new number if a job recorded since
// holds it.
func (c *Catalog) FinishJob(j *Job) error {
	return c.guard(func() error {
		return c.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketJobs)
			if v := b.Get(binary.BigEndian.AppendUint64(nil, j.Number)); v != nil {
				var was Job
				if json.Unmarshal(v, &was) != nil || was.Kind != j.Kind || was.PID != j.PID || was.Host != j.Host || !was.Started.Equal(j.Started) {
					n, err := b.NextSequence()
					if err != nil {
						return err
					}
					j.Number = n
				}
			} else if b.Sequence() < j.Number {
				if err := b.SetSequence(j.Number); err != nil {
					return err
				}
			}
			v, _ := json.Marshal(j)
			return b.Put(binary.BigEndian.AppendUint64(nil, j.Number), v)
		})
	})
}

// Jobs returns the last n jobs (all when n <= 0), oldest first. Values are
// copied out of the transaction. A record that does not decode is left out
// and reported by Notes: the others are still worth showing.
func (c *Catalog) Jobs(n int) ([]Job, error) {
	var out []Job
	err := c.guard(func() error {
		out = out[:0]
		return c.db.View(func(tx *bolt.Tx) error { return c.jobs(tx, n, &out) })
	})
	for i, k := 0, len(out)-1; i < k; i, k = i+1, k-1 {
		out[i], out[k] = out[k], out[i]
	}
	return out, err
}

func (c *Catalog) jobs(tx *bolt.Tx, n int, out *[]Job) error {
	cur := tx.Bucket(bucketJobs).Cursor()
	for k, v := cur.Last(); k != nil && (n <= 0 || len(*out) < n); k, v = cur.Prev() {
		j, err := decodeJob(v)
		if err != nil {
			c.notes = append(c.notes, fmt.Sprintf("catalog %s: job record %x is unreadable (%v); left out", c.path, k, err))
			continue
		}
		if j.Status == "running" && !processAlive(j.PID, j.Host) {
			j.Status = "interrupted"
		}
		*out = append(*out, j)
	}
	return nil
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
