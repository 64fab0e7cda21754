package engine

import (
	"testing"
	"time"
)

// FuzzParseSpan: a span is either refused or positive and at most the
// century the parser allows; it never panics or overflows.
func FuzzParseSpan(f *testing.F) {
	for _, s := range []string{"14d", "7y", "3mo", "2w", "15m", "24h", "0d", "-1d", "99999999999999d", "1e9h", "", "3700mo", "36600d", "36601d", "101y", "2562047h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseSpan(s)
		if err != nil {
			return
		}
		if d <= 0 || d > maxSpan {
			t.Fatalf("parseSpan(%q) = %v: not positive, or past the century", s, d)
		}
	})
}

// FuzzParseClock: an accepted time of day is a minute of the day.
func FuzzParseClock(f *testing.F) {
	for _, s := range []string{"09:00", "23:59", "24:00", "9:5", "-1:00", " 12:30 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseClock(s)
		if err != nil {
			return
		}
		if m < 0 || m >= int(24*time.Hour/time.Minute) {
			t.Fatalf("parseClock(%q) = %d: not a minute of the day", s, m)
		}
	})
}
