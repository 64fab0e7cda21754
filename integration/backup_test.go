package integration

import (
	"bytes"
	"encoding/json"
	"maps"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func writeRandom(t *testing.T, p string, seed int64, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// makeEveryKind builds a tree holding every kind of entry a point keeps.
func makeEveryKind(t *testing.T, root string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(root, "dir/sub"), 0o755))
	must(t, os.Mkdir(filepath.Join(root, "empty"), 0o700))
	must(t, os.Mkdir(filepath.Join(root, "sticky"), 0o755))
	setMode(t, filepath.Join(root, "sticky"), 0o1777)
	writeRandom(t, filepath.Join(root, "dir/big.bin"), 1, 9<<20+12345) // several chunks
	writeRandom(t, filepath.Join(root, "dir/sub/small.bin"), 2, 1000)
	must(t, os.WriteFile(filepath.Join(root, "emptyfile"), nil, 0o640))
	must(t, os.WriteFile(filepath.Join(root, "text.txt"), bytes.Repeat([]byte("compress me\n"), 100000), 0o600))
	must(t, os.WriteFile(filepath.Join(root, "non-utf8-\xff\xfe.txt"), []byte("bytes name"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "setuid"), []byte("#!/bin/sh\n"), 0o755))
	setMode(t, filepath.Join(root, "setuid"), 0o6755)
	must(t, os.WriteFile(filepath.Join(root, "owned"), []byte("owned by 1234:5678"), 0o640))
	must(t, os.Lchown(filepath.Join(root, "owned"), 1234, 5678))
	// Hard links: a group of three across directories.
	must(t, os.WriteFile(filepath.Join(root, "hl-a"), []byte("linked content"), 0o644))
	must(t, os.Link(filepath.Join(root, "hl-a"), filepath.Join(root, "dir/hl-b")))
	must(t, os.Link(filepath.Join(root, "hl-a"), filepath.Join(root, "dir/sub/hl-c")))
	// Symlinks, dangling ones and loops: recorded, never followed.
	must(t, os.Symlink("text.txt", filepath.Join(root, "link")))
	must(t, os.Symlink("/nonexistent/target", filepath.Join(root, "dangling")))
	must(t, os.Symlink("loop-b", filepath.Join(root, "loop-a")))
	must(t, os.Symlink("loop-a", filepath.Join(root, "loop-b")))
	must(t, os.Symlink("..", filepath.Join(root, "dir/up")))
	must(t, unix.Lchown(filepath.Join(root, "link"), 42, 43))
	// Special files.
	must(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o620))
	must(t, unix.Mknod(filepath.Join(root, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, unix.Mknod(filepath.Join(root, "blk"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 200))))
	l, err := net.Listen("unix", filepath.Join(root, "sock"))
	must(t, err)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	// Sparse file: holes at start, middle and end.
	f, err := os.Create(filepath.Join(root, "sparse"))
	must(t, err)
	data := make([]byte, 100_000)
	rand.New(rand.NewSource(5)).Read(data)
	f.WriteAt(data, 8<<20)
	f.WriteAt(data, 40<<20)
	must(t, f.Truncate(64<<20))
	f.Close()
	// Small sparse files (no bigger than a chunk, read in one piece
	// before): a hole after data, and nothing but a hole.
	small, err := os.Create(filepath.Join(root, "sparse-small"))
	must(t, err)
	small.Write(data[:3])
	must(t, small.Truncate(512<<10))
	small.Close()
	must(t, os.WriteFile(filepath.Join(root, "sparse-empty"), nil, 0o644))
	must(t, os.Truncate(filepath.Join(root, "sparse-empty"), 100_000))
	// Zero-filled (not sparse) region inside a file: stored as a hole.
	zf := make([]byte, 6<<20)
	copy(zf, data)
	copy(zf[5<<20:], data)
	must(t, os.WriteFile(filepath.Join(root, "zeros-inside"), zf, 0o644))
	// The same ending in data: its writes give it its size, and the hole
	// must not be allocated ahead of them.
	must(t, os.WriteFile(filepath.Join(root, "zeros-then-data"), append(zf[:6<<20:6<<20], data...), 0o644))
	// xattrs and a POSIX ACL.
	must(t, unix.Setxattr(filepath.Join(root, "text.txt"), "user.comment", []byte("hello\x00binary"), 0))
	must(t, unix.Setxattr(filepath.Join(root, "dir"), "user.dirattr", []byte("d"), 0))
	must(t, unix.Lsetxattr(filepath.Join(root, "link"), "trusted.linkattr", []byte("l"), 0))
	if out, err := exec.Command("setfacl", "-m", "u:1234:rw,g:5678:r", filepath.Join(root, "owned")).CombinedOutput(); err != nil {
		t.Fatalf("setfacl (make deps installs acl): %v %s", err, out)
	}
	if out, err := exec.Command("setfacl", "-d", "-m", "u:1234:rwx", filepath.Join(root, "dir")).CombinedOutput(); err != nil {
		t.Fatalf("setfacl: %v %s", err, out)
	}
	// Distinct nanosecond mtimes, applied last, deepest first.
	var paths []string
	filepath.Walk(root, func(p string, _ os.FileInfo, _ error) error { paths = append(paths, p); return nil })
	for i := len(paths) - 1; i >= 0; i-- {
		ts := []unix.Timespec{unix.NsecToTimespec(1600000000_000000000 + int64(i)*1_000_000_007), unix.NsecToTimespec(1500000000_123456789 + int64(i)*1_000_000_011)}
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

func TestRoundTripEveryKind(t *testing.T) {
	requireRoot(t)
	for _, enc := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[enc], func(t *testing.T) {
			e := newEnv(t)
			src := filepath.Join(t.TempDir(), "src")
			makeEveryKind(t, src)
			want := snapshot(t, src)
			if enc {
				e.vars = append(e.vars, "RECALL_PASSWORD=correct horse")
				e.ok("init", "--encrypt")
			} else {
				e.ok("init")
			}
			out := e.ok("backup", "--json", src)
			var p struct {
				ID     string
				Source string
				Errors []any
			}
			must(t, json.Unmarshal([]byte(out), &p))
			if p.Source != strings.ReplaceAll(strings.Trim(src, "/"), "/", "-") || len(p.Errors) != 0 {
				t.Errorf("backup: %s", out)
			}
			dst := filepath.Join(t.TempDir(), "restored")
			e.ok("restore", p.ID[:10], "--target", dst)
			compareTrees(t, want, snapshot(t, dst))
			// Sparse files stay sparse, small ones too.
			var a, b unix.Stat_t
			for _, name := range []string{"sparse", "sparse-small", "sparse-empty"} {
				unix.Stat(filepath.Join(src, name), &a)
				unix.Stat(filepath.Join(dst, name), &b)
				if b.Blocks > a.Blocks {
					t.Errorf("restored %s uses %d blocks, original %d", name, b.Blocks, a.Blocks)
				}
			}
			for _, name := range []string{"zeros-inside", "zeros-then-data"} {
				unix.Stat(filepath.Join(dst, name), &b)
				if b.Blocks*512 > 2<<20 {
					t.Errorf("%s: zero run not restored as a hole: %d blocks", name, b.Blocks)
				}
			}
			// A sub-path.
			dst2 := filepath.Join(t.TempDir(), "sub")
			e.ok("restore", "latest", "--target", dst2, "--path", "dir/sub")
			compareTrees(t, subtree(want, "dir/sub"), snapshot(t, dst2))
			// Refuses a non-empty target, accepts it with --overwrite.
			if r := e.run("restore", "latest", "--target", dst); r.code != 1 || !strings.Contains(r.stderr, "--overwrite") {
				t.Errorf("restore into non-empty dir: code %d, %s", r.code, r.stderr)
			}
			// The target held entries and is not the source: it keeps its
			// own metadata (its time is the overwrite's), the rest is the
			// point's.
			out = e.ok("restore", "latest", "--target", dst, "--overwrite")
			if !strings.Contains(out, "kept its own owner, mode and times") {
				t.Errorf("restore --overwrite into a populated target does not say it kept the target's own metadata:\n%s", out)
			}
			got := snapshot(t, dst)
			wantRest := maps.Clone(want)
			delete(wantRest, ".")
			delete(got, ".")
			compareTrees(t, wantRest, got)
			e.ok("verify", "--read-data")
		})
	}
}

