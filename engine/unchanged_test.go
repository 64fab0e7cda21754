package engine

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"golang.org/x/sys/unix"
)

// Each field the unchanged check compares must decide on its own: a file
// that differs from its previous record in any one of them is read again.
// The previous record is a real one, from a backup, so its chunks are in
// the store.
func TestUnchangedComparesEveryField(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	fatalIf(t, os.WriteFile(filepath.Join(src, "f"), []byte("version one"), 0o644))
	p, err := ts.backup(BackupOptions{Path: src, Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := ts.r.LoadTree(p.Tree)
	if err != nil {
		t.Fatal(err)
	}
	prev := tree.Find("f")
	if prev == nil || len(prev.Extents) != 1 || prev.Inode == 0 || prev.CtimeNS == 0 {
		t.Fatalf("backed-up node %+v", prev)
	}
	b := &backuper{st: ts.st}
	tests := []struct {
		name   string
		change func(n, prev *Node)
		want   bool
	}{
		{"nothing", func(n, prev *Node) {}, true},
		{"size", func(n, prev *Node) { n.Size++ }, false},
		{"mtime", func(n, prev *Node) { n.MtimeNS++ }, false},
		{"ctime", func(n, prev *Node) { n.CtimeNS++ }, false},
		{"inode", func(n, prev *Node) { n.Inode++ }, false},
		{"type", func(n, prev *Node) { n.Type = TypeDevice }, false},
		{"ctime cleared by a flagged read", func(n, prev *Node) { prev.CtimeNS = 0 }, false},
		{"chunk missing from the store", func(n, prev *Node) {
			prev.Extents = []Extent{{ID: chunkstore.ID{1, 2, 3}, End: prev.Size}}
		}, false},
		{"hole needs no chunk", func(n, prev *Node) {
			prev.Extents = []Extent{{Hole: true, End: prev.Size}}
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pc, n := *prev, *prev
			n.Extents = nil // the walk's fresh node has no extents yet
			tc.change(&n, &pc)
			if got := b.unchanged(&n, &pc); got != tc.want {
				t.Errorf("unchanged = %v, want %v", got, tc.want)
			}
		})
	}
	if b.unchanged(prev, nil) {
		t.Error("a file with no previous record counts as unchanged")
	}
}

// A file rewritten with the same size and given back its old mtime (and
// atime) is new content: the next backup must read it. In place it keeps
// its inode and only its ctime tells; replaced by a rename both its inode
// and its ctime do.
func TestSameSizeSameMtimeRewriteIsRead(t *testing.T) {
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		rewrite func(t *testing.T, path string, data []byte)
	}{
		{"in place", func(t *testing.T, path string, data []byte) {
			fatalIf(t, os.WriteFile(path, data, 0o644))
		}},
		{"renamed over", func(t *testing.T, path string, data []byte) {
			tmp := path + ".new"
			fatalIf(t, os.WriteFile(tmp, data, 0o644))
			fatalIf(t, os.Chtimes(tmp, old, old))
			fatalIf(t, os.Rename(tmp, path))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestStore(t)
			src := t.TempDir()
			f := filepath.Join(src, "f")
			fatalIf(t, os.WriteFile(f, []byte("version one"), 0o644))
			fatalIf(t, os.Chtimes(f, old, old))
			p1, err := ts.backup(BackupOptions{Path: src, Source: "s"})
			if err != nil {
				t.Fatal(err)
			}
			tree, _ := ts.r.LoadTree(p1.Tree)
			first := tree.Find("f")

			tc.rewrite(t, f, []byte("version TWO"))
			fatalIf(t, os.Chtimes(f, old, old))
			// The clock behind ctime ticks coarsely: a rewrite within the
			// tick of the first backup's stat would keep the same ctime.
			// Touch the file until its ctime moved on (within one tick).
			var st unix.Stat_t
			for {
				fatalIf(t, unix.Stat(f, &st))
				if st.Ctim.Nano() != first.CtimeNS {
					break
				}
				fatalIf(t, os.Chtimes(f, old, old))
			}
			if st.Size != int64(first.Size) || st.Mtim.Nano() != first.MtimeNS || st.Atim.Nano() != first.AtimeNS {
				t.Fatalf("the rewrite did not keep size, mtime and atime: %+v, first %+v", st, first)
			}

			p2, err := ts.backup(BackupOptions{Path: src, Source: "s"})
			if err != nil {
				t.Fatal(err)
			}
			if got := ts.content(p2, "f"); string(got) != "version TWO" {
				t.Errorf("latest point holds %q, want %q", got, "version TWO")
			}
			if got := ts.content(p1, "f"); string(got) != "version one" {
				t.Errorf("first point holds %q", got)
			}
		})
	}
}

// A file that kept changing while it was read is saved flagged, and the
// next backup reads it again even though nothing about it changed since:
// the saved copy may mix old and new bytes. Every change here keeps the
// size and sets a distinct mtime, so each read sees it (the coarse ctime
// clock alone might not) and, once flagged, only the flag says the saved
// bytes are not the file's.
func TestFlaggedFileReadAgainNextBackup(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	f := filepath.Join(src, "f")
	const size = 1 << 20
	fatalIf(t, os.WriteFile(f, bytes.Repeat([]byte{'a'}, size), 0o644))
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	p, err := ts.backup(BackupOptions{Path: src, Source: "s", hooks: &backupHooks{afterRead: func(path string, try int) {
		if path != f {
			return
		}
		fatalIf(t, os.WriteFile(f, bytes.Repeat([]byte{byte('a' + try)}, size), 0o644))
		at := base.Add(time.Duration(try) * time.Second)
		fatalIf(t, os.Chtimes(f, at, at))
	}}})
	if !errors.Is(err, ErrWarnings) || p == nil || len(p.Errors) != 1 || !strings.Contains(p.Errors[0].Error, "changed while being read") {
		t.Fatalf("backup: %v %+v", err, p)
	}
	now := mustReadFile(t, f)
	if bytes.Equal(ts.content(p, "f"), now) {
		t.Fatal("the flagged point holds the file's current bytes: the test changes nothing")
	}

	p2, err := ts.backup(BackupOptions{Path: src, Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ts.content(p2, "f"), now) {
		t.Errorf("the backup after a flagged read kept the flagged copy instead of reading the file again")
	}
	if p2.Stats.Unchanged != 0 {
		t.Errorf("%d files counted unchanged, want 0", p2.Stats.Unchanged)
	}
}

func fatalIf(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	fatalIf(t, err)
	return b
}
