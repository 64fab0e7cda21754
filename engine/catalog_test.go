package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestCatalogMigration1(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	c, err := OpenCatalog(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	err = c.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketJobs) == nil {
			t.Error("no jobs bucket")
		}
		if v := tx.Bucket(bucketMeta).Get(keyVersion); binary.BigEndian.Uint64(v) != catalogVersion {
			t.Errorf("version %v", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Reopening is a no-op migration.
	c, err = OpenCatalog(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestCatalogJobs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	c, err := OpenCatalog(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 3; i++ {
		j := &Job{Kind: "backup", Source: "s", Started: time.Unix(int64(i), 0)}
		if err := c.StartJob(j); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			j.Status = "ok"
			c.FinishJob(j)
		}
	}
	// A job left running by a process that no longer exists.
	c.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).Put(binary.BigEndian.AppendUint64(nil, 99), []byte(`{"number":99,"kind":"backup","status":"running","pid":999999999,"host":"`+hostname()+`"}`))
	})
	jobs, err := c.Jobs(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].Number != 3 || jobs[0].Status != "running" || jobs[1].Number != 99 || jobs[1].Status != "interrupted" {
		t.Errorf("jobs: %+v", jobs)
	}
}

func TestCatalogBusy(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	c, err := OpenCatalog(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := OpenCatalog(p, 100*time.Millisecond); !errors.Is(err, ErrCatalogBusy) {
		t.Errorf("second open: %v", err)
	}
}

func hostname() string { h, _ := os.Hostname(); return h }

// corruptCatalog overwrites 24 KiB at offset 8192 with random bytes: the
// damage that made bbolt panic with "invalid freelist page".
func corruptCatalog(t *testing.T, p string, seed int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 24<<10)
	rand.New(rand.NewSource(seed)).Read(junk)
	if _, err := f.WriteAt(junk, 8192); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCatalogDamagedMovedAside(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "catalog.db")
			c, err := OpenCatalog(p, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 50; i++ {
				j := &Job{Kind: "backup", Source: "s", Path: strings.Repeat("p", 200)}
				if err := c.StartJob(j); err != nil {
					t.Fatal(err)
				}
			}
			c.Close()
			corruptCatalog(t, p, seed)
			damaged, _ := os.ReadFile(p)

			c, err = OpenCatalog(p, time.Second)
			if err != nil {
				t.Fatalf("open damaged catalog: %v", err)
			}
			defer c.Close()
			// Whatever bbolt made of the file, the catalog must work: a job
			// is recorded and listed, and nothing panics.
			j := &Job{Kind: "restore"}
			if err := c.StartJob(j); err != nil {
				t.Fatalf("start job: %v", err)
			}
			j.Status = "ok"
			if err := c.FinishJob(j); err != nil {
				t.Fatalf("finish job: %v", err)
			}
			jobs, err := c.Jobs(0)
			if err != nil {
				t.Fatalf("jobs: %v", err)
			}
			if len(jobs) == 0 || jobs[len(jobs)-1].Kind != "restore" || jobs[len(jobs)-1].Status != "ok" {
				t.Errorf("jobs after damage: %+v", jobs)
			}
			asides, _ := filepath.Glob(p + ".damaged-*")
			switch len(asides) {
			case 0:
				// bbolt read the file as sound; then no note may claim otherwise.
				for _, n := range c.Notes() {
					if strings.Contains(n, "moved it aside") {
						t.Errorf("note without a moved file: %s", n)
					}
				}
			case 1:
				if got, _ := os.ReadFile(asides[0]); !bytes.Equal(got, damaged) {
					t.Errorf("%s does not hold the damaged file", asides[0])
				}
				if len(c.Notes()) != 1 || !strings.Contains(c.Notes()[0], asides[0]) || !strings.Contains(c.Notes()[0], p+" ") {
					t.Errorf("notes %q should name %s and %s", c.Notes(), asides[0], p)
				}
				if len(jobs) != 1 {
					t.Errorf("fresh catalog lists %d jobs, want the one just recorded", len(jobs))
				}
			default:
				t.Errorf("moved aside %d times: %v", len(asides), asides)
			}
		})
	}
}

