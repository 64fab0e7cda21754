package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/internal/testskip"
)

// jsonLines decodes every line of out as a JSON object.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// raw decodes the _raw field key of m; ok is false when m has none.
func raw(t *testing.T, m map[string]any, key string) (string, bool) {
	t.Helper()
	v, ok := m[key+"_raw"]
	if !ok {
		return "", false
	}
	b, err := base64.StdEncoding.DecodeString(v.(string))
	if err != nil {
		t.Fatalf("%s_raw %q: %v", key, v, err)
	}
	return string(b), true
}

// A name that is not UTF-8 comes back whole from --json: its string is
// for display (U+FFFD for the bad byte), and a sibling _raw field holds
// its bytes; a UTF-8 name has no _raw field. (Fix: the bytes were lost.)
func TestJSONRawNames(t *testing.T) {
	dir := t.TempDir()
	home, src, target := filepath.Join(dir, "home"), filepath.Join(dir, "src\xff"), filepath.Join(dir, "target\xfe")
	bad := "f\xffile"
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{bad, "plain"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(name), 0o644); err != nil {
			if errors.Is(err, syscall.EILSEQ) || errors.Is(err, syscall.EINVAL) {
				testskip.Skip(t, "the temporary directory's file system takes only UTF-8 names: %v", err)
			}
			t.Fatal(err)
		}
	}
	run := func(args ...string) []map[string]any {
		t.Helper()
		out, err := runRecall(t, append([]string{"--home", home}, args...)...)
		if err != nil {
			t.Fatalf("recall %q: %v", args, err)
		}
		return jsonLines(t, out)
	}
	run("init", "--json")

	// check finds a verbose line for each of items, and the summary's
	// key holding whole; each has its _raw field when it is not UTF-8.
	check := func(cmd string, lines []map[string]any, key, whole string, items ...string) {
		t.Helper()
		want := map[string]string{} // as JSON shows it -> its bytes
		for _, n := range append(items, whole) {
			want[strings.ToValidUTF8(n, "\uFFFD")] = n
		}
		seen := 0
		for _, l := range lines {
			field := "item"
			switch l["message_type"] {
			case "verbose_status":
			case "summary":
				field = key
			default:
				continue
			}
			shown, _ := l[field].(string)
			exact, ok := want[shown]
			if !ok {
				continue
			}
			seen++
			got, hasRaw := raw(t, l, field)
			switch {
			case utf8.ValidString(exact) && hasRaw:
				t.Errorf("%s: %s %q is UTF-8 but has %s_raw %q", cmd, field, shown, field, got)
			case !utf8.ValidString(exact) && (!hasRaw || got != exact):
				t.Errorf("%s: %s %q has %s_raw %q (%v), want %q", cmd, field, shown, field, got, hasRaw, exact)
			}
		}
		if seen != len(want) {
			t.Errorf("%s: %d of the %d verbose lines and summary wanted:\n%v", cmd, seen, len(want), lines)
		}
	}
	check("backup", run("-v", "backup", "--json", src), "path", src, filepath.Join(src, bad), filepath.Join(src, "plain"))
	check("restore", run("-v", "restore", "latest", "--target", target, "--json"), "root", target, bad, "plain")
	if b, err := os.ReadFile(filepath.Join(target, bad)); err != nil || string(b) != bad {
		t.Errorf("restored %q: %q, %v", bad, b, err)
	}

	// verify's report, whose damage names files of the points.
	rep := &engine.VerifyReport{Damage: []engine.Damage{{Point: "p", Path: "/" + bad, Error: "x"}}}
	b, err := json.Marshal(verifyJSON{VerifyReport: rep, Damage: damagesJSON(rep.Damage)})
	var v struct{ Damage []map[string]any }
	if err := errors.Join(err, json.Unmarshal(b, &v)); err != nil || len(v.Damage) != 1 {
		t.Fatalf("verify --json %s: %v", b, err)
	}
	if got, ok := raw(t, v.Damage[0], "path"); !ok || got != "/"+bad || v.Damage[0]["point"] != "p" {
		t.Errorf("verify --json damage %v, want its path_raw", v.Damage[0])
	}

	// A list of names: the bytes of every one, in its order.
	r := &reporter{start: time.Now()}
	st := r.status(engine.Status{Current: []string{"/ok", "/" + bad}})
	want := []string{base64.StdEncoding.EncodeToString([]byte("/ok")), base64.StdEncoding.EncodeToString([]byte("/" + bad))}
	if !reflect.DeepEqual(st.CurrentFilesRaw, want) {
		t.Errorf("current_files_raw %q, want %q", st.CurrentFilesRaw, want)
	}
	if st := r.status(engine.Status{Current: []string{"/ok"}}); st.CurrentFilesRaw != nil {
		t.Errorf("current_files_raw %q for UTF-8 names, want none", st.CurrentFilesRaw)
	}
}

// The jobs table keeps one line per job and passes no control character
// to the terminal, whatever path a failed job's error names.
func TestJobsDetailOneLine(t *testing.T) {
	home, src, run := cliHome(t)
	run("init")
	gone := filepath.Join(src, "gone\x1b[2J\nrecall: completed")
	if _, err := runRecall(t, "--home", home, "backup", "--source", "s", gone); err == nil {
		t.Fatal("backup of a missing path succeeded")
	}
	out := run("jobs")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.ContainsAny(out, "\x1b\t") || !strings.Contains(lines[1], `\x1b[2J\x0arecall: completed`) {
		t.Fatalf("jobs: %q; want a header and one line, the path's control characters escaped", out)
	}
}

