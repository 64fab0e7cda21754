// Package faulty wraps a chunk store backend and injects faults, for the
// store's tests: errors on chosen calls, short reads, latency, and a
// storage that fills up at the Nth write. With no fault set it is the
// backend it wraps (it passes the conformance suite), including the
// optional capabilities the store uses (streamed files, temp areas,
// direct reads: a direct read bypasses Load's faults, so tests of reads
// use DisableDirect).
//
// Faults are set and cleared while the store runs; every method is safe
// for concurrent use.
package faulty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// Op names a backend call.
type Op string

// The calls faults apply to. Write is one Write of a streamed file (a
// pack being built); Commit publishes one.
const (
	List   Op = "list"
	Stat   Op = "stat"
	Load   Op = "load"
	Save   Op = "save"
	Remove Op = "remove"
	Lock   Op = "lock"
	Create Op = "create"
	Write  Op = "write"
	Commit Op = "commit"
	// ListTemp lists a temp area (backend.TempReader): not a listing of
	// the store's files.
	ListTemp Op = "listtemp"
)

// ErrInjected is the default error of a failing call.
var ErrInjected = errors.New("injected fault")

// Backend is a backend with faults.
type Backend struct {
	inner backend.Backend

	mu        sync.Mutex
	rules     []*rule
	calls     map[Op]int
	typed     map[typedOp]int
	writes    int // Save calls and streamed Writes, counted for FullAt
	fullAt    int // 0: never full
	short     map[backend.FileType]int
	latency   time.Duration
	directOff bool
}

type typedOp struct {
	op Op
	t  backend.FileType
}

type rule struct {
	op   Op
	typ  backend.FileType // 0: any
	nth  int              // fire at the nth matching call from now; 0: every one
	seen int
	err  error
}

// New wraps inner.
func New(inner backend.Backend) *Backend {
	return &Backend{inner: inner, calls: map[Op]int{}, typed: map[typedOp]int{}, short: map[backend.FileType]int{}}
}

// Inner returns the wrapped backend.
func (b *Backend) Inner() backend.Backend { return b.inner }

// FailAt makes the nth call of op on files of type t (0: any type),
// counted from now, fail with err (nil: ErrInjected) without reaching the
// wrapped backend; with nth 0 every such call fails until Clear.
func (b *Backend) FailAt(op Op, t backend.FileType, nth int, err error) {
	if err == nil {
		err = ErrInjected
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rules = append(b.rules, &rule{op: op, typ: t, nth: nth, err: err})
}

// FullAt makes the storage full from the nth write on, counted from now
// (a write is a Save or a Write of a streamed file): that write and every
// later one fail with backend.ErrNoSpace until Clear, as a disk that
// stays full. Reads and removals go on working.
func (b *Backend) FullAt(nth int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writes, b.fullAt = 0, nth
}

// ShortReads makes every Load of a file of type t return n bytes fewer
// than it should, with no error: a backend that lies. The store must not
// take such bytes for the file's.
func (b *Backend) ShortReads(t backend.FileType, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.short[t] = n
}

// Latency delays every call by d (a canceled context ends the wait).
func (b *Backend) Latency(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.latency = d
}

// DisableDirect hides the wrapped backend's direct reads, so every read
// goes through Load and its faults.
func (b *Backend) DisableDirect() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.directOff = true
}

// Clear removes every fault (not the call counts).
func (b *Backend) Clear() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rules, b.fullAt, b.latency = nil, 0, 0
	clear(b.short)
}

// Calls returns how many calls of op were made (failed ones included).
func (b *Backend) Calls(op Op) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[op]
}

// CallsOn returns how many calls of op were made on files of type t.
func (b *Backend) CallsOn(op Op, t backend.FileType) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.typed[typedOp{op, t}]
}

// enter counts a call and returns the fault it gets, after the latency.
func (b *Backend) enter(ctx context.Context, op Op, t backend.FileType) error {
	b.mu.Lock()
	b.calls[op]++
	b.typed[typedOp{op, t}]++
	var err error
	for _, r := range b.rules {
		if r.op != op || r.typ != 0 && r.typ != t {
			continue
		}
		r.seen++
		if r.nth == 0 || r.seen == r.nth {
			err = fmt.Errorf("%s %s: %w", op, t, r.err)
			break
		}
	}
	if err == nil && (op == Save || op == Write) {
		b.writes++
		if b.fullAt > 0 && b.writes >= b.fullAt {
			err = fmt.Errorf("%s %s: %w (injected)", op, t, backend.ErrNoSpace)
		}
	}
	d := b.latency
	b.mu.Unlock()
	if d > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	return err
}

var (
	_ backend.Backend      = (*Backend)(nil)
	_ backend.Creator      = (*Backend)(nil)
	_ backend.Tagger       = (*Backend)(nil)
	_ backend.DirectReader = (*Backend)(nil)
	_ backend.TempCleaner  = (*Backend)(nil)
	_ backend.NameLister   = (*Backend)(nil)
)

// Location returns the wrapped backend's.
func (b *Backend) Location() string { return b.inner.Location() }

// List lists through the wrapped backend.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(string, int64) error) error {
	if err := b.enter(ctx, List, t); err != nil {
		return err
	}
	return b.inner.List(ctx, t, fn)
}

// ListNames lists names through the wrapped backend (counted as List).
func (b *Backend) ListNames(ctx context.Context, t backend.FileType, fn func(string) error) error {
	if err := b.enter(ctx, List, t); err != nil {
		return err
	}
	return backend.ListNames(ctx, b.inner, t, fn)
}