// A panic inside a transaction (bbolt panics on some corrupt pages only
// when it reaches them) moves the file aside and the transaction runs once
// more on a fresh catalog.
func TestCatalogPanicInTransaction(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	c, err := OpenCatalog(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	j := &Job{Kind: "backup", Started: time.Unix(1, 0)}
	if err := c.StartJob(j); err != nil {
		t.Fatal(err)
	}
	calls := 0
	err = c.guard(func() error {
		calls++
		if calls == 1 {
			panic("invalid freelist page: 66, page type is leaf")
		}
		return c.startJob(&Job{Kind: "verify", Started: time.Unix(2, 0)})
	})
	if err != nil || calls != 2 {
		t.Fatalf("guard: %v after %d calls", err, calls)
	}
	if asides, _ := filepath.Glob(p + ".damaged-*"); len(asides) != 1 || len(c.Notes()) != 1 || !strings.Contains(c.Notes()[0], asides[0]) {
		t.Errorf("moved aside: %v; notes %q", asides, c.Notes())
	}
	// The job started before the damage finishes in the fresh catalog, and
	// later jobs do not reuse its number.
	j.Status = "ok"
	if err := c.FinishJob(j); err != nil {
		t.Fatal(err)
	}
	k := &Job{Kind: "backup"}
	if err := c.StartJob(k); err != nil {
		t.Fatal(err)
	}
	jobs, err := c.Jobs(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 3 || k.Number <= j.Number {
		t.Errorf("jobs %+v; job numbers %d then %d", jobs, j.Number, k.Number)
	}

	// A second panic on the fresh catalog is an error, not a loop.
	err = c.guard(func() error { panic("still broken") })
	if !errors.Is(err, errCatalogDamaged) {
		t.Errorf("guard on a file that stays broken: %v", err)
	}
}

func TestCatalogNewerSchemaKept(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	db, err := bolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucketIfNotExists(bucketMeta)
		return b.Put(keyVersion, binary.BigEndian.AppendUint64(nil, catalogVersion+1))
	})
	db.Close()
	if _, err := OpenCatalog(p, time.Second); err == nil || !strings.Contains(err.Error(), "schema version") {
		t.Errorf("newer schema: %v", err)
	}
	if asides, _ := filepath.Glob(p + ".damaged-*"); len(asides) != 0 {
		t.Errorf("a newer recall's catalog was moved aside: %v", asides)
	}
}

