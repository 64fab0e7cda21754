package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// forget -q prints nothing; --json still prints the point, and without
// -q the sentence is there.
func TestQuietForget(t *testing.T) {
	_, src, run := cliHome(t)
	run("-q", "init")
	for range 3 {
		run("-q", "backup", "--source", "s", src)
	}
	if out := run("-q", "forget", "latest"); out != "" {
		t.Errorf("-q forget printed %q", out)
	}
	var f forgetJSON
	if out := run("-q", "forget", "--json", "latest"); json.Unmarshal([]byte(out), &f) != nil || f.ID == "" {
		t.Errorf("-q forget --json printed %q", out)
	}
	if out := run("forget", "latest"); !strings.HasPrefix(out, "forgot point ") {
		t.Errorf("forget without -q printed %q", out)
	}
}

// forget takes several points: all are looked up first, so one that
// names no point removes none; the others go in one call, a point named
// twice once, each printed (a JSON line each with --json); the names are
// those a mount showed before the first removal.
func TestForgetSeveral(t *testing.T) {
	home, src, _ := cliHome(t)
	dir := filepath.Dir(home)
	run := func(args ...string) (string, error) {
		t.Helper()
		return runRecall(t, append([]string{"--home", home}, args...)...)
	}
	if _, err := run("-q", "init"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a", "a", "a", "b"} {
		if _, err := run("-q", "backup", "--source", s, src); err != nil {
			t.Fatal(err)
		}
	}
	ids := func() map[string]string { // id -> source
		t.Helper()
		out, err := run("points", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var pts []struct{ ID, Source string }
		if err := json.Unmarshal([]byte(out), &pts); err != nil {
			t.Fatalf("points --json: %v: %q", err, out)
		}
		m := map[string]string{}
		for _, p := range pts {
			m[p.ID] = p.Source
		}
		return m
	}
	all := ids()
	var a, b []string
	for id, s := range all {
		if s == "a" {
			a = append(a, id)
		} else {
			b = append(b, id)
		}
	}
	if len(a) != 3 || len(b) != 1 {
		t.Fatalf("points: %v", all)
	}
	// An empty POINT names none (every id has the empty prefix: a
	// script's unset $ID forgot a point).
	for _, args := range [][]string{{"forget", ""}, {"forget", "--source", "b", ""}, {"restore", "", "--target", filepath.Join(dir, "r")}} {
		if out, err := run(args...); err == nil || len(ids()) != 4 {
			t.Fatalf("recall %q: %v, %q; %d points left", args, err, out, len(ids()))
		}
	}
	out, err := run("forget", a[0], "0000000000")
	if err == nil || !strings.Contains(out+err.Error(), "no point was forgotten") || len(ids()) != 4 {
		t.Fatalf("forget with an unknown point: %v, %q; %d points left", err, out, len(ids()))
	}
	out, err = run("forget", "--json", a[0], a[1][:12], a[0], b[0])
	if err != nil {
		t.Fatalf("forget three points: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("forget --json of three points printed %q", out)
	}
	for _, l := range lines {
		var f forgetJSON
		if err := json.Unmarshal([]byte(l), &f); err != nil || f.ID == "" || !strings.HasPrefix(f.Name, "@GMT-") {
			t.Errorf("line %q: %+v, %v", l, f, err)
		}
	}
	left := ids()
	if len(left) != 1 || left[a[2]] != "a" {
		t.Errorf("after forgetting three: %v, want %s alone", left, a[2])
	}
}
