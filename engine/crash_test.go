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

// TestCrashAtEveryStep cuts the power at each durable step of a backup in
// turn and checks what doc.go's write order promises: the store verifies
// clean reading every blob, every committed point restores exactly, and
// the next backup succeeds and restores exactly too.
func TestCrashAtEveryStep(t *testing.T) {
	old := chunkstore.PackTargetSize
	chunkstore.PackTargetSize = 100 << 10 // several packs per backup, some finished before the commit
	t.Cleanup(func() { chunkstore.PackTargetSize = old })

	versions := crashVersions()
	base := filepath.Join(t.TempDir(), "store")
	if _, err := chunkstore.Init(base, chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	committed := map[chunkstore.ID]map[string]crashFile{}
	for _, v := range versions[:2] {
		writeVersion(t, src, v)
		p, err := crashBackup(t, base, src, nil)
		if err != nil {
			t.Fatal(err)
		}
		committed[p.ID] = v
	}
	writeVersion(t, src, versions[2])
	// A point the crashed backup committed can only be of the new version.
	versionOf := func(id chunkstore.ID) map[string]crashFile {
		if v, ok := committed[id]; ok {
			return v
		}
		return versions[2]
	}

	count := newPowerCut(0)
	tmp := filepath.Join(t.TempDir(), "count")
	copyDir(t, base, tmp)
	if _, err := crashBackup(t, tmp, src, count.hook); err != nil {
		t.Fatalf("backup counting its steps: %v", err)
	}
	kinds := map[chunkstore.StepKind]int{}
	var manifest bool
	for _, s := range count.steps {
		kinds[s.Kind]++
		manifest = manifest || s.Kind == chunkstore.StepRename && filepath.Base(filepath.Dir(s.To)) == "points"
	}
	// The steps the hook must see for the test to mean anything: several
	// packs written and renamed into place, and the manifest.
	if kinds[chunkstore.StepRename] < 4 || kinds[chunkstore.StepWrite] < 4 || !manifest {
		t.Fatalf("the backup's durable steps are %v (manifest renamed: %v): the hook misses steps", kinds, manifest)
	}
	t.Logf("%d durable steps: %v", len(count.steps), kinds)

	// The order of a backup's steps can differ between runs (blobs are
	// saved by several goroutines), so step n is the nth step of the run
	// that is cut, and the loop ends with the first run that ends before
	// its cut: the backup completed.
	for n := 1; ; n++ {
		if n > 2*len(count.steps) {
			t.Fatalf("no backup run completed within %d steps; the counting run had %d", n-1, len(count.steps))
		}
		completed := false
		ok := t.Run(fmt.Sprintf("step-%02d", n), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			copyDir(t, base, dir)
			pc := newPowerCut(n)
			p, err := crashBackup(t, dir, src, pc.hook)
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
			before := checkStore(t, dir, versionOf)
			for id := range committed {
				if !before[id] {
					t.Fatalf("point %s, committed before the crash, is gone", id.Short())
				}
			}
			next, err := crashBackup(t, dir, src, nil)
			if err != nil {
				t.Fatalf("backup after the crash: %v", err)
			}
			if after := checkStore(t, dir, versionOf); len(after) != len(before)+1 || !after[next.ID] {
				t.Fatalf("%d points after the next backup, want %d with the new one", len(after), len(before)+1)
			}
		})
		if !ok || completed {
			break // the first step that breaks the store tells the story
		}
	}
}
