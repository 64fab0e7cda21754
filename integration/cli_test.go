package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestUsageErrorsExit2(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	dst := t.TempDir()
	for _, args := range [][]string{
		{"nosuch"},
		{"help", "nosuch"},
		{"share", "nosuch"},
		{"jobs", "--last", "abc"},
		{"jobs", "--last", "-5"},
		{"jobs", "y"},
		{"points", "x"},
		{"verify", "extra"},
		{"init", "x"},
		{"version", "x"},
		{"backup", dst, dst},
		{"restore", "latest", "extra", "--target", dst},
		{"forget"}, // several POINTs are fine, none is not
		{"umount", dst, dst},
		{"share", "samba", "--source", "s", "x"},
		{"restore", "latest"}, // --target missing
		{"points", "--no-such-flag"},
	} {
		before := storeListing(t, e.home)
		r := e.run(args...)
		if r.code != 2 {
			t.Errorf("recall %s: exit %d, want 2 (bad usage)\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
		if strings.Contains(r.stderr, "panic") {
			t.Errorf("recall %s panicked: %s", strings.Join(args, " "), r.stderr)
		}
		if after := storeListing(t, e.home); after != before {
			t.Errorf("recall %s changed the home:\n%s\n----\n%s", strings.Join(args, " "), before, after)
		}
	}
}

// A --home that holds no store is never written to, by any command.
func TestHomeWithoutStoreUntouched(t *testing.T) {
	for _, args := range [][]string{
		{"points"},
		{"jobs"},
		{"verify"},
		{"verify", "--read-data"},
		{"restore", "latest", "--target", "TMP/out"},
		{"backup", "TMP"},
		{"forget", "latest"},
		{"mount", "TMP"},
		{"tape", "list"},
		{"tape", "catalog"},
		{"tape", "restore", "abc", "--target", "TMP/out"},
	} {
		t.Run(args[0], func(t *testing.T) {
			e := newEnv(t)
			must(t, os.Mkdir(e.home, 0o755))
			writeRandom(t, filepath.Join(e.home, "somebody-elses.txt"), 1, 100)
			tmp := t.TempDir()
			for i := range args {
				args[i] = strings.Replace(args[i], "TMP", tmp, 1)
			}
			before := storeListing(t, e.home)
			r := e.run(args...)
			if r.code == 0 || !strings.Contains(r.stderr, "no store here") || !strings.Contains(r.stderr, "recall init") {
				t.Errorf("recall %s in a home with no store: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
			}
			if after := storeListing(t, e.home); after != before {
				t.Errorf("recall %s wrote into a home with no store:\n%s\n----\n%s", strings.Join(args, " "), before, after)
			}
			if _, err := os.Stat(filepath.Join(tmp, "out")); err == nil {
				t.Errorf("restore created its target")
			}
		})
	}
}

// corruptCatalogFile overwrites 24 KiB at offset 8192 of catalog.db with
// random bytes: the damage that made bbolt panic ("invalid freelist page").
func corruptCatalogFile(t *testing.T, home string, seed int64) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(home, "catalog.db"), os.O_WRONLY, 0)
	must(t, err)
	junk := make([]byte, 24<<10)
	rand.New(rand.NewSource(seed)).Read(junk)
	_, err = f.WriteAt(junk, 8192)
	must(t, err)
	must(t, f.Close())
}

func damagedCatalogs(t *testing.T, home string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(home, "catalog.db.damaged-*"))
	must(t, err)
	return m
}

