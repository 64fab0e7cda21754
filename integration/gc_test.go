package integration

import (
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

// gcJSON is the part of 'recall gc --json' the tests read.
type gcJSON struct {
	Points       int   `json:"points"`
	PacksDeleted int   `json:"packs_deleted"`
	PacksHidden  int   `json:"packs_hidden"`
	Freed        int64 `json:"freed"`
	Pending      bool  `json:"pending"`
}

func (e *env) gc(args ...string) gcJSON {
	e.t.Helper()
	var r gcJSON
	out := e.ok(append([]string{"gc", "--json", "--index-grace", "0"}, args...)...)
	must(e.t, json.Unmarshal([]byte(out), &r))
	return r
}

// packsSize is the size of a store's pack files.
func packsSize(t *testing.T, home string) int64 {
	t.Helper()
	var n int64
	must(t, filepath.Walk(filepath.Join(home, "store/packs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return err
	}))
	return n
}

// pointIDs lists the points of a store, oldest first.
func (e *env) pointIDs() []string {
	e.t.Helper()
	var pts []struct {
		ID   string    `json:"id"`
		Time time.Time `json:"time"`
	}
	must(e.t, json.Unmarshal([]byte(e.ok("points", "--json")), &pts))
	var ids []string
	for _, p := range pts {
		ids = append(ids, p.ID)
	}
	return ids
}

// kill -9 of 'recall gc' at random moments, 20 times: after each kill the
// store verifies clean reading every blob, and the next gc finishes what
// the killed one left; at the end the store holds what a fresh store of
// the same point holds, within 10%.
func TestGCKill9(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	rng := rand.New(rand.NewSource(7))
	for i := 0; i < 8; i++ {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("f%d", i)), int64(i), 1<<20+rng.Intn(1<<20))
	}
	e.ok("init")
	e.ok("backup", "--source", "s", src)
	// How long a gc with work to do takes here, to land kills inside one.
	writeRandom(t, filepath.Join(src, "f0"), 99, 2<<20)
	e.ok("backup", "--source", "s", src)
	e.ok("forget", e.pointIDs()[0])
	start := time.Now()
	if r := e.gc(); r.PacksDeleted == 0 {
		t.Fatalf("the first gc deleted nothing: %+v", r)
	}
	full := time.Since(start)
	killed := 0
	for i := 0; i < 20; i++ {
		// New data, then the oldest points go: each gc has packs to hide,
		// delete and rewrite.
		for j := 0; j < 3; j++ {
			writeRandom(t, filepath.Join(src, fmt.Sprintf("f%d", rng.Intn(8))), int64(100+3*i+j), 1<<20+rng.Intn(1<<20))
		}
		e.ok("backup", "--source", "s", src)
		if ids := e.pointIDs(); len(ids) > 2 {
			for _, id := range ids[:len(ids)-2] {
				e.ok("forget", id)
			}
		}
		cmd := e.command("gc", "--index-grace", "0")
		must(t, cmd.Start())
		time.Sleep(time.Duration(rng.Int63n(int64(full)*2 + 1)))
		if cmd.Process.Signal(syscall.SIGKILL) == nil {
			killed++
		}
		cmd.Wait()
		if r := e.run("verify", "--read-data"); r.code != 0 {
			t.Fatalf("after kill %d: verify exit %d\n%s%s", i, r.code, r.stdout, r.stderr)
		}
	}
	// The next gc finishes the work: nothing is left pending, and one more
	// finds nothing to do.
	if r := e.gc(); r.Pending {
		t.Fatalf("gc after the kills left a plan pending: %+v", r)
	}
	if r := e.gc(); r.PacksDeleted != 0 || r.PacksHidden != 0 {
		t.Errorf("a second gc still found work: %+v", r)
	}
	e.ok("verify", "--read-data")
	ids := e.pointIDs()
	for _, id := range ids[:len(ids)-1] {
		e.ok("forget", id)
	}
	// The defaults: packs half dead are rewritten, then the most-dead
	// others until at most 5% of the live bytes stay dead.
	e.gc()
	e.ok("verify", "--read-data")
	got := packsSize(t, e.home)
	fresh := newEnv(t)
	fresh.ok("init")
	fresh.ok("backup", "--source", "s", src)
	want := packsSize(t, fresh.home)
	if got > want+want/10 {
		t.Errorf("after forgetting all but one point and gc the packs hold %d bytes; a fresh store of that point holds %d", got, want)
	}
	out := filepath.Join(t.TempDir(), "out")
	e.ok("restore", "latest", "--target", out)
	for i := 0; i < 8; i++ {
		a, _ := os.ReadFile(filepath.Join(src, fmt.Sprintf("f%d", i)))
		b, _ := os.ReadFile(filepath.Join(out, fmt.Sprintf("f%d", i)))
		if string(a) != string(b) {
			t.Fatalf("f%d restored wrong after gc", i)
		}
	}
	t.Logf("%d kills of gc (a gc takes %v); %d bytes of packs, fresh store %d", killed, full, got, want)
}

// gc --dry-run changes nothing and says what gc then does; the text
// output names what was deleted and freed.
func TestGCDryRunAndOutput(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "f"), 1, 3<<20)
	e.ok("init")
	e.ok("backup", "--source", "s", src)
	writeRandom(t, filepath.Join(src, "f"), 2, 3<<20)
	e.ok("backup", "--source", "s", src)
	e.ok("forget", e.pointIDs()[0])
	before := packsSize(t, e.home)
	dry := e.gc("--dry-run")
	if after := packsSize(t, e.home); after != before {
		t.Fatalf("gc --dry-run changed the packs: %d -> %d bytes", before, after)
	}
	if dry.Points != 1 || dry.PacksDeleted == 0 || dry.Freed <= 0 {
		t.Fatalf("gc --dry-run: %+v", dry)
	}
	out := e.ok("gc")
	for _, want := range []string{"deleted: ", "freed: ", "marked: "} {
		if !strings.Contains(out, want) {
			t.Errorf("gc output lacks %q:\n%s", want, out)
		}
	}
	if got := before - packsSize(t, e.home); got != dry.Freed {
		t.Errorf("gc freed %d bytes, the dry run said %d", got, dry.Freed)
	}
	e.ok("verify", "--read-data")
}

// Bad usage exits 2 and changes nothing; a home with no store is never
// written to.
func TestGCUsage(t *testing.T) {
	e := newEnv(t)
	must(t, os.Mkdir(e.home, 0o755))
	before := storeListing(t, e.home)
	if r := e.run("gc"); r.code == 0 || !strings.Contains(r.stderr, "no store here") {
		t.Errorf("gc in a home with no store: exit %d\n%s", r.code, r.stderr)
	}
	if after := storeListing(t, e.home); after != before {
		t.Errorf("gc wrote into a home with no store:\n%s\n----\n%s", before, after)
	}
	e.ok("init")
	before = storeListing(t, e.home)
	for _, args := range [][]string{{"gc", "extra"}, {"gc", "--repack-threshold", "0"}, {"gc", "--max-unused", "lots"}, {"gc", "--max-unused", "-5%"}, {"gc", "--no-such-flag"}} {
		if r := e.run(args...); r.code != 2 {
			t.Errorf("recall %s: exit %d, want 2\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	if after := storeListing(t, e.home); after != before {
		t.Errorf("bad gc usage changed the home:\n%s\n----\n%s", before, after)
	}
}
