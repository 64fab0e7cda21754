package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/recall-backup/recall/chunkstore"
)

func TestExcludePatterns(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		rel     string
		dir     bool
		want    bool
	}{
		// No '/': a name at any depth.
		{"*.log", "a.log", false, true},
		{"*.log", "x/y/a.log", false, true},
		{"*.log", "x/a.log.1", false, false},
		{"*.log", "a.log", true, true},
		{"node_modules", "web/app/node_modules", true, true},
		{"?.txt", "ab.txt", false, false},
		{"?.txt", "d/a.txt", false, true},
		{"[ab].txt", "b.txt", false, true},
		{"[!ab].txt", "b.txt", false, false},
		// '{', '}' and ',' are ordinary characters, as in .gitignore,
		// not doublestar's alternation. (Fix: "{x}" left out x and kept
		// the file named "{x}"; "{" was refused.)
		{"{x}", "x", false, false},
		{"{x}", "d/{x}", false, true},
		{"a{b,c}", "ab", false, false},
		{"a{b,c}", "a{b,c}", false, true},
		{"{", "{", false, true},
		{"}", "}", false, true},
		{"/d/{x,y}.bin", "d/{x,y}.bin", false, true},
		{"[{]x", "{x", false, true},
		{`[\]a]{1}`, "]{1}", false, true},
		{`\{x\}`, "{x}", false, true},
		{`\*.txt`, "*.txt", false, true},
		{`\*.txt`, "a.txt", false, false},
		// A leading or inner '/': the path from the backed-up root.
		{"/build", "build", true, true},
		{"/build", "src/build", true, false},
		{"a/b", "a/b", false, true},
		{"a/b", "x/a/b", false, false},
		{"/a/*.o", "a/x.o", false, true},
		{"/a/*.o", "a/b/x.o", false, false}, // '*' never crosses '/'
		// '**': any number of directories, none included.
		{"**/a/b", "a/b", false, true},
		{"**/a/b", "x/y/a/b", false, true},
		{"a/**/b", "a/b", false, true},
		{"a/**/b", "a/x/y/b", false, true},
		{"a/**/b", "a/x/c", false, false},
		{"a/**", "a/x/y", false, true},
		// "a/**" is what is inside a, not a itself. (Fix: a was left
		// out too.)
		{"a/**", "a", true, false},
		{"a/**", "a/x", false, true},
		{"a/**", "a/x", true, true},
		{"/a/**", "a", true, false},
		{"a/**/", "a", true, false},
		{"a/**/", "a/x", true, true},
		{"a/**/", "a/x", false, false},
		{"**/a/**", "d/a", true, false},
		{"**/a/**", "d/a/x", false, true},
		{"a/", "a", true, true},
		{"a", "a", true, true},
		{"/**/*.tmp", "d/e/f.tmp", false, true},
		// A trailing '/': directories only.
		{"cache/", "home/u/cache", true, true},
		{"cache/", "home/u/cache", false, false},
		{"/var/cache/", "var/cache", true, true},
		{"/var/cache/", "srv/var/cache", true, false},
		{"**/tmp/", "a/tmp", true, true},
		{"**/tmp/", "a/tmp", false, false},
	} {
		x := Exclude{Patterns: []string{tc.pattern}}
		e, err := x.compile()
		if err != nil {
			t.Errorf("%q: %v", tc.pattern, err)
			continue
		}
		name := path.Base(tc.rel)
		got := e.byName(tc.rel, name) || tc.dir && e.byType(tc.rel, name)
		if got != tc.want {
			t.Errorf("pattern %q, %s (dir %v): excluded %v, want %v", tc.pattern, tc.rel, tc.dir, got, tc.want)
		}
	}
}

