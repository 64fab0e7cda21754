package engine

import (
	"os"

	"golang.org/x/sys/unix"
)

// Reading from a cold disk.
//
// A backup of data that is not in the page cache is as fast as the warm
// one only if the disk is kept busy while the CPUs chunk, hash and
// compress. A small file is read with one synchronous read, and its slot is
// held until its chunk is stored: with a few slots, most of them wait for a
// saver while the disk has one request or none. So files read in one piece
// get slots of their own, many more than there are cores: their goroutines
// wait on the disk or on a saver, and the savers (one per core) already
// bound the CPU work. Large files keep opts.Files slots (their goroutines
// chunk, which is CPU work) and are opened with a hint that they are read
// once from start to end, which widens the kernel's read-ahead for them.

// smallSlotsPerFile is how many small files are read at once per unit of
// BackupOptions.Files: 32 at the default of 4, enough to keep a disk's
// queue full (a parallel cat of small files gains nothing past 16 or so)
// while holding at most 32 x MinChunk of chunk buffers.
const smallSlotsPerFile = 8

// readSlots returns the semaphore a file of the given size (from its
// lstat) is read under.
func (b *backuper) readSlots(size int64) chan struct{} {
	if size <= int64(b.st.MinChunk()) {
		return b.smallSem
	}
	return b.fileSem
}

// adviseSequential tells the kernel that f is about to be read once from
// start to end. Only a hint: where it is not supported nothing changes.
func adviseSequential(f *os.File) {
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_SEQUENTIAL)
}
