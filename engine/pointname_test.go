package engine

import (
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
)

// Recorded names go first, so a point from before names were recorded
// never takes the name a newer one was given; a name two points recorded
// (stores merged by copy) goes to the older; a recorded name that is not
// a point name, or is earlier than the point's start, is not used.
func TestPointNamesRecordedFirst(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	pt := func(n byte, src string, at time.Duration, name string) *Point {
		return &Point{ID: chunkstore.ID{n}, Source: src, Time: base.Add(at), Name: name}
	}
	sec := func(s int) string { return SnapshotName(base.Add(time.Duration(s) * time.Second)) }
	pts := []*Point{
		pt(1, "s", 0, ""),                                     // older than names: 05
		pt(2, "s", 300*time.Millisecond, sec(2)),              // recorded 07
		pt(3, "s", 600*time.Millisecond, ""),                  // 06, the next free
		pt(4, "s", 900*time.Millisecond, ""),                  // 09: 05 and 06 are taken, 07 and 08 recorded
		pt(5, "s", 3*time.Second, sec(3)),                     // recorded 08 as well, older than 6
		pt(6, "s", 4*time.Second, sec(3)),                     // the same name, newer: 10, the next free
		pt(7, "s", 5*time.Second, "@GMT-2020.01.01-00.00.00"), // earlier than its start: ignored, 11
		pt(8, "s", 6*time.Second, "latest"),                   // not a point name: ignored, 12
		pt(9, "t", 0, ""),                                     // another source
		{ID: chunkstore.ID{10}, Damaged: "x"},
	}
	got := PointNames(pts)
	want := map[byte]string{1: sec(0), 2: sec(2), 3: sec(1), 4: sec(4), 5: sec(3), 6: sec(5), 7: sec(6), 8: sec(7), 9: sec(0)}
	for n, w := range want {
		if g := got[chunkstore.ID{n}]; g != w {
			t.Errorf("point %d: %q, want %q", n, g, w)
		}
	}
	if _, ok := got[chunkstore.ID{10}]; ok {
		t.Error("a damaged point got a name")
	}
	if n := nameFor(pt(11, "s", 2*time.Second, ""), pts); n != sec(8) {
		t.Errorf("a new point's name: %q, want %q", n, sec(8))
	}
}
