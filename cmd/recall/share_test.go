package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/internal/testskip"
)

// TestShareBMRTargetRefusals: what share bmr-target refuses before it
// prints or changes anything: root, Samba's guest account, an existing
// account not recorded for the source (unless allowed), another source's
// user, another source's share name. Nothing here creates a user or a Samba account.
func TestShareBMRTargetRefusals(t *testing.T) {
	for _, tool := range []string{"getent", "testparm"} {
		if _, err := exec.LookPath(tool); err != nil {
			testskip.Skip(t, "%s not installed (Debian packages libc-bin, samba-common-bin)", tool)
		}
	}
	// The accounts the steps take as existing ones: sync has the login
	// shell /bin/sync on Debian, nobody's uid is past the system range.
	for _, u := range []string{"root", "sync", "nobody", "daemon"} {
		if _, ok, err := engine.LookupUnixAccount(u); !ok || err != nil {
			testskip.Skip(t, "no account %s here (%v)", u, err)
		}
	}
	sync, _, _ := engine.LookupUnixAccount("sync")
	if !sync.System || sync.Shell != "/bin/sync" {
		testskip.Skip(t, "account sync is not a system account with the login shell /bin/sync here: %+v", sync)
	}
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if _, err := chunkstore.Init(engine.StoreDir(home), chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "samba", "smb.conf")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("[global]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	guestConf := filepath.Join(dir, "samba", "guest.conf")
	if err := os.WriteFile(guestConf, []byte("[global]\nguest account = daemon\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args string) (int, string) {
		app := newApp()
		var out bytes.Buffer
		app.Writer = &out
		err := app.Run(interspersed(app, append([]string{"recall", "--home", home}, strings.Fields(args)...)))
		text := out.String()
		if err != nil {
			text += err.Error()
		}
		return exitCode(err), text
	}
	for _, args := range []string{
		"source add web --kind bmr --computer WEB1 --staging " + filepath.Join(dir, "web"),
		"source add db --kind bmr --computer DB1 --staging " + filepath.Join(dir, "db"),
	} {
		if code, out := run(args); code != exitOK {
			t.Fatalf("recall %s: exit %d: %s", args, code, out)
		}
	}
	// What an earlier --apply of source web left: its user recorded, its
	// share installed.
	err := engine.WithCatalog(home, time.Second, func(string, ...any) {}, func(c *engine.Catalog) error {
		_, err := c.EditSource("web", func(s *engine.Source) error { s.User = "wsb-web"; return nil })
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.InstallSambaShare(conf, engine.SambaShare{Name: "web", Source: "web", Kind: engine.ShareKindTarget,
		Params: []engine.SambaParam{{Key: "path", Value: filepath.Join(dir, "web")}, {Key: "valid users", Value: "wsb-web"}}}); err != nil {
		t.Fatal(err)
	}
	include := filepath.Join(dir, "samba", engine.SambaIncludeName)
	before, err := os.ReadFile(include)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		args string
		code int
		out  string // in the output or the error
	}{
		{"--user root", exitUsage, "user root has uid 0"},
		{"--user root --allow-existing-user", exitUsage, "uid 0"},
		{"--user sync", exitUsage, fmt.Sprintf("user sync (uid %d, shell /bin/sync) exists, is a system account, and is not the one recorded for source db", sync.UID)},
		{"--user daemon", exitUsage, "user daemon (uid 1, shell /usr/sbin/nologin) exists, is a system account, and is not the one recorded for source db"},
		{"--user nobody", exitUsage, "user nobody is Samba's guest account"},
		{"--user nobody --allow-existing-user", exitUsage, "user nobody is Samba's guest account"},
		{"--user daemon --allow-existing-user --smb-conf " + guestConf, exitUsage, "user daemon is Samba's guest account"},
		{"--user sync --allow-existing-user", exitOK, "valid users = sync"},
		{"--user daemon --allow-existing-user", exitOK, "valid users = daemon"},
		{"--user wsb-web", exitError, "source db: user wsb-web is the Samba user of source web (computer WEB1)"},
		{"--name WEB --apply --smb-conf " + conf, exitError, `share [WEB]: share name is taken: it is the bmr-target share of source "web", which stays: give the bmr-target share of source "db" another name with --name`},
	} {
		args := "share bmr-target --source db " + step.args
		code, out := run(args)
		if code != step.code || !strings.Contains(out, step.out) {
			t.Errorf("recall %s: exit %d, %q; want exit %d and %q", args, code, out, step.code, step.out)
		}
	}
	if after, _ := os.ReadFile(include); !bytes.Equal(after, before) {
		t.Errorf("the include file changed:\n%s", after)
	}
	if _, ok, _ := engine.LookupUnixAccount("wsb-db"); ok {
		t.Errorf("user wsb-db was created")
	}
}

// TestShareSambaSharePath: a share of the backed-up directory or of one
// inside it maps its files onto the points from the backed-up root; a
// share of anything else (its parent here, whose pub would show src/pub's
// versions) is refused, naming both directories.
func TestShareSambaSharePath(t *testing.T) {
	dir := t.TempDir()
	home, src := filepath.Join(dir, "home"), filepath.Join(dir, "top", "src")
	for _, f := range []string{filepath.Join(dir, "top", "pub"), filepath.Join(src, "pub"), filepath.Join(src, "sub", "f")} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init"}, {"backup", "--source", "web", src}} {
		if _, err := runRecall(t, append([]string{"--home", home, "-q"}, args...)...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	share := func(sharePath string) (string, error) {
		args := []string{"--home", home, "share", "samba", "--source", "web", "--mountpoint", filepath.Join(dir, "mnt")}
		if sharePath != "" {
			args = append(args, "--share-path", sharePath)
		}
		return runRecall(t, args...)
	}
	for _, sp := range []string{"", src, src + "/", filepath.Join(src, "sub")} {
		out, err := share(sp)
		if err != nil {
			t.Fatalf("--share-path %q: %v", sp, err)
		}
		if !strings.Contains(out, "\tshadow:mountpoint = "+src+"\n") {
			t.Fatalf("--share-path %q: shadow:mountpoint is not the backed-up %s:\n%s", sp, src, out)
		}
	}
	// A file is no share: Samba refused the block written for it.
	if out, err := share(filepath.Join(src, "pub")); exitCode(err) != exitUsage || out != "" || !strings.Contains(err.Error(), "is not a directory") {
		t.Fatalf("--share-path of a file: exit %d, printed %q (%v); want exit %d naming it", exitCode(err), out, err, exitUsage)
	}
	for _, sp := range []string{filepath.Join(dir, "top"), src + "x", "/"} {
		out, err := share(sp)
		if exitCode(err) != exitUsage || out != "" {
			t.Fatalf("--share-path %s: exit %d, printed %q; want exit %d and nothing printed", sp, exitCode(err), out, exitUsage)
		}
		for _, want := range []string{"--share-path " + filepath.Clean(sp) + " is neither " + src, "give --share-path " + src + " or a directory inside it"} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("--share-path %s: %q lacks %q", sp, err, want)
			}
		}
	}
}

// TestShareSambaNames: share samba prints no name or path that Samba
// would read as another (a '%' it substitutes, a ']' that ends the
// section, blanks it trims or joins, a '\' that joins lines, a quote it
// strips), and says what to give instead; what Samba reads as written
// ('#', ';' and brackets in a path, a '#' in a name) is printed as is.
func TestShareSambaNames(t *testing.T) {
	dir := t.TempDir()
	home, mnt := filepath.Join(dir, "home"), filepath.Join(dir, "mnt")
	if _, err := runRecall(t, "--home", home, "init"); err != nil {
		t.Fatal(err)
	}
	backup := func(source, path string) {
		t.Helper()
		if err := os.MkdirAll(path, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := runRecall(t, "--home", home, "-q", "backup", "--source", source, path); err != nil {
			t.Fatalf("backup %s: %v", source, err)
		}
	}
	plain := filepath.Join(dir, "plain")
	backup("web%U", plain)
	backup("a]b;c", plain)
	backup("x  y", plain)
	backup("pct", filepath.Join(dir, "100%"))
	backup("blanks", filepath.Join(dir, "a  b"))
	backup("slash", filepath.Join(dir, `end\`))
	backup("quote", filepath.Join(dir, `q"`))
	backup("odd", filepath.Join(dir, "odd #;[x] {y}"))
	for _, tt := range []struct {
		args string   // after share samba, split on '|'
		want []string // in the error; none: it succeeds
	}{
		{"--source|web%U", []string{`share name "web%U": it holds '%'`, "give another with --name"}},
		{"--source|web%U|--name|web", []string{`source name "web%U"`, "'%'", "back the directory up under another --source name"}},
		{"--source|a]b;c", []string{`share name "a]b;c": it holds ']'`, "--name"}},
		{"--source|a]b;c|--name|ab", nil},
		{"--source|x  y", []string{`share name "x  y": Samba reads a run of blanks as one`}},
		{"--source|pct", []string{`"` + filepath.Join(dir, "100%") + `"`, "'%'", "mount --bind '" + filepath.Join(dir, "100%") + "' /srv/NEW"}},
		{"--source|blanks", []string{"a run of blanks"}},
		{"--source|slash", []string{`joins the next line`}},
		{"--source|quote", []string{`which Samba strips`}},
		{"--source|odd|--name|odd #1", nil},
		{"--source|pct|--share-path|" + plain, []string{"is neither"}},
		{"--source|web%U|--name|web\nx", []string{"control characters"}},
		{"--source|a]b;c|--name|" + strings.Repeat("n", 81), []string{"longer than 80 characters"}},
		{"--source|a]b;c|--name|ab|--mountpoint|" + filepath.Join(dir, "m%m"), []string{"mount point", "'%'", "--mountpoint"}},
		{"--source|a]b;c|--name|ab|--mountpoint|" + filepath.Join(dir, "m ") + "/", []string{"mount point", "starts or ends with blanks"}},
	} {
		out, err := runRecall(t, append([]string{"--home", home, "share", "samba", "--mountpoint", mnt}, strings.Split(tt.args, "|")...)...)
		if tt.want == nil {
			if err != nil {
				t.Errorf("share samba %s: %v", tt.args, err)
			}
			continue
		}
		if exitCode(err) != exitUsage || out != "" {
			t.Errorf("share samba %s: exit %d, printed %q; want exit %d and nothing printed", tt.args, exitCode(err), out, exitUsage)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("share samba %s: %q lacks %q", tt.args, err, w)
			}
		}
	}
}

// The mount command and the fstab line a share's comment suggests work
// for paths with blanks and quotes: a shell word quoted, an fstab field
// with octal escapes.
func TestShareCommentQuoting(t *testing.T) {
	for in, want := range map[string]string{
		"/var/lib/recall":   "/var/lib/recall",
		"/srv/m 8":          "'/srv/m 8'",
		"/srv/it's":         `'/srv/it'\''s'`,
		"/srv/$HOME":        "'/srv/$HOME'",
		"/srv/a,b:c=d@e+f-": "/srv/a,b:c=d@e+f-",
	} {
		if got := shellWord(in); got != want {
			t.Errorf("shellWord(%q) = %s, want %s", in, got, want)
		}
	}
	if got := fstabField("/srv/m 8\t\\x"); got != `/srv/m\0408\011\134x` {
		t.Errorf("fstabField = %s", got)
	}
}

// Fix (a source whose path is not UTF-8): the manifest keeps the path
// with U+FFFD for each such byte, and share samba wrote that path into
// the share: another directory (or none). It now asks for --share-path,
// and its refusals quote both paths, which printed alike. The real path
// is refused as one smb.conf cannot hold, with the bind mount to make.
func TestShareSourceNotUTF8(t *testing.T) {
	dir := t.TempDir()
	home, src := filepath.Join(dir, "home"), filepath.Join(dir, "caf\xe9")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init"}, {"backup", "--source", "cafe", src}} {
		if _, err := runRecall(t, append([]string{"--home", home}, args...)...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	share := func(more ...string) (string, error) {
		return runRecall(t, append([]string{"--home", home, "share", "samba", "--source", "cafe", "--mountpoint", filepath.Join(dir, "mnt")}, more...)...)
	}
	if out, err := share(); exitCode(err) != exitUsage || out != "" || !strings.Contains(err.Error(), "--share-path is needed") || !strings.Contains(err.Error(), "not all UTF-8") {
		t.Errorf("share of a source whose path is not UTF-8: exit %d, printed %q, %v", exitCode(err), out, err)
	}
	if out, err := share("--share-path", src); err == nil || out != "" || !strings.Contains(err.Error(), "not valid UTF-8") || strings.Contains(err.Error(), "is neither") {
		t.Errorf("--share-path, the real directory: printed %q, %v; want it taken as the one backed up, and refused for smb.conf", out, err)
	}
	other := filepath.Join(dir, "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := share("--share-path", other); exitCode(err) != exitUsage || !strings.Contains(err.Error(), fmt.Sprintf("is neither %q", filepath.Join(dir, "caf\uFFFD"))) {
		t.Errorf("--share-path elsewhere: %v", err)
	}
}
