package chunkstore

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/internal/testchild"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/local"
	"github.com/recall-backup/recall/internal/golden"
	"github.com/recall-backup/recall/internal/holder"
)

// The holder's info is a format others read (a lock object's body on a
// remote store, a lock file on a local one): pinned.
func TestLockInfoFormat(t *testing.T) {
	b, err := json.Marshal(LockInfo{PID: 4242, Host: "backup1", Purpose: "backup of /srv/www", Since: time.Date(2026, 11, 21, 23, 45, 10, 0, time.UTC),
		Mode: "shared", Source: "www", Holder: "5b1e0c4a9f3d4e27", Boot: "3f1c2b9e-8d4a-4e6f-9b1a-7c5d2e8f0a13"})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "lockinfo.golden", b)
}

const holderInfoEnv = "RECALL_TEST_HOLDER_INFO"

// outliving is a backend whose locks, as an object store's, outlive their
// holder until stale.
type outliving struct{ backend.Backend }

func (outliving) LockStale() time.Duration { return 30 * time.Minute }

// A store's locks carry this process's holder token when they outlive
// their holder, and only then: a local store's die with it and need none.
func TestLockInfoHolder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		be    backend.Backend
		token bool
	}{
		{"local", local.Open(t.TempDir()), false},
		{"outliving its holder", outliving{local.Open(t.TempDir())}, true},
	} {
		var i LockInfo
		if err := json.Unmarshal((&Store{be: tc.be}).lockInfo("test", "exclusive", ""), &i); err != nil {
			t.Fatal(err)
		}
		if tc.token && (i.Holder == "" || i.Holder != holder.Token()) || !tc.token && i.Holder != "" {
			t.Errorf("%s: holder token %q, want it: %v", tc.name, i.Holder, tc.token)
		}
		if tc.token && (i.Boot == "" || i.Boot != holder.BootID()) || !tc.token && i.Boot != "" {
			t.Errorf("%s: boot id %q, want this kernel's (%q): %v", tc.name, i.Boot, holder.BootID(), tc.token)
		}
		if i.PID != os.Getpid() || i.Purpose != "test" {
			t.Errorf("%s: info %+v", tc.name, i)
		}
	}
}

// TestHolderInfoProcess is a lock holder in a process of its own, run by
// startInfoHolder: it prints the info its locks on a remote store would
// carry (with its holder token, which makes its holder file) and lives
// until its stdin closes or it is killed. It does nothing in a test run.
func TestHolderInfoProcess(t *testing.T) {
	dir := os.Getenv(holderInfoEnv) // the parent's: a killed process leaves its own temp dirs behind
	if dir == "" {
		return
	}
	b := (&Store{be: outliving{local.Open(dir)}}).lockInfo("test holder", "exclusive", "")
	os.Stdout.Write(append(b, '\n'))
	io.Copy(io.Discard, os.Stdin)
}

func startInfoHolder(t *testing.T) (*exec.Cmd, LockInfo) {
	t.Helper()
	cmd, line := testchild.Start(t, "TestHolderInfoProcess", holderInfoEnv+"="+t.TempDir())
	var info LockInfo
	if err := json.Unmarshal(bytes.TrimSpace(line), &info); err != nil || info.Holder == "" {
		t.Fatalf("the holder process's info %q has no holder token: %v", line, err)
	}
	return cmd, info
}

// HolderDead reads the infos holders write (Store.lockInfo): a holder of this
// host whose process is alive is alive, killed it is dead, as often as
// asked; this process, a holder of another host or another boot (a clone
// of the machine's disk), or of no boot id, a token that is no token, an
// info of an older version or one that does not parse are alive.
func TestHolderDead(t *testing.T) {
	var me LockInfo
	json.Unmarshal((&Store{be: outliving{local.Open(t.TempDir())}}).lockInfo("test", "exclusive", ""), &me)
	d := holder.Default()
	if d == nil || me.Holder != d.Token() || me.Holder == "" {
		t.Fatalf("this process has no holder token: info %+v, directory %v", me, d)
	}
	cmd, live := startInfoHolder(t)
	file := filepath.Join(d.Path(), live.Holder+".lock")
	enc := func(i LockInfo) []byte { b, _ := json.Marshal(i); return b }
	elsewhere := live
	elsewhere.Host += "-elsewhere"
	traversal := live
	traversal.Holder = "../holders/" + live.Holder
	otherBoot := live
	otherBoot.Boot = "00000000-0000-4000-8000-000000000000"
	noBoot := live
	noBoot.Boot = ""
	older := []byte(`{"pid":` + strconv.Itoa(live.PID) + `,"host":"` + live.Host + `","purpose":"backup","since":"2026-11-21T23:45:10Z"}`)
	check := func(name string, info []byte, dead bool) {
		t.Helper()
		if got := HolderDead(info); got != dead {
			t.Errorf("%s: HolderDead(%s) = %v, want %v", name, info, got, dead)
		}
	}
	check("this process", enc(me), false)
	check("a live holder of this host", enc(live), false)
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("a live holder's file: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	check("a killed holder of another host", enc(elsewhere), false)
	check("a killed holder of another boot", enc(otherBoot), false)
	check("a killed holder whose info gives no boot", enc(noBoot), false)
	check("a killed holder's token behind a path", enc(traversal), false)
	check("a killed holder, in an older version's info", older, false)
	check("not an info", []byte("garbage"), false)
	check("empty", nil, false)
	check("a killed holder of this host", enc(live), true)
	// A holder leaves several locks (a server, one per backup running),
	// each judged when met.
	check("a killed holder of this host, judged again", enc(live), true)
	if _, err := os.Stat(file); err != nil {
		t.Errorf("the killed holder's file went once judged: %v", err)
	}
}
