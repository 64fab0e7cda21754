// Package iobuf hands out the buffers of large O_DIRECT reads and writes:
// anonymous mappings aligned to 2 MiB and advised as transparent huge
// pages (madvise(MADV_HUGEPAGE)).
//
// Why: an O_DIRECT request is built from the buffer's physical pages, and
// a disk takes at most max_segments of them in one request (254 on a
// virtio disk). Into a buffer of 4 KiB pages a 4 MiB read goes as four or
// more requests of about 1 MiB; into 2 MiB huge pages it is one request of
// up to max_sectors_kb. A disk that costs per request reads far faster
// then. Measured on a 2-vCPU VM's virtio disk, four readers of the 2.2 GB
// of a store's packs, cold: 3.1-3.8 s in 1 MiB or 4 MiB reads into heap
// buffers, 1.55 s in 4 MiB reads into huge pages (1.4-1.8 s buffered, which
// costs three times the system time).
//
// Where the kernel gives no huge page (transparent huge pages off, memory
// too fragmented) a buffer is still 2 MiB-aligned mapped memory of small
// pages, which behaves as a heap buffer; where mmap fails it is a heap
// buffer aligned to 4096, which O_DIRECT also takes.
//
// The memory is outside the Go heap, so Get and Put pair up explicitly. A
// freed buffer waits in a sync.Pool, and one the pool drops (it was not
// reused for two garbage collections) is unmapped by a cleanup: an idle
// process holds none.
package iobuf

import (
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Align is the alignment and size unit of the buffers: one huge page.
const Align = 2 << 20

// heapAlign is the alignment of the heap fallback: O_DIRECT's.
const heapAlign = 4096

// pools holds freed mapped buffers by size in units of Align (index
// size/Align); larger buffers are unmapped when put back.
var pools [16]sync.Pool

// held is a freed mapped buffer in a pool; its cleanup unmaps the buffer
// when the pool drops it.
type held struct {
	b       []byte
	cleanup runtime.Cleanup
}

// regions records every live mapping by the address of its first byte:
// its length, and whether a caller holds it (out) or a pool does. Put
// tells mapped buffers from heap ones by it, and a buffer put back twice.
var regions = struct {
	sync.Mutex
	m map[unsafe.Pointer]*region
}{m: map[unsafe.Pointer]*region{}}

type region struct {
	size int
	out  bool
}

// Get returns a buffer of len n, and cap n rounded up to a multiple of
// Align, whose first byte is aligned to Align (to 4096 in the heap
// fallback). Its content is undefined. The caller gives it back with Put
// and must not use it afterwards.
func Get(n int) []byte {
	size := max((n+Align-1)&^(Align-1), Align)
	if i := size / Align; i < len(pools) {
		if h, _ := pools[i].Get().(*held); h != nil {
			h.cleanup.Stop()
			regions.Lock()
			regions.m[addr(h.b)].out = true
			regions.Unlock()
			return h.b[:n]
		}
	}
	b, err := mapAligned(size)
	if err != nil {
		w := make([]byte, size+heapAlign)
		skip := 0
		if r := int(uintptr(addr(w)) % heapAlign); r != 0 {
			skip = heapAlign - r
		}
		return w[skip : skip+n : skip+size]
	}
	regions.Lock()
	regions.m[addr(b)] = &region{size: size, out: true}
	regions.Unlock()
	return b[:n]
}

// Put gives back a buffer Get returned (any reslice that keeps its first
// byte). Heap buffers are left to the collector.
func Put(b []byte) {
	if cap(b) == 0 {
		return
	}
	a := addr(b)
	regions.Lock()
	r := regions.m[a]
	if r == nil {
		regions.Unlock()
		return
	}
	if !r.out {
		regions.Unlock()
		panic("iobuf: a buffer put back twice")
	}
	r.out = false
	size := r.size
	i := size / Align
	if i >= len(pools) {
		delete(regions.m, a)
	}
	regions.Unlock()
	if i >= len(pools) {
		unix.MunmapPtr(a, uintptr(size))
		return
	}
	h := &held{b: unsafe.Slice((*byte)(a), size)}
	h.cleanup = runtime.AddCleanup(h, unmap, a)
	pools[i].Put(h)
}

// unmap is the cleanup of a pooled buffer the pool dropped.
func unmap(a unsafe.Pointer) {
	regions.Lock()
	r := regions.m[a]
	delete(regions.m, a)
	regions.Unlock()
	if r != nil {
		unix.MunmapPtr(a, uintptr(r.size))
	}
}

// mapAligned maps size bytes (a multiple of Align) aligned to Align and
// advises them as huge pages.
func mapAligned(size int) ([]byte, error) {
	// Map one unit more and trim, so that the kept part is aligned.
	p, err := unix.MmapPtr(-1, 0, nil, uintptr(size+Align), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, err
	}
	skip := uintptr(0)
	if r := uintptr(p) % Align; r != 0 {
		skip = Align - r
	}
	if skip > 0 {
		unix.MunmapPtr(p, skip)
	}
	if tail := Align - skip; tail > 0 {
		unix.MunmapPtr(unsafe.Add(p, skip+uintptr(size)), tail)
	}
	b := unsafe.Slice((*byte)(unsafe.Add(p, skip)), size)
	// Advice only: without transparent huge pages the buffer is still
	// usable, a request per ~1 MiB.
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	return b, nil
}

func addr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }
