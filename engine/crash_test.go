package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
)

// errPowerCut is what every durable step returns from the crash on.
var errPowerCut = errors.New("power cut (test)")

// powerCut is a chunkstore fault hook that counts a backup's durable steps
// and, at step stopAt, cuts the power: that step and every later one fail
// and are not done, and apply then drops what a power cut drops, which
// is everything not yet made durable:
//
//   - bytes written to a file since its last fsync (the file is cut back
//     to its length before them),
//   - a created file, and a rename, whose directory was not fsynced since
//     (the file disappears, the rename is undone).
//
// A real power cut may keep any part of that; dropping all of it is the
// case the write order must survive, and with the manifest written before
// the packs are synced it is exactly the case that loses data.
//
// Steps are told before they are done, so "not yet durable" is decided per
// file (by inode, which survives renames) from the steps told so far;
// undoing runs after the backup returned, when nothing writes any more.
type powerCut struct {
	mu      sync.Mutex
	stopAt  int // 1-based; 0 never cuts
	n       int
	crashed bool
	steps   []chunkstore.Step
	undo    []undoOp          // not yet durable, in the order done
	where   map[uint64]string // inode -> current name, for files seen created or renamed
}

type undoOp struct {
	kind     chunkstore.StepKind // StepCreate, StepWrite or StepRename
	ino      uint64
	path, to string
	size     int64 // StepWrite: the length before the write
	replaced bool  // StepRename: to existed (names are content hashes: same bytes)
}

func newPowerCut(stopAt int) *powerCut {
	return &powerCut{stopAt: stopAt, where: map[uint64]string{}}
}

func (pc *powerCut) hook(s chunkstore.Step) error {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.crashed {
		return errPowerCut
	}
	pc.n++
	pc.steps = append(pc.steps, s)
	if pc.n == pc.stopAt {
		pc.crashed = true
		return errPowerCut
	}
	var st syscall.Stat_t
	if err := syscall.Stat(s.Path, &st); err != nil {
		return fmt.Errorf("power cut model: step %s %s: %w", s.Kind, s.Path, err)
	}
	switch s.Kind {
	case chunkstore.StepCreate:
		pc.undo = append(pc.undo, undoOp{kind: s.Kind, ino: st.Ino, path: s.Path})
		pc.where[st.Ino] = s.Path
	case chunkstore.StepWrite:
		pc.undo = append(pc.undo, undoOp{kind: s.Kind, ino: st.Ino, path: s.Path, size: st.Size})
	case chunkstore.StepSync:
		pc.undo = slices.DeleteFunc(pc.undo, func(u undoOp) bool { return u.kind == chunkstore.StepWrite && u.ino == st.Ino })
	case chunkstore.StepRename:
		_, err := os.Lstat(s.To)
		pc.undo = append(pc.undo, undoOp{kind: s.Kind, ino: st.Ino, path: s.Path, to: s.To, replaced: err == nil})
		pc.where[st.Ino] = s.To
	case chunkstore.StepSyncDir:
		pc.undo = slices.DeleteFunc(pc.undo, func(u undoOp) bool {
			return u.kind != chunkstore.StepWrite && filepath.Dir(pc.where[u.ino]) == filepath.Clean(s.Path)
		})
	}
	return nil
}

// apply drops what was not durable at the cut, newest first, so each
// undo finds the file under the name it had then; unsynced bytes are cut
// from the file wherever it is, even under a name made durable since.
func (pc *powerCut) apply(t *testing.T) {
	t.Helper()
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for i := len(pc.undo) - 1; i >= 0; i-- {
		u := pc.undo[i]
		var err error
		switch u.kind {
		case chunkstore.StepWrite:
			// Where the file is now: renamed since, durably or not.
			p, ok := pc.where[u.ino]
			if !ok {
				p = u.path
			}
			err = os.Truncate(p, u.size)
		case chunkstore.StepRename:
			if !u.replaced {
				// The session may have removed its temp area after the
				// cut; with the power gone it would still be there.
				if err = os.MkdirAll(filepath.Dir(u.path), 0o700); err == nil {
					err = os.Rename(u.to, u.path)
				}
				pc.where[u.ino] = u.path
			}
		case chunkstore.StepCreate:
			err = os.Remove(u.path)
		}
		// A temp file the failed backup removed itself is gone either way.
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("power cut: undo %s %s: %v", u.kind, u.path, err)
		}
	}
}

