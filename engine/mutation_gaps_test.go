package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
)

// TestPowerCutAfterCommit cuts the power just after a backup made its
// point's manifest durable: at the next durable step if there is one (a
// manifest written before the packs and index it needs), else just after
// the backup returned. Everything the point needs must be durable by then.
// TestCrashAtEveryStep cuts at each step in turn, but it never cuts after
// the last step, so a step that is missing altogether (a pack renamed into
// place without the fsync of its directory) goes unseen when the manifest
// is last; and it stops at the first run that ends before its cut, which,
// as the number of packs varies from run to run, can come before the
// manifest's steps. This test is aimed at that one moment.
func TestPowerCutAfterCommit(t *testing.T) {
	old := chunkstore.PackTargetSize
	chunkstore.PackTargetSize = 100 << 10 // several packs, as in TestCrashAtEveryStep
	t.Cleanup(func() { chunkstore.PackTargetSize = old })

	// An exclusive session writes its packs in tmp/; a session of a named
	// source in its own temp area, which goes when the session ends.
	for _, o := range []SessionOptions{{Purpose: "test"}, {Purpose: "test", Source: "s"}} {
		name := "exclusive"
		if o.Source != "" {
			name = "session"
		}
		t.Run(name, func(t *testing.T) {
			versions := crashVersions()
			dir := filepath.Join(t.TempDir(), "store")
			if _, err := chunkstore.Init(dir, chunkstore.InitOptions{}); err != nil {
				t.Fatal(err)
			}
			src := t.TempDir()
			committed := map[chunkstore.ID]map[string]crashFile{}
			for i, v := range versions {
				writeVersion(t, src, v)
				var hook func(chunkstore.Step) error
				pc := newPowerCut(0) // until the manifest is durable: counts, never cuts
				manifest := false
				if i == len(versions)-1 {
					hook = func(s chunkstore.Step) error {
						err := pc.hook(s)
						pc.mu.Lock()
						defer pc.mu.Unlock()
						if s.Kind == chunkstore.StepSyncDir && filepath.Base(s.Path) == "points" && err == nil {
							manifest = true
							pc.stopAt = pc.n + 1
						}
						return err
					}
				}
				p, err := sessionBackup(t, dir, src, o, hook)
				if hook == nil {
					if err != nil {
						t.Fatal(err)
					}
					committed[p.ID] = v
					continue
				}
				if !manifest {
					t.Fatalf("the backup made no point manifest durable (error %v, steps %d)", err, len(pc.steps))
				}
				switch {
				case pc.crashed:
					t.Logf("power cut at %s %s, after the manifest", pc.steps[len(pc.steps)-1].Kind, strings.TrimPrefix(pc.steps[len(pc.steps)-1].Path, dir))
					if !errors.Is(err, errPowerCut) {
						t.Fatalf("backup cut after its manifest: point %v, error %v; want the power cut", p, err)
					}
				case err != nil:
					t.Fatal(err)
				default:
					committed[p.ID] = v
				}
				// A rename not made durable goes back to where the file was. The
				// session's temp area is gone by now (its removal was not made
				// durable either), so the way back is made first; the file is
				// then removed with its creation, as a power cut loses both.
				for _, u := range pc.undo {
					if u.kind == chunkstore.StepRename {
						if err := os.MkdirAll(filepath.Dir(u.path), 0o700); err != nil {
							t.Fatal(err)
						}
					}
				}
				pc.apply(t)
			}
			// A point the cut backup made durable can only be of the last version.
			got := checkStore(t, dir, func(id chunkstore.ID) map[string]crashFile {
				if v, ok := committed[id]; ok {
					return v
				}
				return versions[len(versions)-1]
			})
			for id := range committed {
				if !got[id] {
					t.Errorf("point %s, committed before the power cut, is gone", id.Short())
				}
			}
		})
	}
}

// sessionBackup is crashBackup with the session's options given.
func sessionBackup(t *testing.T, dir, src string, o SessionOptions, hook func(chunkstore.Step) error) (*Point, error) {
	t.Helper()
	st, err := chunkstore.Open(dir, chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := openSession(t, st, o)
	defer s.Close()
	defer chunkstore.SetFaultHook(hook)()
	return Backup(context.Background(), s, BackupOptions{Path: src, Source: "s"})
}

// A symlink planted where a file is about to be restored (another process,
// between the target's check and the create) is never written through:
// the entry fails, the file the link points to is untouched.
func TestRestoreNeverWritesThroughPlantedLink(t *testing.T) {
	ts, p := oneFilePoint(t)
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("not yours"), 0o644); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "target")
	beforeCreate = func(path string) {
		if filepath.Base(path) == "f" {
			os.Symlink(outside, path)
		}
	}
	t.Cleanup(func() { beforeCreate = nil })
	res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target})
	if err == nil && (res == nil || len(res.Skipped)+len(res.Damaged) == 0) {
		t.Errorf("restore over a planted symlink reported no failure: %+v", res)
	}
	if b, _ := os.ReadFile(outside); string(b) != "not yours" {
		t.Errorf("the file outside the target now holds %q: the restore wrote through the link", b)
	}
}

// A target holding a single entry is not empty: without Overwrite the
// restore refuses it and leaves the entry alone.
func TestRestoreRefusesTargetWithOneEntry(t *testing.T) {
	ts, p := oneFilePoint(t)
	target := t.TempDir()
	mine := filepath.Join(target, "mine")
	if err := os.WriteFile(mine, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target}); err == nil || !strings.Contains(err.Error(), "overwrite") {
		t.Errorf("restore into a target holding one entry: %v, want a refusal naming --overwrite", err)
	}
	if b, _ := os.ReadFile(mine); string(b) != "keep me" {
		t.Errorf("the entry in the target now holds %q", b)
	}
	if _, err := os.Lstat(filepath.Join(target, "f")); err == nil {
		t.Errorf("restored into a target that was not empty")
	}
}

// oneFilePoint backs up a directory holding one file, f.
func oneFilePoint(t *testing.T) (*testStore, *Point) {
	t.Helper()
	ts := newTestStore(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("restored content"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	return ts, p
}
