package engine

import (
	"math"
	"testing"

	"golang.org/x/sys/unix"
)

// A time is kept when it fits an int64 of nanoseconds, to the last one:
// a file of 2262-04-11 23:47:16.5 came back a second and a half earlier,
// with a warning, the range being checked in whole seconds less one.
// Beyond the range a time is the end of it, not a second or two short.
func TestTimeRangeExact(t *testing.T) {
	for _, tc := range []struct {
		ts   unix.Timespec
		fits bool
		want int64
	}{
		{unix.NsecToTimespec(math.MaxInt64), true, math.MaxInt64},
		{unix.NsecToTimespec(math.MaxInt64 - 500_000_000), true, math.MaxInt64 - 500_000_000},
		{unix.NsecToTimespec(math.MinInt64), true, math.MinInt64},
		{unix.NsecToTimespec(math.MinInt64 + 1), true, math.MinInt64 + 1},
		{unix.Timespec{Sec: 9223372036, Nsec: 854775808}, false, math.MaxInt64},
		{unix.Timespec{Sec: 9223372037}, false, math.MaxInt64},
		{unix.Timespec{Sec: 1 << 40}, false, math.MaxInt64},
		{unix.Timespec{Sec: -9223372037, Nsec: 145224191}, false, math.MinInt64},
		{unix.Timespec{Sec: -9223372038, Nsec: 999_999_999}, false, math.MinInt64},
		{unix.Timespec{Sec: -1, Nsec: 5}, true, -999_999_995},
		{unix.Timespec{Sec: 1700000000, Nsec: 123}, true, 1700000000_000000123},
	} {
		if got := fitsNS(tc.ts); got != tc.fits {
			t.Errorf("fitsNS(%+v) = %v, want %v", tc.ts, got, tc.fits)
		}
		if got := timeNS(tc.ts); got != tc.want {
			t.Errorf("timeNS(%+v) = %d, want %d", tc.ts, got, tc.want)
		}
	}
}
