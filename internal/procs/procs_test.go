package procs

import (
	"os"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestRaise(t *testing.T) {
	// Raise ends at the runtime's default: start there (go test -cpu
	// sets GOMAXPROCS in code), and leave GOMAXPROCS as it was.
	old := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	runtime.SetDefaultGOMAXPROCS()
	base := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") != "" {
		done := Raise()
		defer done()
		if got := runtime.GOMAXPROCS(0); got != base {
			t.Fatalf("GOMAXPROCS set in the environment: raised from %d to %d", base, got)
		}
		return
	}
	done1 := Raise()
	if got := runtime.GOMAXPROCS(0); got != procsFactor*base {
		t.Fatalf("raised: GOMAXPROCS %d, want %d", got, procsFactor*base)
	}
	if got := CPUs(); got != base {
		t.Fatalf("raised: CPUs() %d, want %d", got, base)
	}
	done2 := Raise() // a second backup at once: no second raise
	if got := runtime.GOMAXPROCS(0); got != procsFactor*base {
		t.Fatalf("raised twice: GOMAXPROCS %d, want %d", got, procsFactor*base)
	}
	done1()
	done1() // once only: the other backup's raise stays
	if got := runtime.GOMAXPROCS(0); got != procsFactor*base {
		t.Fatalf("one of two ended: GOMAXPROCS %d, want %d", got, procsFactor*base)
	}
	done2()
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("both ended: GOMAXPROCS %d, want %d", got, base)
	}
	if got := CPUs(); got != base {
		t.Fatalf("both ended: CPUs() %d, want %d", got, base)
	}
}

// TestRaiseGC: while backups run the collector runs at backupGCPercent,
// and the percent set before comes back when the last one ends; a GOGC
// from the environment is left alone.
func TestRaiseGC(t *testing.T) {
	gcPercent := func() int { p := debug.SetGCPercent(0); debug.SetGCPercent(p); return p }
	old := debug.SetGCPercent(37)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	want := backupGCPercent
	if os.Getenv("GOGC") != "" {
		want = 37
	}
	done1 := Raise()
	done2 := Raise()
	if got := gcPercent(); got != want {
		t.Fatalf("during backups: GC percent %d, want %d", got, want)
	}
	done1()
	if got := gcPercent(); got != want {
		t.Fatalf("one of two ended: GC percent %d, want %d", got, want)
	}
	done2()
	if got := gcPercent(); got != 37 {
		t.Fatalf("both ended: GC percent %d, want 37", got)
	}
}

// TestRaiseGCOff: a collector turned off in code stays off (with GOGC set
// in the environment Raise leaves it alone anyway).
func TestRaiseGCOff(t *testing.T) {
	gcPercent := func() int { p := debug.SetGCPercent(0); debug.SetGCPercent(p); return p }
	old := debug.SetGCPercent(-1)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	done := Raise()
	if got := gcPercent(); got != -1 {
		t.Fatalf("during a backup: GC percent %d, want -1 (off)", got)
	}
	done()
	if got := gcPercent(); got != -1 {
		t.Fatalf("after: GC percent %d, want -1 (off)", got)
	}
}
