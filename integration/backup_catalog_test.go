package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A catalog that cannot be opened at all (a directory, or a symlink to
// nowhere, in its place: nothing recall may move aside on its own) is a
// warning for backup as for restore and verify, never a failure: the
// backup is made, and the warning names the catalog and says to move it
// aside. (That a catalog which opens still refuses a path backed up
// under a registered source's name is TestSourceCommands'.)
func TestBackupWithUnusableCatalog(t *testing.T) {
	for _, c := range []struct {
		name   string
		block  func(t *testing.T, catalog string)
		advice string
	}{
		{"directory", func(t *testing.T, catalog string) { must(t, os.Mkdir(catalog, 0o700)) }, "move it aside"},
		{"dangling symlink", func(t *testing.T, catalog string) {
			must(t, os.Symlink(filepath.Join(t.TempDir(), "gone", "catalog.db"), catalog))
		}, "move it aside"},
		// Not damage: nothing to move aside, which would lose its history.
		{"file that cannot be written", func(t *testing.T, catalog string) {
			must(t, os.WriteFile(catalog, nil, 0o600))
			f, err := os.Open(catalog)
			must(t, err)
			defer f.Close()
			if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, 0x10); err != nil { // chattr +i
				skip(t, "chattr +i: %v", err)
			}
			t.Cleanup(func() {
				if f, err := os.Open(catalog); err == nil {
					unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, 0)
					f.Close()
				}
			})
		}, "cannot be written"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			src := t.TempDir()
			want := writeRandom(t, filepath.Join(src, "f"), 1, 100_000)
			e.ok("init")
			catalog := filepath.Join(e.home, "catalog.db")
			if err := os.Remove(catalog); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			c.block(t, catalog)

			r := e.run("backup", "--source", "s", src)
			if r.code != 0 {
				t.Fatalf("backup with the catalog a %s: exit %d\n%s%s", c.name, r.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, "warning: catalog "+catalog) || !strings.Contains(r.stderr, c.advice) {
				t.Errorf("backup: the warning should name %s and say %q:\n%s", catalog, c.advice, r.stderr)
			}
			if c.advice != "move it aside" && strings.Contains(r.stderr, "move it aside") {
				t.Errorf("backup: a catalog that cannot be written is no damage to move aside:\n%s", r.stderr)
			}
			var pts []struct{ Source string }
			must(t, json.Unmarshal([]byte(e.ok("points", "--json")), &pts))
			if len(pts) != 1 || pts[0].Source != "s" {
				t.Fatalf("points after the backup: %+v", pts)
			}
			dst := filepath.Join(t.TempDir(), "out")
			for _, args := range [][]string{{"restore", "latest", "--source", "s", "--target", dst}, {"verify"}} {
				if r := e.run(args...); r.code != 0 || !strings.Contains(r.stderr, "warning: ") {
					t.Errorf("%s with the catalog a %s: exit %d, want 0 and a warning\n%s", args[0], c.name, r.code, r.stderr)
				}
			}
			if !bytes.Equal(mustRead(t, filepath.Join(dst, "f")), want) {
				t.Errorf("restore of the backup: content differs")
			}
		})
	}
}
