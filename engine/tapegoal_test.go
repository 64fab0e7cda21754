package engine

import (
	"testing"
	"time"
)

func TestNextTapeRun(t *testing.T) {
	at := func(y int, m time.Month, d, h int) time.Time { return time.Date(y, m, d, h, 0, 0, 0, time.UTC) }
	for _, c := range []struct {
		freq  string
		after time.Time
		want  time.Time
	}{
		{"daily", at(2026, 11, 29, 18), at(2026, 11, 30, 0)},
		{"daily", at(2026, 11, 30, 0), at(2026, 12, 1, 0)},
		{"weekly", at(2026, 11, 29, 18), at(2026, 11, 30, 0)}, // a Sunday; Monday next
		{"weekly", at(2026, 11, 30, 0), at(2026, 12, 7, 0)},
		{"bi-weekly", at(2026, 11, 29, 18), at(2026, 12, 7, 0)}, // 30 Nov is ISO week 49, 7 Dec week 50
		{"monthly", at(2026, 11, 29, 18), at(2026, 12, 1, 0)},
		{"monthly", at(2026, 12, 1, 0), at(2027, 1, 1, 0)},
		{"quarterly", at(2026, 11, 29, 18), at(2027, 1, 1, 0)},
		{"quarterly", at(2027, 1, 1, 0), at(2027, 4, 1, 0)},
		{"half-yearly", at(2027, 1, 1, 0), at(2027, 7, 1, 0)},
		{"yearly", at(2026, 11, 29, 18), at(2027, 1, 1, 0)},
		{"yearly", at(2027, 1, 1, 0), at(2028, 1, 1, 0)},
	} {
		p := Policy{TapeRetention: "7y", TapeFrequency: c.freq, TapePool: "p"}
		got, ok := p.NextTapeRun(c.after)
		if !ok || !got.Equal(c.want) {
			t.Errorf("%s after %s: %s %v, want %s", c.freq, c.after, got, ok, c.want)
		}
	}
	if _, ok := (Policy{}).NextTapeRun(time.Now()); ok {
		t.Error("a policy with no tape goal has a tape run")
	}
}
