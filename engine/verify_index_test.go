package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyReportsIndexProblems: an index file that does not decode
// loses no data (its packs are read from their headers), but verify
// reports it as a store problem, naming the file and 'recall repair
// index', and fails; after repair index it is clean.
func TestVerifyReportsIndexProblems(t *testing.T) {
	ds := newDamageStore(t, true)
	ents, err := os.ReadDir(filepath.Join(ds.dir, "index"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("index files: %v %v", ents, err)
	}
	name := ents[0].Name()
	flip(t, filepath.Join(ds.dir, "index", name), 20)

	got, rep, err := ds.verify(false)
	if !errors.Is(err, ErrVerifyFailed) {
		t.Errorf("verify with a corrupt index file: %v, want ErrVerifyFailed", err)
	}
	if len(got) > 0 || len(rep.BadPacks) > 0 {
		t.Errorf("a corrupt index file loses nothing, but verify reports files %v, packs %v", keys(got), rep.BadPacks)
	}
	found := false
	for _, p := range rep.Store {
		found = found || strings.Contains(p, name) && strings.Contains(p, "'recall repair index'")
	}
	if !found {
		t.Errorf("store problems %q, want index file %s with 'recall repair index' (from chunkstore.Store.IndexProblems)", rep.Store, name)
	}

	if _, err := ds.runRepair(RepairIndex, RepairOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, rep, err := ds.verify(false); err != nil || len(rep.Store) > 0 {
		t.Errorf("after repair index: %v, store problems %q", err, rep.Store)
	}
}
