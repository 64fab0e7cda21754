package engine

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/recall-backup/recall/internal/testskip"
	"golang.org/x/sys/unix"
)

// TestResumeEndsAsides: a restore with --overwrite killed outright leaves
// what it moved aside (moveAside) under hidden names. A resumed restore
// that restores every file whole removes them, as the killed one would
// have; one that does not keeps and names them. Anything else with such a
// name (a directory, another pattern, outside the point's directories) is
// never touched.
func TestResumeEndsAsides(t *testing.T) {
	ts := newTestStore(t)
	// The point has a file named as an aside is: its own, never removed.
	src := srcTree(t, map[string]string{"a": "new a", "sub/b": "new b", "sub/c": "new c", "sub/.recall-old-cccccccccccc": "the point's"})
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	// The target as a killed --overwrite restore leaves it: a and sub/b
	// written, their old versions aside; sub/c's old version still in place.
	setUp := func(t *testing.T) string {
		target := t.TempDir()
		writeTree(t, target, map[string][]byte{
			"a": []byte("new a"), ".recall-old-0123456789ab": []byte("old a"),
			"sub/b": []byte("new b"), "sub/.recall-old-a1b2c3d4e5f6": []byte("old b"),
			"sub/c": []byte("old c"), "sub/.recall-old-cccccccccccc": []byte("the point's"),
			// Not ours to remove: other names, a directory, a directory
			// the point does not have.
			".recall-old-notmine": []byte("x"), ".recall-old-0123456789abc": []byte("x"),
			".recall-old-ffffffffffff/keep":  []byte("x"),
			"other/.recall-old-bbbbbbbbbbbb": []byte("x"),
		})
		return target
	}
	mustStay := []string{".recall-old-notmine", ".recall-old-0123456789abc", ".recall-old-ffffffffffff/keep", "other/.recall-old-bbbbbbbbbbbb"}
	exists := func(target, rel string) bool {
		_, err := os.Lstat(filepath.Join(target, rel))
		return err == nil
	}

	t.Run("whole", func(t *testing.T) {
		target := setUp(t)
		res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Resume: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.AsidesRemoved != 2 || len(res.AsidesKept) != 0 {
			t.Errorf("removed %d, kept %q; want 2 removed, none kept", res.AsidesRemoved, res.AsidesKept)
		}
		for _, rel := range []string{".recall-old-0123456789ab", "sub/.recall-old-a1b2c3d4e5f6"} {
			if exists(target, rel) {
				t.Errorf("%s left after a resumed restore that restored every file whole", rel)
			}
		}
		for _, rel := range mustStay {
			if !exists(target, rel) {
				t.Errorf("%s removed: not moved aside by a restore", rel)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(target, "sub/c")); string(b) != "new c" {
			t.Errorf("sub/c = %q, want the point's", b)
		}
		if b, _ := os.ReadFile(filepath.Join(target, "sub/.recall-old-cccccccccccc")); string(b) != "the point's" {
			t.Errorf("the point's own sub/.recall-old-cccccccccccc = %q, want it kept", b)
		}
	})

	t.Run("not whole", func(t *testing.T) {
		target := setUp(t)
		// A non-empty directory in the way of a: skipped.
		os.Remove(filepath.Join(target, "a"))
		writeTree(t, target, map[string][]byte{"a/x": []byte("x")})
		res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Resume: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Skipped) != 1 {
			t.Fatalf("skipped %+v, want a", res.Skipped)
		}
		slices.Sort(res.AsidesKept)
		if want := []string{".recall-old-0123456789ab", "sub/.recall-old-a1b2c3d4e5f6"}; res.AsidesRemoved != 0 || !slices.Equal(res.AsidesKept, want) {
			t.Errorf("removed %d, kept %q; want none removed, %q kept", res.AsidesRemoved, res.AsidesKept, want)
		}
		if b, _ := os.ReadFile(filepath.Join(target, ".recall-old-0123456789ab")); string(b) != "old a" {
			t.Errorf("kept aside holds %q, want %q", b, "old a")
		}
	})

	t.Run("overwrite", func(t *testing.T) {
		// Only a resume ends them: --overwrite is a restore of its own.
		target := setUp(t)
		res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Overwrite: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.AsidesRemoved != 0 || !exists(target, ".recall-old-0123456789ab") {
			t.Errorf("--overwrite removed what another restore moved aside")
		}
	})
}

