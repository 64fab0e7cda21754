package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/recall-backup/recall/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// The server keeps each [[mount]] mounted through a mount server of its
// own: a child process (`recall mount --foreground`) that it starts, checks
// and starts again when it dies. A child rather than go-fuse in this
// process because a FUSE server that crashes, deadlocks on a kernel
// request or runs out of memory then takes only the tree with it, never
// the scheduler and the jobs it runs; and because the kernel ties a mount
// to the process serving it, a child can be killed and replaced while the
// server keeps running, where a wedged in-process server could not be.

// MountStarter starts the mount server of m and returns once it serves
// the tree at m.Path, or fails to. The returned command has been started;
// the supervisor waits for it and signals it. m.Path exists and has no
// dead mount on it when MountStarter is called. ctx ends when the server
// stops: a start under way then gives up.
type MountStarter func(ctx context.Context, m MountConfig) (*exec.Cmd, error)

// MountsOptions configure SuperviseMounts.
type MountsOptions struct {
	Start MountStarter
	// Check is how often a mount is checked (0: DefaultMountCheck), and
	// CheckTimeout how long its root may take to answer (0:
	// DefaultMountCheckTimeout): a server that does not answer is
	// killed and replaced.
	Check        time.Duration
	CheckTimeout time.Duration
	// Backoff are the delays before each new attempt after a mount server
	// died or failed to start, the last repeated (nil:
	// DefaultMountBackoff). A mount that stays up for mountStable starts
	// again from the first.
	Backoff []time.Duration
	// StopGrace is how long a mount server has to unmount and exit once
	// told to stop (0: DefaultMountStopGrace); then it is killed and the
	// mount detached.
	StopGrace time.Duration
}

// Defaults of MountsOptions.
var (
	DefaultMountCheck        = 3 * time.Second
	DefaultMountCheckTimeout = 10 * time.Second
	DefaultMountBackoff      = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}
	DefaultMountStopGrace    = 10 * time.Second
)

// mountStable is how long a mount must stay up for its back-off to start
// over: a server that dies at once each time is not restarted in a loop.
const mountStable = time.Minute

// mountFirstWait bounds how long SuperviseMounts waits for the first
// attempt at each mount.
const mountFirstWait = time.Minute

// SuperviseMounts mounts each of mounts (creating its directory), checks
// it every few seconds and mounts it again after its server died or
// stopped answering, lazily detaching the dead mount first. A mount that
// cannot be made is logged and opens an alert (job "mount", source its
// path), which the next success clears; it is tried again with back-off.
// It returns once each mount was tried once, or after mountFirstWait;
// stop unmounts them all and returns when their servers have exited.
func (s *Server) SuperviseMounts(mounts []MountConfig, o MountsOptions) (stop func()) {
	if o.Check <= 0 {
		o.Check = DefaultMountCheck
	}
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = DefaultMountCheckTimeout
	}
	if o.Backoff == nil {
		o.Backoff = DefaultMountBackoff
	}
	if o.StopGrace <= 0 {
		o.StopGrace = DefaultMountStopGrace
	}
	s.closeMountAlertsGone(mounts)
	ctx, cancel := context.WithCancel(context.Background())
	var wg, first sync.WaitGroup
	for _, m := range mounts {
		wg.Add(1)
		first.Add(1)
		go func() {
			defer wg.Done()
			sup := &mountSupervisor{s: s, m: m, o: o}
			sup.run(ctx, first.Done)
		}()
	}
	tried := make(chan struct{})
	go func() { first.Wait(); close(tried) }()
	select {
	case <-tried:
	case <-time.After(mountFirstWait):
		// A mount server that hangs before it is ready must not keep the
		// scheduler from starting; its supervisor goes on trying.
		s.o.Log.Warn("mounts not ready yet: starting without them", "waited", mountFirstWait)
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

type mountSupervisor struct {
	s *Server
	m MountConfig
	o MountsOptions
}

// run keeps sup's mount up until ctx ends; tried is called once, after
// the first attempt.
func (sup *mountSupervisor) run(ctx context.Context, tried func()) {
	log := sup.s.o.Log.With("mount", sup.m.Path)
	failures := 0
	for {
		cmd, err := sup.start(ctx)
		if tried != nil {
			tried()
			tried = nil
		}
		if ctx.Err() != nil {
			if cmd != nil {
				sup.stop(cmd, waitChan(cmd))
			}
			return
		}
		if err != nil {
			failures++
			log.Error("recovery tree not mounted; trying again", "err", err, "attempt", failures, "next", sup.delay(failures))
			sup.alert(err)
		} else {
			sup.clear()
			log.Info("recovery tree mounted", "server_pid", cmd.Process.Pid, "allow_other", sup.m.AllowOther)
			up := time.Now()
			why := sup.watch(ctx, cmd)
			if ctx.Err() != nil {
				return
			}
			if time.Since(up) >= mountStable {
				failures = 0
			}
			failures++
			log.Warn("mount server gone: remounting", "why", why, "server_pid", cmd.Process.Pid, "in", sup.delay(failures))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(sup.delay(failures)):
		}
	}
}

// delay is the back-off before attempt n+1 after n failures in a row.
func (sup *mountSupervisor) delay(n int) time.Duration {
	if len(sup.o.Backoff) == 0 || n <= 0 {
		return 0
	}
	return sup.o.Backoff[min(n, len(sup.o.Backoff))-1]
}

// start prepares the mount point and starts the mount server.
func (sup *mountSupervisor) start(ctx context.Context) (*exec.Cmd, error) {
	p := sup.m.Path
	if detached, err := detachDead(p); err != nil {
		return nil, err
	} else if detached {
		sup.s.o.Log.Warn("dead mount detached (its server had stopped)", "mount", p)
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return nil, fmt.Errorf("mount point: %w (create it, or fix [[mount]] path)", err)
	}
	return sup.o.Start(ctx, sup.m)
}

// watch returns why the mount went away: its server exited, or its root
// stopped answering (then the server is killed). When ctx ends it stops
// the server and returns.
func (sup *mountSupervisor) watch(ctx context.Context, cmd *exec.Cmd) string {
	exited := waitChan(cmd)
	tick := time.NewTicker(sup.o.Check)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			sup.stop(cmd, exited)
			return "stopped"
		case err := <-exited:
			return fmt.Sprintf("mount server exited: %v", exitStatus(err))
		case <-tick.C:
			if err := checkMount(sup.m.Path, sup.o.CheckTimeout); err != nil {
				cmd.Process.Kill()
				<-exited
				return err.Error()
			}
		}
	}
}

