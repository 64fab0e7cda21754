package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"syscall"
	"time"

	bolterrors "go.etcd.io/bbolt/errors"
)

// bbolt's file layout (go.etcd.io/bbolt, internal/common: page.go and
// meta.go), as precheckCatalog reads it. Every page starts with a header:
// id uint64, flags uint16, count uint16, overflow uint32. Pages 0 and 1
// are meta pages (the one with the higher transaction id and a good
// checksum is current); the meta after the header is magic, version,
// page size and flags (uint32 each), the root bucket (root page, sequence:
// uint64 each), the freelist page, the high-water page id, the
// transaction id and an FNV-64a checksum of the bytes before it (uint64
// each). All little-endian on the machines recall runs on.
const (
	boltHeader         = 16
	boltMagic          = 0xED0CDAED
	boltVersion        = 2
	boltFreelistFlag   = 0x10
	boltNoFreelist     = ^uint64(0)
	boltMetaChecksumAt = boltHeader + 56 // the checksum's offset in a meta page
)

type boltMeta struct {
	pageSize                   uint32
	root, freelist, pgid, txid uint64
}

// parseBoltMeta reads the meta page in b (at least a header and a meta),
// or says why it is not a good one.
func parseBoltMeta(b []byte) (boltMeta, bool) {
	if len(b) < boltMetaChecksumAt+8 {
		return boltMeta{}, false
	}
	le := binary.LittleEndian
	h := fnv.New64a()
	h.Write(b[boltHeader:boltMetaChecksumAt])
	if le.Uint32(b[boltHeader:]) != boltMagic || le.Uint32(b[boltHeader+4:]) != boltVersion || le.Uint64(b[boltMetaChecksumAt:]) != h.Sum64() {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: le.Uint32(b[boltHeader+8:]), root: le.Uint64(b[boltHeader+16:]),
		freelist: le.Uint64(b[boltHeader+32:]), pgid: le.Uint64(b[boltHeader+40:]), txid: le.Uint64(b[boltHeader+48:])}, true
}

// precheckCatalog reads the catalog file's meta and freelist pages, and
// its tree of pages, itself, before bbolt maps the file: bbolt trusts
// them. A file cut short (a full disk, a copy that stopped) made bbolt
// touch pages past its end, which kills the process with SIGBUS (no
// recover catches a fault in a mapped file); a freelist or tree page with
// a wild overflow or count made it allocate without bound. Either is
// reported as damage, so the file is moved aside like any other. An empty
// file is bbolt's to initialise. f must be locked (lockCatalogFile): read
// while another process writes, a sound catalog would look torn.
//
// lost is set when the newer meta page is the damaged one: bbolt then
// opens the file as it was one commit earlier, without a word, and its
// next commit writes over that page, making the loss for good.
func precheckCatalog(f *os.File, path string) (lost bool, err error) {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return false, nil
	}
	size := fi.Size()
	damaged := func(format string, a ...any) error {
		return fmt.Errorf("catalog %s: %w (%s)", path, errCatalogDamaged, fmt.Sprintf(format, a...))
	}
	read := func(off int64, n int) []byte {
		b := make([]byte, n)
		k, _ := f.ReadAt(b, off)
		return b[:k]
	}
	// The page size: meta 0's, else meta 1's, found where bbolt looks.
	m0, ok0 := parseBoltMeta(read(0, 4096))
	pageSize := int64(m0.pageSize)
	if !ok0 {
		pageSize = 0
		for i := 0; i <= 14; i++ {
			pos := int64(1024) << i
			if pos >= size-1024 {
				break
			}
			if m, ok := parseBoltMeta(read(pos, 4096)); ok && int64(m.pageSize) == pos {
				pageSize = pos
				break
			}
		}
	}
	if pageSize < 1024 || pageSize > 1<<24 || pageSize&(pageSize-1) != 0 {
		return false, damaged("no meta page with a good checksum and page size")
	}
	raw1 := read(pageSize, 4096)
	m1, ok1 := parseBoltMeta(raw1)
	// The meta bbolt takes: the newer of the good ones.
	m := m0
	switch {
	case ok0 && ok1 && m1.txid > m0.txid, !ok0 && ok1:
		m = m1
	case !ok0:
		return false, damaged("neither meta page has a good checksum")
	}
	if int64(m.pageSize) != pageSize {
		return false, damaged("meta pages disagree on the page size")
	}
	if ok0 != ok1 {
		// Commits write the two meta pages in turn, transaction t to
		// page t%2: the damaged page held t-1 (older, harmless: the next
		// commit writes over it) or t+1, the last commit. Its own
		// transaction id says which, unless the damage hit it too.
		bad := read(0, 4096)
		if !ok1 {
			bad = raw1
		}
		lost = true
		if len(bad) >= boltHeader+56 {
			lost = binary.LittleEndian.Uint64(bad[boltHeader+48:]) != m.txid-1
		}
	}
	switch {
	case m.pgid < 4 || m.pgid > uint64(size/pageSize):
		return false, damaged("%d bytes hold %d pages of %d, the meta page says %d: the file was cut short", size, size/pageSize, pageSize, m.pgid)
	case m.root < 2 || m.root >= m.pgid:
		return false, damaged("root page %d outside 2..%d", m.root, m.pgid-1)
	case m.freelist != boltNoFreelist && (m.freelist < 2 || m.freelist >= m.pgid):
		return false, damaged("freelist page %d outside 2..%d", m.freelist, m.pgid-1)
	}
	// The freelist, then the tree of pages from the root: bbolt's own
	// check (tx.Check, on open) follows it trusting each page's overflow
	// and element counts (an overflow of 2^32 set four billion map
	// entries).
	w := &boltWalk{m: m, pageSize: pageSize, read: read, seen: map[uint64]bool{}}
	if err := w.freelist(); err != nil {
		return false, damaged("%v", err)
	}
	if err := w.page(m.root, 0); err != nil {
		return false, damaged("%v", err)
	}
	return lost, nil
}

