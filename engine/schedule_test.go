package engine

import (
	"testing"
	"time"
	_ "time/tzdata" // the DST test needs a zone with DST on any machine
)

func TestNextRun(t *testing.T) {
	mon := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC) // a Monday
	at := func(d, h, m int) time.Time {
		return mon.AddDate(0, 0, d).Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
	}
	tests := []struct {
		name  string
		pol   Policy
		after time.Time
		want  time.Time
	}{
		{"sync on the quarter", Policy{Sync: "15m"}, at(0, 8, 50), at(0, 9, 0)},
		{"strictly after", Policy{Sync: "15m"}, at(0, 9, 0), at(0, 9, 15)},
		{"point between syncs", Policy{Sync: "1h", At: []string{"09:30"}}, at(0, 9, 0), at(0, 9, 30)},
		{"sync after the point", Policy{Sync: "1h", At: []string{"09:30"}}, at(0, 9, 30), at(0, 10, 0)},
		{"before-point only points", Policy{Sync: SyncBeforePoint, At: []string{"21:00"}}, at(0, 21, 0), at(1, 21, 0)},
		{"next day midnight", Policy{Sync: "2h30m"}, at(0, 22, 30), at(1, 0, 0)},
		{"weekdays skip the weekend", Policy{Sync: SyncBeforePoint, At: []string{"08:00"}, Days: []string{"mon", "fri"}}, at(4, 8, 0), at(7, 8, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.pol.NextRun(tt.after)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("NextRun(%s) = %s, want %s", tt.after, got, tt.want)
			}
		})
	}
	if _, err := (Policy{Sync: "1m"}).NextRun(mon); err == nil {
		t.Error("NextRun of an invalid policy: no error")
	}
}

// TestNextRunDST: across the days the clocks change, a 15-minute sync
// runs at each wall-clock quarter hour that exists, once, in order.
func TestNextRunDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		day  time.Time
		want int
	}{
		{time.Date(2026, 3, 29, 0, 0, 0, 0, berlin), 92},  // 02:00 to 02:45 do not exist
		{time.Date(2026, 10, 25, 0, 0, 0, 0, berlin), 96}, // 02:00 to 02:45 happen twice; each runs once
	} {
		pol := Policy{Sync: "15m"}
		end := c.day.AddDate(0, 0, 1)
		n, last := 0, c.day.Add(-time.Nanosecond)
		seen := map[string]bool{}
		for {
			next, err := pol.NextRun(last)
			if err != nil {
				t.Fatal(err)
			}
			if !next.Before(end) {
				break
			}
			wall := next.Format("15:04")
			if seen[wall] {
				t.Errorf("%s: %s runs twice", c.day.Format(time.DateOnly), wall)
			}
			seen[wall] = true
			n, last = n+1, next
		}
		if n != c.want {
			t.Errorf("%s: %d runs, want %d", c.day.Format(time.DateOnly), n, c.want)
		}
	}
}
