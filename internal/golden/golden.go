// Package golden pins encodings to files under testdata/: a change to a
// pinned format fails its test, so formats change only by a new version.
package golden

import (
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// Check compares got with testdata/name, stored as a hex dump so diffs stay
// readable; go test -update rewrites it.
func Check(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	enc := hex.Dump(got)
	if *update {
		if err := os.WriteFile(p, []byte(enc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("golden file: %v (run with -update to create)", err)
	}
	if string(want) != enc {
		t.Errorf("%s: encoding changed; formats are forever: add a new version instead\n got:\n%s\nwant:\n%s", name, enc, want)
	}
}
