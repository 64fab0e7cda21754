package engine

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine/wsb"
	"github.com/recall-backup/recall/internal/wsbgen"
)

// writeTree writes files (slash paths relative to dir; a value of nil is
// a directory) and returns the contents of the regular files.
func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if data == nil {
			if err := os.MkdirAll(p, 0o750); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// countingStore counts the data chunks loaded and fails the ones in bad.
type countingStore struct {
	*chunkstore.Store
	mu    sync.Mutex
	loads map[chunkstore.ID]int
	bad   map[chunkstore.ID]bool
}

func (s *countingStore) LoadBlob(id chunkstore.ID, dst []byte) ([]byte, error) {
	s.mu.Lock()
	s.loads[id]++
	bad := s.bad[id]
	s.mu.Unlock()
	if bad {
		return nil, chunkstore.ErrCorrupt
	}
	return s.Store.LoadBlob(id, dst)
}

func TestPointFS(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	big := randomBytes(1, 6<<20) // several chunks
	files := map[string][]byte{
		"a.txt":              []byte("hello\n"),
		"empty":              {},
		"dir/big.bin":        big,
		"dir/sub/deeper/f":   []byte("deep"),
		"dir/zeros":          make([]byte, 3<<20), // stored as holes
		"emptydir":           nil,
		"dir/sub/other.txt":  bytes.Repeat([]byte("0123456789"), 1000),
		"WindowsImageBackup": nil,
	}
	writeTree(t, src, files)
	if err := os.Symlink("dir/sub/deeper/f", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../..", filepath.Join(src, "dir/sub/up")); err != nil {
		t.Fatal(err)
	}
	p, err := ts.backup(BackupOptions{Path: src, Source: "fs"})
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: ts.st, loads: map[chunkstore.ID]int{}, bad: map[chunkstore.ID]bool{}}
	fsys := NewReader(cs).PointFS(p)

	if err := fstest.TestFS(fsys, "a.txt", "empty", "dir/big.bin", "dir/sub/deeper/f", "dir/zeros", "emptydir", "dir/sub/other.txt", "link", "dir/sub/up"); err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		if want == nil {
			continue
		}
		got, err := fs.ReadFile(fsys, name)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v; want %d bytes", name, len(got), err, len(want))
		}
	}
	// Links inside the point are followed; Lstat and ReadLink see the link.
	if b, err := fs.ReadFile(fsys, "link"); err != nil || string(b) != "deep" {
		t.Errorf("through link: %q, %v", b, err)
	}
	if b, err := fs.ReadFile(fsys, "dir/sub/up/dir/sub/deeper/f"); err != nil || string(b) != "deep" {
		t.Errorf("through a link to ../..: %q, %v", b, err)
	}
	if fi, err := fsys.(fs.ReadLinkFS).Lstat("link"); err != nil || fi.Mode().Type() != fs.ModeSymlink {
		t.Errorf("lstat link: %v, %v", fi, err)
	}
	if target, err := fs.ReadLink(fsys, "link"); err != nil || target != "dir/sub/deeper/f" {
		t.Errorf("readlink: %q, %v", target, err)
	}
	fi, err := fs.Stat(fsys, "dir/big.bin")
	if err != nil || fi.Size() != int64(len(big)) || fi.Mode() != 0o640 || fi.IsDir() {
		t.Errorf("stat dir/big.bin: %v, %v", fi, err)
	}
	if fi, err := fs.Stat(fsys, "emptydir"); err != nil || fi.Mode() != fs.ModeDir|0o750 {
		t.Errorf("stat emptydir: %v, %v", fi, err)
	}
	for _, name := range []string{"nope", "a.txt/x", "dir/../a.txt", "/a.txt", ""} {
		if _, err := fsys.Open(name); err == nil {
			t.Errorf("open %q: no error", name)
		}
	}

	// ReadAt and Seek at chunk boundaries and across them.
	f, err := fsys.Open("dir/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	ra := f.(io.ReaderAt)
	for _, off := range []int64{0, 1, 511 << 10, 2<<20 - 3, int64(len(big)) - 10} {
		b := make([]byte, 1<<20)
		n, err := ra.ReadAt(b, off)
		want := big[off:min(off+int64(len(b)), int64(len(big)))]
		if !bytes.Equal(b[:n], want) || (n < len(b)) != (err == io.EOF) {
			t.Errorf("ReadAt(%d): %d bytes, %v", off, n, err)
		}
	}
	if pos, err := f.(io.Seeker).Seek(-100, io.SeekEnd); err != nil || pos != int64(len(big))-100 {
		t.Fatalf("seek: %d, %v", pos, err)
	}
	if rest, err := io.ReadAll(f); err != nil || !bytes.Equal(rest, big[len(big)-100:]) {
		t.Errorf("read after seek: %d bytes, %v", len(rest), err)
	}
	f.Close()
	if _, err := ra.ReadAt(make([]byte, 10), 0); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}

	// Listing and stat read no data chunk; only reading does.
	cs.loads = map[chunkstore.ID]int{}
	tree, err := ts.r.LoadTree(p.Tree)
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := ts.r.LoadTree(tree.Find("dir").Subtree)
	bigNode := sub.Find("big.bin")
	if err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			_, err = d.Info()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, x := range bigNode.Extents {
		if cs.loads[x.ID] != 0 {
			t.Errorf("listing loaded chunk %s", x.ID.Short())
		}
	}
	// Reading a chunk in small pieces loads it once.
	f, _ = fsys.Open("dir/big.bin")
	buf := make([]byte, 4096)
	for range 64 {
		if _, err := f.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if x := bigNode.Extents[0]; cs.loads[x.ID] != 1 {
		t.Errorf("the first chunk loaded %d times for 64 small reads", cs.loads[x.ID])
	}

	// One handle read from many goroutines at once.
	f, _ = fsys.Open("dir/big.bin")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			b := make([]byte, 300<<10)
			for off := int64(g) * 100 << 10; off < int64(len(big)); off += 1 << 20 {
				n, _ := f.(io.ReaderAt).ReadAt(b, off)
				if !bytes.Equal(b[:n], big[off:off+int64(n)]) || n == 0 {
					t.Errorf("concurrent ReadAt(%d): %d bytes differ", off, n)
					return
				}
			}
		})
	}
	wg.Wait()
	f.Close()

	// A damaged chunk fails the read, wrapping ErrDamaged; other reads go on.
	cs.bad[bigNode.Extents[1].ID] = true
	if _, err := fs.ReadFile(fsys, "dir/big.bin"); !errors.Is(err, ErrDamaged) || !errors.Is(err, chunkstore.ErrCorrupt) {
		t.Errorf("read over a damaged chunk: %v", err)
	}
	f, _ = fsys.Open("dir/big.bin")
	b := make([]byte, 100)
	if n, err := f.(io.ReaderAt).ReadAt(b, 0); n != 100 || err != nil || !bytes.Equal(b, big[:100]) {
		t.Errorf("read before the damaged chunk: %d, %v", n, err)
	}
	f.Close()
}

