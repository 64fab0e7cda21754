package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCodecChoice: a store inited with s2 stores with s2, a backup may
// choose another codec, points --json says which each used, and every
// point restores exactly and verifies clean.
func TestCodecChoice(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "--compression", "s2")
	cfg := string(mustRead(t, filepath.Join(e.home, "store", "config")))
	if !strings.Contains(cfg, `"compression": "s2"`) {
		t.Errorf("store config does not name s2:\n%s", cfg)
	}
	src := filepath.Join(t.TempDir(), "src")
	var log strings.Builder
	for i := range 40000 {
		fmt.Fprintf(&log, "2026-11-29 12:%02d:%02d worker-%d request %d served from cache\n", i/60%60, i%60, i%7, i)
	}
	mustWrite(t, filepath.Join(src, "app.log"), []byte(log.String()), 0o644)
	mustWrite(t, filepath.Join(src, "image.bin"), randBytes(1, 700_000), 0o644)
	mustWrite(t, filepath.Join(src, "etc", "small.conf"), []byte(strings.Repeat("key = value\n", 50)), 0o600)

	type point struct {
		ID          string
		Compression string
		Stats       map[string]int64
	}
	backup := func(args ...string) point {
		var p point
		must(t, json.Unmarshal([]byte(e.ok(append(append([]string{"backup", "--json", "--source", "s"}, args...), src)...)), &p))
		return p
	}
	var want []map[string]entry
	var pts []point
	for i, args := range [][]string{nil, {"--compression", "zstd"}, {"--compression", "off"}} {
		// Each run changes the log, so each stores new blobs.
		mustWrite(t, filepath.Join(src, "app.log"), []byte(fmt.Sprintf("run %d\n%s", i, log.String())), 0o644)
		pts = append(pts, backup(args...))
		want = append(want, snapshot(t, src))
	}
	wantCodec := []string{"s2", "zstd", "off"}
	for i, p := range pts {
		if p.Compression != wantCodec[i] {
			t.Errorf("backup %d: compression %q, want %q", i, p.Compression, wantCodec[i])
		}
	}
	if s := pts[0].Stats; s["stored_bytes"]*2 > s["new_bytes"] {
		t.Errorf("s2 backup stored %d bytes for %d new: the log was not compressed", s["stored_bytes"], s["new_bytes"])
	}
	if s := pts[2].Stats; s["stored_bytes"] < s["new_bytes"] {
		t.Errorf("compression off stored %d bytes for %d new", s["stored_bytes"], s["new_bytes"])
	}

	var listed []point
	must(t, json.Unmarshal([]byte(e.ok("points", "--json")), &listed))
	if len(listed) != 3 {
		t.Fatalf("points --json lists %d points, want 3", len(listed))
	}
	for i, p := range listed {
		if p.ID != pts[i].ID || p.Compression != wantCodec[i] {
			t.Errorf("points --json: point %d is %s with compression %q, want %s with %q", i, p.ID, p.Compression, pts[i].ID, wantCodec[i])
		}
	}
	// A backup with another codec leaves the store's default as it was.
	if cfg2 := string(mustRead(t, filepath.Join(e.home, "store", "config"))); cfg2 != cfg {
		t.Errorf("backups changed the store config:\n%s\nwas\n%s", cfg2, cfg)
	}

	for i, p := range pts {
		dst := filepath.Join(t.TempDir(), "restore")
		e.ok("restore", p.ID, "--target", dst)
		compareTrees(t, want[i], snapshot(t, dst))
	}
	e.ok("verify", "--read-data")
}

func TestCodecBadName(t *testing.T) {
	e := newEnv(t)
	r := e.run("init", "--compression", "bogus")
	if r.code != 2 || !strings.Contains(r.stderr, "zstd, s2 or off") {
		t.Errorf("init --compression bogus: exit %d, stderr %q; want 2 naming zstd, s2 or off", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(e.home, "store", "config")); err == nil {
		t.Error("init --compression bogus created a store")
	}
	e.ok("init")
	r = e.run("backup", "--compression", "lz4", t.TempDir())
	if r.code != 2 || !strings.Contains(r.stderr, "zstd, s2 or off") {
		t.Errorf("backup --compression lz4: exit %d, stderr %q; want 2 naming zstd, s2 or off", r.code, r.stderr)
	}
	if out := e.ok("points", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("a refused backup left points: %s", out)
	}
}
