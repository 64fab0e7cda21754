package chunkstore

import (
	"bytes"
	"testing"
)

// FuzzGCPlan feeds garbage collection's plan decoder arbitrary bytes: it
// never panics, and a plan it accepts encodes to bytes that decode to the
// same plan (what a killed collection left is read back as it was).
func FuzzGCPlan(f *testing.F) {
	f.Add(encodePlan(&gcPlan{Version: gcPlanVersion, Index: "ab", Hidden: []string{"00"}, Marked: []string{"11"}, Sessions: []string{"s"}, SessionsKnown: true}))
	f.Add([]byte(`{"version": 2}`))
	f.Add([]byte(`{"version": 1, "hidden": [1]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePlan(b)
		if err != nil {
			return
		}
		if p.Version != gcPlanVersion {
			t.Fatalf("accepted a plan of version %d", p.Version)
		}
		enc := encodePlan(p)
		q, err := decodePlan(enc)
		if err != nil {
			t.Fatalf("a plan it accepted does not decode once encoded: %v", err)
		}
		if !bytes.Equal(encodePlan(q), enc) {
			t.Fatalf("plan changed through encode and decode:\n%s\n%s", enc, encodePlan(q))
		}
	})
}

// FuzzJournalName: any name in the journal either is not an entry (left
// alone) or splits into a tag and a pack that name it again.
func FuzzJournalName(f *testing.F) {
	f.Add("source-0123." + ID{1}.String())
	f.Add("a.b.c")
	f.Add("." + ID{}.String())
	f.Fuzz(func(t *testing.T, name string) {
		tag, pack, ok := parseJournalName(name)
		if !ok {
			return
		}
		if tag == "" {
			t.Fatalf("%q: an entry with no tag", name)
		}
		tag2, pack2, ok2 := parseJournalName(journalName(tag, pack))
		if !ok2 || tag2 != tag || pack2 != pack {
			t.Fatalf("%q -> (%q, %s) does not name itself again: (%q, %s, %v)", name, tag, pack, tag2, pack2, ok2)
		}
	})
}
