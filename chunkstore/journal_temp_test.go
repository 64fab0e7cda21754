package chunkstore

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// packCommitHelperEnv names the store a helper process writes one pack to,
// stopping at the pack's commit; the helper is this test binary, run for
// TestPackCommitHelperProcess.
const packCommitHelperEnv = "RECALL_TEST_PACK_COMMIT_HELPER"

// tempPackBlob is the one blob the helper saves.
func tempPackBlob() []byte { return randBytes(77, 50_000) }

// TestPackCommitHelperProcess is not a test: run by killedAtPackCommit in
// a child process, it saves one blob in a write session of source "s" and
// finishes its pack; when the pack, whole and synced in the session's temp
// area and recorded in the journal, is about to be renamed into packs/, it
// says so and waits to be killed.
func TestPackCommitHelperProcess(t *testing.T) {
	dir := os.Getenv(packCommitHelperEnv)
	if dir == "" {
		return
	}
	PackTargetSize = 1 // the pack is finished with its one blob
	s, err := Open(dir, OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	SetFaultHook(func(st Step) error {
		if st.Kind == StepRename && filepath.Base(filepath.Dir(filepath.Dir(st.To))) == "packs" {
			os.Stdout.WriteString("ready\n")
			select {} // until killed
		}
		return nil
	})
	_, w := sessionWriter(t, s, "s")
	b := tempPackBlob()
	if _, err := w.SaveBlob(DataBlob, s.Hash(b), b); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	t.Fatal("the pack was committed: the hook did not stop it")
}

// killedAtPackCommit runs a process that writes one pack to the store in
// dir and kills it with -9 between the pack's journal entry and its
// commit. It returns the path of the pack's temp file and the pack's id.
func killedAtPackCommit(t *testing.T, dir string) (string, ID) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPackCommitHelperProcess$")
	cmd.Env = append(os.Environ(), packCommitHelperEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if err != nil || line != "ready\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	temps, _ := filepath.Glob(filepath.Join(dir, "tmp", sessionTag("s"), "packs-*"))
	entries, _ := os.ReadDir(filepath.Join(dir, "journal"))
	if len(temps) != 1 || len(entries) != 1 {
		t.Fatalf("the killed session left temp packs %v and journal entries %v, want one of each", temps, entries)
	}
	_, id, ok := parseJournalName(entries[0].Name())
	if !ok {
		t.Fatalf("journal entry %q", entries[0].Name())
	}
	return temps[0], id
}

// A session killed after its pack was whole in its temp area but before
// the pack was committed: the next session of the source commits the pack
// in the journal's order and indexes it, so its blob is stored and reused;
// a pack cut short or with a blob that fails its check is dropped, its
// journal entry too, and the blob counts as not stored.
func TestSessionAdoptsFinishedTempPack(t *testing.T) {
	for _, c := range []struct {
		name    string
		damage  func(path string) error
		adopted bool
	}{
		{"whole", nil, true},
		{"cut-short", func(p string) error {
			st, err := os.Stat(p)
			if err != nil {
				return err
			}
			return os.Truncate(p, st.Size()-100)
		}, false},
		{"torn-blob", func(p string) error {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt(bytes.Repeat([]byte{0}, 4096), 8192) // a page that never reached the disk
			return err
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, enc := range []bool{false, true} {
				dir, s := newStore(t, enc)
				s.Close()
				temp, pack := killedAtPackCommit(t, dir)
				if c.damage != nil {
					if err := c.damage(temp); err != nil {
						t.Fatal(err)
					}
				}
				s, err := Open(dir, OpenOptions{Password: "pw"})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				l, w := sessionWriter(t, s, "s")
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
				blob := tempPackBlob()
				id := s.Hash(blob)
				if got := s.Has(id); got != c.adopted {
					t.Errorf("encrypted %v: the blob of the killed session's pack is stored: %v, want %v", enc, got, c.adopted)
				}
				if _, err := os.Stat(s.packPath(pack)); (err == nil) != c.adopted {
					t.Errorf("encrypted %v: the pack under packs/: %v, want it there: %v", enc, err, c.adopted)
				}
				if c.adopted {
					if got, err := s.LoadBlob(id, nil); err != nil || !bytes.Equal(got, blob) {
						t.Errorf("encrypted %v: the adopted blob reads %d bytes, %v", enc, len(got), err)
					}
				}
				l.Unlock()
				if ents, _ := os.ReadDir(filepath.Join(dir, "journal")); len(ents) != 0 {
					t.Errorf("encrypted %v: journal entries left: %v", enc, ents)
				}
				if left, _ := filepath.Glob(filepath.Join(dir, "tmp", "*", "*")); len(left) != 0 {
					t.Errorf("encrypted %v: temp files left: %v", enc, left)
				}
				// The index files cover exactly the packs present.
				x, err := s.LockExclusive(ctx, "check", 0, nil)
				if err != nil {
					t.Fatal(err)
				}
				rb, err := x.RebuildIndex(true)
				x.Unlock()
				if err != nil {
					t.Fatal(err)
				}
				if len(rb.Written)+len(rb.Removed)+len(rb.Unlocatable) > 0 {
					t.Errorf("encrypted %v: rebuilding the index would write %v, remove %v; cannot locate %v", enc, rb.Written, rb.Removed, rb.Unlocatable)
				}
			}
		})
	}
}

// The exclusive lock adopts what sessions of every source left, and drops
// the killed session's journal entry of the pack.
func TestExclusiveAdoptsFinishedTempPacks(t *testing.T) {
	dir, s := newStore(t, false)
	s.Close()
	_, pack := killedAtPackCommit(t, dir)
	s, err := Open(dir, OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	x, err := s.LockExclusive(ctx, "test", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	x.Unlock()
	if !s.Has(s.Hash(tempPackBlob())) {
		t.Error("the blob of the killed session's pack is not stored")
	}
	if _, err := os.Stat(s.packPath(pack)); err != nil {
		t.Errorf("the adopted pack: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "journal")); len(ents) != 0 {
		names := []string{}
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("journal entries left: %s", strings.Join(names, " "))
	}
}

// A garbage collection's rewrite packs left in its temp area are copies of
// blobs other packs hold: the exclusive lock does not adopt them, while it
// does adopt the same pack left in a session's temp area.
func TestExclusiveLeavesGCTempPacks(t *testing.T) {
	for _, c := range []struct {
		tag     string
		adopted bool
	}{{gcTempTag, false}, {sessionTag("s"), true}} {
		dir, s := newStore(t, false)
		gcBlobs(t, s, "s", [][]byte{randBytes(5, 10_000)})
		pack, ok := s.PackOf(s.Hash(randBytes(5, 10_000)))
		if !ok {
			t.Fatal("the blob's pack is not indexed")
		}
		s.Close()
		tmp := filepath.Join(dir, "tmp", c.tag)
		if err := os.MkdirAll(tmp, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "packs", pack.String()[:2], pack.String()), filepath.Join(tmp, "packs-1")); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, OpenOptions{Password: "pw"})
		if err != nil {
			t.Fatal(err)
		}
		x, err := s.LockExclusive(ctx, "test", 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		x.Unlock()
		s.Close()
		if _, err := os.Stat(filepath.Join(dir, "packs", pack.String()[:2], pack.String())); (err == nil) != c.adopted {
			t.Errorf("a finished pack left in tmp/%s: in packs/ after the exclusive lock: %v, want %v", c.tag, err == nil, c.adopted)
		}
	}
}
