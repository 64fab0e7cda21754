package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/recall-backup/recall/engine"
)

// groupHome is a home with a store and an existing group "web" of a
// fresh member, and a runner that returns the output and error.
func groupHome(t *testing.T) (dir string, run func(args ...string) (string, error)) {
	t.Helper()
	dir = t.TempDir()
	t.Setenv("RECALL_CONFIG", filepath.Join(dir, "none.toml"))
	t.Setenv("RECALL_SOCKET", filepath.Join(dir, "none.sock"))
	home := filepath.Join(dir, "home")
	run = func(args ...string) (string, error) {
		t.Helper()
		return runRecall(t, append([]string{"--home", home, "-q"}, args...)...)
	}
	for _, d := range []string{"web", "other"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := run("init"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("group", "create", "web", "--member", filepath.Join(dir, "web")); err != nil {
		t.Fatal(err)
	}
	return dir, run
}

// An empty value of a policy flag whose empty value means nothing is
// refused, naming the flag and the form it takes, exit 2; one whose empty
// value means none or the store's is taken. (Fix: --at "" silently was
// the default 20:00.)
func TestGroupEmptyFlags(t *testing.T) {
	dir, run := groupHome(t)
	other := filepath.Join(dir, "other")
	for _, tc := range []struct{ flag, value, want string }{
		{"at", "", "--at TIMES: recovery point TIMES, HH:MM"},
		{"at", " , ", "--at TIMES"},
		{"days", "", "--days DAYS"},
		{"retention", "", "--retention SPAN"},
		{"sync", " ", "--sync SPAN"},
		{"sync-window", "", "--sync-window SPAN"},
		{"script-timeout", "", "--script-timeout SPAN"},
		{"end-user-recovery", "", "--end-user-recovery on|off"},
		{"check", "", "--check WHEN"},
		{"check-read-share", "", "--check-read-share PERCENT"},
	} {
		for _, cmd := range [][]string{{"group", "create", "new", "--member", other}, {"group", "edit", "web"}} {
			line := strings.Join(cmd[:2], " ") + " --" + tc.flag + "=" + tc.value
			_, err := run(append(cmd, "--"+tc.flag+"="+tc.value)...)
			if exitCode(err) != exitUsage || !strings.Contains(err.Error(), `invalid value "`+tc.value+`" for --`+tc.flag) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v (exit %d), want exit 2 naming the flag and %q", line, err, exitCode(err), tc.want)
			}
		}
	}
	if out, err := run("group", "show", "web"); err != nil || strings.Contains(out, "policy version 2") {
		t.Errorf("group show web after the refusals: %v\n%s", err, out)
	}
	// Empty meaning none, always or the store's.
	for _, flag := range []string{"limit", "limit-window", "exclude-larger-than", "compression", "pre-script", "post-script", "tape-retention"} {
		if _, err := run("group", "edit", "web", "--"+flag+"="); err != nil {
			t.Errorf("group edit --%s '': %v, want it taken", flag, err)
		}
	}
}

// writeGroups writes a groups file and returns its path.
func writeGroups(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "groups.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// apply refuses a key given empty that a flag could not be, and a day
// list naming days and daily, naming the group, the key and its line,
// exit 2; group create and edit refuse --days so too. (Fix: both were
// taken, as the default and as daily.)
func TestApplyRefusesEmptyAndContradictions(t *testing.T) {
	dir, run := groupHome(t)
	web := filepath.Join(dir, "web")
	for _, tc := range []struct{ body, want string }{
		{"at = []\n", "line 4: group web: empty at: it takes TIMES"},
		{"retention = \"\"\n", "line 4: group web: empty retention: it takes SPAN"},
		{"days = [\"mon\", \"daily\"]\n", `line 4: group web: days "mon,daily" names days and daily`},
		{"days = [\"DAILY\", \"sun\"]\n", `line 4: group web: days "DAILY,sun"`},
	} {
		file := writeGroups(t, dir, "[[group]]\nname = \"web\"\nmembers = [\""+web+"\"]\n"+tc.body)
		_, err := run("apply", "-f", file, "--dry-run")
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("apply %q: %v (exit %d), want exit 2 and %q", tc.body, err, exitCode(err), tc.want)
		}
	}
	for _, cmd := range [][]string{{"group", "create", "new", "--member", filepath.Join(dir, "other")}, {"group", "edit", "web"}} {
		_, err := run(append(cmd, "--days", "mon,daily")...)
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), `--days "mon,daily" names days and daily`) {
			t.Errorf("%s --days mon,daily: %v (exit %d), want exit 2", strings.Join(cmd[:2], " "), err, exitCode(err))
		}
	}
}

