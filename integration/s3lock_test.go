package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/internal/cephtest"
)

// A backup to the gateway killed with -9 while it holds its locks leaves
// them on the store, where they would keep every other backup out for
// --s3-lock-stale (30 minutes by default, as here). It died on this host,
// so the next backup frees them at once, without waiting, and the store
// verifies clean.
func TestS3LockHolderKilled(t *testing.T) {
	f := &s3Fixture{cl: cephtest.Start(t, cephtest.Options{})}
	e := f.env(t)
	loc := f.loc("killed-holder", "")
	e.ok("init", "--store", loc)
	src := t.TempDir()
	mixedTree(t, src, 17, 16)

	cmd := e.command("--progress-interval", "50ms", "backup", "--json", "--source", "s", src)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	must(t, cmd.Start())
	// Killed once it has read data: it holds its locks then.
	sc := bufio.NewScanner(stdout)
	killed := false
	for !killed && sc.Scan() {
		var st struct {
			Type  string `json:"message_type"`
			Bytes int64  `json:"bytes_done"`
		}
		if json.Unmarshal(sc.Bytes(), &st) == nil && st.Type == "status" && st.Bytes > 0 {
			must(t, cmd.Process.Signal(syscall.SIGKILL))
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("the backup ended before it was killed: %v\n%s", err, stderr.String())
	}

	// The killed backup's store lock is still there: a client that does
	// not judge holders by their process (the backend alone) is refused.
	be, err := f.backend(t, loc)
	must(t, err)
	if u, err := be.Lock(context.Background(), "writer", backend.Exclusive, []byte("test")); !errors.Is(err, backend.ErrLocked) {
		if err == nil {
			u.Unlock()
		}
		t.Fatalf("the killed backup left no lock to free: %v", err)
	} else {
		t.Logf("the killed backup's lock: %v", err)
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
