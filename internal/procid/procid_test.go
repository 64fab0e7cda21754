package procid

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// child starts a sleep and returns it with its ID, read before anything
// happens to it.
func child(t *testing.T) (*exec.Cmd, ID) {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	st, err := readStat(strconv.Itoa(cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	id := Self()
	id.PID, id.Start = cmd.Process.Pid, st.start
	return cmd, id
}

// gone is the ID of a process that was killed and waited for: no process
// has its pid.
func gone(t *testing.T) ID {
	cmd, id := child(t)
	cmd.Process.Kill()
	cmd.Wait()
	return id
}

// zombie is the ID of a process killed and not waited for: a zombie, as
// a recall killed with -9 stays until its parent waits.
func zombie(t *testing.T) ID {
	cmd, id := child(t)
	cmd.Process.Kill()
	// Await its exit without reaping it (WNOWAIT).
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := readStat(strconv.Itoa(id.PID)); err != nil || st.state != 'Z' {
		t.Fatalf("the killed child is not a zombie: %c %v", st.state, err)
	}
	return id
}

func TestDead(t *testing.T) {
	me := Self()
	if me.Boot == "" || me.PIDNS == "" || me.Start == 0 || me.Host == "" {
		t.Fatalf("this process's ID is incomplete: %+v", me)
	}
	with := func(id ID, f func(*ID)) ID { f(&id); return id }
	for _, tc := range []struct {
		name string
		id   func(t *testing.T) ID
		dead bool
	}{
		{"missing pid", gone, true},
		{"zombie", zombie, true},
		{"live pid, another start time", func(t *testing.T) ID {
			_, id := child(t)
			return with(id, func(id *ID) { id.Start++ })
		}, true},
		{"live pid, its own start time", func(t *testing.T) ID { _, id := child(t); return id }, false},
		{"this process", func(*testing.T) ID { return Self() }, false},
		{"this pid, another start time (an earlier process's)", func(*testing.T) ID {
			return with(Self(), func(id *ID) { id.Start-- })
		}, true},
		{"missing pid, other host", func(t *testing.T) ID { return with(gone(t), func(id *ID) { id.Host += "-other" }) }, false},
		{"missing pid, other boot", func(t *testing.T) ID {
			return with(gone(t), func(id *ID) { id.Boot = "00000000-0000-0000-0000-000000000000" })
		}, false},
		{"missing pid, other namespace", func(t *testing.T) ID { return with(gone(t), func(id *ID) { id.PIDNS = "pid:[1]" }) }, false},
		{"missing pid, no boot id", func(t *testing.T) ID { return with(gone(t), func(id *ID) { id.Boot = "" }) }, false},
		{"missing pid, no namespace", func(t *testing.T) ID { return with(gone(t), func(id *ID) { id.PIDNS = "" }) }, false},
		{"missing pid, no start time", func(t *testing.T) ID { return with(gone(t), func(id *ID) { id.Start = 0 }) }, false},
		{"missing pid, no host", func(t *testing.T) ID { return with(gone(t), func(id *ID) { id.Host = "" }) }, false},
		{"zombie, other host", func(t *testing.T) ID { return with(zombie(t), func(id *ID) { id.Host += "-other" }) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.id(t)
			if got := id.Dead(); got != tc.dead {
				t.Errorf("Dead(%+v) = %v, want %v", id, got, tc.dead)
			}
		})
	}
}

func TestReadStat(t *testing.T) {
	// A command name (the executable's) with spaces and parentheses of
	// its own.
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(t.TempDir(), "a) (b 1 2 3")
	if err := os.WriteFile(odd, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd, "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	st, err := readStat(strconv.Itoa(cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/comm"); string(comm) != "a) (b 1 2 3\n" {
		t.Fatalf("the child's command name is %q", comm)
	}
	if st.pid != cmd.Process.Pid || st.state == 'Z' || st.start == 0 {
		t.Errorf("readStat of a live child: %+v", st)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WSTOPPED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if again, err := readStat(strconv.Itoa(cmd.Process.Pid)); err != nil || again.state != 'T' || again.start != st.start {
		t.Errorf("readStat of the stopped child: %+v, %v; want state T, start %d", again, err, st.start)
	}
}
