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

// repair packs and repair index meeting a pack whose header cannot be
// read for an I/O error stop with what to do, and change nothing in it.
func TestRepairPackIOErrorLeavesIt(t *testing.T) {
	ds := newDamageStore(t, false)
	p, _, _ := ds.packOf(ds.node("d1/f2").Extents[0].ID)
	pack := filepath.Base(p)
	before, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	st, err := chunkstore.OpenBackend(deniedPacks{local.Open(ds.dir), map[string]bool{pack: true}, syscall.EIO}, chunkstore.OpenOptions{Password: ds.pw})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.DamagedPacks(); err == nil || !strings.Contains(err.Error(), "the pack is left as it is") || !strings.Contains(err.Error(), "check the disk") {
		t.Errorf("damaged packs with an I/O error: %v", err)
	}
	if after, err := os.ReadFile(p); err != nil || !bytes.Equal(before, after) {
		t.Errorf("pack changed: %v", err)
	}
}
