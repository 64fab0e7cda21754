package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/tapefs"
)

// TestTapeStatus: the status sums each pool's cartridges and sets from the
// media catalog, counts a point on two sets once, leaves expired sets out,
// counts the library's blank cartridges as usable by every pool there, and
// warns when a group's tape goal has nowhere to write.
func TestTapeStatus(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	cat := func(ids ...string) *tapefs.MediaCatalog {
		c := &tapefs.MediaCatalog{}
		for _, id := range ids {
			c.Points = append(c.Points, tapefs.CatalogPoint{ID: id})
		}
		return c
	}
	st := &TapeState{
		Pools: []TapePool{{Name: "monthly", Library: "lib"}, {Name: "offsite", Library: "vault"}},
		Media: []TapeMedium{
			{Barcode: "A1", Pool: "monthly", State: MediaFull, Written: now.Add(-3 * day)},
			{Barcode: "A2", Pool: "monthly", State: MediaWriting, Written: now.Add(-day)},
			{Barcode: "A3", Pool: "monthly", State: MediaExpired},
			{Barcode: "B1", Pool: "offsite", State: MediaFull, Written: now.Add(-10 * day)},
			{Barcode: "X1", State: MediaFree, Library: "lib"}, // blank, no pool yet
		},
		Sets: []TapeSet{
			{ID: "s1", Pool: "monthly", Expiry: now.Add(300 * day), Catalog: cat("p1", "p2")},
			{ID: "s2", Pool: "monthly", Expiry: now.Add(100 * day), Catalog: cat("p2", "p3")},
			{ID: "s0", Pool: "monthly", Expiry: now.Add(-day), Catalog: cat("p0")}, // expired
			{ID: "s3", Pool: "offsite", Expiry: now.Add(50 * day), Catalog: cat("p1")},
		},
	}
	groups := []Group{
		{Name: "files", Policy: Policy{TapeRetention: "1y", TapeFrequency: "monthly", TapePool: "monthly"}},
		{Name: "db", Policy: Policy{TapeRetention: "7y", TapeFrequency: "yearly", TapePool: "offsite"}},
		{Name: "web", Policy: Policy{TapeRetention: "7y", TapeFrequency: "yearly", TapePool: "nosuch"}},
		{Name: "mail", Policy: Policy{TapeRetention: "7y", TapeFrequency: "yearly"}},
		{Name: "plain"},
	}
	pools, warnings := TapeStatus(st, groups, now)
	if len(pools) != 2 {
		t.Fatalf("pools %+v", pools)
	}
	m := pools[0]
	if m.Pool != "monthly" || m.Sets != 2 || m.Points != 3 || m.Usable != 3 ||
		m.Media[MediaFull] != 1 || m.Media[MediaWriting] != 1 || m.Media[MediaExpired] != 1 ||
		!m.LastWritten.Equal(now.Add(-day)) || !m.NextExpiry.Equal(now.Add(100*day)) {
		t.Errorf("pool monthly: %+v", m)
	}
	o := pools[1]
	if o.Pool != "offsite" || o.Sets != 1 || o.Points != 1 || o.Usable != 0 {
		t.Errorf("pool offsite: %+v", o)
	}
	want := []string{
		"group mail has a tape goal but no tape pool",
		"group web writes to tape pool nosuch, which does not exist",
		"tape pool offsite (group db's tape goal) has no cartridge known to be usable: insert a blank cartridge into library vault",
	}
	if len(warnings) != len(want) {
		t.Fatalf("warnings %q, want %d", warnings, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(warnings[i], w) {
			t.Errorf("warning %d: %q, want it to start %q", i, warnings[i], w)
		}
	}
	if pools, warnings := TapeStatus(nil, []Group{{Name: "plain"}}, now); len(pools) != 0 || len(warnings) != 0 {
		t.Errorf("no tape: %+v %q", pools, warnings)
	}
}
