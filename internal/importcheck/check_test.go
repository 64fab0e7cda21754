package main

import (
	"slices"
	"strings"
	"testing"
)

const mod = "example.com/recall"

const fuseFS = "github.com/hanwen/go-fuse/v2/fs"

// g builds a fake package: "path" imports the rest; "path tests" marks
// the imports after it as its tests'. Paths without a dot are ours.
func g(path string, imps ...string) pkg {
	p := pkg{path: abs(path)}
	test := false
	for _, i := range imps {
		if i == "tests" {
			test = true
			continue
		}
		if test {
			p.testImports = append(p.testImports, abs(i))
		} else {
			p.imports = append(p.imports, abs(i))
		}
	}
	return p
}

func abs(p string) string {
	if external(p) || isStd(p) {
		return p
	}
	return mod + "/" + p
}

// isStd: the few standard packages the fake graphs use.
func isStd(p string) bool { return p == "os" || p == "testing" || p == "fmt" }

// today is the module's graph as it is, which must pass.
var today = []pkg{
	g("cmd/recall", "engine", "fs", "chunkstore", "os", "github.com/urfave/cli/v2", "tests", "testing"),
	g("fs", "engine", "chunkstore", "internal/mountinfo", fuseFS, "tests", "chunkstore", "testing", "internal/testskip"),
	g("engine", "chunkstore", "internal/mountinfo", "go.etcd.io/bbolt", "tests", "internal/golden", "internal/fuzzcheck"),
	g("chunkstore", "github.com/klauspost/compress/zstd", "os", "tests", "internal/golden", "internal/fuzzcheck"),
	g("internal/golden", "os", "testing"),
	g("internal/importcheck", "os", "tests", "testing"),
	g("integration", "tests", "engine", "chunkstore", "internal/testskip", fuseFS),
	g("tapefs"),
	g("bench/gen", "os"),
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkgs []pkg
		want []string // "pkg -> imp", "pkg (tests) -> imp"
	}{
		{"the module today", today, nil},
		{"the backends to come, used downward", []pkg{
			g("chunkstore", "chunkstore/backend", "tests", "chunkstore/backend/fault", "chunkstore/backend/local"),
			g("chunkstore/backend", "os"),
			g("chunkstore/backend/local", "chunkstore/backend", "internal/mountinfo", "tests", "chunkstore/backend/backendtest"),
			g("chunkstore/backend/backendtest", "chunkstore/backend", "testing"),
			g("chunkstore/backend/fault", "chunkstore/backend"),
			g("engine", "chunkstore", "chunkstore/backend/local"),
			g("cmd/recall", "engine", "chunkstore/backend/local"),
			g("fs", "engine", "chunkstore", "tests", "chunkstore/backend/local"),
			g("tapefs", "chunkstore/backend"),
		}, nil},
		{"engine imports fs", []pkg{g("engine", "chunkstore", "fs")}, []string{"engine -> fs"}},
		{"below engine and fs, too", []pkg{g("engine/restore", "fs/tree")}, []string{"engine/restore -> fs/tree"}},
		{"nothing imports cmd", []pkg{
			g("fs", "cmd/recall"),
			g("engine", "tests", "cmd/recall/flags"),
			g("integration", "tests", "cmd/recall"),
			g("cmd/other", "cmd/recall/flags"),
		}, []string{
			"cmd/other -> cmd/recall/flags",
			"engine (tests) -> cmd/recall/flags",
			"fs -> cmd/recall",
			"integration (tests) -> cmd/recall",
		}},
		{"a command's own subpackages", []pkg{g("cmd/recall", "cmd/recall/flags")}, nil},
		{"chunkstore is below engine", []pkg{
			g("chunkstore", "engine"),
			g("chunkstore/backend/local", "fs"),
			g("chunkstore/index", "tests", "engine"),
		}, []string{
			"chunkstore -> engine",
			"chunkstore/backend/local -> fs",
			"chunkstore/index (tests) -> engine",
		}},
		{"chunkstore knows nothing of FUSE or tape", []pkg{
			g("chunkstore", fuseFS),
			g("chunkstore/backend/tape", "tapefs/drive"),
			g("chunkstore/backend/local", "tests", "github.com/hanwen/go-fuse/v2/fuse"),
			g("chunkstore/x", "github.com/hanwen/go-fuse-lookalike"),
		}, []string{
			"chunkstore -> " + fuseFS,
			"chunkstore/backend/local (tests) -> github.com/hanwen/go-fuse/v2/fuse",
			"chunkstore/backend/tape -> tapefs/drive",
		}},
		{"a backend is below the store", []pkg{
			g("chunkstore/backend/local", "chunkstore"),
			g("chunkstore/backend/s3", "chunkstore/index"),
			g("chunkstore/backend", "tests", "chunkstore"),
		}, []string{
			"chunkstore/backend (tests) -> chunkstore",
			"chunkstore/backend/local -> chunkstore",
			"chunkstore/backend/s3 -> chunkstore/index",
		}},
		{"fs never opens storage, its tests may", []pkg{
			g("fs", "chunkstore/backend/local", "tests", "chunkstore/backend/fault"),
			g("fs/fuse", "chunkstore/backend"),
		}, []string{"fs -> chunkstore/backend/local", "fs/fuse -> chunkstore/backend"}},
		{"internal imports only internal", []pkg{
			g("internal/golden", "chunkstore"),
			g("internal/a", "internal/b", "os"),
			g("internal/b", "tests", "engine"),
			g("internal/c", "tapefs"),
		}, []string{
			"internal/b (tests) -> engine",
			"internal/c -> tapefs",
			"internal/golden -> chunkstore",
		}},
		{"engine/wsb reads with the standard library only, its tests generate", []pkg{
			g("engine/wsb", "os", "chunkstore", "internal/wsbgen", "github.com/x/y", "golang.org/x/text", "tests", "internal/wsbgen"),
			g("engine", "engine/wsb"),
		}, []string{"engine/wsb -> chunkstore", "engine/wsb -> internal/wsbgen", "engine/wsb -> github.com/x/y"}},
		{"an import of code and tests counts once, as code's", []pkg{
			g("engine", "fs", "tests", "fs"),
		}, []string{"engine -> fs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkRules(mod, append(tc.pkgs, today...), rules); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range check(mod, tc.pkgs, rules) {
				if v.why == "" {
					t.Errorf("%+v does not say why", v)
				}
				s := rel(mod, v.pkg)
				if v.test {
					s += " (tests)"
				}
				got = append(got, s+" -> "+rel(mod, v.imp))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("violations\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(tc.want, "\n\t"))
			}
		})
	}
}

