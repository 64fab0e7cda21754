package engine

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// steppingClock is a fake clock that moves on by step at every reading,
// so a limit reading it before each burst sees the window open or close
// in the middle of one WaitN.
type steppingClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *steppingClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.step)
	return t
}

// waits reports whether WaitN(n) would have to wait: with a deadline
// shorter than any wait of the bucket, rate.Limiter refuses at once
// instead of sleeping.
func waits(t *testing.T, l Limiter, n int) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	return l.WaitN(ctx, n) != nil
}

// Inside the window the bucket holds; outside it does not; and the window
// is read at each burst, so one long read switches when it opens or
// closes. 4 KiB/s: a burst of 4 KiB, and a second one would wait a second.
func TestRateLimitWindow(t *testing.T) {
	wed := func(hh, mm int) time.Time { return time.Date(2026, 11, 25, hh, mm, 0, 0, time.UTC) }
	const burst = 4 << 10
	for _, c := range []struct {
		name  string
		start time.Time
		step  time.Duration
		n     int
		wait  bool
	}{
		{"inside, one burst", wed(10, 0), 0, burst, false},
		{"inside, two bursts", wed(10, 0), 0, 2 * burst, true},
		{"outside", wed(20, 0), 0, 100 * burst, false},
		{"closes after the first burst", wed(17, 59), time.Minute, 100 * burst, false},
		{"opens after the first burst", wed(7, 59), time.Minute, 3 * burst, true},
		{"opens at the last burst", wed(7, 0), time.Minute, 61 * burst, false},
		{"opens before the last burst", wed(7, 0), time.Minute, 62 * burst, true},
	} {
		clk := &steppingClock{t: c.start, step: c.step}
		l, err := NewRateLimit("4KiB/s", "mon-fri,08:00-18:00", clk.now)
		if err != nil {
			t.Fatal(err)
		}
		if l.bucket.Burst() != burst {
			t.Fatalf("burst %d, want %d", l.bucket.Burst(), burst)
		}
		if got := waits(t, l, c.n); got != c.wait {
			t.Errorf("%s: waited %v, want %v", c.name, got, c.wait)
		}
	}
}

// The members of a group backed up at once share one bucket: what one
// takes the other waits for. Another group has its own.
func TestGroupLimitShared(t *testing.T) {
	p := Policy{Limit: "4KiB/s"}
	// Names of this run only: the buckets outlive a test (-count=2).
	ga, gb := fmt.Sprint("a-", time.Now().UnixNano()), fmt.Sprint("b-", time.Now().UnixNano())
	a, err := groupLimit(ga, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := groupLimit(ga, p, nil)
	other, _ := groupLimit(gb, p, nil)
	if waits(t, a, 4<<10) {
		t.Fatal("the first burst waited")
	}
	if !waits(t, b, 4<<10) {
		t.Error("a second member of the group read a burst the first one had taken without waiting")
	}
	if waits(t, other, 4<<10) {
		t.Error("another group's bucket was taken")
	}
	// A higher limit given while the group runs holds for its bucket at once.
	c, _ := groupLimit(ga, Policy{Limit: "1MiB/s"}, nil)
	if c.bucket != a.bucket || float64(a.bucket.Limit()) != 1<<20 {
		t.Errorf("changed limit: a new bucket or an old rate (%v)", a.bucket.Limit())
	}
	if none, err := groupLimit(gb, Policy{}, nil); none != nil || err != nil {
		t.Errorf("no limit: %v, %v", none, err)
	}
}

// A backup of 8 MiB at 4 MiB/s takes its time (the first burst of 1 MiB
// is free: 7 MiB at 4 MiB/s is 1.75 s); without the limit, or outside the
// limit's window, it does not. Each way a backup reads a file is limited:
// files of one chunk (one read each, several at once), files read through
// the page cache, and large files read a piece ahead (readahead.go). This
// measures elapsed time, because the limit is about elapsed time.
func TestBackupLimited(t *testing.T) {
	_, st := newHome(t)
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		files int // of 8 MiB / files each
	}{
		{"one large file", 1},
		{"files of a few chunks", 4},
		{"files of one chunk", 16},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			size := 8 << 20 / c.files
			if c.files == 16 && size > st.st.MinChunk() {
				t.Fatalf("files of %d bytes are more than one chunk (%d)", size, st.st.MinChunk())
			}
			for _, m := range []string{"a", "b", "c"} {
				os.MkdirAll(filepath.Join(dir, m), 0o755)
				for i := range c.files {
					data := make([]byte, size)
					rand.Read(data)
					if err := os.WriteFile(filepath.Join(dir, m, fmt.Sprint(i)), data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			timed := func(fn func() error) time.Duration {
				t.Helper()
				start := time.Now()
				if err := fn(); err != nil {
					t.Fatal(err)
				}
				return time.Since(start)
			}
			// A group of one member, its window open on Wednesday at
			// 10:00 and closed on Saturday.
			group := func(member string, at time.Time) error {
				g := &Group{Name: "limited-" + member, PolicyVersion: 1, Members: []string{filepath.Join(dir, member)},
					Policy: Policy{Limit: "4MiB/s", LimitWindow: "mon-fri,08:00-18:00"}}
				_, err := st.BackupGroup(ctx, "", g, GroupBackupOptions{Now: func() time.Time { return at }})
				return err
			}
			limited := timed(func() error { return group("a", time.Date(2026, 11, 25, 10, 0, 0, 0, time.Local)) })
			outside := timed(func() error { return group("b", time.Date(2026, 11, 28, 10, 0, 0, 0, time.Local)) })
			free := timed(func() error {
				s, err := st.Session(ctx, SessionOptions{Purpose: "test", Source: "c", Blobs: true})
				if err != nil {
					return err
				}
				defer s.Close()
				_, err = Backup(ctx, s, BackupOptions{Path: filepath.Join(dir, "c"), Source: "c"})
				return err
			})
			t.Logf("8 MiB: %s at 4 MiB/s, %s outside the window, %s with no limit", limited, outside, free)
			if limited < 1500*time.Millisecond {
				t.Errorf("8 MiB at 4 MiB/s took %s, want at least 1.5 s", limited)
			}
			if outside > limited/2 || free > limited/2 {
				t.Errorf("outside the window %s, no limit %s: want both well under the limited %s", outside, free, limited)
			}
		})
	}
}

// Fix (progress of a limited backup): bytes were counted as each chunk
// was cut, which at a low limit is seconds apart: a backup at 512 KiB/s
// showed 0 bytes for 7 s, then 3.9 MB at once. The limited reader counts
// what it lets through as it goes, in pieces of at most limitedRead, and
// the count ends at the bytes backed up, not twice them.
func TestLimitedBackupProgressMoves(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	data := make([]byte, 3<<20)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(src, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "small"), data[:1000], 0o644); err != nil {
		t.Fatal(err)
	}
	lim, err := NewRateLimit("2MiB/s", "", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	var prog Progress
	seen := map[int64]bool{}
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				seen[prog.Status().BytesDone] = true
			}
		}
	}()
	p, err := ts.backup(BackupOptions{Path: src, Limiter: lim, Progress: &prog})
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	if got := prog.Status().BytesDone; got != int64(p.Stats.Bytes) {
		t.Errorf("bytes done %d at the end, want the %d backed up", got, p.Stats.Bytes)
	}
	// 3 MiB in pieces of 128 KiB: 24 counts, of which a sample every
	// 20 ms sees most; by chunks, 2 to 5.
	if len(seen) < 8 {
		t.Errorf("the progress took %d values while the limited backup read, want it to move as it reads", len(seen))
	}
}
