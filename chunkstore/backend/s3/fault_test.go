package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
)

var bg = context.Background()

func gatewayAddr(t testing.TB) string { return strings.TrimPrefix(gateway(t).Endpoint, "http://") }

func randBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// roundTrip saves n files of various sizes from 8 goroutines, then loads
// each whole and in ranges, lists them and removes them: every call must
// succeed with the bytes saved.
func roundTrip(t *testing.T, be *Backend, n int) {
	t.Helper()
	sizes := make([]int, n)
	for i := range sizes {
		sizes[i] = []int{0, 1, 4096, 300_000, 1 << 20, 3<<20 + 17}[i%6]
	}
	h := func(i int) backend.Handle {
		return backend.Handle{Type: backend.Packs, Name: fmt.Sprintf("%064x", i)}
	}
	parallel := func(fn func(i int) error) {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		work := make(chan int)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					if err := fn(i); err != nil {
						errs <- err
					}
				}
			}()
		}
		for i := range n {
			work <- i
		}
		close(work)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	parallel(func(i int) error { return be.Save(bg, h(i), randBytes(int64(i), sizes[i])) })
	parallel(func(i int) error {
		want := randBytes(int64(i), sizes[i])
		got, err := be.Load(bg, h(i), 0, -1, nil)
		if err != nil || !bytes.Equal(got, want) {
			return fmt.Errorf("load %v: %d bytes, %v; want %d", h(i), len(got), err, len(want))
		}
		if sizes[i] > 100 {
			off := int64(sizes[i] / 3)
			got, err := be.Load(bg, h(i), off, sizes[i]/2, make([]byte, sizes[i]))
			if err != nil || !bytes.Equal(got, want[off:off+int64(sizes[i]/2)]) {
				return fmt.Errorf("ranged load %v: %v", h(i), err)
			}
		}
		if size, err := be.Stat(bg, h(i)); err != nil || size != int64(sizes[i]) {
			return fmt.Errorf("stat %v: %d, %v", h(i), size, err)
		}
		return nil
	})
	listed := 0
	if err := be.List(bg, backend.Packs, func(string, int64) error { listed++; return nil }); err != nil || listed != n {
		t.Errorf("list: %d files, %v; want %d", listed, err, n)
	}
	parallel(func(i int) error { return be.Remove(bg, h(i)) })
}

// Connections reset at random (1% at accept, the rest after an
// exponential number of bytes, on average every 6 MiB) cost retries,
// never a failed call, a lock refused or wrong bytes. With a mean of
// 2 MiB a 3 MiB object came through in one try of five, and 30 tries
// ran out about once in fifty runs on a loaded machine; at 6 MiB each
// try succeeds three times in five and the run still resets dozens of
// connections.
func TestResets(t *testing.T) {
	p := newProxy(t, gatewayAddr(t))
	p.acceptShare, p.meanBytes = 0.01, 6<<20
	cfg := config(t, p.endpoint())
	cfg.Attempts = 30
	be := open(t, cfg)
	roundTrip(t, be, 60)
	for i := range 5 {
		mode := []backend.LockMode{backend.Shared, backend.Exclusive}[i%2]
		u, err := be.Lock(bg, "store", mode, []byte("resets"))
		if err != nil {
			t.Fatalf("lock %v: %v", mode, err)
		}
		if err := u.Unlock(); err != nil {
			t.Fatalf("unlock %v: %v", mode, err)
		}
	}
	if p.resets.Load() == 0 {
		t.Fatal("the proxy reset no connection: the test tested nothing")
	}
	t.Logf("%d connections reset", p.resets.Load())
}

// The first connections refused, as by a gateway still starting: Open
// and every call after it succeed.
func TestDropFirst(t *testing.T) {
	p := newProxy(t, gatewayAddr(t))
	p.dropFirst.Store(5)
	cfg := config(t, p.endpoint())
	be := open(t, cfg)
	roundTrip(t, be, 6)
	if got := p.resets.Load(); got != 5 {
		t.Fatalf("%d connections reset, want 5", got)
	}
}

// The gateway stopped in the middle of a series of saves and started
// again: each save retries until it is back and finishes.
func TestGatewayRestart(t *testing.T) {
	c := gateway(t)
	cfg := config(t, c.Endpoint)
	cfg.Attempts, cfg.RetryMax = 60, 500*time.Millisecond
	be := open(t, cfg)
	const n = 12
	stopped := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		for i := range n {
			if i == 3 {
				<-stopped
			}
			if err := be.Save(bg, backend.Handle{Type: backend.Index, Name: fmt.Sprint("f", i)}, randBytes(int64(i), 100_000)); err != nil {
				errs <- err
				return
			}
		}
	}()
	// The fourth save starts with the gateway down.
	c.StopGateway()
	close(stopped)
	if err := c.StartGateway(); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatalf("a save across the gateway's restart: %v", err)
	}
	if be.Retries() == 0 {
		t.Fatal("no request was retried: the gateway was never down for a save")
	}
	for i := range n {
		h := backend.Handle{Type: backend.Index, Name: fmt.Sprint("f", i)}
		if got, err := be.Load(bg, h, 0, -1, nil); err != nil || !bytes.Equal(got, randBytes(int64(i), 100_000)) {
			t.Errorf("load %v: %d bytes, %v", h, len(got), err)
		}
	}
}

// A gateway that stays away: a save fails after its attempts, naming the
// endpoint, and leaves no file.
func TestGatewayGone(t *testing.T) {
	p := newProxy(t, gatewayAddr(t))
	cfg := config(t, p.endpoint())
	cfg.Attempts = 3
	be := open(t, cfg)
	p.setDown(true)
	h := backend.Handle{Type: backend.Points, Name: "p1"}
	err := be.Save(bg, h, []byte("point"))
	if err == nil || !strings.Contains(err.Error(), p.endpoint()) || !strings.Contains(err.Error(), "3 attempts") {
		t.Fatalf("save to a gateway gone: %v; want an error naming %s after 3 attempts", err, p.endpoint())
	}
	if errors.Is(err, backend.ErrNotExist) {
		t.Errorf("a connection failure reads as a missing file: %v", err)
	}
	p.setDown(false)
	if _, err := be.Stat(bg, h); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("after a failed save: %v, want ErrNotExist", err)
	}
}

// A gateway that accepts connections and never answers: each attempt
// ends at the request timeout and is retried; a caller's cancel ends the
// call at once, without a retry.
func TestStalled(t *testing.T) {
	p := newProxy(t, gatewayAddr(t))
	cfg := config(t, p.endpoint())
	cfg.Attempts, cfg.RequestTimeout = 3, 300*time.Millisecond
	be := open(t, cfg)
	p.setStall(true)
	h := backend.Handle{Type: backend.Points, Name: "p"}
	err := be.Save(bg, h, []byte("point"))
	if err == nil || !strings.Contains(err.Error(), "3 attempts") || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("save to a stalled gateway: %v; want timeouts after 3 attempts", err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("an attempt's timeout reads as the caller's: %v", err)
	}

	be.cfg.RequestTimeout = time.Minute
	for len(p.stalled) > 0 {
		<-p.stalled
	}
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error)
	go func() { _, err := be.Load(ctx, h, 0, -1, nil); done <- err }()
	// Canceled while its request waits for an answer that never comes.
	<-p.stalled
	retries := be.Retries()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("load canceled: %v", err)
	}
	if be.Retries() != retries {
		t.Error("a canceled request was retried")
	}
}
