package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The tape tier end to end, on an emulated library of small cartridges.

// tapeWriteOut is 'recall tape write --json'.
type tapeWriteOut struct {
	Pool, Set    string
	Points       []string
	Packs        int
	PacksSkipped int `json:"packs_skipped"`
	Tapes        []string
}

// tapeListOut is an element of 'recall tape list --json'.
type tapeListOut struct {
	Barcode  string
	Pool     string
	Set      string
	Sequence int
	State    string
	Expiry   time.Time
	Slot     int
	Points   []string
}

// tapeEnv is a home with a store and an emulated library of 64 MiB
// cartridges with an early-warning zone of 20 MiB, in which a pack fits.
func tapeEnv(t *testing.T, slots string) (*env, string) {
	t.Helper()
	e := newEnv(t)
	e.ok("init", "-q")
	lib := filepath.Join(t.TempDir(), "library")
	e.ok("tape", "library", "add", "lib", "--emulated", lib, "--slots", slots, "--capacity", "48MiB", "--early-warning", "20MiB")
	return e, lib
}

func backupID(t *testing.T, e *env, src string) string {
	t.Helper()
	var p struct{ ID string }
	must(t, json.Unmarshal([]byte(e.ok("backup", "--json", src)), &p))
	return p.ID
}

func tapeWrite(t *testing.T, e *env, args ...string) tapeWriteOut {
	t.Helper()
	var w tapeWriteOut
	must(t, json.Unmarshal([]byte(e.ok(append([]string{"tape", "write", "--json"}, args...)...)), &w))
	return w
}

func tapeList(t *testing.T, e *env, args ...string) []tapeListOut {
	t.Helper()
	var ls []tapeListOut
	must(t, json.Unmarshal([]byte(e.ok(append([]string{"tape", "list", "--json"}, args...)...)), &ls))
	return ls
}

// A point bigger than a cartridge is written to a set (spanning), the
// home is deleted, a new home reads the cartridges in and restores the
// point from tape alone, field by field equal to the source; the same
// with an encrypted pool and its exported key file.
func TestTapeSpanningRestoreOnFreshHome(t *testing.T) {
	requireRoot(t)
	for _, enc := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[enc], func(t *testing.T) {
			e, lib := tapeEnv(t, "6")
			src := filepath.Join(t.TempDir(), "src")
			makeEveryKind(t, src)
			writeRandom(t, filepath.Join(src, "dir/large.bin"), 7, 60<<20)
			want := snapshot(t, src)
			id := backupID(t, e, src)

			pool := []string{"tape", "pool", "create", "p", "--retention", "7y"}
			if enc {
				pool = append(pool, "--encrypt")
			}
			e.ok(pool...)
			w := tapeWrite(t, e, "--pool", "p", id[:12])
			if len(w.Tapes) < 2 || len(w.Points) != 1 || w.Points[0] != id {
				t.Fatalf("write: %+v: want one point on two cartridges or more", w)
			}
			keyFile := filepath.Join(t.TempDir(), "p.key")
			if enc {
				e.vars = []string{"RECALL_PASSWORD=key file secret"}
				e.ok("tape", "key", "export", "--pool", "p", "--to", keyFile)
				e.vars = nil
			}
			must(t, os.RemoveAll(e.home))

			fresh := newEnv(t)
			fresh.ok("tape", "library", "add", "lib", "--emulated", lib)
			if enc {
				// Without the key nothing of the set is read.
				r := fresh.run("tape", "catalog")
				if r.code != 5 || !strings.Contains(r.stderr, "key import") {
					t.Fatalf("catalog without the key: exit %d, %s", r.code, r.stderr)
				}
				fresh.vars = []string{"RECALL_PASSWORD=key file secret"}
				fresh.ok("tape", "key", "import", keyFile)
				fresh.vars = nil
			}
			fresh.ok("tape", "catalog")
			ls := tapeList(t, fresh, "--point", id[:10])
			if len(ls) != len(w.Tapes) {
				t.Fatalf("tape list --point: %+v, want the %d cartridges %v", ls, len(w.Tapes), w.Tapes)
			}
			for i, l := range ls {
				if l.Barcode != w.Tapes[i] || l.Set != w.Set || l.Pool != "p" || l.Sequence != i+1 || !slices.Contains(l.Points, id) {
					t.Errorf("tape list entry %d: %+v; want %s, sequence %d of set %s, holding %s", i, l, w.Tapes[i], i+1, w.Set, id)
				}
				if y := l.Expiry.Year() - time.Now().Year(); y != 7 {
					t.Errorf("cartridge %s expires %s: want in 7 years", l.Barcode, l.Expiry)
				}
			}
			dst := filepath.Join(t.TempDir(), "restored")
			fresh.ok("tape", "restore", id[:12], "--target", dst)
			compareTrees(t, want, snapshot(t, dst))
			if ents, _ := filepath.Glob(filepath.Join(fresh.home, "tape-restore-*")); len(ents) != 0 {
				t.Errorf("staging left behind: %v", ents)
			}
		})
	}
}