// stop tells the mount server to unmount and exit, and kills it and
// detaches the mount if it has not within StopGrace.
func (sup *mountSupervisor) stop(cmd *exec.Cmd, exited <-chan error) {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		sup.s.o.Log.Info("recovery tree unmounted", "mount", sup.m.Path)
		return
	case <-time.After(sup.o.StopGrace):
	}
	sup.s.o.Log.Warn("mount server did not stop in time: killing it and detaching the mount", "mount", sup.m.Path, "server_pid", cmd.Process.Pid, "grace", sup.o.StopGrace)
	cmd.Process.Kill()
	<-exited
	if err := unix.Unmount(sup.m.Path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		sup.s.o.Log.Error("mount not detached; run 'recall umount --lazy' on it", "mount", sup.m.Path, "err", err)
	}
}

// closeMountAlertsGone clears the alerts of mounts that are not among
// mounts (a [[mount]] since taken out or corrected): kept from before a
// restart, nothing would ever try those paths again.
func (s *Server) closeMountAlertsGone(mounts []MountConfig) {
	evs, err := s.alerts.closeGone(func(a *Alert) string {
		if a.Job != "mount" || slices.ContainsFunc(mounts, func(m MountConfig) bool { return filepath.Clean(m.Path) == filepath.Clean(a.Source) }) {
			return ""
		}
		return "mount " + a.Source + " is no longer in the configuration"
	})
	s.sendAlertEvents(evs, err)
}

// alert opens (or counts) the mount's alert.
func (sup *mountSupervisor) alert(err error) {
	ev, serr := sup.s.alerts.fail(Alert{Job: "mount", Source: sup.m.Path}, err, sup.s.o.Clock.Now())
	sup.s.sendAlertEvent(ev, serr)
}

// clear clears the mount's alert, if open.
func (sup *mountSupervisor) clear() {
	ev, err := sup.s.alerts.succeed(Alert{Job: "mount", Source: sup.m.Path})
	sup.s.sendAlertEvent(ev, err)
}

func waitChan(cmd *exec.Cmd) <-chan error {
	c := make(chan error, 1)
	go func() { c <- cmd.Wait() }()
	return c
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// ErrMountDead: the mount's server is gone ("transport endpoint is not
// connected") or does not answer.
var ErrMountDead = errors.New("mount server not answering")

// checkMount asks the mount root at dir for its file system within
// timeout. statfs, unlike stat, is never answered from the kernel's
// attribute cache, so it reaches the server. A hung server leaves the
// calling goroutine blocked until it is killed, which the caller does.
func checkMount(dir string, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() {
		var sfs unix.Statfs_t
		done <- unix.Statfs(dir, &sfs)
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s: %w: %w", dir, ErrMountDead, err)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s: %w within %v", dir, ErrMountDead, timeout)
	}
}

// detachDead lazily unmounts a recall or other FUSE mount at dir whose
// server is gone, and reports whether there was one. A live mount is left
// alone (the mount server refuses it, naming it).
func detachDead(dir string) (bool, error) {
	if !mountinfo.Dead(dir) {
		return false, nil
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return true, fmt.Errorf("detach the dead mount at %s: %w (run 'recall umount --lazy %s')", dir, err, dir)
	}
	return true, nil
}
