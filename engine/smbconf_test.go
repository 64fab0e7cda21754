package engine

import (
	"errors"
	"os"
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
		Comment: []string{"staging of computer SRV Ü{01}"},
		Params:  []SambaParam{{"path", path}, {"read only", "no"}, {"vfs objects", ""}},
	}
}

// TestSambaIncludeFormat pins the include file's layout (version 1): a
// change here breaks replacing the blocks older versions wrote.
func TestSambaIncludeFormat(t *testing.T) {
	b := putBlock(nil, testShare("srv01", "/srv/recall-bmr/srv01"))
	b = putBlock(b, testShare("srv01-20261102-2103", "/srv/recall/srv01/@GMT-2026.11.02-21.03.12"))
	golden.Check(t, "recall-shares-v1.golden", b)
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
		{name: "first share", steps: []SambaShare{a}, want: []string{"version 1", blockBegin + "alpha\n", "[alpha]\n", "\tpath = /a\n", blockEnd + "alpha\n"}},
		{name: "second share after the first", steps: []SambaShare{a, bshare}, want: []string{"[alpha]", "[beta]"}},
		{name: "same share twice is one block", steps: []SambaShare{a, a}, want: []string{"[alpha]"}},
		{name: "replaced in place, name case-insensitive", steps: []SambaShare{a, bshare, a2}, want: []string{"[ALPHA]", "path = /a2", "[beta]"}, not: []string{"path = /a\n", "[alpha]"}},
		{name: "lines outside blocks kept", start: foreign, steps: []SambaShare{a, a2}, want: []string{foreign, "[ALPHA]"}, not: []string{"[alpha]"}},
		{name: "no final newline", start: "# x", steps: []SambaShare{a}, want: []string{"# x\n\n" + blockBegin}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.start)
			for _, s := range tt.steps {
				b = putBlock(b, s)
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
				if c := strings.Count(strings.ToLower(got), strings.ToLower(blockBegin+s.Name+"\n")); c != 1 {
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
	}{
		{name: "include appended", conf: "[global]\n\tworkgroup = X\n", share: testShare("srv01", "/s"), appended: true},
		{name: "no final newline", conf: "[global]\n\tworkgroup = X", share: testShare("srv01", "/s"), appended: true},
		{name: "include already there", conf: "[global]\n   Include   =  INCLUDE\n", share: testShare("srv01", "/s")},
		{name: "commented include does not count", conf: "[global]\n; include = INCLUDE\n", share: testShare("srv01", "/s"), appended: true},
		{name: "admin's share of that name", conf: "[global]\n[SRV01]\n\tpath = /x\n", share: testShare("srv01", "/s"), wantErr: ErrShareConflict},
		{name: "bad name", conf: "[global]\n", share: testShare("a/b", "/s"), wantErr: ErrBadShare},
		{name: "percent in a path", conf: "[global]\n", share: testShare("srv01", "/s/%m"), wantErr: ErrBadShare},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			conf := filepath.Join(dir, "smb.conf")
			inc := filepath.Join(dir, SambaIncludeName)
			original := strings.ReplaceAll(tt.conf, "INCLUDE", inc)
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
	} {
		if err := ValidShareName(tt.name); (err == nil) != tt.ok {
			t.Errorf("ValidShareName(%q) = %v, want ok %v", tt.name, err, tt.ok)
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
