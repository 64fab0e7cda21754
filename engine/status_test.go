package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Status adds up what the points recorded: the newest point's bytes are
// the protected size, the last 7 days' stored bytes over 7 the growth; a
// source in no group is listed with no group, a member with no point with
// a warning.
func TestStatus(t *testing.T) {
	_, st := newHome(t)
	src := t.TempDir()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var stored7 int64
	var last *Point
	for i, age := range []time.Duration{20 * day, 6 * day, day} {
		os.WriteFile(filepath.Join(src, "f"), randData(int64(i), 20_000+i), 0o644)
		s, err := st.Session(context.Background(), SessionOptions{Purpose: "t", Source: "s", Blobs: true})
		if err != nil {
			t.Fatal(err)
		}
		p, err := Backup(context.Background(), s, BackupOptions{Path: src, Source: "s", Now: func() time.Time { return now.Add(-age) }})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if age <= 7*day {
			stored7 += p.Stats.StoredBytes
		}
		last = p
	}
	gone := filepath.Join(t.TempDir(), "never-backed-up")
	groups := []Group{{Name: "g", Members: []string{gone}}}
	s, err := st.Status(context.Background(), groups, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Sources) != 2 {
		t.Fatalf("sources %+v", s.Sources)
	}
	ungrouped, member := s.Sources[0], s.Sources[1]
	if ungrouped.Group != "" || ungrouped.Source != "s" || ungrouped.Points != 3 || ungrouped.LastGood != last.ID.String() ||
		ungrouped.Protected != last.Stats.Bytes || ungrouped.GrowthPerDay != stored7/7 || ungrouped.DedupRatio <= 0 {
		t.Errorf("source s: %+v", ungrouped)
	}
	if member.Group != "g" || member.Points != 0 || member.LastGood != "" {
		t.Errorf("member: %+v", member)
	}
	if s.Stored <= 0 || s.Free <= 0 || s.Protected != last.Stats.Bytes || s.GrowthPerDay != stored7/7 {
		t.Errorf("store: %+v", s)
	}
	if want := float64(s.Free) / float64(s.GrowthPerDay); s.DaysUntilFull < want*0.99 || s.DaysUntilFull > want*1.01 {
		t.Errorf("days until full %.1f, want %.1f", s.DaysUntilFull, want)
	}
	// The member is gone: the warning says so, not "run a backup", which
	// would fail the same way. (Fix.)
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "no recovery point yet: its member "+gone+" cannot be read (no such file or directory)") ||
		!strings.Contains(s.Warnings[0], "recall group remove g --member "+gone) {
		t.Errorf("warnings %q", s.Warnings)
	}
}

func randData(seed int64, n int) []byte {
	b := make([]byte, n)
	x := uint64(seed)*0x9e3779b97f4a7c15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

func TestSpaceWarnings(t *testing.T) {
	for _, c := range []struct {
		free, protected, growth int64
		days                    float64
		warn                    []string
	}{
		{1000, 100, 10, 100, nil},
		{149, 100, 0, -1, []string{"under 1.5x"}},
		{150, 100, 0, -1, nil},
		{139, 10, 10, 13.9, []string{"full in 13.9 days"}},
		{140, 10, 10, 14, nil},
		{100, 100, 10, 10, []string{"under 1.5x", "full in 10.0 days"}},
		{-1, 100, 10, -1, nil}, // free space unknown
	} {
		days, w := spaceWarnings(c.free, c.protected, c.growth)
		ok := days == c.days && len(w) == len(c.warn)
		for i := range w {
			ok = ok && strings.Contains(w[i], c.warn[i])
		}
		if !ok {
			t.Errorf("free %d protected %d growth %d: %.1f days, %q; want %.1f, %q", c.free, c.protected, c.growth, days, w, c.days, c.warn)
		}
	}
}
