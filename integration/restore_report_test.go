package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// restore -v lists as restored only the files that are in the target:
// those of a directory made immutable are not created, and not listed.
func TestRestoreVerboseListsOnlyFilesMade(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(filepath.Join(src, "d"), 0o755))
	for _, rel := range []string{"d/f1", "d/f2", "top"} {
		must(t, os.WriteFile(filepath.Join(src, rel), []byte(rel), 0o644))
	}
	e.ok("init")
	e.ok("backup", "--source", "s", src)
	target := filepath.Join(t.TempDir(), "target")
	must(t, os.MkdirAll(filepath.Join(target, "d"), 0o755))
	setImmutable(t, filepath.Join(target, "d"))

	r := e.run("-v", "restore", "latest", "--source", "s", "--target", target, "--overwrite")
	if r.code == 0 {
		t.Fatalf("restore into an immutable directory: exit 0\n%s", r.stdout)
	}
	for _, rel := range []string{"d/f1", "d/f2"} {
		if strings.Contains(r.stdout, "restored "+rel+"\n") {
			t.Errorf("%s listed as restored, and it is not there:\n%s", rel, r.stdout)
		}
	}
}

// A copy into a full destination names the full store once, with no
// second line, and says the packs it finished are reused.
func TestCopyIntoFullStoreErrsOnce(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	e := newEnv(t)
	src := filepath.Join(base, "src")
	must(t, os.Mkdir(src, 0o755))
	for i := range 3 {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("big%d", i)), int64(i+1), 6<<20)
	}
	e.ok("init")
	e.ok("backup", "--source", "s", src)
	dst := filepath.Join(base, "dst")
	must(t, os.Mkdir(dst, 0o755))
	mountTmpfs(t, dst, "8m")
	for _, args := range [][]string{nil, {"--source", "s"}} {
		r := e.run(append([]string{"copy", "--from", e.home, "--to", filepath.Join(dst, "x")}, args...)...)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != 1 || len(lines) != 1 || !strings.Contains(r.stderr, "is full") ||
			!strings.Contains(r.stderr, "the next copy reuses them") {
			t.Errorf("copy %q into a full store: exit %d, stderr:\n%s\nwant one line saying it is full and the packs are reused", args, r.code, r.stderr)
		}
	}
}
