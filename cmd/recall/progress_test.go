package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/recall-backup/recall/engine"
)

func TestProgressFigures(t *testing.T) {
	for _, tc := range []struct {
		name     string
		s        engine.Status
		fraction float64
		eta      time.Duration // after 10 s; -1: none
		plain    string
	}{
		{"nothing yet", engine.Status{}, 0, -1, "0.0%, 0 B of at least 0 B, 0 of at least 0 files"},
		{"scan running", engine.Status{BytesDone: 1 << 20, BytesTotal: 4 << 20, FilesDone: 1, FilesTotal: 7}, 0.25, -1,
			"25.0%, 1.0 MiB of at least 4.0 MiB, 1 of at least 7 files"},
		{"totals final", engine.Status{BytesDone: 1 << 20, BytesTotal: 4 << 20, FilesTotal: 2, TotalsFinal: true, Current: []string{"/a/b"}}, 0.25, 30 * time.Second,
			"25.0%, 1.0 MiB of 4.0 MiB, 0 of 2 files"},
		{"files only", engine.Status{FilesDone: 3, FilesTotal: 4, TotalsFinal: true, Errors: 2}, 0.75, 10 * time.Second / 3,
			"75.0%, 0 B of 0 B, 3 of 4 files"},
		{"file grew past the total", engine.Status{BytesDone: 5, BytesTotal: 4, TotalsFinal: true}, 1, 0, "100.0%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if f := fraction(tc.s); f != tc.fraction {
				t.Errorf("fraction %v, want %v", f, tc.fraction)
			}
			eta, ok := remaining(tc.s, 10*time.Second)
			if want := tc.eta >= 0; ok != want || ok && (eta-tc.eta).Abs() > time.Millisecond {
				t.Errorf("remaining %v (%v), want %v", eta, ok, tc.eta)
			}
			r := &reporter{cmd: "backup", start: time.Now().Add(-10 * time.Second)}
			line := r.plain(tc.s)
			if !strings.Contains(line, tc.plain) {
				t.Errorf("plain line %q lacks %q", line, tc.plain)
			}
			if len(tc.s.Current) > 0 && !strings.HasSuffix(line, "; "+tc.s.Current[0]) {
				t.Errorf("plain line %q does not end with the current path", line)
			}
			if tc.s.Errors > 0 && !strings.Contains(line, ", 2 errors") {
				t.Errorf("plain line %q does not count errors", line)
			}
			st := r.status(tc.s)
			if st.SecondsRemaining != nil != ok || st.CurrentFiles == nil || st.PercentDone != round3(tc.fraction) {
				t.Errorf("status %+v: want seconds_remaining only with an estimate, current_files never null", st)
			}
		})
	}
}

// TestSummaryLine: the summary carries message_type and every field of
// the value, whatever its shape.
func TestSummaryLine(t *testing.T) {
	var out bytes.Buffer
	r := &reporter{out: &out}
	r.Summary(struct {
		A int    `json:"a"`
		B string `json:"b"`
	}{1, "x"})
	r.Summary(struct{}{})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{`{"message_type":"summary","a":1,"b":"x"}`, `{"message_type":"summary"}`}
	for i, l := range lines {
		if i >= len(want) || l != want[i] || !json.Valid([]byte(l)) {
			t.Errorf("summary lines %q, want %q", lines, want)
			break
		}
	}
}

