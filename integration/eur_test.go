package integration

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/recall-backup/recall/engine"
)

// rootNames lists the source directories of a mount.
func rootNames(t *testing.T, mnt string) []string {
	t.Helper()
	ents, err := os.ReadDir(mnt)
	check(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// shown reports whether source is in the mount's listing and whether its
// latest can be looked up by name (the kernel may hold a name the listing
// no longer has, or the reverse, for a moment).
func shown(t *testing.T, mnt, source string) (listed, found bool) {
	t.Helper()
	_, err := os.Stat(filepath.Join(mnt, source, "latest"))
	return slices.Contains(rootNames(t, mnt), source), err == nil
}

// A group with end-user recovery off keeps its sources out of the mounted
// tree; turning it on shows them, turning it off hides them again, without
// a remount. An administrator's mount (--all-sources) and a single-point
// mount (--point) show them regardless.
func TestEndUserRecoveryMount(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	e.ok("init")
	pub, priv := t.TempDir(), t.TempDir()
	pubData, privData := randBytes(11, 3<<20), randBytes(12, 50_000)
	mustWrite(t, filepath.Join(pub, "f.bin"), pubData, 0o644)
	mustWrite(t, filepath.Join(priv, "payroll"), privData, 0o644)
	pubSrc, privSrc := engine.SourceName(pub), engine.SourceName(priv)
	e.ok("group", "create", "public", "--member", pub)
	e.ok("group", "create", "private", "--member", priv, "--end-user-recovery", "off")
	e.ok("backup", "--group", "public")
	e.ok("backup", "--group", "private")

	mnt, admin, single := t.TempDir(), t.TempDir(), t.TempDir()
	e.mount(mnt)
	e.mount(admin, "--all-sources")
	e.mount(single, "--point", "latest", "--source", privSrc)
	if got := rootNames(t, mnt); !slices.Equal(got, []string{pubSrc}) {
		t.Fatalf("mount shows %v, want only %s", got, pubSrc)
	}
	if _, err := os.Stat(filepath.Join(mnt, privSrc)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat of a withheld source: %v, want it not to exist", err)
	}
	if got := rootNames(t, admin); !slices.Contains(got, privSrc) || !slices.Contains(got, pubSrc) {
		t.Fatalf("--all-sources mount shows %v", got)
	}
	if b, err := os.ReadFile(filepath.Join(single, "payroll")); err != nil || !bytes.Equal(b, privData) {
		t.Fatalf("--point mount of a withheld source: %v", err)
	}

	// On: the source appears.
	e.ok("group", "edit", "private", "--end-user-recovery", "on")
	waitFor(t, "the source to appear", func() bool { l, f := shown(t, mnt, privSrc); return l && f })
	if b, err := os.ReadFile(filepath.Join(mnt, privSrc, "latest", "payroll")); err != nil || !bytes.Equal(b, privData) {
		t.Fatalf("read through the mount once shown: %v", err)
	}

	// Off while a file of it is open: the source goes; the open file
	// keeps reading the bytes backed up (or fails; never others).
	f, err := os.Open(filepath.Join(mnt, pubSrc, "latest", "f.bin"))
	check(t, err)
	defer f.Close()
	head := make([]byte, 1000)
	if _, err := f.ReadAt(head, 0); err != nil || !bytes.Equal(head, pubData[:1000]) {
		t.Fatalf("read before the policy change: %v", err)
	}
	e.ok("group", "edit", "public", "--end-user-recovery", "off")
	waitFor(t, "the source to leave", func() bool { l, f := shown(t, mnt, pubSrc); return !l && !f })
	rest := make([]byte, len(pubData))
	n, err := f.ReadAt(rest, 0)
	if err != nil && n != len(pubData) {
		t.Logf("open file after its source left: %d bytes, %v", n, err)
	}
	if !bytes.Equal(rest[:n], pubData[:n]) {
		t.Fatal("open file of a withheld source returned wrong bytes")
	}
	if l, f := shown(t, admin, pubSrc); !l || !f {
		t.Error("--all-sources mount lost a source when its group turned end-user recovery off")
	}
	log, err := os.ReadFile(filepath.Join(e.home, "logs", "mount.log"))
	check(t, err)
	if !strings.Contains(string(log), `leaving source "`+pubSrc+`" out of the tree: protection group "public" has end-user recovery off`) {
		t.Errorf("mount log does not say why the source left:\n%s", log)
	}
}

// `recall share samba` refuses a source whose group has end-user recovery
// off, naming the group and the flag that allows it.
func TestShareRefusedWithoutEndUserRecovery(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "f"), []byte("x"), 0o644)
	src := engine.SourceName(dir)
	e.ok("group", "create", "hr", "--member", dir, "--end-user-recovery", "off")
	e.ok("backup", "--group", "hr")
	share := []string{"share", "samba", "--source", src, "--mountpoint", t.TempDir()}
	r := e.run(share...)
	if r.code != 1 || r.stdout != "" {
		t.Fatalf("share of a withheld source: exit %d, stdout %q", r.code, r.stdout)
	}
	for _, want := range []string{`"` + src + `"`, `group "hr"`, "end-user recovery is off", "recall group edit hr --end-user-recovery on"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("refusal does not name %q: %s", want, r.stderr)
		}
	}
	e.ok("group", "edit", "hr", "--end-user-recovery", "on")
	if out := e.ok(share...); !strings.Contains(out, "shadow:snapdir") {
		t.Errorf("share once allowed: %s", out)
	}
	// A source in no group is shared as before.
	other := t.TempDir()
	e.ok("backup", "--source", "loose", other)
	e.ok("share", "samba", "--source", "loose", "--mountpoint", t.TempDir())
}
