package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// forget -q prints nothing; --json still prints the point, and without
// -q the sentence is there.
func TestQuietForget(t *testing.T) {
	dir := t.TempDir()
	home, src := filepath.Join(dir, "home"), filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := runRecall(t, append([]string{"--home", home}, args...)...)
		if err != nil {
			t.Fatalf("recall %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	run("-q", "init")
	for range 3 {
		run("-q", "backup", "--source", "s", src)
	}
	if out := run("-q", "forget", "latest"); out != "" {
		t.Errorf("-q forget printed %q", out)
	}
	var f forgetJSON
	if out := run("-q", "forget", "--json", "latest"); json.Unmarshal([]byte(out), &f) != nil || f.ID == "" {
		t.Errorf("-q forget --json printed %q", out)
	}
	if out := run("forget", "latest"); !strings.HasPrefix(out, "forgot point ") {
		t.Errorf("forget without -q printed %q", out)
	}
}
