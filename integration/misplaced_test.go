package integration

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A pack file moved into another folder under packs/ (by hand, or by a
// copy tool that re-sorted the folders) is not where restore reads it:
// verify says so and where the file is, and repair moves it back, after
// which everything restores. A second file of a pack's name, beside the
// one in its place, is left alone and named.
func TestMisplacedPackFile(t *testing.T) {
	for _, repair := range []string{"index", "packs"} {
		t.Run(repair, func(t *testing.T) {
			e := newEnv(t)
			src := t.TempDir()
			big := make([]byte, 12<<20) // random: a pack of more than 1 MiB
			rand.NewChaCha8([32]byte{7}).Read(big)
			mustWrite(t, filepath.Join(src, "big"), big, 0o644)
			mustWrite(t, filepath.Join(src, "small"), []byte("small file"), 0o644)
			e.ok("init")
			e.ok("backup", "--source", "s", src)
			packs := filepath.Join(e.home, "store", "packs")
			var home string
			filepath.WalkDir(packs, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					if fi, _ := d.Info(); fi != nil && fi.Size() > 1<<20 && home == "" {
						home = p
					}
				}
				return nil
			})
			if home == "" {
				t.Fatal("no data pack in the store")
			}
			name := filepath.Base(home)
			away := filepath.Join(packs, "00", name)
			if strings.HasPrefix(name, "00") {
				away = filepath.Join(packs, "ff", name)
			}
			check(t, os.Rename(home, away))

			r := e.run("verify")
			if r.code != 4 || !strings.Contains(r.stdout+r.stderr, away) || !strings.Contains(r.stdout+r.stderr, "recall repair index") {
				t.Fatalf("verify with a pack outside its folder: exit %d, want 4 naming %s and the repair\nstdout: %s\nstderr: %s", r.code, away, r.stdout, r.stderr)
			}
			out := e.ok("repair", repair)
			if !strings.Contains(out, "moved pack file "+away+" back to "+home) {
				t.Fatalf("repair %s did not say it moved the pack back:\n%s", repair, out)
			}
			if _, err := os.Stat(home); err != nil {
				t.Fatalf("pack not back in its place: %v", err)
			}
			e.ok("verify", "--read-data")
			dst := filepath.Join(t.TempDir(), "r")
			e.ok("restore", "latest", "--target", dst)
			if got, err := os.ReadFile(filepath.Join(dst, "big")); err != nil || !bytes.Equal(got, big) {
				t.Fatalf("big restored wrong: %v", err)
			}

			// A copy of the pack elsewhere, beside the one in its place:
			// not damage, but named, and neither file is touched.
			data, err := os.ReadFile(home)
			check(t, err)
			check(t, os.WriteFile(away, data, 0o600))
			r = e.run("verify")
			if r.code == 0 || r.code == 4 || !strings.Contains(r.stderr, "no damage found") || !strings.Contains(r.stderr, away) {
				t.Fatalf("verify with a second copy outside its folder: exit %d, want a non-damage failure naming %s\nstderr: %s", r.code, away, r.stderr)
			}
			r = e.run("repair", repair)
			if !strings.Contains(r.stdout+r.stderr, "left "+away+" where it is") {
				t.Fatalf("repair %s with a second copy: exit %d, did not say it left %s\nstdout: %s\nstderr: %s", repair, r.code, away, r.stdout, r.stderr)
			}
			for _, p := range []string{home, away} {
				if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
					t.Fatalf("%s changed by repair: %v", p, err)
				}
			}
		})
	}
}
