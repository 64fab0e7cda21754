package wsb

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/recall-backup/recall/internal/golden"
	"github.com/recall-backup/recall/internal/wsbgen"
)

// small is a computer cheap to generate: an EFI partition and C:, a few
// MiB of data each.
var small = []wsbgen.VolumeSpec{
	{FS: "FAT32", Size: 16 << 20, Allocated: 2 << 20, Critical: true},
	{Letter: "C:", Label: "System", FS: "NTFS", Size: 64 << 20, Allocated: 12 << 20, Critical: true},
}

func generate(t testing.TB, dir string, o wsbgen.Options) *wsbgen.Backup {
	t.Helper()
	if o.Volumes == nil {
		o.Volumes = small
	}
	b, err := wsbgen.Generate(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkVersion compares what ReadVersion read with what the generator
// wrote.
func checkVersion(t *testing.T, v *Version, b *wsbgen.Backup) {
	t.Helper()
	if v.Computer != b.Computer || v.Backup != filepath.Base(b.Dir) || !v.Time.Equal(b.Time) ||
		v.VersionID != b.VersionID || v.SnapshotID != b.SnapshotID.Braced() || v.Target != `\\recall\`+b.Computer {
		t.Errorf("version %+v, want computer %q, backup %q, time %v, id %q, snapshot %s", v, b.Computer, filepath.Base(b.Dir), b.Time, b.VersionID, b.SnapshotID.Braced())
	}
	if !slices.Equal(v.CanRecover, b.CanRecover) {
		t.Errorf("can recover %q, want %q", v.CanRecover, b.CanRecover)
	}
	if len(v.Volumes) != len(b.Volumes) {
		t.Fatalf("%d volumes, want %d", len(v.Volumes), len(b.Volumes))
	}
	for i, w := range b.Volumes {
		got := v.Volumes[i]
		want := Volume{Name: `\\?\Volume` + w.GUID.Braced() + `\`, AccessPath: w.Letter, Label: w.Label, FileSystem: w.FS,
			ImageFile: filepath.Base(w.Path), TotalSize: w.VirtualSize, UsedSize: w.Allocated, Critical: true}
		if got != want {
			t.Errorf("volume %d: %+v, want %+v", i, got, want)
		}
	}
}

func TestInspectComplete(t *testing.T) {
	dir := t.TempDir()
	b := generate(t, dir, wsbgen.Options{Seed: 1})
	fsys := os.DirFS(dir)
	// Windows names compare without case.
	for _, name := range []string{"SRV01", "srv01"} {
		im, err := Inspect(fsys, name)
		if err != nil {
			t.Fatal(err)
		}
		if !im.Complete() || im.Err() != nil || len(im.Missing) != 0 {
			t.Fatalf("%s: complete %v, missing %q, err %v", name, im.Complete(), im.Missing, im.Err())
		}
		if im.Computer != "SRV01" || im.Backup != filepath.Base(b.Dir) || !im.Time.Equal(b.Time.Truncate(time.Second)) || len(im.Others) != 0 {
			t.Errorf("%s: computer %q, backup %q at %v, others %q; want SRV01, %q at %v", name, im.Computer, im.Backup, im.Time, im.Others, filepath.Base(b.Dir), b.Time)
		}
		var want []File
		var size int64
		for _, v := range b.Volumes {
			fi, err := os.Stat(v.Path)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, File{Name: filepath.Base(b.Dir) + "/" + filepath.Base(v.Path), Size: fi.Size()})
			size += fi.Size()
		}
		slices.SortFunc(want, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
		if !slices.Equal(im.Images, want) || im.Size != size {
			t.Errorf("%s: images %v of %d bytes, want %v of %d", name, im.Images, im.Size, want, size)
		}
		v, err := ReadVersion(fsys, name)
		if err != nil {
			t.Fatal(err)
		}
		checkVersion(t, v, b)
	}
}

// TestLastWrite: the newest modification anywhere under
// WindowsImageBackup, another computer's folder too.
func TestLastWrite(t *testing.T) {
	dir := t.TempDir()
	b := generate(t, dir, wsbgen.Options{Seed: 1})
	late := time.Now().Add(time.Hour).Truncate(time.Second)
	stray := filepath.Join(dir, Dir, "other.txt")
	if err := os.WriteFile(stray, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := filepath.WalkDir(filepath.Join(dir, Dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, old, old)
	}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{b.Volumes[0].Path, stray} {
		if err := os.Chtimes(p, late, late); err != nil {
			t.Fatal(err)
		}
		im, err := Inspect(os.DirFS(dir), "SRV01")
		if err != nil {
			t.Fatal(err)
		}
		if !im.LastWrite.Equal(late) {
			t.Errorf("after touching %s: last write %v, want %v", p, im.LastWrite, late)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		late = late.Add(time.Minute)
	}
}

// TestInspectTruncated: a transfer cut in the middle lacks what the
// generator says it lacks.
func TestInspectTruncated(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first bool // the first backup to this share: no catalog yet
	}{{"first backup", true}, {"after a complete one", false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := wsbgen.Options{Seed: 2, Truncate: true}
			if !tc.first {
				generate(t, dir, wsbgen.Options{Seed: 2})
				o.Generation = 1
			}
			b := generate(t, dir, o)
			im, err := Inspect(os.DirFS(dir), "SRV01")
			if err != nil {
				t.Fatal(err)
			}
			// The generator names BackupGlobalCatalog too; the rule of
			// completeness does not ask for that copy of GlobalCatalog.
			want := slices.DeleteFunc(slices.Clone(b.Missing), func(m string) bool { return m == "Catalog/BackupGlobalCatalog" })
			if len(want) == 0 || !slices.Equal(im.Missing, want) || im.Complete() {
				t.Errorf("missing %q, want %q", im.Missing, want)
			}
			err = im.Err()
			if !errors.Is(err, ErrIncomplete) || errors.Is(err, ErrNoImage) {
				t.Fatalf("err %v: want ErrIncomplete only", err)
			}
			if msg := "image of SRV01 is incomplete: missing " + strings.Join(want, ", "); err.Error() != msg {
				t.Errorf("err %q, want %q", err, msg)
			}
			if _, err := ReadVersion(os.DirFS(dir), "SRV01"); !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "BackupSpecs.xml") {
				t.Errorf("ReadVersion of a cut transfer: %v", err)
			}
		})
	}
}

// TestInspectMissingParts: each part of a complete backup, taken away,
// is named in Missing, in the fixed order.
func TestInspectMissingParts(t *testing.T) {
	dir := t.TempDir()
	b := generate(t, dir, wsbgen.Options{Seed: 3})
	bk := filepath.Base(b.Dir)
	full := os.DirFS(dir)
	for _, tc := range []struct {
		drop func(name string) bool // a slash path below the computer's folder
		want []string
	}{
		{func(n string) bool { return n == bk+"/BackupSpecs.xml" }, []string{bk + "/BackupSpecs.xml"}},
		{func(n string) bool { return strings.HasSuffix(n, "_Components.xml") }, []string{bk + "/*_Components.xml"}},
		{func(n string) bool { return strings.Contains(n, "_Writer") }, []string{bk + "/*_Writer*.xml"}},
		{func(n string) bool { return strings.HasSuffix(n, ".vhdx") }, []string{bk + "/*.vhdx"}},
		{func(n string) bool { return n == "MediaId" || strings.HasPrefix(n, "Catalog/") }, []string{"Catalog/GlobalCatalog", "MediaId"}},
		{func(n string) bool { return strings.HasPrefix(n, bk) }, []string{unnamedBackup}},
		{func(n string) bool { return strings.HasPrefix(n, bk) && !strings.HasSuffix(n, ".xml") }, []string{bk + "/*.vhdx"}},
		// One volume's image not there (yet) while another's is: the
		// volume BackupSpecs.xml names is missing.
		{func(n string) bool { return n == bk+"/"+filepath.Base(b.Volumes[1].Path) }, []string{bk + "/" + filepath.Base(b.Volumes[1].Path)}},
		{func(n string) bool { return n == bk+"/"+filepath.Base(b.Volumes[0].Path) }, []string{bk + "/" + filepath.Base(b.Volumes[0].Path)}},
	} {
		m := fstest.MapFS{}
		root := Dir + "/SRV01/"
		if err := fs.WalkDir(full, root[:len(root)-1], func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || tc.drop(strings.TrimPrefix(p, root)) {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			data := make([]byte, fi.Size()%4096)
			if strings.HasSuffix(p, ".xml") {
				data, err = fs.ReadFile(full, p) // BackupSpecs.xml is read
			}
			m[p] = &fstest.MapFile{Data: data, ModTime: fi.ModTime()}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if tc.want[0] == unnamedBackup {
			m[root+"Backup 2026-11-31 250000/BackupSpecs.xml"] = &fstest.MapFile{} // not a date: not a backup
		}
		im, err := Inspect(m, "SRV01")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(im.Missing, tc.want) {
			t.Errorf("missing %q, want %q", im.Missing, tc.want)
		}
	}
}

// TestNames: a computer name with a space, braces and non-ASCII.
func TestNames(t *testing.T) {
	dir := t.TempDir()
	b := generate(t, dir, wsbgen.Options{Seed: 4, Names: true})
	if b.Computer != "SRV Ü{01}" {
		t.Fatalf("generator's computer %q", b.Computer)
	}
	for _, name := range []string{b.Computer, "srv ü{01}"} {
		im, err := Inspect(os.DirFS(dir), name)
		if err != nil {
			t.Fatal(err)
		}
		if !im.Complete() || im.Computer != b.Computer {
			t.Errorf("%q: computer %q, missing %q", name, im.Computer, im.Missing)
		}
		v, err := ReadVersion(os.DirFS(dir), name)
		if err != nil {
			t.Fatal(err)
		}
		checkVersion(t, v, b)
	}
}

// TestOthers: another computer writing into this one's share shows.
func TestOthers(t *testing.T) {
	dir := t.TempDir()
	generate(t, dir, wsbgen.Options{Seed: 5, Computer: "SRV01"})
	generate(t, dir, wsbgen.Options{Seed: 6, Computer: "SRV02", Volumes: small[:1]})
	if err := os.WriteFile(filepath.Join(dir, Dir, "desktop.ini"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	im, err := Inspect(os.DirFS(dir), "SRV01")
	if err != nil {
		t.Fatal(err)
	}
	// desktop.ini (Explorer's, or anyone's stray file) is no computer.
	if !im.Complete() || !slices.Equal(im.Others, []string{"SRV02"}) {
		t.Errorf("complete %v, others %q", im.Complete(), im.Others)
	}
	cs, err := Computers(os.DirFS(dir))
	if err != nil || !slices.Equal(cs, []string{"SRV01", "SRV02"}) {
		t.Errorf("computers %q, %v", cs, err)
	}
	im, err = Inspect(os.DirFS(dir), "SRV03")
	if err != nil {
		t.Fatal(err)
	}
	if im.Complete() || !slices.Equal(im.Others, []string{"SRV01", "SRV02"}) || !errors.Is(im.Err(), ErrNoImage) ||
		!strings.HasSuffix(im.Err().Error(), "(WindowsImageBackup holds SRV01, SRV02)") {
		t.Errorf("SRV03: complete %v, others %q, err %v", im.Complete(), im.Others, im.Err())
	}
}

// TestEmpty: a share nothing was written to, or only the top folder.
func TestEmpty(t *testing.T) {
	dir := t.TempDir()
	for _, step := range []string{"empty", "WindowsImageBackup only", "computer folder only"} {
		switch step {
		case "WindowsImageBackup only":
			os.Mkdir(filepath.Join(dir, Dir), 0o755)
		case "computer folder only":
			os.Mkdir(filepath.Join(dir, Dir, "SRV01"), 0o755)
		}
		im, err := Inspect(os.DirFS(dir), "SRV01")
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		want := []string{unnamedBackup, "Catalog/GlobalCatalog", "MediaId"}
		if im.Complete() || !slices.Equal(im.Missing, want) || im.Backup != "" || im.Images != nil {
			t.Errorf("%s: %+v", step, im)
		}
		err = im.Err()
		if !errors.Is(err, ErrIncomplete) || !errors.Is(err, ErrNoImage) || err.Error() != "image of SRV01 is incomplete: missing "+strings.Join(want, ", ") {
			t.Errorf("%s: err %v", step, err)
		}
		if _, err := ReadVersion(os.DirFS(dir), "SRV01"); !errors.Is(err, ErrNoImage) {
			t.Errorf("%s: ReadVersion: %v, want ErrNoImage", step, err)
		}
		cs, err := Computers(os.DirFS(dir))
		if err != nil || len(cs) != map[bool]int{true: 1}[step == "computer folder only"] {
			t.Errorf("%s: computers %q, %v", step, cs, err)
		}
	}
}

// TestNewestBackupWins: a backup folder left from an earlier run beside
// the newer one (a run that broke off while replacing it).
func TestNewestBackupWins(t *testing.T) {
	oldDir, dir := t.TempDir(), t.TempDir()
	old := generate(t, oldDir, wsbgen.Options{Seed: 7})
	b := generate(t, dir, wsbgen.Options{Seed: 7, Generation: 1})
	if err := os.Rename(old.Dir, filepath.Join(b.Root, filepath.Base(old.Dir))); err != nil {
		t.Fatal(err)
	}
	// A name no backup has is not one, however late it sorts.
	if err := os.Mkdir(filepath.Join(b.Root, "Backup 9999-99-99 999999"), 0o755); err != nil {
		t.Fatal(err)
	}
	im, err := Inspect(os.DirFS(dir), "SRV01")
	if err != nil {
		t.Fatal(err)
	}
	if im.Backup != filepath.Base(b.Dir) || !im.Complete() || len(im.Images) != len(b.Volumes) {
		t.Errorf("backup %q (missing %q, %d images), want %q", im.Backup, im.Missing, len(im.Images), filepath.Base(b.Dir))
	}
	v, err := ReadVersion(os.DirFS(dir), "SRV01")
	if err != nil {
		t.Fatal(err)
	}
	checkVersion(t, v, b)
}

// TestGoldenVersion pins what ReadVersion makes of the generator's
// BackupSpecs.xml (its golden copy).
func TestGoldenVersion(t *testing.T) {
	raw := golden.Load(t, "BackupSpecs-v1.xml.golden")
	m := fstest.MapFS{Dir + "/SRV01/Backup 2026-11-02 210312/BackupSpecs.xml": {Data: raw}}
	v, err := ReadVersion(m, "SRV01")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "version-v1.json.golden", append(b, '\n'))
}

func TestDecodeXML(t *testing.T) {
	doc := `<a x="Ü{1}">€</a>`
	utf16 := func(bom []byte, big bool) []byte {
		out := bom
		for _, r := range `<?xml version="1.0" encoding="UTF-16"?>` + "\r\n" + doc {
			if r > 0xffff {
				t.Fatal("test text outside the BMP")
			}
			if big {
				out = append(out, byte(r>>8), byte(r))
			} else {
				out = append(out, byte(r), byte(r>>8))
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string // "" for an error
	}{
		{"UTF-16LE", utf16([]byte{0xff, 0xfe}, false), doc},
		{"UTF-16BE", utf16([]byte{0xfe, 0xff}, true), doc},
		{"UTF-8 with BOM", append([]byte{0xef, 0xbb, 0xbf}, `<?xml version="1.0"?>`+doc...), doc},
		{"UTF-8", []byte(doc), doc},
		{"UTF-16 cut in a character", utf16([]byte{0xff, 0xfe}, false)[:11], ""},
		{"Latin-1", []byte("<a>\xdc</a>"), ""},
		{"declaration not closed", []byte("<?xml version='1.0' <a/>"), ""},
	} {
		got, err := DecodeXML(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%s: %q, want an error", tc.name, got)
		case tc.want != "" && (err != nil || strings.TrimSpace(string(got)) != tc.want):
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// TestReadVersionRefuses: hostile or broken BackupSpecs.xml gives an
// error naming the file and what is wrong, never a panic.
func TestReadVersionRefuses(t *testing.T) {
	good := string(mustDecode(t, golden.Load(t, "BackupSpecs-v1.xml.golden")))
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"huge", make([]byte, MaxSpecsSize+1), "larger than"},
		{"truncated", []byte(good[:len(good)/2]), "not a BackupSpecs document"},
		{"empty", nil, "not a BackupSpecs document"},
		{"wrong encoding", []byte("<BackupSpecs><ComputerName>\xe9</ComputerName></BackupSpecs>"), "neither UTF-16"},
		{"deep nesting", []byte("<BackupSpecs>" + strings.Repeat("<x>", 200000) + strings.Repeat("</x>", 200000) + "</BackupSpecs>"), "nested more than 64 deep"},
		{"another document", []byte("<Components/>"), "expected element type <BackupSpecs>"},
		{"no computer", []byte(strings.Replace(good, "<ComputerName>SRV01</ComputerName>", "", 1)), "no ComputerName"},
		{"no time", []byte(strings.NewReplacer("<BackupTime>", "<X>", "</BackupTime>", "</X>", "<BackupTimeFileTime>", "<Y>", "</BackupTimeFileTime>", "</Y>").Replace(good)), "no BackupTime or BackupTimeFileTime"},
		{"bad FILETIME", []byte(strings.NewReplacer("<BackupTime>", "<X>", "</BackupTime>", "</X>", "<BackupTimeFileTime>", "<BackupTimeFileTime>9", "<VersionIdentifier>", "<V>", "</VersionIdentifier>", "</V>").Replace(good)), "past the year 9999"},
		{"bad time", []byte(strings.Replace(good, "<BackupTime>2026", "<BackupTime>26", 1)), "want RFC 3339"},
		{"version disagrees", []byte(strings.Replace(good, "<VersionIdentifier>11/02", "<VersionIdentifier>11/03", 1)), "disagrees"},
		{"bad size", []byte(strings.Replace(good, `TotalSize="`, `TotalSize="-`, 1)), "TotalSize"},
	} {
		m := fstest.MapFS{Dir + "/SRV01/Backup 2026-11-02 210312/BackupSpecs.xml": {Data: tc.data}}
		_, err := ReadVersion(m, "SRV01")
		if err == nil || !strings.Contains(err.Error(), "Backup 2026-11-02 210312/BackupSpecs.xml") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming the file and %q", tc.name, err, tc.want)
		}
	}
	// Extra elements and attributes are someone else's business, and a
	// FILETIME stands in for the RFC 3339 time.
	tolerant := strings.Replace(good, "<BackupType>Full</BackupType>", `<BackupType Kind="x">Full<Nested><Deeper/></Nested></BackupType><Unknown/>`, 1)
	tolerant = strings.Replace(strings.Replace(tolerant, "<BackupTime>", "<Was>", 1), "</BackupTime>", "</Was>", 1)
	v, err := decodeSpecs([]byte(tolerant))
	if err != nil || v.Computer != "SRV01" || v.VersionID == "" || v.Time.IsZero() {
		t.Errorf("tolerant: %+v, %v", v, err)
	}
}

func mustDecode(t *testing.T, b []byte) []byte {
	t.Helper()
	d, err := DecodeXML(b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestBackupSpecsUnreadable: a BackupSpecs.xml that does not decode (cut
// short) cannot say which images the backup has: incomplete.
func TestBackupSpecsUnreadable(t *testing.T) {
	dir := t.TempDir()
	b := generate(t, dir, wsbgen.Options{Seed: 3})
	specs := filepath.Join(b.Dir, "BackupSpecs.xml")
	raw, err := os.ReadFile(specs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(specs, raw[:len(raw)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	im, err := Inspect(os.DirFS(dir), "SRV01")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Base(b.Dir) + "/BackupSpecs.xml (unreadable)"}
	if !slices.Equal(im.Missing, want) || !errors.Is(im.Err(), ErrIncomplete) {
		t.Errorf("missing %q, err %v; want %q", im.Missing, im.Err(), want)
	}
}

// TestPrint: the print of a computer's folder changes with any file's
// name, size, write or change time under it, and with nothing else.
func TestPrint(t *testing.T) {
	dir := t.TempDir()
	b := generate(t, dir, wsbgen.Options{Seed: 8})
	generate(t, dir, wsbgen.Options{Seed: 9, Computer: "SRV02", Volumes: small[:1]})
	look := func() string {
		t.Helper()
		im, err := Inspect(os.DirFS(dir), "SRV01")
		if err != nil {
			t.Fatal(err)
		}
		if len(im.Print) != 16 {
			t.Fatalf("print %q, want 16 hex digits", im.Print)
		}
		return im.Print
	}
	prints := map[string]string{"first": look()}
	if again := look(); again != prints["first"] {
		t.Fatalf("two looks at an unchanged tree: %s, %s", prints["first"], again)
	}
	vhdx := b.Volumes[0].Path
	fi, err := os.Stat(vhdx)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name    string
		do      func() error
		changes bool
	}{
		{"another computer's file touched", func() error {
			late := time.Now().Add(time.Hour)
			return os.Chtimes(filepath.Join(dir, Dir, "SRV02", "MediaId"), late, late)
		}, false},
		{"write time", func() error { return os.Chtimes(vhdx, fi.ModTime().Add(time.Second), fi.ModTime().Add(time.Second)) }, true},
		{"size", func() error { return os.Truncate(vhdx, fi.Size()+4096) }, true},
		{"file added", func() error { return os.WriteFile(filepath.Join(b.Root, "Catalog", "new"), nil, 0o644) }, true},
		{"file renamed", func() error {
			return os.Rename(filepath.Join(b.Root, "Catalog", "new"), filepath.Join(b.Root, "Catalog", "new2"))
		}, true},
		{"content rewritten, write time set back", func() error {
			// An SMB client can set a write time back; the change time
			// it cannot.
			cur, err := os.Stat(vhdx)
			if err != nil {
				return err
			}
			fh, err := os.OpenFile(vhdx, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			if _, err := fh.WriteAt([]byte("rewritten"), 1<<20); err != nil {
				fh.Close()
				return err
			}
			if err := fh.Close(); err != nil {
				return err
			}
			return os.Chtimes(vhdx, cur.ModTime(), cur.ModTime())
		}, true},
		{"backup folder renamed", func() error { return os.Rename(b.Dir, b.Dir[:len(b.Dir)-1]+"9") }, true},
	} {
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
		p := look()
		for name, q := range prints {
			if step.changes && p == q {
				t.Errorf("%s: print %s, as after %s", step.name, p, name)
			}
		}
		if !step.changes && len(prints) == 1 && p != prints["first"] {
			t.Errorf("%s: print changed", step.name)
		}
		prints[step.name] = p
	}
}

// TestPrintStrayBackup: a Backup folder beside the newest is not in the
// print, as it is not in the point: removing it, or writing into it, is
// not a new image.
func TestPrintStrayBackup(t *testing.T) {
	dir := t.TempDir()
	b := generate(t, dir, wsbgen.Options{Seed: 8, Generation: 1})
	look := func() *Image {
		t.Helper()
		im, err := Inspect(os.DirFS(dir), "SRV01")
		if err != nil {
			t.Fatal(err)
		}
		return im
	}
	clean := look()
	old, err := wsbgen.Generate(t.TempDir(), wsbgen.Options{Seed: 8, Volumes: small[:1]})
	if err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(b.Root, filepath.Base(old.Dir))
	if err := os.Rename(old.Dir, stray); err != nil {
		t.Fatal(err)
	}
	with := look()
	if with.Backup != clean.Backup || with.Print != clean.Print {
		t.Errorf("with a stray %s: backup %s, print %s; want %s, %s", filepath.Base(stray), with.Backup, with.Print, clean.Backup, clean.Print)
	}
	if err := os.RemoveAll(stray); err != nil {
		t.Fatal(err)
	}
	if after := look(); after.Print != clean.Print {
		t.Errorf("after the stray folder was removed: print %s, want %s", after.Print, clean.Print)
	}
}

// The version reader finds BackupSpecs.xml whatever the case of its name,
// as the completeness check does (Windows names compare without case):
// a lower-case copy made a point with no version identifier.
func TestReadVersionAnyCase(t *testing.T) {
	good := mustDecode(t, golden.Load(t, "BackupSpecs-v1.xml.golden"))
	m := fstest.MapFS{Dir + "/SRV01/Backup 2026-11-02 210312/backupspecs.xml": {Data: good}}
	v, err := ReadVersion(m, "SRV01")
	if err != nil || v.VersionID == "" || v.Computer != "SRV01" {
		t.Fatalf("lower-case backupspecs.xml: %+v, %v", v, err)
	}
}

// An empty GlobalCatalog and a MediaId cut short (what a share that
// filled up leaves) make an image incomplete: before, such an image
// became a point with exit 0, which no recovery could read.
func TestInspectEmptyCatalogShortMediaID(t *testing.T) {
	dir := t.TempDir()
	generate(t, dir, wsbgen.Options{Seed: 4})
	root := filepath.Join(dir, Dir, "SRV01")
	if err := os.WriteFile(filepath.Join(root, "Catalog", "GlobalCatalog"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "MediaId"), []byte{1, 2, 3}, 0o644); err != nil {
		t.Fatal(err)
	}
	im, err := Inspect(os.DirFS(dir), "SRV01")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Catalog/GlobalCatalog (empty)", "MediaId (cut short: 3 bytes)"}
	if !slices.Equal(im.Missing, want) || !errors.Is(im.Err(), ErrIncomplete) {
		t.Errorf("missing %q (%v), want %q", im.Missing, im.Err(), want)
	}
}