const (
	boltBranchFlag = 0x01
	boltLeafFlag   = 0x02
	boltBucketLeaf = 0x01 // a leaf element that is a bucket
	boltElement    = 16   // a branch or leaf element's size
	boltMaxDepth   = 64
)

// boltWalk follows bbolt's tree of pages, checking that every page is
// where it says, within the file, reached once, and that its elements and
// their keys and values lie inside it.
type boltWalk struct {
	m        boltMeta
	pageSize int64
	read     func(off int64, n int) []byte
	seen     map[uint64]bool
}

// run reads the page run that starts at page id: its header must name
// it, its overflow pages lie below the high-water mark, and none of its
// pages may have been reached before.
func (w *boltWalk) run(id uint64) ([]byte, error) {
	if id < 2 || id >= w.m.pgid {
		return nil, fmt.Errorf("page %d outside 2..%d", id, w.m.pgid-1)
	}
	hdr := w.read(int64(id)*w.pageSize, boltHeader)
	if len(hdr) < boltHeader {
		return nil, fmt.Errorf("page %d cut short", id)
	}
	got, overflow := binary.LittleEndian.Uint64(hdr), uint64(binary.LittleEndian.Uint32(hdr[12:]))
	if got != id || id+overflow >= w.m.pgid {
		return nil, fmt.Errorf("page %d: header says page %d with %d overflow pages, of %d pages", id, got, overflow, w.m.pgid)
	}
	for i := id; i <= id+overflow; i++ {
		if w.seen[i] {
			return nil, fmt.Errorf("page %d reached twice", i)
		}
		w.seen[i] = true
	}
	n := (overflow + 1) * uint64(w.pageSize)
	b := w.read(int64(id)*w.pageSize, int(n))
	if uint64(len(b)) < n {
		return nil, fmt.Errorf("page %d cut short", id)
	}
	return b, nil
}

