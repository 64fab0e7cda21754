// Command cephup starts and stops the single-node Ceph cluster that
// bench/run.sh's s3 section measures against (internal/cephtest, with
// bluestore on a sparse file: memstore would hold every deleted object in
// RAM until the gateway's garbage collection runs, hours later).
//
//	cephup start [-size BYTES] [-watch PID] [-keep] DIR
//	cephup stop DIR
//
// start returns when the gateway answers S3 requests and prints shell
// assignments (eval them): S3_ENDPOINT, AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, CEPH_CONF (for radosgw-admin -c) and
// CEPH_START_SECONDS. It exits 3 when Ceph's programs are missing.
//
// The daemons die with the process that started them (cephtest kills them
// when its thread ends), so start cannot just start them and return: it
// runs itself again as a holder in a session of its own, which starts the
// cluster, hands the assignments back through a pipe and waits. The holder
// stops the cluster and removes DIR/cluster (unless -keep) when stop
// signals it, or when the process -watch names ends (the bench's shell: a
// killed run leaves no cluster behind). Its output is in DIR/cephup.log.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/recall-backup/recall/internal/cephtest"
)

const usage = `usage: cephup start [-size BYTES] [-watch PID] [-keep] DIR
       cephup stop DIR`

// exitMissing is start's status when Ceph's programs are not installed.
const exitMissing = 3

func main() {
	if len(os.Args) < 2 {
		fail(2, usage)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "start", "hold":
		fs := flag.NewFlagSet(cmd, flag.ExitOnError)
		size := fs.Int64("size", 8<<30, "size of the OSD's sparse block file in bytes")
		watch := fs.Int("watch", 0, "stop the cluster when process `PID` ends")
		keep := fs.Bool("keep", false, "keep the cluster's directory (logs, data) after stop")
		fs.Parse(args)
		if fs.NArg() != 1 {
			fail(2, usage)
		}
		dir, derr := filepath.Abs(fs.Arg(0))
		if derr != nil {
			fail(1, "cephup: %v", derr)
		}
		if cmd == "start" {
			// The holder gets the flags and DIR made absolute: stop
			// finds it by that, from any directory.
			err = start(dir, append(args[:len(args)-1:len(args)-1], dir))
		} else {
			err = hold(dir, *size, *watch, *keep)
		}
	case "stop":
		if len(args) != 1 {
			fail(2, usage)
		}
		err = stop(args[0])
	default:
		fail(2, usage)
	}
	if err != nil {
		fail(1, "cephup %s: %v", os.Args[1], err)
	}
}

func fail(code int, format string, a ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", a...)
	os.Exit(code)
}

func pidFile(dir string) string { return filepath.Join(dir, "cephup.pid") }
func logFile(dir string) string { return filepath.Join(dir, "cephup.log") }

