package engine

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// The readers of the store (the recovery tree in fs; restore and verify
// here, and their read planning) get a Reader and nothing else: they
// never name what writes. The Reader's own method set keeps them from
// writing through it (TestReaderCannotWrite); this keeps them from
// reaching around it.
func TestReadersNameNoWriter(t *testing.T) {
	writers := map[string]map[string]bool{
		"chunkstore": {"Store": true, "Lock": true, "Writer": true, "Open": true, "Init": true},
		"engine":     {"Store": true, "Session": true, "SessionOptions": true, "Open": true, "NewStore": true, "Backup": true, "RunJob": true},
	}
	// Inside engine the same names stand unqualified.
	local := map[string]bool{"Session": true, "SessionOptions": true, "NewStore": true}

	var files []string
	for _, pat := range []string{"restore.go", "verify.go", "plan*.go", "../fs/*.go"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			if !strings.HasSuffix(f, "_test.go") {
				files = append(files, f)
			}
		}
	}
	if len(files) < 3 {
		t.Fatalf("found only %v", files)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		inEngine := f.Name.Name == "engine"
		// Field names and keys are not references to these types.
		notRef := map[*ast.Ident]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				notRef[n.Sel] = true
				if x, ok := n.X.(*ast.Ident); ok && writers[x.Name][n.Sel.Name] {
					t.Errorf("%s: names %s.%s", fset.Position(n.Pos()), x.Name, n.Sel.Name)
				}
			case *ast.KeyValueExpr:
				if k, ok := n.Key.(*ast.Ident); ok {
					notRef[k] = true
				}
			case *ast.Field:
				for _, id := range n.Names {
					notRef[id] = true
				}
			case *ast.Ident:
				if inEngine && local[n.Name] && !notRef[n] {
					t.Errorf("%s: names %s", fset.Position(n.Pos()), n.Name)
				}
			}
			return true
		})
	}
}
