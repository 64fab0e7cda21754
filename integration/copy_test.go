package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// latestPoint returns the id of the newest point of source in the home
// of e.
func latestPoint(t *testing.T, e *env, source string) string {
	t.Helper()
	var pts []struct {
		ID     string
		Source string
	}
	must(t, json.Unmarshal([]byte(e.ok("points", "--json", "--source", source)), &pts))
	if len(pts) == 0 {
		t.Fatalf("no point of source %s", source)
	}
	return pts[len(pts)-1].ID
}

// A copy killed with SIGKILL at random moments, ten times (runs that end
// before their kill come between), is completed by
// the next run: the copy verifies with --read-data and every point
// restores byte for byte. After each kill the destination is consistent:
// verify finds nothing wrong (a point shows only once all it needs is
// there).
func TestCopyKilled(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	rng := rand.New(rand.NewSource(17))
	// Mixed files: large random ones (incompressible, several packs),
	// compressible text, and many small files.
	docs, media := t.TempDir(), t.TempDir()
	for i := 0; i < 12; i++ {
		writeRandom(t, filepath.Join(media, fmt.Sprintf("video%d", i)), int64(i), 16<<20)
	}
	for d := 0; d < 6; d++ {
		dir := filepath.Join(docs, fmt.Sprintf("d%d", d))
		must(t, os.MkdirAll(dir, 0o755))
		for i := 0; i < 150; i++ {
			writeRandom(t, filepath.Join(dir, fmt.Sprintf("f%d", i)), int64(d*1000+i), 500+rng.Intn(40000))
		}
		var text bytes.Buffer
		for text.Len() < 8<<20 {
			fmt.Fprintf(&text, "line %d of a report that compresses well, %d\n", text.Len(), rng.Intn(100))
		}
		must(t, os.WriteFile(filepath.Join(dir, "report.txt"), text.Bytes(), 0o644))
	}
	want := map[string]map[string]entry{}
	backup := func(source, dir string) {
		e.ok("backup", "--source", source, dir)
		want[latestPoint(t, e, source)] = snapshot(t, dir)
	}
	backup("media", media)
	backup("docs", docs)
	writeRandom(t, filepath.Join(media, "video3"), 99, 16<<20)
	writeRandom(t, filepath.Join(media, "new"), 100, 5<<20)
	backup("media", media)

	// How long a whole copy takes, to kill inside one.
	start := time.Now()
	e.ok("copy", "--from", e.home, "--to", filepath.Join(t.TempDir(), "timing"))
	full := time.Since(start)

	off := filepath.Join(t.TempDir(), "offsite")
	dst := &env{t: t, home: off}
	// Kills land at a random moment within the length of a whole copy of
	// what there is to copy: at first the timed copy; once a run finishes
	// before its kill (the copy is then complete), new data is backed up
	// so the next run has work, and the window becomes what that run took.
	// The moment is drawn from the first four fifths of the window: drawn
	// from all of it past a fixed 50 ms, a machine whose copies of the new
	// data took 60-100 ms saw most runs end before their kill (2 kills in
	// 25 runs).
	extra := t.TempDir()
	window := full
	killed, finished := 0, 0
	for i := 0; killed < 10 && i < 25; i++ {
		cmd := e.command("copy", "-q", "--from", e.home, "--to", off)
		began := time.Now()
		must(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		at := 10*time.Millisecond + time.Duration(rng.Int63n(int64(min(2*time.Second, max(window, 50*time.Millisecond))*4/5)))
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("copy %d failed before it was killed: %v", i, err)
			}
			finished++
			window = time.Since(began)
			for k := 0; k < 2; k++ {
				writeRandom(t, filepath.Join(extra, fmt.Sprintf("part%d", k)), int64(1000+10*i+k), 16<<20)
			}
			backup("extra", extra)
		case <-time.After(at):
			must(t, cmd.Process.Signal(syscall.SIGKILL))
			<-done
			killed++
		}
		if _, err := os.Stat(filepath.Join(off, "store", "config")); err != nil {
			continue // killed before the store was made
		}
		if r := dst.run("verify"); r.code != 0 {
			t.Fatalf("after kill %d: verify of the copy: exit %d\n%s%s", i, r.code, r.stdout, r.stderr)
		}
	}
	t.Logf("whole copy %v; %d copies killed, %d finished before their kill", full, killed, finished)
	if killed < 10 {
		t.Errorf("only %d copies were killed while they ran, in %d runs", killed, killed+finished)
	}

	out := e.ok("copy", "--json", "-q", "--from", e.home, "--to", off)
	var rep struct {
		Points  []struct{ ID string }
		Present int `json:"points_present"`
		Failed  []any
	}
	must(t, json.Unmarshal([]byte(out), &rep))
	if len(rep.Points)+rep.Present != len(want) || len(rep.Failed) != 0 {
		t.Fatalf("the last copy: %s", out)
	}
	again := e.ok("copy", "--json", "-q", "--from", e.home, "--to", off)
	if !strings.Contains(again, `"blobs_copied":0`) || !strings.Contains(again, fmt.Sprintf(`"points_present":%d`, len(want))) {
		t.Errorf("a copy after a complete one copied something: %s", again)
	}
	dst.ok("verify", "--read-data")
	// What killed copies finished was adopted by the next, not copied
	// again: the copy holds about what the source does.
	if have, of := dirSize(t, filepath.Join(off, "store", "packs")), dirSize(t, filepath.Join(e.home, "store", "packs")); have > of+of/10 {
		t.Errorf("the copy's packs hold %d bytes, the source's %d: blobs were copied again", have, of)
	}
	for id, snap := range want {
		target := filepath.Join(t.TempDir(), "r")
		dst.ok("restore", id, "--target", target)
		compareTrees(t, snap, snapshot(t, target))
	}
}

