package engine

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/recall-backup/recall/internal/golden"
	"github.com/recall-backup/recall/internal/testskip"
)

func testShare(name, path string) SambaShare {
	return SambaShare{
		Name:    name,
		Source:  "srv01",
		Kind:    ShareKindTarget,
		Comment: []string{"staging of computer SRV Ü{01}"},
		Params:  []SambaParam{{"path", path}, {"read only", "no"}, {"vfs objects", ""}},
	}
}

// owned is s installed for source of kind.
func owned(s SambaShare, source, kind string) SambaShare {
	s.Source, s.Kind = source, kind
	return s
}

// mustPut is putBlock that fails t on an error.
func mustPut(t *testing.T, old []byte, s SambaShare) []byte {
	t.Helper()
	b, err := putBlock(old, s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSambaIncludeFormat pins the include file's layout (version 2): a
// change here breaks replacing the blocks older versions wrote. Source
// names may hold blanks and '=' (share names cannot).
func TestSambaIncludeFormat(t *testing.T) {
	b := mustPut(t, nil, owned(testShare("srv01", "/srv/recall-bmr/srv01"), "SRV 01 kind=x", ShareKindTarget))
	b = mustPut(t, b, owned(testShare("srv01-20261102-2103", "/srv/recall/srv01/@GMT-2026.11.02-21.03.12"), "SRV 01 kind=x", ShareKindRecovery))
	golden.Check(t, "recall-shares-v2.golden", b)
	blocks := parseBlocks(b)
	want := []includeBlock{
		{Name: "srv01", Source: "SRV 01 kind=x", Kind: ShareKindTarget, Version: 2},
		{Name: "srv01-20261102-2103", Source: "SRV 01 kind=x", Kind: ShareKindRecovery, Version: 2},
	}
	if len(blocks) != len(want) {
		t.Fatalf("blocks %+v, want %+v", blocks, want)
	}
	for i, w := range want {
		got := blocks[i]
		got.start, got.end = 0, 0
		if got != w {
			t.Errorf("block %d: %+v, want %+v", i, got, w)
		}
	}
}

// TestSambaIncludeV1: the blocks version 1 wrote are still read: kept
// as they are beside new ones, replaced by their own source (named in
// the comment recall wrote), refused to anyone when they name none.
func TestSambaIncludeV1(t *testing.T) {
	v1 := golden.Load(t, "recall-shares-v1.golden")
	blocks := parseBlocks(v1)
	if len(blocks) != 2 || blocks[0].Name != "srv01" || blocks[1].Name != "srv01-20261102-2103" || blocks[0].Version != 1 || blocks[0].Source != "" {
		t.Fatalf("version 1 blocks: %+v", blocks)
	}
	b := mustPut(t, v1, testShare("srv02", "/srv/recall-bmr/srv02"))
	if !strings.HasPrefix(string(b), "# recall-shares.conf version 2:") || !strings.Contains(string(b), string(v1[strings.Index(string(v1), "\n\n")+2:])) {
		t.Fatalf("a block added to a version 1 file:\n%s", b)
	}
	if _, err := putBlock(v1, testShare("SRV01", "/x")); !errors.Is(err, ErrShareTaken) || !strings.Contains(err.Error(), "names no source") {
		t.Fatalf("replacing a version 1 block of no known source: %v", err)
	}
	// What share bmr-target and bmr-recovery wrote in version 1.
	old := blockBegin + "web\n# Staging share of data source \"Web\" (kind bmr) for computer WEB1: its Windows Server\n[web]\n\tpath = /s\n" + blockEnd + "web\n" +
		blockBegin + "web-20261102-2103\n# Recovery point 0123456789ab of data source \"Web\" (WEB1), made 2026-11-02 21:03:12 UTC: its root holds WindowsImageBackup.\n[web-20261102-2103]\n" + blockEnd + "web-20261102-2103\n"
	blocks = parseBlocks([]byte(old))
	if len(blocks) != 2 || blocks[0].Source != "Web" || blocks[0].Kind != ShareKindTarget || blocks[1].Source != "Web" || blocks[1].Kind != ShareKindRecovery {
		t.Fatalf("owners of version 1 blocks: %+v", blocks)
	}
	b = mustPut(t, []byte(old), owned(testShare("web", "/s2"), "Web", ShareKindTarget))
	if got := parseBlocks(b); len(got) != 2 || got[0].Version != 2 || got[1].Version != 1 || strings.Contains(string(b), "path = /s\n") {
		t.Fatalf("a version 1 block replaced by its source:\n%s", b)
	}
	if _, err := putBlock([]byte(old), owned(testShare("WEB", "/s2"), "web", ShareKindTarget)); !errors.Is(err, ErrShareTaken) || !strings.Contains(err.Error(), `source "Web"`) {
		t.Fatalf("a version 1 block replaced by another source: %v", err)
	}
}

// TestInstalledShares: the shares of the include file beside an smb.conf,
// each with its path, and which of them serves a point: a recovery share
// whose path is that point's id link of its source, not a staging share,
// nor one of another source or point.
func TestInstalledShares(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "smb.conf")
	if got, err := InstalledShares(conf); err != nil || got != nil {
		t.Fatalf("no include file: %+v, %v", got, err)
	}
	const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	b := mustPut(t, nil, testShare("srv01", "/srv/recall-bmr/srv01"))
	b = mustPut(t, b, owned(testShare("srv01-20261102-210312", "/srv/recall/srv01/"+id), "srv01", ShareKindRecovery))
	b = mustPut(t, b, owned(testShare("web-20261102-210312", "/srv/recall/web/"+id), "web", ShareKindRecovery))
	if err := os.WriteFile(filepath.Join(dir, SambaIncludeName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := InstalledShares(conf)
	if err != nil || len(got) != 3 {
		t.Fatalf("shares: %+v, %v", got, err)
	}
	if got[1].Path != "/srv/recall/srv01/"+id || got[1].File != filepath.Join(dir, SambaIncludeName) || got[1].Kind != ShareKindRecovery {
		t.Errorf("recovery share: %+v", got[1])
	}
	var serving []string
	for _, sh := range got {
		if sh.Serves("srv01", id) {
			serving = append(serving, sh.Name)
		}
	}
	if len(serving) != 1 || serving[0] != "srv01-20261102-210312" {
		t.Errorf("shares serving srv01's point: %v", serving)
	}
	if got[1].Serves("srv01", strings.Repeat("f", 64)) || got[0].Serves("srv01", "srv01") {
		t.Error("a share serves another point, or a staging share serves one")
	}
}

// TestShareOwner: a block is replaced only by the share of the same
// source and kind; a share of another source or kind of that name is
// refused and left as it is.
func TestShareOwner(t *testing.T) {
	web := owned(testShare("web", "/srv/recall-bmr/web"), "web", ShareKindTarget)
	for _, tc := range []struct {
		name string
		next SambaShare
		want []string // in the message; none: replaced
	}{
		{"same source and kind", owned(testShare("WEB", "/new"), "web", ShareKindTarget), nil},
		{"source in another case", owned(testShare("Web", "/new"), "Web", ShareKindTarget), []string{"share [Web]", "bmr-target share of source \"web\"", "--name"}},
		{"another source", owned(testShare("web", "/new"), "db", ShareKindTarget), []string{"share [web]", "bmr-target share of source \"web\"", "bmr-target share of source \"db\" another name with --name"}},
		{"another kind", owned(testShare("web", "/new"), "web", ShareKindRecovery), []string{"bmr-target share of source \"web\"", "bmr-recovery share"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := mustPut(t, nil, web)
			got, err := putBlock(b, tc.next)
			if tc.want == nil {
				if err != nil || !strings.Contains(string(got), "path = /new") || strings.Contains(string(got), "/srv/recall-bmr/web") {
					t.Fatalf("not replaced: %v\n%s", err, got)
				}
				return
			}
			if !errors.Is(err, ErrShareTaken) || got != nil {
				t.Fatalf("putBlock: %v, want ErrShareTaken", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
		})
	}
	// Through InstallSambaShare, which names the file, and CheckSambaShare.
	dir := t.TempDir()
	conf := filepath.Join(dir, "smb.conf")
	if err := os.WriteFile(conf, []byte("[global]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := InstallSambaShare(conf, web); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, SambaIncludeName))
	hijack := owned(testShare("WEB", "/other"), "Web", ShareKindTarget)
	for _, f := range []func() error{
		func() error { return CheckSambaShare(conf, hijack) },
		func() error { _, err := InstallSambaShare(conf, hijack); return err },
	} {
		if err := f(); !errors.Is(err, ErrShareTaken) || !strings.Contains(err.Error(), filepath.Join(dir, SambaIncludeName)) {
			t.Errorf("hijack: %v", err)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(dir, SambaIncludeName)); string(after) != string(before) {
		t.Errorf("include file changed on a refusal:\n%s", after)
	}
}

func TestPutBlock(t *testing.T) {
	a := testShare("alpha", "/a")
	a2 := testShare("ALPHA", "/a2")
	bshare := testShare("beta", "/b")
	foreign := "# an admin's note\n[manual]\n\tpath = /m\n"
	tests := []struct {
		name  string
		steps []SambaShare
		start string
		want  []string // in this order
		not   []string
	}{
		{name: "first share", steps: []SambaShare{a}, want: []string{"version 2", beginMarker + "alpha source=srv01 kind=bmr-target\n", "[alpha]\n", "\tpath = /a\n", endMarker + "alpha\n"}},
		{name: "second share after the first", steps: []SambaShare{a, bshare}, want: []string{"[alpha]", "[beta]"}},
		{name: "same share twice is one block", steps: []SambaShare{a, a}, want: []string{"[alpha]"}},
		{name: "replaced in place, name case-insensitive", steps: []SambaShare{a, bshare, a2}, want: []string{"[ALPHA]", "path = /a2", "[beta]"}, not: []string{"path = /a\n", "[alpha]"}},
		{name: "lines outside blocks kept", start: foreign, steps: []SambaShare{a, a2}, want: []string{foreign, "[ALPHA]"}, not: []string{"[alpha]"}},
		{name: "no final newline", start: "# x", steps: []SambaShare{a}, want: []string{"# x\n\n" + beginMarker}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.start)
			for _, s := range tt.steps {
				b = mustPut(t, b, s)
			}
			got := string(b)
			at := 0
			for _, w := range tt.want {
				i := strings.Index(got[at:], w)
				if i < 0 {
					t.Fatalf("%q missing (or out of order) in:\n%s", w, got)
				}
				at += i + len(w)
			}
			for _, n := range tt.not {
				if strings.Contains(got, n) {
					t.Fatalf("%q still there:\n%s", n, got)
				}
			}
			for _, s := range tt.steps {
				if c := strings.Count(strings.ToLower(got), strings.ToLower(beginMarker+s.Name+" ")); c != 1 {
					t.Fatalf("%d blocks of %s:\n%s", c, s.Name, got)
				}
			}
		})
	}
}

func TestInstallSambaShare(t *testing.T) {
	tests := []struct {
		name     string
		conf     string
		share    SambaShare
		wantErr  error
		appended bool
		// noTestparm takes testparm away: the check falls back to
		// reading smb.conf alone.
		noTestparm bool
	}{
		{name: "include appended", conf: "[global]\n\tworkgroup = X\n", share: testShare("srv01", "/s"), appended: true},
		{name: "no final newline", conf: "[global]\n\tworkgroup = X", share: testShare("srv01", "/s"), appended: true},
		{name: "include already there", conf: "[global]\n   Include   =  INCLUDE\n", share: testShare("srv01", "/s")},
		{name: "commented include does not count", conf: "[global]\n; include = INCLUDE\n", share: testShare("srv01", "/s"), appended: true},
		{name: "admin's share of that name", conf: "[global]\n[SRV01]\n\tpath = /x\n", share: testShare("srv01", "/s"), wantErr: ErrShareConflict},
		{name: "admin's share in an included file", conf: "[global]\n\tinclude = DIR/admin.conf\n", share: testShare("srv01", "/s"), wantErr: ErrShareConflict},
		{name: "recall's own include left out", conf: "[global]\ninclude = INCLUDE\n", share: testShare("srv01", "/s")},
		{name: "no testparm: smb.conf itself", conf: "[global]\n[SRV01]\n\tpath = /x\n", share: testShare("srv01", "/s"), wantErr: ErrShareConflict, noTestparm: true},
		{name: "no testparm: included file not read", conf: "[global]\n\tinclude = DIR/admin.conf\n", share: testShare("srv01", "/s"), appended: true, noTestparm: true},
		{name: "no source", conf: "[global]\n", share: owned(testShare("srv01", "/s"), "", ShareKindTarget), wantErr: ErrBadShare},
		{name: "bad kind", conf: "[global]\n", share: owned(testShare("srv01", "/s"), "srv01", "samba"), wantErr: ErrBadShare},
		{name: "bad name", conf: "[global]\n", share: testShare("a/b", "/s"), wantErr: ErrBadShare},
		{name: "percent in a path", conf: "[global]\n", share: testShare("srv01", "/s/%m"), wantErr: ErrBadShare},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.noTestparm {
				old := testparmProgram
				testparmProgram = "testparm-not-installed"
				t.Cleanup(func() { testparmProgram = old })
			} else if _, err := exec.LookPath(testparmProgram); err != nil {
				testskip.Skip(t, "testparm not installed (Debian package samba-common-bin)")
			}
			dir := t.TempDir()
			conf := filepath.Join(dir, "smb.conf")
			inc := filepath.Join(dir, SambaIncludeName)
			// A share of the administrator's own in a file smb.conf may include.
			if err := os.WriteFile(filepath.Join(dir, "admin.conf"), []byte("[Srv01]\n\tpath = /admin\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			original := strings.ReplaceAll(strings.ReplaceAll(tt.conf, "INCLUDE", inc), "DIR", dir)
			if err := os.WriteFile(conf, []byte(original), 0o644); err != nil {
				t.Fatal(err)
			}
			for round := 0; round < 2; round++ {
				got, err := InstallSambaShare(conf, tt.share)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("err %v, want %v", err, tt.wantErr)
					}
					if b, _ := os.ReadFile(conf); string(b) != original {
						t.Fatalf("smb.conf changed on a refusal:\n%s", b)
					}
					if _, err := os.Stat(inc); !errors.Is(err, os.ErrNotExist) {
						t.Fatalf("include file written on a refusal: %v", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got.Include != inc || got.Changed != (round == 0) || got.IncludeAdded != (tt.appended && round == 0) {
					t.Fatalf("round %d: %+v", round, got)
				}
			}
			b, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(b), original) {
				t.Fatalf("the admin's lines changed:\n%s", b)
			}
			added := strings.TrimPrefix(string(b), original)
			want := ""
			if tt.appended {
				want = "include = " + inc + "\n"
				if !strings.HasSuffix(original, "\n") {
					want = "\n" + want
				}
			}
			if added != want {
				t.Fatalf("appended %q, want %q", added, want)
			}
			ib, err := os.ReadFile(inc)
			if err != nil || !strings.Contains(string(ib), tt.share.String()) {
				t.Fatalf("include file %v:\n%s", err, ib)
			}
		})
	}
}

func TestValidShareName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"srv01", true}, {"SRV Ü{01}-20261102-2103", true}, {"a.b_c-d", true},
		{"", false}, {"a/b", false}, {`a\b`, false}, {"a[b", false}, {"a%m", false}, {" a", false},
		{"homes", false}, {"GLOBAL", false}, {"a\nb", false}, {strings.Repeat("x", 81), false}, {strings.Repeat("x", 80), true},
		// Samba substitutes %U; ']' ends the section line; it joins a run
		// of blanks into one and drops them at the ends.
		{"web%U", false}, {"a]b;c", false}, {"a]b", false}, {"x  y", false}, {"x\ty", false}, {"a ", false}, {"a\x00b", false},
		{"\xff", false}, {strings.Repeat("é", 80), true}, {strings.Repeat("é", 81), false},
		{"ab #1", true}, {"x y", true},
	} {
		if err := ValidShareName(tt.name); (err == nil) != tt.ok {
			t.Errorf("ValidShareName(%q) = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

// TestCheckSambaValue: a value Samba would read as another, or
// substitute into, is refused; one it reads as written (';', '#', ']'
// inside a line are no comment nor section) passes.
func TestCheckSambaValue(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  string // in the error; "" for none
	}{
		{"/srv/www", ""}, {"/srv/odd #;[x] {y}", ""}, {"/srv/a b", ""}, {"", ""}, {"/srv/é", ""},
		{"/srv/100%", "'%'"}, {"/srv/web%U", "'%'"},
		{"/srv/a\nb", "control character"}, {"/srv/a\rb", "control character"}, {"/srv/a\tb", "control character"},
		{" /srv", "starts or ends with blanks"}, {"/srv/a ", "starts or ends with blanks"},
		{"/srv/a  b", "run of blanks"},
		{`/srv/a\`, "joins the next line"},
		{`/srv/q"`, `which Samba strips`}, {`"/srv/q"`, `which Samba strips`},
		{"/srv/\xff", "UTF-8"},
	} {
		err := CheckSambaValue(tt.value)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CheckSambaValue(%q) = %v, want nil", tt.value, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CheckSambaValue(%q) = %v, want an error saying %q", tt.value, err, tt.want)
		}
	}
}

// TestSambaShareCheckValues: the bmr shares refuse a path (a staging
// directory, a point in a tree mounted at such a path) or name Samba
// would read as another.
func TestSambaShareCheckValues(t *testing.T) {
	share := func(name, path string) SambaShare {
		return SambaShare{Name: name, Source: "srv01", Kind: ShareKindTarget, Params: []SambaParam{{Key: "path", Value: path}, {Key: "vfs objects", Value: ""}}}
	}
	if err := share("srv01", "/srv/recall-bmr/srv01").Check(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []SambaShare{share("srv01", "/srv/100%/srv01"), share("srv01", "/srv/a  b"), share("srv01", `/srv/x\`), share("a]b", "/srv/x"), share("srv%m", "/srv/x")} {
		if err := s.Check(); !errors.Is(err, ErrBadShare) {
			t.Errorf("share [%s] path %s: %v, want ErrBadShare", s.Name, s.Params[0].Value, err)
		}
	}
}

func TestValidUnixUser(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"wsb-srv01", true}, {"_x", true}, {"a1", true}, {"", false}, {"1a", false}, {"-a", false},
		{"Wsb", false}, {"wsb-srv ü", false}, {strings.Repeat("a", 32), true}, {strings.Repeat("a", 33), false},
	} {
		if err := ValidUnixUser(tt.name); (err == nil) != tt.ok {
			t.Errorf("ValidUnixUser(%q) = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

func TestPrepareBMRStaging(t *testing.T) {
	if os.Geteuid() != 0 {
		testskip.Skip(t, "needs root to give folders away")
	}
	staging := filepath.Join(t.TempDir(), "srv01")
	// An earlier image, written as someone else, in a folder named in
	// another case: it is the computer's, and becomes the user's.
	old := filepath.Join(staging, "WindowsImageBackup", "srv01", "Backup 2026-11-01 210000")
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "x.vhdx"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, err := PrepareBMRStaging(staging, "SRV01", 4321, 4322)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(staging, "WindowsImageBackup", "srv01"); dir != want {
		t.Fatalf("computer folder %s, want %s", dir, want)
	}
	for _, c := range []struct {
		path     string
		uid, gid uint32
		perm     os.FileMode
	}{
		{filepath.Join(staging, "WindowsImageBackup"), 0, 0, 0o755},
		{dir, 4321, 4322, 0o750},
		{old, 4321, 4322, 0o700},
		{filepath.Join(old, "x.vhdx"), 4321, 4322, 0o600},
	} {
		fi, err := os.Lstat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		st := statOwner(fi)
		if st[0] != c.uid || st[1] != c.gid || fi.Mode().Perm() != c.perm {
			t.Errorf("%s: owner %v mode %v, want %d:%d %v", c.path, st, fi.Mode().Perm(), c.uid, c.gid, c.perm)
		}
	}
	// Again, as a second --apply does: the image's files, already the
	// user's, keep their change times, so its print stays and the image
	// is not taken for a new one.
	before, err := os.Lstat(filepath.Join(old, "x.vhdx"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PrepareBMRStaging(staging, "SRV01", 4321, 4322); err != nil {
		t.Fatal(err)
	}
	after, err := os.Lstat(filepath.Join(old, "x.vhdx"))
	if err != nil {
		t.Fatal(err)
	}
	if b, a := before.Sys().(*syscall.Stat_t).Ctim, after.Sys().(*syscall.Stat_t).Ctim; a != b {
		t.Errorf("a second run changed the change time of a file the user owns: %v, was %v", a, b)
	}
	for _, bad := range []struct{ staging, computer string }{{"relative", "SRV01"}, {staging, ".."}, {staging, "a/b"}, {staging, ""}} {
		if _, err := PrepareBMRStaging(bad.staging, bad.computer, 1, 1); !errors.Is(err, ErrBadShare) {
			t.Errorf("PrepareBMRStaging(%q, %q): %v, want ErrBadShare", bad.staging, bad.computer, err)
		}
	}
}

func statOwner(fi os.FileInfo) [2]uint32 {
	st := fi.Sys().(*syscall.Stat_t)
	return [2]uint32{st.Uid, st.Gid}
}

func TestParsePasswd(t *testing.T) {
	for _, tt := range []struct {
		line string
		want UnixAccount
		ok   bool
	}{
		{"wsb-srv01:x:998:998::/nonexistent:/usr/sbin/nologin", UnixAccount{Name: "wsb-srv01", UID: 998, GID: 998, Shell: "/usr/sbin/nologin"}, true},
		{"alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n", UnixAccount{Name: "alice", UID: 1000, GID: 1000, Shell: "/bin/bash"}, true},
		{"old:x:12:12::/:", UnixAccount{Name: "old", UID: 12, GID: 12, Shell: "/bin/sh"}, true}, // no shell: /bin/sh
		{"bad:x:one:1::/:/bin/sh", UnixAccount{}, false},
		{"short:x:1", UnixAccount{}, false},
	} {
		got, err := parsePasswd(tt.line)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parsePasswd(%q) = %+v, %v; want %+v, ok %v", tt.line, got, err, tt.want, tt.ok)
		}
	}
}

func TestSystemUIDLimit(t *testing.T) {
	for _, tt := range []struct {
		defs string
		want int
	}{
		{"", 1000},
		{"# UID_MIN 500\nUID_MAX 60000\n", 1000},
		{"MAIL_DIR /var/mail\nUID_MIN\t\t\t 500\nSYS_UID_MAX 499\n", 500},
		{"UID_MIN x\n", 1000},
	} {
		if got := systemUIDLimit([]byte(tt.defs)); got != tt.want {
			t.Errorf("systemUIDLimit(%q) = %d, want %d", tt.defs, got, tt.want)
		}
	}
}

func TestLookupUnixAccount(t *testing.T) {
	if _, err := exec.LookPath("getent"); err != nil {
		testskip.Skip(t, "getent not installed (Debian package libc-bin)")
	}
	a, ok, err := LookupUnixAccount("root")
	if err != nil || !ok || a.UID != 0 || a.Name != "root" || a.Shell == "" || a.System {
		t.Errorf("root: %+v %v %v", a, ok, err)
	}
	if a, ok, err := LookupUnixAccount("recall-no-such-user"); err != nil || ok {
		t.Errorf("a user that does not exist: %+v %v %v", a, ok, err)
	}
}

// TestCheckBMRUser: WSB's account gets a Samba password and the
// computer's folder: never root nor Samba's guest account, and an
// existing account only when it is the source's own or allowed.
func TestCheckBMRUser(t *testing.T) {
	sys := UnixAccount{Name: "wsb-web", UID: 998, GID: 998, Shell: "/usr/sbin/nologin", System: true}
	person := UnixAccount{Name: "alice", UID: 1000, GID: 1000, Shell: "/bin/bash"}
	with := func(a UnixAccount, f func(*UnixAccount)) UnixAccount { f(&a); return a }
	root := UnixAccount{Name: "root", Shell: "/bin/bash"}
	nobody := UnixAccount{Name: "nobody", UID: 65534, GID: 65534, Shell: "/usr/sbin/nologin"}
	for _, tt := range []struct {
		name            string
		a               UnixAccount
		guest           string
		recorded, allow bool
		want            []string // in the message; none: taken
	}{
		{"the source's own", sys, "nobody", true, false, nil},
		{"a system account, allowed", sys, "nobody", false, true, nil},
		{"a service's account", with(sys, func(a *UnixAccount) { a.Name, a.UID = "www-data", 33 }), "nobody", false, false,
			[]string{"user www-data (uid 33, shell /usr/sbin/nologin) exists", "not the one recorded for source web", "--user", "--allow-existing-user"}},
		{"a system account without login, not recorded", sys, "nobody", false, false, []string{"user wsb-web", "--allow-existing-user"}},
		{"a person's account", person, "nobody", false, false, []string{"user alice (uid 1000, shell /bin/bash)", "--user", "--allow-existing-user"}},
		{"a person's account, allowed", person, "nobody", false, true, nil},
		{"a person's account, the source's own", person, "nobody", true, false, nil},
		{"nobody, Samba's default guest", nobody, "nobody", true, true, []string{"user nobody is Samba's guest account", "--user"}},
		{"the guest account configured", sys, "wsb-web", true, true, []string{"user wsb-web is Samba's guest account"}},
		{"nobody, another guest configured", nobody, "smbguest", false, true, nil},
		{"root", root, "nobody", false, false, []string{"user root has uid 0", "--user"}},
		{"root, allowed and recorded", root, "nobody", true, true, []string{"uid 0"}},
		{"another name of uid 0", with(sys, func(a *UnixAccount) { a.Name, a.UID = "toor", 0 }), "nobody", false, true, []string{"user toor has uid 0"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckBMRUser(tt.a, tt.guest, "web", tt.recorded, tt.allow)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrBadShare) {
				t.Fatalf("CheckBMRUser: %v, want ErrBadShare", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestSambaGuestAccount: the guest account is smb.conf's, as testparm
// resolves it (an included file's too), and Samba's default, nobody,
// when smb.conf sets none or testparm is not installed.
func TestSambaGuestAccount(t *testing.T) {
	dir := t.TempDir()
	inc := filepath.Join(dir, "inc.conf")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(inc, []byte("[global]\nguest account = smbguest\n"), 0o644))
	set := filepath.Join(dir, "set.conf")
	must(os.WriteFile(set, []byte("[global]\ninclude = "+inc+"\n"), 0o644))
	unset := filepath.Join(dir, "unset.conf")
	must(os.WriteFile(unset, []byte("[global]\nworkgroup = W\n"), 0o644))
	for _, tt := range []struct {
		name, conf, testparm, want string
	}{
		{"set in an included file", set, "testparm", "smbguest"},
		{"unset", unset, "testparm", "nobody"},
		{"no smb.conf", filepath.Join(dir, "none.conf"), "testparm", "nobody"},
		{"no testparm", set, "recall-no-such-testparm", "nobody"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := exec.LookPath(tt.testparm); err != nil && tt.testparm == "testparm" {
				t.Fatalf("testparm is not installed (Debian samba-common-bin): %v", err)
			}
			defer func(p string) { testparmProgram = p }(testparmProgram)
			testparmProgram = tt.testparm
			got, err := SambaGuestAccount(tt.conf)
			if err != nil || got != tt.want {
				t.Errorf("SambaGuestAccount(%s): %q, %v; want %q", tt.conf, got, err, tt.want)
			}
		})
	}
}

// TestPlanSambaPassword: an existing Samba account's password is reset
// (and the account enabled) only when a password is given for it
// explicitly: from a file, or from the environment for the account the
// source recorded.
func TestPlanSambaPassword(t *testing.T) {
	for _, tt := range []struct {
		name             string
		exists, recorded bool
		file, env        string
		set, generate    bool
		want             string // in the error
	}{
		{name: "new account, password made", generate: true},
		{name: "new account, from a file", file: "/pw", set: true},
		{name: "new account, from the environment", env: "PW", set: true},
		{name: "existing account kept", exists: true},
		{name: "existing account kept, the source's own", exists: true, recorded: true},
		{name: "existing account, from a file", exists: true, file: "/pw", set: true},
		{name: "the source's account, from the environment", exists: true, recorded: true, env: "PW", set: true},
		{name: "another account, from the environment", exists: true, env: "PW", want: "Samba account alice exists and is not the one recorded for source web: the password in PW does not reset it; give --password-file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			set, generate, err := PlanSambaPassword("alice", "web", tt.exists, tt.recorded, tt.file, tt.env)
			if tt.want != "" {
				if !errors.Is(err, ErrBadShare) || !strings.Contains(err.Error(), tt.want) || set || generate {
					t.Fatalf("PlanSambaPassword: %v %v %v, want an error with %q", set, generate, err, tt.want)
				}
				return
			}
			if err != nil || set != tt.set || generate != tt.generate {
				t.Fatalf("PlanSambaPassword: set %v generate %v %v, want %v %v", set, generate, err, tt.set, tt.generate)
			}
		})
	}
}

// A share made again with another path (a recovery share of one name
// made for another point) says what it served before, so the command can
// say that it stops being served; made again as it is, it says nothing.
func TestInstallSambaShareOldPath(t *testing.T) {
	testparmProgram0 := testparmProgram
	testparmProgram = "testparm-not-installed" // smb.conf alone is read
	t.Cleanup(func() { testparmProgram = testparmProgram0 })
	dir := t.TempDir()
	conf := filepath.Join(dir, "smb.conf")
	if err := os.WriteFile(conf, []byte("[global]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, old string }{{"/mnt/s/aaa", ""}, {"/mnt/s/aaa", ""}, {"/mnt/s/bbb", "/mnt/s/aaa"}} {
		inst, err := InstallSambaShare(conf, owned(testShare("s-20261201-022636", tc.path), "s", ShareKindRecovery))
		if err != nil {
			t.Fatal(err)
		}
		if inst.OldPath != tc.old {
			t.Errorf("install with path %s: old path %q, want %q", tc.path, inst.OldPath, tc.old)
		}
	}
}