// A message naming a file stays one line, whatever the name holds.
func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"plain/name":                       "plain/name",
		"a\nrecall: completed, 0 warnings": `a\x0arecall: completed, 0 warnings`,
		"esc\x1b[2J\x1b[31mred":            `esc\x1b[2J\x1b[31mred`,
		"caf\u00e9 and tabs\there":         `caf` + "\u00e9" + ` and tabs\x09here`,
		"del\x7f and c1 \u0085":            `del\x7f and c1 \x85`,
		`four characters \x09`:             `four characters \\x09`,
		`back\slash`:                       `back\\slash`,
		"not utf-8 \xff\tand a tab":        "not utf-8 \xff\\x09and a tab",
		// A name quoted with %q is escaped once, by the quoting.
		`source "q\"": not found`:     `source "q\"": not found`,
		`group "a\\b" and a\b`:        `group "a\\b" and a\\b`,
		"quoted \"a\tb\" holds a tab": `quoted "a\x09b" holds a tab`,
	} {
		if got := oneLine(in); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// -v names two files apart when one holds a tab and the other the four
// characters \x09. (Fix: the backslash was not escaped, and both printed
// as a\x09b.)
func TestVerboseNamesEscapeBackslash(t *testing.T) {
	var out bytes.Buffer
	r := &reporter{out: &out, action: "restored"}
	r.item("a\tb")
	r.item(`a\x09b`)
	r.saved(`c\x0ad`, "new")
	want := "restored a\\x09b\nrestored a\\\\x09b\nnew      c\\\\x0ad\n"
	if out.String() != want {
		t.Errorf("-v printed %q, want %q", out.String(), want)
	}
}

// verify --read-data counts packs, and its progress says so. (Fix: "9 of
// 30 files" for packs.)
func TestProgressVerifyCountsPacks(t *testing.T) {
	r := &reporter{cmd: "verify", start: time.Now()}
	if line := r.plain(engine.Status{FilesDone: 9, FilesTotal: 30, TotalsFinal: true}); !strings.Contains(line, "9 of 30 packs") {
		t.Errorf("verify's plain line %q, want packs counted", line)
	}
}

func TestErrorLines(t *testing.T) {
	joined := fmt.Errorf("group g: %w", errors.Join(errors.New("a: \x1b[31mred"), errors.New("b: gone\\")))
	want := "group g: a: \\x1b[31mred\n  b: gone\\\\"
	if got := errorLines(joined); got != want {
		t.Errorf("errorLines = %q, want %q", got, want)
	}
}

// The bar's path is escaped as every message naming a file is: a name can
// hold a terminal's escape sequences (one here retitles the window and
// clears the screen), which must reach the terminal as text. Cut to fit,
// it is cut between characters.
func TestBarDescEscapes(t *testing.T) {
	s := engine.Status{FilesDone: 1, FilesTotal: 2, TotalsFinal: true,
		Current: []string{"/src/evil\x1b]0;PWNED\x07\x1b[2Jname"}}
	got := barDesc(s, "files", 200, "")
	if strings.ContainsAny(got, "\x1b\x07") || !strings.Contains(got, `/src/evil\x1b]0;PWNED\x07\x1b[2Jname`) {
		t.Fatalf("bar text %q: want the name's control characters escaped", got)
	}
	s.Current = []string{"/src/" + strings.Repeat("é", 40)}
	for w := 80; w < 130; w++ {
		got := barDesc(s, "files", w, "1m2s")
		if !utf8.ValidString(got) || len(got) > w-barFixed+4 {
			t.Fatalf("width %d: bar text %q (%d bytes): want whole characters within the room", w, got, len(got))
		}
	}
}

// TestRemainingWaitsForWork: no time left is guessed from a hundredth of
// the work or less in the first seconds: verify's first pack done may be a
// small tree pack, and a second's verify was said to have three hours
// left.
func TestRemainingWaitsForWork(t *testing.T) {
	tiny := engine.Status{BytesDone: 1 << 10, BytesTotal: 100 << 20, TotalsFinal: true}
	if d, ok := remaining(tiny, time.Second); ok {
		t.Errorf("1 KiB of 100 MiB after 1 s: %v left, want none said", d)
	}
	if _, ok := remaining(tiny, 6*time.Second); !ok {
		t.Errorf("1 KiB of 100 MiB after 6 s: none said, want an estimate")
	}
	half := engine.Status{BytesDone: 50 << 20, BytesTotal: 100 << 20, TotalsFinal: true}
	if d, ok := remaining(half, time.Second); !ok || d != time.Second {
		t.Errorf("half after 1 s: %v, %v; want 1s", d, ok)
	}
}
