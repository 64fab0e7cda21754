package integration

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pointOut is what these tests read of `backup --json` and `points --json`.
type pointOut struct {
	ID     string `json:"id"`
	Errors []struct {
		Path  string `json:"path"`
		Error string `json:"error"`
	} `json:"errors"`
	Exclude     map[string]any `json:"exclude"`
	MountPoints []struct {
		Path   string `json:"path"`
		FSType string `json:"fs_type"`
	} `json:"mount_points"`
}

func parsePoint(t *testing.T, out string) pointOut {
	t.Helper()
	var p pointOut
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("backup --json: %v\n%s", err, out)
	}
	return p
}

// restoredPaths restores a point of source into a new directory and lists
// what it holds, directories with a trailing '/'.
func (e *env) restoredPaths(source, point string) []string {
	e.t.Helper()
	dir := filepath.Join(e.t.TempDir(), "out")
	e.ok("restore", "--source", source, point, "--target", dir)
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			rel += "/"
		}
		out = append(out, rel)
		return nil
	})
	check(e.t, err)
	sort.Strings(out)
	return out
}

// writeTree creates files (name -> content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		mustWrite(t, filepath.Join(dir, name), []byte(data), 0o644)
	}
}

// A tmpfs and a recall recovery tree mounted inside the source: without
// -x the tmpfs is backed up and the recovery tree is skipped with a
// warning (backing it up would copy every earlier point again); with -x
// neither is entered and both are listed as mount points, not warnings.
// Both stay as empty directories.
func TestBackupMountsInsideSource(t *testing.T) {
	requireFUSE(t)
	src := filepath.Join(t.TempDir(), "data")
	writeTree(t, src, map[string]string{"keep.txt": "k", "tmp/.keep": "", "points/.keep": ""})
	tmp, pts := filepath.Join(src, "tmp"), filepath.Join(src, "points")
	check(t, os.Remove(filepath.Join(tmp, ".keep")))
	check(t, os.Remove(filepath.Join(pts, ".keep")))
	if err := unix.Mount("tmpfs", tmp, "tmpfs", 0, "size=16m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(tmp, unix.MNT_DETACH) })
	writeTree(t, tmp, map[string]string{"in-tmpfs.txt": "t"})

	other := newEnv(t)
	other.ok("init")
	otherSrc := filepath.Join(t.TempDir(), "other")
	writeTree(t, otherSrc, map[string]string{"old.txt": "o"})
	other.ok("backup", "--source", "other", otherSrc)
	other.mount(pts)
	if _, err := os.Stat(filepath.Join(pts, "other", "latest", "old.txt")); err != nil {
		t.Fatalf("recovery tree not mounted inside the source: %v", err)
	}

	e := newEnv(t)
	e.ok("init")
	r := e.run("backup", "--json", "--source", "data", src)
	if r.code != 3 {
		t.Fatalf("backup without -x: exit %d, want 3 (warnings)\n%s%s", r.code, r.stdout, r.stderr)
	}
	p := parsePoint(t, r.stdout)
	if len(p.Errors) != 1 || p.Errors[0].Path != "points" ||
		!strings.HasPrefix(p.Errors[0].Error, "skipped mount point: it is a recall recovery tree (fuse.recall)") {
		t.Errorf("warnings %+v, want one for the recovery tree", p.Errors)
	}
	if len(p.MountPoints) != 0 {
		t.Errorf("mount points %+v without -x", p.MountPoints)
	}
	want := []string{"keep.txt", "points/", "tmp/", "tmp/in-tmpfs.txt"}
	if got := e.restoredPaths("data", p.ID); !reflect.DeepEqual(got, want) {
		t.Errorf("restored %q, want %q", got, want)
	}

	p = parsePoint(t, e.ok("backup", "--json", "-x", "--source", "data", src))
	if len(p.Errors) != 0 {
		t.Errorf("-x warns: %+v", p.Errors)
	}
	var mps []string
	for _, m := range p.MountPoints {
		mps = append(mps, m.Path+" "+m.FSType)
	}
	if want := []string{"points fuse.recall", "tmp tmpfs"}; !reflect.DeepEqual(mps, want) {
		t.Errorf("mount points %q, want %q", mps, want)
	}
	if p.Exclude["one_file_system"] != true {
		t.Errorf("exclude %v lacks one_file_system", p.Exclude)
	}
	want = []string{"keep.txt", "points/", "tmp/"}
	if got := e.restoredPaths("data", p.ID); !reflect.DeepEqual(got, want) {
		t.Errorf("restored %q, want %q", got, want)
	}
}

// /proc is refused at once: reading it whole blocks on /proc/kmsg.
func TestBackupProcReturns(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	for _, path := range []string{"/proc", "/proc/kmsg", "/sys"} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, recallBin, "--home", e.home, "backup", path)
		out, err := cmd.CombinedOutput()
		late := ctx.Err() != nil
		cancel()
		if late {
			t.Fatalf("backup %s still running after 30s", path)
		}
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != 1 || !strings.Contains(string(out), "backup source "+path+": ") ||
			!strings.Contains(string(out), "is a pseudo file system, which recall never reads") {
			t.Errorf("backup %s: exit %d, %s", path, code, out)
		}
	}
	if out := e.ok("points", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("points after refused backups: %s", out)
	}
}

