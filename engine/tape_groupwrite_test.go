package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// A group's tape write reads the media catalog once: the write's own read
// (after what is due has expired, under the tape lock) serves the check
// of the pool against the group's goal too, which is still told. Before,
// WriteGroupToTape read it first for that check alone. (Fix:
// WriteGroupToTape, TapeWriteOptions.goal.)
func TestWriteGroupToTapeReadsCatalogOnce(t *testing.T) {
	f := newTapeHome(t, 1<<20, 1, 1<<30)
	if _, err := CreateTapePool(f.home, TapePool{Name: "vault", Retention: "1y"}, day0, t.Logf); err != nil {
		t.Fatal(err)
	}
	reads := 0
	old := readTapeState
	t.Cleanup(func() { readTapeState = old })
	readTapeState = func(home string, warn func(string, ...any)) (*TapeState, error) {
		reads++
		return old(home, warn)
	}
	var logged []string
	log := func(format string, args ...any) {
		logged = append(logged, fmt.Sprintf(format, args...))
		t.Logf(format, args...)
	}
	g := &Group{Name: "tg", Members: []string{f.src}, SourceOf: map[string]string{f.src: "src"},
		Policy: Policy{TapePool: "vault", TapeRetention: "7y", TapeFrequency: "yearly"}}
	rep, err := f.s.WriteGroupToTape(context.Background(), f.home, g, func() time.Time { return day0 }, log)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Points, []string{f.p.ID.String()}) {
		t.Errorf("points written %v, want the member's", rep.Points)
	}
	if reads != 1 {
		t.Errorf("the media catalog was read %d times, want once", reads)
	}
	if !slices.ContainsFunc(logged, func(l string) bool {
		return strings.HasPrefix(l, "tape pool vault keeps its sets 1y, less than group tg's tape goal of 7y")
	}) {
		t.Errorf("no word of the pool's short retention in %q", logged)
	}
}
