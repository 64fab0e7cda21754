// Package bufpool keeps freed chunk buffers for reuse, by size class.
// Reusing a buffer saves allocating and zeroing one per chunk, which was a
// tenth of the cost of a first read through the mount and a steady load on
// the collector during a backup. Free buffers live in a sync.Pool per
// class: the collector takes them back when memory is not reused, so an
// idle pool holds nothing for long.
//
// Sizes come in eight classes per doubling, so a buffer is at most 12.5%
// larger than asked for, and chunks (whose sizes vary continuously) still
// find buffers freed by others.
package bufpool

import (
	"math/bits"
	"sync"
)

// Class rounds n up to a pooled buffer size.
func Class(n int) int {
	if n <= 4096 {
		return 4096
	}
	shift := bits.Len(uint(n-1)) - 4
	return ((n-1)>>shift + 1) << shift
}

// classIndex numbers the class sizes from 0 (4096 bytes), or gives -1
// for a size that is not a class size or too large to pool.
func classIndex(c int) int {
	if c == 4096 {
		return 0
	}
	if c <= 4096 || Class(c) != c {
		return -1
	}
	l := bits.Len(uint(c - 1)) // 13 and up
	i := (l-13)*8 + c>>(l-4) - 9 + 1
	if i >= len(classes) {
		return -1
	}
	return i
}

var classes [8*18 + 1]sync.Pool // up to 1 GiB

// Pool hands out buffers from the free ones of their class. Its zero
// value is ready; it is safe for concurrent use.
type Pool struct {
	reach int
}

// New returns a pool that serves a buffer asked for from n's class or up
// to reach classes above it (8 classes make a doubling): a pool whose
// buffers are held long (a cache) wants little waste, one whose buffers
// come and go (a backup's chunks in flight) wants reuse more.
func New(reach int) *Pool { return &Pool{reach: reach} }

// Get returns a buffer of len and cap at least n (the size of its class):
// a free one of n's class or up to the pool's reach above, else a new
// one. Its content is whatever it held before.
func (p *Pool) Get(n int) []byte {
	for i, c := 0, Class(n); i <= p.reach; i, c = i+1, Class(c+1) {
		x := classIndex(c)
		if x < 0 {
			break
		}
		if v := classes[x].Get(); v != nil {
			return *v.(*[]byte)
		}
	}
	return make([]byte, Class(n))
}

// Put gives b back for reuse; the caller must not use it afterwards. Only
// a b whose capacity is a class size (as every buffer Get returns) is
// kept.
func (p *Pool) Put(b []byte) {
	b = b[:cap(b)]
	if x := classIndex(len(b)); x >= 0 {
		classes[x].Put(&b)
	}
}