// freelist checks the freelist page and the ids it lists.
func (w *boltWalk) freelist() error {
	id := w.m.freelist
	if id == boltNoFreelist {
		return nil
	}
	b, err := w.run(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	le := binary.LittleEndian
	if flags := le.Uint16(b[8:]); flags != boltFreelistFlag {
		return fmt.Errorf("freelist page %d: flags %#x", id, flags)
	}
	count, first := uint64(le.Uint16(b[10:])), uint64(0)
	if count == 0xFFFF {
		if len(b) < boltHeader+8 {
			return fmt.Errorf("freelist page %d cut short", id)
		}
		count, first = le.Uint64(b[boltHeader:]), 1
	}
	if count > uint64(len(b))/8 || boltHeader+(first+count)*8 > uint64(len(b)) {
		return fmt.Errorf("freelist page %d: %d free page ids do not fit in %d bytes", id, count, len(b))
	}
	ids := b[boltHeader+first*8:]
	for i := uint64(0); i < count; i++ {
		if p := le.Uint64(ids[i*8:]); p < 2 || p >= w.m.pgid {
			return fmt.Errorf("freelist page %d: free page %d outside 2..%d", id, p, w.m.pgid-1)
		}
	}
	return nil
}

func (w *boltWalk) page(id uint64, depth int) error {
	if depth > boltMaxDepth {
		return fmt.Errorf("page %d: tree deeper than %d", id, boltMaxDepth)
	}
	b, err := w.run(id)
	if err != nil {
		return err
	}
	return w.elements(id, b, depth)
}

// elements checks the elements of the page in b (a page run, or a bucket's
// inline page) and walks the pages they lead to.
func (w *boltWalk) elements(id uint64, b []byte, depth int) error {
	le := binary.LittleEndian
	flags, count := le.Uint16(b[8:]), int(le.Uint16(b[10:]))
	if flags != boltBranchFlag && flags != boltLeafFlag {
		return fmt.Errorf("page %d: flags %#x, want a branch or leaf page", id, flags)
	}
	if boltHeader+count*boltElement > len(b) {
		return fmt.Errorf("page %d: %d elements do not fit", id, count)
	}
	for i := 0; i < count; i++ {
		at := boltHeader + i*boltElement
		e := b[at : at+boltElement]
		switch flags {
		case boltBranchFlag:
			pos, ksize, child := int64(le.Uint32(e)), int64(le.Uint32(e[4:])), le.Uint64(e[8:])
			if int64(at)+pos+ksize > int64(len(b)) {
				return fmt.Errorf("page %d: key %d lies outside it", id, i)
			}
			if err := w.page(child, depth+1); err != nil {
				return err
			}
		case boltLeafFlag:
			eflags, pos, ksize, vsize := le.Uint32(e), int64(le.Uint32(e[4:])), int64(le.Uint32(e[8:])), int64(le.Uint32(e[12:]))
			end := int64(at) + pos + ksize + vsize
			if end > int64(len(b)) {
				return fmt.Errorf("page %d: element %d lies outside it", id, i)
			}
			if eflags&boltBucketLeaf == 0 {
				continue
			}
			v := b[int64(at)+pos+ksize : end]
			if len(v) < 16 {
				return fmt.Errorf("page %d: bucket %d cut short", id, i)
			}
			if root := le.Uint64(v); root != 0 {
				if err := w.page(root, depth+1); err != nil {
					return err
				}
			} else if len(v) < 16+boltHeader {
				return fmt.Errorf("page %d: inline bucket %d cut short", id, i)
			} else if err := w.elements(id, v[16:], depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// lockCatalogFile opens the catalog file (creating it) and takes the lock
// bbolt takes, waiting up to timeout: exclusive, or shared where the file
// can only be read (ro). bbolt is then given this descriptor (its
// Options.OpenFile) and takes the same lock on it again, which the kernel
// grants the holder, so nothing can write the file between the check and
// the open.
//
// rwErr is why the file could not be opened for writing, when ro.
func lockCatalogFile(path string, timeout time.Duration) (f *os.File, ro bool, rwErr, err error) {
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, syscall.EROFS) || errors.Is(err, os.ErrPermission) {
		if rf, rerr := os.Open(path); rerr == nil {
			f, rwErr, err, ro = rf, err, nil, true
		}
	}
	if err != nil {
		return nil, false, nil, err
	}
	how := syscall.LOCK_EX
	if ro {
		how = syscall.LOCK_SH
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return f, ro, rwErr, nil
		}
		if err != syscall.EWOULDBLOCK || timeout > 0 && time.Now().After(deadline) {
			f.Close()
			if err == syscall.EWOULDBLOCK {
				return nil, false, nil, bolterrors.ErrTimeout
			}
			return nil, false, nil, &os.PathError{Op: "flock", Path: path, Err: err}
		}
		time.Sleep(50 * time.Millisecond)
	}
}
