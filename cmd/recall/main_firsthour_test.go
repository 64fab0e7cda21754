package main

import (
	"strings"
	"testing"
)

// Fix: did-you-mean for unknown commands and flags guesses only a near
// miss, and never between two equally near names.
func TestNearestFirsthour(t *testing.T) {
	for _, c := range []struct {
		s     string
		names []string
		want  string
	}{
		{"restor", []string{"restore", "repair", "points"}, "restore"},
		{"pointz", []string{"restore", "points"}, "points"},
		{"exclud", []string{"exclude", "exclude-file"}, "exclude"},
		{"ls", []string{"list", "gc"}, ""},           // two edits away from a two-letter name is anything
		{"gx", []string{"gc", "gt"}, ""},             // a tie
		{"frobnicate", []string{"forget", "gc"}, ""}, // near nothing
		{"RESTORE", []string{"restore"}, "restore"},
		{"snyc", []string{"sync", "at"}, "sync"}, // two letters swapped: one edit
		{"retenton", []string{"retention"}, "retention"},
		{"mnout", []string{"mount", "umount"}, "mount"},
	} {
		if got := nearest(c.s, c.names); got != c.want {
			t.Errorf("nearest(%q, %q) = %q, want %q", c.s, c.names, got, c.want)
		}
	}
	// A near miss of another tool's command gets that command's hint.
	if got := commandHint("chek", "recall", nil, true); !strings.Contains(got, "recall verify") {
		t.Errorf("hint for chek: %q, want the one for check", got)
	}
}

// Fix: every form of Go's flag errors is rewritten with the flag as it
// is typed and the value it needs (a bad boolean here).
func TestFlagErrorFormsFirsthour(t *testing.T) {
	app := newApp()
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--s3-path-style=maybe", "status"}, []string{`invalid value "maybe" for --s3-path-style`, "true or false"}},
		{[]string{"--connections", "many", "status"}, []string{"--connections", "whole number"}},
		{[]string{"--store"}, []string{"--store needs a value (--store LOC)"}},
	} {
		err := app.Run(append([]string{"recall", "--home", t.TempDir()}, c.args...))
		if exitCode(err) != exitUsage {
			t.Errorf("recall %s: %v (exit %d), want a usage error", strings.Join(c.args, " "), err, exitCode(err))
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("recall %s: %q, want %q in it", strings.Join(c.args, " "), err, w)
			}
		}
	}
}
