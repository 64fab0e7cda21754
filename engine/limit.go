package engine

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter holds back a backup's reads from its source (BackupOptions.
// Limiter). Backup calls WaitN after reading n bytes, from each of its
// reading goroutines at once; WaitN returns when the backup may read on,
// or with an error that fails the read (ctx's cause when ctx ends). n may
// be larger than any burst the Limiter has.
type Limiter interface {
	WaitN(ctx context.Context, n int) error
}

// RateLimit is a Limiter: a token bucket (golang.org/x/time/rate) in
// force only inside its window, which is checked at every wait on its
// clock, so a backup running when the window opens or closes slows down
// or speeds up at once. Several RateLimits may share one bucket (a
// group's members).
type RateLimit struct {
	bucket *rate.Limiter
	window *limitWindow // nil: always
	now    func() time.Time
}

var _ Limiter = (*RateLimit)(nil)

// NewRateLimit returns the limit of a rate and a window as a group's Limit
// and LimitWindow take them (window "": always); the window is read on
// the clock now (nil: time.Now). A limit "" is none: nil, nil. An
// unusable value wraps ErrBadPolicy and names --limit or --limit-window.
func NewRateLimit(limit, window string, now func() time.Time) (*RateLimit, error) {
	r, w, err := compileLimit(limit, window)
	if err != nil || r == 0 {
		return nil, err
	}
	return newRateLimit(newBucket(r), w, now), nil
}

func newRateLimit(b *rate.Limiter, w *limitWindow, now func() time.Time) *RateLimit {
	if now == nil {
		now = time.Now
	}
	return &RateLimit{bucket: b, window: w, now: now}
}

func newBucket(r float64) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(r), burstFor(r))
}

// burstFor is the bucket size for r bytes a second: a quarter second of
// reading, so the rate holds over any second or more, but at least a page
// and at most 4 MiB.
func burstFor(r float64) int {
	return int(min(max(r/4, 4<<10), 4<<20))
}

// WaitN waits for n bytes' worth of the rate when the window holds at
// the clock's now, a burst at a time, reading the clock again before each.
func (l *RateLimit) WaitN(ctx context.Context, n int) error {
	for n > 0 {
		k := min(n, l.bucket.Burst())
		if l.window.active(l.now()) {
			if err := l.bucket.WaitN(ctx, k); err != nil {
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				return fmt.Errorf("read limit of %.0f bytes/s: %w", float64(l.bucket.Limit()), err)
			}
		}
		n -= k
	}
	return nil
}

// groupBuckets holds one token bucket per group name, so that the group's
// members backed up at once, by one BackupGroup or several, share the
// group's limit. A changed limit changes the bucket in place, for the
// backups already running too.
var groupBuckets = struct {
	sync.Mutex
	m map[string]*rate.Limiter
}{m: map[string]*rate.Limiter{}}

// groupLimit returns the limit of group's policy p with the group's
// shared bucket, its window read on now; nil when p sets none.
func groupLimit(group string, p Policy, now func() time.Time) (*RateLimit, error) {
	r, w, err := compileLimit(p.Limit, p.LimitWindow)
	if err != nil || r == 0 {
		return nil, err
	}
	groupBuckets.Lock()
	defer groupBuckets.Unlock()
	b := groupBuckets.m[group]
	switch {
	case b == nil:
		b = newBucket(r)
		groupBuckets.m[group] = b
	case b.Limit() != rate.Limit(r):
		b.SetLimit(rate.Limit(r))
		b.SetBurst(burstFor(r))
	}
	return newRateLimit(b, w, now), nil
}

// limitedReader is r with each Read held back by lim. It counts what
// it lets through in prog as it goes: a limited backup's chunks take
// seconds each to read, and counted when cut (as an unlimited backup
// counts them) the progress stood still for as long, then jumped.
type limitedReader struct {
	ctx  context.Context
	r    io.Reader
	lim  Limiter
	prog *Progress
}

// limitedRead is the most a limited Read takes at once, so that the
// progress moves several times a second at the lowest rates people set.
const limitedRead = 128 << 10

func (l *limitedReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p[:min(len(p), limitedRead)])
	if n > 0 {
		if werr := l.lim.WaitN(l.ctx, n); werr != nil {
			return n, werr
		}
		l.prog.addBytes(int64(n))
	}
	return n, err
}

// limited returns r held back by the backup's Limiter, if it has one; a
// limited reader counts the progress of what it reads itself (see
// limitedReader).
func (b *backuper) limited(r io.Reader) io.Reader {
	if b.opts.Limiter == nil {
		return r
	}
	return &limitedReader{ctx: b.ctx, r: r, lim: b.opts.Limiter, prog: b.opts.Progress}
}
