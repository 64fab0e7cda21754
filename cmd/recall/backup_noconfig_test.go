package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
)

// Fix (a store whose config is gone): backup said, besides the store's
// error, that the catalog could not be used and should be moved aside,
// which would lose its history, groups and sources for nothing: the
// catalog was sound. Only the store's error is said now.
func TestBackupWithoutStoreConfigBlamesNoCatalog(t *testing.T) {
	home, src, run := cliHome(t)
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("init")
	run("backup", src)
	for _, f := range []string{"config", "config.copy"} {
		if err := os.Remove(filepath.Join(home, "store", f)); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	stderr := stderrOf(t, func() { _, err = runRecall(t, "--home", home, "backup", src) })
	if !errors.Is(err, chunkstore.ErrConfigMissing) {
		t.Errorf("backup without the store's config: %v", err)
	}
	if strings.Contains(stderr, "catalog") {
		t.Errorf("backup without the store's config blames the catalog: %s", stderr)
	}
}

// 'recall apply groups.toml' is refused (the file is a flag), and now
// says which flag; status --json has its warnings list when it is empty.
func TestApplyFileArgumentHintAndEmptyWarnings(t *testing.T) {
	home, _, run := cliHome(t)
	run("init")
	_, err := runRecall(t, "--home", home, "apply", "groups.toml")
	if exitCode(err) != exitUsage || !strings.Contains(fmt.Sprint(err), "did you mean --file groups.toml?") {
		t.Errorf("apply with the file as an argument: %v", err)
	}
	if out := run("status", "--json"); !strings.Contains(out, `"warnings":[]`) {
		t.Errorf("status --json without warnings: %s", out)
	}
	// A group with no members lists them as [], not null.
	run("group", "create", "empty")
	if out := run("group", "list", "--json"); !strings.Contains(out, `"members":[]`) {
		t.Errorf("group list --json of a group without members: %s", out)
	}
	if out := run("group", "show", "empty", "--json"); !strings.Contains(out, `"members":[]`) {
		t.Errorf("group show --json of a group without members: %s", out)
	}
}