// start runs the holder (this program with "hold" and the same
// arguments) and prints what it hands back on its pipe (fd 3): the
// assignments, or nothing when it failed, and then its log says why.
func start(dir string, args []string) error {
	if m := cephtest.Missing(); m != "" {
		fail(exitMissing, "cephup start: ceph programs missing: %s: run make deps", m)
	}
	if pid, ok := holder(dir); ok {
		return fmt.Errorf("a cluster already runs in %s (holder pid %d): cephup stop %s first", dir, pid, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	log, err := os.Create(logFile(dir))
	if err != nil {
		return err
	}
	defer log.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(self, append([]string{"hold"}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.ExtraFiles = []*os.File{w}
	cmd.Dir = "/"
	// A session of its own: the caller's terminal signals and its end do
	// not reach the holder; -watch and stop do.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("run the holder: %w", err)
	}
	w.Close()
	out, err := io.ReadAll(r) // until the holder closes its end or exits
	if err != nil || len(out) == 0 {
		cmd.Wait()
		tail, _ := os.ReadFile(logFile(dir))
		if i := len(tail) - 2000; i > 0 {
			tail = tail[i:]
		}
		return fmt.Errorf("the cluster did not start (log %s):\n%s", logFile(dir), bytes.TrimSpace(tail))
	}
	os.Stdout.Write(out)
	return nil
}

// hold starts the cluster, hands the assignments to start and keeps the
// daemons until stop signals it or the watched process ends.
func hold(dir string, size int64, watch int, keep bool) error {
	// fd 3 came through exec without close-on-exec: the daemons must not
	// inherit it, or start would wait for them to end.
	syscall.CloseOnExec(3)
	ready := os.NewFile(3, "ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	gone := make(chan error, 1)
	if watch > 0 {
		go func() { gone <- waitExit(watch, -1) }()
	}

	// The pid file first: a stop while the cluster starts waits for it
	// to be up, then stops it.
	if err := os.WriteFile(pidFile(dir), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		ready.Close()
		return err
	}
	defer os.Remove(pidFile(dir))
	cdir := filepath.Join(dir, "cluster")
	os.RemoveAll(cdir) // a kept directory of an earlier run
	c, err := cephtest.New(cdir, cephtest.Options{Bluestore: true, BluestoreSize: size})
	if err != nil {
		ready.Close()
		return err
	}
	defer func() {
		c.Stop()
		if !keep {
			os.RemoveAll(cdir)
		}
		fmt.Println("cluster stopped")
	}()
	conf := filepath.Join(cdir, "ceph.conf")
	if _, err := os.Stat(conf); err != nil {
		ready.Close()
		return fmt.Errorf("the cluster's configuration: %w", err)
	}
	var b strings.Builder
	for _, kv := range [][2]string{
		{"S3_ENDPOINT", c.Endpoint},
		{"AWS_ACCESS_KEY_ID", c.AccessKey},
		{"AWS_SECRET_ACCESS_KEY", c.SecretKey},
		{"CEPH_CONF", conf},
		{"CEPH_START_SECONDS", strconv.FormatFloat(c.StartTime.Seconds(), 'f', 2, 64)},
	} {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], quote(kv[1]))
	}
	fmt.Printf("cluster ready in %s at %s\n", c.StartTime.Round(time.Millisecond), c.Endpoint)
	_, err = io.WriteString(ready, b.String())
	ready.Close()
	if err != nil {
		return fmt.Errorf("hand the assignments back: %w", err)
	}
	select {
	case s := <-sig:
		fmt.Printf("%v: stopping\n", s)
	case err := <-gone:
		fmt.Printf("watched process %d ended (%v): stopping\n", watch, err)
	}
	return nil
}

// stop signals the holder of dir and waits until it has stopped the
// cluster and exited. No holder is not an error: stop runs from traps.
func stop(dir string) error {
	pid, ok := holder(dir)
	if !ok {
		os.Remove(pidFile(dir))
		fmt.Fprintf(os.Stderr, "cephup stop: no cluster runs in %s\n", dir)
		return nil
	}
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("holder pid %d: %w", pid, err)
	}
	defer unix.Close(pfd)
	if err := unix.PidfdSendSignal(pfd, unix.SIGTERM, nil, 0); err != nil {
		return fmt.Errorf("signal holder pid %d: %w", pid, err)
	}
	if err := pollExit(pfd, 2*time.Minute); err == nil {
		return nil
	}
	// The daemons die with the holder (cephtest's Pdeathsig).
	unix.PidfdSendSignal(pfd, unix.SIGKILL, nil, 0)
	os.Remove(pidFile(dir))
	return fmt.Errorf("holder pid %d did not stop the cluster within 2 minutes: killed it (log %s)", pid, logFile(dir))
}

// holder returns the pid of dir's running holder: the process the pid file
// names, if it is this program holding dir (a pid can be reused).
func holder(dir string) (int, bool) {
	b, err := os.ReadFile(pidFile(dir))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, false
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	abs, _ := filepath.Abs(dir)
	if len(args) < 3 || args[1] != "hold" || args[len(args)-1] != abs {
		return 0, false
	}
	return pid, true
}

// waitExit returns when process pid has ended (timeout < 0: no limit).
func waitExit(pid int, timeout time.Duration) error {
	pfd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	return pollExit(pfd, timeout)
}

// pollExit waits until the process of pidfd pfd ends: the descriptor
// becomes readable then, zombie or not.
func pollExit(pfd int, timeout time.Duration) error {
	ms := -1
	if timeout >= 0 {
		ms = int(timeout.Milliseconds())
	}
	for {
		fds := []unix.PollFd{{Fd: int32(pfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("timed out")
		}
		return nil
	}
}

// quote makes s one word for sh.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
