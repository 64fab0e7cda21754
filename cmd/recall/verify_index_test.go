package main

import (
	"encoding/json"
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
