package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"
)

// reserveName is the reserve's file, in the store's directory beside the
// config: backend.Reserver. Its bytes are zeroes and mean nothing; what
// counts is the blocks it holds, which garbage collection frees by
// removing it before it writes anything.
const reserveName = "reserve"

// Reserve sets n bytes aside as the file reserve, allocated (fallocate,
// or zeroes written where the file system has no fallocate), if it is
// not there yet with that size. A file system with too little room for
// all of it gets as much as it has free (backend.ErrNoSpace says the
// reserve is short): a collection that failed on a full store frees its
// reserve and writes a little (its directory), so an all-or-nothing
// reserve was not set aside again, and with the last blocks then taken by
// anything else, no later collection had room to write its plan, and
// 'forget' then 'gc' could not free the store any more. An existing
// reserve grows in place and never shrinks. The temp file of a new
// reserve that did not fit at all is removed, and one of a process killed
// meanwhile is a .tmp- file that CleanTemp removes.
func (b *Backend) Reserve(ctx context.Context, n int64) error {
	p := filepath.Join(b.dir, reserveName)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
		if fi.Size() >= n {
			return nil
		}
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return full(err)
		}
		defer f.Close()
		return growReserve(f, b.dir, fi.Size(), n)
	}
	f, err := createTemp(b.dir, reserveName)
	if err != nil {
		return full(err)
	}
	defer f.discard()
	err = growReserve(f.File, b.dir, 0, n)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		err = writeZeroes(f.File, n)
		if err != nil {
			return full(fmt.Errorf("reserve %s in %s: %w", humanize.IBytes(uint64(n)), b.dir, err))
		}
	}
	if err != nil {
		// Short: kept when some of it fit.
		if fi, serr := f.Stat(); serr != nil || fi.Size() == 0 {
			return err
		}
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if cerr := f.Close(); cerr != nil {
		return full(cerr)
	}
	if rerr := os.Rename(f.Name(), p); rerr != nil {
		return rerr
	}
	f.kept = true
	return err
}

// growReserve allocates f, the reserve (have bytes allocated), to n
// bytes, or, where the file system has less room, to what it has free.
// A short reserve is a backend.ErrNoSpace error; fallocate's other
// errors (none on this file system) come back as they are.
func growReserve(f *os.File, dir string, have, n int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, 0, n)
	if !errors.Is(err, unix.ENOSPC) {
		return err
	}
	var sfs unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &sfs) == nil {
		free := int64(sfs.Bavail) * int64(sfs.Bsize)
		if os.Geteuid() == 0 {
			free = int64(sfs.Bfree) * int64(sfs.Bsize) // root may use the blocks ext4 keeps for it
		}
		if want := min(n, have+free) &^ 4095; want > have {
			unix.Fallocate(int(f.Fd()), 0, 0, want)
		}
	}
	got := have
	if fi, serr := f.Stat(); serr == nil {
		got = fi.Size()
	}
	return full(fmt.Errorf("reserve %s in %s: %s set aside: %w", humanize.IBytes(uint64(n)), dir, humanize.IBytes(uint64(got)), err))
}

// Release removes the reserve; its blocks are free when it returns.
func (b *Backend) Release(ctx context.Context) error {
	err := os.Remove(filepath.Join(b.dir, reserveName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func writeZeroes(f *os.File, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k, err := f.Write(buf[:min(n, int64(len(buf)))])
		if err != nil {
			return err
		}
		n -= int64(k)
	}
	return f.Sync()
}
