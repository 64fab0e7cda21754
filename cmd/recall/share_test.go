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
