package engine

import (
	"os"
	"runtime"
	"testing"
)

func TestRaiseProcs(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") != "" {
		done := raiseProcs()
		defer done()
		if got := runtime.GOMAXPROCS(0); got != base {
			t.Fatalf("GOMAXPROCS set in the environment: raised from %d to %d", base, got)
		}
		return
	}
	done1 := raiseProcs()
	if got := runtime.GOMAXPROCS(0); got != procsFactor*base {
		t.Fatalf("raised: GOMAXPROCS %d, want %d", got, procsFactor*base)
	}
	if got := cpus(); got != base {
		t.Fatalf("raised: cpus() %d, want %d", got, base)
	}
	done2 := raiseProcs() // a second backup at once: no second raise
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
	if got := cpus(); got != base {
		t.Fatalf("both ended: cpus() %d, want %d", got, base)
	}
}
