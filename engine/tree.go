package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"syscall"

	"github.com/recall-backup/recall/chunkstore"
)

// Tree blob format, versions 1 and 2 (all integers are unsigned LEB128
// varints unless noted; "svarint" is zig-zag signed):
//
//	tree    = magic "RTRE" | u8 version (1 or 2) | varint count | node*count
//	node    = bytes name | u8 type | varint mode | varint uid | varint gid
//	          | svarint mtime_ns | svarint ctime_ns | svarint atime_ns
//	          | varint size | varint dev | varint inode | varint nlink
//	          | varint linkgroup | varint rdev | bytes target
//	          | varint nxattr | (bytes name | bytes value)*nxattr
//	          | varint flags (version 2 only)
//	          | payload
//	payload = for TypeDir: [32]byte subtree id
//	          for TypeFile/TypeDevice: varint nextents | extent*nextents
//	          otherwise empty
//	extent  = u8 kind (0 data, 1 hole) | varint end | [32]byte id (data only)
//	bytes   = varint length | length bytes
//
// Nodes are sorted by name (bytewise). Names are raw bytes and may be any
// byte string without '/' or NUL. Extent "end" is the cumulative end offset
// of the extent within the file, so the extent holding offset o is found
// by binary search and a file is opened without decoding anything else.
// linkgroup is 0 for a file with a single link; files sharing a non-zero
// linkgroup within one point are hard links of each other.
//
// Version 2 adds each node's inode flags (chattr(1); FS_IOC_GETFLAGS bit
// values, only those in keptFlags, meta_linux.go), 0 for none. A tree
// none of whose nodes has a flag is written as version 1, byte for byte
// what it was before version 2, so its id (and its deduplication against
// earlier points) is unchanged, and earlier releases read it.

const (
	treeMagic      = "RTRE"
	treeVersion    = 1
	treeVersionMax = 2
)

// NodeType is the kind of a tree entry.
type NodeType uint8

// Node types. The numeric values are part of the tree format.
const (
	TypeFile    NodeType = 1
	TypeDir     NodeType = 2
	TypeSymlink NodeType = 3
	TypeBlock   NodeType = 4 // block device node (recorded, never read)
	TypeChar    NodeType = 5
	TypeFifo    NodeType = 6
	TypeSocket  NodeType = 7
	TypeDevice  NodeType = 8 // a block device or image whose content was backed up
)

// nodeTypes is the one table of what each node type is: its name, and
// the file type bits (S_IFMT) of what a stat of it gives, whether the
// file backed up, the mount's entry or the restored file. A device image
// (TypeDevice) reads and restores as a regular file.
var nodeTypes = [...]struct {
	name string
	mode uint32
}{
	TypeFile:    {"file", syscall.S_IFREG},
	TypeDir:     {"dir", syscall.S_IFDIR},
	TypeSymlink: {"symlink", syscall.S_IFLNK},
	TypeBlock:   {"blockdev", syscall.S_IFBLK},
	TypeChar:    {"chardev", syscall.S_IFCHR},
	TypeFifo:    {"fifo", syscall.S_IFIFO},
	TypeSocket:  {"socket", syscall.S_IFSOCK},
	TypeDevice:  {"device-image", syscall.S_IFREG},
}

func (t NodeType) known() bool { return t != 0 && int(t) < len(nodeTypes) }

