package fs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// segment is a run of data or a hole of a file.
type segment struct {
	hole     bool
	from, to int64
}

type segments []segment

func (ss segments) String() string {
	out := make([]string, len(ss))
	for i, s := range ss {
		kind := "data"
		if s.hole {
			kind = "hole"
		}
		out[i] = sprintf("%s %d-%d", kind, s.from, s.to)
	}
	return strings.Join(out, " ")
}

// layout walks fd's data and holes with SEEK_DATA and SEEK_HOLE, as
// cp --sparse and tar -S do.
func layout(t *testing.T, fd int, size int64) segments {
	t.Helper()
	var out segments
	for off := int64(0); off < size; {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			out = append(out, segment{true, off, size})
			break
		}
		if err != nil {
			t.Fatalf("SEEK_DATA %d: %v", off, err)
		}
		if d > off {
			out = append(out, segment{true, off, d})
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil || h <= d {
			t.Fatalf("SEEK_HOLE %d: %d, %v", d, h, err)
		}
		out = append(out, segment{false, d, h})
		off = h
	}
	return out
}

// A sparse file backed up by the engine answers SEEK_DATA and SEEK_HOLE
// through the mount with the holes it had; offsets at or past the end,
// and SEEK_DATA in the trailing hole, give ENXIO as lseek(2) says.
func TestMountSeekDataHole(t *testing.T) {
	const mib = 1 << 20
	src := t.TempDir()
	sparse := filepath.Join(src, "sparse")
	f, err := os.Create(sparse)
	if err != nil {
		t.Fatal(err)
	}
	head, mid := randomBytes(31, mib), randomBytes(32, 128<<10)
	if _, err := f.WriteAt(head, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(mid, 8*mib); err != nil {
		t.Fatal(err)
	}
	const size = 20 * mib
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	want := sprintf("data 0-%d hole %d-%d data %d-%d hole %d-%d", mib, mib, 8*mib, 8*mib, 8*mib+128<<10, 8*mib+128<<10, size)
	if got := layout(t, int(f.Fd()), size).String(); got != want {
		f.Close()
		skip(t, "the file system of %s does not keep this sparse layout (%s)", src, got)
	}
	f.Close()
	writeFile(t, filepath.Join(src, "dense"), randomBytes(33, 3*mib+17), 0o644)
	writeFile(t, filepath.Join(src, "empty"), nil, 0o644)
	ts := newTestStore(t)
	ts.backup(src, "s", time.Time{})
	tr, err := New(ts.backend(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mountTree(t, tr, MountOptions{}).Dir(), "s", LatestName)

	open := func(name string) *os.File {
		t.Helper()
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	mf := open("sparse")
	if got := layout(t, int(mf.Fd()), size).String(); got != want {
		t.Errorf("layout through the mount:\n got %s\nwant %s", got, want)
	}
	data := 8*mib + 128<<10 // end of the last data
	for _, c := range []struct {
		whence int
		off    int64
		want   int64 // -1: ENXIO
	}{
		{unix.SEEK_DATA, 0, 0},
		{unix.SEEK_DATA, mib - 1, mib - 1},
		{unix.SEEK_DATA, mib, 8 * mib},
		{unix.SEEK_DATA, 5 * mib, 8 * mib},
		{unix.SEEK_DATA, 8*mib + 5, 8*mib + 5},
		{unix.SEEK_DATA, int64(data), -1},
		{unix.SEEK_DATA, size - 1, -1},
		{unix.SEEK_DATA, size, -1},
		{unix.SEEK_DATA, size + mib, -1},
		{unix.SEEK_HOLE, 0, mib},
		{unix.SEEK_HOLE, mib, mib},
		{unix.SEEK_HOLE, 3 * mib, 3 * mib},
		{unix.SEEK_HOLE, 8 * mib, int64(data)},
		{unix.SEEK_HOLE, size - 1, size - 1},
		{unix.SEEK_HOLE, size, -1},
		{unix.SEEK_HOLE, size + mib, -1},
	} {
		got, err := unix.Seek(int(mf.Fd()), c.off, c.whence)
		if c.want < 0 {
			if !errors.Is(err, unix.ENXIO) {
				t.Errorf("whence %d at %d: %d, %v; want ENXIO", c.whence, c.off, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("whence %d at %d: %d, %v; want %d", c.whence, c.off, got, err, c.want)
		}
	}
	// Seeking does not disturb reading: the holes read as zeroes.
	b, err := os.ReadFile(filepath.Join(dir, "sparse"))
	if err != nil || len(b) != size || !bytes.Equal(b[:mib], head) || !bytes.Equal(b[8*mib:data], mid) ||
		!bytes.Equal(b[mib:8*mib], make([]byte, 7*mib)) || !bytes.Equal(b[data:], make([]byte, size-data)) {
		t.Errorf("content of the sparse file through the mount: %d bytes, %v", len(b), err)
	}

	// A file without holes has the implicit one at its end; an empty one
	// has no data at all.
	df := open("dense")
	if got, want := layout(t, int(df.Fd()), 3*mib+17).String(), sprintf("data 0-%d", 3*mib+17); got != want {
		t.Errorf("dense file: %s, want %s", got, want)
	}
	ef := open("empty")
	for _, whence := range []int{unix.SEEK_DATA, unix.SEEK_HOLE} {
		if off, err := unix.Seek(int(ef.Fd()), 0, whence); !errors.Is(err, unix.ENXIO) {
			t.Errorf("empty file, whence %d: %d, %v; want ENXIO", whence, off, err)
		}
	}
}

// A run of zeroes that was written, not left as a hole, is stored as
// holes where whole chunks are zero, and reported so: every hole reads as
// zeroes, and the run holds at least one.
func TestMountSeekZeroChunksAreHoles(t *testing.T) {
	const mib = 1 << 20
	src := t.TempDir()
	// Chunks are at most 8 MiB long, so a 20 MiB run of zeroes holds a
	// whole chunk of them whatever the cut points.
	content := append(append(randomBytes(41, mib), make([]byte, 20*mib)...), randomBytes(42, mib)...)
	writeFile(t, filepath.Join(src, "zeroes"), content, 0o644)
	ts := newTestStore(t)
	ts.backup(src, "s", time.Time{})
	tr, err := New(ts.backend(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(mountTree(t, tr, MountOptions{}).Dir(), "s", LatestName, "zeroes"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := layout(t, int(f.Fd()), int64(len(content)))
	holes := 0
	for _, s := range got {
		if !s.hole {
			continue
		}
		holes++
		if s.from < mib || s.to > 21*mib {
			t.Errorf("hole %d-%d outside the run of zeroes (layout %s)", s.from, s.to, got)
		}
	}
	if holes == 0 {
		t.Errorf("no hole reported in 20 MiB of zeroes: %s", got)
	}
	if b, err := os.ReadFile(f.Name()); err != nil || !bytes.Equal(b, content) {
		t.Errorf("content through the mount: %v, equal %v", err, bytes.Equal(b, content))
	}
}
