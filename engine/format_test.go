package engine

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/internal/golden"
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

// A tree with inode flags is version 2: each node carries its flags
// after its extended attributes.
func TestTreeGoldenV2(t *testing.T) {
	flagged := func() *Tree {
		tr := sampleTree()
		tr.Nodes[0].Flags = 0x10 | 0x10000 // sub: +iD
		tr.Nodes[1].Flags = 0x20 | 0x40    // a\xff.bin: +ad
		return tr
	}
	b := EncodeTree(flagged())
	if b[4] != 2 {
		t.Fatalf("version %d, want 2", b[4])
	}
	golden.Check(t, "tree-v2.golden", b)
	got, err := DecodeTree(b)
	if err != nil {
		t.Fatal(err)
	}
	want := flagged()
	EncodeTree(want) // sorts
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", got, want)
	}
	// Flags past 32 bits are garbage.
	bad := append([]byte(nil), b...)
	i := bytes.Index(bad, []byte("system.posix_acl_access"))
	if i < 0 {
		t.Fatal("no xattr in the sample")
	}
	// After the ACL's 4-byte value: a's flags varint, 0x60. Make it 2^35.
	j := i + len("system.posix_acl_access") + 1 + 4
	if bad[j] != 0x60 {
		t.Fatalf("byte %d is %#x, want a's flags 0x60", j, bad[j])
	}
	bad = append(bad[:j:j], append([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, bad[j+1:]...)...)
	if _, err := DecodeTree(bad); err == nil {
		t.Error("flags of 2^35 decoded")
	}
}

func TestTreeDecodeRejectsGarbage(t *testing.T) {
	b := EncodeTree(sampleTree())
	for _, bad := range [][]byte{nil, b[:3], b[:len(b)-1], append(append([]byte{}, b...), 0),
		append([]byte("RTRE\x03"), b[5:]...), append([]byte("RTRE\x00"), b[5:]...)} {
		if _, err := DecodeTree(bad); err == nil {
			t.Errorf("decoding %d bytes of garbage succeeded", len(bad))
		}
	}
}

func samplePoint() *Point {
	return &Point{Source: "srv-www", Kind: KindTree, Path: "/srv/www", Host: "backup1",
		Time: time.Date(2026, 11, 21, 23, 45, 10, 123456789, time.UTC), Tree: id(9), Parent: strings.Repeat("ab", 32),
		Stats:  Stats{Files: 3, Dirs: 1, Bytes: 100, NewBlobs: 2, NewBytes: 80, StoredBytes: 40, DurationNano: 5},
		Root:   RootMeta{Mode: 0o755, MtimeNS: 1, Xattrs: []Xattr{{Name: "user.a", Value: []byte{0, 1}}}},
		Errors: []PathError{{Path: "secret", Error: "skipped: permission denied"}}}
}

// checkPointGolden pins p's manifest bytes in the golden file name and
// checks they decode to p again; it returns the bytes.
func checkPointGolden(t *testing.T, p *Point, name string) []byte {
	t.Helper()
	b := encodePoint(p)
	golden.Check(t, name, b)
	got, err := decodePoint(id(5), b)
	if err != nil {
		t.Fatal(err)
	}
	p.ID = id(5)
	if !reflect.DeepEqual(got, p) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", got, p)
	}
	return b
}

func TestPointGolden(t *testing.T) {
	p := samplePoint()
	p.Errors = append(p.Errors, PathError{Path: "proc", Error: "skipped mount point: proc is a pseudo file system"})
	p.Exclude = Exclude{Patterns: []string{"*.tmp", "/var/cache/", "**/node_modules"},
		Files:  []ExcludeFile{{Path: "/etc/recall/exclude", Patterns: []string{"*.iso"}}},
		Caches: true, IfPresent: []string{".nobackup"}, LargerThan: 2 << 30, OneFileSystem: true}
	p.MountPoints = []MountPoint{{Path: "home", FSType: "ext4"}, {Path: "sys", FSType: "sysfs"}}
	b := checkPointGolden(t, p, "point-v2.golden")
	if !bytes.Contains(b, []byte(`"version":2`)) {
		t.Errorf("manifest lacks its version: %s", b)
	}
}

// Version 1 manifests, written before exclusions were recorded, still
// decode: with nothing excluded and no mount points.
func TestPointV1Decodes(t *testing.T) {
	b := readGolden(t, "point-v1.golden")
	got, err := decodePoint(id(5), b)
	if err != nil {
		t.Fatal(err)
	}
	want := samplePoint()
	want.ID, want.Version, want.TreeHex = id(5), 1, id(9).String()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("v1 manifest decodes as\n %+v\nwant %+v", got, want)
	}
}

func TestPointDecodeRejectsVersions(t *testing.T) {
	b := encodePoint(samplePoint())
	for _, v := range []string{`"version":0`, `"version":3`} {
		bad := bytes.Replace(b, []byte(`"version":2`), []byte(v), 1)
		if _, err := decodePoint(id(5), bad); !errors.Is(err, ErrBadPoint) {
			t.Errorf("%s: err %v, want ErrBadPoint", v, err)
		}
	}
}

// readGolden reads back the bytes of a golden hex dump.
func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	dump, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, line := range strings.Split(string(dump), "\n") {
		// "00000000  7b 22 76 65 ...  |{"ve...|"
		if len(line) < 10 {
			continue
		}
		hexPart, _, _ := strings.Cut(line[10:], "|")
		for _, f := range strings.Fields(hexPart) {
			v, err := strconv.ParseUint(f, 16, 8)
			if err != nil {
				t.Fatalf("%s: bad hex dump line %q", name, line)
			}
			out = append(out, byte(v))
		}
	}
	return out
}

// Every node type maps to the file type bits a stat of it gives, and
// back: backup, the mount and restore use this one table.
func TestNodeTypeMode(t *testing.T) {
	for _, tc := range []struct {
		t    NodeType
		mode uint32
		back NodeType // what a stat of such a file gives
		name string
	}{
		{TypeFile, syscall.S_IFREG, TypeFile, "file"},
		{TypeDir, syscall.S_IFDIR, TypeDir, "dir"},
		{TypeSymlink, syscall.S_IFLNK, TypeSymlink, "symlink"},
		{TypeBlock, syscall.S_IFBLK, TypeBlock, "blockdev"},
		{TypeChar, syscall.S_IFCHR, TypeChar, "chardev"},
		{TypeFifo, syscall.S_IFIFO, TypeFifo, "fifo"},
		{TypeSocket, syscall.S_IFSOCK, TypeSocket, "socket"},
		{TypeDevice, syscall.S_IFREG, TypeFile, "device-image"},
		{0, syscall.S_IFREG, TypeFile, "type(0)"},
		{9, syscall.S_IFREG, TypeFile, "type(9)"},
	} {
		if got := tc.t.ModeType(); got != tc.mode {
			t.Errorf("%v.ModeType() = %#o, want %#o", tc.t, got, tc.mode)
		}
		if got := NodeTypeOf(tc.mode | 0o644); got != tc.back {
			t.Errorf("NodeTypeOf(%#o) = %v, want %v", tc.mode, got, tc.back)
		}
		if got := tc.t.String(); got != tc.name {
			t.Errorf("String() = %q, want %q", got, tc.name)
		}
	}
	if got := NodeTypeOf(0o644); got != 0 {
		t.Errorf("NodeTypeOf(no type bits) = %v, want 0", got)
	}
}
