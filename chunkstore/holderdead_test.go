package chunkstore

import (
	"encoding/json"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/recall-backup/recall/internal/golden"
)

// The holder's info is a format others read (a lock object's body on a
// remote store, a lock file on a local one): pinned.
func TestLockInfoFormat(t *testing.T) {
	b, err := json.Marshal(LockInfo{PID: 4242, Host: "backup1", Purpose: "backup of /srv/www", Since: time.Date(2026, 11, 21, 23, 45, 10, 0, time.UTC),
		Mode: "shared", Source: "www", Boot: "5b1e0c4a-9f3d-4e27-b8a6-2c7d91e0f314", PIDNS: "pid:[4026531836]", Start: 1234567})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "lockinfo.golden", b)
}

// HolderDead reads the infos holders write (NewLockInfo): a holder of this
// host whose process is gone is dead; this process, a holder of another
// host, and an info of an older version (no boot id, namespace or start
// time) or one that does not parse are not.
func TestHolderDead(t *testing.T) {
	me := NewLockInfo("test", "exclusive", "")
	if me.Boot == "" || me.PIDNS == "" || me.Start == 0 {
		t.Fatalf("this process's info lacks what tells it from a later one: %+v", me)
	}
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	gone := me
	gone.PID = cmd.Process.Pid
	other := gone
	other.Host += "-elsewhere"
	enc := func(i LockInfo) []byte { b, _ := json.Marshal(i); return b }
	for _, tc := range []struct {
		name string
		info []byte
		dead bool
	}{
		{"this process", enc(me), false},
		{"a killed process of this host", enc(gone), true},
		{"a killed process of another host", enc(other), false},
		{"an older version's info", []byte(`{"pid":` + strconv.Itoa(gone.PID) + `,"host":"` + gone.Host + `","purpose":"backup","since":"2026-11-21T23:45:10Z"}`), false},
		{"not an info", []byte("garbage"), false},
		{"empty", nil, false},
	} {
		if got := HolderDead(tc.info); got != tc.dead {
			t.Errorf("%s: HolderDead(%s) = %v, want %v", tc.name, tc.info, got, tc.dead)
		}
	}
}
