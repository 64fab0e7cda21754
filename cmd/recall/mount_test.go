package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMountRefusesNonEmpty: recall mount on a directory that holds
// entries refuses before it starts a server, naming the directory and
// what it holds, and saying what to do; an empty one passes the check,
// and --nonempty lets a full one pass.
func TestMountRefusesNonEmpty(t *testing.T) {
	home := t.TempDir()
	if _, err := runRecall(t, "--home", home, "-q", "init"); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	for _, n := range []string{"a", "b", "c", "d"} {
		if err := os.WriteFile(filepath.Join(mnt, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runRecall(t, "--home", home, "mount", mnt)
	if exitCode(err) != exitError || out != "" {
		t.Fatalf("mount on a directory of 4 files: exit %d, printed %q; want exit %d, nothing", exitCode(err), out, exitError)
	}
	for _, want := range []string{"mount point " + mnt + " is not empty (4 entries: a, b, c, ...)", "--nonempty"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if err := prepareMountpoint(mnt, true, t.Logf); err != nil {
		t.Errorf("--nonempty: %v", err)
	}
	if err := prepareMountpoint(t.TempDir(), false, t.Logf); err != nil {
		t.Errorf("an empty directory: %v", err)
	}
}

// TestMountServerEnv: a mount server's environment is its parent's less
// every variable that holds the passphrase or yields it.
func TestMountServerEnv(t *testing.T) {
	got := mountServerEnv([]string{"HOME=/root", "RECALL_PASSWORD=pw", "RECALL_PASSWORD_COMMAND=pass show recall",
		"RECALL_PASSWORD_FILE=/etc/recall/passphrase", "RECALL_SMB_PASSWORD=smb", "RECALL_PASSWORDX=kept", "AWS_ACCESS_KEY_ID=kept", "RECALL_HOME=/h"})
	want := []string{"HOME=/root", "RECALL_PASSWORDX=kept", "AWS_ACCESS_KEY_ID=kept", "RECALL_HOME=/h"}
	if !slices.Equal(got, want) {
		t.Errorf("mountServerEnv = %q, want %q", got, want)
	}
}

// A mount point at or above the home or the store, or inside the store,
// is refused: the mounted tree would hide them from its own server, which
// then waits on itself for good (and every process that looks there).
func TestMountHidesHome(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	store := filepath.Join(home, "store")
	for _, c := range []struct {
		mnt, store string
		refused    bool
	}{
		{dir, store, true},
		{home, store, true},
		{store, store, true},
		{filepath.Join(store, "packs"), store, true},
		{filepath.Join(home, "mnt"), store, false}, // beside the store, hiding nothing of it
		{filepath.Join(dir, "mnt"), store, false},
		{filepath.Join(dir, "home2"), store, false},    // a name that only begins like the home's
		{dir, "s3:http://127.0.0.1:7480/bucket", true}, // the home still
		{filepath.Join(dir, "other"), "s3:http://127.0.0.1:7480/bucket", false},
	} {
		err := mountHidesHome(c.mnt, home, c.store)
		if (err != nil) != c.refused || err != nil && exitCode(err) != exitUsage {
			t.Errorf("mount at %s, home %s, store %s: %v (exit %d), refused want %v", c.mnt, home, c.store, err, exitCode(err), c.refused)
		}
	}
}

// A mount point that is not there is named with the command that makes
// it (it said only "stat ...: no such file or directory").
func TestPrepareMountpointMissing(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "mnt")
	err := prepareMountpoint(mnt, false, t.Logf)
	if err == nil || !strings.Contains(err.Error(), "mkdir -p "+mnt) {
		t.Errorf("missing mount point: %v, want the mkdir named", err)
	}
}
