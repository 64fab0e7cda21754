package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/engine"
)

// An invalid policy is refused with exit code 2, naming the flag and the
// allowed values, and nothing is stored.
func TestGroupInvalidPolicy(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	for _, c := range []struct {
		args    []string
		allowed string
	}{
		{[]string{"--retention", "11y"}, "1d to 10y"},
		{[]string{"--sync", "5m"}, "15m to 24h (like 15m, 1h, 2h30m) or before-point"},
		{[]string{"--at", "25:00"}, "HH:MM"},
		{[]string{"--days", "someday"}, "mon, tue, wed, thu, fri, sat, sun"},
		{[]string{"--end-user-recovery", "maybe"}, "on or off"},
		{[]string{"--compression", "lz4"}, "zstd, s2 or off"},
		{[]string{"--check", "hourly"}, "off, daily, weekly or on-failure"},
		{[]string{"--check-read-share", "0%"}, "from 1% to 100%"},
		{[]string{"--limit", "5Mb/s"}, "bits per second like 400Mbit/s"},
		{[]string{"--limit", "5MiB/s", "--limit-window", "someday,08:00-18:00"}, "like mon-fri,08:00-18:00"},
		{[]string{"--tape-retention", "6mo", "--tape-frequency", "yearly"}, "daily, weekly, bi-weekly, monthly"},
		{[]string{"--tape-frequency", "daily", "--tape-retention", "30d"}, "1w to 4w, 1mo to 11mo, or 1y to 99y"},
	} {
		r := e.run(append([]string{"group", "create", "g", "--member", t.TempDir()}, c.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.args[len(c.args)-2]) || !strings.Contains(r.stderr, c.allowed) {
			t.Errorf("%v: exit %d, stderr %q; want 2 naming %q", c.args, r.code, r.stderr, c.allowed)
		}
	}
	var gs []any
	must(t, json.Unmarshal([]byte(e.ok("group", "list", "--json")), &gs))
	if len(gs) != 0 {
		t.Errorf("refused groups stored: %v", gs)
	}
	// A source in a second group is refused naming the first.
	dir := t.TempDir()
	e.ok("group", "create", "first", "--member", dir)
	r := e.run("group", "create", "second", "--member", dir)
	if r.code == 0 || !strings.Contains(r.stderr, `group "first"`) {
		t.Errorf("second group of one source: exit %d, %s", r.code, r.stderr)
	}
}

// jobsOf lists the catalog's jobs.
func jobsOf(t *testing.T, e *env) []jobJSON {
	var jobs []jobJSON
	must(t, json.Unmarshal([]byte(e.ok("jobs", "--json", "--last", "0")), &jobs))
	return jobs
}

type jobJSON struct {
	Kind    string `json:"kind"`
	Group   string `json:"group"`
	Path    string `json:"path"`
	Status  string `json:"status"`
	Error   string `json:"error"`
	Point   string `json:"point"`
	Scripts []struct {
		Phase    string `json:"phase"`
		Output   string `json:"output"`
		TimedOut bool   `json:"timed_out"`
		ExitCode int    `json:"exit_code"`
	} `json:"scripts"`
}

// A member that is gone fails its own job, naming it; the other member is
// backed up; the command exits non-zero.
func TestGroupGoneMember(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	good := t.TempDir()
	mustWrite(t, filepath.Join(good, "f"), randBytes(1, 10_000), 0o644)
	gone := filepath.Join(t.TempDir(), "gone")
	must(t, os.Mkdir(gone, 0o755))
	e.ok("group", "create", "g", "--member", gone, "--member", good)
	must(t, os.Remove(gone))
	r := e.run("backup", "--group", "g")
	if r.code != 1 || !strings.Contains(r.stderr, gone) {
		t.Errorf("exit %d, stderr %s", r.code, r.stderr)
	}
	jobs := jobsOf(t, e)
	byPath := map[string]jobJSON{}
	for _, j := range jobs {
		byPath[j.Path] = j
	}
	if j := byPath[gone]; j.Status != "failed" || !strings.Contains(j.Error, gone) || j.Group != "g" {
		t.Errorf("gone member's job %+v", j)
	}
	if j := byPath[good]; j.Status != "ok" || j.Point == "" {
		t.Errorf("good member's job %+v", j)
	}
}

// A pre-script that hangs is killed at the script timeout; the job fails
// with the script's output in its record, and no point is made.
func TestGroupHangingPreScript(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "f"), []byte("x"), 0o644)
	e.ok("group", "create", "g", "--member", dir, "--pre-script", "echo dumping; sleep 600", "--script-timeout", "2s")
	start := time.Now()
	r := e.run("backup", "--group", "g")
	took := time.Since(start)
	if r.code == 0 || !strings.Contains(r.stderr, "script timeout of 2s") {
		t.Errorf("exit %d, stderr %s", r.code, r.stderr)
	}
	if took > time.Minute {
		t.Errorf("took %s: the script was not killed at its timeout", took)
	}
	jobs := jobsOf(t, e)
	j := jobs[len(jobs)-1]
	if j.Status != "failed" || j.Point != "" || len(j.Scripts) != 1 || !j.Scripts[0].TimedOut || j.Scripts[0].Output != "dumping\n" {
		t.Errorf("job %+v", j)
	}
	if out := e.ok("points", "--json"); strings.Contains(out, `"id"`) {
		t.Errorf("a point was made: %s", out)
	}
}

