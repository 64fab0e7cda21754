package chunkstore

import (
	"bytes"
	"io/fs"
	"maps"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/faulty"
	"github.com/recall-backup/recall/chunkstore/backend/local"
)

// A pack recorded damaged that the disk under it then fails to read
// (EIO) is not salvaged: judged by what could not be read, every blob of
// it would count as lost and the pack be deleted. The salvage marks it
// Unreadable, naming the pack file, saying it is left as it is and to
// check the disk; the pack and its damage record stay.
func TestSalvageIOErrorLeavesPack(t *testing.T) {
	for _, enc := range []bool{false, true} {
		dir, s := newStore(t, enc)
		ids := saveBlobs(t, s, randBytes(1, 30_000), randBytes(2, 40_000), randBytes(3, 50_000))
		p, e := blobPlace(t, s, ids[1])
		flipAt(t, p, int64(e.Offset)+5)
		pack, _ := reopen(t, dir).PackOf(ids[1])
		if pc, err := reopen(t, dir).CheckPack(pack); err != nil || len(pc.Bad) != 1 {
			t.Fatalf("CheckPack: %v %+v", err, pc)
		}
		fb := faulty.New(local.Open(dir))
		s2, err := OpenBackend(fb, OpenOptions{Password: "pw"})
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		bad, err := s2.DamagedPacks()
		if err != nil || len(bad) != 1 || bad[0].Pack != pack {
			t.Fatalf("DamagedPacks: %v %+v", err, bad)
		}
		before, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		listing := storeFiles(t, dir)
		// From here every read of a pack fails in the disk.
		fb.FailAt(faulty.Load, backend.Packs, 0, &fs.PathError{Op: "read", Path: p, Err: syscall.EIO})
		lock, err := s2.LockWriter(t.Context(), "repair", 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, dry := range []bool{true, false} {
			sv, _, err := lock.SalvagePacks(bad, dry)
			if err != nil || len(sv) != 1 || !sv[0].Unreadable || sv[0].Removed || len(sv[0].Lost) != 0 {
				t.Fatalf("encrypted=%v dry=%v: salvage of a pack that reads EIO: %v %+v", enc, dry, err, sv)
			}
			for _, want := range []string{p, "input/output error", "left as it is", "check the disk"} {
				if !strings.Contains(sv[0].Reason, want) {
					t.Errorf("encrypted=%v dry=%v: %q does not say %q", enc, dry, sv[0].Reason, want)
				}
			}
		}
		lock.Unlock()
		if after, err := os.ReadFile(p); err != nil || !bytes.Equal(before, after) {
			t.Errorf("encrypted=%v: pack changed or gone: %v", enc, err)
		}
		if got := storeFiles(t, dir); !maps.Equal(got, listing) {
			t.Errorf("encrypted=%v: the store changed: %d files, were %d", enc, len(got), len(listing))
		}
	}
}

// What a repair that cannot read a pack says to do follows why: its
// owner and mode, or the disk under it.
func TestPackUnreadableAdvice(t *testing.T) {
	for _, c := range []struct {
		errno     syscall.Errno
		want, not string
	}{
		{syscall.EACCES, "owner and mode", "check the disk"},
		{syscall.EIO, "check the disk", "owner and mode"},
		{syscall.ESTALE, "check the disk", "owner and mode"},
	} {
		err := packUnreadable("read header of", testID(1), &fs.PathError{Op: "open", Path: "/s/packs/01/0101", Err: c.errno})
		if msg := err.Error(); !strings.Contains(msg, "/s/packs/01/0101") || !strings.Contains(msg, "left as it is") || !strings.Contains(msg, c.want) || strings.Contains(msg, c.not) {
			t.Errorf("%v: %q", c.errno, msg)
		}
	}
}
