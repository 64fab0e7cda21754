package fs

import (
	"context"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// hungRoot is a file system whose every lookup waits until release is
// closed: a server stuck, as one blocked on its own mount is.
type hungRoot struct {
	gofs.Inode
	release chan struct{}
}

var _ gofs.NodeLookuper = (*hungRoot)(nil)

func (r *hungRoot) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	<-r.release
	return nil, syscall.ENOENT
}

// A recall mount whose home is reached through a server that does not
// answer (here the home lies inside that mount, as when a mount was made
// over its own home) holds StoreMounts for homeStatWait, not for ever:
// before, every backup of any store hung at its end, in the refresh of
// the mounts. A second call does not stat that home again while the
// first stat waits.
func TestStoreMountsHungHome(t *testing.T) {
	if unix.Geteuid() != 0 {
		skip(t, "FUSE mount tests need root")
	}
	dir := t.TempDir()
	root := &hungRoot{release: make(chan struct{})}
	srv, err := gofs.Mount(dir, root, &gofs.Options{MountOptions: fuse.MountOptions{
		FsName: filepath.Join(dir, "home"), Name: "recall", DirectMount: true}})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		close(root.release)
		if err := srv.Unmount(); err != nil {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	defer func(d time.Duration) { homeStatWait = d }(homeStatWait)
	homeStatWait = 300 * time.Millisecond

	home := t.TempDir()
	for i := range 2 {
		start := time.Now()
		dirs, err := StoreMounts(home)
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("call %d: StoreMounts took %v with a mount that does not answer", i, took)
		}
		if err != nil || slices.Contains(dirs, dir) {
			t.Fatalf("call %d: StoreMounts = %v, %v; want no error and not the hung mount", i, dirs, err)
		}
	}
	if _, busy := homeStats.Load(filepath.Join(dir, "home")); !busy {
		t.Fatal("the hung stat is not held as in flight")
	}
}