// subtree is what a restore of prefix should produce: hard-link groups
// only among the members inside it, named by their first member there.
func subtree(m map[string]entry, prefix string) map[string]entry {
	out := map[string]entry{}
	members := map[string][]string{}
	for p, e := range m {
		switch {
		case p == prefix:
			out["."] = e
		case strings.HasPrefix(p, prefix+"/"):
			rel := strings.TrimPrefix(p, prefix+"/")
			out[rel] = e
			if e.Link != "" {
				members[e.Link] = append(members[e.Link], rel)
			}
		}
	}
	for _, rels := range members {
		sort.Strings(rels)
		for _, r := range rels {
			e := out[r]
			e.Link = ""
			if len(rels) > 1 {
				e.Link = rels[0]
			}
			out[r] = e
		}
	}
	return out
}

func TestIncrementalReusesUnchanged(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	for i := 0; i < 20; i++ {
		writeRandom(t, filepath.Join(src, "f"+string(rune('a'+i))), int64(i), 700_000)
	}
	e.ok("init")
	e.ok("backup", "--source", "s", src)
	writeRandom(t, filepath.Join(src, "fa"), 99, 700_000)
	out := e.ok("backup", "--source", "s", "--json", src)
	var p struct{ Stats map[string]int64 }
	must(t, json.Unmarshal([]byte(out), &p))
	if p.Stats["unchanged_files"] != 19 || p.Stats["new_bytes"] > 800_000 {
		t.Errorf("second backup: %v", p.Stats)
	}
	pts := e.ok("points", "--source", "s", "--json")
	var list []struct{ ID string }
	must(t, json.Unmarshal([]byte(pts), &list))
	if len(list) != 2 {
		t.Fatalf("points: %s", pts)
	}
	dst := t.TempDir()
	e.ok("restore", list[0].ID, "--target", dst+"/old")
	if got, _ := os.ReadFile(filepath.Join(dst, "old/fa")); bytes.Equal(got, mustRead(t, filepath.Join(src, "fa"))) {
		t.Error("older point restored the newer content")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return b
}

// A file rewritten with the same size and given back its old mtime and
// atime is new content (only its ctime tells): the next backup saves it.
func TestSameSizeSameMtimeRewriteBackedUp(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	f := filepath.Join(src, "f")
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	must(t, os.WriteFile(f, []byte("version one"), 0o644))
	must(t, os.Chtimes(f, old, old))
	var first unix.Stat_t
	must(t, unix.Stat(f, &first))
	e.ok("init")
	e.ok("backup", "--source", "s", src)

	must(t, os.WriteFile(f, []byte("version TWO"), 0o644))
	must(t, os.Chtimes(f, old, old))
	// ctime ticks coarsely: touch until it moved past the first one's.
	for {
		var st unix.Stat_t
		must(t, unix.Stat(f, &st))
		if st.Ctim != first.Ctim {
			break
		}
		must(t, os.Chtimes(f, old, old))
	}
	e.ok("backup", "--source", "s", src)
	dst := filepath.Join(t.TempDir(), "restored")
	e.ok("restore", "latest", "--target", dst)
	if got := mustRead(t, filepath.Join(dst, "f")); string(got) != "version TWO" {
		t.Errorf("latest point restores %q, want %q", got, "version TWO")
	}
}

func TestLoopDevice(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		skip(t, "no loop devices: %v", err)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	// 48 MiB: random regions separated by zero runs.
	f, err := os.Create(img)
	must(t, err)
	must(t, f.Truncate(48<<20))
	for i, off := range []int64{0, 5 << 20, 20<<20 + 4096, 47 << 20} {
		b := make([]byte, 700_000)
		rand.New(rand.NewSource(int64(i))).Read(b)
		f.WriteAt(b, off)
	}
	f.Close()
	dev := losetup(t, img)
	e := newEnv(t)
	e.ok("init")
	out := e.ok("backup", "--json", dev)
	if !strings.Contains(out, `"kind":"device"`) {
		t.Errorf("device backup: %s", out)
	}
	dst := filepath.Join(dir, "out")
	e.ok("restore", "latest", "--target", dst)
	name := filepath.Base(dev)
	if fileHash(t, filepath.Join(dst, name)) != fileHash(t, img) {
		t.Fatal("restored image differs from the device")
	}
	var st unix.Stat_t
	unix.Stat(filepath.Join(dst, name), &st)
	if st.Blocks*512 > 8<<20 {
		t.Errorf("restored image not sparse: %d bytes allocated", st.Blocks*512)
	}
	// Onto another block device, which starts out full of garbage.
	img2 := filepath.Join(dir, "disk2.img")
	writeRandom(t, img2, 77, 48<<20)
	dev2 := losetup(t, img2)
	// Held exclusively (as a mount, md, LVM or swap holds it): refused,
	// and nothing written. Before, a restore onto a mounted device
	// overwrote the file system in use and exited 0.
	before := fileHash(t, dev2)
	held, err := unix.Open(dev2, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	must(t, err)
	r := e.run("restore", "latest", "--target", dev2)
	unix.Close(held)
	if r.code == 0 || !strings.Contains(r.stderr, "in use") || fileHash(t, dev2) != before {
		t.Fatalf("restore onto a device in use: exit %d, changed %v\n%s", r.code, fileHash(t, dev2) != before, r.stderr)
	}
	if out := e.ok("restore", "latest", "--target", dev2); !strings.Contains(out, "into "+dev2) || !strings.Contains(out, "48 MiB") {
		t.Errorf("restore onto a device says %q, not where it went and the device's 48 MiB (its holes are written too)", out)
	}
	if fileHash(t, dev2) != fileHash(t, img) {
		t.Fatal("image restored onto a block device differs")
	}
	// Onto a larger device: restored, and said that the rest is as it was.
	img3 := filepath.Join(dir, "disk3.img")
	writeRandom(t, img3, 78, 64<<20)
	dev3 := losetup(t, img3)
	if r := e.run("restore", "latest", "--target", dev3); r.code != 0 || !strings.Contains(r.stderr, "the 16777216 bytes after it are left as they are") {
		t.Errorf("restore onto a larger device: exit %d, want 0 and a word on the rest of the device\n%s", r.code, r.stderr)
	}
	// A device in use (mounted, held) is backed up, but flagged: its
	// image is what the reads found while it may have been written.
	// Before, such a backup exited 0 and its image failed fsck.
	held, err = unix.Open(dev, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	must(t, err)
	r = e.run("backup", dev)
	unix.Close(held)
	if r.code != 3 || !strings.Contains(r.stderr+r.stdout, "was in use") || !strings.Contains(r.stdout, "point ") {
		t.Errorf("backup of a device in use: exit %d, want 3 with a point and the warning\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// Unchanged device: the second backup stores (almost) nothing new.
	out = e.ok("backup", "--json", dev)
	var p struct{ Stats map[string]int64 }
	must(t, json.Unmarshal([]byte(out), &p))
	if p.Stats["new_bytes"] > 100_000 {
		t.Errorf("re-backup of an unchanged device stored %d new bytes", p.Stats["new_bytes"])
	}
}

func losetup(t *testing.T, img string) string {
	t.Helper()
	out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
	if err != nil {
		skip(t, "losetup: %v %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

func TestSingleFile(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	want := writeRandom(t, filepath.Join(dir, "vm.img"), 3, 3<<20)
	e.ok("init")
	out := e.ok("backup", "--json", "--source", "vm", filepath.Join(dir, "vm.img"))
	if !strings.Contains(out, `"kind":"file"`) {
		t.Errorf("%s", out)
	}
	e.ok("restore", "--source", "vm", "latest", "--target", dir+"/r")
	if !bytes.Equal(mustRead(t, dir+"/r/vm.img"), want) {
		t.Error("restored file differs")
	}
	_ = time.Now
}