// A restore's job names the point it restored ("latest" resolved) and
// its source, and the target as an absolute path; the table shows "-"
// where a job has no source or point.
func TestJobsRecordRestore(t *testing.T) {
	home, src, run := cliHome(t)
	run("init")
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("backup", "-q", "--source", "s", src)
	t.Chdir(t.TempDir())
	run("restore", "-q", "latest", "--target", "out")
	runRecall(t, "--home", home, "verify")
	out := run("jobs", "--json")
	var jobs []engine.Job
	if err := json.Unmarshal([]byte(out), &jobs); err != nil || len(jobs) != 3 {
		t.Fatalf("jobs --json: %v\n%s", err, out)
	}
	backup, restore := jobs[0], jobs[1]
	wd, _ := os.Getwd()
	if restore.Kind != "restore" || restore.Point != backup.Point || restore.Source != "s" || restore.Path != filepath.Join(wd, "out") {
		t.Errorf("restore job %+v; want point %s of s into %s", restore, backup.Point, filepath.Join(wd, "out"))
	}
	lines := strings.Split(strings.TrimSpace(run("jobs")), "\n")
	if len(lines) != 4 || !strings.Contains(lines[2], " s ") || !strings.Contains(lines[2], backup.Point[:12]) || !strings.Contains(lines[3], " -  ") || strings.Contains(lines[3], `""`) {
		t.Errorf("jobs:\n%s", strings.Join(lines, "\n"))
	}
}

// "latest" passes over a point whose manifest is damaged, and restore
// says so: it may have been the newest, and the data restored older.
func TestRestoreLatestWarnsOfDamagedPoints(t *testing.T) {
	home, src, run := cliHome(t)
	run("init")
	f := filepath.Join(src, "f")
	for _, v := range []string{"v1", "v2"} {
		if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		run("backup", "-q", "--source", "s", src)
	}
	var pts []struct{ ID string }
	if err := json.Unmarshal([]byte(run("points", "--json")), &pts); err != nil || len(pts) != 2 {
		t.Fatalf("points: %v", err)
	}
	if err := os.WriteFile(filepath.Join(home, "store", "points", pts[1].ID), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	// points --json gives a damaged point its id and why, nothing else.
	var listed []map[string]any
	if err := json.Unmarshal([]byte(run("points", "--json")), &listed); err != nil || len(listed) != 2 || len(listed[1]) != 2 || listed[1]["damaged"] == nil {
		t.Errorf("points --json with a damaged point: %v %v", listed, err)
	}
	target := filepath.Join(t.TempDir(), "out")
	stderr := stderrOf(t, func() { run("restore", "-q", "latest", "--target", target) })
	if b, _ := os.ReadFile(filepath.Join(target, "f")); string(b) != "v1" || !strings.Contains(stderr, "1 point(s) whose manifest is damaged were passed over ("+pts[1].ID[:12]+")") {
		t.Errorf("restore latest gave %q, stderr %q; want v1 and a warning naming the damaged point", b, stderr)
	}
	// By id, with nothing damaged passed over, nothing is said.
	stderr = stderrOf(t, func() { run("restore", "-q", pts[0].ID, "--target", filepath.Join(t.TempDir(), "by-id")) })
	if strings.Contains(stderr, "passed over") {
		t.Errorf("restore by id warned: %q", stderr)
	}
}

// backup --group --json's elements are each as backup --json's summary
// line, message_type included, as the README says.
func TestBackupGroupJSONSummaries(t *testing.T) {
	_, src, run := cliHome(t)
	run("init")
	run("group", "create", "g", "--member", src)
	var pts []map[string]any
	if err := json.Unmarshal([]byte(run("backup", "--group", "g", "--json")), &pts); err != nil || len(pts) != 1 || pts[0]["message_type"] != "summary" || pts[0]["snapshot_id"] == nil {
		t.Errorf("backup --group --json: %v %v", pts, err)
	}
}

// A member whose path holds a newline is one line in group show, source
// list and backup --group, quoted as the points table quotes it.
func TestGroupListingsOneLine(t *testing.T) {
	_, src, run := cliHome(t)
	run("init")
	m := filepath.Join(src, "nl\nrecall: completed")
	if err := os.MkdirAll(m, 0o755); err != nil {
		t.Fatal(err)
	}
	run("group", "create", "g", "--member", m)
	for _, args := range [][]string{{"group", "show", "g"}, {"source", "list"}, {"backup", "--group", "g"}} {
		out := run(args...)
		if strings.Contains(out, "\nrecall: completed") || !strings.Contains(out, strconv.Quote(m)) {
			t.Errorf("%s: %q; want the member quoted on one line", strings.Join(args, " "), out)
		}
	}
}

// A backup that fails makes no point, and its job still names its source
// (derived from the path) and the path as an absolute one.
func TestJobsFailedBackupNamesSource(t *testing.T) {
	home, _, run := cliHome(t)
	run("init")
	dir := t.TempDir()
	t.Chdir(dir)
	if _, err := runRecall(t, "--home", home, "backup", "gone"); err == nil {
		t.Fatal("backup of a missing path succeeded")
	}
	var jobs []engine.Job
	if err := json.Unmarshal([]byte(run("jobs", "--json")), &jobs); err != nil || len(jobs) != 1 {
		t.Fatalf("jobs: %v %v", jobs, err)
	}
	want := filepath.Join(dir, "gone")
	if j := jobs[0]; j.Status != "failed" || j.Source != engine.SourceName(want) || j.Path != want {
		t.Errorf("failed backup's job %+v; want source %s and path %s", j, engine.SourceName(want), want)
	}
}
