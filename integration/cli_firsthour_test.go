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

// Fix: -q made prune, apply, group create/edit/delete, repair and key
// passwd print nothing but errors; cron mails whatever they print.
// What --json asks for is still printed.
func TestQuietFirsthour(t *testing.T) {
	e := newEnv(t)
	e.vars = []string{"RECALL_PASSWORD=old passphrase"}
	e.ok("init", "--encrypt")
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644))
	groups := filepath.Join(t.TempDir(), "groups.toml")
	must(t, os.WriteFile(groups, []byte("[[group]]\nname = \"g2\"\nmembers = [\""+src+"2\"]\n"), 0o644))
	newPw := filepath.Join(t.TempDir(), "pw")
	must(t, os.WriteFile(newPw, []byte("new passphrase\n"), 0o600))
	for _, args := range [][]string{
		{"group", "create", "g", "--member", src},
		{"group", "edit", "g", "--retention", "30d"},
		{"backup", "--group", "g"},
		{"prune"},
		{"prune", "--dry-run"},
		{"apply", "-f", groups},
		{"apply", "-f", groups, "--dry-run"},
		{"group", "delete", "g2"},
		{"repair", "index"},
		{"key", "passwd", "--new-password-file", newPw},
	} {
		if out := e.ok(append([]string{"-q"}, args...)...); out != "" {
			t.Errorf("recall -q %s printed %q", strings.Join(args, " "), out)
		}
		if args[0] == "key" {
			e.vars = []string{"RECALL_PASSWORD=new passphrase"}
		}
	}
	if out := e.ok("-q", "prune", "--json"); !strings.HasPrefix(out, "[") {
		t.Errorf("recall -q prune --json printed %q, want its JSON array", out)
	}
}

// Fix: prune --group with a group that does not exist is refused before
// anything runs: no summary that reads as success (nor [] with --json),
// and no prune job recorded.
func TestPruneUnknownGroupFirsthour(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	e.ok("group", "create", "g", "--member", t.TempDir())
	for _, args := range [][]string{{"prune", "--group", "nope"}, {"prune", "--group", "nope", "--json"}, {"prune", "--group", "nope", "--dry-run"}} {
		r := e.run(args...)
		if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, `group "nope": no such protection group`) {
			t.Errorf("recall %s: exit %d, stdout %q, stderr %q; want exit 1, nothing on stdout, the unknown group named", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	if out := e.ok("jobs", "--json", "--last", "0"); strings.Contains(out, `"prune"`) {
		t.Errorf("a refused prune was recorded as a job: %s", out)
	}
}

// Fix: a missing required flag is one line on stderr naming the flag and
// the command's help, exit 2, and nothing on stdout (urfave/cli printed
// the whole command help there, --json or not).
func TestMissingRequiredFlagFirsthour(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	for _, c := range []struct {
		args      []string
		flag, cmd string
	}{
		{[]string{"restore", "--json"}, "--target", "restore"},
		{[]string{"restore", "latest", "--json"}, "--target", "restore"},
		{[]string{"copy", "--from", "a", "--json"}, "--to", "copy"},
		{[]string{"apply", "--json"}, "--file", "apply"},
		{[]string{"tape", "write", "--json"}, "--pool", "tape write"},
		{[]string{"share", "samba"}, "--source", "share samba"},
	} {
		r := e.run(c.args...)
		help := "'recall " + c.cmd + " --help'"
		if r.code != 2 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 ||
			!strings.Contains(r.stderr, c.flag) || !strings.Contains(r.stderr, help) {
			t.Errorf("recall %s: exit %d\nstdout: %q\nstderr: %q\nwant exit 2, nothing on stdout, one line naming %s and %s",
				strings.Join(c.args, " "), r.code, r.stdout, r.stderr, c.flag, help)
		}
	}
}

// Fix: an unknown command says what was probably meant: a near miss of a
// name, or what recall calls a restic or borg command.
func TestUnknownCommandHintFirsthour(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"restor"}, "'recall restore'"},
		{[]string{"pointz"}, "'recall points'"},
		{[]string{"group", "ls"}, "'recall group list'"},
		{[]string{"group", "crate"}, "'recall group create'"},
		{[]string{"snapshots"}, "'recall points'"},
		{[]string{"check"}, "'recall verify"},
		{[]string{"stats"}, "'recall status'"},
		{[]string{"ls"}, "'recall mount"},
		{[]string{"find"}, "'recall mount"},
		{[]string{"unlock"}, "freed when the process holding it ends"},
		{[]string{"--version"}, "'recall version'"},
	} {
		r := e.run(c.args...)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, c.want) {
			t.Errorf("recall %s: exit %d, stdout %q, stderr %q; want exit 2 and %s", strings.Join(c.args, " "), r.code, r.stdout, r.stderr, c.want)
		}
	}
	// A name near nothing gets no guess.
	if r := e.run("frobnicate"); r.code != 2 || strings.Contains(r.stderr, "did you mean") {
		t.Errorf("recall frobnicate: exit %d, stderr %q", r.code, r.stderr)
	}
}

