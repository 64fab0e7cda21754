package engine

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// A group's Limit caps the bytes per second its backups read from their
// sources, all of its members running at once together (DPM throttles by
// amount and time); LimitWindow says when the cap holds. Outside the
// window the backups read at full speed.
//
// Rates: a size as go-humanize reads it, then "/s": 50MiB/s, 1.5GB/s,
// 800K/s (K, M, G: powers of 1000; Ki, Mi, Gi: of 1024); or a bit rate,
// ending in "bit/s" or "bps": 400Mbit/s, 1Gbps, which is divided by 8.
// "Bps" is bytes per second (50MBps).
//
// Windows: one or more, separated by ';'. A window is days and time ranges
// separated by ',': days are mon..sun, ranges of them like mon-fri or
// fri-mon, or daily (no days: every day); a time range is HH:MM-HH:MM in
// the server's local time, 24:00 allowed as its end, and one whose end is
// before its start runs into the next day, so "fri,22:00-06:00" holds from
// Friday 22:00 to Saturday 06:00 (no time range: the whole day). Example:
// "mon-fri,08:00-12:00,13:00-18:00;sat,09:00-13:00".

const (
	allowedLimit = "a rate of at least 1KiB/s: bytes per second like 50MiB/s, 1.5GB/s or 50MBps, " +
		"or bits per second like 400Mbit/s or 1Gbps"
	allowedLimitWindow = "windows separated by ';', each of days and time ranges separated by ',': " +
		"days mon..sun, a range like mon-fri, or daily (none: every day); times HH:MM-HH:MM in the server's local time, " +
		"24:00 allowed as the end, an end before the start running into the next day (none: the whole day); " +
		"like mon-fri,08:00-18:00 or mon-fri,08:00-12:00,13:00-18:00;sat,09:00-13:00"
	minLimit = 1024 // bytes per second: below it a backup of anything would take days
)

// ParseRate reads a rate (see above) in bytes per second.
func ParseRate(s string) (float64, error) {
	s = strings.TrimSpace(s)
	low := strings.ToLower(s)
	var num string
	bits := false
	switch {
	case strings.HasSuffix(low, "bit/s"):
		num, bits = s[:len(s)-len("bit/s")], true
	case strings.HasSuffix(s, "bps"):
		num, bits = s[:len(s)-len("bps")], true
	case strings.HasSuffix(s, "Bps"):
		num = s[:len(s)-len("ps")]
	case strings.HasSuffix(s, "/s"):
		num = s[:len(s)-len("/s")]
		if strings.HasSuffix(num, "b") {
			// "Mb/s" means bits to some and bytes to humanize.
			return 0, fmt.Errorf("rate %q: b/s is ambiguous: write bit/s for bits or B/s for bytes", s)
		}
	default:
		return 0, fmt.Errorf("rate %q: no /s, bit/s or bps", s)
	}
	if bits && strings.HasSuffix(strings.ToLower(num), "b") {
		// "400Mbbit/s" or "400MBbit/s": a size unit inside a bit rate.
		return 0, fmt.Errorf("rate %q: a byte unit in a bit rate", s)
	}
	num = strings.TrimSpace(num)
	if strings.HasPrefix(num, "-") {
		return 0, fmt.Errorf("rate %q: negative", s)
	}
	n, err := humanize.ParseBytes(num)
	if err != nil {
		// humanize's own error is strconv's, naming an empty string.
		return 0, fmt.Errorf("rate %q: %q is not a number and a size unit", s, num)
	}
	r := float64(n)
	if bits {
		r /= 8
	}
	return r, nil
}

// limitWindow is a checked LimitWindow: spans of the week in minutes
// after Sunday 00:00, [from, to); a span that runs past Saturday's end
// goes on into Sunday. Nil is always.
type limitWindow struct {
	spans [][2]int
}

const (
	minutesPerDay  = 24 * 60
	minutesPerWeek = 7 * minutesPerDay
)

