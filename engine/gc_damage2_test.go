package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// Fix: a tree blob that fails its check stops garbage collection with an
// error that wraps ErrDamaged, as a damaged manifest does, so the command
// exits 4 (damaged data) and not 1.
func TestGCDamagedTreeIsDamage(t *testing.T) {
	ds := newDamageStore(t, false)
	r := ds.open()
	p, err := r.LoadPoint(ds.point)
	if err != nil {
		t.Fatal(err)
	}
	path, off, _ := ds.packOf(p.Tree)
	flip(t, path, off+3)
	_, err = GC(context.Background(), ds.store(), GCOptions{IndexGrace: -1})
	if err == nil || !strings.Contains(err.Error(), "stopped before deleting anything") {
		t.Fatalf("gc with a damaged root tree: %v", err)
	}
	if !errors.Is(err, ErrDamaged) {
		t.Errorf("gc with a damaged root tree: error does not wrap ErrDamaged (exit 4): %v", err)
	}
}
