package uring

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/recall-backup/recall/internal/testskip"
	"golang.org/x/sys/unix"
)

func newRing(t *testing.T, n uint32) *Ring {
	t.Helper()
	r, err := New(n)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) {
		// Turned off here (kernel.io_uring_disabled, a container's
		// seccomp filter): the backup's hints fall back, nothing to test.
		testskip.Skip(t, "New(%d): %v (%s)", n, err, disabled())
	}
	if err != nil {
		t.Fatalf("New(%d): %v (%s)", n, err, disabled())
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func disabled() string {
	b, err := os.ReadFile("/proc/sys/kernel/io_uring_disabled")
	if err != nil {
		return "no kernel.io_uring_disabled"
	}
	return "kernel.io_uring_disabled=" + string(bytes.TrimSpace(b))
}

func TestNewRejectsSizes(t *testing.T) {
	for _, n := range []uint32{0, 3, 100, 8192} {
		if r, err := New(n); err == nil {
			r.Close()
			t.Errorf("New(%d) took a size that is not a power of two up to 4096", n)
		}
	}
}

// TestReads reads files of many sizes in batches as large as the ring
// has room for, checks every byte and that nothing past a file's end is
// written, and reads at an offset.
func TestReads(t *testing.T) {
	dir := t.TempDir()
	r := newRing(t, 8)
	var want [][]byte
	var fds []int
	for i := 0; i < 30; i++ {
		b := bytes.Repeat([]byte(fmt.Sprintf("file %d ", i)), 1+i*997)
		p := filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(p, unix.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		want = append(want, b)
		fds = append(fds, fd)
	}
	got := make([][]byte, len(fds))
	for i := 0; i < len(fds); {
		// Fill what the ring has room for, as a caller does.
		j := i
		for ; j < len(fds); j++ {
			got[j] = make([]byte, len(want[j])+100)
			if !r.Read(fds[j], got[j], 0) {
				break
			}
		}
		if j == i {
			t.Fatalf("the ring took no read with %d in flight", r.InFlight())
		}
		if r.Room() != 8-(j-i)-r.InFlight() {
			t.Fatalf("room %d with %d queued and %d in flight", r.Room(), j-i, r.InFlight())
		}
		if err := r.Submit(); err != nil {
			t.Fatal(err)
		}
		failed, err := r.Wait(0)
		if err != nil || failed != 0 {
			t.Fatalf("Wait: %d failed, %v", failed, err)
		}
		i = j
	}
	for i := range want {
		if !bytes.Equal(got[i][:len(want[i])], want[i]) {
			t.Errorf("file %d: read other bytes", i)
		}
		if bytes.ContainsFunc(got[i][len(want[i]):], func(r rune) bool { return r != 0 }) {
			t.Errorf("file %d: bytes past its end were written", i)
		}
	}
	// An offset: the last 5 bytes of the largest file.
	last := len(want) - 1
	b := make([]byte, 5)
	r.Read(fds[last], b, int64(len(want[last])-5))
	if err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wait(0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want[last][len(want[last])-5:]) {
		t.Errorf("read at an offset: %q", b)
	}
}

// TestClosedAfterSubmit closes the descriptors right after Submit, as the
// backup's hints do: the reads still complete.
func TestClosedAfterSubmit(t *testing.T) {
	dir := t.TempDir()
	r := newRing(t, 4)
	p := filepath.Join(dir, "f")
	data := bytes.Repeat([]byte("x"), 1<<20)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	bufs := make([][]byte, 4)
	for i := range bufs {
		fd, err := unix.Open(p, unix.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		bufs[i] = make([]byte, len(data))
		if !r.Read(fd, bufs[i], 0) {
			t.Fatal("no room in an empty ring")
		}
		defer unix.Close(fd)
	}
	if err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	failed, err := r.Wait(0)
	if err != nil || failed != 0 {
		t.Fatalf("Wait: %d failed, %v", failed, err)
	}
	for i, b := range bufs {
		if !bytes.Equal(b, data) {
			t.Errorf("read %d: other bytes", i)
		}
	}
}

// TestFailuresCounted: a read of a bad descriptor fails at once and is
// counted.
func TestFailuresCounted(t *testing.T) {
	r := newRing(t, 4)
	buf := make([]byte, 4096)
	r.Read(1<<20, buf, 0) // no such descriptor
	if err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	failed, err := r.Wait(0)
	if err != nil || failed != 1 {
		t.Fatalf("Wait: %d failed (want 1), %v", failed, err)
	}
}

// TestFIFOWaits pins what callers guard against: a read of a FIFO waits
// for a writer even when the FIFO was opened O_NONBLOCK (the ring polls
// and retries), so a ring must be given regular files only.
func TestFIFOWaits(t *testing.T) {
	dir := t.TempDir()
	r := newRing(t, 4)
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(fifo, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	w, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(w)
	buf := make([]byte, 4096)
	r.Read(fd, buf, 0)
	if err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.Wait(0)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the read of an empty FIFO ended before anything was written (%v): the hints' guard is not needed on this kernel", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := unix.Write(w, []byte("late")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read of the FIFO did not end after a write")
	}
	if string(buf[:4]) != "late" {
		t.Errorf("read %q", buf[:4])
	}
}
