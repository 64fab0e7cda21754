// Package golden pins encodings to files under testdata/: a change to a
// pinned format fails its test, so formats change only by a new version.
package golden

import (
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
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

// Load returns the bytes pinned in testdata/name, parsed back from its hex
// dump: fuzz targets start from the real encodings.
func Load(t testing.TB, name string) []byte {
	t.Helper()
	dump, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("golden file: %v", err)
	}
	var out []byte
	for _, line := range strings.Split(strings.TrimSuffix(string(dump), "\n"), "\n") {
		// "00000010  04 03 ... 08 17  |....|": the offset, then the bytes
		// up to the printable column, which starts at the first '|'.
		hexPart, _, _ := strings.Cut(line, "|")
		fields := strings.Fields(hexPart)
		if len(fields) == 0 {
			continue
		}
		for _, f := range fields[1:] {
			b, err := hex.DecodeString(f)
			if err != nil || len(b) != 1 {
				t.Fatalf("golden file %s: bad byte %q in line %q", name, f, line)
			}
			out = append(out, b[0])
		}
	}
	// The dump is the only description of the bytes, so a parse that does
	// not print back to it exactly is a wrong parse, not a seed.
	if hex.Dump(out) != string(dump) {
		t.Fatalf("golden file %s: not a hex dump this parser reads back exactly", name)
	}
	return out
}
