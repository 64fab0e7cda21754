package engine

import (
	"math"
	"testing"
)

// FuzzParseLimitWindow: an accepted window is spans of the week, each
// starting within it, not empty and at most a day long, so active's two
// comparisons (this week, wrapped from the last) cover every span.
func FuzzParseLimitWindow(f *testing.F) {
	for _, s := range []string{"mon-fri,08:00-18:00", "fri,22:00-06:00", "sun,20:00-24:00", "sat-sun", "fri-mon",
		"daily,00:00-24:00", "mon-fri,08:00-12:00,13:00-18:00;sat,09:00-13:00", ";", "mon--fri", "08:00-08:00", "-", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := parseLimitWindow(s)
		if err != nil || w == nil {
			return
		}
		if len(w.spans) == 0 {
			t.Fatalf("%q: a window of no spans", s)
		}
		for _, sp := range w.spans {
			if sp[0] < 0 || sp[0] >= minutesPerWeek || sp[1] <= sp[0] || sp[1]-sp[0] > minutesPerDay {
				t.Fatalf("%q: span %v", s, sp)
			}
		}
	})
}

// FuzzParseRate: an accepted rate is a number of bytes a second, never
// negative or NaN.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"50MiB/s", "400Mbit/s", "1Gbps", "50MBps", "1.5GB/s", "1e9B/s", "-1MB/s", "18446744073709551615EiB/s", "/s", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err == nil && (r < 0 || math.IsNaN(r)) {
			t.Fatalf("ParseRate(%q) = %v", s, r)
		}
	})
}