// crashFile is one regular file of a source version.
type crashFile struct {
	data []byte
	mode fs.FileMode
}

// crashVersions are three versions of a small source tree: the first two
// are backed up before the crash, the third is the backup that crashes.
// Each changes, adds and removes files, and keeps some as they were, so
// the crashing backup both reuses blobs and writes new ones into several
// packs.
func crashVersions() []map[string]crashFile {
	rng := rand.New(rand.NewSource(18))
	random := func(n int) []byte { b := make([]byte, n); rng.Read(b); return b }
	v1 := map[string]crashFile{
		"a.txt":        {[]byte("version one of a\n"), 0o644},
		"bin/tool":     {random(70_000), 0o755},
		"docs/big.bin": {random(150_000), 0o600},
		"docs/small":   {[]byte("small"), 0o640},
		"empty":        {nil, 0o644},
	}
	v2 := maps.Clone(v1)
	v2["a.txt"] = crashFile{[]byte("version TWO of a\n"), 0o644}
	v2["docs/new.bin"] = crashFile{random(90_000), 0o644}
	delete(v2, "docs/small")
	v3 := maps.Clone(v2)
	v3["bin/tool"] = crashFile{append(slices.Clone(v2["bin/tool"].data[:30_000]), random(60_000)...), 0o755}
	v3["docs/more/c.bin"] = crashFile{random(120_000), 0o644}
	v3["docs/more/d.txt"] = crashFile{bytes.Repeat([]byte("compressible line\n"), 5000), 0o644}
	delete(v3, "empty")
	return []map[string]crashFile{v1, v2, v3}
}

