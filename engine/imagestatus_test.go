package engine

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestImageOverdue: a registered source's newest image is overdue once
// it is older than its group's longest gap between two recovery point
// times, plus a day.
func TestImageOverdue(t *testing.T) {
	ingested := Source{Name: "srv01", Kind: KindBMR, Computer: "SRV01", Ingested: "Backup 2026-11-02 210312",
		Created: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)}
	never := Source{Name: "srv02", Kind: KindSystemState, Computer: "SRV02", Created: time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)}
	image := time.Date(2026, 11, 2, 21, 3, 12, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		src       Source
		policy    Policy
		allowance time.Duration
		want      []string // what the error names; nil: not overdue
	}{
		{"daily, within", ingested, Policy{}, 48 * time.Hour, nil},
		{"daily, past", ingested, Policy{}, 48*time.Hour + time.Second,
			[]string{"source srv01", "SRV01", "Backup 2026-11-02 210312", "2 days", "group servers", "wbadmin get versions"}},
		{"twice a day, past", ingested, Policy{At: []string{"09:00", "21:00"}}, 36*time.Hour + time.Second, []string{"1 day 12 hours"}},
		{"twice a day, within", ingested, Policy{At: []string{"09:00", "21:00"}}, 36 * time.Hour, nil},
		{"weekdays: the weekend is allowed", ingested, Policy{Days: []string{"mon", "tue", "wed", "thu", "fri"}}, 96 * time.Hour, nil},
		{"weekdays, past", ingested, Policy{Days: []string{"mon", "tue", "wed", "thu", "fri"}}, 96*time.Hour + time.Second, []string{"4 days"}},
		{"never ingested, within", never, Policy{}, 48 * time.Hour, nil},
		{"never ingested, past", never, Policy{}, 48*time.Hour + time.Second,
			[]string{"source srv02", "no image", "added", "recall share bmr-target --source srv02", "wbadmin start backup"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := Group{Name: "servers", Policy: tc.policy}
			from := image
			if tc.src.Ingested == "" {
				from = tc.src.Created
			}
			err := ImageOverdue(tc.src, g, from.Add(tc.allowance))
			if tc.want == nil {
				if err != nil {
					t.Errorf("overdue: %v, want not", err)
				}
				return
			}
			if !errors.Is(err, ErrNoNewImage) {
				t.Fatalf("%v, want ErrNoNewImage", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not name %q", err, w)
				}
			}
		})
	}
}

// TestStatusImageWarnings: a registered source with no point is told to
// run WSB, not 'recall backup --group'; one whose image is overdue gets
// a warning; path sources keep theirs.
func TestStatusImageWarnings(t *testing.T) {
	now := time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	s := &StoreStatus{Time: now, Sources: []SourceStatus{
		{Group: "servers", Source: "srv01"},
		{Group: "servers", Source: "srv02", Points: 2, LastGood: "ab", LastTime: now.Add(-7 * 24 * time.Hour)},
		{Group: "servers", Source: "srv03", Points: 2, LastGood: "cd", LastTime: now.Add(-time.Hour)},
		{Group: "servers", Source: "etc"},
	}}
	for _, src := range []string{"srv01", "etc"} {
		s.Warnings = append(s.Warnings, noPointWarning(src, "servers"))
	}
	created := now.Add(-30 * 24 * time.Hour)
	srcs := []Source{
		{Name: "srv01", Kind: KindBMR, Computer: "SRV01", Staging: "/s/srv01", Created: created},
		{Name: "srv02", Kind: KindBMR, Computer: "SRV02", Staging: "/s/srv02", Created: created, Ingested: "Backup 2026-11-03 210000"},
		{Name: "srv03", Kind: KindBMR, Computer: "SRV03", Staging: "/s/srv03", Created: created, Ingested: "Backup 2026-11-10 010000"},
	}
	groups := []Group{{Name: "servers", Members: []string{"/s/srv01", "/s/srv02", "/s/srv03", "/etc"},
		SourceOf: map[string]string{"/s/srv01": "srv01", "/s/srv02": "srv02", "/s/srv03": "srv03"}}}
	s.AddImageWarnings(srcs, groups)
	if len(s.Warnings) != 3 {
		t.Fatalf("warnings %q, want 3", s.Warnings)
	}
	for i, want := range [][]string{
		{"source srv01 (group servers) has no recovery point yet", "SRV01", "wbadmin start backup", "recall share bmr-target --source srv01"},
		{"source etc (group servers) has no recovery point yet: run 'recall backup --group servers'"},
		{"source srv02", "Backup 2026-11-03 210000", "wbadmin get versions"},
	} {
		for _, w := range want {
			if !strings.Contains(s.Warnings[i], w) {
				t.Errorf("warning %d %q does not name %q", i, s.Warnings[i], w)
			}
		}
	}
	if strings.Contains(s.Warnings[0], "backup --group") {
		t.Errorf("%q tells to back up the group", s.Warnings[0])
	}
}

// A source with no point whose last backup failed is told that job's
// error, not to run the backup that failed again.
func TestStatusNoPointLastJobFailed(t *testing.T) {
	s := &StoreStatus{Sources: []SourceStatus{{Source: "a", Group: "g"}, {Source: "b", Group: "g"}}}
	s.Warnings = []string{noPointWarning("a", "g"), noPointWarning("b", "g")}
	at := time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC)
	s.AddJobs([]Job{
		{Number: 1, Kind: "backup", Source: "a", Status: "failed", Error: "pre-script \"x\": script failed: exit status 7", Started: at},
		{Number: 2, Kind: "backup", Source: "b", Status: "failed", Error: "old", Started: at},
		{Number: 3, Kind: "backup", Source: "b", Status: "interrupted", Started: at},
	})
	if !strings.Contains(s.Warnings[0], "its last backup, job 1 of 2026-12-03 11:00:00, failed: pre-script \"x\": script failed: exit status 7") {
		t.Errorf("warning for a: %q", s.Warnings[0])
	}
	if s.Warnings[1] != noPointWarning("b", "g") {
		t.Errorf("warning for b, whose last job was interrupted: %q", s.Warnings[1])
	}
}
