package engine

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64 // 0: refused
	}{
		{"50MiB/s", 50 << 20},
		{"50 MiB/s", 50 << 20},
		{"4MiB/s", 4 << 20},
		{"1.5GB/s", 1.5e9},
		{"800K/s", 800e3},
		{"800KiB/s", 800 << 10},
		{"1024B/s", 1024},
		{"50MBps", 50e6},
		{"400Mbit/s", 50e6},
		{"400mbit/s", 50e6},
		{"1Gbps", 125e6},
		{"8Kibit/s", 1024},
		{"100Mbps", 12.5e6},
		{"50MiB", 0},      // no per second
		{"50Mb/s", 0},     // bits or bytes?
		{"400MBbit/s", 0}, // a byte unit in a bit rate
		{"fast/s", 0},
		{"", 0},
		{"/s", 0},
		{"10XB/s", 0},
	} {
		got, err := ParseRate(c.in)
		switch {
		case c.want == 0 && err == nil:
			t.Errorf("ParseRate(%q) = %v, want an error", c.in, got)
		case c.want != 0 && err != nil:
			t.Errorf("ParseRate(%q): %v", c.in, err)
		case c.want != 0 && got != c.want:
			t.Errorf("ParseRate(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

// Check refuses a bad limit or window naming the flag and the allowed
// forms, through the same path as every other policy value.
func TestPolicyLimitCheck(t *testing.T) {
	for _, c := range []struct {
		limit, window string
		flag          string // "": valid
	}{
		{"", "", ""},
		{"50MiB/s", "", ""},
		{"400Mbit/s", "mon-fri,08:00-18:00", ""},
		{"50MiB/s", "mon-fri,08:00-12:00,13:00-18:00;sat,09:00-13:00", ""},
		{"50MiB/s", "22:00-06:00", ""},
		{"50MiB/s", "sat-sun", ""},
		{"50MiB/s", "fri-mon,18:00-24:00", ""},
		{"50MiB/s", "daily,00:00-24:00", ""},
		{"50MiB/s", " Mon - Fri , 08:00-18:00 ", ""},
		{"1KiB/s", "", ""},
		{"1000B/s", "", "--limit"}, // below 1 KiB/s
		{"0MiB/s", "", "--limit"},
		{"50MiB", "", "--limit"},
		{"", "mon-fri,08:00-18:00", "--limit-window"}, // a window of no limit
		{"50MiB/s", "mon-fry,08:00-18:00", "--limit-window"},
		{"50MiB/s", "mon-fri,8-18", "--limit-window"},
		{"50MiB/s", "mon-fri,08:00", "--limit-window"},
		{"50MiB/s", "mon-fri,08:00-08:00", "--limit-window"},
		{"50MiB/s", "mon-fri,24:00-08:00", "--limit-window"},
		{"50MiB/s", "mon-fri,08:00-25:00", "--limit-window"},
		{"50MiB/s", "mon-fri,,08:00-18:00", "--limit-window"},
		{"50MiB/s", "mon-fri,08:00-18:00;", "--limit-window"},
	} {
		err := Policy{Limit: c.limit, LimitWindow: c.window}.Check()
		if c.flag == "" {
			if err != nil {
				t.Errorf("limit %q window %q: %v", c.limit, c.window, err)
			}
			continue
		}
		if !errors.Is(err, ErrBadPolicy) || !strings.Contains(err.Error(), c.flag+" ") || !strings.Contains(err.Error(), "allowed: ") {
			t.Errorf("limit %q window %q: error %v, want one naming %s and the allowed forms", c.limit, c.window, err, c.flag)
		}
	}
}

// The window on fixed times: inside, outside, at its edges, across
// midnight and across the end of the week. 2026-11-23 is a Monday.
func TestLimitWindowActive(t *testing.T) {
	at := func(day, hh, mm int) time.Time { return time.Date(2026, 11, 22+day, hh, mm, 0, 0, time.UTC) } // day 1: Monday
	const mon, wed, fri, sat, sun, nextMon = 1, 3, 5, 6, 7, 8
	for _, c := range []struct {
		window string
		t      time.Time
		want   bool
	}{
		{"", at(sat, 3, 0), true},
		{"mon-fri,08:00-18:00", at(wed, 10, 0), true},
		{"mon-fri,08:00-18:00", at(wed, 8, 0), true},
		{"mon-fri,08:00-18:00", at(wed, 7, 59), false},
		{"mon-fri,08:00-18:00", at(wed, 17, 59), true},
		{"mon-fri,08:00-18:00", at(wed, 18, 0), false},
		{"mon-fri,08:00-18:00", at(sat, 10, 0), false},
		{"mon-fri,08:00-18:00", at(sun, 10, 0), false},
		{"mon-fri,08:00-18:00", at(mon, 10, 0), true},
		{"mon-fri,08:00-18:00", at(fri, 10, 0), true},
		// across midnight: the night that starts on the day named
		{"fri,22:00-06:00", at(fri, 23, 30), true},
		{"fri,22:00-06:00", at(sat, 3, 0), true},
		{"fri,22:00-06:00", at(sat, 6, 0), false},
		{"fri,22:00-06:00", at(fri, 3, 0), false},
		{"fri,22:00-06:00", at(fri, 21, 59), false},
		{"22:00-06:00", at(wed, 0, 0), true},
		{"22:00-06:00", at(wed, 12, 0), false},
		// across the end of the week: Sunday night into Monday
		{"sun,20:00-02:00", at(nextMon, 1, 0), true},
		{"sun,20:00-02:00", at(mon, 1, 0), true},
		{"sun,20:00-02:00", at(mon, 2, 0), false},
		{"sat,22:00-24:00", at(sat, 23, 59), true},
		{"sat,22:00-24:00", at(sun, 0, 0), false},
		// day ranges that wrap, whole days, several windows
		{"fri-mon", at(sun, 12, 0), true},
		{"fri-mon", at(wed, 12, 0), false},
		{"sat,sun", at(sat, 0, 0), true},
		{"mon-fri,08:00-12:00,13:00-18:00;sat,09:00-13:00", at(wed, 12, 30), false},
		{"mon-fri,08:00-12:00,13:00-18:00;sat,09:00-13:00", at(wed, 13, 30), true},
		{"mon-fri,08:00-12:00,13:00-18:00;sat,09:00-13:00", at(sat, 10, 0), true},
		{"mon-fri,08:00-12:00,13:00-18:00;sat,09:00-13:00", at(sat, 14, 0), false},
		{"daily,09:00-10:00", at(sun, 9, 30), true},
	} {
		w, err := parseLimitWindow(c.window)
		if err != nil {
			t.Fatalf("%q: %v", c.window, err)
		}
		if got := w.active(c.t); got != c.want {
			t.Errorf("window %q at %s: active %v, want %v", c.window, c.t.Format("Mon 15:04"), got, c.want)
		}
	}
}

// The window is read in the clock's location: 08:00 in Berlin is inside
// "08:00-18:00" though it is 07:00 UTC.
func TestLimitWindowLocalTime(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	w, err := parseLimitWindow("08:00-18:00")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, berlin)
	if !w.active(t0) || w.active(t0.UTC()) {
		t.Errorf("08:00 CET: active %v, as 07:00 UTC: %v; want true, false", w.active(t0), w.active(t0.UTC()))
	}
}