func (t NodeType) String() string {
	if t.known() {
		return nodeTypes[t].name
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ModeType returns the file type bits (S_IFMT) of a node of type t; an
// unknown type gives S_IFREG.
func (t NodeType) ModeType() uint32 {
	if t.known() {
		return nodeTypes[t].mode
	}
	return syscall.S_IFREG
}

// NodeTypeOf returns the node type of a file whose st_mode is mode; a
// regular file is a TypeFile, and 0 means a file type recall does not
// know.
func NodeTypeOf(mode uint32) NodeType {
	for t := TypeFile; t.known(); t++ {
		if nodeTypes[t].mode == mode&syscall.S_IFMT {
			return t
		}
	}
	return 0
}

// HasContent reports whether nodes of this type carry extents.
func (t NodeType) HasContent() bool { return t == TypeFile || t == TypeDevice }

// Xattr is one extended attribute. POSIX ACLs travel as the
// system.posix_acl_access / system.posix_acl_default attributes.
type Xattr struct {
	Name  string
	Value []byte
}

// Extent is a run of file content: either one stored chunk or a hole
// (a sparse region or a run of zeroes that was not stored).
type Extent struct {
	Hole bool
	End  uint64        // cumulative end offset within the file
	ID   chunkstore.ID // chunk id, zero for holes
}

// Node is one directory entry of a recovery point.
type Node struct {
	Name      string // raw bytes, not necessarily UTF-8
	Type      NodeType
	Mode      uint32 // permission bits including setuid/setgid/sticky (07777)
	UID, GID  uint32
	MtimeNS   int64
	CtimeNS   int64
	AtimeNS   int64
	Size      uint64
	Dev       uint64 // device of the source file, for change detection
	Inode     uint64 // inode of the source file, for change detection
	Nlink     uint64
	LinkGroup uint64 // non-zero: hard-link group within the point
	Rdev      uint64
	Target    string // symlink target
	Xattrs    []Xattr
	// Flags are the inode flags of a file or directory (chattr +i, +a,
	// +d, ...; keptFlags): FS_IOC_GETFLAGS bits, 0 for none.
	Flags   uint32
	Subtree chunkstore.ID // TypeDir
	Extents []Extent      // TypeFile, TypeDevice

	skipped     bool // backup: could not be read; left out of the tree
	timeClamped bool // backup: a time outside the int64 nanosecond range was clamped
}

// Tree is one decoded directory.
type Tree struct {
	Nodes []*Node
	// unsorted: decoded with names out of order (a damaged or foreign
	// tree; verify reports it), so Find cannot bisect. A name held twice
	// in order bisects to its first.
	unsorted bool
}

// Find returns the node named name (the first of that name), or nil.
func (t *Tree) Find(name string) *Node {
	if t.unsorted {
		for _, n := range t.Nodes {
			if n.Name == name {
				return n
			}
		}
		return nil
	}
	i := sort.Search(len(t.Nodes), func(i int) bool { return t.Nodes[i].Name >= name })
	if i < len(t.Nodes) && t.Nodes[i].Name == name {
		return t.Nodes[i]
	}
	return nil
}

// ExtentAt returns the index of the extent holding offset off, or
// len(Extents) when off is at or past the end. O(log n).
func (n *Node) ExtentAt(off uint64) int {
	return sort.Search(len(n.Extents), func(i int) bool { return n.Extents[i].End > off })
}

// ExtentStart returns the file offset at which extent i starts.
func (n *Node) ExtentStart(i int) uint64 {
	if i == 0 {
		return 0
	}
	return n.Extents[i-1].End
}

// ErrBadTree reports an undecodable tree blob.
var ErrBadTree = errors.New("malformed tree blob")

// EncodeTree serialises t. Nodes are sorted by name first.
func EncodeTree(t *Tree) []byte {
	sort.Slice(t.Nodes, func(i, j int) bool { return t.Nodes[i].Name < t.Nodes[j].Name })
	t.unsorted = false // sorted now, in place
	version := byte(treeVersion)
	for _, n := range t.Nodes {
		if n.Flags != 0 {
			version = 2
			break
		}
	}
	var b bytes.Buffer
	b.WriteString(treeMagic)
	b.WriteByte(version)
	var tmp [binary.MaxVarintLen64]byte
	uv := func(v uint64) { b.Write(tmp[:binary.PutUvarint(tmp[:], v)]) }
	sv := func(v int64) { b.Write(tmp[:binary.PutVarint(tmp[:], v)]) }
	bs := func(s []byte) { uv(uint64(len(s))); b.Write(s) }
	uv(uint64(len(t.Nodes)))
	for _, n := range t.Nodes {
		bs([]byte(n.Name))
		b.WriteByte(byte(n.Type))
		uv(uint64(n.Mode))
		uv(uint64(n.UID))
		uv(uint64(n.GID))
		sv(n.MtimeNS)
		sv(n.CtimeNS)
		sv(n.AtimeNS)
		uv(n.Size)
		uv(n.Dev)
		uv(n.Inode)
		uv(n.Nlink)
		uv(n.LinkGroup)
		uv(n.Rdev)
		bs([]byte(n.Target))
		uv(uint64(len(n.Xattrs)))
		for _, x := range n.Xattrs {
			bs([]byte(x.Name))
			bs(x.Value)
		}
		if version >= 2 {
			uv(uint64(n.Flags))
		}
		switch {
		case n.Type == TypeDir:
			b.Write(n.Subtree[:])
		case n.Type.HasContent():
			uv(uint64(len(n.Extents)))
			for _, e := range n.Extents {
				if e.Hole {
					b.WriteByte(1)
					uv(e.End)
				} else {
					b.WriteByte(0)
					uv(e.End)
					b.Write(e.ID[:])
				}
			}
		}
	}
	return b.Bytes()
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uv() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = ErrBadTree
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) sv() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = ErrBadTree
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) raw(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.err = ErrBadTree
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte { return d.raw(d.uv()) }

func (d *decoder) byte1() byte {
	v := d.raw(1)
	if v == nil {
		return 0
	}
	return v[0]
}

// DecodeTree parses a tree blob. The result does not alias buf.
func DecodeTree(buf []byte) (*Tree, error) {
	if len(buf) < 5 || string(buf[:4]) != treeMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrBadTree)
	}
	version := buf[4]
	if version < treeVersion || version > treeVersionMax {
		return nil, fmt.Errorf("%w: unsupported version %d (a newer release of recall wrote it)", ErrBadTree, version)
	}
	d := &decoder{b: append([]byte(nil), buf[5:]...)}
	count := d.uv()
	if count > uint64(len(d.b)) {
		return nil, fmt.Errorf("%w: count %d", ErrBadTree, count)
	}
	t := &Tree{Nodes: make([]*Node, 0, count)}
	for i := uint64(0); i < count && d.err == nil; i++ {
		n := &Node{}
		n.Name = string(d.bytes())
		n.Type = NodeType(d.byte1())
		n.Mode = uint32(d.uv())
		n.UID = uint32(d.uv())
		n.GID = uint32(d.uv())
		n.MtimeNS = d.sv()
		n.CtimeNS = d.sv()
		n.AtimeNS = d.sv()
		n.Size = d.uv()
		n.Dev = d.uv()
		n.Inode = d.uv()
		n.Nlink = d.uv()
		n.LinkGroup = d.uv()
		n.Rdev = d.uv()
		n.Target = string(d.bytes())
		nx := d.uv()
		if nx > uint64(len(d.b)) {
			return nil, fmt.Errorf("%w: xattr count", ErrBadTree)
		}
		for j := uint64(0); j < nx && d.err == nil; j++ {
			name := string(d.bytes())
			n.Xattrs = append(n.Xattrs, Xattr{Name: name, Value: d.bytes()})
		}
		if version >= 2 {
			f := d.uv()
			if f > math.MaxUint32 {
				return nil, fmt.Errorf("%w: flags %#x", ErrBadTree, f)
			}
			n.Flags = uint32(f)
		}
		switch {
		case n.Type == TypeDir:
			copy(n.Subtree[:], d.raw(32))
		case n.Type.HasContent():
			ne := d.uv()
			if ne > uint64(len(d.b)) {
				return nil, fmt.Errorf("%w: extent count", ErrBadTree)
			}
			n.Extents = make([]Extent, ne)
			var prev uint64
			for j := range n.Extents {
				e := &n.Extents[j]
				switch d.byte1() {
				case 0:
					e.End = d.uv()
					copy(e.ID[:], d.raw(32))
				case 1:
					e.Hole = true
					e.End = d.uv()
				default:
					d.err = ErrBadTree
				}
				if e.End < prev {
					d.err = ErrBadTree
				}
				prev = e.End
			}
		}
		if k := len(t.Nodes); k > 0 && t.Nodes[k-1].Name > n.Name {
			t.unsorted = true
		}
		t.Nodes = append(t.Nodes, n)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadTree, len(d.b))
	}
	return t, nil
}
