package engine

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Every invalid value is refused, naming its flag and the allowed values.
func TestPolicyRefused(t *testing.T) {
	for _, c := range []struct {
		name    string
		p       Policy
		flag    string
		allowed string
	}{
		{"retention too short", Policy{Retention: "12h"}, "--retention", "1d to 10y"},
		{"retention too long", Policy{Retention: "11y"}, "--retention", "1d to 10y"},
		{"retention no unit", Policy{Retention: "14"}, "--retention", "1d to 10y"},
		{"sync too often", Policy{Sync: "5m"}, "--sync", "15m to 24h"},
		{"sync too rare", Policy{Sync: "2d"}, "--sync", "before-point"},
		{"at not a time", Policy{At: []string{"9am"}}, "--at", "HH:MM"},
		{"at out of range", Policy{At: []string{"24:00"}}, "--at", "HH:MM"},
		{"days", Policy{Days: []string{"mon", "funday"}}, "--days", "mon, tue"},
		{"sync window", Policy{SyncWindow: "10m"}, "--sync-window", "1h to 10y"},
		{"keep", Policy{KeepWeekly: -1}, "--keep-weekly", "0 or more"},
		{"compression", Policy{Compression: "lz4"}, "--compression", "zstd, s2 or off"},
		{"script timeout", Policy{ScriptTimeout: "0s"}, "--script-timeout", "1s to 24h"},
		{"end-user recovery", Policy{EndUserRecovery: "yes"}, "--end-user-recovery", "on or off"},
		{"exclude", Policy{Exclude: []string{"!neg"}}, "--exclude", ""},
		{"tape retention in days", Policy{TapeRetention: "30d", TapeFrequency: "daily"}, "--tape-retention", "1w to 4w, 1mo to 11mo, or 1y to 99y"},
		{"tape 12 months", Policy{TapeRetention: "12mo", TapeFrequency: "monthly"}, "--tape-retention", "1mo to 11mo"},
		{"tape 100 years", Policy{TapeRetention: "100y", TapeFrequency: "yearly"}, "--tape-retention", "1y to 99y"},
		{"tape weeks monthly", Policy{TapeRetention: "4w", TapeFrequency: "monthly"}, "--tape-frequency", "daily, weekly"},
		{"tape months quarterly", Policy{TapeRetention: "6mo", TapeFrequency: "quarterly"}, "--tape-frequency", "daily, weekly, bi-weekly, monthly"},
		{"tape years unknown", Policy{TapeRetention: "7y", TapeFrequency: "fortnightly"}, "--tape-frequency", "half-yearly, yearly"},
		{"tape frequency alone", Policy{TapeFrequency: "weekly"}, "--tape-frequency", "need --tape-retention"},
		{"tape pool", Policy{TapeRetention: "1y", TapeFrequency: "monthly", TapePool: "a b"}, "--tape-pool", "letters, digits"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.p.Check()
			if !errors.Is(err, ErrBadPolicy) {
				t.Fatalf("err %v, want ErrBadPolicy", err)
			}
			if !strings.Contains(err.Error(), c.flag) || !strings.Contains(err.Error(), c.allowed) {
				t.Errorf("message %q lacks %q or %q", err, c.flag, c.allowed)
			}
		})
	}
}

func TestPolicyAccepted(t *testing.T) {
	for _, p := range []Policy{
		{},
		{Retention: "1d", Sync: "15m"},
		{Retention: "10y", Sync: "24h", SyncWindow: "3d"},
		{Retention: "448d", Sync: SyncBeforePoint, At: []string{"9:00", "21:30"}, Days: []string{"mon", "FRI"}},
		{KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12, KeepYearly: 5, Compression: "s2", Exclude: []string{"*.tmp"}},
		{ScriptTimeout: "10m", EndUserRecovery: "off"},
		{TapeRetention: "4w", TapeFrequency: "weekly"},
		{TapeRetention: "11mo", TapeFrequency: "bi-weekly", TapePool: "monthly-pool"},
		{TapeRetention: "99y", TapeFrequency: "half-yearly", TapePool: "vault"},
	} {
		if err := p.Check(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
}

// Two ways of writing one policy are one policy once defaulted: an edit
// that changes nothing does not make a new policy version.
func TestPolicyDefaultsCanonical(t *testing.T) {
	a := Policy{At: []string{"21:00", "9:00", "09:00"}, Days: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}}.Defaults()
	b := Policy{Retention: DefaultRetention, At: []string{"09:00", "21:00"}, Days: []string{"daily"}}.Defaults()
	if strings.Join(a.At, ",") != "09:00,21:00" || strings.Join(a.Days, ",") != "daily" {
		t.Errorf("defaults: at %v days %v", a.At, a.Days)
	}
	if a.Retention != b.Retention || strings.Join(a.At, ",") != strings.Join(b.At, ",") || a.Sync != "15m" || a.SyncWindow != "48h" || a.ScriptTimeout != "120s" || a.EndUserRecovery != "on" {
		t.Errorf("a %+v\nb %+v", a, b)
	}
}

func TestScheduledSlot(t *testing.T) {
	p := Policy{Sync: "1h", At: []string{"09:00", "23:30"}, Days: []string{"mon", "tue", "wed", "thu", "fri"}}
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, c := range []struct{ now, slot string }{
		{"2026-11-02T09:00:00Z", "2026-11-02T09:00:00Z"}, // Monday, on time
		{"2026-11-02T09:59:59Z", "2026-11-02T09:00:00Z"}, // within one sync interval
		{"2026-11-02T10:00:00Z", ""},                     // a sync
		{"2026-11-02T08:59:00Z", ""},                     // before
		{"2026-11-03T00:10:00Z", "2026-11-02T23:30:00Z"}, // after midnight, the day before's slot
		{"2026-11-01T09:00:00Z", ""},                     // Sunday: no points
		{"2026-11-07T00:10:00Z", "2026-11-06T23:30:00Z"}, // Saturday morning, Friday's slot
	} {
		got, ok := p.ScheduledSlot(at(c.now))
		if c.slot == "" {
			if ok {
				t.Errorf("%s: slot %s, want none", c.now, got)
			}
			continue
		}
		if !ok || !got.Equal(at(c.slot)) {
			t.Errorf("%s: slot %s %v, want %s", c.now, got, ok, c.slot)
		}
	}
}

func TestParseSpan(t *testing.T) {
	for _, c := range []struct {
		s    string
		want time.Duration
	}{{"14d", 14 * day}, {"2w", 14 * day}, {"3mo", 90 * day}, {"7y", 7 * year}, {"15m", 15 * time.Minute}, {"2h30m", 150 * time.Minute}, {"120s", 2 * time.Minute}, {"99y", 99 * year}, {"1200mo", 1200 * 30 * day}, {"36600d", maxSpan}} {
		got, err := parseSpan(c.s)
		if err != nil || got != c.want {
			t.Errorf("%s: %v %v, want %v", c.s, got, err, c.want)
		}
	}
	for _, s := range []string{"", "d", "14x", "-1h", "1.5d", "3700mo", "101y", "36601d", "5300w", "900000h"} {
		if _, err := parseSpan(s); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
}
