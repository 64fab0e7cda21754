// Command importcheck fails when a package of the module imports against
// the dependency direction written in rules.go (cmd -> engine -> chunkstore
// -> chunkstore/backend; fs reads through engine; nothing imports cmd;
// chunkstore knows nothing of FUSE or tape). make lint runs it from the
// module's root:
//
//	go run ./internal/importcheck [packages]
//
// It prints each forbidden import as "pkg imports forbidden: why" and exits
// 1. The imports are those `go list` reports for the build's GOOS and tags,
// of the code and of its tests. It runs before go vet, so an import that
// also makes a cycle is reported as against the direction rather than only
// as a cycle.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
)

func main() {
	goCmd := flag.String("go", "go", "the go command")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: importcheck [-go cmd] [packages (default ./...)]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	patterns := flag.Args()
	if len(patterns) == 0 {
		patterns = []string{"./..."}
	}
	mod, pkgs, err := list(*goCmd, patterns)
	if err != nil {
		fmt.Fprintf(os.Stderr, "importcheck: %v\n", err)
		os.Exit(2)
	}
	if err := checkRules(mod, pkgs, rules); err != nil {
		fmt.Fprintf(os.Stderr, "importcheck: %v\nfix internal/importcheck/rules.go\n", err)
		os.Exit(2)
	}
	vs := check(mod, pkgs, rules)
	for _, v := range vs {
		fmt.Println(v.format(mod))
	}
	if len(vs) > 0 {
		n := fmt.Sprintf("%d imports go", len(vs))
		if len(vs) == 1 {
			n = "1 import goes"
		}
		fmt.Fprintf(os.Stderr, "importcheck: %s against the dependency direction: move the code to the layer it belongs to (the layers and rules: internal/importcheck/rules.go)\n", n)
		os.Exit(1)
	}
}

// list runs go list over patterns and returns the module path and its
// packages. Packages go list reports errors for are kept with the imports
// it could read: a cycle or a missing import is go vet's to report, and
// the imports around it are still checked.
func list(goCmd string, patterns []string) (string, []pkg, error) {
	args := append([]string{"list", "-e", "-json=ImportPath,Module,Imports,TestImports,XTestImports"}, patterns...)
	cmd := exec.Command(goCmd, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", nil, fmt.Errorf("%s list %v: %v\n%s", goCmd, patterns, err, stderr.Bytes())
	}
	var mod string
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath                         string
			Module                             *struct{ Path string }
			Imports, TestImports, XTestImports []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", nil, fmt.Errorf("read %s list output: %v", goCmd, err)
		}
		if p.Module == nil {
			return "", nil, fmt.Errorf("%s is in no module: run importcheck in the module's tree", p.ImportPath)
		}
		if mod == "" {
			mod = p.Module.Path
		} else if p.Module.Path != mod {
			return "", nil, fmt.Errorf("%s is in module %s, not %s: check one module at a time", p.ImportPath, p.Module.Path, mod)
		}
		pkgs = append(pkgs, pkg{
			path:        p.ImportPath,
			imports:     p.Imports,
			testImports: append(p.TestImports, p.XTestImports...),
		})
	}
	if len(pkgs) == 0 {
		return "", nil, fmt.Errorf("%s list %v: no packages", goCmd, patterns)
	}
	return mod, pkgs, nil
}
