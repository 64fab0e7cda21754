package fs

import (
	"errors"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
)

// withheldSet is what Options.Withheld answers in a test; the test changes
// it between steps as `recall group edit --end-user-recovery` would.
type withheldSet struct {
	mu  sync.Mutex
	set map[string]string
	err error
}

func (w *withheldSet) get() (map[string]string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.set, w.err
}

func (w *withheldSet) put(set map[string]string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.set, w.err = set, err
}

// manifestCounter counts manifest loads.
type manifestCounter struct {
	Backend
	loads atomic.Int64
}

func (c *manifestCounter) LoadPoint(id chunkstore.ID) (*engine.Point, error) {
	c.loads.Add(1)
	return c.Backend.LoadPoint(id)
}

func (c *manifestCounter) PointsStamp() (string, error) { return c.Backend.(Stamper).PointsStamp() }

func TestTreeWithholdsSources(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("alpha's"), 0o644)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ts.backup(src, "alpha", base)
	writeFile(t, filepath.Join(src, "f"), []byte("beta's"), 0o644)
	ts.backup(src, "beta", base)
	ts.backup(src, "beta", base.Add(time.Hour))
	ts.backup(src, "gamma", base)

	w := &withheldSet{set: map[string]string{"beta": "finance"}}
	cb := &manifestCounter{Backend: ts.backend()}
	log := &logSink{}
	tr, err := New(cb, Options{Withheld: w.get, Log: log.log})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(tr.Sources()); got != "alpha gamma" {
		t.Fatalf("sources at start %q, want beta left out", got)
	}
	if cb.loads.Load() != 4 {
		t.Fatalf("%d manifest loads at start, want 4", cb.loads.Load())
	}

	var open *Entry // a file of gamma opened before gamma is withheld
	steps := []struct {
		name     string
		set      map[string]string
		err      error
		sync     bool // through Sync (a listing), else Update (the poll)
		want     string
		newSrcs  string
		goneSrcs string
		log      string // a log line that must appear
	}{
		{name: "nothing changed", set: map[string]string{"beta": "finance"}, want: "alpha gamma"},
		{name: "beta turned on", set: map[string]string{}, want: "alpha beta gamma", newSrcs: "beta",
			log: `showing source "beta" in the tree again`},
		{name: "gamma turned off, seen by a listing", set: map[string]string{"gamma": "hr"}, sync: true,
			want: "alpha beta", goneSrcs: "gamma", log: `leaving source "gamma" out of the tree: protection group "hr"`},
		{name: "catalog unreadable keeps the set", set: map[string]string{}, err: errors.New("catalog busy"),
			want: "alpha beta", log: "catalog busy"},
		{name: "catalog readable again", set: map[string]string{"gamma": "hr", "alpha": "hr"},
			want: "beta", goneSrcs: "alpha", log: "readable again"},
		{name: "everything on", set: nil, sync: true, want: "alpha beta gamma", newSrcs: "alpha gamma"},
	}
	for _, s := range steps {
		if s.name == "gamma turned off, seen by a listing" {
			open = lookupPath(t, tr.Source("gamma").Latest().Root(), "f")
		}
		w.put(s.set, s.err)
		var ch Changes
		if s.sync {
			var got []Changes
			tr.OnChanges(func(c Changes) { got = append(got, c) })
			tr.Sync(time.Hour) // the points did not change: only the set did
			if len(got) > 1 {
				t.Fatalf("%s: %d change reports", s.name, len(got))
			}
			if len(got) == 1 {
				ch = got[0]
			}
		} else {
			if ch, err = tr.Update(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
		if got := names(tr.Sources()); got != s.want {
			t.Errorf("%s: sources %q, want %q", s.name, got, s.want)
		}
		if got := strings.Join(ch.NewSources, " "); sortedWords(got) != s.newSrcs {
			t.Errorf("%s: new sources %q, want %q", s.name, got, s.newSrcs)
		}
		if got := strings.Join(ch.GoneSources, " "); sortedWords(got) != s.goneSrcs {
			t.Errorf("%s: gone sources %q, want %q", s.name, got, s.goneSrcs)
		}
		if s.log != "" && !strings.Contains(strings.Join(log.all(), "\n"), s.log) {
			t.Errorf("%s: no log line with %q in %q", s.name, s.log, log.all())
		}
	}
	// Withheld sources shown again were not read again.
	if cb.loads.Load() != 4 {
		t.Errorf("%d manifest loads, want the 4 of the start", cb.loads.Load())
	}
	// A source shown again gets the names it would get at a mount.
	if got := pointNames(tr.Source("beta")); got != "@GMT-2026.01.02-03.04.05 @GMT-2026.01.02-04.04.05" {
		t.Errorf("beta's points %q", got)
	}
	// A file opened before its source was withheld still reads its bytes;
	// its point was withheld, not forgotten.
	if got, err := readAll(t, open, 3); err != nil || string(got) != "beta's" {
		t.Errorf("open file of a withheld source = %q, %v", got, err)
	}
	if open.Point().Gone() {
		t.Error("a withheld point is marked forgotten")
	}
	// One log line per distinct error, not one per poll.
	w.put(nil, errors.New("catalog damaged"))
	tr.Update()
	tr.Update()
	n := 0
	for _, l := range log.all() {
		if strings.Contains(l, "catalog damaged") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the same error logged %d times, want once", n)
	}
}

func sortedWords(s string) string {
	f := strings.Fields(s)
	sort.Strings(f)
	return strings.Join(f, " ")
}