func TestViolationFormat(t *testing.T) {
	vs := check(mod, []pkg{g("engine", "fs"), g("chunkstore", "tests", fuseFS)}, rules)
	var got []string
	for _, v := range vs {
		got = append(got, v.format(mod))
	}
	want := []string{
		"chunkstore (tests) imports " + fuseFS + ": " + rules[3].why,
		"engine imports fs: " + rules[1].why,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"...", mod, true},
		{"...", mod + "/engine/x", true},
		{"...", "example.com/recallx/engine", false},
		{"...", "os", false},
		{"engine", mod + "/engine", true},
		{"engine", mod + "/engine/x", false},
		{"engine/...", mod + "/engine", true},
		{"engine/...", mod + "/engine/x/y", true},
		{"engine/...", mod + "/enginex", false},
		{"chunkstore/backend/...", mod + "/chunkstore", false},
		{"chunkstore/backend/...", mod + "/chunkstore/backend/local", true},
		{"github.com/hanwen/go-fuse/...", "github.com/hanwen/go-fuse/v2/fs", true},
		{"github.com/hanwen/go-fuse/...", "github.com/hanwen/go-fuse-x", false},
		{"github.com/hanwen/go-fuse/...", mod + "/github.com/hanwen/go-fuse", false},
	} {
		if got := match(mod, tc.pattern, tc.path); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}

// A typo in the table would make a rule check nothing; checkRules says so.
func TestCheckRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    rule
		want string // in the error; "" for none
	}{
		{"fine", rule{from: "chunkstore/backend/...", deny: []string{"engine"}, why: "w"}, ""},
		{"typo in from", rule{from: "chunkstor/...", deny: []string{"engine"}, why: "w"}, `"chunkstor/..." names chunkstor`},
		{"typo in deny", rule{from: "fs", deny: []string{"engin"}, why: "w"}, `"engin" names engin`},
		{"typo in except", rule{from: "fs", deny: []string{"..."}, except: []string{"interna/..."}, why: "w"}, "interna"},
		{"leading slash", rule{from: "/fs", deny: []string{"engine"}, why: "w"}, "malformed"},
		{"relative", rule{from: "./fs", deny: []string{"engine"}, why: "w"}, "malformed"},
		{"dots inside", rule{from: "fs/.../x", deny: []string{"engine"}, why: "w"}, "malformed"},
		{"no why", rule{from: "fs", deny: []string{"engine"}}, "why"},
		{"no deny", rule{from: "fs", why: "w"}, "denies nothing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkRules(mod, today, []rule{tc.r})
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if err := checkRules(mod, today, rules); err != nil {
		t.Fatalf("the real table: %v", err)
	}
}
