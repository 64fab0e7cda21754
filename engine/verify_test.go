package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
)

// damageStore is a store holding one point of a small tree, reopened for
// every step as a command would open it.
type damageStore struct {
	t     *testing.T
	dir   string
	pw    string
	src   string
	files map[string][]byte // rel path -> content
	point chunkstore.ID
}

func newDamageStore(t *testing.T, encrypt bool) *damageStore {
	t.Helper()
	old := chunkstore.PackTargetSize
	chunkstore.PackTargetSize = 600 << 10 // several data packs
	t.Cleanup(func() { chunkstore.PackTargetSize = old })
	ds := &damageStore{t: t, dir: filepath.Join(t.TempDir(), "store"), pw: "pw", src: t.TempDir(), files: map[string][]byte{}}
	if _, err := chunkstore.Init(ds.dir, chunkstore.InitOptions{Encrypt: encrypt, Password: ds.pw, KDFMemoryKB: 1024}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(7))
	for d := 0; d < 3; d++ {
		for f := 0; f < 6; f++ {
			rel := fmt.Sprintf("d%d/f%d", d, f)
			b := make([]byte, 20_000+rng.Intn(200_000))
			rng.Read(b)
			ds.files[rel] = b
		}
	}
	ds.files["top"] = []byte("top level file")
	for rel, b := range ds.files {
		os.MkdirAll(filepath.Join(ds.src, filepath.Dir(rel)), 0o755)
		if err := os.WriteFile(filepath.Join(ds.src, rel), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ds.point = ds.backup().ID
	return ds
}

func (ds *damageStore) open() *Reader { return ds.store().Reader() }

func (ds *damageStore) store() *Store {
	ds.t.Helper()
	s, err := Open(ds.dir, chunkstore.OpenOptions{Password: ds.pw})
	if err != nil {
		ds.t.Fatal(err)
	}
	ds.t.Cleanup(func() { s.Close() })
	return s
}

func (ds *damageStore) backup() *Point {
	ds.t.Helper()
	s, err := ds.store().Session(context.Background(), SessionOptions{Purpose: "test"})
	if err != nil {
		ds.t.Fatal(err)
	}
	defer s.Close()
	p, err := Backup(context.Background(), s, BackupOptions{Path: ds.src, Source: "s"})
	if err != nil {
		ds.t.Fatal(err)
	}
	return p
}

// verify returns the damaged paths of the first point and the report.
func (ds *damageStore) verify(readData bool) (map[string]bool, *VerifyReport, error) {
	ds.t.Helper()
	rep, err := Verify(context.Background(), ds.open(), VerifyOptions{ReadData: readData})
	if rep == nil {
		ds.t.Fatalf("verify: %v", err)
	}
	got := map[string]bool{}
	for _, d := range rep.Damage {
		if d.Point == ds.point.String() {
			got[d.Path] = true
		}
	}
	return got, rep, err
}

// restore restores point id and returns what it could not restore; files
// it did restore are checked against the source.
func (ds *damageStore) restore(id chunkstore.ID) map[string]bool {
	ds.t.Helper()
	r := ds.open()
	p, err := r.LoadPoint(id)
	if err != nil {
		ds.t.Fatal(err)
	}
	dst := filepath.Join(ds.t.TempDir(), "out")
	res, err := Restore(context.Background(), r, p, RestoreOptions{Target: dst})
	failed := map[string]bool{}
	if res == nil {
		failed["/"] = true
		return failed
	}
	if err != nil && !errors.Is(err, ErrDamaged) {
		ds.t.Fatalf("restore: %v", err)
	}
	for _, d := range res.Damaged {
		failed[d.Path] = true
	}
	for rel, want := range ds.files {
		if failed[rel] || failed[filepath.Dir(rel)+"/"] {
			continue
		}
		if got, err := os.ReadFile(filepath.Join(dst, rel)); err != nil || !bytes.Equal(got, want) {
			ds.t.Errorf("%s not restored exactly (%v) though not reported damaged", rel, err)
		}
	}
	return failed
}

func (ds *damageStore) repair() {
	ds.t.Helper()
	s, err := ds.store().Session(context.Background(), SessionOptions{Purpose: "repair", Exclusive: true})
	if err != nil {
		ds.t.Fatal(err)
	}
	defer s.Close()
	for _, f := range []func(context.Context, *Session, RepairOptions) (*RepairReport, error){RepairIndex, RepairPacks} {
		// ErrDamaged: lost blobs stay, listed; the test judges them.
		if _, err := f(context.Background(), s, RepairOptions{}); err != nil && !errors.Is(err, ErrDamaged) {
			ds.t.Fatal(err)
		}
	}
}

// packOf finds the pack file holding blob id and the blob's place in it.
func (ds *damageStore) packOf(id chunkstore.ID) (string, int64, int64) {
	ds.t.Helper()
	st := ds.open().st
	pack, ok := st.PackOf(id)
	if !ok {
		ds.t.Fatalf("blob %s not indexed", id.Short())
	}
	ents, err := st.ReadPackHeader(pack)
	if err != nil {
		ds.t.Fatal(err)
	}
	for _, e := range ents {
		if e.ID == id {
			h := pack.String()
			return filepath.Join(ds.dir, "packs", h[:2], h), int64(e.Offset), int64(e.Length)
		}
	}
	ds.t.Fatalf("blob %s not in its pack's header", id.Short())
	return "", 0, 0
}

// node returns the node at rel of the first point.
func (ds *damageStore) node(rel string) *Node {
	ds.t.Helper()
	r := ds.open()
	p, err := r.LoadPoint(ds.point)
	if err != nil {
		ds.t.Fatal(err)
	}
	t, err := r.LoadTree(p.Tree)
	if err != nil {
		ds.t.Fatal(err)
	}
	parts := strings.Split(rel, "/")
	for i, part := range parts {
		n := t.Find(part)
		if i == len(parts)-1 {
			return n
		}
		if t, err = r.LoadTree(n.Subtree); err != nil {
			ds.t.Fatal(err)
		}
	}
	return nil
}

func flip(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x20
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func headerLen(t *testing.T, path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return int64(binary.LittleEndian.Uint32(b[len(b)-12:]))
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestVerifyIsExact damages a store in each way a disk can and checks that
// verify --read-data names exactly the files restore cannot restore, that
// plain verify sees truncation and missing packs, and that repair plus a
// new backup leaves a clean store whose latest point restores exactly.
func TestVerifyIsExact(t *testing.T) {
	cases := []struct {
		name string
		// damage returns the paths restore must fail on, when known
		// beforehand (nil: only that verify and restore agree).
		damage func(t *testing.T, ds *damageStore) map[string]bool
		// plain: plain verify sees it too.
		plain bool
	}{
		{"data blob flipped", func(t *testing.T, ds *damageStore) map[string]bool {
			p, off, n := ds.packOf(ds.node("d1/f2").Extents[0].ID)
			flip(t, p, off+n/2)
			return map[string]bool{"d1/f2": true}
		}, false},
		{"tree blob flipped", func(t *testing.T, ds *damageStore) map[string]bool {
			p, off, n := ds.packOf(ds.node("d2").Subtree)
			flip(t, p, off+n/2)
			return map[string]bool{"d2/": true}
		}, false},
		{"data pack header flipped", func(t *testing.T, ds *damageStore) map[string]bool {
			p, _, _ := ds.packOf(ds.node("d1/f2").Extents[0].ID)
			st, _ := os.Stat(p)
			flip(t, p, st.Size()-12-headerLen(t, p)/2)
			return map[string]bool{}
		}, false},
		{"tree pack header flipped", func(t *testing.T, ds *damageStore) map[string]bool {
			p, _, _ := ds.packOf(ds.node("d2").Subtree)
			st, _ := os.Stat(p)
			flip(t, p, st.Size()-12-headerLen(t, p)/2)
			return map[string]bool{}
		}, false},
		{"data pack truncated to half", func(t *testing.T, ds *damageStore) map[string]bool {
			p, _, _ := ds.packOf(ds.node("d1/f2").Extents[0].ID)
			st, _ := os.Stat(p)
			if err := os.Truncate(p, st.Size()/2); err != nil {
				t.Fatal(err)
			}
			return nil
		}, true},
		{"tree pack truncated to half", func(t *testing.T, ds *damageStore) map[string]bool {
			p, _, _ := ds.packOf(ds.node("d2").Subtree)
			st, _ := os.Stat(p)
			if err := os.Truncate(p, st.Size()/2); err != nil {
				t.Fatal(err)
			}
			return nil
		}, true},
		{"data pack deleted", func(t *testing.T, ds *damageStore) map[string]bool {
			p, _, _ := ds.packOf(ds.node("d1/f2").Extents[0].ID)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			return nil
		}, true},
		{"index file corrupt", func(t *testing.T, ds *damageStore) map[string]bool {
			ents, _ := os.ReadDir(filepath.Join(ds.dir, "index"))
			for _, e := range ents {
				flip(t, filepath.Join(ds.dir, "index", e.Name()), 20)
			}
			return map[string]bool{}
		}, false},
	}
	for _, enc := range []bool{false, true} {
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/encrypted=%v", c.name, enc), func(t *testing.T) {
				ds := newDamageStore(t, enc)
				want := c.damage(t, ds)
				if c.plain {
					plain, rep, err := ds.verify(false)
					if err == nil || len(rep.BadPacks) == 0 {
						t.Errorf("plain verify sees nothing: %v %+v", err, rep)
					}
					if failed := ds.restore(ds.point); !maps.Equal(plain, failed) {
						t.Errorf("plain verify reports %v, restore fails on %v", keys(plain), keys(failed))
					}
				}
				got, rep, err := ds.verify(true)
				if len(got) > 0 && !errors.Is(err, ErrVerifyFailed) {
					t.Errorf("verify reports damage but returns %v", err)
				}
				failed := ds.restore(ds.point)
				if !maps.Equal(got, failed) {
					t.Errorf("verify --read-data reports %v, restore fails on %v\n%+v", keys(got), keys(failed), rep)
				}
				if want != nil && !maps.Equal(got, want) {
					t.Errorf("verify --read-data reports %v, want %v", keys(got), keys(want))
				}
				if want == nil && len(got) == 0 {
					t.Error("no damage found")
				}
				ds.repair()
				if _, rep, err := ds.verify(false); err != nil && len(rep.BadPacks) > 0 {
					t.Errorf("after repair, damaged packs remain: %v", rep.BadPacks)
				}
				p := ds.backup()
				// The new point is whole; the old one keeps what
				// was lost (its trees differ from the new ones in
				// directory times), exactly as reported.
				got, rep, _ = ds.verify(true)
				if len(rep.BadPacks) > 0 {
					t.Errorf("after repair and a backup, damaged packs: %v", rep.BadPacks)
				}
				for _, d := range rep.Damage {
					if d.Point == p.ID.String() {
						t.Errorf("new point damaged: %+v", d)
					}
				}
				if failed := ds.restore(ds.point); !maps.Equal(got, failed) {
					t.Errorf("after repair, verify reports %v, restore of the old point fails on %v", keys(got), keys(failed))
				}
				if failed := ds.restore(p.ID); len(failed) > 0 {
					t.Errorf("latest point after repair: %v not restored", keys(failed))
				}
			})
		}
	}
}

// TestBackupStoresDamagedBlobAgain: once a read has found a blob bad, the
// next backup of a source that still has it stores it again, and the new
// point is whole without any repair.
func TestBackupStoresDamagedBlobAgain(t *testing.T) {
	for _, enc := range []bool{false, true} {
		ds := newDamageStore(t, enc)
		p, off, n := ds.packOf(ds.node("d0/f1").Extents[0].ID)
		flip(t, p, off+n/2)
		got, _, _ := ds.verify(true)
		if !got["d0/f1"] {
			t.Fatalf("encrypted=%v: verify missed the flipped blob: %v", enc, keys(got))
		}
		np := ds.backup()
		if failed := ds.restore(np.ID); len(failed) > 0 {
			t.Errorf("encrypted=%v: the new point carries the damage: %v", enc, keys(failed))
		}
		if failed := ds.restore(ds.point); !maps.Equal(failed, map[string]bool{}) {
			// The first point names the same chunk, which now has a
			// good copy: it restores too.
			t.Errorf("encrypted=%v: the old point still fails on %v", enc, keys(failed))
		}
		// verify still reports the damaged pack until it is repaired.
		if _, rep, err := ds.verify(false); err == nil || len(rep.Damage) > 0 {
			t.Errorf("encrypted=%v: plain verify after the new backup: %v, damage %+v", enc, err, rep.Damage)
		}
	}
}