// What the README shows as a groups file applies as it is, with no
// warning: the checks refuse nothing it documents.
func TestApplyREADMEGroups(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```toml\n(# groups.toml\n.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("no groups.toml example in the README")
	}
	dir, run := groupHome(t)
	if _, err := run("group", "delete", "web"); err != nil {
		t.Fatal(err)
	}
	file := writeGroups(t, dir, string(m[1]))
	decl, _, warns, err := readGroupsFile(file)
	// Its members are a web server's and a database's paths, which this
	// machine need not have: that warning is about the machine.
	warns = slices.DeleteFunc(warns, func(w string) bool { return strings.Contains(w, "does not exist (yet)") })
	if err != nil || len(decl) != 2 || len(warns) != 0 {
		t.Fatalf("README's groups file: %d groups, warnings %q, %v", len(decl), warns, err)
	}
	if _, err := run("apply", "-f", file, "--dry-run"); err != nil {
		t.Errorf("apply of the README's groups file: %v", err)
	}
}

// The odd policies are warned of, by the schedule and retention the
// engine keeps: a recovery point or a sync pruned by the time the next is
// made. Policies that keep each point until the next get no warning.
func TestPolicyOddities(t *testing.T) {
	for _, tc := range []struct {
		p    engine.Policy
		want []string // flag: part of the message
	}{
		{engine.Policy{}, nil},
		{engine.Policy{Retention: "14d", Sync: "15m", At: []string{"09:00", "21:00"}, Days: []string{"mon", "tue", "wed", "thu", "fri"}}, nil},
		{engine.Policy{Retention: "1d", Days: []string{"mon", "tue", "wed", "thu", "fri"}},
			[]string{"retention: retention 1d and sync window 48h keep a recovery point less long than the 3d from fri 20:00 to the next one", "a retention of 3d"}},
		{engine.Policy{Retention: "2d", Days: []string{"mon"}, KeepDaily: 7}, nil}, // keep-daily keeps it
		{engine.Policy{Retention: "2d", Days: []string{"mon"}, SyncWindow: "7d"}, nil},
		{engine.Policy{Retention: "2d", Sync: engine.SyncBeforePoint, At: []string{"09:00", "18:00"}, Days: []string{"mon"}},
			[]string{"retention: ", "the 6d15h from mon 18:00", "a retention of 7d"}},
		{engine.Policy{Sync: "24h", SyncWindow: "1h"},
			[]string{"sync-window: sync window 1h is shorter than the 20h from the sync at mon 00:00 to the next point"}},
		{engine.Policy{Sync: "24h", At: []string{"00:30"}, SyncWindow: "1h"}, nil}, // the 23h30m gap starts at a recovery point
		{engine.Policy{Sync: "2h", SyncWindow: "2h"}, nil},
	} {
		var got []string
		for _, o := range policyOddities(tc.p) {
			got = append(got, o.flag+": "+o.msg)
		}
		text := strings.Join(got, "\n")
		if (len(tc.want) == 0) != (len(got) == 0) {
			t.Errorf("%+v: warnings %q, want %q", tc.p, got, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(text, w) {
				t.Errorf("%+v: warnings %q, want %q in them", tc.p, got, w)
			}
		}
	}
}

// A groups file names its members by absolute paths: a relative one would
// be taken from the directory apply runs in, so the same file applied
// from cron and from a shell would declare two groups. A member that does
// not exist is applied, with a warning, as group create does.
func TestApplyRelativeMember(t *testing.T) {
	dir, run := groupHome(t)
	file := writeGroups(t, dir, "[[group]]\nname = \"rel\"\nmembers = [\"web\"]\n")
	if _, err := run("apply", "-f", file, "--dry-run"); exitCode(err) != exitUsage || !strings.Contains(err.Error(), `line 3: group rel: member "web" is a relative path`) {
		t.Errorf("apply of a relative member: %v (exit %d), want exit 2 naming it and its line", err, exitCode(err))
	}
	file = writeGroups(t, dir, "[[group]]\nname = \"abs\"\nmembers = [\""+filepath.Join(dir, "not-yet")+"\"]\n")
	if _, err := run("apply", "-f", file); err != nil {
		t.Errorf("apply of a member that does not exist yet: %v, want it applied", err)
	}
}

// A group declared twice in a groups file is refused naming both lines.
func TestApplyGroupTwice(t *testing.T) {
	dir, run := groupHome(t)
	file := writeGroups(t, dir, "[[group]]\nname = \"a\"\nmembers = [\""+filepath.Join(dir, "x")+"\"]\n\n[[group]]\nname = \"a\"\nmembers = [\""+filepath.Join(dir, "y")+"\"]\n")
	if _, err := run("apply", "-f", file, "--dry-run"); exitCode(err) != exitUsage || !strings.Contains(err.Error(), "line 6: group a is declared twice (first on line 2)") {
		t.Errorf("apply of a group declared twice: %v (exit %d), want exit 2 naming both lines", err, exitCode(err))
	}
}

// A group name the catalog refuses is refused naming its line, as every
// other refusal of a groups file is (it gave no line).
func TestApplyBadGroupNameLine(t *testing.T) {
	dir, run := groupHome(t)
	file := writeGroups(t, dir, "[[group]]\nname = \"ok\"\nmembers = [\""+filepath.Join(dir, "x")+"\"]\n\n[[group]]\nname = \"-bad\"\nmembers = [\""+filepath.Join(dir, "y")+"\"]\n")
	if _, err := run("apply", "-f", file, "--dry-run"); exitCode(err) != exitUsage || !strings.Contains(err.Error(), "line 6: ") || !strings.Contains(err.Error(), `"-bad"`) {
		t.Errorf("apply of a bad group name: %v (exit %d), want exit 2 naming line 6", err, exitCode(err))
	}
}

// A list flag given once as "" empties the group's list: 'group edit'
// could not clear --exclude, --exclude-if-present or --exclude-file (each
// "" was refused), only applying a file without the key could. A "" beside
// other values is still a slip.
func TestGroupEditClearsLists(t *testing.T) {
	dir, run := groupHome(t)
	ex := filepath.Join(dir, "ex.txt")
	if err := os.WriteFile(ex, []byte("*.tmp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run("group", "edit", "web", "--exclude", "*.tmp", "--exclude-if-present", ".nobackup", "--exclude-file", ex); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"exclude", "exclude-if-present", "exclude-file"} {
		if _, err := run("group", "edit", "web", "--"+flag, ""); err != nil {
			t.Errorf("group edit --%s '': %v, want the list emptied", flag, err)
		}
	}
	out, err := run("group", "show", "web")
	if err != nil || !strings.Contains(out, "web") || strings.Contains(out, "*.tmp") || strings.Contains(out, ".nobackup") || strings.Contains(out, ex) {
		t.Errorf("group show after the lists were emptied: %v\n%s", err, out)
	}
	if _, err := run("group", "edit", "web", "--exclude-file", "", "--exclude-file", ex); exitCode(err) != exitUsage {
		t.Errorf("--exclude-file '' beside a file: %v (exit %d), want exit 2", err, exitCode(err))
	}
}

// tape pool list --json gives the append window in effect, as the table
// does: a pool made with the default had no append_window at all.
func TestTapePoolListJSONWindow(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("RECALL_CONFIG", filepath.Join(dir, "none.toml"))
	home := filepath.Join(dir, "home")
	run := func(args ...string) string {
		t.Helper()
		out, err := runRecall(t, append([]string{"--home", home, "-q"}, args...)...)
		if err != nil {
			t.Fatalf("recall %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	run("tape", "library", "add", "L", "--emulated", filepath.Join(dir, "lib"), "--slots", "1")
	run("tape", "pool", "create", "p", "--retention", "1y")
	var ps []struct {
		Name         string `json:"name"`
		AppendWindow string `json:"append_window"`
	}
	if err := json.Unmarshal([]byte(run("tape", "pool", "list", "--json")), &ps); err != nil || len(ps) != 1 || ps[0].AppendWindow != engine.DefaultAppendWindow {
		t.Errorf("pools %+v, %v: want p with append_window %s", ps, err, engine.DefaultAppendWindow)
	}
}

// The groups kept as the README advises, 'recall group list --json' (or
// 'group show NAME --json'), apply back: into a new home (a lost catalog)
// they make the same groups, and again they change nothing. It was a TOML
// error, exit 2.
func TestApplyGroupListJSON(t *testing.T) {
	dir, run := groupHome(t)
	if _, err := run("group", "edit", "web", "--keep-daily", "7", "--exclude", "*.tmp", "--sync", "2h"); err != nil {
		t.Fatal(err)
	}
	list, err := run("group", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	show, err := run("group", "show", "web", "--json")
	if err != nil {
		t.Fatal(err)
	}
	home2 := filepath.Join(dir, "home2")
	run2 := func(args ...string) (string, error) {
		return runRecall(t, append([]string{"--home", home2}, args...)...)
	}
	if _, err := run2("init", "-q"); err != nil {
		t.Fatal(err)
	}
	for i, text := range []string{list, show} {
		f := filepath.Join(dir, fmt.Sprintf("groups%d.json", i))
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := run2("apply", "-f", f)
		if err != nil {
			t.Fatalf("apply -f %s: %v", f, err)
		}
		if want := []string{"1 group(s) changed", "0 group(s) changed"}[i]; !strings.Contains(out, want) {
			t.Errorf("apply -f %s: %q, want %q", f, out, want)
		}
	}
	// As TOML, JSON refuses keys it does not know (a misspelt one was
	// dropped, its value left at the default), and what follows the array.
	for _, bad := range []string{
		`[{"name":"a","members":["/tmp"],"polcy":{"retention":"1d"}}]`,
		`[{"name":"a","members":["/tmp"],"policy":{"retentoin":"1d"}}]`,
		`[{"name":"a","members":["/tmp"]}] []`,
	} {
		f := filepath.Join(dir, "bad.json")
		os.WriteFile(f, []byte(bad), 0o644)
		if _, err := run2("apply", "-f", f, "--dry-run"); exitCode(err) != exitUsage || strings.Contains(err.Error(), "line ") {
			t.Errorf("apply -f of %s: %v (exit %d); want exit 2, naming no line of the TOML it stands for", bad, err, exitCode(err))
		}
	}
	bom := filepath.Join(dir, "bom.json")
	os.WriteFile(bom, []byte("\xef\xbb\xbf"+show), 0o644)
	if _, err := run2("apply", "-f", bom, "--dry-run"); err != nil {
		t.Errorf("apply -f of JSON after a byte-order mark: %v", err)
	}
	got, err := run2("group", "show", "web", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var a, b struct {
		Members []string       `json:"members"`
		Policy  map[string]any `json:"policy"`
	}
	json.Unmarshal([]byte(show), &a)
	json.Unmarshal([]byte(got), &b)
	if !reflect.DeepEqual(a, b) || b.Policy["keep_daily"] != float64(7) {
		t.Errorf("applied from JSON: %+v, want %+v", b, a)
	}
}

// A span given again in other words ("1440m" for "24h") changes nothing:
// the group keeps its spelling and its policy version (each version is a
// policy change the history and alerts speak of).
func TestGroupEditSameSpanOtherWords(t *testing.T) {
	_, run := groupHome(t)
	show := func() (sync string, version int) {
		out, err := run("group", "show", "web", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var g struct {
			Policy struct {
				Sync string `json:"sync"`
			} `json:"policy"`
			Version int `json:"policy_version"`
		}
		if err := json.Unmarshal([]byte(out), &g); err != nil {
			t.Fatal(err)
		}
		return g.Policy.Sync, g.Version
	}
	if _, err := run("group", "edit", "web", "--sync", "24h"); err != nil {
		t.Fatal(err)
	}
	_, v := show()
	if _, err := run("group", "edit", "web", "--sync", "1440m"); err != nil {
		t.Fatal(err)
	}
	if sync, v2 := show(); sync != "24h" || v2 != v {
		t.Errorf("edit --sync 1440m over 24h: sync %q, version %d (was %d); want 24h, unchanged", sync, v2, v)
	}
	if _, err := run("group", "edit", "web", "--sync", "12h"); err != nil {
		t.Fatal(err)
	}
	if sync, v3 := show(); sync != "12h" || v3 != v+1 {
		t.Errorf("edit --sync 12h: sync %q, version %d; want 12h, %d", sync, v3, v+1)
	}
}
