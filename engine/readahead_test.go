package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Small files are read beyond --files at once: with Files 1 a backup of
// eight small files must have all eight in flight together, which the
// hook below waits for (one file at a time would never get there).
func TestSmallFilesReadBeyondFiles(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	const n = smallSlotsPerFile
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d", i)), []byte(fmt.Sprint("content ", i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	inFlight := 0
	all := make(chan struct{})
	// One deadline for every waiter, so a failure costs it once.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hook := func(path string, try int) {
		mu.Lock()
		if inFlight++; inFlight == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-ctx.Done():
			t.Errorf("%s: the other small files were never read beside it", path)
		}
	}
	p, err := ts.backup(BackupOptions{Path: src, Files: 1, hooks: &backupHooks{afterRead: hook}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if got, want := string(ts.content(p, fmt.Sprintf("f%d", i))), fmt.Sprint("content ", i); got != want {
			t.Errorf("f%d: %q, want %q", i, got, want)
		}
	}
}

func TestHintWants(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := write("file", "some content")
	empty := write("empty", "")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path string
		size       int64
		want       bool
	}{
		{"regular file", file, int64(len("some content")), true},
		{"empty file", empty, 0, false},
		{"symlink to a file", link, 0, false},
		{"fifo", fifo, 0, false},
		{"directory", sub, 0, false},
		{"gone", filepath.Join(dir, "gone"), 0, false},
	} {
		if size, got := wants(c.path); got != c.want || size != c.size {
			t.Errorf("%s: wants %d, %v; want %d, %v", c.name, size, got, c.size, c.want)
		}
	}
}

// upTo hints the files (not the directories, not what is excluded) of a
// listing up to hintWindow entries past the walk, each once, in order; a
// directory the parent point has gets none.
func TestDirHintsWindow(t *testing.T) {
	var ents []dirEntry
	for i := 0; i < 3*hintWindow; i++ {
		ents = append(ents, dirEntry{name: fmt.Sprintf("e%04d", i), isDir: i%5 == 0})
	}
	excl := Exclude{Patterns: []string{"sub/e*3"}} // e0003, e0013, ...: every tenth
	ex, err := excl.compile()
	if err != nil {
		t.Fatal(err)
	}
	skipped := func(i int) bool { return ents[i].isDir || i%10 == 3 }
	h := &hinter{q: make(chan string, len(ents))}
	b := &backuper{hints: h, ex: ex}
	d := b.hintsFor("/src/sub", "sub", ents, nil)
	next := 0 // the entry the next hint must name
	for _, walk := range []int{0, 0, 1, 10, hintWindow, 2*hintWindow + 7, len(ents) - 1} {
		d.upTo(walk)
		for end := min(len(ents), walk+hintWindow); next < end; next++ {
			if skipped(next) {
				continue
			}
			select {
			case p := <-h.q:
				if want := "/src/sub/" + ents[next].name; p != want {
					t.Fatalf("walk at %d: hint %s, want %s", walk, p, want)
				}
			default:
				t.Fatalf("walk at %d: no hint for %s", walk, ents[next].name)
			}
		}
		select {
		case p := <-h.q:
			t.Fatalf("walk at %d: hint %s beyond the window", walk, p)
		default:
		}
	}
	b.hintsFor("/old", "old", ents, &Tree{}).upTo(0)
	if len(h.q) != 0 {
		t.Errorf("a directory of the parent point got %d hints", len(h.q))
	}
	(&backuper{}).hintsFor("/src", "", ents, nil).upTo(0) // no hinter: nothing to do
}