// A catalog that cannot be written (here chattr +i; a read-only mount
// or another user's home alike) is read as it is: its jobs are listed,
// a record fails with an error, and the file is neither changed nor
// moved aside. Before, jobs and status failed outright.
func TestCatalogReadOnly(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	c, err := OpenCatalog(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartJob(&Job{Kind: "backup", Source: "s", Started: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	before, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	unflagAll(t, filepath.Dir(p))
	chattr(t, p, fsImmutable)
	c, err = OpenCatalog(p, time.Second)
	if err != nil {
		t.Fatalf("open of a catalog that cannot be written: %v", err)
	}
	jobs, err := c.Jobs(0)
	if err != nil || len(jobs) != 1 || jobs[0].Source != "s" {
		t.Errorf("jobs: %+v, %v; want the one recorded", jobs, err)
	}
	if err := c.StartJob(&Job{Kind: "backup", Source: "t", Started: time.Now().UTC()}); err == nil {
		t.Error("a record in a catalog that cannot be written succeeded")
	}
	c.Close()
	after, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(before, after) {
		t.Errorf("the catalog changed (%v)", err)
	}
	if moved, _ := filepath.Glob(p + ".damaged-*"); len(moved) != 0 {
		t.Errorf("moved aside: %v", moved)
	}
}

// A catalog cut short, or with a wild freelist header, is moved aside like
// any damage. (Fix: bbolt trusted the meta page: a file cut to 8192..12288
// bytes killed every command opening it with SIGBUS, exit 2, and a
// freelist overflow of 0xefbeadde made it allocate until the machine ran
// out of memory.)
func TestCatalogCutShortOrWildFreelist(t *testing.T) {
	make := func(t *testing.T) (string, []byte) {
		p := filepath.Join(t.TempDir(), "catalog.db")
		c, err := OpenCatalog(p, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 200; i++ {
			j := &Job{Kind: "backup", Source: "s", Path: strings.Repeat("p", 300)}
			if err := c.StartJob(j); err != nil {
				t.Fatal(err)
			}
			j.Status = "ok"
			if err := c.FinishJob(j); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if lost, err := precheckCatalog(f, p); err != nil || lost {
			t.Fatalf("a sound catalog fails the precheck: %v (last change lost: %v)", err, lost)
		}
		return p, b
	}
	_, sound := make(t)
	m, ok := parseBoltMeta(sound)
	if m1, ok1 := parseBoltMeta(sound[4096:]); !ok || ok1 && m1.txid > m.txid {
		m = m1
	}
	fl := int64(m.freelist) * 4096
	t.Logf("%d bytes, %d pages, freelist at page %d", len(sound), m.pgid, m.freelist)
	cases := map[string]func(p string) error{}
	for _, n := range []int64{8192, 9000, 10000, 12000, 12288, int64(m.pgid-1) * 4096, int64(m.pgid)*4096 - 1} {
		cases[fmt.Sprintf("cut to %d", n)] = func(p string) error { return os.Truncate(p, n) }
	}
	poke := func(off int64, b []byte) func(p string) error {
		return func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt(b, off)
			return err
		}
	}
	cases["freelist overflow"] = poke(fl+12, []byte{0xde, 0xad, 0xbe, 0xef})
	cases["freelist count 0xffff, leading count huge"] = poke(fl+10, []byte{0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f})
	cases["freelist count"] = poke(fl+10, []byte{0xfe, 0xff})
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			p, _ := make(t)
			if err := damage(p); err != nil {
				t.Fatal(err)
			}
			c, err := OpenCatalog(p, time.Second)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer c.Close()
			if _, err := c.Jobs(0); err != nil {
				t.Errorf("jobs: %v", err)
			}
			if asides, _ := filepath.Glob(p + ".damaged-*"); len(asides) != 1 {
				t.Errorf("moved aside: %v, want once", asides)
			}
		})
	}
}

// catalogOfJobs makes a catalog at path holding n finished jobs and
// returns its bytes.
func catalogOfJobs(t *testing.T, path string, n int) []byte {
	t.Helper()
	c, err := OpenCatalog(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		j := &Job{Kind: "backup", Source: "s", Path: strings.Repeat("p", 300)}
		c.StartJob(j)
		j.Status = "ok"
		c.FinishJob(j)
	}
	c.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Random words written over a catalog's pages, the page headers most
// often, never crash, hang or fail the open: the file is read or moved
// aside. (Fix: a wild overflow in a tree page made bbolt's own check
// loop four billion times, filling memory.)
func TestCatalogRandomDamage(t *testing.T) {
	dir := t.TempDir()
	sound := catalogOfJobs(t, filepath.Join(dir, "base.db"), 200)
	m, _ := parseBoltMeta(sound)
	hi := int(m.pgid) * 4096
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 150; i++ {
		b := append([]byte(nil), sound...)
		for k := 0; k < 1+rng.Intn(3); k++ {
			off := rng.Intn(hi - 8)
			if rng.Intn(2) == 0 {
				off = (rng.Intn(int(m.pgid)))*4096 + rng.Intn(24)
			}
			for x := 0; x < 4; x++ {
				b[off+x] = byte(rng.Intn(256))
			}
		}
		p := filepath.Join(dir, "c.db")
		os.WriteFile(p, b, 0o600)
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, err := OpenCatalog(p, time.Second)
			if err != nil {
				t.Errorf("case %d: %v", i, err)
				return
			}
			c.Jobs(0)
			j := &Job{Kind: "x"}
			if err := c.StartJob(j); err != nil {
				t.Errorf("case %d: start: %v", i, err)
			}
			c.Close()
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("case %d: the open still runs after 20 s", i)
		}
		os.Remove(p)
		matches, _ := filepath.Glob(p + ".damaged-*")
		for _, f := range matches {
			os.Remove(f)
		}
	}
}

// Keys out of order in a leaf page (what the precheck does not look at)
// are bbolt's check's to find, in a goroutine of its own that goes on
// after its first error. The open waits for it to end: none is left once
// the damaged file is moved aside. Before, the open returned at the first
// error and closed the file under the still running check, which either
// read the unmapped pages (a fault that killed the process, seen once in
// TestCatalogRandomDamage) or stayed blocked for good.
func TestCatalogCheckWaited(t *testing.T) {
	dir := t.TempDir()
	sound := catalogOfJobs(t, filepath.Join(dir, "base.db"), 100)
	checks := func() int {
		buf := make([]byte, 1<<20)
		return strings.Count(string(buf[:runtime.Stack(buf, true)]), "bbolt.(*Tx).check(")
	}
	le := binary.LittleEndian
	damagedOpens := 0
	for pg := 2; (pg+1)*4096 <= len(sound); pg++ {
		page := sound[pg*4096 : (pg+1)*4096]
		if le.Uint16(page[8:]) != 0x02 || le.Uint16(page[10:]) < 3 {
			continue
		}
		// The first key made larger than every other: out of order,
		// every position still inside the page.
		pos, ksize := int(le.Uint32(page[16+4:])), int(le.Uint32(page[16+8:]))
		if ksize == 0 || 16+pos+ksize > len(page) {
			continue
		}
		b := bytes.Clone(sound)
		for k := 0; k < ksize; k++ {
			b[pg*4096+16+pos+k] = 0xFF
		}
		p := filepath.Join(dir, fmt.Sprintf("c%d.db", pg))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := OpenCatalog(p, time.Second)
		if err != nil {
			t.Fatalf("page %d: %v", pg, err)
		}
		c.Close()
		if m, _ := filepath.Glob(p + ".damaged-*"); len(m) > 0 {
			damagedOpens++
		}
	}
	if damagedOpens == 0 {
		t.Fatal("no leaf page's keys put out of order was found damaged: the test damaged nothing bbolt checks")
	}
	// A check still running has no reason to end later: give the
	// scheduler a moment, then count.
	time.Sleep(50 * time.Millisecond)
	if n := checks(); n > 0 {
		t.Errorf("%d of bbolt's checks still running after %d damaged opens", n, damagedOpens)
	}
}

// A catalog file found empty is damage, moved aside and named like any
// other (bbolt alone would start afresh on it without a word, and a
// server would then have no groups to run); one the open creates is new.
func TestCatalogFoundEmpty(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	c, err := OpenCatalog(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Notes()) != 0 {
		t.Fatalf("a new catalog has notes: %q", c.Notes())
	}
	c.Close()
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	c, err = OpenCatalog(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	asides, _ := filepath.Glob(p + ".damaged-*")
	if len(asides) != 1 || len(c.Notes()) != 1 || !strings.Contains(c.Notes()[0], "the file is empty") || !strings.Contains(c.Notes()[0], CatalogReplaced) {
		t.Fatalf("empty catalog: moved aside to %q, notes %q; want one file aside and a note saying it was empty", asides, c.Notes())
	}
	if err := c.StartJob(&Job{Kind: "backup"}); err != nil {
		t.Fatalf("the fresh catalog: %v", err)
	}
}

// Damage to the newer of the two meta pages made bbolt open the catalog as
// it was one commit earlier without a word, and its next commit made the
// loss final (the group created last was gone). The open now notes it,
// naming what to check, and keeps a copy of the file as found; damage to
// the older page, which the next commit writes over, is no loss and says
// nothing. (Fix: precheckCatalog's lost, keepLastCommit.)
func TestCatalogNewestMetaDamaged(t *testing.T) {
	for _, newer := range []bool{true, false} {
		t.Run(fmt.Sprintf("newer=%v", newer), func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "catalog.db")
			c, err := OpenCatalog(p, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for _, src := range []string{"a", "b"} {
				j := &Job{Kind: "backup", Source: src, Path: "/" + src}
				if err := c.StartJob(j); err != nil {
					t.Fatal(err)
				}
			}
			c.Close()
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			m0, _ := parseBoltMeta(b)
			m1, _ := parseBoltMeta(b[4096:])
			page := int64(0)
			if (m1.txid > m0.txid) == newer {
				page = 4096
			}
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef}, page+20); err != nil {
				t.Fatal(err)
			}
			f.Close()

			c, err = OpenCatalog(p, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			notes := strings.Join(c.Notes(), "\n")
			copies, _ := filepath.Glob(p + ".damaged-*")
			if !newer {
				if notes != "" || len(copies) != 0 {
					t.Fatalf("the older meta page damaged: notes %q, copies %v; want neither", notes, copies)
				}
				return
			}
			if !strings.Contains(notes, "the record of its last change is damaged") || !strings.Contains(notes, "recall group list") || len(copies) != 1 || !strings.Contains(notes, copies[0]) {
				t.Fatalf("notes %q, copies %v: want the loss named and one copy kept", notes, copies)
			}
			if kept, err := os.ReadFile(copies[0]); err != nil || len(kept) != len(b) || bytes.Equal(kept, b) {
				t.Errorf("the copy is not the file as found (%v)", err)
			}
			c.Close()
			// Opened again, the page is whole (the open's commit wrote
			// it): nothing more is noted or copied.
			c, err = OpenCatalog(p, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if n := c.Notes(); len(n) != 0 {
				t.Errorf("second open notes %q", n)
			}
			if again, _ := filepath.Glob(p + ".damaged-*"); len(again) != 1 {
				t.Errorf("copies after the second open: %v", again)
			}
		})
	}
}
