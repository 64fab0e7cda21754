package wsb

// Fuzz targets for what a Windows machine (or anyone with write access to
// its staging share) hands recall: BackupSpecs.xml and the VHDX files. No
// input may panic or allocate more than its size justifies; what decodes
// must make sense.

import (
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/recall-backup/recall/internal/fuzzcheck"
	"github.com/recall-backup/recall/internal/golden"
	"github.com/recall-backup/recall/internal/wsbgen"
)

func FuzzDecodeBackupSpecs(f *testing.F) {
	raw := golden.Load(f, "BackupSpecs-v1.xml.golden")
	f.Add(raw)
	doc, err := DecodeXML(raw)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(doc)
	f.Add(raw[:len(raw)/2])
	f.Add([]byte("<BackupSpecs><ComputerName>A</ComputerName><BackupTimeFileTime>18446744073709551615</BackupTimeFileTime></BackupSpecs>"))
	f.Add([]byte("\xfe\xff\x00<\x00B"))
	f.Add([]byte("<BackupSpecs>" + strings.Repeat("<a>", 100) + "</BackupSpecs>"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var v *Version
		var err error
		fuzzcheck.Bounded(t, "decodeSpecs", fuzzcheck.Linear(len(b), 64), func() { v, err = decodeSpecs(b) })
		if err != nil {
			return
		}
		if v.Computer == "" || v.Time.IsZero() || v.VersionID != v.Time.Format(versionLayout) || v.Time.Location().String() != "UTC" {
			t.Fatalf("decoded %+v", v)
		}
	})
}

// FuzzCheckVHDX feeds CheckVHDX a file described by patches over zeroes,
// so the fuzzer moves the structures of a real image (headers, region
// tables, metadata, BAT: kilobytes spread over megabytes) instead of
// mutating megabytes: the input is a size (u32, KiB) then patches of
// (u32 offset, u16 length, bytes).
func FuzzCheckVHDX(f *testing.F) {
	b := generate(f, f.TempDir(), wsbgen.Options{Seed: 10, Volumes: small[:1]})
	raw, err := readHead(b.Volumes[0].Path)
	if err != nil {
		f.Fatal(err)
	}
	// The packed image is the image, as far as CheckVHDX looks.
	if p := unpack(raw); CheckVHDX(p, p.size) != nil {
		f.Fatalf("packed image: %v", CheckVHDX(p, p.size))
	}
	f.Add(raw)
	f.Add(raw[:len(raw)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		p := unpack(in)
		var err error
		fuzzcheck.Bounded(t, "CheckVHDX", fuzzcheck.Linear(len(in), 64)+4<<20, func() { err = CheckVHDX(p, p.size) })
		_ = err
	})
}

// unpack reads the fuzz input of FuzzCheckVHDX; the file is at most
// 64 MiB, so a fuzz run reads little.
func unpack(in []byte) *patched {
	p := &patched{}
	if len(in) < 4 {
		return p
	}
	p.size = int64(binary.LittleEndian.Uint32(in)%(64<<10)) << 10
	in = in[4:]
	for len(in) >= 6 {
		off, n := int64(binary.LittleEndian.Uint32(in)), int(binary.LittleEndian.Uint16(in[4:]))
		in = in[6:]
		n = min(n, len(in))
		p.patches = append(p.patches, patch{off, in[:n]})
		in = in[n:]
	}
	return p
}

// readHead packs the structures of a VHDX file (the non-zero 4 KiB pages
// before its first payload block) as unpack reads them.
func readHead(path string) ([]byte, error) {
	img, err := openImage(path)
	if err != nil {
		return nil, err
	}
	defer img.f.Close()
	out := binary.LittleEndian.AppendUint32(nil, uint32(img.size>>10))
	page := make([]byte, 4096)
	for off := int64(0); off < 4<<20; off += 4096 {
		if _, err := img.f.ReadAt(page, off); err != nil && err != io.EOF {
			return nil, err
		}
		last := len(page)
		for last > 0 && page[last-1] == 0 {
			last--
		}
		if last == 0 {
			continue
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(off))
		out = binary.LittleEndian.AppendUint16(out, uint16(last))
		out = append(out, page[:last]...)
	}
	return out, nil
}
