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
// not there yet with that size. A file system with too little room gets
// no reserve and backend.ErrNoSpace; the temp file of a reserve that did
// not fit is removed, and one of a process killed meanwhile is a .tmp-
// file that CleanTemp removes.
func (b *Backend) Reserve(ctx context.Context, n int64) error {
	p := filepath.Join(b.dir, reserveName)
	if fi, err := os.Stat(p); err == nil && fi.Size() == n {
		return nil
	}
	f, err := createTemp(b.dir, reserveName)
	if err != nil {
		return full(err)
	}
	defer f.discard()
	err = unix.Fallocate(int(f.Fd()), 0, 0, n)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		err = writeZeroes(f.File, n)
	}
	if err != nil {
		return full(fmt.Errorf("reserve %s in %s: %w", humanize.IBytes(uint64(n)), b.dir, err))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return full(err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return err
	}
	f.kept = true
	return nil
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
