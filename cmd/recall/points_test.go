package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
)

// The table prints what a manifest holds with control characters
// escaped. Before, a point whose source held a newline and a terminal
// escape ("evil\n\x1b[31m...") printed a forged second row and sent the
// escape to the terminal, and a tab in its path shifted the columns.
// --json prints the strings as they are, escaped by JSON.
func TestPointsTableEscapesManifestStrings(t *testing.T) {
	home, src, run := cliHome(t)
	run("-q", "init")
	run("-q", "backup", "--source", "plain", src)

	// A crafted manifest, written as the engine writes any.
	st, err := engine.Open(engine.StoreDir(home), chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pts, err := st.Reader().Points()
	if err != nil || len(pts) != 1 {
		t.Fatalf("points: %v, %v", pts, err)
	}
	evil := *pts[0]
	evil.Source = "evil\nff00ff00ff00  forged\x1b[31m"
	evil.Path = "/a\tb"
	evil.Kind = "tree\r"
	evil.Time = evil.Time.Add(time.Minute)
	s, err := st.Session(context.Background(), engine.SessionOptions{Purpose: "test", LockOptions: engine.LockOptions{Wait: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CommitPoint(&evil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	st.Close()

	out := run("points")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and two rows, got %d lines:\n%s", len(lines), out)
	}
	for _, r := range out {
		if r < 0x20 && r != '\n' || r == 0x7f {
			t.Fatalf("table holds control character %#x:\n%q", r, out)
		}
	}
	for _, want := range []string{`"evil\nff00ff00ff00  forged\x1b[31m"`, `"/a\tb"`, `"tree\r"`} {
		if !strings.Contains(lines[2], want) {
			t.Errorf("row of the crafted point lacks %s: %q", want, lines[2])
		}
	}
	if f := strings.Fields(lines[1]); len(f) < 2 || f[1] != "plain" || strings.Contains(lines[1], `"`) {
		t.Errorf("plain names are printed as they are: %q", lines[1])
	}

	var got []pointJSON
	if err := json.Unmarshal([]byte(run("points", "--json")), &got); err != nil || len(got) != 2 {
		t.Fatalf("points --json: %v, %v", got, err)
	}
	if got[1].Source != evil.Source || got[1].Path != evil.Path {
		t.Errorf("--json gave %q %q, want the manifest's strings", got[1].Source, got[1].Path)
	}
}

func TestCell(t *testing.T) {
	for in, want := range map[string]string{
		"plain":         "plain",
		"with space":    "with space",
		"Grüße/日本":      "Grüße/日本",
		"":              `""`,
		`"quoted"`:      `"\"quoted\""`,
		"tab\there":     `"tab\there"`,
		"esc\x1b[0m":    `"esc\x1b[0m"`,
		"bad\xffutf8":   `"bad\xffutf8"`,
		"rtl\u202ename": `"rtl\u202ename"`,
		"c1\u009bx":     `"c1\u009bx"`,
	} {
		if got := cell(in); got != want {
			t.Errorf("cell(%q) = %s, want %s", in, got, want)
		}
	}
}
