package engine

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
)

// TestPowerCutAfterBackupReturns cuts the power just after a backup said
// it committed its point: everything the point needs must be durable by
// then. TestCrashAtEveryStep cuts only at steps, so a step that is
// missing altogether (a pack renamed into place without the fsync of its
// directory) leaves no step to cut at; the cut after the last one drops
// that rename, and with it the pack the point refers to.
func TestPowerCutAfterBackupReturns(t *testing.T) {
	old := chunkstore.PackTargetSize
	chunkstore.PackTargetSize = 100 << 10 // several packs, as in TestCrashAtEveryStep
	t.Cleanup(func() { chunkstore.PackTargetSize = old })

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
		pc := newPowerCut(0) // counts, never cuts
		if i == len(versions)-1 {
			hook = pc.hook
		}
		p, err := crashBackup(t, dir, src, hook)
		if err != nil {
			t.Fatal(err)
		}
		committed[p.ID] = v
		if hook == nil {
			continue
		}
		if len(pc.steps) == 0 {
			t.Fatal("the backup told the fault hook no step")
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
	got := checkStore(t, dir, func(id chunkstore.ID) map[string]crashFile { return committed[id] })
	for id := range committed {
		if !got[id] {
			t.Errorf("point %s, committed before the power cut, is gone", id.Short())
		}
	}
}
