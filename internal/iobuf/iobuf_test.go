package iobuf

import (
	"runtime"
	"testing"
	"time"
	"unsafe"
)

func TestGetAligned(t *testing.T) {
	for _, n := range []int{1, 4096, Align - 1, Align, Align + 1, 4 << 20, 9 << 20} {
		b := Get(n)
		if len(b) != n || cap(b)%Align != 0 || cap(b) < n {
			t.Fatalf("Get(%d): len %d cap %d", n, len(b), cap(b))
		}
		if a := uintptr(addr(b)); a%Align != 0 {
			t.Fatalf("Get(%d) at %#x: not aligned to %d", n, a, Align)
		}
		// Every byte is ours to write.
		b = b[:cap(b)]
		for i := range b {
			b[i] = byte(i)
		}
		if b[len(b)-1] != byte(len(b)-1) {
			t.Fatal("write lost")
		}
		Put(b[:n])
	}
}

// A buffer larger than the pools keep is unmapped at once.
func TestLargeUnmapped(t *testing.T) {
	b := Get(len(pools) * Align)
	a := addr(b)
	if !live(a) {
		t.Fatal("a mapped buffer is not recorded")
	}
	Put(b)
	if live(a) {
		t.Fatal("a buffer too large to pool is still mapped after Put")
	}
}

// A pooled buffer nobody takes again is unmapped once the pool drops it.
func TestIdleUnmapped(t *testing.T) {
	b := Get(3 * Align)
	a := addr(b)
	Put(b)
	deadline := time.Now().Add(10 * time.Second)
	for live(a) {
		if time.Now().After(deadline) {
			t.Fatal("an idle pooled buffer is still mapped after many collections")
		}
		runtime.GC() // the pool drops its holder; the cleanup runs after
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPutTwicePanics(t *testing.T) {
	b := Get(Align)
	Put(b)
	defer func() {
		if recover() == nil {
			t.Fatal("a second Put of one buffer did not panic")
		}
	}()
	// The pool may have handed it out again meanwhile only to a Get,
	// and there is none here.
	Put(b)
}

func TestHeapBufferIgnored(t *testing.T) {
	Put(make([]byte, 10))
	Put(nil)
}

func live(a unsafe.Pointer) bool {
	regions.Lock()
	defer regions.Unlock()
	return regions.m[a] != nil
}
