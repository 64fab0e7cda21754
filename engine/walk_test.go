package engine

import (
	"context"
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
)

// saveTrees writes trees bottom-up in one session: each directory node's
// Subtree names the tree of that name in dirs ("" is the root); names
// missing from dirs give a subtree id that is not stored. It returns the
// root's id.
func saveTrees(t *testing.T, ts *testStore, dirs map[string][]*Node) chunkstore.ID {
	t.Helper()
	s := openSession(t, ts.st, SessionOptions{Purpose: "test"})
	defer s.Close()
	var save func(rel string) chunkstore.ID
	save = func(rel string) chunkstore.ID {
		var nodes []*Node
		for _, n := range dirs[rel] {
			c := *n
			if c.Type == TypeDir {
				sub := strings.TrimPrefix(rel+"/"+c.Name, "/")
				if _, ok := dirs[sub]; ok {
					c.Subtree = save(sub)
				} else {
					c.Subtree = ts.st.Hash([]byte("not stored: " + sub))
				}
			}
			nodes = append(nodes, &c)
		}
		blob := EncodeTree(&Tree{Nodes: nodes})
		id := ts.st.Hash(blob)
		if _, err := s.SaveBlob(chunkstore.TreeBlob, id, blob); err != nil {
			t.Fatal(err)
		}
		return id
	}
	root := save("")
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestWalk(t *testing.T) {
	ts := newTestStore(t)
	dir := func(name string) *Node { return &Node{Name: name, Type: TypeDir, Mode: 0o755} }
	file := func(name string) *Node { return &Node{Name: name, Type: TypeFile, Mode: 0o644} }
	root := saveTrees(t, ts, map[string][]*Node{
		"":     {dir("a"), file("b"), dir("gone"), dir("skip")},
		"a":    {file(".."), dir("c"), file("x")},
		"a/c":  {file("y")},
		"skip": {file("never")},
	})
	for _, tc := range []struct {
		name string
		fn   func(rel string, n *Node, err error) error
		want []string
		err  error
	}{
		{name: "all", want: []string{"a", "a/c", "a/c/y", "a/x", "b", "gone", "gone: error", "skip", "skip/never"}},
		{name: "skip dir", fn: func(rel string, n *Node, err error) error {
			if rel == "skip" || rel == "a/c" {
				return fs.SkipDir
			}
			return nil
		}, want: []string{"a", "a/c", "a/x", "b", "gone", "gone: error", "skip"}},
		{name: "stop", fn: func(rel string, n *Node, err error) error {
			if err != nil {
				return err
			}
			return nil
		}, want: []string{"a", "a/c", "a/c/y", "a/x", "b", "gone", "gone: error"}, err: chunkstore.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := ts.r.Walk(context.Background(), root, func(rel string, n *Node, err error) error {
				if err != nil {
					got = append(got, rel+": error")
				} else {
					got = append(got, rel)
				}
				if tc.fn != nil {
					return tc.fn(rel, n, err)
				}
				return nil
			})
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("visited %q, want %q", got, tc.want)
			}
			if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
				t.Errorf("error %v, want %v", err, tc.err)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ts.r.Walk(ctx, root, func(string, *Node, error) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled walk: %v", err)
	}
	var got error
	ts.r.Walk(context.Background(), ts.st.Hash([]byte("no such tree")), func(rel string, n *Node, err error) error {
		if rel != "" || n != nil {
			t.Errorf("root: called with %q %v", rel, n)
		}
		got = err
		return nil
	})
	if !errors.Is(got, chunkstore.ErrNotFound) {
		t.Errorf("missing root: %v", got)
	}
}
