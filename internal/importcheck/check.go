package main

import (
	"fmt"
	"slices"
	"strings"
)

// A rule forbids the packages matching from to import what matches deny,
// unless it also matches except. Patterns are described above the table.
type rule struct {
	from         string
	deny, except []string
	why          string
	// codeOnly leaves the package's tests free of the rule.
	codeOnly bool
}

// pkg is one package of the module with its direct imports. testImports
// are those of its test files, in-package and external (_test) together.
type pkg struct {
	path                 string
	imports, testImports []string
}

// violation is one import against a rule.
type violation struct {
	pkg, imp string
	test     bool // only the package's tests import it
	why      string
}

// format names ours relative to the module, as the rules do.
func (v violation) format(mod string) string {
	from := rel(mod, v.pkg)
	if v.test {
		from += " (tests)"
	}
	return fmt.Sprintf("%s imports %s: %s", from, rel(mod, v.imp), v.why)
}

func rel(mod, path string) string {
	if path == mod {
		return "."
	}
	if r, ok := strings.CutPrefix(path, mod+"/"); ok {
		return r
	}
	return path
}

// external reports whether a pattern is a full import path: its first
// element has a dot, as every module path outside the standard library's
// does, and none of ours at the top of the module.
func external(pattern string) bool {
	first, _, _ := strings.Cut(pattern, "/")
	return strings.Contains(first, ".")
}

// match reports whether the import path matches pattern in module mod.
func match(mod, pattern, path string) bool {
	if pattern == "..." {
		return path == mod || strings.HasPrefix(path, mod+"/")
	}
	if !external(pattern) {
		pattern = mod + "/" + pattern
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

func matchAny(mod string, patterns []string, path string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return match(mod, p, path) })
}

// check returns every import of pkgs that a rule forbids, each once (under
// the first rule that forbids it), sorted by package and import.
func check(mod string, pkgs []pkg, rules []rule) []violation {
	var out []violation
	for _, p := range pkgs {
		seen := map[string]bool{}
		visit := func(imp string, test bool) {
			// A package's own subtree is its business.
			if seen[imp] || imp == p.path || strings.HasPrefix(imp, p.path+"/") {
				return
			}
			for _, r := range rules {
				if (test && r.codeOnly) || !match(mod, r.from, p.path) ||
					!matchAny(mod, r.deny, imp) || matchAny(mod, r.except, imp) {
					continue
				}
				seen[imp] = true
				out = append(out, violation{pkg: p.path, imp: imp, test: test, why: r.why})
				return
			}
		}
		for _, imp := range p.imports {
			visit(imp, false)
		}
		// After the code's: an import of both is reported once, as code's.
		for _, imp := range p.testImports {
			visit(imp, true)
		}
	}
	slices.SortFunc(out, func(a, b violation) int {
		if c := strings.Compare(a.pkg, b.pkg); c != 0 {
			return c
		}
		return strings.Compare(a.imp, b.imp)
	})
	return out
}

// checkRules finds the mistakes in a rule table that would make it check
// nothing without saying so: a malformed pattern, or one of ours whose top
// directory no package of the module has (a typo; a new package below an
// existing directory, like chunkstore/backend, is fine before it exists).
func checkRules(mod string, pkgs []pkg, rules []rule) error {
	tops := map[string]bool{}
	for _, p := range pkgs {
		if r, ok := strings.CutPrefix(p.path, mod+"/"); ok {
			top, _, _ := strings.Cut(r, "/")
			tops[top] = true
		}
	}
	var errs []string
	for i, r := range rules {
		if r.why == "" {
			errs = append(errs, fmt.Sprintf("rule %d (from %s) does not say why", i, r.from))
		}
		if len(r.deny) == 0 {
			errs = append(errs, fmt.Sprintf("rule %d (from %s) denies nothing", i, r.from))
		}
		for _, pat := range append(append([]string{r.from}, r.deny...), r.except...) {
			if pat == "..." {
				continue
			}
			trimmed := strings.TrimSuffix(pat, "/...")
			if trimmed == "" || strings.HasPrefix(trimmed, "/") || strings.HasSuffix(trimmed, "/") ||
				strings.Contains(trimmed, "...") || strings.Contains(trimmed, "//") ||
				strings.HasPrefix(trimmed, ".") {
				errs = append(errs, fmt.Sprintf("rule %d: malformed pattern %q", i, pat))
				continue
			}
			if top, _, _ := strings.Cut(trimmed, "/"); !external(pat) && !tops[top] {
				errs = append(errs, fmt.Sprintf("rule %d: pattern %q names %s, which holds no package of %s: a typo?", i, pat, top, mod))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("the rule table is wrong:\n\t%s", strings.Join(errs, "\n\t"))
	}
	return nil
}
