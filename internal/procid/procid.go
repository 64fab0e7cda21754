// Package procid names a process so that another process on the same
// machine can later tell, for certain, that it is dead: its host name, the
// kernel's boot id, its PID namespace, its pid and its start time. A pid
// alone does not do: pids are reused, the same pid names other processes
// in other namespaces (containers) and after a reboot, and a killed
// process that its parent has not waited for stays a zombie that answers
// kill(pid, 0).
//
// Lock holders write their ID into their lock's info (chunkstore.LockInfo)
// so that a lock kept on a remote store, which does not die with its
// holder as a flock does, can be freed at once when the holder died on
// this very machine.
package procid

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ID identifies a process. Boot, PIDNS and Start are empty when they could
// not be read; an ID without them is never judged dead (Dead).
type ID struct {
	Host string
	PID  int
	// Boot is the kernel's boot id (/proc/sys/kernel/random/boot_id),
	// new at every boot.
	Boot string
	// PIDNS is the PID namespace, as the link /proc/self/ns/pid reads
	// ("pid:[4026531836]").
	PIDNS string
	// Start is the process's start time in clock ticks since boot (field
	// 22 of /proc/PID/stat): a pid reused by a later process has another.
	Start uint64
}

var (
	selfOnce sync.Once
	self     ID
)

// Self returns this process's ID. The host name is read at each call (it
// may be changed while a server runs); the rest once.
func Self() ID {
	selfOnce.Do(func() {
		self = ID{PID: os.Getpid()}
		// /proc must be this process's own PID namespace's view, or the
		// pids read through it are other processes: /proc/self names the
		// pid this process has there, which is its own only then.
		st, err := readStat("self")
		if err != nil || st.pid != self.PID {
			return
		}
		b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
		if err != nil {
			return
		}
		ns, err := os.Readlink("/proc/self/ns/pid")
		if err != nil {
			return
		}
		self.Boot, self.PIDNS, self.Start = strings.TrimSpace(string(b)), ns, st.start
	})
	id := self
	id.Host, _ = os.Hostname()
	return id
}

// Dead reports whether the process id names is known to be dead: it ran
// on this host (same host name), since this boot (same boot id), in this
// process's PID namespace, and no process has its pid now, or only a
// zombie has, or the process with its pid started at another time (the
// pid was reused). Anything unknown or unreadable gives false: an ID
// without boot id, namespace or start time (written by an older version),
// one of another host, boot or namespace, a /proc that hides the pid's
// details. This process is never judged dead.
//
// Two hosts with one name share no boot id, and containers on one host
// share a boot id but not a PID namespace (unless they share the host's
// pids, where the judgement holds); a namespace whose id was reused after
// it ended had only dead processes.
func (id ID) Dead() bool {
	if id.PID <= 0 || id.Host == "" || id.Boot == "" || id.PIDNS == "" || id.Start == 0 {
		return false
	}
	me := Self()
	if me.Boot == "" || id.Host != me.Host || id.Boot != me.Boot || id.PIDNS != me.PIDNS {
		return false
	}
	if id.PID == me.PID && id.Start == me.Start {
		return false
	}
	st, err := readStat(strconv.Itoa(id.PID))
	if errors.Is(err, fs.ErrNotExist) {
		// A /proc mounted with hidepid=2 hides other users' processes:
		// only the kernel's "no such process" says none has the pid.
		return errors.Is(unix.Kill(id.PID, 0), unix.ESRCH)
	}
	if err != nil {
		return false
	}
	if st.start != id.Start {
		return true
	}
	// A zombie has exited; but a thread group's leader that exited alone
	// shows as a zombie while its other threads run on.
	return (st.state == 'Z' || st.state == 'X') && alone(id.PID)
}

type stat struct {
	pid   int
	state byte
	start uint64
}

// readStat reads /proc/<pid>/stat. Its second field, the command name in
// parentheses, may hold spaces and parentheses of its own: the fields
// after it are counted from the last ')'.
func readStat(pid string) (stat, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return stat{}, err
	}
	var st stat
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 1 || end < open {
		return stat{}, errors.New("/proc/" + pid + "/stat: no command name in parentheses")
	}
	if st.pid, err = strconv.Atoi(string(bytes.TrimSpace(b[:open]))); err != nil {
		return stat{}, errors.New("/proc/" + pid + "/stat: bad pid")
	}
	// Fields from 3 (state) on; the start time is field 22.
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return stat{}, errors.New("/proc/" + pid + "/stat: too few fields")
	}
	st.state = f[0][0]
	if st.start, err = strconv.ParseUint(f[22-3], 10, 64); err != nil || st.start == 0 {
		return stat{}, errors.New("/proc/" + pid + "/stat: bad start time")
	}
	return st, nil
}

// alone reports whether /proc/<pid>/task lists one task at most: no
// thread of the group runs on beside its leader.
func alone(pid int) bool {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	return err == nil && len(ents) <= 1
}
