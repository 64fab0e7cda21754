package bufpool

import (
	"runtime/debug"
	"testing"
)

func TestClass(t *testing.T) {
	prev := 0
	for n := 1; n <= 9<<20; n += 997 {
		c := Class(n)
		if c < n || c > max(4096, n+n/8+1) {
			t.Fatalf("Class(%d) = %d: want n <= size <= n*1.125", n, c)
		}
		if c < prev {
			t.Fatalf("Class not monotonic at %d", n)
		}
		if Class(c) != c {
			t.Fatalf("Class(%d) = %d is not a fixed point", c, Class(c))
		}
		if classIndex(c) < 0 {
			t.Fatalf("class %d has no pool", c)
		}
		prev = c
	}
	seen := map[int]int{}
	for c := 4096; c <= 1<<30; c = Class(c + 1) {
		x := classIndex(c)
		if old, dup := seen[x]; dup || x < 0 {
			t.Fatalf("classes %d and %d share pool %d", old, c, x)
		}
		seen[x] = c
	}
	for _, c := range []int{0, 4095, 4097, Class(1<<20) + 1, Class(1<<30 + 1)} {
		if x := classIndex(c); x >= 0 {
			t.Errorf("classIndex(%d) = %d, want none", c, x)
		}
	}
}

func TestPool(t *testing.T) {
	// Free buffers are the collector's to take; none may go while the
	// test looks for them.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	const n = 100_000
	c := Class(n)
	up := func(c, k int) int {
		for ; k > 0; k-- {
			c = Class(c + 1)
		}
		return c
	}
	for _, tc := range []struct {
		name   string
		reach  int
		put    int // capacity put back
		get    int
		reused bool
	}{
		{name: "same class", reach: 1, put: c, get: n, reused: true},
		{name: "next class", reach: 1, put: up(c, 1), get: n, reused: true},
		{name: "beyond the reach", reach: 1, put: up(c, 2), get: n},
		{name: "within a wider reach", reach: 8, put: up(c, 8), get: n, reused: true},
		{name: "smaller", reach: 8, put: Class(n / 2), get: n},
		{name: "not a class size", reach: 8, put: c - 1, get: n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(tc.reach)
			b := make([]byte, tc.put)
			p.Put(b[:1])
			got := p.Get(tc.get)
			if len(got) < tc.get || len(got) != cap(got) || Class(len(got)) != len(got) {
				t.Errorf("Get(%d): len %d cap %d", tc.get, len(got), cap(got))
			}
			if reused := &got[0] == &b[0]; reused != tc.reused {
				t.Errorf("reused %v, want %v", reused, tc.reused)
			}
			// The pools are shared: leave nothing for the next case.
			if x := classIndex(tc.put); x >= 0 {
				for classes[x].Get() != nil {
				}
			}
		})
	}
}
