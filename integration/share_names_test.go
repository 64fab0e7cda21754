package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestShareSambaNamesAsSambaReadsThem: the stanza share samba prints for
// a source whose name and path hold characters smb.conf treats specially
// somewhere (';' and '#' start comments at the start of a line, ']' ends
// a section name, blanks) is read by Samba's own parser, testparm, with
// the share name and paths recall meant; and one that Samba would read
// otherwise is refused with nothing printed.
func TestShareSambaNamesAsSambaReadsThem(t *testing.T) {
	testparm, err := exec.LookPath("testparm")
	if err != nil {
		skip(t, "testparm not installed (Debian package samba-common-bin; `make test` installs samba)")
	}
	e := newEnv(t)
	e.ok("init")
	dir := t.TempDir()
	live := filepath.Join(dir, "odd #;[x] {y}")
	check(t, os.MkdirAll(filepath.Join(live, "sub dir"), 0o755))
	mnt := filepath.Join(dir, "mnt [1]")
	e.ok("-q", "backup", "--source", "a]b;c", live)
	stanza := e.ok("share", "samba", "--source", "a]b;c", "--name", "ab #1", "--mountpoint", mnt, "--share-path", filepath.Join(live, "sub dir"))
	conf := filepath.Join(dir, "smb.conf")
	check(t, os.WriteFile(conf, []byte("[global]\n"+stanza), 0o644))
	for param, want := range map[string]string{
		"path":              filepath.Join(live, "sub dir"),
		"shadow:snapdir":    filepath.Join(mnt, "a]b;c"),
		"shadow:mountpoint": live,
	} {
		out, err := exec.Command(testparm, "-s", "--section-name", "ab #1", "--parameter-name", param, conf).Output()
		if err != nil {
			t.Fatalf("testparm [ab #1] %s: %v\n%s", param, err, stanza)
		}
		if got := strings.TrimSuffix(string(out), "\n"); got != want {
			t.Errorf("Samba reads [ab #1] %s as %q, recall meant %q:\n%s", param, got, want, stanza)
		}
	}
	// The source's own name holds ']': as a section name Samba would end it
	// there ([a]); and a path with a run of blanks Samba would read as
	// another directory.
	spaced := filepath.Join(dir, "two  blanks")
	check(t, os.Mkdir(spaced, 0o755))
	e.ok("-q", "backup", "--source", "spaced", spaced)
	for _, args := range [][]string{
		{"share", "samba", "--source", "a]b;c", "--mountpoint", mnt},
		{"share", "samba", "--source", "spaced", "--mountpoint", mnt},
		{"share", "samba", "--source", "spaced", "--mountpoint", mnt, "--name", "x", "--share-path", filepath.Join(dir, "elsewhere")},
	} {
		r := e.run(args...)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, "recall: error: ") {
			t.Errorf("recall %s: exit %d, stdout %q, stderr %q; want exit 2, nothing on stdout, an error", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
}
