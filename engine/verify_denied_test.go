package engine

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
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
	deny map[string]bool
}

func (d deniedPacks) Load(ctx context.Context, h backend.Handle, off int64, n int, buf []byte) ([]byte, error) {
	if h.Type == backend.Packs && d.deny[h.Name] {
		return nil, &fs.PathError{Op: "open", Path: filepath.Join(d.Location(), "packs", h.Name[:2], h.Name), Err: syscall.EACCES}
	}
	return d.Backend.Load(ctx, h, off, n, buf)
}

// TestVerifyPermissionDeniedIsNotDamage: a pack recall may not read is
// reported unreadable (ErrVerifyIncomplete: fix the permissions), never
// as damage that 'repair packs' should be run for, with and without
// --read-data; and nothing is recorded damaged.
func TestVerifyPermissionDeniedIsNotDamage(t *testing.T) {
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
			st, err := chunkstore.OpenBackend(deniedPacks{local.Open(ds.dir), map[string]bool{pack: true}}, chunkstore.OpenOptions{Password: ds.pw})
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
