package integration

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// smbd is a private Samba server for one test.
type smbd struct {
	port int
	dir  string
	cmd  *exec.Cmd
	out  bytes.Buffer
}

// startSmbd runs smbd on 127.0.0.1 at a free high port with its own
// configuration and state under dir; shares is appended to [global].
func startSmbd(t *testing.T, dir, shares string) *smbd {
	t.Helper()
	bin, err := exec.LookPath("smbd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/smbd", "/sbin/smbd"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		skip(t, "smbd not installed (Debian package samba; `make test` installs it)")
	}
	if _, err := exec.LookPath("smbclient"); err != nil {
		skip(t, "smbclient not installed (Debian package smbclient; `make test` installs it)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &smbd{port: port, dir: dir}
	sub := func(name string) string {
		p := filepath.Join(dir, name)
		check(t, os.MkdirAll(p, 0o755))
		return p
	}
	conf := fmt.Sprintf(`[global]
	server role = standalone server
	smb ports = %d
	interfaces = lo
	bind interfaces only = yes
	map to guest = Bad User
	guest account = nobody
	lock directory = %s
	state directory = %s
	cache directory = %s
	private dir = %s
	pid directory = %s
	ncalrpc dir = %s
	log file = %s/log.%%m
	log level = 1
	load printers = no
	printing = bsd
	printcap name = /dev/null
	disable spoolss = yes
	disable netbios = yes
%s`, port, sub("lock"), sub("state"), sub("cache"), sub("private"), sub("pid"), sub("ncalrpc"), sub("log"), shares)
	confPath := filepath.Join(dir, "smb.conf")
	check(t, os.WriteFile(confPath, []byte(conf), 0o644))
	s.cmd = exec.Command(bin, "--foreground", "--no-process-group", "--debug-stdout", "--configfile="+confPath)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	check(t, s.cmd.Start())
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("smbd did not listen on port %d:\n%s", port, s.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// client runs smbclient as guest against share with one command.
func (s *smbd) client(t *testing.T, share, command string) (string, error) {
	t.Helper()
	cmd := exec.Command("smbclient", "//127.0.0.1/"+share, "-p", fmt.Sprint(s.port), "-N", "-m", "SMB3", "-c", command)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// openUp makes dir and its parents up to / traversable by other users
// (t.TempDir makes 0700 directories; smbd serves guests as nobody).
func openUp(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		check(t, err)
		if fi.Mode().Perm()&0o005 != 0o005 {
			check(t, os.Chmod(d, fi.Mode().Perm()|0o005))
		}
	}
}

func TestSambaPreviousVersions(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	e.ok("init")
	live := filepath.Join(t.TempDir(), "live")
	openUp(t, filepath.Dir(live))
	versions := []string{"version one\n", "version two, longer\n", "version three, the longest\n"}
	mustWrite(t, filepath.Join(live, "top.txt"), []byte("top"), 0o644)
	mustWrite(t, filepath.Join(live, "secret.txt"), []byte("owner only"), 0o600)
	check(t, os.Chown(filepath.Join(live, "secret.txt"), 1234, 1234))
	for i, v := range versions {
		// Different sizes, so the change is seen even within one clock tick.
		mustWrite(t, filepath.Join(live, "docs", "report.txt"), []byte(v), 0o644)
		if i == 0 {
			check(t, os.Chmod(filepath.Join(live, "docs"), 0o755))
		}
		e.ok("backup", "--source", "docs", live)
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	check(t, os.Mkdir(mnt, 0o755))
	openUp(t, mnt)
	e.mount(mnt, "--allow-other")
	names := pointDirs(t, filepath.Join(mnt, "docs"))
	if len(names) != 3 {
		t.Fatalf("points in the mount: %v", names)
	}

	stanza := e.ok("share", "samba", "--source", "docs", "--share-path", live, "--mountpoint", mnt, "--name", "share")
	for _, want := range []string{"[share]", "vfs objects = shadow_copy2", "shadow:snapdir = " + filepath.Join(mnt, "docs"),
		"shadow:mountpoint = " + live, "shadow:format = @GMT-%Y.%m.%d-%H.%M.%S"} {
		if !strings.Contains(stanza, want) {
			t.Fatalf("stanza lacks %q:\n%s", want, stanza)
		}
	}
	s := startSmbd(t, t.TempDir(), stanza+"\tguest ok = yes\n\tread only = yes\n")

	out, err := s.client(t, "share", `allinfo docs\report.txt`)
	if err != nil {
		t.Fatalf("allinfo: %v\n%s\nsmbd:\n%s", err, out, s.out.String())
	}
	for _, n := range names {
		if !strings.Contains(out, n) {
			t.Fatalf("allinfo does not list version %s:\n%s", n, out)
		}
	}
	for i, n := range names {
		dst := filepath.Join(t.TempDir(), "got")
		out, err := s.client(t, "share", fmt.Sprintf(`get "%s\docs\report.txt" "%s"`, n, dst))
		if err != nil {
			t.Fatalf("get %s: %v\n%s", n, err, out)
		}
		got, err := os.ReadFile(dst)
		check(t, err)
		if string(got) != versions[i] {
			t.Errorf("%s: got %q, want %q", n, got, versions[i])
		}
	}
	// An owner-only file is refused to the guest, in every version.
	last := names[len(names)-1]
	out, err = s.client(t, "share", fmt.Sprintf(`get "%s\secret.txt" "%s"`, last, filepath.Join(t.TempDir(), "x")))
	if err == nil || !strings.Contains(out, "NT_STATUS_ACCESS_DENIED") {
		t.Fatalf("guest read an owner-only file of a point: %v\n%s", err, out)
	}
	// Root reads it through the mount: the refusal is the permission check.
	if b, err := os.ReadFile(filepath.Join(mnt, "docs", last, "secret.txt")); err != nil || string(b) != "owner only" {
		t.Fatalf("root reading the secret: %q, %v", b, err)
	}
}
