package wsbgen

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/internal/golden"
	"github.com/recall-backup/recall/internal/testskip"
	"golang.org/x/sys/unix"
)

// small is a computer cheap enough to generate in every test: the three
// volumes of DefaultVolumes, C: with less data.
var small = []VolumeSpec{
	{FS: "FAT32", Size: 100 << 20, Allocated: 24 << 20, Critical: true},
	{Label: "Recovery", FS: "NTFS", Size: 512 << 20, Allocated: 96 << 20, Critical: true},
	{Letter: "C:", FS: "NTFS", Size: 4 << 30, Allocated: 256 << 20, Critical: true},
}

func needQemu(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		testskip.Skip(t, "qemu-img not found (make deps installs qemu-utils): %v", err)
	}
}

func qemuImg(args ...string) ([]byte, error) {
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("qemu-img %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// TestQemuAcceptsImages generates the default computer (C: of 8 GiB with
// 1.5 GiB used) and has qemu-img check, info and convert read every image:
// the VHDX structures are what [MS-VHDX] says, and the bytes qemu reads
// out are the bytes the generator meant.
func TestQemuAcceptsImages(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	b, err := Generate(dir, Options{Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Volumes) != len(DefaultVolumes) {
		t.Fatalf("%d volumes, want %d", len(b.Volumes), len(DefaultVolumes))
	}
	for _, v := range b.Volumes {
		t.Run(filepath.Base(v.Path), func(t *testing.T) {
			if _, err := qemuImg("check", "-f", "vhdx", v.Path); err != nil {
				t.Fatal(err)
			}
			out, err := qemuImg("info", "--output=json", "-f", "vhdx", v.Path)
			if err != nil {
				t.Fatal(err)
			}
			var info struct {
				Format      string `json:"format"`
				VirtualSize int64  `json:"virtual-size"`
				ActualSize  int64  `json:"actual-size"`
				ClusterSize int64  `json:"cluster-size"`
			}
			if err := json.Unmarshal(out, &info); err != nil {
				t.Fatalf("qemu-img info: %v: %s", err, out)
			}
			if info.Format != "vhdx" || info.VirtualSize != v.VirtualSize || info.ClusterSize != BlockSize {
				t.Errorf("qemu-img info: format %q virtual-size %d cluster-size %d, want vhdx %d %d", info.Format, info.VirtualSize, info.ClusterSize, v.VirtualSize, BlockSize)
			}
			// Sparse: the file takes the data plus the headers, metadata
			// and BAT (a few hundred KiB), never whole blocks of zeroes.
			if info.ActualSize < v.Allocated || info.ActualSize > v.Allocated+2<<20 {
				t.Errorf("actual-size %d, want the %d allocated bytes + at most 2 MiB", info.ActualSize, v.Allocated)
			}
			raw := filepath.Join(t.TempDir(), "raw")
			if _, err := qemuImg("convert", "-f", "vhdx", "-O", "raw", v.Path, raw); err != nil {
				t.Fatal(err)
			}
			if err := sameAsVolume(raw, v); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// sameAsVolume compares the raw image qemu-img wrote with the volume:
// the allocated extents byte for byte, and everything else zero. Reading
// all of a sparse raw file costs minutes of kernel time for gigabytes of
// holes, so the rest is read only where the file has data (SEEK_DATA).
func sameAsVolume(raw string, v Volume) error {
	f, err := os.Open(raw)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != v.VirtualSize {
		return fmt.Errorf("raw image of %d bytes, want %d", fi.Size(), v.VirtualSize)
	}
	r := v.Reader()
	got, want := make([]byte, 1<<20), make([]byte, 1<<20)
	compare := func(off, n int64, zero bool) error {
		for n > 0 {
			k := min(n, int64(len(got)))
			if _, err := f.ReadAt(got[:k], off); err != nil {
				return err
			}
			clear(want[:k])
			if !zero {
				if _, err := r.ReadAt(want[:k], off); err != nil {
					return err
				}
			}
			if !bytes.Equal(got[:k], want[:k]) {
				i := 0
				for got[i] == want[i] {
					i++
				}
				return fmt.Errorf("byte %d: %#x, want %#x", off+int64(i), got[i], want[i])
			}
			off, n = off+k, n-k
		}
		return nil
	}
	es := v.plan.extents
	for _, e := range es {
		if err := compare(e.off, e.len, false); err != nil {
			return err
		}
	}
	// Data outside the extents must be zeroes.
	for off := int64(0); off < fi.Size(); {
		d, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		} else if err != nil {
			return err
		}
		h, err := unix.Seek(int(f.Fd()), d, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		for at := d; at < h; {
			i := sort.Search(len(es), func(i int) bool { return es[i].end() > at })
			next := h
			if i < len(es) {
				next = min(h, max(es[i].off, at))
			}
			if err := compare(at, next-at, true); err != nil {
				return err
			}
			at = next
			if i < len(es) && at < h {
				at = min(h, es[i].end())
			}
		}
		off = h
	}
	return nil
}

// clusterHashes hashes each 4 KiB cluster of the volume within the
// extents (elsewhere both generations hold zeroes).
func clusterHashes(t *testing.T, v Volume, in []extent) map[int64][32]byte {
	t.Helper()
	r := v.Reader()
	hs := map[int64][32]byte{}
	buf := make([]byte, clusterSize)
	for _, e := range in {
		for off := e.off; off < e.end(); off += clusterSize {
			if _, err := r.ReadAt(buf, off); err != nil {
				t.Fatal(err)
			}
			hs[off/clusterSize] = sha256.Sum256(buf)
		}
	}
	return hs
}

// TestGenerationsChangeAboutTheRate measures, by a diff of the clusters'
// hashes, how much of a volume changed from one day's backup to the next.
func TestGenerationsChangeAboutTheRate(t *testing.T) {
	vol := []VolumeSpec{{Letter: "C:", FS: "NTFS", Size: 2 << 30, Allocated: 256 << 20}}
	for _, tc := range []struct {
		rate float64 // 0: the default
		from int
		want float64
	}{
		{0, 0, 0.04},
		{0, 2, 0.04},
		{0.10, 0, 0.10},
	} {
		t.Run(fmt.Sprintf("rate%g/gen%d", tc.rate, tc.from), func(t *testing.T) {
			var vs [2]Volume
			for i := range 2 {
				b, err := Generate(t.TempDir(), Options{Seed: 3, Generation: tc.from + i, ChangeRate: tc.rate, Volumes: vol})
				if err != nil {
					t.Fatal(err)
				}
				vs[i] = b.Volumes[0]
			}
			either := union(append(slices.Clone(vs[0].plan.extents), vs[1].plan.extents...))
			h0, h1 := clusterHashes(t, vs[0], either), clusterHashes(t, vs[1], either)
			changed := 0
			for c, h := range h0 {
				if h1[c] != h {
					changed++
				}
			}
			alloc := vs[0].Allocated
			got := float64(changed*clusterSize) / float64(alloc)
			if got < tc.want*0.85 || got > tc.want*1.15 {
				t.Errorf("changed %.4f of the allocated clusters, want about %g", got, tc.want)
			}
			// The writes come in bursts: the 1 MiB pieces of the volume
			// they touch (what a chunk-level dedup must store again) are
			// a few times the bytes changed, not all of them.
			touched, pieces := map[int64]bool{}, map[int64]bool{}
			for c, h := range h0 {
				pieces[c*clusterSize>>20] = true
				if h1[c] != h {
					touched[c*clusterSize>>20] = true
				}
			}
			share := float64(len(touched)) / float64(len(pieces))
			t.Logf("%d of %d allocated clusters changed (%.4f), in %d of %d MiB pieces (%.4f)", changed, alloc/clusterSize, got, len(touched), len(pieces), share)
			if share > 3*tc.want {
				t.Errorf("changes touch %.4f of the MiB pieces, want at most %g: too scattered for any dedup", share, 3*tc.want)
			}
		})
	}
}

// TestSharedImage: two computers deployed from one image share most of
// their data at generation 0 (each keeps 80% of the image: together about
// 64%); computers with no image in common share none.
func TestSharedImage(t *testing.T) {
	vol := []VolumeSpec{{Letter: "C:", FS: "NTFS", Size: 1 << 30, Allocated: 128 << 20}}
	for _, tc := range []struct {
		image    uint64
		min, max float64
	}{
		{0, 0, 0.001},
		{42, 0.58, 0.70},
	} {
		t.Run(fmt.Sprintf("image%d", tc.image), func(t *testing.T) {
			var vs [2]Volume
			for i := range vs {
				b, err := Generate(t.TempDir(), Options{Seed: uint64(100 + i), Image: tc.image, Volumes: vol})
				if err != nil {
					t.Fatal(err)
				}
				vs[i] = b.Volumes[0]
			}
			if vs[0].GUID == vs[1].GUID {
				t.Errorf("two computers with one volume GUID")
			}
			// Zeroed clusters match whatever the image: count them out.
			zero := sha256.Sum256(make([]byte, clusterSize))
			seen := map[[32]byte]bool{}
			for _, h := range clusterHashes(t, vs[0], vs[0].plan.extents) {
				seen[h] = true
			}
			var shared, n int
			for _, h := range clusterHashes(t, vs[1], vs[1].plan.extents) {
				if h == zero {
					continue
				}
				n++
				if seen[h] {
					shared++
				}
			}
			got := float64(shared) / float64(n)
			t.Logf("%d of %d clusters of the second computer are in the first", shared, n)
			if got < tc.min || got > tc.max {
				t.Errorf("%.3f of the clusters shared, want %g..%g", got, tc.min, tc.max)
			}
		})
	}
}

// TestDeterministic: the same options write the same bytes, so a test
// and a benchmark can regenerate what they compare against.
func TestDeterministic(t *testing.T) {
	o := Options{Seed: 11, Generation: 1, Volumes: small[:2]}
	var sums [2]map[string][32]byte
	for i := range sums {
		b, err := Generate(t.TempDir(), o)
		if err != nil {
			t.Fatal(err)
		}
		sums[i] = map[string][32]byte{}
		for _, f := range b.Files {
			data, err := os.ReadFile(filepath.Join(b.Root, f))
			if err != nil {
				t.Fatal(err)
			}
			sums[i][f] = sha256.Sum256(data)
		}
	}
	if len(sums[0]) < 15 {
		t.Fatalf("%d files, want the images, XML, catalog, media id", len(sums[0]))
	}
	for f, s := range sums[0] {
		if sums[1][f] != s {
			t.Errorf("%s: differs between two runs of the same options", f)
		}
	}
}

// TestSuccessiveBackups checks which ids WSB keeps across backups and
// which it makes anew, and that a share keeps one backup folder.
func TestSuccessiveBackups(t *testing.T) {
	dir := t.TempDir()
	var bs []*Backup
	var media [][]byte
	for g := range 3 {
		b, err := Generate(dir, Options{Seed: 5, Generation: g, Volumes: small[:2]})
		if err != nil {
			t.Fatal(err)
		}
		m, err := os.ReadFile(filepath.Join(b.Root, "MediaId"))
		if err != nil {
			t.Fatal(err)
		}
		bs, media = append(bs, b), append(media, m)
	}
	for g := 1; g < len(bs); g++ {
		a, b := bs[g-1], bs[g]
		if d := b.Time.Sub(a.Time); d < 23*time.Hour || d > 25*time.Hour {
			t.Errorf("generation %d is %v after the one before, want about a day", g, d)
		}
		if a.Dir == b.Dir || a.VersionID == b.VersionID || a.SnapshotID == b.SnapshotID {
			t.Errorf("generation %d: folder, version id or snapshot set kept: %q %q %s", g, b.Dir, b.VersionID, b.SnapshotID)
		}
		if !bytes.Equal(media[g], media[g-1]) {
			t.Errorf("generation %d: the MediaId changed", g)
		}
		for i := range b.Volumes {
			if a.Volumes[i].GUID != b.Volumes[i].GUID || filepath.Base(a.Volumes[i].Path) != filepath.Base(b.Volumes[i].Path) {
				t.Errorf("generation %d volume %d: the volume GUID or image name changed", g, i)
			}
			if a.Volumes[i].DiskID == b.Volumes[i].DiskID {
				t.Errorf("generation %d volume %d: the new image kept the old disk id", g, i)
			}
		}
		if _, err := os.Stat(a.Dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the previous backup folder %s is still there (stat: %v): a share keeps one", a.Dir, err)
		}
	}
	last := bs[len(bs)-1]
	if want := last.Time.Format("01/02/2006-15:04"); last.VersionID != want || !strings.HasSuffix(last.Dir, "Backup "+last.Time.Format("2006-01-02 150405")) {
		t.Errorf("version id %q, folder %q: want %q and Backup %s", last.VersionID, last.Dir, want, last.Time.Format("2006-01-02 150405"))
	}
}

type specsDoc struct {
	XMLName       xml.Name `xml:"BackupSpecs"`
	ComputerName  string
	BackupTime    string
	VersionID     string   `xml:"VersionIdentifier"`
	SnapshotSetID string   `xml:"SnapshotSetId"`
	CanRecover    []string `xml:"CanRecover>Item"`
	Volumes       []struct {
		Name       string `xml:",attr"`
		AccessPath string `xml:",attr"`
		TotalSize  int64  `xml:",attr"`
		UsedSize   int64  `xml:",attr"`
		ImageFile  string `xml:",attr"`
	} `xml:"FileSpecs>Volume"`
	Components []struct {
		WriterID string `xml:"WriterId,attr"`
	} `xml:"ComponentSpecs>Component"`
}

// TestXML parses every XML file and reads from BackupSpecs.xml what
// wbadmin get versions reports.
func TestXML(t *testing.T) {
	b, err := Generate(t.TempDir(), Options{Seed: 9, Names: true, Volumes: small[:2]})
	if err != nil {
		t.Fatal(err)
	}
	var xmls int
	for _, f := range b.Files {
		if filepath.Ext(f) != ".xml" {
			continue
		}
		xmls++
		raw, err := os.ReadFile(filepath.Join(b.Root, f))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := DecodeXML(raw)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		d := xml.NewDecoder(bytes.NewReader(doc))
		for {
			if _, err := d.Token(); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
	}
	// BackupSpecs, AdditionalFiles, Components, RegistryExcludes, writers.
	if want := 4 + len(writers); xmls != want {
		t.Errorf("%d XML files, want %d", xmls, want)
	}
	raw, err := os.ReadFile(filepath.Join(b.Dir, "BackupSpecs.xml"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := DecodeXML(raw)
	if err != nil {
		t.Fatal(err)
	}
	var s specsDoc
	if err := xml.Unmarshal(doc, &s); err != nil {
		t.Fatal(err)
	}
	bt, err := time.Parse(time.RFC3339, s.BackupTime)
	if err != nil || !bt.Equal(b.Time) {
		t.Errorf("BackupTime %q (%v), want %v", s.BackupTime, err, b.Time)
	}
	if s.ComputerName != b.Computer || s.VersionID != b.VersionID || s.SnapshotSetID != b.SnapshotID.Braced() {
		t.Errorf("computer %q version %q snapshot %q, want %q %q %q", s.ComputerName, s.VersionID, s.SnapshotSetID, b.Computer, b.VersionID, b.SnapshotID.Braced())
	}
	if strings.Join(s.CanRecover, ", ") != "Volume(s), File(s), Application(s), Bare Metal Recovery, System State" {
		t.Errorf("can recover %q", s.CanRecover)
	}
	if len(s.Volumes) != len(b.Volumes) || len(s.Components) != len(writers) {
		t.Fatalf("%d volumes and %d components, want %d and %d", len(s.Volumes), len(s.Components), len(b.Volumes), len(writers))
	}
	for i, v := range s.Volumes {
		w := b.Volumes[i]
		if v.Name != `\\?\Volume`+w.GUID.Braced()+`\` || v.TotalSize != w.VirtualSize || v.UsedSize != w.Allocated || v.ImageFile != filepath.Base(w.Path) {
			t.Errorf("volume %d: %+v, want %s %d %d %s", i, v, w.GUID, w.VirtualSize, w.Allocated, filepath.Base(w.Path))
		}
	}
}

// TestGoldenBackupSpecs pins BackupSpecs.xml: ingestion and bmr versions
// read it.
func TestGoldenBackupSpecs(t *testing.T) {
	b, err := Generate(t.TempDir(), Options{Seed: 1, Volumes: small[:2]})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(b.Dir, "BackupSpecs.xml"))
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "BackupSpecs.xml.golden", raw)
	cat, err := os.ReadFile(filepath.Join(b.Root, "Catalog", "GlobalCatalog"))
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "GlobalCatalog.golden", cat)
}

// TestGoldenVHDXHead pins the VHDX structures: the file identifier, the
// two headers, the two region tables, the metadata table and items and
// the BAT's first entries; every other byte before the payload is zero.
func TestGoldenVHDXHead(t *testing.T) {
	ids := vhdxIDs{
		fileWrite: mustGUID("11111111-2222-3333-4444-555555555555"),
		dataWrite: mustGUID("66666666-7777-8888-9999-aaaaaaaaaaaa"),
		disk:      mustGUID("bbbbbbbb-cccc-dddd-eeee-ffffffffffff"),
		sequence:  1,
	}
	// 8 GiB: 256 blocks, two chunks of 128, so the BAT holds a sector
	// bitmap entry after the 128th payload entry; present are block 0,
	// the last of the first chunk, the first of the second, the last.
	head, start := vhdxHead(8<<30, []int64{0, 127, 128, 255}, ids)
	if start != 4<<20 {
		t.Errorf("payload starts at %d, want 4 MiB", start)
	}
	ranges := [][2]int{
		{0, 64},                               // "vhdxfile" and the creator's start
		{64 << 10, 64<<10 + 80},               // header 1
		{128 << 10, 128<<10 + 80},             // header 2
		{192 << 10, 192<<10 + 80},             // region table 1
		{256 << 10, 256<<10 + 80},             // region table 2
		{2 << 20, 2<<20 + 32 + 5*32},          // metadata table
		{2<<20 + 64<<10, 2<<20 + 64<<10 + 40}, // metadata items
		{3 << 20, 3<<20 + 8*260},              // BAT: 256 payload + 2 bitmap entries and beyond
	}
	var pinned []byte
	rest := bytes.Clone(head)
	for _, r := range ranges {
		pinned = append(pinned, head[r[0]:r[1]]...)
		clear(rest[r[0]:r[1]])
	}
	// The creator string runs past the first range: clear it before
	// checking that nothing else is written.
	clear(rest[8 : 8+512])
	golden.Check(t, "vhdx-head.golden", pinned)
	if i := bytes.IndexFunc(rest, func(r rune) bool { return r != 0 }); i >= 0 {
		t.Errorf("unpinned non-zero byte at %d", i)
	}
}

// TestFaults: the truncated transfer and the corrupt image, as the
// ingestion's tests will meet them.
func TestFaults(t *testing.T) {
	needQemu(t)
	t.Run("truncate", func(t *testing.T) {
		dir := t.TempDir()
		full, err := Generate(dir, Options{Seed: 2, Volumes: small[:2]})
		if err != nil {
			t.Fatal(err)
		}
		fullSize := fileSize(t, full.Volumes[1].Path)
		b, err := Generate(dir, Options{Seed: 2, Generation: 1, Volumes: small[:2], Truncate: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(b.Dir, "BackupSpecs.xml")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("BackupSpecs.xml written by a cut transfer (stat: %v)", err)
		}
		if len(b.Missing) != 1 || !strings.HasSuffix(b.Missing[0], "BackupSpecs.xml") {
			t.Errorf("missing %q, want BackupSpecs.xml (the catalog of the backup before stays)", b.Missing)
		}
		// The recovery partition holds more data than the EFI one: it is cut.
		if got := fileSize(t, b.Volumes[1].Path); got > fullSize/2+BlockSize || got < fullSize/4 {
			t.Errorf("cut image is %d bytes, want about half of %d", got, fullSize)
		}
		if out, err := qemuImg("check", "-f", "vhdx", b.Volumes[1].Path); err == nil || !strings.Contains(string(out), "truncated") {
			t.Errorf("qemu-img check of the cut image: %v: %s", err, out)
		}
		fresh, err := Generate(t.TempDir(), Options{Seed: 2, Volumes: small[:2], Truncate: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(fresh.Missing) != 3 {
			t.Errorf("missing %q on a first cut transfer, want BackupSpecs.xml and both catalogs", fresh.Missing)
		}
	})
	t.Run("corrupt", func(t *testing.T) {
		b, err := Generate(t.TempDir(), Options{Seed: 2, Volumes: small[:2], CorruptVHDX: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := qemuImg("check", "-f", "vhdx", b.Volumes[1].Path); err == nil {
			t.Errorf("qemu-img check accepts the corrupt image")
		}
		if _, err := qemuImg("check", "-f", "vhdx", b.Volumes[0].Path); err != nil {
			t.Errorf("the other image: %v", err)
		}
	})
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestNames: a computer name and a file name with spaces, braces and
// non-ASCII reach the tree and the XML as they are.
func TestNames(t *testing.T) {
	b, err := Generate(t.TempDir(), Options{Seed: 4, Names: true, Volumes: small[:1]})
	if err != nil {
		t.Fatal(err)
	}
	if b.Computer != "SRV Ü{01}" || filepath.Base(b.Root) != b.Computer {
		t.Errorf("computer %q, folder %q", b.Computer, filepath.Base(b.Root))
	}
	found := false
	for _, f := range b.Files {
		if strings.ContainsAny(f, "{") && strings.Contains(f, " ") && strings.ContainsFunc(f, func(r rune) bool { return r > 127 }) {
			found = true
		}
	}
	if !found {
		t.Errorf("no file name with a space, a brace and non-ASCII in %q", b.Files)
	}
}

func TestFiletime(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want uint64
	}{
		{time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{time.Unix(0, 0), 116444736000000000},
		{time.Date(2026, 11, 2, 21, 0, 41, 500, time.UTC), 134381268410000005},
	} {
		if got := filetime(tc.t); got != tc.want {
			t.Errorf("filetime(%v) = %d, want %d", tc.t, got, tc.want)
		}
	}
}

func TestOptionsRefused(t *testing.T) {
	for _, o := range []Options{
		{ChangeRate: -1},
		{ChangeRate: 0.9},
		{Generation: -1},
		{Volumes: []VolumeSpec{{FS: "NTFS", Size: 100<<20 + 1, Allocated: 1 << 20}}},
		{Volumes: []VolumeSpec{{FS: "NTFS", Size: 100 << 20, Allocated: 99 << 20}}},
		{Volumes: []VolumeSpec{{FS: "ext4", Size: 100 << 20, Allocated: 10 << 20}}},
		{Volumes: []VolumeSpec{{FS: "NTFS", Size: 65 << 40, Allocated: 10 << 20}}},
	} {
		dir := t.TempDir()
		if _, err := Generate(dir, o); err == nil {
			t.Errorf("%+v: accepted", o)
		}
	}
}

// BenchmarkGenerate writes a 4 GiB volume with 1 GiB of data; MB/s is of
// the data written.
func BenchmarkGenerate(b *testing.B) {
	vol := []VolumeSpec{{Letter: "C:", FS: "NTFS", Size: 4 << 30, Allocated: 1 << 30}}
	b.SetBytes(1 << 30)
	for i := 0; b.Loop(); i++ {
		dir := b.TempDir()
		if _, err := Generate(dir, Options{Seed: uint64(i), Volumes: vol}); err != nil {
			b.Fatal(err)
		}
	}
}