func TestBackupExcludeFlags(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	writeTree(t, src, map[string]string{
		"keep.txt":           "k",
		"a.log":              "l",
		"sub/b.log":          "l",
		"sub/keep.txt":       "k",
		"build/x.o":          "o",
		"src/build/x.go":     "package x",
		"cache/CACHEDIR.TAG": "Signature: 8a477f597d28d172789f06886806bc55\n",
		"cache/blob":         "c",
		"scratch/.nobackup":  "",
		"scratch/data":       "d",
		"image.iso":          "i",
		"big.bin":            strings.Repeat("b", 3<<20),
		"{a,b}.txt":          "comma in a pattern",
	})
	xfile := filepath.Join(t.TempDir(), "exclude")
	mustWrite(t, xfile, []byte("# images\n*.iso\n\n"), 0o644)
	e := newEnv(t)
	e.ok("init")
	p := parsePoint(t, e.ok("backup", "--json", "--source", "data", src,
		"--exclude", "*.log", "--exclude", "/build/", "--exclude", `\{a,b\}.txt`, "--exclude-file", xfile,
		"--exclude-caches", "--exclude-if-present", ".nobackup", "--exclude-larger-than", "2MiB"))
	want := []string{"cache/", "cache/CACHEDIR.TAG", "keep.txt", "scratch/", "scratch/.nobackup",
		"src/", "src/build/", "src/build/x.go", "sub/", "sub/keep.txt"}
	if got := e.restoredPaths("data", p.ID); !reflect.DeepEqual(got, want) {
		t.Errorf("restored %q, want %q", got, want)
	}

	var pts []pointOut
	check(t, json.Unmarshal([]byte(e.ok("points", "--json")), &pts))
	if len(pts) != 1 {
		t.Fatalf("points: %+v", pts)
	}
	b, _ := json.Marshal(pts[0].Exclude)
	wantX := `{"caches":true,"files":[{"path":"` + xfile + `","patterns":["*.iso"]}],"if_present":[".nobackup"],` +
		`"larger_than":2097152,"patterns":["*.log","/build/","\\{a,b\\}.txt"]}`
	if string(b) != wantX {
		t.Errorf("points --json exclude:\n %s\nwant\n %s", b, wantX)
	}

	// Unusable options are usage errors, and no backup is tried.
	for _, args := range [][]string{
		{"--exclude", "[x"},
		{"--exclude", "!keep"},
		{"--exclude-file", xfile + ".missing"},
		{"--exclude-if-present", "a/b"},
		{"--exclude-larger-than", "lots"},
		{"--exclude-larger-than", "0"},
		{"--source", "two\nlines"},
		{"--source", "latest"},
		{"--source", "@GMT-2026.01.01-00.00.00"},
		{"--source", strings.Repeat("n", 201)},
	} {
		r := e.run(append([]string{"backup", src}, args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, "recall: error: ") {
			t.Errorf("backup %q: exit %d, %s", args, r.code, r.stderr)
		}
	}
	if r := e.run("backup", src, "--source", "a:b"); r.code != 2 ||
		!strings.Contains(r.stderr, "a source name is 1 to 200 bytes without '/', ':' or control characters") {
		t.Errorf("--source a:b: exit %d, %s", r.code, r.stderr)
	}
}
