package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// key passwd to the passphrase the store has says it is unchanged (not
// that the old one stops working), writes nothing, and the store still
// opens with it.
func TestKeyPasswdSamePassphrase(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	same := filepath.Join(dir, "same")
	if err := os.WriteFile(same, []byte("pw1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RECALL_PASSWORD", "pw1")
	if _, err := runRecall(t, "--home", home, "-q", "init", "--encrypt"); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(home, "store", "config")
	before, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	out, err := runRecall(t, "--home", home, "key", "passwd", "--new-password-file", same)
	if err != nil || !strings.Contains(out, "unchanged") || strings.Contains(out, "no longer opens") {
		t.Errorf("key passwd to the same passphrase: %q, %v; want it said unchanged", out, err)
	}
	var k keyJSON
	out, err = runRecall(t, "--home", home, "key", "passwd", "--new-password-file", same, "--json")
	if err != nil || json.Unmarshal([]byte(out), &k) != nil || !k.Unchanged || k.ID == "" {
		t.Errorf("key passwd --json to the same passphrase: %q, %v; want unchanged true", out, err)
	}
	if after, err := os.ReadFile(config); err != nil || string(after) != string(before) {
		t.Errorf("the config was written again (%v)", err)
	}
	if _, err := runRecall(t, "--home", home, "points"); err != nil {
		t.Errorf("the passphrase no longer opens the store: %v", err)
	}
}

// A --new-password-file that gives no passphrase (missing, empty) is a
// usage error, exit 2, as no passphrase at all is; it was exit 1.
func TestKeyPasswdBadNewPasswordFile(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	t.Setenv("RECALL_PASSWORD", "pw1")
	if _, err := runRecall(t, "--home", home, "-q", "init", "--encrypt"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(dir, "missing"), empty} {
		_, err := runRecall(t, "--home", home, "key", "passwd", "--new-password-file", f)
		if exitCode(err) != exitUsage || !strings.Contains(fmt.Sprint(err), "nothing was changed") {
			t.Errorf("key passwd --new-password-file %s: %v (exit %d), want exit 2", f, err, exitCode(err))
		}
	}
}
