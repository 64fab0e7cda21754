package main

import (
	"encoding/json"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
)

// repairHome is a home whose store holds one point of a few random files.
func repairHome(t *testing.T) string {
	t.Helper()
	home, src := t.TempDir(), t.TempDir()
	if _, err := runRecall(t, "--home", home, "init"); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(5))
	for _, name := range []string{"a", "b", "c"} {
		b := make([]byte, 300_000)
		rng.Read(b)
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := runRecall(t, "--home", home, "-q", "backup", "--source", "s", src); err != nil {
		t.Fatal(err)
	}
	return home
}

// dataBlob finds a data blob of the store in home: its id, its pack's
// file and its place there.
func dataBlob(t *testing.T, home string) (id, pack, packFile string, off, n int64) {
	t.Helper()
	dir := engine.StoreDir(home)
	st, err := chunkstore.Open(dir, chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var packs []chunkstore.ID
	if err := st.ListPacks(func(id chunkstore.ID, _ int64) error { packs = append(packs, id); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, p := range packs {
		ents, err := st.ReadPackHeader(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Type == chunkstore.DataBlob {
				h := p.String()
				return e.ID.String(), h, filepath.Join(dir, "packs", h[:2], h), int64(e.Offset), int64(e.Length)
			}
		}
	}
	t.Fatal("no data blob in the store")
	return
}

func flipAt(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x20
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRepairPacksLostBlobsExit4: repair packs that leaves a blob no pack
// holds a good copy of exits 4 (README, Repair) and names the blob and its
// pack, in --json and in text; run again, with nothing left, it exits 0.
func TestRepairPacksLostBlobsExit4(t *testing.T) {
	home := repairHome(t)
	blob, pack, file, off, n := dataBlob(t, home)
	flipAt(t, file, off+n/2)
	if _, err := runRecall(t, "--home", home, "verify", "--read-data"); exitCode(err) != exitDamaged {
		t.Fatalf("verify --read-data: %v (exit %d), want the flipped blob found", err, exitCode(err))
	}

	out, err := runRecall(t, "--home", home, "repair", "packs", "--dry-run", "--json")
	if exitCode(err) != exitDamaged {
		t.Errorf("repair packs --dry-run --json: %v (exit %d), want exit 4", err, exitCode(err))
	}
	var rep engine.RepairReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(rep.Lost) != 1 || rep.Lost[0].Blob != blob || rep.Lost[0].Pack != pack {
		t.Errorf("lost_blobs %+v, want blob %s of pack %s", rep.Lost, blob, pack)
	}

	out, err = runRecall(t, "--home", home, "repair", "packs")
	if exitCode(err) != exitDamaged {
		t.Errorf("repair packs: %v (exit %d), want exit 4", err, exitCode(err))
	}
	if want := "lost blob " + blob + " of pack " + pack + ": "; !strings.Contains(out, want) {
		t.Errorf("repair packs prints\n%s\nwant a line %q", out, want)
	}
	if err == nil || !strings.Contains(err.Error(), "1 blobs lost") || !strings.Contains(err.Error(), "'recall repair points'") {
		t.Errorf("repair packs error %v: want the count and the next steps", err)
	}

	out, err = runRecall(t, "--home", home, "repair", "packs")
	if err != nil || !strings.Contains(out, "nothing to repair") {
		t.Errorf("second repair packs: %v (exit %d)\n%s\nwant exit 0, nothing to repair", err, exitCode(err), out)
	}
}

// TestRepairIndexUnlocatableExit4: a pack whose header is unreadable and
// that no index file lists stays after repair index; it exits 4 and names
// the pack in text.
func TestRepairIndexUnlocatableExit4(t *testing.T) {
	home := repairHome(t)
	_, pack, file, _, _ := dataBlob(t, home)
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	flipAt(t, file, st.Size()-13) // the header's checksum, at the end
	idx := filepath.Join(engine.StoreDir(home), "index")
	ents, err := os.ReadDir(idx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		flipAt(t, filepath.Join(idx, e.Name()), 20)
	}
	out, err := runRecall(t, "--home", home, "repair", "index")
	if exitCode(err) != exitDamaged {
		t.Errorf("repair index: %v (exit %d), want exit 4\n%s", err, exitCode(err), out)
	}
	if want := "unlocatable pack " + pack + ": "; !strings.Contains(out, want) {
		t.Errorf("repair index prints\n%s\nwant a line %q", out, want)
	}
}

// TestRepairAfterStoppedSalvage: a repair packs stopped right after it
// removed the damaged pack (kill -9 there) has not said which blob it
// lost. The next repair packs or repair index says it and exits 4, as the
// stopped run would have, not "nothing to repair" with exit 0; the run
// after finds nothing to repair, and verify sends the user not to repair
// packs, which has nothing left to salvage, but to a new backup and
// repair points.
func TestRepairAfterStoppedSalvage(t *testing.T) {
	for _, next := range []string{"packs", "index"} {
		t.Run(next, func(t *testing.T) {
			home := repairHome(t)
			blob, pack, file, off, n := dataBlob(t, home)
			flipAt(t, file, off+n/2)
			if _, err := runRecall(t, "--home", home, "verify", "--read-data"); exitCode(err) != exitDamaged {
				t.Fatalf("verify --read-data: %v (exit %d), want the flipped blob found", err, exitCode(err))
			}
			errKilled := errors.New("killed")
			killed := false
			restore := chunkstore.SetFaultHook(func(chunkstore.Step) error {
				if !killed {
					if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
						return nil
					}
				}
				killed = true // every step from the pack's removal on
				return errKilled
			})
			_, err := runRecall(t, "--home", home, "repair", "packs")
			restore()
			if !killed || err == nil {
				t.Fatalf("repair packs stopped after the pack's removal: killed %v, %v", killed, err)
			}

			out, err := runRecall(t, "--home", home, "repair", next)
			if exitCode(err) != exitDamaged {
				t.Errorf("repair %s after the stopped repair packs: %v (exit %d), want exit 4\n%s", next, err, exitCode(err), out)
			}
			if want := "lost blob " + blob + " of pack " + pack + ": "; !strings.Contains(out, want) {
				t.Errorf("repair %s after the stopped repair packs prints\n%s\nwant a line %q", next, out, want)
			}
			out, err = runRecall(t, "--home", home, "repair", "packs")
			if err != nil || !strings.Contains(out, "nothing to repair") {
				t.Errorf("repair packs after that: %v (exit %d)\n%s\nwant exit 0, nothing to repair", err, exitCode(err), out)
			}
			_, err = runRecall(t, "--home", home, "verify", "--read-data")
			if exitCode(err) != exitDamaged || err == nil || strings.Contains(err.Error(), "repair packs") || !strings.Contains(err.Error(), "'recall repair points'") {
				t.Errorf("verify after the repair: %v (exit %d); want the lost file, and a new backup and repair points advised, not repair packs", err, exitCode(err))
			}
		})
	}
}

// TestVerifyUnlistedPackFileAdvice: a file in packs/ under a pack's name
// that no index file lists and whose header does not read (here, a copy
// of another pack) is needed by no point: verify says to put back its
// index file or move it out, not to run repair packs, which leaves it.
func TestVerifyUnlistedPackFileAdvice(t *testing.T) {
	home := repairHome(t)
	_, _, file, _, _ := dataBlob(t, home)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	name := "ab" + strings.Repeat("0", 62)
	dir := filepath.Join(engine.StoreDir(home), "packs", "ab")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = runRecall(t, "--home", home, "verify")
	if exitCode(err) != exitDamaged || strings.Contains(err.Error(), "repair packs") || !strings.Contains(err.Error(), "move it out of packs/") {
		t.Errorf("verify with an unlisted pack file: %v (exit %d); want exit 4 and advice to move it out, not repair packs", err, exitCode(err))
	}
}
