package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// --store-cache-size bounds the home's cache of a remote store: a fresh home
// given half the room the store's index files, manifests and tree packs
// take in another home's cache restores the same files, with a cache that
// keeps some of them and stays within that room. Given after the command,
// the flag is the global one.
func (f *s3Fixture) cacheSize(t *testing.T) {
	e := f.env(t)
	loc := f.loc("cachesize", "")
	e.ok("init", "--store", loc)
	src := t.TempDir()
	for i := range 3 {
		dir := filepath.Join(src, fmt.Sprint(i))
		must(t, os.MkdirAll(dir, 0o755))
		mixedTree(t, dir, int64(40+i), 1)
		e.ok("backup", "--source", "docs", src)
	}
	want := snapshot(t, src)

	full := f.env(t)
	restoreSame(t, full, "latest", want, "--store", loc)
	all := dirSize(t, filepath.Join(full.home, "cache"))
	bound := all / 2
	small := f.env(t)
	restoreSame(t, small, "latest", want, "--store", loc, "--store-cache-size", fmt.Sprint(bound))
	got := dirSize(t, filepath.Join(small.home, "cache"))
	t.Logf("cache: %d bytes with the default bound, %d with --store-cache-size %d", all, got, bound)
	if got == 0 || got > bound {
		t.Errorf("with --store-cache-size %d the home's cache holds %d bytes (%d with the default bound)", bound, got, all)
	}
	if r := small.run("--store-cache-size", "lots", "points"); r.code != 2 {
		t.Errorf("--store-cache-size lots: exit %d, %q; want 2", r.code, r.stderr)
	}
}
