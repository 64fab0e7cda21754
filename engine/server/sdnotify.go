package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// SdNotify sends state ("READY=1", "WATCHDOG=1", "STOPPING=1", ...) to the
// service manager on the datagram socket named by $NOTIFY_SOCKET, as
// sd_notify(3) does; a name starting with @ is in the abstract namespace.
// With no $NOTIFY_SOCKET (not started by systemd, or not Type=notify) it
// sends nothing and returns false, nil.
func SdNotify(state string) (bool, error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return false, nil
	}
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("notify the service manager at %s: %w", os.Getenv("NOTIFY_SOCKET"), err)
	}
	defer conn.Close()
	// A manager that does not read its socket (a full queue) must not
	// hold up the caller: a watchdog ping or STOPPING=1 waits at most
	// notifyWait, as systemd's own sd_notify waits for nothing.
	if err := conn.SetWriteDeadline(time.Now().Add(notifyWait)); err != nil {
		return false, fmt.Errorf("notify the service manager at %s: %w", os.Getenv("NOTIFY_SOCKET"), err)
	}
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("notify the service manager at %s: %w", os.Getenv("NOTIFY_SOCKET"), err)
	}
	return true, nil
}

// notifyWait bounds one message to the service manager.
const notifyWait = 2 * time.Second

// WatchdogInterval is how often the service manager wants WATCHDOG=1 from
// this process: half its $WATCHDOG_USEC, as sd_watchdog_enabled(3)
// advises; 0 when it wants none (unset, or $WATCHDOG_PID names another
// process).
func WatchdogInterval() time.Duration {
	if p := os.Getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(os.Getpid()) {
		return 0
	}
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	return time.Duration(us) * time.Microsecond / 2
}

// Watchdog sends WATCHDOG=1 every interval until ctx ends, each time
// after taking the server's lock: a scheduler stuck holding it stops the
// pings and the service manager restarts the server.
func (s *Server) Watchdog(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		//lint:ignore SA2001 taking the lock is the liveness check
		s.mu.Unlock()
		if _, err := SdNotify("WATCHDOG=1"); err != nil {
			s.o.Log.Warn("watchdog ping not sent", "err", err)
		}
	}
}