type pruneLine struct {
	ID      string `json:"id"`
	Source  string `json:"source"`
	Why     string `json:"why"`
	Keep    bool   `json:"keep"`
	Rule    string `json:"rule"`
	Removed bool   `json:"removed"`
}

// prune --dry-run --as-of T lists what the policy would forget at a time
// to come; a real prune as of that time is refused (it would forget
// points the policy keeps today: all of them seconds old here) and
// forgets nothing. That a dry run decides exactly what the real run
// removes is TestPruneDryRunIsReal in ./engine, on a moved clock.
func TestPruneAheadOnlyDry(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	dir := t.TempDir()
	other := t.TempDir()
	mustWrite(t, filepath.Join(other, "o"), []byte("not in a group"), 0o644)
	e.ok("backup", other)
	e.ok("group", "create", "g", "--member", dir, "--retention", "2d", "--sync-window", "1h")
	for i := 0; i < 4; i++ {
		mustWrite(t, filepath.Join(dir, "f"), randBytes(int64(i), 5_000), 0o644)
		e.ok("backup", "--group", "g")
	}
	asOf := time.Now().Add(72 * time.Hour).UTC().Format(time.RFC3339)
	var dry []pruneLine
	must(t, json.Unmarshal([]byte(e.ok("prune", "--dry-run", "--as-of", asOf, "--json")), &dry))
	drop := 0
	for _, d := range dry {
		if !d.Keep {
			drop++
		}
		if d.Removed {
			t.Errorf("dry run removed %s", d.ID)
		}
	}
	if len(dry) != 4 || drop != 3 {
		t.Fatalf("dry run lists %d points, %d dropped; want the group's 4, 3 dropped: %+v", len(dry), drop, dry)
	}
	// A point a bare-metal recovery share serves is held: the dry run
	// keeps it by rule recovery-share, naming the share.
	var held pruneLine
	for _, d := range dry {
		if !d.Keep {
			held = d
			break
		}
	}
	conf := filepath.Join(t.TempDir(), "smb.conf")
	mustWrite(t, conf, []byte("[global]\n"), 0o644)
	if _, err := engine.InstallSambaShare(conf, engine.SambaShare{Name: "srv-old", Source: held.Source, Kind: engine.ShareKindRecovery,
		Params: []engine.SambaParam{{Key: "path", Value: "/srv/recall/" + held.Source + "/" + held.ID}, {Key: "read only", Value: "yes"}}}); err != nil {
		t.Fatal(err)
	}
	var withShare []pruneLine
	must(t, json.Unmarshal([]byte(e.ok("prune", "--dry-run", "--as-of", asOf, "--json", "--smb-conf", conf)), &withShare))
	for _, d := range withShare {
		if d.ID == held.ID && (!d.Keep || d.Rule != "recovery-share" || !strings.Contains(d.Why, "[srv-old]")) {
			t.Errorf("the point the recovery share serves: %+v", d)
		}
	}
	r := e.run("prune", "--as-of", asOf)
	if r.code != 2 || !strings.Contains(r.stderr, "--dry-run") || !strings.Contains(r.stderr, "keeps today") {
		t.Errorf("prune as of 72 h ahead: exit %d\n%s", r.code, r.stderr)
	}
	var pts []struct{ ID string }
	must(t, json.Unmarshal([]byte(e.ok("points", "--json")), &pts))
	if len(pts) != 5 {
		t.Errorf("%d points left after the refused prune, want all 5", len(pts))
	}
}