// TestPointFSNames: names Windows allows and Linux keeps, and names
// io/fs cannot carry.
func TestPointFSNames(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	files := map[string][]byte{
		"WindowsImageBackup/SRV Ü{01}/Backup 2026-11-02 210312/{3c2d0e6a-8f7b-4e51-9a3d-2b7c1f0e9d44}.vhdx": []byte("image"),
		"WindowsImageBackup/SRV Ü{01}/Notes {Sicherung} – été.txt":                                          []byte("notes"),
		"  leading and trailing  ":   []byte("spaces"),
		"-dash":                      []byte("dash"),
		"日本語/ファイル":                   []byte("cjk"),
		"a:b*c?d\"e<f>g|h":           []byte("reserved on Windows"),
		"WindowsImageBackup/Catalog": nil,
	}
	writeTree(t, src, files)
	// A backslash is a file name character on Linux; io/fs forbids it in
	// names, so it is listed by Walk but not by fstest.
	if err := os.WriteFile(filepath.Join(src, `back\slash`), []byte("bs"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A name that is not UTF-8 cannot be named through io/fs: not listed.
	if err := os.WriteFile(filepath.Join(src, "latin1-\xe9"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Links leading out of the point open as not existing.
	os.Symlink("/etc/passwd", filepath.Join(src, "abs-link"))
	os.Symlink("../outside", filepath.Join(src, "escape-link"))
	p, err := ts.backup(BackupOptions{Path: src, Source: "names"})
	if err != nil {
		t.Fatal(err)
	}
	fsys := ts.r.PointFS(p)
	var want []string
	for name, data := range files {
		if data != nil {
			want = append(want, name)
		}
	}
	slices.Sort(want)
	for _, name := range want {
		got, err := fs.ReadFile(fsys, name)
		if err != nil || !bytes.Equal(got, files[name]) {
			t.Errorf("%q: %q, %v", name, got, err)
		}
	}
	for _, name := range []string{"abs-link", "escape-link"} {
		if _, err := fsys.Open(name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("open %s: %v, want ErrNotExist", name, err)
		}
		if _, err := fs.ReadLink(fsys, name); err != nil {
			t.Errorf("readlink %s: %v", name, err)
		}
	}
	if b, err := fs.ReadFile(fsys, `back\slash`); err != nil || string(b) != "bs" {
		t.Errorf("backslash: %q, %v", b, err)
	}
	// fstest.TestFS over the names io/fs allows.
	sub, err := fs.Sub(fsys, "WindowsImageBackup")
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(sub, "SRV Ü{01}/Backup 2026-11-02 210312/{3c2d0e6a-8f7b-4e51-9a3d-2b7c1f0e9d44}.vhdx", "SRV Ü{01}/Notes {Sicherung} – été.txt", "Catalog"); err != nil {
		t.Fatal(err)
	}
	ents, err := fs.ReadDir(fsys, ".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"  leading and trailing  ", "-dash", "WindowsImageBackup", "a:b*c?d\"e<f>g|h", "abs-link", `back\slash`, "escape-link", "日本語"}; !slices.Equal(names, want) {
		t.Errorf("root lists %q, want %q", names, want)
	}
}

// TestPointFSWindowsImage: engine/wsb reads an image in a point as it
// reads the staging share, and looking at the image reads none of the
// images' chunks: sizes come from the tree.
func TestPointFSWindowsImage(t *testing.T) {
	ts := newTestStore(t)
	staging := t.TempDir()
	b, err := wsbgen.Generate(staging, wsbgen.Options{Seed: 12, Names: true, Volumes: []wsbgen.VolumeSpec{
		{FS: "FAT32", Size: 16 << 20, Allocated: 2 << 20, Critical: true},
		{Letter: "C:", FS: "NTFS", Size: 64 << 20, Allocated: 8 << 20, Critical: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ts.backup(BackupOptions{Path: staging, Source: "srv"})
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: ts.st, loads: map[chunkstore.ID]int{}, bad: map[chunkstore.ID]bool{}}
	fsys := NewReader(cs).PointFS(p)
	want, err := wsb.Inspect(os.DirFS(staging), b.Computer)
	if err != nil {
		t.Fatal(err)
	}
	got, err := wsb.Inspect(fsys, b.Computer)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Complete() || !reflect.DeepEqual(got, want) {
		t.Errorf("in the point:\n%+v\non the share:\n%+v", got, want)
	}
	v, err := wsb.ReadVersion(fsys, b.Computer)
	if err != nil || v.VersionID != b.VersionID || len(v.Volumes) != len(b.Volumes) {
		t.Errorf("version %+v, %v", v, err)
	}
	// Not a chunk of the images was read.
	root, err := ts.r.LoadTree(p.Tree)
	if err != nil {
		t.Fatal(err)
	}
	n := root.Find(wsb.Dir)
	for _, dir := range []string{b.Computer, filepath.Base(b.Dir)} {
		tr, err := ts.r.LoadTree(n.Subtree)
		if err != nil {
			t.Fatal(err)
		}
		n = tr.Find(dir)
	}
	images, err := ts.r.LoadTree(n.Subtree)
	if err != nil {
		t.Fatal(err)
	}
	var chunks int
	for _, f := range images.Nodes {
		if filepath.Ext(f.Name) != ".vhdx" {
			continue
		}
		for _, x := range f.Extents {
			if !x.Hole {
				chunks++
				if cs.loads[x.ID] != 0 {
					t.Errorf("%s: chunk %s read", f.Name, x.ID.Short())
				}
			}
		}
	}
	if chunks == 0 {
		t.Fatal("no image chunk in the point")
	}
}
