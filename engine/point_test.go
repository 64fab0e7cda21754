package engine

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
)

// The refusals of FindPoint say what there is: the sources "latest" could
// mean, the ids a short prefix matches, and the source a slip meant.
func TestFindPointSaysWhatThereIs(t *testing.T) {
	var pts []*Point
	for i, src := range []string{"web", "mail", "web", "db"} {
		var id chunkstore.ID
		id[0], id[1] = 0xab, byte(i)
		pts = append(pts, &Point{ID: id, Source: src})
	}
	r := &Reader{}
	for _, tc := range []struct{ spec, source, want string }{
		{"latest", "", `"latest" is the newest point of one source, and this store has 3 (db, mail, web): name one with --source`},
		{"ab", "", `"ab" matches 4 points (ab00000000000000, ab01000000000000, ab02000000000000, ab03000000000000); give more digits`},
		{"latest", "wbe", `the store holds no point of that source; did you mean "web"? (sources: db, mail, web)`},
		{"latest", "zzz", `the store holds no point of that source (sources: db, mail, web)`},
		{"cd", "web", `point "cd" of source "web": not found (list them with 'recall points --source web')`},
	} {
		_, err := r.findPoint(pts, tc.spec, tc.source)
		if err == nil || !strings.Contains(err.Error(), tc.want) || tc.spec == "latest" && strings.Contains(err.Error(), "prefix") {
			t.Errorf("findPoint(%q, %q) = %v, want %q", tc.spec, tc.source, err, tc.want)
		}
	}
	if p, err := r.findPoint(pts, "latest", "web"); err != nil || p != pts[2] {
		t.Errorf("latest of web: %v, %v", p, err)
	}
	if got := SourcesHint("x", nil); !strings.Contains(got, "no points yet") {
		t.Errorf("SourcesHint with none: %q", got)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"web", "web", 0}, {"wbe", "web", 1}, {"we", "web", 1}, {"webb", "web", 1}, {"wxb", "web", 1}, {"", "abc", 3}, {"mail", "db", 4}, {"tmp-edd", "tmp-ed", 1}} {
		if got := EditDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// --exclude-larger-than's error tells an unknown unit from a size of none.
func TestParseExcludeSize(t *testing.T) {
	for in, want := range map[string]string{"1XB": "a byte count, or a number with a unit", "0": "at least one byte", "": "a byte count"} {
		if _, err := ParseExcludeSize(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseExcludeSize(%q) = %v, want %q", in, err, want)
		}
	}
	if n, err := ParseExcludeSize("1MiB"); err != nil || n != 1<<20 {
		t.Errorf("1MiB: %d, %v", n, err)
	}
}

// A home another user owns is named with its owner, and the ways on.
func TestAccessHint(t *testing.T) {
	home := t.TempDir()
	err := &os.PathError{Op: "open", Path: filepath.Join(home, "store.json"), Err: syscall.EACCES}
	got := accessHint(home, err)
	if !strings.Contains(got, "home "+home+" (owner ") || !strings.Contains(got, "run recall as its owner") {
		t.Errorf("accessHint: %q", got)
	}
	if got := accessHint(home, os.ErrNotExist); got != "" {
		t.Errorf("accessHint of a missing file: %q", got)
	}
}

// A store location that is a file is named as one.
func TestLocationIsAFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "afile")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := OpenLocation(t.Context(), f, RemoteOptions{}, chunkstore.OpenOptions{})
	if err == nil || !strings.Contains(err.Error(), f+" is a regular file, not a store directory or a recall home") {
		t.Errorf("open of a file as a store: %v", err)
	}
}
