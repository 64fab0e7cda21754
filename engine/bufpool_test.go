package engine

import (
	"context"
	"testing"
	"time"

	"github.com/recall-backup/recall/internal/bufpool"
)

// TestBudgetKeepsBuffers: a buffer given back serves the next request of
// its class without an allocation, and the bytes in use plus the bytes
// kept never pass the bound, whatever the mix of sizes.
func TestBudgetKeepsBuffers(t *testing.T) {
	ctx := context.Background()
	bg := newBudget(1 << 20)
	cb, err := bg.get(ctx, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if len(cb.b) != 10000 || cb.w != int64(cap(cb.b)) || cap(cb.b) != bufpool.Class(10000) {
		t.Fatalf("len %d cap %d w %d", len(cb.b), cap(cb.b), cb.w)
	}
	p := &cb.b[:1][0]
	bg.put(cb)
	cb2, _ := bg.get(ctx, 9999)
	if &cb2.b[:1][0] != p {
		t.Fatal("a kept buffer of the class was not reused")
	}
	bg.put(cb2)
	if n := testing.AllocsPerRun(100, func() {
		c, _ := bg.get(ctx, 10000)
		bg.put(c)
	}); n > 1 {
		t.Fatalf("%v allocations per get and put of a kept class", n)
	}

	check := func() {
		t.Helper()
		if bg.used < 0 || bg.kept < 0 || bg.used+bg.kept > bg.total {
			t.Fatalf("used %d + kept %d > total %d", bg.used, bg.kept, bg.total)
		}
		var sum int64
		for k, l := range bg.free {
			for _, b := range l {
				if cap(b) != k {
					t.Fatalf("buffer of cap %d kept under class %d", cap(b), k)
				}
				sum += int64(k)
			}
		}
		if sum != bg.kept {
			t.Fatalf("kept %d, buffers kept %d", bg.kept, sum)
		}
	}
	sizes := []int{1, 4096, 5000, 70000, 300 << 10, 500 << 10, 1000, 64 << 10, 200 << 10}
	var held []*chunkBuf
	for i := range 2000 {
		n := sizes[(i*7+i/13)%len(sizes)]
		if bg.used+int64(bufpool.Class(n)) > bg.total {
			for _, c := range held {
				bg.put(c)
			}
			held = held[:0]
			check()
		}
		c, err := bg.get(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.b) != n || int64(cap(c.b)) != c.w {
			t.Fatalf("get(%d): len %d cap %d w %d", n, len(c.b), cap(c.b), c.w)
		}
		held = append(held, c)
		check()
	}
}

// TestBudgetWaits: a request the budget has no room for waits for a put,
// and gives up when its context ends.
func TestBudgetWaits(t *testing.T) {
	bg := newBudget(64 << 10)
	a, _ := bg.get(context.Background(), 60<<10)
	got := make(chan *chunkBuf)
	go func() {
		c, _ := bg.get(context.Background(), 8<<10)
		got <- c
	}()
	select {
	case <-got:
		t.Fatal("get did not wait for room")
	case <-time.After(50 * time.Millisecond):
	}
	bg.put(a)
	if c := <-got; c == nil || len(c.b) != 8<<10 {
		t.Fatal("the waiting get got no buffer")
	}

	b, _ := bg.get(context.Background(), 50<<10)
	ctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, bg.wake)
	defer stop()
	errc := make(chan error)
	go func() {
		_, err := bg.get(ctx, 40<<10)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("get returned a buffer after its context ended")
	}
	bg.put(b)
}
