package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/recall-backup/recall/tapefs"
)

// A tape job removes only the staging stores recall made (they hold its
// marker): a user's own tape-restore-* directory in the home, or one an
// older recall left without the marker, is left with all it holds, even
// by a job that fails, and named once. (Fix: newStagingDir, isStaging,
// removeStaleStaging.)
func TestTapeStagingOnlyOwnRemoved(t *testing.T) {
	f := newTapeHome(t, 1<<20, 2, 1<<30)
	write := f.poolOnDay0(t, "")
	if _, err := write(f.p); err != nil {
		t.Fatal(err)
	}
	stale, err := newStagingDir(f.home)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "config"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(f.home, "tape-restore-abc")
	forged := filepath.Join(f.home, "tape-restore-forged")
	for _, d := range []string{mine, forged} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "notes"), []byte("mine"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A marker without recall's magic proves nothing.
	if err := os.WriteFile(filepath.Join(forged, stagingMarker), []byte("something else\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var logged []string
	log := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logged = append(logged, fmt.Sprintf(format, args...))
		t.Logf(format, args...)
	}
	// A failing tape job (no such point) runs the cleanup too.
	if _, err := RestoreFromTape(context.Background(), f.home, TapeRestoreOptions{Point: "ffffffffffff", Target: filepath.Join(t.TempDir(), "out"), Log: log}); err == nil {
		t.Fatal("a restore of a point not on tape worked")
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale staging store recall made is still there: %v", err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if _, err := RestoreFromTape(context.Background(), f.home, TapeRestoreOptions{Point: f.p.ID.String(), Target: out, Log: log}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{mine, forged} {
		if b, err := os.ReadFile(filepath.Join(d, "notes")); err != nil || string(b) != "mine" {
			t.Errorf("%s: the user's directory lost its file: %q, %v", filepath.Base(d), b, err)
		}
		n := 0
		for _, l := range logged {
			if strings.Contains(l, d) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s named %d times in the log over two tape jobs, want once", filepath.Base(d), n)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(f.home, stagingPrefix+"*")); len(left) != 2 {
		t.Errorf("left in the home: %v, want only the user's two directories", left)
	}
}

// A tape restore target that is, or is inside, a staging store's name in
// the home (by its path or through a symlink) is refused before any
// cartridge is loaded: the next tape job would take it for a staging
// store. (Fix: checkRestoreTarget, isStagingName.)
func TestTapeRestoreTargetStagingNameRefused(t *testing.T) {
	f := newTapeHome(t, 1<<20, 2, 1<<30)
	write := f.poolOnDay0(t, "")
	if _, err := write(f.p); err != nil {
		t.Fatal(err)
	}
	loads := 0
	openLibrary = func(l TapeLibrary) (tapefs.Library, error) {
		lib, err := openRecordedLibrary(l)
		return countingLibrary{lib, &loads}, err
	}
	t.Cleanup(func() { openLibrary = openRecordedLibrary })
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(f.home, link); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{
		filepath.Join(f.home, "tape-restore-out"),
		filepath.Join(f.home, "tape-restore-out", "deeper"),
		filepath.Join(link, "tape-restore-x"),
	} {
		_, err := RestoreFromTape(context.Background(), f.home, TapeRestoreOptions{Point: f.p.ID.String(), Target: target, Log: t.Logf})
		if err == nil || !strings.Contains(err.Error(), "staging store") || !strings.Contains(err.Error(), "nothing was read from tape") {
			t.Errorf("target %s: %v, want a refusal naming the staging stores", target, err)
		}
		if loads != 0 {
			t.Errorf("target %s: %d cartridges loaded before the refusal", target, loads)
			loads = 0
		}
		if _, err := os.Lstat(target); !os.IsNotExist(err) {
			t.Errorf("target %s was made: %v", target, err)
		}
	}
	// A staging-like name elsewhere is no staging store.
	out := filepath.Join(t.TempDir(), "tape-restore-out")
	if _, err := RestoreFromTape(context.Background(), f.home, TapeRestoreOptions{Point: f.p.ID.String(), Target: out, Log: t.Logf}); err != nil {
		t.Errorf("target %s outside the home: %v", out, err)
	}
}