// TestRestoreKeepsRootsMarkAttr: the attribute a restore marks its target
// with while it runs (restoreMark) is removed at its end, unless the
// point's own directory carries one of that name: that one is the
// point's, and the restored directory has it. It was removed, exit 0.
func TestRestoreKeepsRootsMarkAttr(t *testing.T) {
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"sub/f": "x", "g": "y"})
	for path, v := range map[string]string{src: "top", filepath.Join(src, "sub"): "below"} {
		if err := unix.Setxattr(path, restoreMark, []byte(v), 0); err != nil {
			testskip.Skip(t, "no user attributes here: %v", err)
		}
	}
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{{"", "top"}, {"sub", "below"}} {
		target := filepath.Join(t.TempDir(), "t")
		if _, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Path: c.path}); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 64)
		n, err := unix.Getxattr(target, restoreMark, b)
		if err != nil || string(b[:n]) != c.want {
			t.Errorf("restore of %q: %s = %q (%v), want the point's %q", c.path, restoreMark, b[:max(n, 0)], err, c.want)
		}
	}
	// A point without it leaves none.
	plain := srcTree(t, map[string]string{"f": "x"})
	p2, err := ts.backup(BackupOptions{Path: plain})
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "t")
	if _, err := Restore(context.Background(), ts.r, p2, RestoreOptions{Target: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Getxattr(target, restoreMark, nil); err == nil {
		t.Errorf("%s left on a restored target", restoreMark)
	}
}

// TestResumeKeepsWholeImmutableDir: a resume after a restore that went
// through keeps a directory the point has immutable (chattr +i) when all
// it holds is in place, counted as kept; it was reported not restored,
// exit 3. One whose content differs is still reported.
func TestResumeKeepsWholeImmutableDir(t *testing.T) {
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"d/f": "f", "d/e/h": "h", "g": "g"})
	if err := os.Symlink("f", filepath.Join(src, "d/l")); err != nil {
		t.Fatal(err)
	}
	chattr(t, filepath.Join(src, "d"), fsImmutable)
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "t")
	unflag := func() {
		if f, err := os.Open(filepath.Join(target, "d")); err == nil {
			unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, 0)
			f.Close()
		}
	}
	t.Cleanup(unflag)
	if _, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target}); err != nil {
		t.Fatal(err)
	}
	res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) != 0 || res.Kept != 3 || res.Files != 3 {
		t.Errorf("resume over a whole restore: %d files, %d kept, skipped %+v; want all 3 kept, none skipped", res.Files, res.Kept, res.Skipped)
	}
	// The target has the point's metadata: it is the restore's, not one
	// that held entries of its own ("kept its own owner, mode and times").
	if res.TargetKept {
		t.Errorf("resume over a whole restore: the target said to have held entries before")
	}
	// Changed inside: not whole, reported as before.
	unflag()
	if err := os.WriteFile(filepath.Join(target, "d/e/h"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	chattr(t, filepath.Join(target, "d"), fsImmutable)
	res, err = Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) != 1 || res.Skipped[0].Path != "d/" {
		t.Errorf("resume over a changed immutable directory: skipped %+v, want d/", res.Skipped)
	}
}

// A point of one file restores to <target>/<name>, and says so (Root), as
// a restore of one entry with --path does; it said the target.
func TestRestoreOneFilePointRoot(t *testing.T) {
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"one.bin": "content"})
	p, err := ts.backup(BackupOptions{Path: filepath.Join(src, "one.bin")})
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "t")
	res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(target, "one.bin")
	if b, err := os.ReadFile(want); err != nil || string(b) != "content" || res.Root != want || res.Target != target {
		t.Errorf("root %q, target %q, %s: %q %v; want root %s", res.Root, res.Target, want, b, err, want)
	}
}
