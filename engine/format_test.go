package engine

import (
	"bytes"
	"github.com/recall-backup/recall/internal/golden"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
)

func id(b byte) (i chunkstore.ID) {
	for k := range i {
		i[k] = b + byte(k)
	}
	return
}

func sampleTree() *Tree {
	return &Tree{Nodes: []*Node{
		{Name: "sub", Type: TypeDir, Mode: 0o755, UID: 0, GID: 0, MtimeNS: 1700000000123456789, Subtree: id(1)},
		{Name: "a\xff.bin", Type: TypeFile, Mode: 0o4755, UID: 1000, GID: 100, MtimeNS: 1700000000000000001,
			CtimeNS: 1700000000000000002, AtimeNS: -5, Size: 3 << 20, Dev: 2049, Inode: 77, Nlink: 2, LinkGroup: 1,
			Xattrs:  []Xattr{{Name: "user.k", Value: []byte("v")}, {Name: "system.posix_acl_access", Value: []byte{2, 0, 0, 0}}},
			Extents: []Extent{{End: 1 << 20, ID: id(2)}, {Hole: true, End: 2 << 20}, {End: 3 << 20, ID: id(3)}}},
		{Name: "link", Type: TypeSymlink, Mode: 0o777, Target: "../x", Size: 4},
		{Name: "null", Type: TypeChar, Mode: 0o666, Rdev: 0x103},
		{Name: "fifo", Type: TypeFifo, Mode: 0o600},
		{Name: "disk", Type: TypeDevice, Mode: 0o660, Size: 1 << 20, Extents: []Extent{{Hole: true, End: 1 << 20}}},
	}}
}

func TestTreeGolden(t *testing.T) {
	b := EncodeTree(sampleTree())
	golden.Check(t, "tree-v1.golden", b)
	got, err := DecodeTree(b)
	if err != nil {
		t.Fatal(err)
	}
	want := sampleTree()
	EncodeTree(want) // sorts
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", got, want)
	}
	n := got.Find("a\xff.bin")
	for off, wantIdx := range map[uint64]int{0: 0, 1<<20 - 1: 0, 1 << 20: 1, 3<<20 - 1: 2, 3 << 20: 3} {
		if i := n.ExtentAt(off); i != wantIdx {
			t.Errorf("ExtentAt(%d) = %d, want %d", off, i, wantIdx)
		}
	}
}

func TestTreeDecodeRejectsGarbage(t *testing.T) {
	b := EncodeTree(sampleTree())
	for _, bad := range [][]byte{nil, b[:3], b[:len(b)-1], append(append([]byte{}, b...), 0),
		append([]byte("RTRE\x02"), b[5:]...)} {
		if _, err := DecodeTree(bad); err == nil {
			t.Errorf("decoding %d bytes of garbage succeeded", len(bad))
		}
	}
}

func TestPointGolden(t *testing.T) {
	p := &Point{Source: "srv-www", Kind: KindTree, Path: "/srv/www", Host: "backup1",
		Time: time.Date(2026, 11, 21, 23, 45, 10, 123456789, time.UTC), Tree: id(9), Parent: strings.Repeat("ab", 32),
		Stats:  Stats{Files: 3, Dirs: 1, Bytes: 100, NewBlobs: 2, NewBytes: 80, StoredBytes: 40, DurationNano: 5},
		Root:   RootMeta{Mode: 0o755, MtimeNS: 1, Xattrs: []Xattr{{Name: "user.a", Value: []byte{0, 1}}}},
		Errors: []PathError{{Path: "secret", Error: "skipped: permission denied"}}}
	b := encodePoint(p)
	golden.Check(t, "point-v1.golden", b)
	got, err := decodePoint(id(5), b)
	if err != nil {
		t.Fatal(err)
	}
	p.ID = id(5)
	if !reflect.DeepEqual(got, p) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", got, p)
	}
	if !bytes.Contains(b, []byte(`"version":1`)) {
		t.Errorf("manifest lacks its version: %s", b)
	}
}
