package fs

import (
	"testing"

	"github.com/recall-backup/recall/chunkstore"
)

// A value heavier than the whole budget is decoded once while it is the
// latest such value (a directory listed entry by entry looks it up once
// per entry); the next giant takes its place; a cache without giants
// keeps none, as before.
func TestCacheKeepsLatestGiant(t *testing.T) {
	for _, giants := range []bool{true, false} {
		loads := map[chunkstore.ID]int{}
		c := newCache(1<<20, 64<<10, func(id chunkstore.ID) (int, int64, error) {
			loads[id]++
			if id[0] == 'g' {
				return int(id[1]), 4 << 20, nil
			}
			return 0, 1 << 10, nil
		})
		c.giants = giants
		a, b := chunkstore.ID{'g', 1}, chunkstore.ID{'g', 2}
		for range 1000 {
			if _, err := c.get(a); err != nil {
				t.Fatal(err)
			}
			c.get(chunkstore.ID{'s', byte(len(loads))}) // small ones meanwhile
		}
		want := 1
		if !giants {
			want = 1000
		}
		if loads[a] != want {
			t.Errorf("giants %v: %d loads of the giant, want %d", giants, loads[a], want)
		}
		c.get(b)
		c.get(b)
		c.get(a)
		if giants && (loads[b] != 1 || loads[a] != 2) {
			t.Errorf("giants %v: the next giant: %d loads, and the first %d again; want 1 and 2", giants, loads[b], loads[a])
		}
		if giants && c.usedBytes() > 1<<20+4<<20 {
			t.Errorf("%d bytes held, want at most the budget and one giant", c.usedBytes())
		}
	}
}
