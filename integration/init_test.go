package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// init with a passphrase set up but without --encrypt makes the store it
// was asked for, unencrypted, and says so loudly: restic and borg encrypt
// by default, and a passphrase in the environment most likely meant it.
// (Fix: "created unencrypted store", exit 0, nothing else.)
func TestInitPassphraseWithoutEncrypt(t *testing.T) {
	e := newEnv(t)
	e.vars = []string{"RECALL_PASSWORD=secret"}
	r := e.run("init")
	if r.code != 0 || !strings.Contains(r.stderr, "a passphrase was given (RECALL_PASSWORD) but not --encrypt") || !strings.Contains(r.stdout, "created unencrypted store") {
		t.Errorf("init with RECALL_PASSWORD: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	e2 := newEnv(t)
	if r := e2.run("init"); r.code != 0 || strings.Contains(r.stderr, "passphrase") {
		t.Errorf("init without a passphrase: exit %d\n%s", r.code, r.stderr)
	}
}

// A group's exclude pattern spelt as the path of something inside a
// member matches nothing (patterns are matched from the member's
// directory); group create, edit and apply say so at once, with what to
// write. (Fix: accepted silently; each backup under the server only
// logged it, and the file was backed up.)
func TestGroupExcludeAbsolutePathWarned(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(t.TempDir(), "www")
	must(t, os.MkdirAll(filepath.Join(src, "cache"), 0o755))
	r := e.run("group", "create", "g", "--member", src, "--exclude", filepath.Join(src, "cache"))
	if r.code != 0 || !strings.Contains(r.stderr, `to leave out `+filepath.Join(src, "cache")+` write "/cache"`) {
		t.Errorf("group create: exit %d\n%s", r.code, r.stderr)
	}
	r = e.run("group", "edit", "g", "--exclude", filepath.Join(src, "cache", "x"))
	if r.code != 0 || !strings.Contains(r.stderr, `write "/cache/x"`) {
		t.Errorf("group edit: exit %d\n%s", r.code, r.stderr)
	}
	if r := e.run("group", "edit", "g", "--exclude", "/cache"); r.code != 0 || strings.Contains(r.stderr, "warning") {
		t.Errorf("group edit with the right pattern: exit %d\n%s", r.code, r.stderr)
	}
}

// verify of a store whose only damage is a point's manifest says to
// forget it, and not to back up again and run repair points, which mend
// nothing there. (Fix: the generic advice followed the engine's.)
func TestVerifyDamagedManifestAdvice(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644))
	e.ok("backup", "--source", "s", src)
	pts, err := filepath.Glob(filepath.Join(e.home, "store", "points", "*"))
	if err != nil || len(pts) != 1 {
		t.Fatalf("points: %v %v", pts, err)
	}
	must(t, os.WriteFile(pts[0], []byte("garbage"), 0o644))
	r := e.run("verify")
	if r.code != 4 || !strings.Contains(r.stderr, "recall forget") || strings.Contains(r.stderr, "back up the affected sources again") {
		t.Errorf("verify of a damaged manifest: exit %d\n%s", r.code, r.stderr)
	}
}

// A file under a pack's name that no index lists and that holds no pack
// is named once per command, though a repair walks the packs more than
// once; an empty one is named as never recall's. (Fix: twice per run,
// and the advice for an empty file was to put back its index file.)
func TestUnlocatablePackNamedOnce(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644))
	e.ok("backup", "--source", "s", src)
	junk := strings.Repeat("ab", 32)
	empty := strings.Repeat("cd", 32)
	for name, data := range map[string][]byte{junk: []byte(strings.Repeat("junk", 100)), empty: nil} {
		dir := filepath.Join(e.home, "store", "packs", name[:2])
		must(t, os.MkdirAll(dir, 0o700))
		must(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	r := e.run("repair", "packs")
	if n := strings.Count(r.stderr, "recall: pack "+junk+": "); n != 1 {
		t.Errorf("repair packs names the junk pack %d times, want once:\n%s", n, r.stderr)
	}
	if n := strings.Count(r.stderr, "recall: pack "+empty+" of store"); n != 1 || !strings.Contains(r.stderr, "an empty file under a pack's name, which recall never writes") {
		t.Errorf("repair packs names the empty file %d times, want once as never recall's:\n%s", n, r.stderr)
	}
}

// backup --group with --source says why the two do not go together, not
// to change a policy flag that does not exist. (Fix: "--source comes from
// the group's policy; change it with 'recall group edit g --...'".)
func TestBackupGroupWithSource(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	e.ok("group", "create", "g", "--member", t.TempDir())
	r := e.run("backup", "--group", "g", "--source", "x")
	if r.code != 2 || !strings.Contains(r.stderr, "--source is not for a group") || strings.Contains(r.stderr, "group edit") {
		t.Errorf("backup --group --source: exit %d\n%s", r.code, r.stderr)
	}
}
