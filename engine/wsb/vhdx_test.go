package wsb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/recall-backup/recall/internal/wsbgen"
)

// patched reads base (zeroes when nil) with patches laid over it.
type patched struct {
	base    io.ReaderAt
	size    int64
	patches []patch
}

type patch struct {
	off int64
	b   []byte
}

func (p *patched) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= p.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(b)), p.size-off))
	clear(b[:n])
	if p.base != nil {
		if _, err := p.base.ReadAt(b[:n], off); err != nil && err != io.EOF {
			return 0, err
		}
	}
	for _, q := range p.patches {
		lo, hi := max(q.off, off), min(q.off+int64(len(q.b)), off+int64(n))
		if lo < hi {
			copy(b[lo-off:hi-off], q.b[lo-q.off:hi-q.off])
		}
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// image is a generated VHDX, open for the test.
type image struct {
	f    *os.File
	size int64
}

func newImage(t *testing.T, o wsbgen.Options) (*wsbgen.Backup, []image) {
	t.Helper()
	b := generate(t, t.TempDir(), o)
	var out []image
	for _, v := range b.Volumes {
		img, err := openImage(v.Path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { img.f.Close() })
		out = append(out, img)
	}
	return b, out
}

func openImage(path string) (image, error) {
	f, err := os.Open(path)
	if err != nil {
		return image{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return image{}, err
	}
	return image{f, fi.Size()}, nil
}

// structure reads n bytes at off of img, changes them with fn and, when
// sum, puts the CRC-32C back in bytes 4..7, as a writer of a valid file
// would.
func structure(t *testing.T, img image, off int64, n int, sum bool, fn func(b []byte)) patch {
	t.Helper()
	b := make([]byte, n)
	if _, err := img.f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	fn(b)
	if sum {
		clear(b[4:8])
		binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b, castagnoli))
	}
	return patch{off, b}
}

func TestCheckVHDX(t *testing.T) {
	_, imgs := newImage(t, wsbgen.Options{Seed: 8})
	for i, img := range imgs {
		if err := CheckVHDX(img.f, img.size); err != nil {
			t.Errorf("generated image %d: %v", i, err)
		}
	}
	img := imgs[1]
	le := binary.LittleEndian
	// The BAT's first entry (the first payload block's) and the metadata
	// region's place, from the region table.
	var batOff, metaOff int64
	structure(t, img, regionOffset1, regionSize, false, func(b []byte) {
		for i := range int(le.Uint32(b[8:])) {
			e := b[16+32*i:]
			var g guid
			copy(g[:], e)
			switch g {
			case regionBAT:
				batOff = int64(le.Uint64(e[16:]))
			case regionMetadata:
				metaOff = int64(le.Uint64(e[16:]))
			}
		}
	})
	flip := func(off int64) patch { return structure(t, img, off, 1, false, func(b []byte) { b[0] ^= 0xff }) }
	regions := func(fn func(b []byte)) []patch {
		return []patch{structure(t, img, regionOffset1, regionSize, true, fn), structure(t, img, regionOffset2, regionSize, true, fn)}
	}
	for _, tc := range []struct {
		name    string
		size    int64
		patches []patch
		want    string // "" for valid
	}{
		{"as generated", 0, nil, ""},
		{"shorter than the header section", 512 << 10, nil, "shorter than the 1 MiB header section"},
		{"no identifier", 0, []patch{{0, []byte("vhdxfilf")}}, `no file type identifier: "vhdxfilf"`},
		{"header 1 broken, 2 current", 0, []patch{flip(headerOffset1 + 80)}, ""},
		{"both headers broken", 0, []patch{flip(headerOffset1 + 80), flip(headerOffset2 + 80)}, "no valid header (header 1 at 64 KiB: checksum"},
		{"header signature", 0, []patch{{headerOffset1, []byte("HEAD")}, {headerOffset2, []byte("HEAD")}}, `signature "HEAD", want "head"`},
		{"header version 2", 0, []patch{
			structure(t, img, headerOffset1, headerSize, true, func(b []byte) { b[66] = 2 }),
			structure(t, img, headerOffset2, headerSize, true, func(b []byte) { b[66] = 2 }),
		}, "version 2, want 1"},
		{"region table 1 broken", 0, []patch{flip(regionOffset1 + 100)}, ""},
		{"both region tables broken", 0, []patch{flip(regionOffset1 + 100), flip(regionOffset2 + 100)}, "no valid region table"},
		{"BAT region past the end", 0, regions(func(b []byte) {
			for i := range 2 {
				if e := b[16+32*i:]; bytes.Equal(e[:16], regionBAT[:]) {
					le.PutUint64(e[16:], uint64(img.size)/mib*mib)
					le.PutUint32(e[24:], 2*mib)
				}
			}
		}), "BAT region of 2097152 bytes"},
		{"unknown required region", 0, regions(func(b []byte) {
			le.PutUint32(b[8:], 3)
			copy(b[16+64:], "0123456789abcdef")
			le.PutUint64(b[16+64+16:], 1<<40)
			le.PutUint32(b[16+64+28:], 1)
		}), "unknown required region"},
		{"no metadata signature", 0, []patch{{metaOff, []byte("metadatX")}}, "metadata table signature"},
		{"block size 3 MiB", 0, []patch{{metaOff + 64<<10, []byte{0, 0, 0x30, 0}}}, "block size 3145728"},
		{"BAT entry past the end", 0, []patch{structure(t, img, batOff, 8, false, func(b []byte) { le.PutUint64(b, uint64(img.size)<<20|payloadFullyPresent) })}, "1 blocks lie past its end (the first: payload block 0 at"},
		{"BAT entry in the header section", 0, []patch{structure(t, img, batOff, 8, false, func(b []byte) { le.PutUint64(b, payloadFullyPresent) })}, "payload block 0 at 0: inside the header section"},
		{"BAT state 4", 0, []patch{structure(t, img, batOff, 8, false, func(b []byte) { b[0] = b[0]&^7 | 4 })}, "state 4 is not a payload state"},
		{"cut in the middle", img.size / 2 / mib * mib, nil, "cut short"},
	} {
		size := img.size
		if tc.size != 0 {
			size = tc.size
		}
		err := CheckVHDX(&patched{base: img.f, size: size, patches: tc.patches}, size)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestCheckVHDXFaults: the generator's corrupt and truncated images.
func TestCheckVHDXFaults(t *testing.T) {
	b, imgs := newImage(t, wsbgen.Options{Seed: 9, CorruptVHDX: true})
	largest := 0
	for i, v := range b.Volumes {
		if v.Allocated > b.Volumes[largest].Allocated {
			largest = i
		}
	}
	for i, img := range imgs {
		err := CheckVHDX(img.f, img.size)
		if i != largest && err != nil {
			t.Errorf("image %d, not corrupted: %v", i, err)
		}
		if i == largest && (err == nil || !strings.Contains(err.Error(), "no valid header") || !strings.Contains(err.Error(), "checksum")) {
			t.Errorf("corrupted image: %v", err)
		}
	}
	_, imgs = newImage(t, wsbgen.Options{Seed: 9, Truncate: true})
	for i, img := range imgs {
		err := CheckVHDX(img.f, img.size)
		if i != largest && err != nil {
			t.Errorf("image %d, whole: %v", i, err)
		}
		if i == largest && (err == nil || !strings.Contains(err.Error(), "cut short")) {
			t.Errorf("cut image of %d bytes: %v", img.size, err)
		}
	}
}
