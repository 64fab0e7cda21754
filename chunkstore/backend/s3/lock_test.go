package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/internal/testchild"

	"github.com/recall-backup/recall/chunkstore/backend"
	holderfile "github.com/recall-backup/recall/internal/holder"
	"golang.org/x/sys/unix"
)

func holdersOf(err error) []string {
	var le *backend.LockedError
	if !errors.As(err, &le) {
		return nil
	}
	var out []string
	for _, h := range le.Holders {
		out = append(out, string(h))
	}
	slices.Sort(out)
	return out
}

// Holders in separate backends (processes) see each other: shared beside
// shared, exclusive alone, and a refused one names the holders.
func TestLockTwoHolders(t *testing.T) {
	cfg := config(t, gateway(t).Endpoint)
	a, b := open(t, cfg), open(t, cfg)
	sa, err := a.Lock(bg, "store", backend.Shared, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.Lock(bg, "store", backend.Shared, []byte("b"))
	if err != nil {
		t.Fatalf("shared beside shared: %v", err)
	}
	if _, err := b.Lock(bg, "store", backend.Exclusive, []byte("x")); !slices.Equal(holdersOf(err), []string{"a", "b"}) {
		t.Fatalf("exclusive beside two shared: %v, holders %q", err, holdersOf(err))
	}
	sa.Unlock()
	sb.Unlock()
	x, err := a.Lock(bg, "store", backend.Exclusive, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lock(bg, "store", backend.Shared, nil); !slices.Equal(holdersOf(err), []string{"x"}) {
		t.Fatalf("shared beside exclusive: %v", err)
	}
	if err := x.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// Contenders for one exclusive lock, each with its own backend, trying
// again after a random back-off as callers do (contenders that see each
// other all back off): never two inside at once.
func TestLockExclusion(t *testing.T) {
	cfg := config(t, gateway(t).Endpoint)
	var inside, maxInside, entries atomic.Int64
	var wg sync.WaitGroup
	for i := range 5 {
		be := open(t, cfg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 8 {
				u, err := be.Lock(bg, "gc", backend.Exclusive, []byte(fmt.Sprint(i)))
				if errors.Is(err, backend.ErrLocked) {
					time.Sleep(rand.N(100 * time.Millisecond)) // the caller's back-off, not a wait for an event
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				n := inside.Add(1)
				if n > maxInside.Load() {
					maxInside.Store(n)
				}
				entries.Add(1)
				// Hold it across another contender's whole attempt.
				be.Stat(bg, backend.Handle{Type: backend.Config, Name: "config"})
				inside.Add(-1)
				if err := u.Unlock(); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if maxInside.Load() > 1 {
		t.Fatalf("%d holders of an exclusive lock at once", maxInside.Load())
	}
	if entries.Load() == 0 {
		t.Fatal("no contender ever took the lock")
	}
	t.Logf("%d of 40 tries took the lock", entries.Load())
}

// A holder that stops refreshing (its process frozen, its network cut)
// keeps its lock until the stale time has passed, then loses it to the
// next taker, and learns so at Unlock; a holder that refreshes keeps it.
func TestLockStale(t *testing.T) {
	p := newProxy(t, gatewayAddr(t))
	cfg := config(t, p.endpoint())
	cfg.LockStale, cfg.LockRefresh, cfg.Attempts = 1500*time.Millisecond, 200*time.Millisecond, 2
	cut := open(t, cfg)
	direct := cfg
	direct.Endpoint = gateway(t).Endpoint
	other := open(t, direct)

	kept, err := other.Lock(bg, "kept", backend.Exclusive, []byte("refreshing"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := cut.Lock(bg, "store", backend.Exclusive, []byte("frozen"))
	if err != nil {
		t.Fatal(err)
	}
	p.setDown(true) // its refreshes fail from now on
	start := time.Now()
	var took backend.Unlocker
	for took == nil {
		took, err = other.Lock(bg, "store", backend.Exclusive, []byte("next"))
		if err != nil && !slices.Equal(holdersOf(err), []string{"frozen"}) {
			t.Fatalf("while the frozen holder's lock is fresh: %v", err)
		}
		if time.Since(start) > 20*time.Second {
			t.Fatal("a lock not refreshed for 20 s was not taken over")
		}
	}
	if waited := time.Since(start); waited < cfg.LockStale-cfg.LockRefresh {
		t.Errorf("taken over after %v, before the stale time %v", waited, cfg.LockStale)
	}
	// The refreshed lock was never stale meanwhile.
	if _, err := cut.Lock(bg, "kept", backend.Shared, nil); err == nil {
		t.Error("a refreshed lock was taken")
	}
	select {
	case <-u.(interface{ Lost() <-chan struct{} }).Lost():
	case <-time.After(20 * time.Second):
		t.Fatal("the frozen holder was not told it lost its lock")
	}
	p.setDown(false)
	err = u.Unlock()
	if err == nil || !strings.Contains(err.Error(), "lost") {
		t.Errorf("unlock of a lock lost: %v, want an error saying so", err)
	}
	if err := took.Unlock(); err != nil {
		t.Error(err)
	}
	if err := kept.Unlock(); err != nil {
		t.Errorf("unlock of a refreshed lock: %v", err)
	}
}

// The stale time is each process's own setting: a contender with a short
// one does not take a live holder, refreshing on the schedule of its
// longer one, for dead (gc --s3-lock-stale 2m beside a backup's 30m).
func TestLockStaleIsTheHolders(t *testing.T) {
	cfg := config(t, gateway(t).Endpoint)
	long := cfg
	long.LockStale, long.LockRefresh = time.Minute, 10*time.Second
	short := cfg
	short.LockStale, short.LockRefresh = 300*time.Millisecond, 50*time.Millisecond
	holder, judge := open(t, long), open(t, short)
	u, err := holder.Lock(bg, "store", backend.Shared, []byte("backup"))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Unlock()
	// Past the judge's stale time, well within the holder's: the passage
	// of time is what is tested, there is no event to await.
	time.Sleep(time.Second)
	if x, err := judge.Lock(bg, "store", backend.Exclusive, []byte("gc")); !slices.Equal(holdersOf(err), []string{"backup"}) {
		if err == nil {
			x.Unlock()
		}
		t.Fatalf("exclusive with a shorter stale time beside a live holder: %v, want refused by \"backup\"", err)
	}
	select {
	case <-u.(interface{ Lost() <-chan struct{} }).Lost():
		t.Fatal("the live holder lost its lock")
	default:
	}
}

// A holder whose refreshes hang (a gateway that accepts connections and
// never answers) is told at LockStale-LockRefresh after its last refresh
// began, before any other may take the lock, not when a hung attempt
// finally gives up.
func TestLockLostBeforeTakeover(t *testing.T) {
	p := newProxy(t, gatewayAddr(t))
	cfg := config(t, p.endpoint())
	cfg.LockStale, cfg.LockRefresh, cfg.Attempts = time.Second, 400*time.Millisecond, 2
	cut := open(t, cfg)
	direct := cfg
	direct.Endpoint = gateway(t).Endpoint
	other := open(t, direct)

	before := time.Now()
	u, err := cut.Lock(bg, "store", backend.Exclusive, []byte("hung"))
	if err != nil {
		t.Fatal(err)
	}
	p.setStall(true) // its refreshes hang from now on
	lost := u.(interface{ Lost() <-chan struct{} }).Lost()
	lostAt := make(chan time.Time, 1)
	go func() { <-lost; lostAt <- time.Now() }()
	var took backend.Unlocker
	for took == nil {
		took, err = other.Lock(bg, "store", backend.Exclusive, []byte("next"))
		if err != nil && !slices.Equal(holdersOf(err), []string{"hung"}) {
			t.Fatalf("while the hung holder's lock is fresh: %v", err)
		}
		if took != nil {
			select {
			case <-lost:
			default:
				t.Fatal("another took the lock before its holder was told it lost it")
			}
		}
		if time.Since(before) > 20*time.Second {
			t.Fatal("a lock not refreshed for 20 s was not taken over")
		}
	}
	defer took.Unlock()
	// Lost closed by the deadline, counted from before the lock's first
	// write, give or take the scheduler; a hung attempt ends only a
	// LockRefresh after it began, past the deadline.
	if at := (<-lostAt).Sub(before); at > cfg.LockStale-cfg.LockRefresh+120*time.Millisecond {
		t.Errorf("told %v after it began taking the lock, want by %v", at, cfg.LockStale-cfg.LockRefresh)
	}
	p.setStall(false)
	if err := u.Unlock(); err == nil || !strings.Contains(err.Error(), "lost") {
		t.Errorf("unlock of a lock lost: %v, want an error saying so", err)
	}
}

// holderEnv carries a holder process's orders (TestHolderProcess): the
// JSON of a holderOrders.
const holderEnv = "RECALL_TEST_S3_LOCK_HOLDER"

type holderOrders struct {
	Config Config
	Name   string
	Mode   backend.LockMode
	Host   string // the host name its info gives; "": its own
}

// TestHolderProcess is the holder of a lock in a process of its own, run
// by startHolder: it takes the lock, says so with its info on a line of
// stdout, and holds it (refreshing) until its stdin closes or it is
// killed. It does nothing in a test run.
func TestHolderProcess(t *testing.T) {
	orders := os.Getenv(holderEnv)
	if orders == "" {
		return
	}
	var o holderOrders
	if err := json.Unmarshal([]byte(orders), &o); err != nil {
		t.Fatal(err)
	}
	be, err := Open(bg, o.Config)
	if err != nil {
		t.Fatal(err)
	}
	id := holderInfo{Token: holderfile.Token(), Boot: holderfile.BootID()}
	id.Host, _ = os.Hostname()
	if o.Host != "" {
		id.Host = o.Host
	}
	if id.Token == "" {
		t.Fatal("this process has no holder token")
	}
	info, _ := json.Marshal(id)
	u, err := be.Lock(bg, o.Name, o.Mode, info)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%s\n", info)
	io.Copy(io.Discard, os.Stdin)
	u.Unlock()
}

// startHolder runs a process that takes lock name of the store cfg in
// mode, with host as its info's host name ("": its own), and returns it
// and its info once it holds the lock.
func startHolder(t *testing.T, cfg Config, name string, mode backend.LockMode, host string) (*exec.Cmd, []byte) {
	t.Helper()
	orders, _ := json.Marshal(holderOrders{Config: cfg, Name: name, Mode: mode, Host: host})
	return testchild.Start(t, "TestHolderProcess", holderEnv+"="+string(orders))
}

// holderInfo is what the test's holders tell of themselves: what
// chunkstore.LockInfo carries for the judge (a backend knows no store's
// infos).
type holderInfo struct {
	Host  string `json:"host"`
	Token string `json:"holder"`
	Boot  string `json:"boot"`
}

// judge is chunkstore.HolderDead for holderInfos, counting its calls.
type judge struct{ calls atomic.Int64 }

func (j *judge) dead(info []byte) bool {
	j.calls.Add(1)
	var id holderInfo
	host, _ := os.Hostname()
	return json.Unmarshal(info, &id) == nil && id.Host == host && id.Boot != "" && id.Boot == holderfile.BootID() && holderfile.Dead(id.Token)
}

// A holder killed with -9 on this host frees its lock at once, with the
// stale time at its default of 30 minutes, for a Lock that asks for it
// (backend.FreeDeadHere), reaped or left a zombie; without it the lock
// stays, and the judge is not even asked (its answer would change
// nothing). A live holder, and a killed one whose info names
// another host, keep it either way. The holders' infos are read only
// when they would refuse the lock.
func TestLockHolderDiedHere(t *testing.T) {
	cfg := config(t, gateway(t).Endpoint)
	if cfg.LockStale != 0 {
		t.Fatalf("the test's stale time is %v, want the default", cfg.LockStale)
	}
	j := &judge{}
	be := open(t, cfg)
	be.SetHolderDead(j.dead)
	if be.LockStale() != 30*time.Minute {
		t.Fatalf("stale time %v, want the default 30m", be.LockStale())
	}
	free := backend.FreeDeadHere(bg)

	// Beside a live holder in a mode that does not conflict, no info is read.
	_, live := startHolder(t, cfg, "live", backend.Shared, "")
	u, err := be.Lock(free, "live", backend.Shared, []byte(`{"PID":1}`))
	if err != nil {
		t.Fatalf("shared beside a live shared holder: %v", err)
	}
	u.Unlock()
	if n := j.calls.Load(); n != 0 {
		t.Errorf("%d infos judged when no holder conflicted", n)
	}
	// A live holder on this host is not dead, whether or not asked.
	for _, ctx := range []context.Context{bg, free} {
		if _, err := be.Lock(ctx, "live", backend.Exclusive, nil); !slices.Equal(holdersOf(err), []string{string(live)}) {
			t.Fatalf("exclusive beside a live holder (free the dead: %v): %v, want refused by %s", backend.IsFreeDeadHere(ctx), err, live)
		}
	}

	for _, tc := range []struct {
		name   string
		host   string
		reaped bool // the killed holder is waited for, or left a zombie
		free   bool
	}{
		{"killed", "", true, true},
		{"killed, a zombie", "", false, true},
		{"killed on another host", "elsewhere", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(tc.name, " ", "-")
			name = strings.ReplaceAll(name, ",", "")
			cmd, info := startHolder(t, cfg, name, backend.Exclusive, tc.host)
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if tc.reaped {
				cmd.Wait()
			} else {
				var si unix.Siginfo
				if err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &si, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
					t.Fatal(err)
				}
			}
			before := j.calls.Load()
			// Not asked to free the dead: staleness alone, and no judging.
			if _, err := be.Lock(bg, name, backend.Exclusive, []byte("probe")); !slices.Equal(holdersOf(err), []string{string(info)}) {
				t.Fatalf("lock of a killed holder without FreeDeadHere: %v, want refused by %s", err, info)
			}
			if n := j.calls.Load() - before; n != 0 {
				t.Errorf("%d infos judged without FreeDeadHere", n)
			}
			u, err := be.Lock(free, name, backend.Exclusive, []byte("next"))
			if !tc.free {
				if !slices.Equal(holdersOf(err), []string{string(info)}) {
					t.Fatalf("lock of a holder killed on another host: %v, want refused by %s", err, info)
				}
				return
			}
			if err != nil {
				t.Fatalf("lock of a holder killed here, with FreeDeadHere: %v, want taken at once", err)
			}
			defer u.Unlock()
			if j.calls.Load() == before {
				t.Error("taken without judging the dead holder")
			}
			// Its object is gone, as a stale holder's would be.
			hs, err := be.holders(bg, name)
			if err != nil {
				t.Fatal(err)
			}
			if len(hs) != 1 {
				t.Errorf("%d holder objects after taking the lock, want 1 (ours)", len(hs))
			}
		})
	}
}

// A holder's info is anyone's to write: a huge one is read no further
// than maxInfo, and the refusal still names the holder with what was read.
func TestLockHolderInfoBounded(t *testing.T) {
	cfg := config(t, gateway(t).Endpoint)
	be := open(t, cfg)
	big := bytes.Repeat([]byte("i"), 3*maxInfo)
	key := be.dir(backend.Locks.String()) + "big/" + holderName(backend.Exclusive, "0123456789abcdef", time.Hour)
	if err := be.put(bg, key, big); err != nil {
		t.Fatal(err)
	}
	_, err := be.Lock(bg, "big", backend.Exclusive, []byte("next"))
	var le *backend.LockedError
	if !errors.As(err, &le) || len(le.Holders) != 1 {
		t.Fatalf("lock beside a holder of a huge info: %v, want refused by it", err)
	}
	if got := le.Holders[0]; len(got) != maxInfo || !bytes.Equal(got, big[:maxInfo]) {
		t.Errorf("the holder's info read: %d bytes, want the first %d", len(got), maxInfo)
	}
}
