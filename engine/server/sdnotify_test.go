package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSdNotify: the states reach a fake service manager's socket, by path
// and in the abstract namespace; with no NOTIFY_SOCKET nothing is sent.
func TestSdNotify(t *testing.T) {
	for _, c := range []struct{ name, env string }{
		{"path", filepath.Join(t.TempDir(), "notify")},
		{"abstract", fmt.Sprintf("@recall-test-%d", os.Getpid())},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := c.env
			if name[0] == '@' {
				name = "\x00" + name[1:]
			}
			ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
			must(t, err)
			defer ln.Close()
			t.Setenv("NOTIFY_SOCKET", c.env)
			for _, state := range []string{"READY=1", "WATCHDOG=1", "STOPPING=1"} {
				sent, err := SdNotify(state)
				if !sent || err != nil {
					t.Fatalf("SdNotify(%q): sent %v, %v", state, sent, err)
				}
				buf := make([]byte, 256)
				must(t, ln.SetReadDeadline(time.Now().Add(10*time.Second)))
				n, err := ln.Read(buf)
				must(t, err)
				if string(buf[:n]) != state {
					t.Errorf("manager got %q, want %q", buf[:n], state)
				}
			}
		})
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := SdNotify("READY=1"); sent || err != nil {
		t.Errorf("no NOTIFY_SOCKET: sent %v, %v; want nothing sent, no error", sent, err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent"))
	if sent, err := SdNotify("READY=1"); sent || err == nil {
		t.Errorf("NOTIFY_SOCKET naming no socket: sent %v, %v; want an error", sent, err)
	}
}

// TestSdNotifyManagerNotReading: a manager whose socket queue is full
// (it reads nothing) costs SdNotify at most notifyWait and an error,
// never a caller stuck for good.
func TestSdNotifyManagerNotReading(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	must(t, err)
	defer ln.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	for i := 0; ; i++ {
		start := time.Now()
		sent, err := SdNotify("WATCHDOG=1")
		if err != nil {
			t.Logf("after %d messages: %v in %v", i, err, time.Since(start))
			if sent {
				t.Errorf("SdNotify reports sent with %v", err)
			}
			if took := time.Since(start); took > notifyWait+5*time.Second {
				t.Errorf("SdNotify to a full queue took %v, want about %v", took, notifyWait)
			}
			return
		}
		if i > 100000 {
			t.Fatalf("%d messages queued on a socket nobody reads", i)
		}
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0},
		{"60000000", "", 30 * time.Second},
		{"60000000", fmt.Sprint(os.Getpid()), 30 * time.Second},
		{"60000000", "1", 0}, // another process's watchdog
		{"x", "", 0},
		{"-5", "", 0},
	} {
		t.Setenv("WATCHDOG_USEC", c.usec)
		t.Setenv("WATCHDOG_PID", c.pid)
		if got := WatchdogInterval(); got != c.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, want %v", c.usec, c.pid, got, c.want)
		}
	}
}

// TestWatchdogPings: a running server's watchdog pings the manager at
// its interval.
func TestWatchdogPings(t *testing.T) {
	f := newFixture(t)
	sock := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	must(t, err)
	defer ln.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	r := start(t, f.home, NewFakeClock(week0), nil)
	defer r.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.srv.Watchdog(ctx, time.Millisecond)
	buf := make([]byte, 64)
	for i := 0; i < 3; i++ {
		must(t, ln.SetReadDeadline(time.Now().Add(10*time.Second)))
		n, err := ln.Read(buf)
		must(t, err)
		if string(buf[:n]) != "WATCHDOG=1" {
			t.Fatalf("manager got %q, want WATCHDOG=1", buf[:n])
		}
	}
}