func TestExcludeBadOptions(t *testing.T) {
	for _, x := range []Exclude{
		{Patterns: []string{""}},
		{Patterns: []string{"/"}},
		{Patterns: []string{"!keep.txt"}},
		{Patterns: []string{"[ab"}},
		{Patterns: []string{"x[{"}},
		{Patterns: []string{"ok", `trailing\`}},
		{Files: []ExcludeFile{{Path: "/x", Patterns: []string{"[z"}}}},
		{IfPresent: []string{"a/b"}},
		{IfPresent: []string{""}},
		{IfPresent: []string{".."}},
		{LargerThan: -1},
	} {
		if err := x.Check(); !errors.Is(err, ErrBadOption) {
			t.Errorf("%+v: err %v, want ErrBadOption", x, err)
		}
	}
	ok := Exclude{Patterns: []string{"*.o", "/a/", `\!x`, "{a,b", "}"}, IfPresent: []string{".nobackup"}, LargerThan: 1}
	if err := ok.Check(); err != nil {
		t.Errorf("%+v: %v", ok, err)
	}
}

func TestReadExcludeFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "exclude")
	if err := os.WriteFile(p, []byte("# comment\n*.iso\n\n  /var/tmp/  \r\n\t# indented comment\nnode_modules"), 0o644); err != nil {
		t.Fatal(err)
	}
	xf, err := ReadExcludeFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"*.iso", "/var/tmp/", "node_modules"}; !reflect.DeepEqual(xf.Patterns, want) || xf.Path != p {
		t.Errorf("got %+v, want patterns %q from %s", xf, want, p)
	}
	if _, err := ReadExcludeFile(p + ".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	// A bad pattern is named with its file and line, comments and blank
	// lines counted. (Fix: only the file was named.)
	if err := os.WriteFile(p, []byte("# comment\n*.iso\n\n  !keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadExcludeFile(p); !errors.Is(err, ErrBadOption) || !strings.HasPrefix(err.Error(), p+":4: ") || !strings.Contains(err.Error(), `"!keep"`) {
		t.Errorf("bad pattern on line 4: %v", err)
	}
	// Every bad line is named, each on its own line. (Fix: only the
	// first was.)
	if err := os.WriteFile(p, []byte("!a\n*.iso\nfoo[\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ReadExcludeFile(p)
	if lines := strings.Split(fmt.Sprint(err), "\n"); !errors.Is(err, ErrBadOption) || len(lines) != 2 || !strings.HasPrefix(lines[0], p+":1: ") || !strings.HasPrefix(lines[1], p+":3: ") {
		t.Errorf("two bad lines: %v", err)
	}
}

// pointPaths lists every path in p's tree, directories with a trailing '/'.
func (ts *testStore) pointPaths(p *Point) []string {
	ts.t.Helper()
	var out []string
	err := ts.r.Walk(context.Background(), p.Tree, func(rel string, n *Node, err error) error {
		if err != nil {
			return err
		}
		if n.Type == TypeDir {
			rel += "/"
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		ts.t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestBackupExcludes(t *testing.T) {
	src := t.TempDir()
	for name, data := range map[string]string{
		"keep.txt":                 "k",
		"a.log":                    "l",
		"sub/b.log":                "l",
		"sub/keep":                 "k",
		"build/out.o":              "o",
		"src/build/x.go":           "package x",
		"big.bin":                  strings.Repeat("x", 5000),
		"cache/CACHEDIR.TAG":       cacheDirSignature + "\n# a cache\n",
		"cache/blob":               "c",
		"fakecache/CACHEDIR.TAG":   "Signature: not the right one",
		"fakecache/blob":           "c",
		"scratch/.nobackup":        "",
		"scratch/data":             "d",
		"fromfile/x.iso":           "i",
		"unlisted/secret/deep.txt": "s",
	} {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	xfile := filepath.Join(t.TempDir(), "patterns")
	if err := os.WriteFile(xfile, []byte("# ISO images\n*.iso\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	xf, err := ReadExcludeFile(xfile)
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestStore(t)
	x := Exclude{Patterns: []string{"*.log", "/build/", "unlisted"}, Files: []ExcludeFile{xf},
		Caches: true, IfPresent: []string{".nobackup"}, LargerThan: 4096}
	var mu sync.Mutex
	var listed []string
	hooks := &backupHooks{afterReadDir: func(dir string) {
		mu.Lock()
		defer mu.Unlock()
		rel, _ := filepath.Rel(src, dir)
		listed = append(listed, rel)
	}}
	p, err := ts.backup(BackupOptions{Path: src, Source: "s", Exclude: x, hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	// Excluded directories and those whose content is left out are never
	// listed.
	sort.Strings(listed)
	if want := []string{".", "fakecache", "fromfile", "src", "src/build", "sub"}; !reflect.DeepEqual(listed, want) {
		t.Errorf("listed %q, want %q", listed, want)
	}
	want := []string{"cache/", "cache/CACHEDIR.TAG", "fakecache/", "fakecache/CACHEDIR.TAG", "fakecache/blob",
		"fromfile/", "keep.txt", "scratch/", "scratch/.nobackup", "src/", "src/build/", "src/build/x.go", "sub/", "sub/keep"}
	if got := ts.pointPaths(p); !reflect.DeepEqual(got, want) {
		t.Errorf("point holds\n %q\nwant\n %q", got, want)
	}
	loaded, err := ts.r.LoadPoint(p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(loaded.Exclude, x) || loaded.Version != 2 {
		t.Errorf("manifest v%d records %+v, want %+v", loaded.Version, loaded.Exclude, x)
	}
}

// "sub/**" leaves out what is in sub and keeps sub, empty, with its own
// mode, as git does. (Fix: sub itself was left out.)
func TestBackupExcludeContentOnly(t *testing.T) {
	src := t.TempDir()
	sub := filepath.Join(src, "sub")
	if err := os.MkdirAll(filepath.Join(sub, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "d", "f"), []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sub, 0o750); err != nil {
		t.Fatal(err)
	}
	ts := newTestStore(t)
	p, err := ts.backup(BackupOptions{Path: src, Source: "s", Exclude: Exclude{Patterns: []string{"sub/**"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := ts.pointPaths(p); !reflect.DeepEqual(got, []string{"sub/"}) {
		t.Fatalf("point holds %q, want only the directory sub", got)
	}
	root, err := ts.r.LoadTree(p.Tree)
	if err != nil {
		t.Fatal(err)
	}
	if n := root.Find("sub"); n.Mode != 0o750 {
		t.Errorf("sub kept with mode %o, want 750", n.Mode)
	}
}

func TestBackupBadOption(t *testing.T) {
	ts := newTestStore(t)
	for _, o := range []BackupOptions{
		{Path: t.TempDir(), Exclude: Exclude{Patterns: []string{"[x"}}},
		{Path: t.TempDir(), Source: "bad\nname"},
	} {
		if _, err := ts.backup(o); !errors.Is(err, ErrBadOption) {
			t.Errorf("%+v: err %v, want ErrBadOption", o, err)
		}
	}
}

func TestSourceNames(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/srv/www", "srv-www"},
		{"/", "root"},
		{"/a:b/c", "a_b-c"},
		{"/line\nbreak/\x7fdel", "line_break-_del"},
		{"/latest", "_latest"},
		{"/@GMT-2026.01.01-00.00.00", "_@GMT-2026.01.01-00.00.00"},
		{"/srv/latest", "srv-latest"},
		{"/data/caf\xe9", "data-caf_xe9"}, // Latin-1, not UTF-8
		{"/data/caf\xe8", "data-caf_xe8"},
		{"/data/\xef\xbf\xbd", "data-\ufffd"}, // U+FFFD itself stays
	} {
		if got := SourceName(tc.path); got != tc.want || ValidSourceName(got) != nil || !utf8.ValidString(got) {
			t.Errorf("SourceName(%q) = %q, want %q, a valid name", tc.path, got, tc.want)
		}
	}
	long1, long2 := "/"+strings.Repeat("é", 150)+"/a", "/"+strings.Repeat("é", 150)+"/b"
	n1, n2 := SourceName(long1), SourceName(long2)
	if len(n1) > 200 || n1 == n2 || ValidSourceName(n1) != nil || !strings.HasPrefix(n1, "éé") {
		t.Errorf("long paths give %q (%d bytes) and %q", n1, len(n1), n2)
	}
	for _, name := range []string{"", ".", "..", "latest", "@GMT-2026.01.01-00.00.00", "a/b", "a:b", "a\x00b",
		"a\nb", "tab\there", "del\x7f", strings.Repeat("x", 201)} {
		err := ValidSourceName(name)
		if !errors.Is(err, ErrBadOption) || !strings.Contains(err.Error(), "a source name is 1 to 200 bytes") {
			t.Errorf("ValidSourceName(%q) = %v", name, err)
		}
	}
	for _, name := range []string{"www", "latest-2", "x@GMT-", "été", strings.Repeat("x", 200), "a b", "..."} {
		if err := ValidSourceName(name); err != nil {
			t.Errorf("ValidSourceName(%q) = %v", name, err)
		}
	}
}

// A backup of a tree holding the store it writes to leaves the store out
// (it would grow with every backup) and logs it, as an exclusion, not as a
// warning: a nightly backup of / with the home under /var/lib ended
// "with warnings" (exit 3) every night.
func TestBackupSkipsOwnStore(t *testing.T) {
	ts := newTestStore(t)
	parent := filepath.Dir(ts.st.Dir())
	if err := os.WriteFile(filepath.Join(parent, "data.txt"), []byte("d"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logged []string
	p, err := ts.backup(BackupOptions{Path: parent, Source: "s", Log: func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }})
	if err != nil || len(p.Errors) != 0 {
		t.Fatalf("err %v, warnings %+v: want neither", err, p.Errors)
	}
	if n := len(logged); n != 1 || !strings.Contains(logged[0], "the store this backup writes to") || !strings.Contains(logged[0], ts.st.Dir()) {
		t.Errorf("logged %q, want one line naming the store", logged)
	}
	if got := ts.pointPaths(p); !reflect.DeepEqual(got, []string{"data.txt"}) {
		t.Errorf("point holds %q", got)
	}
}

// A backup whose path is the store itself, a folder in it, or a symlink
// to one is refused, naming both: before, only a store met inside the tree
// was left out, and a backup of the store stored the store again on every
// run, growing it each time. Nothing is written.
func TestBackupOfOwnStoreRefused(t *testing.T) {
	ts := newTestStore(t)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(ts.st.Dir(), link); err != nil {
		t.Fatal(err)
	}
	packs := func() (n int) {
		if err := ts.st.ListPacks(func(chunkstore.ID, int64) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := packs()
	for _, path := range []string{ts.st.Dir(), filepath.Join(ts.st.Dir(), "packs"), filepath.Join(link, "index")} {
		p, err := ts.backup(BackupOptions{Path: path, Source: "s"})
		if p != nil || err == nil || !strings.Contains(err.Error(), "is the store this backup writes to") || !strings.Contains(err.Error(), ts.st.Dir()) {
			t.Errorf("backup of %s: %v, want a refusal naming the store", path, err)
		}
	}
	if after := packs(); after != before {
		t.Errorf("the refused backups wrote %d packs", after-before)
	}
}

// An exclude pattern spelled as the file system path of something in the
// backed-up directory matches nothing (patterns are matched from that
// directory): the backup says so and how to write it.
func TestExcludeAbsolutePathWarned(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "cache"), 0o755)
	os.WriteFile(filepath.Join(src, "cache", "x"), []byte("x"), 0o644)
	var logged []string
	p, err := ts.backup(BackupOptions{Path: src, Exclude: Exclude{Patterns: []string{filepath.Join(src, "cache"), "*.tmp"}},
		Log: func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }})
	if err != nil {
		t.Fatal(err)
	}
	if root, err := ts.r.LoadTree(p.Tree); err != nil || root.Find("cache") == nil {
		t.Fatalf("the pattern was expected to match nothing: %v", err)
	}
	n := 0
	for _, l := range logged {
		if strings.Contains(l, "exclude pattern") {
			n++
			if !strings.Contains(l, `write "/cache"`) {
				t.Errorf("warning does not say how to write it: %s", l)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d warnings about the pattern, want 1: %q", n, logged)
	}
}
