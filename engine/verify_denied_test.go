package engine

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/local"
)

// deniedPacks is the store's local directory with some pack files that
// may not be opened, as after a chmod or a chown by another user. Tests
// run as root, which chmod does not stop, so the refusal is made at the
// backend: the error is the one os.Open gives. Only Load is refused:
// listing and stat need the directory's permission, not the file's.
type deniedPacks struct {
	backend.Backend
	deny  map[string]bool
	errno syscall.Errno // EACCES when 0; EIO for a failing disk under the pack
}

func (d deniedPacks) Load(ctx context.Context, h backend.Handle, off int64, n int, buf []byte) ([]byte, error) {
	if h.Type == backend.Packs && d.deny[h.Name] {
		errno, op := d.errno, "read"
		if errno == 0 {
			errno, op = syscall.EACCES, "open"
		}
		return nil, &fs.PathError{Op: op, Path: filepath.Join(d.Location(), "packs", h.Name[:2], h.Name), Err: errno}
	}
	return d.Backend.Load(ctx, h, off, n, buf)
}

// TestVerifyPermissionDeniedIsNotDamage: a pack recall may not read, or
// whose read fails in the disk under it (EIO), is reported unreadable
// (ErrVerifyIncomplete: fix the permissions, check the disk), never as
// damage that 'repair packs' should be run for (it would rewrite and
// delete the pack), with and without --read-data; and nothing is
// recorded damaged.
func TestVerifyPermissionDeniedIsNotDamage(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EIO} {
		t.Run(errno.Error(), func(t *testing.T) { verifyUnreadable(t, errno) })
	}
}

func verifyUnreadable(t *testing.T, errno syscall.Errno) {
	for _, c := range []struct {
		name     string
		blob     func(ds *damageStore) chunkstore.ID
		readData bool
	}{
		{"data pack, read-data", func(ds *damageStore) chunkstore.ID { return ds.node("d1/f2").Extents[0].ID }, true},
		{"tree pack, read-data", func(ds *damageStore) chunkstore.ID { return ds.node("d2").Subtree }, true},
		{"tree pack", func(ds *damageStore) chunkstore.ID { return ds.node("d2").Subtree }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ds := newDamageStore(t, false)
			p, _, _ := ds.packOf(c.blob(ds))
			pack := filepath.Base(p)
			st, err := chunkstore.OpenBackend(deniedPacks{local.Open(ds.dir), map[string]bool{pack: true}, errno}, chunkstore.OpenOptions{Password: ds.pw})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			rep, err := Verify(context.Background(), NewReader(st), VerifyOptions{ReadData: c.readData})
			if rep == nil {
				t.Fatal(err)
			}
			if !errors.Is(err, ErrVerifyIncomplete) || errors.Is(err, ErrVerifyFailed) {
				t.Errorf("verify: %v, want ErrVerifyIncomplete and not ErrVerifyFailed", err)
			}
			if _, ok := rep.Unreadable[pack]; !ok {
				t.Errorf("unreadable packs %v, want %s", rep.Unreadable, pack)
			}
			if len(rep.BadPacks)+len(rep.DamagedBlobs)+len(rep.Damage)+len(rep.DamagedPoints) > 0 {
				t.Errorf("a pack not read counted as damage: bad packs %v, blobs %+v, files %+v, points %+v", rep.BadPacks, rep.DamagedBlobs, rep.Damage, rep.DamagedPoints)
			}
			if d := ds.open().st.DamagedBlobs(); len(d) > 0 {
				t.Errorf("recorded damaged: %+v", d)
			}
		})
	}
}