// Stat stats through the wrapped backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (int64, error) {
	if err := b.enter(ctx, Stat, h.Type); err != nil {
		return 0, err
	}
	return b.inner.Stat(ctx, h)
}

// Load loads through the wrapped backend, short when ShortReads says so.
func (b *Backend) Load(ctx context.Context, h backend.Handle, off int64, length int, buf []byte) ([]byte, error) {
	if err := b.enter(ctx, Load, h.Type); err != nil {
		return nil, err
	}
	out, err := b.inner.Load(ctx, h, off, length, buf)
	b.mu.Lock()
	n := b.short[h.Type]
	b.mu.Unlock()
	if err == nil && n > 0 {
		out = out[:max(len(out)-n, 0)]
	}
	return out, err
}

// Save saves through the wrapped backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, data []byte) error {
	if err := b.enter(ctx, Save, h.Type); err != nil {
		return err
	}
	return b.inner.Save(ctx, h, data)
}

// Remove removes through the wrapped backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := b.enter(ctx, Remove, h.Type); err != nil {
		return err
	}
	return b.inner.Remove(ctx, h)
}

// Lock locks through the wrapped backend.
func (b *Backend) Lock(ctx context.Context, name string, mode backend.LockMode, info []byte) (backend.Unlocker, error) {
	if err := b.enter(ctx, Lock, backend.Locks); err != nil {
		return nil, err
	}
	return b.inner.Lock(ctx, name, mode, info)
}

// Close closes the wrapped backend.
func (b *Backend) Close() error { return b.inner.Close() }

// Create streams a file through the wrapped backend's writer.
func (b *Backend) Create(ctx context.Context, t backend.FileType) (backend.FileWriter, error) {
	return b.CreateTagged(ctx, t, "")
}

// CreateTagged streams a file in a session's temp area.
func (b *Backend) CreateTagged(ctx context.Context, t backend.FileType, tag string) (backend.FileWriter, error) {
	if err := b.enter(ctx, Create, t); err != nil {
		return nil, err
	}
	w, err := backend.CreateTagged(ctx, b.inner, t, tag)
	if err != nil {
		return nil, err
	}
	return &fileWriter{b: b, t: t, w: w}, nil
}

type fileWriter struct {
	b *Backend
	t backend.FileType
	w backend.FileWriter
}

func (w *fileWriter) Write(p []byte) (int, error) {
	if err := w.b.enter(context.Background(), Write, w.t); err != nil {
		return 0, err
	}
	return w.w.Write(p)
}

func (w *fileWriter) Commit(ctx context.Context, name string) error {
	if err := w.b.enter(ctx, Commit, w.t); err != nil {
		w.w.Abort()
		return err
	}
	return w.w.Commit(ctx, name)
}

func (w *fileWriter) Abort() error { return w.w.Abort() }

// Sync syncs through the wrapped writer, if it can (else it does
// nothing: the bytes become durable at Commit).
func (w *fileWriter) Sync() error {
	if s, ok := w.w.(backend.Syncer); ok {
		return s.Sync()
	}
	return nil
}

// OpenDirect opens through the wrapped backend's direct reads, unless
// DisableDirect hid them.
func (b *Backend) OpenDirect(ctx context.Context, h backend.Handle) (io.ReaderAt, error) {
	b.mu.Lock()
	off := b.directOff
	b.mu.Unlock()
	dr, ok := b.inner.(backend.DirectReader)
	if off || !ok {
		return nil, backend.ErrNotSupported
	}
	if err := b.enter(ctx, Load, h.Type); err != nil {
		return nil, err
	}
	return dr.OpenDirect(ctx, h)
}

// Misplaced lists through the wrapped backend, if it places packs.
func (b *Backend) Misplaced(ctx context.Context, fn func(name, path string) error) error {
	if pp, ok := b.inner.(backend.PackPlacer); ok {
		return pp.Misplaced(ctx, fn)
	}
	return nil
}

// PutBack moves through the wrapped backend.
func (b *Backend) PutBack(ctx context.Context, name, path string) error {
	if pp, ok := b.inner.(backend.PackPlacer); ok {
		return pp.PutBack(ctx, name, path)
	}
	return backend.ErrNotSupported
}

// CleanTemp cleans through the wrapped backend, if it keeps temp files.
func (b *Backend) CleanTemp(ctx context.Context, tag string) error {
	if tc, ok := b.inner.(backend.TempCleaner); ok {
		return tc.CleanTemp(ctx, tag)
	}
	return nil
}

// ListTemp lists through the wrapped backend, if it has a temp area it can
// read (none: nothing is listed).
func (b *Backend) ListTemp(ctx context.Context, tag string, t backend.FileType, fn func(tag, name string, size int64) error) error {
	tr, ok := b.inner.(backend.TempReader)
	if !ok {
		return nil
	}
	if err := b.enter(ctx, ListTemp, t); err != nil {
		return err
	}
	return tr.ListTemp(ctx, tag, t, fn)
}

// LoadTemp reads through the wrapped backend's temp area.
func (b *Backend) LoadTemp(ctx context.Context, tag, name string, buf []byte) ([]byte, error) {
	tr, ok := b.inner.(backend.TempReader)
	if !ok {
		return nil, backend.ErrNotExist
	}
	if err := b.enter(ctx, Load, backend.Packs); err != nil {
		return nil, err
	}
	return tr.LoadTemp(ctx, tag, name, buf)
}
