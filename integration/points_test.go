package integration

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// storeFiles lists every file of a store with its size and content, leaving
// out the lock (taking it rewrites it), to prove a command changed nothing.
func storeFiles(t *testing.T, home string) string {
	t.Helper()
	var lines []string
	filepath.WalkDir(filepath.Join(home, "store"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(p, "/locks/") {
			return err
		}
		lines = append(lines, p+" "+fileHash(t, p))
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// damagedPointEnv backs up source s twice and source t once, then flips a
// byte of s's newest manifest. It returns the env, the points' ids (s's
// first, the damaged one, t's) and what s held at its first point.
func damagedPointEnv(t *testing.T, encrypt bool) (e *env, ids [3]string, src string, first map[string]entry) {
	t.Helper()
	e = newEnv(t)
	if encrypt {
		e.vars = append(e.vars, "RECALL_PASSWORD=correct horse")
		e.ok("init", "--encrypt")
	} else {
		e.ok("init")
	}
	src = filepath.Join(t.TempDir(), "s")
	mustWrite(t, filepath.Join(src, "a"), randBytes(1, 300_000), 0o644)
	mustWrite(t, filepath.Join(src, "dir", "b"), randBytes(2, 100_000), 0o644)
	first = snapshot(t, src)
	other := filepath.Join(t.TempDir(), "t")
	mustWrite(t, filepath.Join(other, "c"), randBytes(3, 50_000), 0o644)

	backup := func(source, dir string) string {
		var p struct{ ID string }
		must(t, json.Unmarshal([]byte(e.ok("backup", "--json", "--source", source, dir)), &p))
		return p.ID
	}
	ids[0] = backup("s", src)
	mustWrite(t, filepath.Join(src, "new"), randBytes(4, 10_000), 0o644)
	ids[1] = backup("s", src)
	ids[2] = backup("t", other)

	manifest := filepath.Join(e.home, "store", "points", ids[1])
	b := mustRead(t, manifest)
	b[len(b)/2] ^= 0x01
	must(t, os.WriteFile(manifest, b, 0o600))
	return e, ids, src, first
}

// TestDamagedManifestAffectsOnlyItsPoint: with one point's manifest
// corrupt, every command still works for every other point, the damaged
// one is listed as such, refused with exit 4, and can be forgotten.
func TestDamagedManifestAffectsOnlyItsPoint(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[enc], func(t *testing.T) {
			e, ids, _, first := damagedPointEnv(t, enc)
			bad := ids[1][:12]

			out := e.ok("points")
			var row string
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(line, bad) {
					row = line
				}
			}
			if !strings.Contains(row, "DAMAGED") || !strings.Contains(out, ids[0][:12]) || !strings.Contains(out, ids[2][:12]) {
				t.Errorf("points does not list the damaged point as such, or leaves others out:\n%s", out)
			}

			var pts []struct {
				ID, Source, Damaged string
			}
			must(t, json.Unmarshal([]byte(e.ok("points", "--json")), &pts))
			if len(pts) != 3 {
				t.Fatalf("points --json lists %d points, want 3", len(pts))
			}
			for _, p := range pts {
				if (p.ID == ids[1]) != (p.Damaged != "") {
					t.Errorf("points --json: %+v", p)
				}
			}

			// Restore of a healthy point, and "latest", which steps over
			// the damaged newest point of s.
			for _, spec := range []string{ids[0][:10], "latest"} {
				dst := filepath.Join(t.TempDir(), "out")
				e.ok("restore", "--source", "s", spec, "--target", dst)
				compareTrees(t, first, snapshot(t, dst))
			}
			e.ok("restore", ids[2][:10], "--target", filepath.Join(t.TempDir(), "t"))

			// The damaged point is refused, saying why and what to do.
			r := e.run("restore", bad, "--target", filepath.Join(t.TempDir(), "bad"))
			if r.code != 4 || !strings.Contains(r.stderr, "damaged") || !strings.Contains(r.stderr, "recall forget "+bad) {
				t.Errorf("restore of the damaged point: exit %d, want 4\n%s", r.code, r.stderr)
			}
			r = e.run("mount", "--point", bad, t.TempDir())
			if r.code != 4 || !strings.Contains(r.stderr, "damaged") {
				t.Errorf("mount --point of the damaged point: exit %d, want 4\n%s", r.code, r.stderr)
			}

			// verify reports the point; it does not fail as a whole.
			r = e.run("verify")
			if r.code == 1 || strings.Contains(r.stderr, "corrupt data") && !strings.Contains(r.stdout+r.stderr, bad) {
				t.Errorf("verify fails wholesale on one damaged manifest: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}

			// A dry run of repair points names the manifest and changes
			// nothing.
			before := storeFiles(t, e.home)
			r = e.run("repair", "points", "--dry-run", "--forget-damaged")
			if r.code != 0 || !strings.Contains(r.stdout, bad) || !strings.Contains(r.stdout, "would remove") {
				t.Errorf("repair points --dry-run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			if after := storeFiles(t, e.home); after != before {
				t.Errorf("repair points --dry-run changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			// Without --forget-damaged the damaged manifest stays: exit 4.
			if r = e.run("repair", "points", "--json"); r.code != 4 || !strings.Contains(r.stdout, bad) {
				t.Errorf("repair points: exit %d, want 4\n%s\n%s", r.code, r.stdout, r.stderr)
			}

			out = e.ok("forget", bad)
			if !strings.Contains(out, "damaged") {
				t.Errorf("forget does not say the point was damaged: %s", out)
			}
			if _, err := os.Stat(filepath.Join(e.home, "store", "points", ids[1])); !os.IsNotExist(err) {
				t.Errorf("forget left the damaged manifest: %v", err)
			}
			if out := e.ok("points"); strings.Contains(out, "DAMAGED") {
				t.Errorf("points after forget:\n%s", out)
			}
			if out := e.ok("repair", "points"); !strings.Contains(out, "nothing to repair") {
				t.Errorf("repair points of a whole store: %s", out)
			}
		})
	}
}

// TestMountLeavesOutDamagedPoint: the recovery tree shows every healthy
// point and leaves the damaged one out.
func TestMountLeavesOutDamagedPoint(t *testing.T) {
	requireFUSE(t)
	e, _, _, first := damagedPointEnv(t, false)
	mnt := t.TempDir()
	e.mount(mnt)
	if pts := pointDirs(t, filepath.Join(mnt, "s")); len(pts) != 1 {
		t.Fatalf("source s shows points %v, want only the healthy one", pts)
	}
	for _, name := range []string{"a", "dir/b"} {
		if got := fileHash(t, filepath.Join(mnt, "s", "latest", name)); got != first[name].Content {
			t.Errorf("%s through the mount differs from the backed-up file", name)
		}
	}
	if pts := pointDirs(t, filepath.Join(mnt, "t")); len(pts) != 1 {
		t.Errorf("source t shows points %v", pts)
	}
}
