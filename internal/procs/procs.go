// Package procs raises GOMAXPROCS while a backup runs, and tells the
// CPU-bound work of every layer how many CPUs it has.
//
// More Ps than CPUs while a backup runs. Its goroutines spend much of
// their time in blocking system calls (reads of cold files, read-ahead
// hints, O_DIRECT pack writes, stats), and a P whose
// goroutine is in a system call passes to another goroutine only when the
// runtime's monitor thread notices, which on a busy machine of few CPUs it
// does late: traced cold backups on 2 vCPUs ran Go code on 1.0 of the 2 Ps
// for most of their time, with about 20 goroutines runnable and the other
// P held in system calls. So GOMAXPROCS is raised to procsFactor times its
// value while any backup runs, and set back to the runtime's default when
// the last one ends; the CPU-bound work stays sized by CPUs(). A GOMAXPROCS set in the
// environment is left as it is. Cold first backups, interleaved pairs on
// 2 vCPUs: the small-file set 2.4-3.2 s raised against 3.3-4.3 s not,
// better in five pairs of five; the bench set 7.5-8.7 s against 8.1-9.3 s
// (better in three pairs of six, even in the rest). Restores, whose
// readers are few and mostly wait for the disk, showed no difference and
// are left as they are.
//
// A tighter garbage collector while a backup runs. A backup's heap is
// mostly chunk buffers it keeps for reuse, without pointers, so a
// collection costs little: at GOGC 10 instead of 25 the bench set took
// 35 collections instead of 15, under 1% of its CPU time either way, and
// its peak RSS fell by about 15 MiB (138-150 MiB against 156-172 MiB,
// warm, three runs each). A GOGC set in the environment is left alone.
package procs

import (
	"os"
	"runtime"
	"runtime/debug"
	"sync"
)

// procsFactor is how many Ps a backup runs with per CPU.
const procsFactor = 2

// backupGCPercent is the GOGC a backup runs with.
const backupGCPercent = 10

var procs struct {
	sync.Mutex
	n    int // backups running
	base int // GOMAXPROCS before the first of them raised it
	gc   int // the GC percent before the first of them lowered it

	setProcs bool // the first of them raised GOMAXPROCS (none was set in the environment)
	setGC    bool // the first of them lowered the GC percent (to restore to gc)
}

// Raise raises GOMAXPROCS for a backup; the returned function (safe to
// call more than once) ends its part.
//
// While any backup runs, the runtime's automatic updates of GOMAXPROCS
// (a container's CPU limit changing) are off, as for any GOMAXPROCS set
// in code; when the last one ends, GOMAXPROCS goes back to the runtime's
// default, not to a value some other code had set.
func Raise() (done func()) {
	procs.Lock()
	if procs.n == 0 {
		procs.base = runtime.GOMAXPROCS(0)
		procs.setProcs = os.Getenv("GOMAXPROCS") == ""
		if procs.setProcs {
			runtime.GOMAXPROCS(procsFactor * procs.base)
		}
		procs.setGC = false
		if os.Getenv("GOGC") == "" {
			// A collector turned off in code (GC percent -1, with a
			// memory limit) is left off.
			procs.gc = debug.SetGCPercent(backupGCPercent)
			if procs.setGC = procs.gc >= 0; !procs.setGC {
				debug.SetGCPercent(procs.gc)
			}
		}
	}
	procs.n++
	procs.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			procs.Lock()
			defer procs.Unlock()
			procs.n--
			if procs.n == 0 {
				if procs.setProcs {
					runtime.SetDefaultGOMAXPROCS()
				}
				if procs.setGC {
					debug.SetGCPercent(procs.gc)
				}
			}
		})
	}
}

// CPUs is how many goroutines of CPU-bound work run at once: GOMAXPROCS
// as it was before Raise. Savers, parallel cuts, restore readers, verify
// and the zstd coders of chunkstore and tapefs are sized by it.
func CPUs() int {
	procs.Lock()
	defer procs.Unlock()
	if procs.n > 0 {
		return procs.base
	}
	return runtime.GOMAXPROCS(0)
}
