package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuietBackupOfTreeWithHome: under -q a backup of a tree holding the
// home (a nightly 'backup -q /') prints nothing: that the store is left
// out says what the backup does, not what went wrong, and cron mailed it
// every night. Without -q it is said.
func TestQuietBackupOfTreeWithHome(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runRecall(t, "--home", home, "init"); err != nil {
		t.Fatal(err)
	}
	var out string
	var err error
	stderr := stderrOf(t, func() { out, err = runRecall(t, "--home", home, "backup", "-q", "--source", "s", dir) })
	if err != nil || out != "" || stderr != "" {
		t.Errorf("backup -q: %v, printed %q and %q; want nothing", err, out, stderr)
	}
	stderr = stderrOf(t, func() { _, err = runRecall(t, "--home", home, "backup", "--source", "s", dir) })
	if err != nil || !strings.Contains(stderr, "left out") {
		t.Errorf("backup: %v, stderr %q; want the store said left out", err, stderr)
	}
}
