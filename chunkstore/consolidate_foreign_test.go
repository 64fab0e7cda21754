package chunkstore

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// A file in index/ with an index file's name (64 hex digits) that does
// not decode is no index file this store read: a consolidation does not
// supersede it and gc never removes it, whether the consolidation was
// gc's or an exclusive lock's, and even when a retire record (as an older
// recall wrote) lists it. Each collection names it, once; 'recall repair
// index' is what replaces it. (Fix: loadedIndexIDs, retireIndexFiles,
// noteUnreadable.)
func TestGCLeavesUndecodableIndexFile(t *testing.T) {
	for _, how := range []string{"gc", "exclusive"} {
		t.Run(how, func(t *testing.T) {
			dir, s := newStore(t, false)
			syntheticIndexFiles(t, s, consolidateMin+100)
			foreign := strings.Repeat("ab", 32)
			p := filepath.Join(dir, "index", foreign)
			if err := os.WriteFile(p, []byte("foreign\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			g := reopen(t, dir)
			var logged []string
			o := GCOptions{Log: func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }}
			if how == "exclusive" {
				exclusive(t, g).Unlock()
			} else {
				rep, err := g.GC(ctx, pointMarker(g), o)
				if err != nil || !rep.IndexConsolidated {
					t.Fatalf("gc: %+v, %v; want a consolidation", rep, err)
				}
			}
			if g.idx.baseName() == "" {
				t.Fatal("no consolidation")
			}
			if slices.ContainsFunc(g.idx.base.supersedes(), func(id ID) bool { return id.String() == foreign }) {
				t.Error("the consolidated file supersedes the file that does not decode")
			}
			for run := range 2 {
				logged = nil
				o.IndexGrace = -1
				rep, err := g.GC(ctx, pointMarker(g), o)
				if err != nil {
					t.Fatal(err)
				}
				if run == 0 && rep.IndexFilesRemoved == 0 {
					t.Errorf("run %d: no superseded index file removed", run)
				}
				if !slices.Equal(rep.IndexUnreadable, []string{foreign}) {
					t.Errorf("run %d: report names %v as unreadable, want %s", run, rep.IndexUnreadable, foreign)
				}
				if n := strings.Count(strings.Join(logged, "\n"), foreign); n != 1 {
					t.Errorf("run %d: the file named %d times in the log, want once: %q", run, n, logged)
				}
				if b, err := os.ReadFile(p); err != nil || string(b) != "foreign\n" {
					t.Fatalf("run %d: the file that does not decode was removed or changed: %q, %v", run, b, err)
				}
				// As an older recall recorded it: superseded by the base.
				rb, _ := json.Marshal(gcRetire{Version: 1, At: time.Now().Add(-time.Hour), Files: []string{foreign}})
				if err := g.be.Save(ctx, gcHandle(gcRetirePrefix+g.idx.baseName()), rb); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