// parseLimitWindow reads a LimitWindow; "" is nil (always).
func parseLimitWindow(s string) (*limitWindow, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	w := &limitWindow{}
	for _, one := range strings.Split(s, ";") {
		var days [7]bool
		anyDay := false
		var times [][2]int
		for _, part := range strings.Split(one, ",") {
			part = strings.ToLower(strings.TrimSpace(part))
			if part == "" {
				return nil, fmt.Errorf("window %q: an empty part", one)
			}
			if strings.Contains(part, ":") {
				from, to, err := parseTimeRange(part)
				if err != nil {
					return nil, err
				}
				times = append(times, [2]int{from, to})
				continue
			}
			if err := parseDays(part, &days); err != nil {
				return nil, err
			}
			anyDay = true
		}
		if !anyDay {
			days = [7]bool{true, true, true, true, true, true, true}
		}
		if len(times) == 0 {
			times = [][2]int{{0, minutesPerDay}}
		}
		for d, on := range days {
			if !on {
				continue
			}
			for _, t := range times {
				from, to := d*minutesPerDay+t[0], d*minutesPerDay+t[1]
				if t[1] <= t[0] {
					to += minutesPerDay // into the next day
				}
				w.spans = append(w.spans, [2]int{from, to})
			}
		}
	}
	return w, nil
}

// parseTimeRange reads HH:MM-HH:MM as minutes after midnight; the end may
// be 24:00, and an end before the start is on the next day.
func parseTimeRange(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("time range %q: not HH:MM-HH:MM", s)
	}
	from, err := parseClock(a)
	if err != nil {
		return 0, 0, fmt.Errorf("time range %q: %w", s, err)
	}
	to := minutesPerDay
	if strings.TrimSpace(b) != "24:00" {
		if to, err = parseClock(b); err != nil {
			return 0, 0, fmt.Errorf("time range %q: %w", s, err)
		}
	}
	if to == from {
		return 0, 0, fmt.Errorf("time range %q: empty (leave the times out for the whole day)", s)
	}
	return from, to, nil
}

// parseDays marks the days of a day name, a range like mon-fri (fri-mon
// wraps through the weekend) or daily.
func parseDays(s string, days *[7]bool) error {
	if s == "daily" {
		*days = [7]bool{true, true, true, true, true, true, true}
		return nil
	}
	a, b, isRange := strings.Cut(s, "-")
	i := slices.Index(weekdays, strings.TrimSpace(a))
	j := i
	if isRange {
		j = slices.Index(weekdays, strings.TrimSpace(b))
	}
	if i < 0 || j < 0 {
		return fmt.Errorf("days %q: not a day or a range of days", s)
	}
	for d := i; ; d = (d + 1) % 7 {
		days[d] = true
		if d == j {
			return nil
		}
	}
}

// active reports whether the window holds at t, in t's location.
func (w *limitWindow) active(t time.Time) bool {
	if w == nil {
		return true
	}
	at := int(t.Weekday())*minutesPerDay + t.Hour()*60 + t.Minute()
	for _, s := range w.spans {
		if (at >= s[0] && at < s[1]) || (at+minutesPerWeek >= s[0] && at+minutesPerWeek < s[1]) {
			return true
		}
	}
	return false
}

// limitError is a bad --limit or --limit-window: it is ErrBadPolicy (a
// usage error) without saying "invalid policy", since a one-off backup
// --limit has none; checkLimit says it for a group's.
type limitError struct{ msg string }

func (e limitError) Error() string { return e.msg }
func (e limitError) Unwrap() error { return ErrBadPolicy }

// compileLimit checks Limit and LimitWindow and returns the rate in bytes
// per second (0: no limit) and the window; errors name the flag and its
// value, say the form it takes, and wrap ErrBadPolicy.
func compileLimit(limit, window string) (float64, *limitWindow, error) {
	var r float64
	if strings.TrimSpace(limit) != "" {
		var err error
		r, err = ParseRate(limit)
		if err == nil && (r < minLimit || math.IsInf(r, 0)) {
			err = fmt.Errorf("rate %q: below 1KiB/s", limit)
		}
		if err != nil {
			return 0, nil, limitError{fmt.Sprintf("--limit %q: %v; allowed: %s", limit, err, allowedLimit)}
		}
	}
	w, err := parseLimitWindow(window)
	if err != nil {
		return 0, nil, limitError{fmt.Sprintf("--limit-window %q: %v; allowed: %s", window, err, allowedLimitWindow)}
	}
	if w != nil && r == 0 {
		return 0, nil, limitError{fmt.Sprintf("--limit-window %q needs --limit (allowed: %s)", window, allowedLimit)}
	}
	return r, w, nil
}

// checkLimit is compile's check of the limit fields.
func (p Policy) checkLimit() error {
	if _, _, err := compileLimit(p.Limit, p.LimitWindow); err != nil {
		return fmt.Errorf("%s: %w", ErrBadPolicy, err) // as the policy's other checks say it
	}
	return nil
}
