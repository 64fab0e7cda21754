package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// stderrOf runs fn with os.Stderr going to a pipe, and returns what was
// written there.
func stderrOf(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		got <- string(b)
	}()
	saved := os.Stderr
	os.Stderr = w
	func() {
		defer func() { os.Stderr = saved }() // also when fn fails the test
		fn()
	}()
	w.Close()
	return <-got
}

// TestQuietInitAndGC: -q prints nothing but errors: init and gc print
// neither their report on stdout nor their progress on stderr; -q --json
// still prints the JSON asked for, and without -q the report is there.
func TestQuietInitAndGC(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (stdout, stderr string) {
		t.Helper()
		var err error
		stderr = stderrOf(t, func() { stdout, err = runRecall(t, args...) })
		if err != nil {
			t.Fatalf("recall %s: %v", strings.Join(args, " "), err)
		}
		return stdout, stderr
	}
	home, src := filepath.Join(dir, "home"), filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, errs := run("--home", home, "-q", "init"); out != "" || errs != "" {
		t.Errorf("-q init printed %q on stdout, %q on stderr", out, errs)
	}
	run("--home", home, "-q", "backup", "--source", "s", src)
	if out, errs := run("--home", home, "-q", "gc"); out != "" || errs != "" {
		t.Errorf("-q gc printed %q on stdout, %q on stderr", out, errs)
	}
	if out, _ := run("--home", home, "gc"); !strings.Contains(out, "freed: ") {
		t.Errorf("gc without -q printed no report: %q", out)
	}
	var rep map[string]any
	if out, _ := run("--home", home, "-q", "gc", "--json"); json.Unmarshal([]byte(out), &rep) != nil || rep["points"] != 1.0 {
		t.Errorf("-q gc --json printed %q", out)
	}
	other := filepath.Join(dir, "other")
	var made initJSON
	if out, _ := run("--home", other, "-q", "init", "--json"); json.Unmarshal([]byte(out), &made) != nil || made.ID == "" {
		t.Errorf("-q init --json printed %q", out)
	}
	if out, _ := run("--home", filepath.Join(dir, "third"), "init"); !strings.HasPrefix(out, "created unencrypted store ") {
		t.Errorf("init without -q printed %q", out)
	}
}

// init --store DIR makes the store at DIR when DIR is new or empty, as
// the flag's help says; a DIR holding other things gets it in DIR/store.
// Either way the home finds it alone from then on.
func TestInitStoreDirectory(t *testing.T) {
	dir := t.TempDir()
	busy := filepath.Join(dir, "disk")
	if err := os.MkdirAll(filepath.Join(busy, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ loc, store string }{
		{filepath.Join(dir, "new"), filepath.Join(dir, "new")},
		{busy, filepath.Join(busy, "store")},
	} {
		home := filepath.Join(t.TempDir(), "home")
		if _, err := runRecall(t, "--home", home, "init", "--store", tc.loc); err != nil {
			t.Fatalf("init --store %s: %v", tc.loc, err)
		}
		if _, err := os.Stat(filepath.Join(tc.store, "config")); err != nil {
			t.Errorf("init --store %s: no store at %s: %v", tc.loc, tc.store, err)
		}
		if _, err := runRecall(t, "--home", home, "points"); err != nil {
			t.Errorf("points with the home alone: %v", err)
		}
	}
	// The home itself as the store's place: the store goes in its store/,
	// not beside the home's files.
	home := filepath.Join(dir, "same")
	if _, err := runRecall(t, "--home", home, "init", "--store", home); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(home, "store", "config")); err != nil {
		t.Errorf("init --store HOME: %v", err)
	}
}