// apply creates what the file declares, prints the diff, and a second
// apply changes nothing.
func TestApplyGroupsFile(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	f := filepath.Join(t.TempDir(), "groups.toml")
	mustWrite(t, f, []byte(`
[[group]]
name = "web"
members = ["/srv/www"]
retention = "14d"
sync = "15m"
at = ["09:00", "12:00", "15:00", "18:00", "21:00"]
tape_retention = "7y"
tape_frequency = "monthly"
`), 0o644)
	out := e.ok("apply", "-f", f, "--dry-run")
	if !strings.Contains(out, "+ create group web") || !strings.Contains(out, `retention: "14d"`) {
		t.Errorf("dry run: %s", out)
	}
	e.ok("apply", "-f", f)
	out = e.ok("apply", "-f", f)
	if !strings.Contains(out, "= unchanged group web") || !strings.Contains(out, "0 group(s) changed") {
		t.Errorf("second apply: %s", out)
	}
	var g struct {
		PolicyVersion int `json:"policy_version"`
		Policy        struct {
			TapeFrequency string `json:"tape_frequency"`
		} `json:"policy"`
	}
	must(t, json.Unmarshal([]byte(e.ok("group", "show", "web", "--json")), &g))
	if g.PolicyVersion != 1 || g.Policy.TapeFrequency != "monthly" {
		t.Errorf("group %+v", g)
	}
	mustWrite(t, f, []byte("[[group]]\nname = \"web\"\nretention = \"14d\"\nretension = \"1d\"\n"), 0o644)
	if r := e.run("apply", "-f", f); r.code != 2 || !strings.Contains(r.stderr, "retension") {
		t.Errorf("unknown key: exit %d, %s", r.code, r.stderr)
	}
	// A value the policy refuses is named by its key in the file, not by
	// the flag of the same meaning.
	mustWrite(t, f, []byte("[[group]]\nname = \"web\"\nretention = \"14d\"\nkeep_daily = -3\n"), 0o644)
	if r := e.run("apply", "-f", f); r.code != 2 || !strings.Contains(r.stderr, `keep_daily "-3"`) || strings.Contains(r.stderr, "--keep-daily") || !strings.Contains(r.stderr, f) {
		t.Errorf("bad value: exit %d, %s", r.code, r.stderr)
	}
	var st struct {
		Sources []struct {
			Group  string `json:"group"`
			Source string `json:"source"`
		} `json:"sources"`
		Free int64 `json:"free_bytes"`
	}
	must(t, json.Unmarshal([]byte(e.ok("status", "--json")), &st))
	if len(st.Sources) != 1 || st.Sources[0].Group != "web" || st.Sources[0].Source != "srv-www" || st.Free <= 0 {
		t.Errorf("status %+v", st)
	}
}

// A group's tape goal longer than its pool keeps sets is refused when the
// group is created, edited or applied: the pool's retention decides when
// a set's cartridges are reused, so the goal's copies would expire years
// early without a word.
func TestGroupTapeGoalLongerThanPool(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	dir := t.TempDir()
	e.ok("tape", "library", "add", "lab", "--emulated", filepath.Join(t.TempDir(), "lib"), "--slots", "2", "--capacity", "64MiB")
	e.ok("tape", "pool", "create", "vault", "--retention", "1y")
	if r := e.run("group", "create", "g", "--member", dir, "--tape-retention", "7y", "--tape-frequency", "monthly", "--tape-pool", "vault"); r.code != 2 || !strings.Contains(r.stderr, "tape pool vault keeps its sets 1y") {
		t.Errorf("create with a 7y goal on a 1y pool: exit %d\n%s", r.code, r.stderr)
	}
	e.ok("group", "create", "g", "--member", dir, "--tape-retention", "1y", "--tape-frequency", "monthly", "--tape-pool", "vault")
	if r := e.run("group", "edit", "g", "--tape-retention", "5y"); r.code != 2 || !strings.Contains(r.stderr, "recall tape pool set vault --retention 5y") {
		t.Errorf("edit to a 5y goal: exit %d\n%s", r.code, r.stderr)
	}
	f := filepath.Join(t.TempDir(), "groups.toml")
	mustWrite(t, f, []byte("[[group]]\nname = \"g\"\nmembers = [\""+dir+"\"]\ntape_retention = \"3y\"\ntape_frequency = \"monthly\"\ntape_pool = \"vault\"\n"), 0o644)
	if r := e.run("apply", "-f", f); r.code != 2 || !strings.Contains(r.stderr, "tape goal of 3y") {
		t.Errorf("apply of a 3y goal: exit %d\n%s", r.code, r.stderr)
	}
}
