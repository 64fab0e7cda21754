package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Fix (verify after a pack was lost and the index rebuilt): the blobs no
// pack holds any more were summed up as "more in pack  (...)", a blank
// where the pack's name goes.
func TestVerifySummaryOfBlobsInNoPack(t *testing.T) {
	home, src, run := cliHome(t)
	for i := range blobLinesPerPack + 5 {
		b := make([]byte, 3000)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(src, fmt.Sprint("f", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run("init")
	run("backup", src)
	packs, _ := filepath.Glob(filepath.Join(home, "store", "packs", "*", "*"))
	for _, p := range packs {
		if fi, err := os.Stat(p); err == nil && fi.Size() > 30_000 {
			os.Remove(p) // the data pack
		}
	}
	runRecall(t, "--home", home, "repair", "index") // damage left: exit 4
	out, err := runRecall(t, "--home", home, "verify")
	if err == nil || !strings.Contains(out, "more in no pack") || strings.Contains(out, "pack  (") {
		t.Errorf("verify: %v\n%s", err, out)
	}
}