// A pack the disk fails to read (EIO) stops no repair of the others:
// repair packs salvages the damaged pack beside it and repair index
// rebuilds, while the unreadable pack, and the index file that locates
// its blobs, stay as they are. The report names it with what to do, and
// once the disk reads it again everything it holds is restorable.
func TestRepairPackIOErrorLeavesIt(t *testing.T) {
	ds := newDamageStore(t, false)
	// Pack a holds a blob made bad (found by verify --read-data); pack
	// b, another one, cannot be read at all.
	pa, pb := ds.twoPacks()
	_, off, n := ds.packOf(ds.node("d0/f0").Extents[0].ID)
	flip(t, pa, off+n/2)
	if _, _, err := ds.verify(true); !errors.Is(err, ErrVerifyFailed) {
		t.Fatalf("verify --read-data: %v, want the flipped blob found", err)
	}
	before, err := os.ReadFile(pb)
	if err != nil {
		t.Fatal(err)
	}
	st, err := chunkstore.OpenBackend(deniedPacks{local.Open(ds.dir), map[string]bool{filepath.Base(pb): true}, syscall.EIO}, chunkstore.OpenOptions{Password: ds.pw})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := st.DamagedPacks()
	if err != nil || len(bad) != 2 {
		t.Fatalf("damaged packs with an I/O error: %v %+v, want the damaged pack and the unreadable one", err, bad)
	}
	for _, f := range []func(context.Context, *Session, RepairOptions) (*RepairReport, error){RepairPacks, RepairIndex} {
		s, err := NewStore(st).Session(context.Background(), SessionOptions{Purpose: "repair", Exclusive: true})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := f(context.Background(), s, RepairOptions{})
		s.Close()
		if rep == nil {
			t.Fatalf("repair: %v", err)
		}
		why := rep.Unreadable[filepath.Base(pb)]
		for _, want := range []string{pb, "input/output error", "left as it is", "check the disk"} {
			if !strings.Contains(why, want) {
				t.Errorf("unreadable pack %q: does not say %q", why, want)
			}
		}
		// Repair packs lost the flipped blob (damage: exit 4); repair
		// index after it leaves only the pack it could not read, which
		// is not damage.
		err = rep.DamageLeft("repair")
		if err == nil || !strings.Contains(err.Error(), "1 packs could not be read and were not repaired") || !strings.Contains(err.Error(), pb) {
			t.Errorf("damage left: %v", err)
		}
		if lost := len(rep.Lost) > 0; errors.Is(err, ErrDamaged) != lost {
			t.Errorf("damage left with %d blobs lost: %v", len(rep.Lost), err)
		}
	}
	st.Close()
	if _, err := os.Stat(pa); err == nil {
		t.Errorf("the damaged pack beside the unreadable one was not salvaged")
	}
	if after, err := os.ReadFile(pb); err != nil || !bytes.Equal(before, after) {
		t.Errorf("unreadable pack changed: %v", err)
	}
	// The disk reads again: the unreadable pack's blobs are still
	// indexed, and only the flipped blob's file is lost.
	for rel := range ds.files {
		if rel != "d0/f0" {
			ds.packOf(ds.node(rel).Extents[0].ID) // fails the test when not indexed
		}
	}
	ds.repair()
	got := ds.restore(ds.point)
	if len(got) != 1 || !got["d0/f0"] {
		t.Errorf("after the disk reads again, not restored: %v, want only d0/f0", got)
	}
}

// Fix (restore from packs recall may not read): restore called them
// damaged data and advised verify for "the damaged packs". It still
// restores every other file and exits as for damage (files are missing),
// but says the packs could not be read, which no repair mends.
func TestRestoreFromDeniedPackSaysNotDamage(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EIO} {
		ds := newDamageStore(t, false)
		p, _, _ := ds.packOf(ds.node("d1/f2").Extents[0].ID)
		st, err := chunkstore.OpenBackend(deniedPacks{local.Open(ds.dir), map[string]bool{filepath.Base(p): true}, errno}, chunkstore.OpenOptions{Password: ds.pw})
		if err != nil {
			t.Fatal(err)
		}
		r := NewReader(st)
		pt, err := r.LoadPoint(ds.point)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Restore(context.Background(), r, pt, RestoreOptions{Target: filepath.Join(t.TempDir(), "out")})
		st.Close()
		if res == nil || !errors.Is(err, ErrDamaged) || !res.Unreadable || !strings.Contains(err.Error(), "no damage of their bytes") {
			t.Errorf("%v: restore from a pack that cannot be read: %v (unreadable %v)", errno, err, res != nil && res.Unreadable)
		}
	}
	// Damage of the bytes is damage.
	ds := newDamageStore(t, false)
	p, off, n := ds.packOf(ds.node("d1/f2").Extents[0].ID)
	flip(t, p, off+n/2)
	r := ds.open()
	pt, err := r.LoadPoint(ds.point)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Restore(context.Background(), r, pt, RestoreOptions{Target: filepath.Join(t.TempDir(), "out")})
	if res == nil || !errors.Is(err, ErrDamaged) || res.Unreadable || strings.Contains(err.Error(), "no damage") {
		t.Errorf("restore of a damaged blob: %v", err)
	}
}