// A damaged catalog never stands between a user and the store: commands
// that record history move it aside (warning, naming both files) and
// carry on; commands that need no history never open it.
func TestCorruptCatalog(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	want := writeRandom(t, filepath.Join(src, "f"), 1, 300_000)
	e.ok("init")
	for i := 0; i < 5; i++ {
		e.ok("backup", "--source", "s", src)
	}
	catalog := filepath.Join(e.home, "catalog.db")

	// points never opens the catalog: it works, and leaves the file be.
	corruptCatalogFile(t, e.home, 1)
	r := e.run("points")
	if r.code != 0 || strings.Contains(r.stderr, "panic") || strings.Count(r.stdout, "\n") != 6 {
		t.Fatalf("points with a damaged catalog: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if len(damagedCatalogs(t, e.home)) != 0 {
		t.Fatalf("points touched the catalog")
	}

	seen := map[string]bool{}
	for i, args := range [][]string{
		{"restore", "latest", "--source", "s", "--target", filepath.Join(t.TempDir(), "out")},
		{"verify", "--read-data"},
		{"backup", "--source", "s", src},
		{"jobs"},
	} {
		if i > 0 {
			corruptCatalogFile(t, e.home, int64(i+1))
		}
		r := e.run(args...)
		if r.code != 0 || strings.Contains(r.stderr, "panic") {
			t.Fatalf("%s with a damaged catalog: exit %d\n%s%s", args[0], r.code, r.stdout, r.stderr)
		}
		var newest []string
		for _, a := range damagedCatalogs(t, e.home) {
			if !seen[a] {
				newest = append(newest, a)
				seen[a] = true
			}
		}
		if len(newest) != 1 {
			t.Fatalf("%s: want the catalog moved aside once, got %v\n%s", args[0], newest, r.stderr)
		}
		if !strings.Contains(r.stderr, "warning: catalog "+catalog) || !strings.Contains(r.stderr, newest[0]) {
			t.Errorf("%s: the warning should name %s and %s:\n%s", args[0], catalog, newest[0], r.stderr)
		}
		if _, err := os.Stat(catalog); err != nil {
			t.Errorf("%s: no fresh catalog: %v", args[0], err)
		}
		if args[0] == "restore" && string(mustRead(t, filepath.Join(args[len(args)-1], "f"))) != string(want) {
			t.Errorf("restore with a damaged catalog: content differs")
		}
	}
	// The fresh catalog records what runs next.
	e.ok("verify")
	out := e.ok("jobs", "--json")
	var jobs []struct{ Kind, Status string }
	must(t, json.Unmarshal([]byte(out), &jobs))
	if len(jobs) != 1 || jobs[0].Kind != "verify" || jobs[0].Status != "ok" {
		t.Errorf("fresh catalog: %s", out)
	}
}

func TestCorruptCatalogMount(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	src := t.TempDir()
	want := writeRandom(t, filepath.Join(src, "f"), 1, 100_000)
	e.ok("init")
	e.ok("backup", "--source", "s", src)
	corruptCatalogFile(t, e.home, 1)
	mnt := t.TempDir()
	e.mount(mnt)
	if got := mustRead(t, filepath.Join(mnt, "s/latest/f")); string(got) != string(want) {
		t.Errorf("file read through the mount differs")
	}
	if len(damagedCatalogs(t, e.home)) != 0 {
		t.Errorf("mount opened the catalog")
	}
}

// packFiles lists the finished packs of a store.
func packFiles(t *testing.T, home string) map[string]bool {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(home, "store/packs/*/*"))
	must(t, err)
	out := map[string]bool{}
	for _, p := range m {
		out[p] = true
	}
	return out
}

// tempFiles lists what writers leave while they work: packs being written
// and atomic writes not yet renamed.
func tempFiles(t *testing.T, home string) []string {
	t.Helper()
	var out []string
	for _, pat := range []string{"store/tmp/*", "store/index/.tmp-*", "store/points/.tmp-*", "store/packs/*/.tmp-*"} {
		m, err := filepath.Glob(filepath.Join(home, pat))
		must(t, err)
		out = append(out, m...)
	}
	return out
}

// SIGTERM and SIGINT stop a backup cleanly: exit 143 and 130, a message
// that says what happens to the work done, no temp files, and the next
// backup reuses the packs that were finished.
func TestBackupInterrupted(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	for i := 0; i < 16; i++ {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("big%02d", i)), int64(i), 32<<20)
	}
	e.ok("init")
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		had := packFiles(t, e.home)
		cmd := e.command("backup", "--source", "s", src)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		must(t, cmd.Start())
		// Signal once a new pack is finished, so there is work to keep.
		waitFor(t, "a finished pack", func() bool {
			for p := range packFiles(t, e.home) {
				if !had[p] {
					return true
				}
			}
			return false
		})
		must(t, cmd.Process.Signal(sig))
		err := cmd.Wait()
		var ee *exec.ExitError
		code := 0
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if code == 0 {
			t.Fatalf("the backup finished before %v reached it; give it more data", sig)
		}
		name := map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[sig]
		if code != 128+int(sig) || !strings.Contains(errb.String(), "backup interrupted by "+name) ||
			!strings.Contains(errb.String(), "finished so far are kept and the next backup reuses them") ||
			strings.Contains(errb.String(), "signal received") {
			t.Errorf("%s: exit %d, want %d\n%s%s", name, code, 128+int(sig), out.String(), errb.String())
		}
		if left := tempFiles(t, e.home); len(left) > 0 {
			t.Errorf("%s left temp files: %v", name, left)
		}
		if pts := e.ok("points", "--json"); strings.TrimSpace(pts) != "[]" {
			t.Errorf("an interrupted backup made a point: %s", pts)
		}
	}
	out := e.ok("backup", "--json", "--source", "s", src)
	var p struct{ Stats map[string]int64 }
	must(t, json.Unmarshal(summaryLine(t, out), &p)) // a long backup prints status lines first
	if p.Stats["new_bytes"] >= p.Stats["bytes"] || p.Stats["new_bytes"] == 0 && p.Stats["bytes"] == 0 {
		t.Errorf("the backup after the interrupted ones reused nothing: %v", p.Stats)
	}
	e.ok("verify", "--read-data")
	dst := filepath.Join(t.TempDir(), "out")
	e.ok("restore", "latest", "--source", "s", "--target", dst)
	compareTrees(t, snapshot(t, src), snapshot(t, dst))
}
