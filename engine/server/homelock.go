package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrHomeBusy: another recall serve owns the home.
var ErrHomeBusy = errors.New("another recall serve owns this home")

// LockFile is the file in a home that the running server holds flocked
// and that names its pid.
const LockFile = "serve.lock"

// homeLock is the server's ownership of a home: an exclusive flock on
// <home>/serve.lock, which the kernel drops when the process dies, so a
// server killed with -9 leaves nothing to clean up.
type homeLock struct{ f *os.File }

// lockHome takes the home, or fails wrapping ErrHomeBusy with the pid of
// the server that holds it.
func lockHome(home string) (*homeLock, error) {
	p := filepath.Join(home, LockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock home: %w (check --home and its permissions)", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 64)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := strings.TrimSpace(string(b[:n]))
			if _, perr := strconv.Atoi(holder); perr != nil {
				holder = "unknown"
			}
			return nil, fmt.Errorf("home %s: %w: pid %s holds %s (stop it first)", home, ErrHomeBusy, holder, p)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("write pid to %s: %w", p, err)
	}
	return &homeLock{f}, nil
}

// release drops the lock; the file stays (removing it would race with a
// server starting meanwhile).
func (l *homeLock) release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
