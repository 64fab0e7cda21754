package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestParallelWalkHardLinks: directories walked beside each other (the
// default) give a tree that does not depend on which walk met a hard link
// first: two backups of the same tree have the same root, each file is
// whole, and a restore links the members of each group again.
func TestParallelWalkHardLinks(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	for d := range 8 {
		dir := filepath.Join(src, fmt.Sprintf("d%d", d))
		if err := os.MkdirAll(filepath.Join(dir, "deeper"), 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range 20 {
			p := filepath.Join(dir, fmt.Sprintf("f%02d", f))
			if err := os.WriteFile(p, []byte(fmt.Sprintf("dir %d file %d\n", d, f)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "deeper", "x"), []byte(fmt.Sprint("deeper ", d)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Groups spanning directories: d0/f00 in every other directory, d3/f05
	// in d6 and d7/deeper.
	for d := 1; d < 8; d++ {
		if err := os.Link(filepath.Join(src, "d0", "f00"), filepath.Join(src, fmt.Sprintf("d%d", d), "link0")); err != nil {
			t.Fatal(err)
		}
	}
	for _, to := range []string{"d6/link3", "d7/deeper/link3"} {
		if err := os.Link(filepath.Join(src, "d3", "f05"), filepath.Join(src, to)); err != nil {
			t.Fatal(err)
		}
	}
	// The first backup reads each directory for the first time, which
	// moves its atime; the ones after compare. Each is of its own source,
	// so none has a parent and every directory is walked afresh.
	if _, err := ts.backup(BackupOptions{Path: src, Source: "warm-up"}); err != nil {
		t.Fatal(err)
	}
	var roots []string
	for i := range 3 {
		p, err := ts.backup(BackupOptions{Path: src, Source: fmt.Sprint("s", i)})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Errors) > 0 {
			t.Fatalf("errors: %v", p.Errors)
		}
		roots = append(roots, p.Tree.String())
		if p.Stats.Dirs != 16 {
			t.Errorf("%d directories counted, want 16", p.Stats.Dirs)
		}
	}
	if roots[0] != roots[1] || roots[1] != roots[2] {
		t.Fatalf("the same tree backed up three times got roots %v", roots)
	}

	pts, err := ts.r.Points()
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	if _, err := Restore(context.Background(), ts.r, pts[len(pts)-1], RestoreOptions{Target: dst}); err != nil {
		t.Fatal(err)
	}
	ino := func(rel string) uint64 {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(dst, rel), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	for d := 1; d < 8; d++ {
		rel := fmt.Sprintf("d%d/link0", d)
		if ino(rel) != ino("d0/f00") {
			t.Errorf("%s is not linked to d0/f00", rel)
		}
		if b, _ := os.ReadFile(filepath.Join(dst, rel)); string(b) != "dir 0 file 0\n" {
			t.Errorf("%s: %q", rel, b)
		}
	}
	for _, rel := range []string{"d6/link3", "d7/deeper/link3"} {
		if ino(rel) != ino("d3/f05") {
			t.Errorf("%s is not linked to d3/f05", rel)
		}
	}
	if ino("d0/f00") == ino("d3/f05") {
		t.Error("two groups restored as one")
	}
	for d := range 8 {
		for f := range 20 {
			rel := fmt.Sprintf("d%d/f%02d", d, f)
			if b, _ := os.ReadFile(filepath.Join(dst, rel)); string(b) != fmt.Sprintf("dir %d file %d\n", d, f) {
				t.Errorf("%s: %q", rel, b)
			}
		}
	}
}

// TestLinkGroupIDCollision: a group whose hash another group of the point
// already has gets the next odd id, and its members all get that one.
func TestLinkGroupIDCollision(t *testing.T) {
	b := &backuper{links: map[devIno]*linkGroup{}, linkIDs: map[uint64]bool{}}
	k := devIno{dev: 7, ino: 42}
	taken := linkGroupID(k)
	b.linkIDs[taken] = true // as if another inode had hashed to it
	first := &Node{Dev: 7, Inode: 42}
	g, leader := b.linkGroupFor(first)
	if !leader || g.id != taken+2 || first.LinkGroup != g.id {
		t.Fatalf("leader %v, id %d (node %d), want a leader with %d", leader, g.id, first.LinkGroup, taken+2)
	}
	second := &Node{Dev: 7, Inode: 42}
	if g2, leader := b.linkGroupFor(second); leader || g2 != g || second.LinkGroup != g.id {
		t.Fatalf("the second link: leader %v, id %d", leader, second.LinkGroup)
	}
	other := &Node{Dev: 7, Inode: 43}
	if g3, _ := b.linkGroupFor(other); g3.id == g.id || g3.id == 0 || g3.id%2 == 0 {
		t.Fatalf("another inode: id %d", g3.id)
	}
}
