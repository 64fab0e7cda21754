package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
)

// sourceSession is the session a backup of source "s" takes: the store
// lock shared, as backups take it.
var sourceSession = SessionOptions{Purpose: "test", Source: "s"}

// sourceBackup is the backup of source "s" in its write session.
func sourceBackup(t *testing.T, dir, src string, hook func(chunkstore.Step) error) (*Point, error) {
	t.Helper()
	return sessionBackup(t, dir, src, sourceSession, hook)
}

// checkSessionDone checks the store in dir after the next session of the
// source completed: its journal is empty and its index files cover the
// packs exactly.
func checkSessionDone(t *testing.T, dir string) {
	t.Helper()
	if e := journalEntries(t, dir); len(e) != 0 {
		t.Fatalf("journal entries after the next backup of the source: %v", e)
	}
	checkIndexExact(t, dir)
}

// journalEntries lists the entries of the journal of the store in dir.
func journalEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "journal"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		// A save the cut interrupted leaves a temp file, which is no
		// entry (the exclusive lock clears such files everywhere).
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// checkIndexExact checks that the index files of the store in dir cover
// every pack present, each as its header says, and list no pack that is
// missing: what rebuilding the index from the pack headers would change
// is nothing.
func checkIndexExact(t *testing.T, dir string) {
	t.Helper()
	st, err := chunkstore.Open(dir, chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, err := st.LockExclusive(context.Background(), "check", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	rb, err := l.RebuildIndex(true)
	if err != nil {
		t.Fatal(err)
	}
	if len(rb.Written)+len(rb.Removed)+len(rb.Unlocatable) > 0 {
		t.Fatalf("the index files do not cover the packs exactly: would write %v, remove %v, cannot locate %v", rb.Written, rb.Removed, rb.Unlocatable)
	}
}

// TestSessionCrashAtEveryStep cuts the power at each durable step of a
// backup in a write session of its source, the steps of the journal
// included (journal entry saved before its pack is committed, index file,
// then the entry removed), and checks that the next session of the same
// source, which reads the journal instead of walking the packs, leaves the
// store exact: every committed point restores, verify reads every blob
// clean, every pack present is covered by index files that agree with its
// header (adopted once, none missed), and the journal is empty.
//
// Removing an entry is not a step the hook sees: a cut can only come
// before it (the entry stays, and the next session drops it, finding its
// pack indexed: TestJournalEntryOfIndexedPackDropped) or after it.
func TestSessionCrashAtEveryStep(t *testing.T) {
	cs := newCrashSetup(t, sourceBackup)
	if e := journalEntries(t, cs.base); len(e) != 0 {
		t.Fatalf("journal entries after backups that completed: %v", e)
	}
	journaled := 0
	for _, s := range cs.count.steps {
		if s.Kind == chunkstore.StepRename && filepath.Base(filepath.Dir(s.To)) == "journal" {
			journaled++
		}
	}
	// Every pack the backup commits is journaled first: the cuts below
	// land between entry and pack, pack and index file.
	if journaled < 2 {
		t.Fatalf("the backup saved %d journal entries; the test needs several packs", journaled)
	}
	t.Logf("%d durable steps, %d journal entries", len(cs.count.steps), journaled)
	cutAtEveryStep(t, cs, sourceBackup, checkSessionDone)
}

// A session does not walk the packs, yet the next backup of a source whose
// pack was lost or cut short since stores the lost chunks again, for the
// files it finds unchanged too (their chunks are reused only if Has says
// they are stored): its new point restores exactly, with no repair between.
func TestSessionBackupAfterPackLost(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(path string) error
	}{
		{"removed", os.Remove},
		{"truncated", func(p string) error {
			st, err := os.Stat(p)
			if err != nil {
				return err
			}
			return os.Truncate(p, st.Size()/2)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			if _, err := chunkstore.Init(dir, chunkstore.InitOptions{}); err != nil {
				t.Fatal(err)
			}
			src := t.TempDir()
			v := crashVersions()[0]
			writeVersion(t, src, v)
			p1, err := sessionBackup(t, dir, src, sourceSession, nil)
			if err != nil {
				t.Fatal(err)
			}

			st, err := chunkstore.Open(dir, chunkstore.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			r := NewReader(st)
			root, err := r.LoadTree(p1.Tree)
			if err != nil {
				t.Fatal(err)
			}
			docs, err := r.LoadTree(root.Find("docs").Subtree)
			if err != nil {
				t.Fatal(err)
			}
			pack, ok := st.PackOf(docs.Find("big.bin").Extents[0].ID)
			st.Close()
			if !ok {
				t.Fatal("the chunk of docs/big.bin is not indexed")
			}
			h := pack.String()
			if err := c.damage(filepath.Join(dir, "packs", h[:2], h)); err != nil {
				t.Fatal(err)
			}

			p2, err := sessionBackup(t, dir, src, sourceSession, nil)
			if err != nil {
				t.Fatalf("backup after the pack was %s: %v", c.name, err)
			}
			st, err = chunkstore.Open(dir, chunkstore.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			dst := filepath.Join(t.TempDir(), "restore")
			res, err := Restore(context.Background(), NewReader(st), p2, RestoreOptions{Target: dst})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Damaged)+len(res.Skipped) > 0 {
				t.Fatalf("the point backed up after the pack was %s: damaged %v, skipped %v", c.name, res.Damaged, res.Skipped)
			}
			if got := readTreeFiles(t, dst); !sameCrashFiles(got, v) {
				t.Fatalf("the new point restores %s, want %s", describe(got), describe(v))
			}
		})
	}
}

// killAt is a fault hook that models kill -9 of the backup at durable step
// stopAt: that step and every later one fail and are not done, and
// nothing done before is undone (the kernel keeps what a killed process
// wrote). What the dying session does after the kill (its temp area
// removed as it unlocks) a killed process would not do, so the hook keeps
// hard links of the temp area as the kill found it and restore puts them
// back.
type killAt struct {
	mu      sync.Mutex
	dir     string // the store
	keep    string // the temp area's files as the kill found them
	stopAt  int
	at      func(chunkstore.Step) bool // if set, kill at the first step it matches instead of at stopAt
	n       int
	killed  bool
	steps   []chunkstore.Step
	linkErr error
}

func (k *killAt) hook(s chunkstore.Step) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.killed {
		return errPowerCut
	}
	k.n++
	k.steps = append(k.steps, s)
	if k.at != nil && !k.at(s) || k.at == nil && k.n < k.stopAt {
		return nil
	}
	k.killed = true
	tmp := filepath.Join(k.dir, "tmp")
	k.linkErr = filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(tmp, p)
		to := filepath.Join(k.keep, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			return err
		}
		// Writers not at a step run on while the kill is taken: a temp
		// file one of them removed meanwhile is gone at either instant
		// the kill could have struck.
		if err := os.Link(p, to); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
	return errPowerCut
}

// restore makes the temp area what the kill left.
func (k *killAt) restore(t *testing.T) {
	t.Helper()
	if k.linkErr != nil {
		t.Fatalf("keep the temp area at the kill: %v", k.linkErr)
	}
	tmp := filepath.Join(k.dir, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(k.keep)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range ents {
		if err := os.Rename(filepath.Join(k.keep, e.Name()), filepath.Join(tmp, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSessionKilledAtEveryStep kills a backup (the kill -9 model: nothing
// written is undone) at each durable step in turn, and checks that the
// next session of the same source leaves the store exact (every point
// restores, verify reads every blob clean, the index files cover the
// packs exactly, the journal is empty) and that a pack the killed session
// had finished in its temp area, killed as it was about to be renamed into
// packs/, is adopted: it is in packs/ after the next session, indexed.
// The power-cut model (TestSessionCrashAtEveryStep) drops such a pack
// with the temp area's unsynced directory; a kill keeps it.
func TestSessionKilledAtEveryStep(t *testing.T) {
	cs := newCrashSetup(t, sourceBackup)
	var adopted atomic.Int32 // kills between a pack's sync in the temp area and its rename
	// Concurrent pack writers make the order of steps vary from run to
	// run, so a kill by step number may miss every pack rename; the last
	// run kills at the first one whatever its number.
	packRename := func(s chunkstore.Step) bool {
		return s.Kind == chunkstore.StepRename && filepath.Base(filepath.Dir(filepath.Dir(s.To))) == "packs"
	}
	for n := 1; n <= len(cs.count.steps)+1; n++ {
		name, at := fmt.Sprintf("step-%02d", n), (func(chunkstore.Step) bool)(nil)
		if n > len(cs.count.steps) {
			name, at = "first-pack-rename", packRename
		}
		t.Run(name, func(t *testing.T) {
			dir := cs.storeCopy(t)
			k := &killAt{dir: dir, keep: filepath.Join(t.TempDir(), "keep"), stopAt: n, at: at}
			_, err := sourceBackup(t, dir, cs.src, k.hook)
			if err == nil && !k.killed {
				if k.at != nil {
					t.Fatal("the backup renamed no pack into packs/: the test claims nothing")
				}
				return // this run had fewer steps (concurrent pack writers)
			}
			if !errors.Is(err, errPowerCut) {
				t.Fatalf("backup killed at %s: %v, want the kill", name, err)
			}
			k.restore(t)
			step := k.steps[len(k.steps)-1]
			t.Logf("killed at %s %s", step.Kind, strings.TrimPrefix(step.Path, dir))
			// Concurrent writers make the order of steps vary from run to
			// run: what the kill interrupted is this run's step n.
			isPackRename := packRename(step)
			// The next session of the source adopts as it begins, before
			// it writes anything (which could make a pack of that name
			// anew).
			st, err := chunkstore.Open(dir, chunkstore.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			openSession(t, st, sourceSession).Close()
			st.Close()
			if isPackRename {
				if _, err := os.Stat(step.To); err != nil {
					t.Errorf("the pack finished in the temp area at the kill was not adopted: %v", err)
				}
				adopted.Add(1)
			}
			before := checkStore(t, dir, cs.versionOf)
			cs.checkNextBackup(t, dir, sourceBackup, before, checkSessionDone)
		})
	}
	if adopted.Load() == 0 {
		t.Fatal("no kill came between a pack finished in the temp area and its rename: the test claims nothing")
	}
}
