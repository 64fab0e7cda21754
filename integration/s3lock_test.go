package integration

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/internal/cephtest"
	"github.com/recall-backup/recall/internal/holder"
)

// A backup to the gateway killed with -9 while it holds its locks leaves
// them on the store, where they would keep every other backup out for
// --s3-lock-stale (30 minutes by default, as here). It died on this host,
// so the next backup of its source frees its source's lock at once,
// without waiting, and the store verifies clean. Garbage collection run
// right after the kill does not count the killed session as ended: the
// gateway may yet store what it sent before it died, so the collection
// reports the packs it hid as pending on that session.
func TestS3LockHolderKilled(t *testing.T) {
	f := &s3Fixture{cl: cephtest.Start(t, cephtest.Options{})}
	e := f.env(t)
	loc := f.loc("killed-holder", "")
	e.ok("init", "--store", loc)
	// Garbage for the collection to hide: a point of another source,
	// forgotten.
	old := t.TempDir()
	mixedTree(t, old, 5, 4)
	e.ok("backup", "--source", "old", old)
	e.ok("forget", "--source", "old", "latest")
	// The names of the locks taken so far stay (not their holders).
	oldLocks := f.names(t, loc, backend.Locks)
	src := t.TempDir()
	mixedTree(t, src, 17, 16)

	// Killed once it has read data: it holds its locks then.
	killed := 0 // its pid
	stderr, err := e.backupWatched(t, src, func(p *os.Process, done int64) {
		if killed == 0 && done > 0 {
			must(t, p.Signal(syscall.SIGKILL))
			killed = p.Pid
		}
	})
	if killed == 0 {
		t.Fatalf("the backup ended before it was killed: %v\n%s", err, stderr)
	}

	// The killed backup's source lock is still there, and a client that
	// judges holders as recall does but does not ask to free dead ones
	// (backend.FreeDeadHere) is refused.
	be, err := f.backend(t, loc)
	must(t, err)
	be.SetHolderDead(chunkstore.HolderDead)
	var sourceLocks []string
	must(t, be.List(context.Background(), backend.Locks, func(name string, _ int64) error {
		if strings.HasPrefix(name, "source-") && !slices.Contains(oldLocks, name) {
			sourceLocks = append(sourceLocks, name)
		}
		return nil
	}))
	if len(sourceLocks) != 1 {
		t.Fatalf("source locks on the store after the kill, beside those before it (%q): %q, want the killed backup's one", oldLocks, sourceLocks)
	}
	u, err := be.Lock(context.Background(), sourceLocks[0], backend.Exclusive, []byte("test"))
	var busy *backend.LockedError
	if !errors.As(err, &busy) || len(busy.Holders) != 1 {
		if err == nil {
			u.Unlock()
		}
		t.Fatalf("the killed backup's source lock %s, taken without FreeDeadHere: %v, want refused by it", sourceLocks[0], err)
	}
	t.Logf("the killed backup's source lock: %v", err)
	// Its info names its holder file in the tests' holder directory
	// (RECALL_HOLDER_DIR), with this kernel's boot.
	var info chunkstore.LockInfo
	must(t, json.Unmarshal(busy.Holders[0], &info))
	if info.Boot != holder.BootID() || info.Holder == "" {
		t.Fatalf("the killed backup's info %s: want a holder token and this boot %s", busy.Holders[0], holder.BootID())
	}
	if _, err := os.Stat(filepath.Join(os.Getenv(holder.DirEnv), info.Holder+".lock")); err != nil {
		t.Fatalf("the killed backup's holder file is not in %s=%s: %v", holder.DirEnv, os.Getenv(holder.DirEnv), err)
	}

	// Garbage collection at once: it hides the forgotten point's packs and
	// waits for the killed session, which it takes for running.
	var gc struct {
		Pending    bool `json:"pending"`
		Hidden     int  `json:"packs_hidden"`
		WaitingFor []struct {
			PID     int    `json:"pid"`
			Purpose string `json:"purpose"`
		} `json:"waiting_for"`
	}
	out := e.ok("gc", "--json", "--lock-wait", "0s")
	must(t, json.Unmarshal([]byte(out), &gc))
	waits := false
	for _, w := range gc.WaitingFor {
		waits = waits || w.PID == killed
	}
	if !gc.Pending || gc.Hidden == 0 || !waits {
		t.Fatalf("gc right after a backup (pid %d) was killed: %s\nwant packs hidden and pending on the killed backup's session", killed, out)
	}

	start := time.Now()
	r := e.run("backup", "--source", "s", "--lock-wait", "0s", src)
	if r.code != 0 {
		t.Fatalf("backup after a backup killed on this host: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("the next backup took %v", time.Since(start).Round(time.Millisecond))
	e.ok("verify", "--read-data")
	restoreSame(t, e, "latest", snapshot(t, src))
}