// writeVersion makes dir hold exactly v, leaving files it has already
// untouched (so the next backup finds them unchanged).
func writeVersion(t *testing.T, dir string, v map[string]crashFile) {
	t.Helper()
	have := readTreeFiles(t, dir)
	for rel := range have {
		if _, ok := v[rel]; !ok {
			if err := os.Remove(filepath.Join(dir, rel)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for rel, f := range v {
		if h, ok := have[rel]; ok && bytes.Equal(h.data, f.data) && h.mode == f.mode {
			continue
		}
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
}

// readTreeFiles returns every regular file under dir with its content and
// permission bits.
func readTreeFiles(t *testing.T, dir string) map[string]crashFile {
	t.Helper()
	out := map[string]crashFile{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = crashFile{b, info.Mode().Perm()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm())
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// crashBackup backs up src into the store in dir with hook set (nil: none)
// and returns the point or the error.
func crashBackup(t *testing.T, dir, src string, hook func(chunkstore.Step) error) (*Point, error) {
	t.Helper()
	st, err := chunkstore.Open(dir, chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := openSession(t, st, SessionOptions{Purpose: "test"})
	defer s.Close()
	defer chunkstore.SetFaultHook(hook)()
	return Backup(context.Background(), s, BackupOptions{Path: src, Source: "s"})
}

// checkStore verifies the store in dir reading every blob, and restores
// every point, which must equal the version versionOf gives it. It
// returns the points' ids.
func checkStore(t *testing.T, dir string, versionOf func(chunkstore.ID) map[string]crashFile) map[chunkstore.ID]bool {
	t.Helper()
	st, err := chunkstore.Open(dir, chunkstore.OpenOptions{})
	if err != nil {
		t.Fatalf("open after the crash: %v", err)
	}
	defer st.Close()
	r := NewReader(st)
	rep, err := Verify(context.Background(), r, VerifyOptions{ReadData: true})
	if err != nil || rep == nil || len(rep.Damage)+len(rep.DamagedBlobs)+len(rep.DamagedPoints)+len(rep.BadPacks)+len(rep.Store) > 0 {
		t.Fatalf("verify --read-data: %v; report %+v", err, rep)
	}
	points, err := r.Points()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[chunkstore.ID]bool{}
	for _, p := range points {
		ids[p.ID] = true
		dst := filepath.Join(t.TempDir(), "restore")
		res, err := Restore(context.Background(), r, p, RestoreOptions{Target: dst})
		if err != nil {
			t.Fatalf("restore point %s: %v", p.ID.Short(), err)
		}
		if len(res.Damaged)+len(res.Skipped) > 0 {
			t.Fatalf("restore point %s: damaged %v, skipped %v", p.ID.Short(), res.Damaged, res.Skipped)
		}
		if got, want := readTreeFiles(t, dst), versionOf(p.ID); !sameCrashFiles(got, want) {
			t.Fatalf("point %s restores %s, want %s", p.ID.Short(), describe(got), describe(want))
		}
	}
	return ids
}

func sameCrashFiles(a, b map[string]crashFile) bool {
	return maps.EqualFunc(a, b, func(x, y crashFile) bool { return bytes.Equal(x.data, y.data) && x.mode == y.mode })
}

func describe(m map[string]crashFile) string {
	var parts []string
	for _, rel := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s (%d bytes %v)", rel, len(m[rel].data), m[rel].mode))
	}
	return strings.Join(parts, ", ")
}

// backupFunc backs up src into the store in dir with hook set (nil: none)
// and returns the point or the error: the backup a crash test cuts.
type backupFunc func(t *testing.T, dir, src string, hook func(chunkstore.Step) error) (*Point, error)

// crashSetup is a store with the first two of crashVersions backed up and
// the source holding the third, for the backup the test cuts.
type crashSetup struct {
	base, src string
	// committed are the points backed up before the crash, with their
	// versions.
	committed map[chunkstore.ID]map[string]crashFile
	// latest is the version in src.
	latest map[string]crashFile
	// count holds the durable steps of an uncut backup of the third
	// version, run in a copy of base.
	count *powerCut
}

// newCrashSetup backs up the first two versions with backup into a new
// store, with packs small enough that a backup writes several, some
// finished before the commit.
func newCrashSetup(t *testing.T, backup backupFunc) *crashSetup {
	t.Helper()
	old := chunkstore.PackTargetSize
	chunkstore.PackTargetSize = 100 << 10
	t.Cleanup(func() { chunkstore.PackTargetSize = old })

	versions := crashVersions()
	cs := &crashSetup{
		base:      filepath.Join(t.TempDir(), "store"),
		src:       t.TempDir(),
		committed: map[chunkstore.ID]map[string]crashFile{},
		latest:    versions[2],
		count:     newPowerCut(0),
	}
	if _, err := chunkstore.Init(cs.base, chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, v := range versions[:2] {
		writeVersion(t, cs.src, v)
		p, err := backup(t, cs.base, cs.src, nil)
		if err != nil {
			t.Fatal(err)
		}
		cs.committed[p.ID] = v
	}
	writeVersion(t, cs.src, cs.latest)
	if _, err := backup(t, cs.storeCopy(t), cs.src, cs.count.hook); err != nil {
		t.Fatalf("backup counting its steps: %v", err)
	}
	return cs
}

// storeCopy copies the store with the committed points into a new
// directory of t's and returns its path.
func (cs *crashSetup) storeCopy(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	copyDir(t, cs.base, dir)
	return dir
}

// versionOf is the version point id must restore: a point the crashed
// backup committed can only be of the new version.
func (cs *crashSetup) versionOf(id chunkstore.ID) map[string]crashFile {
	if v, ok := cs.committed[id]; ok {
		return v
	}
	return cs.latest
}

// checkNextBackup runs backup once more on the store in dir after the
// crash, when it held the points before, then check (nil: none) on the
// store, and checks that every point restores exactly, the new one too.
func (cs *crashSetup) checkNextBackup(t *testing.T, dir string, backup backupFunc, before map[chunkstore.ID]bool, check func(t *testing.T, dir string)) {
	t.Helper()
	next, err := backup(t, dir, cs.src, nil)
	if err != nil {
		t.Fatalf("backup after the crash: %v", err)
	}
	if check != nil {
		check(t, dir)
	}
	if after := checkStore(t, dir, cs.versionOf); len(after) != len(before)+1 || !after[next.ID] {
		t.Fatalf("%d points after the next backup, want %d with the new one", len(after), len(before)+1)
	}
}

// cutAtEveryStep cuts the power at each durable step of backup in turn,
// each time in a fresh copy of the store, and checks what doc.go's write
// order promises: the store verifies clean reading every blob, every
// committed point restores exactly, and the next backup succeeds and
// restores exactly too, after check (nil: none) passed on the store.
func cutAtEveryStep(t *testing.T, cs *crashSetup, backup backupFunc, check func(t *testing.T, dir string)) {
	t.Helper()
	// The order of a backup's steps can differ between runs (blobs are
	// saved by several goroutines), so step n is the nth step of the run
	// that is cut, and the loop ends with the first run that ends before
	// its cut: the backup completed.
	for n := 1; ; n++ {
		if n > 2*len(cs.count.steps) {
			t.Fatalf("no backup run completed within %d steps; the counting run had %d", n-1, len(cs.count.steps))
		}
		completed := false
		ok := t.Run(fmt.Sprintf("step-%02d", n), func(t *testing.T) {
			dir := cs.storeCopy(t)
			pc := newPowerCut(n)
			p, err := backup(t, dir, cs.src, pc.hook)
			if pc.n < n {
				completed = true
				if err != nil {
					t.Fatalf("backup without a cut (%d steps): %v", pc.n, err)
				}
			} else {
				step := pc.steps[n-1]
				t.Logf("power cut at %s %s", step.Kind, strings.TrimPrefix(step.Path, dir))
				if !errors.Is(err, errPowerCut) {
					t.Fatalf("backup cut at step %d: got point %v, error %v; want the power cut", n, p, err)
				}
				pc.apply(t)
			}
			before := checkStore(t, dir, cs.versionOf)
			for id := range cs.committed {
				if !before[id] {
					t.Fatalf("point %s, committed before the crash, is gone", id.Short())
				}
			}
			cs.checkNextBackup(t, dir, backup, before, check)
		})
		if !ok || completed {
			break // the first step that breaks the store tells the story
		}
	}
}

// TestCrashAtEveryStep cuts the power at each durable step of a backup in
// turn and checks what doc.go's write order promises: the store verifies
// clean reading every blob, every committed point restores exactly, and
// the next backup succeeds and restores exactly too.
func TestCrashAtEveryStep(t *testing.T) {
	cs := newCrashSetup(t, crashBackup)
	kinds := map[chunkstore.StepKind]int{}
	var manifest bool
	for _, s := range cs.count.steps {
		kinds[s.Kind]++
		manifest = manifest || s.Kind == chunkstore.StepRename && filepath.Base(filepath.Dir(s.To)) == "points"
	}
	// The steps the hook must see for the test to mean anything: several
	// packs written and renamed into place, and the manifest.
	if kinds[chunkstore.StepRename] < 4 || kinds[chunkstore.StepWrite] < 4 || !manifest {
		t.Fatalf("the backup's durable steps are %v (manifest renamed: %v): the hook misses steps", kinds, manifest)
	}
	t.Logf("%d durable steps: %v", len(cs.count.steps), kinds)
	cutAtEveryStep(t, cs, crashBackup, nil)
}