// Fix: apply of a groups file names both groups of the file that hold
// one member (not "remove it there first" from a group that does not
// exist yet) with exit 2, and says the line of an unknown key, with the
// key it is probably a misspelling of, and of a bad value.
func TestApplyFileErrorsFirsthour(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	m := t.TempDir()
	dir := t.TempDir()
	apply := func(text string) result {
		f := filepath.Join(dir, "groups.toml")
		must(t, os.WriteFile(f, []byte(text), 0o644))
		return e.run("apply", "-f", f)
	}
	r := apply("[[group]]\nname = \"a1\"\nmembers = [\"" + m + "\"]\n\n[[group]]\nname = \"a2\"\nmembers = [\"" + m + "\"]\n")
	if r.code != 2 || !strings.Contains(r.stderr, "group a1 (line 3)") || !strings.Contains(r.stderr, "group a2 (line 7)") ||
		strings.Contains(r.stderr, "remove it there first") {
		t.Errorf("a member in two groups of the file: exit %d, stderr %q", r.code, r.stderr)
	}
	r = apply("[[group]]\nname = \"a1\"\nmembers = [\"" + m + "\"]\nretension = \"14d\"\n")
	if r.code != 2 || !strings.Contains(r.stderr, "line 4 (group a1): unknown key retension (did you mean retention?)") {
		t.Errorf("a misspelt key: exit %d, stderr %q", r.code, r.stderr)
	}
	r = apply("[[group]]\nname = \"a1\"\nmembers = [\"" + m + "\"]\n\n[[group]]\nname = \"a2\"\nretention = \"5x\"\n")
	if r.code != 2 || !strings.Contains(r.stderr, "line 7: group a2:") || !strings.Contains(r.stderr, `retention "5x"`) {
		t.Errorf("a bad value: exit %d, stderr %q", r.code, r.stderr)
	}
	if out := e.ok("group", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("a refused groups file made groups: %s", out)
	}
}

// Fix: a bad backup --limit names the flag's value and the form it
// takes; it says nothing of a policy (a one-off backup has none) and
// leaks no strconv error.
func TestLimitMessageFirsthour(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := t.TempDir()
	for _, v := range []string{"-5MiB/s", "5x", "abcMiB/s"} {
		r := e.run("backup", "--limit", v, src)
		if r.code != 2 || !strings.Contains(r.stderr, `--limit "`+v+`"`) || !strings.Contains(r.stderr, "50MiB/s") ||
			strings.Contains(r.stderr, "invalid policy") || strings.Contains(r.stderr, "strconv") {
			t.Errorf("backup --limit %s: exit %d, stderr %q", v, r.code, r.stderr)
		}
	}
}

// Fix: a flag that does not parse is spelt as it is typed (--name, not
// -name), a bad duration says the form, and an unknown flag its near miss.
func TestFlagErrorsFirsthour(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := t.TempDir()
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--progress-interval", "5", "status"}, []string{`invalid value "5" for --progress-interval`, "10s"}},
		{[]string{"backup", "--lock-wait", "5", src}, []string{"--lock-wait", "10s"}},
		{[]string{"backup", "--exclud", "x", src}, []string{"unknown flag --exclud", "did you mean --exclude?", "'recall backup --help'"}},
		{[]string{"group", "create", "g", "--keep-daily", "x"}, []string{"--keep-daily", "whole number"}},
	} {
		r := e.run(c.args...)
		ok := r.code == 2 && !strings.Contains(r.stderr, " -"+strings.TrimLeft(c.want[0], "-"))
		for _, w := range c.want {
			ok = ok && strings.Contains(r.stderr, w)
		}
		if !ok || strings.Contains(r.stderr, "parse error") {
			t.Errorf("recall %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(c.args, " "), r.code, r.stderr, c.want)
		}
	}
}

// Fix: jobs --json leaves "finished" out of a job that has not finished
// (omitempty kept a zero time.Time as 0001-01-01T00:00:00Z).
func TestJobsUnfinishedFirsthour(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	// A job this process started and never finished: running while it lives.
	must(t, engine.WithCatalog(e.home, time.Minute, t.Logf, func(c *engine.Catalog) error {
		return c.StartJob(&engine.Job{Kind: "backup", Source: "s", Started: time.Now()})
	}))
	out := e.ok("jobs", "--json")
	var jobs []map[string]any
	must(t, json.Unmarshal([]byte(out), &jobs))
	if len(jobs) != 1 || jobs[0]["status"] != "running" {
		t.Fatalf("jobs: %s", out)
	}
	if f, ok := jobs[0]["finished"]; ok {
		t.Errorf("an unfinished job has \"finished\": %v", f)
	}
}