// Refusals name both stores and say what to do; nothing is written.
func TestCopyRefusals(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "f"), 1, 100000)
	e.ok("backup", "--source", "s", src)
	other := newEnv(t)
	other.ok("init")
	before := storeListing(t, other.home)
	for _, c := range []struct {
		to   string
		code int
		msg  string
	}{
		{other.home, 1, "have different keys"},
		{e.home + "/store", 1, "same store"},
	} {
		r := e.run("copy", "--from", e.home, "--to", c.to)
		if r.code != c.code || !strings.Contains(r.stderr, c.msg) {
			t.Errorf("copy to %s: exit %d, %q; want %d and %q", c.to, r.code, r.stderr, c.code, c.msg)
		}
	}
	if after := storeListing(t, other.home); after != before {
		t.Errorf("a refused copy wrote to the destination:\n%s\nthen\n%s", before, after)
	}
	r := e.run("copy", "--from", e.home, "--to", other.home)
	if !strings.Contains(r.stderr, e.home) || !strings.Contains(r.stderr, other.home) || !strings.Contains(r.stderr, "new, empty directory") {
		t.Errorf("the refusal names neither store or says nothing to do: %q", r.stderr)
	}
}

// An encrypted store is copied without its passphrase, sealed, and the
// copy opens and verifies with the passphrase; with it, a later copy
// copies blob by blob into the same destination.
func TestCopySealed(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "f"), 1, 3<<20)
	e.vars = []string{"RECALL_PASSWORD=right"}
	e.ok("init", "--encrypt")
	e.ok("backup", "--source", "s", src)
	off := filepath.Join(t.TempDir(), "offsite")
	e.vars = nil
	out := e.ok("copy", "--json", "-q", "--from", e.home, "--to", off)
	if !strings.Contains(out, `"sealed":true`) || !strings.Contains(out, `"created":true`) {
		t.Errorf("copy without the passphrase: %s", out)
	}
	if r := e.run("copy", "--from", e.home, "--to", off, "--source", "s"); r.code != 5 {
		t.Errorf("--source without the passphrase: exit %d, %s", r.code, r.stderr)
	}
	e.vars = []string{"RECALL_PASSWORD=right"}
	writeRandom(t, filepath.Join(src, "g"), 2, 2<<20)
	e.ok("backup", "--source", "s", src)
	out = e.ok("copy", "--json", "-q", "--from", e.home, "--to", off, "--source", "s")
	if !strings.Contains(out, `"sealed":false`) || !strings.Contains(out, `"points_present":1`) {
		t.Errorf("copy with the passphrase: %s", out)
	}
	dst := &env{t: t, home: off, vars: e.vars}
	dst.ok("verify", "--read-data")
	target := filepath.Join(t.TempDir(), "r")
	dst.ok("restore", "latest", "--source", "s", "--target", target)
	compareTrees(t, snapshot(t, src), snapshot(t, target))
}

// A copy from a store with a damaged blob gives its advice once, in one
// sentence. (Fix: the command appended a second, different advice to the
// engine's, after "none was;".)
func TestCopyDamagedSourceAdviceOnce(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(src, 0o755))
	writeRandom(t, filepath.Join(src, "f"), 3, 3_000_000)
	e.ok("backup", "--source", "s", src)
	packs, _ := filepath.Glob(filepath.Join(e.home, "store", "packs", "*", "*"))
	big, size := "", int64(0)
	for _, p := range packs {
		if fi, err := os.Stat(p); err == nil && fi.Size() > size {
			big, size = p, fi.Size()
		}
	}
	f, err := os.OpenFile(big, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("XXXXXXXX"), 1000)
	must(t, err)
	f.Close()
	r := e.run("copy", "--from", e.home, "--to", filepath.Join(t.TempDir(), "dst"))
	if r.code != 4 || strings.Count(r.stderr, "copy again") != 1 || !strings.Contains(r.stderr, "no point was copied") {
		t.Errorf("copy from a damaged store: exit %d\n%s", r.code, r.stderr)
	}
}
