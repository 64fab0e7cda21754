package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/recall-backup/recall/engine"
)

// TestVerifyIndexProblemExit4: a corrupt index file is a store problem:
// verify exits 4, names the file in text and in --json store_problems, and
// says to run 'recall repair index'; after it, verify exits 0.
func TestVerifyIndexProblemExit4(t *testing.T) {
	home := repairHome(t)
	idx := filepath.Join(engine.StoreDir(home), "index")
	ents, err := os.ReadDir(idx)
	if err != nil || len(ents) == 0 {
		t.Fatalf("index files: %v %v", ents, err)
	}
	name := ents[0].Name()
	flipAt(t, filepath.Join(idx, name), 20)

	out, err := runRecall(t, "--home", home, "verify")
	if exitCode(err) != exitDamaged {
		t.Errorf("verify: %v (exit %d), want exit 4\n%s", err, exitCode(err), out)
	}
	if want := "damaged store file: index file " + name; !strings.Contains(out, want) {
		t.Errorf("verify prints\n%s\nwant %q", out, want)
	}
	if err == nil || !strings.Contains(err.Error(), "'recall repair index'") {
		t.Errorf("verify error %v: want it to say 'recall repair index'", err)
	}

	out, err = runRecall(t, "--home", home, "verify", "--json")
	if exitCode(err) != exitDamaged {
		t.Errorf("verify --json: %v (exit %d), want exit 4", err, exitCode(err))
	}
	var rep engine.VerifyReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(rep.Store) != 1 || !strings.Contains(rep.Store[0], name) {
		t.Errorf("store_problems %q, want index file %s", rep.Store, name)
	}

	if out, err := runRecall(t, "--home", home, "repair", "index"); err != nil {
		t.Fatalf("repair index: %v\n%s", err, out)
	}
	if out, err := runRecall(t, "--home", home, "verify"); err != nil {
		t.Errorf("verify after repair index: %v\n%s", err, out)
	}
}

// A pack cut short damages every blob in it: verify lists a few of them
// per pack and says how many more, -v and --json list every one; every
// damaged file is listed either way.
func TestVerifyDamagedBlobLines(t *testing.T) {
	home, src, run := cliHome(t)
	run("init")
	for i := range 40 { // 40 small files: 40 blobs in one pack
		b := make([]byte, 20<<10)
		for j := range b {
			b[j] = byte(i*131 + j*j%251)
		}
		if err := os.WriteFile(filepath.Join(src, "f"+strings.Repeat("x", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run("backup", "--source", "s", src)
	var pack string
	var size int64
	filepath.WalkDir(filepath.Join(engine.StoreDir(home), "packs"), func(p string, d os.DirEntry, err error) error {
		if fi, _ := d.Info(); err == nil && d.Type().IsRegular() && fi.Size() > size {
			pack, size = p, fi.Size()
		}
		return nil
	})
	if err := os.Truncate(pack, 4096); err != nil {
		t.Fatal(err)
	}
	count := func(out, s string) int { return strings.Count(out, s) }
	out, err := runRecall(t, "--home", home, "verify")
	if exitCode(err) != exitDamaged {
		t.Fatalf("verify: %v, want exit 4\n%s", err, out)
	}
	id := filepath.Base(pack)
	files := count(out, "damaged: point") // one blob each
	if n := count(out, "damaged blob "); n != blobLinesPerPack || !strings.Contains(out, fmt.Sprintf("%d more in pack %s", files-blobLinesPerPack, id)) || files < 10 {
		t.Fatalf("verify lists %d damaged blobs (want %d and a count of the rest) and %d damaged files (want 10 or more):\n%s", n, blobLinesPerPack, files, out)
	}
	out, _ = runRecall(t, "--home", home, "verify", "-v")
	if n := count(out, "damaged blob "); n != files || strings.Contains(out, "more in pack") {
		t.Fatalf("verify -v lists %d damaged blobs, want every one (%d):\n%s", n, files, out)
	}
	out, _ = runRecall(t, "--home", home, "verify", "--json")
	var rep struct {
		Blobs []json.RawMessage `json:"damaged_blobs"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Blobs) != files {
		t.Fatalf("verify --json: %d damaged blobs (%v), want every one", len(rep.Blobs), err)
	}
}

// verify --read-data-share without --read-data-run takes the run after
// the last one this home made: runs in a row read every pack, where each
// read the same share (run 0) and the others never.
func TestVerifyShareRunsRotate(t *testing.T) {
	_, src, run := cliHome(t)
	run("init")
	for i := range 6 {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprint(i)), bytes.Repeat([]byte{byte(i)}, 1<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		run("backup", "-q", "--source", "s", src)
	}
	type summary struct {
		PacksRead int     `json:"packs_read"`
		Run       *uint64 `json:"read_data_run"`
		Runs      int     `json:"read_data_runs"`
	}
	last := func(out string) summary {
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var s summary
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil {
			t.Fatalf("verify --json: %v\n%s", err, out)
		}
		return s
	}
	all := last(run("verify", "--read-data", "--json", "-q")).PacksRead
	read := 0
	for k := range 4 {
		s := last(run("verify", "--read-data-share", "25%", "--json", "-q"))
		if s.Run == nil || *s.Run != uint64(k) || s.Runs != 4 {
			t.Fatalf("run %d: %+v", k, s)
		}
		read += s.PacksRead
	}
	if all < 4 || read != all {
		t.Errorf("4 runs of 25%% read %d packs, the store has %d", read, all)
	}
	// An explicit run number is taken as given, and does not move the count.
	if s := last(run("verify", "--read-data-share", "25%", "--read-data-run", "9", "--json", "-q")); s.Run == nil || *s.Run != 9 {
		t.Errorf("--read-data-run 9: %+v", s)
	}
	if s := last(run("verify", "--read-data-share", "25%", "--json", "-q")); s.Run == nil || *s.Run != 4 {
		t.Errorf("after an explicit run: %+v, want run 4", s)
	}
	// Without --json the summary names the run, and the count moves too.
	if out := run("verify", "--read-data-share", "25%"); !strings.Contains(out, "run 5, share 2 of 4") {
		t.Errorf("verify --read-data-share 25%% after run 4: %q, want run 5, share 2 of 4", out)
	}
}

// The advice for packs verify could not read follows why: their owner and
// mode, or the disk under them.
func TestUnreadableAdvice(t *testing.T) {
	for _, tc := range []struct {
		why       []string
		want, not string
	}{
		{[]string{"open /s/packs/ab/ab12: permission denied"}, "owner or mode", "check the disk"},
		{[]string{"read /s/packs/ab/ab12: input/output error"}, "check the disk", "owner or mode"},
		{nil, "", "then verify again"},
	} {
		rep := &engine.VerifyReport{Unreadable: map[string]string{}}
		for i, w := range tc.why {
			rep.Unreadable[fmt.Sprint(i)] = w
		}
		got := unreadableAdvice(rep, "/s")
		if !strings.Contains(got, tc.want) || tc.not != "" && strings.Contains(got, tc.not) {
			t.Errorf("advice for %q: %q", tc.why, got)
		}
	}
}
