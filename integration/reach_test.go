package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A file below a directory nobody could enter at backup time stays out
// of nobody's reach through the recovery tree (mounted --allow-other, as
// for Samba's Previous Versions), though its own mode and its
// directory's let everyone read it; a path every directory above lets
// through stays everyone's. Before, the source directory let everyone in
// and the tree held only the path's own modes.
func TestMountKeepsWhatDirectoriesAboveKeptOut(t *testing.T) {
	base := nobodyBase(t)
	priv := filepath.Join(base, "private")
	pub := filepath.Join(priv, "pub")
	open := filepath.Join(base, "open")
	for _, d := range []string{pub, open} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.Chmod(priv, 0o700))
	for _, d := range []string{pub, open} {
		must(t, os.WriteFile(filepath.Join(d, "data.txt"), []byte("world-readable file\n"), 0o644))
	}
	e := &env{t: t, home: filepath.Join(base, "home")}
	e.ok("init")
	e.ok("backup", "--source", "priv", pub)
	e.ok("backup", "--source", "open", open)
	mnt := filepath.Join(base, "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	e.mount(mnt, "--allow-other")
	asNobody := func(args ...string) (string, error) {
		out, err := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups"}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := asNobody("cat", filepath.Join(pub, "data.txt")); err == nil {
		t.Fatalf("nobody reads the live file: %s", out)
	}
	for _, p := range []string{"priv/latest/data.txt", "priv"} {
		if out, err := asNobody("cat", filepath.Join(mnt, p)); err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("nobody, %s through the tree: %v %s", p, err, out)
		}
	}
	if out, err := asNobody("cat", filepath.Join(mnt, "open/latest/data.txt")); err != nil {
		t.Errorf("nobody, open/latest/data.txt: %v %s", err, out)
	}
	if out, err := exec.Command("cat", filepath.Join(mnt, "priv/latest/data.txt")).CombinedOutput(); err != nil {
		t.Errorf("root, priv/latest/data.txt: %v %s", err, out)
	}
	fi, err := os.Stat(filepath.Join(mnt, "priv"))
	must(t, err)
	if fi.Mode().Perm() != 0o500 {
		t.Errorf("source directory mode %v, want dr-x------", fi.Mode())
	}
}

// Two paths that derive one source name ("x-y" and "x/y") are not made
// one source: the second backup is refused with what to give instead,
// and --source keeps them apart. Before, the second became a point of
// the first's source, and a group's prune of one dropped the other's.
func TestDerivedSourceNameClash(t *testing.T) {
	e := newEnv(t)
	base := t.TempDir()
	a, b := filepath.Join(base, "x-y"), filepath.Join(base, "x", "y")
	for _, d := range []string{a, b} {
		must(t, os.MkdirAll(d, 0o755))
		must(t, os.WriteFile(filepath.Join(d, "f"), []byte(d), 0o644))
	}
	e.ok("init")
	e.ok("backup", a)
	r := e.run("backup", b)
	if r.code != 1 || !strings.Contains(r.stderr, "is the source of "+a) || !strings.Contains(r.stderr, "give --source NAME") {
		t.Fatalf("backup of %s: exit %d\n%s", b, r.code, r.stderr)
	}
	e.ok("backup", "--source", "other", b)
	e.ok("backup", a) // its own source still takes it
	out := e.ok("points")
	if strings.Count(out, "other") != 1 {
		t.Errorf("points:\n%s", out)
	}
}

// A member path that does not exist is taken (it may be a mount not there
// yet), with a warning naming it: a typing mistake otherwise showed only
// as the first run's failure.
func TestGroupMissingMemberWarned(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	for _, args := range [][]string{
		{"group", "create", "g", "--member", "/nonexistent/typo"},
		{"group", "add", "g", "--member", "/nonexistent/other"},
	} {
		r := e.run(args...)
		if r.code != 0 || !strings.Contains(r.stderr, "member /nonexistent/") || !strings.Contains(r.stderr, "does not exist (yet)") {
			t.Errorf("%v: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	if r := e.run("group", "add", "g", "--member", t.TempDir()); strings.Contains(r.stderr, "does not exist") {
		t.Errorf("an existing member warned of: %s", r.stderr)
	}
}
