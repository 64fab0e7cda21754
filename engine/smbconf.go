package engine

// Samba shares recall installs for Windows Server Backup: the writable
// staging share a computer's WSB writes its image to (bmr-target) and the
// read-only share of one recovery point that Windows RE restores from
// (bmr-recovery).
//
// recall never edits the administrator's smb.conf beyond one line: it
// keeps its shares in a file of its own beside it and has smb.conf include
// that file.
//
// # The include file
//
// <dir of smb.conf>/recall-shares.conf, version 1:
//
//	# recall-shares.conf version 1: Samba shares written by recall ...
//	(free comment lines)
//
//	# BEGIN recall share NAME
//	(the share's comment lines, its [NAME] section and parameters)
//	# END recall share NAME
//
//	# BEGIN recall share OTHER
//	...
//
// One block per share, between its markers; a block is replaced whole
// when the same share (names compare case-insensitively, as Samba's do)
// is installed again, and the file is replaced atomically, so smbd never
// reads half a file. Lines outside blocks are kept as they are. smb.conf
// gets one line "include = <the file>" appended, once; recall never
// rewrites or removes a line it did not write.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/recall-backup/recall/internal/atomicfile"
)

// SambaIncludeName is the name of recall's include file, in the directory
// of the smb.conf that includes it.
const SambaIncludeName = "recall-shares.conf"

// DefaultSmbConf is the smb.conf of a Debian/Ubuntu/RHEL Samba.
const DefaultSmbConf = "/etc/samba/smb.conf"

// sambaIncludeVersion is the version of the include file's layout (the
// package comment above).
const sambaIncludeVersion = 1

const (
	blockBegin = "# BEGIN recall share "
	blockEnd   = "# END recall share "
)

// Errors of the share helpers, checked with errors.Is.
var (
	// ErrShareConflict: smb.conf itself defines a share of that name.
	ErrShareConflict = errors.New("share is defined in smb.conf")
	// ErrBadShare: a name or value that cannot be written as given.
	ErrBadShare = errors.New("bad share setting")
)

// SambaShare is one share section of smb.conf.
type SambaShare struct {
	Name    string
	Comment []string // lines written as "# ..." before the section
	Params  []SambaParam
}

// SambaParam is one "key = value" line of a section.
type SambaParam struct{ Key, Value string }

// String is the share as smb.conf text: comment lines, [Name], parameters
// indented by a tab.
func (s SambaShare) String() string {
	var b strings.Builder
	for _, c := range s.Comment {
		b.WriteString(strings.TrimRight("# "+c, " ") + "\n")
	}
	fmt.Fprintf(&b, "[%s]\n", s.Name)
	for _, p := range s.Params {
		b.WriteString(strings.TrimRight("\t"+p.Key+" = "+p.Value, " ") + "\n")
	}
	return b.String()
}

// Check says why s cannot be written as smb.conf text, nil when it can:
// a name Windows accepts and parameter values that Samba reads back as
// written (no line breaks, no '%' which Samba substitutes, no leading or
// trailing blanks which it trims).
func (s SambaShare) Check() error {
	if err := ValidShareName(s.Name); err != nil {
		return err
	}
	for _, c := range s.Comment {
		if strings.ContainsAny(c, "\r\n") {
			return fmt.Errorf("%w: share %q: a comment line holds a line break", ErrBadShare, s.Name)
		}
	}
	for _, p := range s.Params {
		switch {
		case strings.ContainsAny(p.Value, "\r\n"):
			return fmt.Errorf("%w: share %q: %s %q: line breaks cannot be written in smb.conf", ErrBadShare, s.Name, p.Key, p.Value)
		case strings.Contains(p.Value, "%"):
			return fmt.Errorf("%w: share %q: %s %q: Samba replaces '%%' sequences in values; use a path or name without '%%'", ErrBadShare, s.Name, p.Key, p.Value)
		case p.Value != strings.TrimSpace(p.Value):
			return fmt.Errorf("%w: share %q: %s %q: Samba trims leading and trailing blanks; use a value without them", ErrBadShare, s.Name, p.Key, p.Value)
		}
	}
	return nil
}

// ValidShareName says why name cannot name an SMB share, nil when it can:
// 1 to 80 characters, none of those Windows refuses in share names
// ("/\[]:|<>+=;,?*) or that Samba substitutes (%), no control characters,
// not "global", "homes" or "printers" (Samba's special sections).
func ValidShareName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: share name %q: %s; give another with --name", ErrBadShare, name, why)
	}
	switch {
	case name == "":
		return bad("empty")
	case len([]rune(name)) > 80:
		return bad("longer than 80 characters")
	case strings.ContainsAny(name, "\"/\\[]:|<>+=;,?*%"):
		return bad(`the characters "/\[]:|<>+=;,?*% are not allowed`)
	case strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return bad("control characters are not allowed")
	case name != strings.TrimSpace(name):
		return bad("leading or trailing blanks are not allowed")
	}
	switch strings.ToLower(name) {
	case "global", "homes", "printers", "ipc$":
		return bad("Samba reserves it")
	}
	return nil
}

// SambaInstall is what InstallSambaShare did.
type SambaInstall struct {
	Include      string // the include file
	Changed      bool   // the include file was written (false: the share was there as it is)
	IncludeAdded bool   // smb.conf got the include line
}

// InstallSambaShare puts share into recall's include file next to smbConf
// (replacing the block of a share of the same name, or adding one) and
// appends "include = <that file>" to smbConf when it has no such line. A
// share of that name in smbConf itself is refused (ErrShareConflict): the
// administrator's definition would silently win or lose.
func InstallSambaShare(smbConf string, share SambaShare) (SambaInstall, error) {
	smbConf, conf, err := readSmbConf(smbConf, share)
	if err != nil {
		return SambaInstall{}, err
	}
	inst := SambaInstall{Include: filepath.Join(filepath.Dir(smbConf), SambaIncludeName)}
	old, err := os.ReadFile(inst.Include)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return inst, fmt.Errorf("read %s: %w", inst.Include, err)
	}
	updated := putBlock(old, share)
	if !bytes.Equal(updated, old) {
		if err := atomicfile.Write(inst.Include, updated, 0o644); err != nil {
			return inst, err
		}
		inst.Changed = true
	}
	if !includes(conf, inst.Include) {
		if err := appendLine(smbConf, conf, "include = "+inst.Include); err != nil {
			return inst, err
		}
		inst.IncludeAdded = true
	}
	return inst, nil
}

// CheckSambaShare says why InstallSambaShare would refuse share, nil
// when it would not: a command checks before it changes anything else.
func CheckSambaShare(smbConf string, share SambaShare) error {
	_, _, err := readSmbConf(smbConf, share)
	return err
}

// readSmbConf checks share and returns smbConf's absolute path and
// content, refusing a share smbConf defines itself.
func readSmbConf(smbConf string, share SambaShare) (string, []byte, error) {
	if err := share.Check(); err != nil {
		return "", nil, err
	}
	smbConf, err := filepath.Abs(smbConf)
	if err != nil {
		return "", nil, err
	}
	conf, err := os.ReadFile(smbConf)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil, fmt.Errorf("read %s: %w: install Samba (Debian package samba) or give its configuration with --smb-conf", smbConf, err)
		}
		return "", nil, fmt.Errorf("read %s: %w", smbConf, err)
	}
	if sectionDefined(conf, share.Name) {
		return "", nil, fmt.Errorf("%s: [%s]: %w; recall keeps its shares in %s: give another name with --name",
			smbConf, share.Name, ErrShareConflict, filepath.Join(filepath.Dir(smbConf), SambaIncludeName))
	}
	return smbConf, conf, nil
}

// sambaHeader is the head of a new include file.
func sambaHeader() string {
	return fmt.Sprintf("# recall-shares.conf version %d: Samba shares written by recall\n"+
		"# ('recall share bmr-target|bmr-recovery --apply'). Each share is the block\n"+
		"# between its BEGIN and END lines, replaced whole when the command runs again.\n",
		sambaIncludeVersion)
}

// putBlock returns the include file old with share's block replaced or
// added; everything else is kept byte for byte.
func putBlock(old []byte, share SambaShare) []byte {
	block := blockBegin + share.Name + "\n" + share.String() + blockEnd + share.Name + "\n"
	if len(old) == 0 {
		return []byte(sambaHeader() + "\n" + block)
	}
	lines := strings.SplitAfter(string(old), "\n")
	var out strings.Builder
	replaced, skipping := false, false
	for _, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		switch {
		case !skipping && strings.HasPrefix(t, blockBegin) && strings.EqualFold(strings.TrimPrefix(t, blockBegin), share.Name):
			skipping = true
			if !replaced {
				out.WriteString(block)
				replaced = true
			}
		case skipping && strings.HasPrefix(t, blockEnd):
			skipping = false
		case !skipping:
			out.WriteString(l)
		}
	}
	s := out.String()
	if !replaced {
		if !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		s += "\n" + block
	}
	return []byte(s)
}

// confLines calls fn with each logical line of an smb.conf, comments and
// blank lines left out, continuation lines (ending in '\') joined.
func confLines(conf []byte, fn func(line string)) {
	sc := bufio.NewScanner(bytes.NewReader(conf))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var cont string
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if cont != "" {
			l = cont + l
			cont = ""
		}
		if strings.HasSuffix(l, `\`) {
			cont = strings.TrimSuffix(l, `\`)
			continue
		}
		if l == "" || l[0] == '#' || l[0] == ';' {
			continue
		}
		fn(l)
	}
	if cont != "" {
		fn(cont)
	}
}

// sectionDefined reports whether conf has a section [name] (Samba compares
// section names case-insensitively).
func sectionDefined(conf []byte, name string) bool {
	found := false
	confLines(conf, func(l string) {
		if strings.HasPrefix(l, "[") {
			if end := strings.IndexByte(l, ']'); end > 0 && strings.EqualFold(strings.TrimSpace(l[1:end]), name) {
				found = true
			}
		}
	})
	return found
}

// includes reports whether conf has an include line for path.
func includes(conf []byte, path string) bool {
	found := false
	confLines(conf, func(l string) {
		k, v, ok := strings.Cut(l, "=")
		if ok && strings.EqualFold(strings.Join(strings.Fields(k), " "), "include") && filepath.Clean(strings.TrimSpace(v)) == path {
			found = true
		}
	})
	return found
}

// appendLine appends line to the file at path, whose content is conf,
// with a line break before it when conf does not end in one.
func appendLine(path string, conf []byte, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("add %q to %s: %w", line, path, err)
	}
	text := line + "\n"
	if len(conf) > 0 && conf[len(conf)-1] != '\n' {
		text = "\n" + text
	}
	_, err = f.WriteString(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("add %q to %s: %w", line, path, err)
	}
	return nil
}

// ReloadSamba asks the smbd of smbConf to read its configuration again.
// An error says why it could not; the configuration written stays, and
// smbd reads it at its next reload or start.
func ReloadSamba(smbConf string) error {
	out, err := exec.Command("smbcontrol", "-s", smbConf, "smbd", "reload-config").CombinedOutput()
	if err != nil {
		return fmt.Errorf("smbcontrol -s %s smbd reload-config: %w: %s", smbConf, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// SambaMinProtocol returns the "server min protocol" smbConf gives smbd,
// as testparm reports it.
func SambaMinProtocol(smbConf string) (string, error) {
	out, err := exec.Command("testparm", "-s", "--parameter-name", "server min protocol", smbConf).Output()
	if err != nil {
		return "", fmt.Errorf("testparm -s %s: %w", smbConf, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// ValidUnixUser says why name cannot be a Unix user name recall creates,
// nil when it can: what useradd accepts on every distribution (a lower-case
// letter or '_', then lower-case letters, digits, '_' or '-', at most 32).
func ValidUnixUser(name string) error {
	ok := len(name) > 0 && len(name) <= 32
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r == '_':
		case i > 0 && (r >= '0' && r <= '9' || r == '-'):
		default:
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("%w: user name %q: want a lower-case letter or '_', then lower-case letters, digits, '_' or '-', at most 32 in all; give one with --user", ErrBadShare, name)
	}
	return nil
}

// EnsureUnixUser returns the Unix user name, creating it as a system user
// with no home and no login shell when it does not exist (created true).
// An existing user is left as it is.
func EnsureUnixUser(name string) (u *user.User, created bool, err error) {
	if u, err := user.Lookup(name); err == nil {
		return u, false, nil
	} else if !errors.As(err, new(user.UnknownUserError)) {
		return nil, false, fmt.Errorf("look up user %q: %w", name, err)
	}
	if err := ValidUnixUser(name); err != nil {
		return nil, false, err
	}
	out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
	if err != nil {
		return nil, false, fmt.Errorf("useradd %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	u, err = user.Lookup(name)
	if err != nil {
		return nil, true, fmt.Errorf("look up user %q after useradd: %w", name, err)
	}
	return u, true, nil
}

// SambaUserExists reports whether the passdb of smbConf has an account for
// name.
func SambaUserExists(smbConf, name string) (bool, error) {
	cmd := exec.Command("pdbedit", "-s", smbConf, "-L")
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			msg = ": " + strings.TrimSpace(string(ee.Stderr))
		}
		return false, fmt.Errorf("pdbedit -s %s -L: %w%s", smbConf, err, msg)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if u, _, ok := strings.Cut(l, ":"); ok && u == name {
			return true, nil
		}
	}
	return false, nil
}

// SetSambaPassword adds name to the passdb of smbConf, or changes its
// password, and enables the account.
func SetSambaPassword(smbConf, name, password string) error {
	if password == "" || strings.ContainsAny(password, "\r\n") {
		return fmt.Errorf("%w: the Samba password of %q must be one non-empty line", ErrBadShare, name)
	}
	cmd := exec.Command("smbpasswd", "-c", smbConf, "-a", "-s", name)
	cmd.Stdin = strings.NewReader(password + "\n" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("smbpasswd -c %s -a -s %s: %w: %s", smbConf, name, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("smbpasswd", "-c", smbConf, "-e", name).CombinedOutput(); err != nil {
		return fmt.Errorf("smbpasswd -c %s -e %s: %w: %s", smbConf, name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// PrepareBMRStaging readies a staging directory so that the Samba user
// uid:gid can write one computer's image and nothing else:
//
//	<staging>                                  kept as it is; made (root, 0755) when missing
//	<staging>/WindowsImageBackup               root, 0755: nobody else creates folders here
//	<staging>/WindowsImageBackup/<computer>    uid:gid, 0750, with everything under it
//
// so a second computer writing into the share cannot create its own folder
// (Samba refuses it as the file system does). An existing computer folder
// whose name differs only in case is the computer's (Windows names compare
// case-insensitively) and is used as it is named. It returns the
// computer folder.
func PrepareBMRStaging(staging, computer string, uid, gid int) (string, error) {
	if !filepath.IsAbs(staging) {
		return "", fmt.Errorf("%w: staging directory %q is not absolute", ErrBadShare, staging)
	}
	if computer == "" || strings.ContainsAny(computer, "/\x00") || computer == "." || computer == ".." {
		return "", fmt.Errorf("%w: computer name %q cannot name a folder", ErrBadShare, computer)
	}
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return "", fmt.Errorf("create staging directory: %w", err)
	}
	wib := filepath.Join(staging, "WindowsImageBackup")
	if err := os.Mkdir(wib, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create %s: %w", wib, err)
	}
	if err := os.Lchown(wib, 0, 0); err != nil {
		return "", fmt.Errorf("make root the owner of %s: %w", wib, err)
	}
	if err := os.Chmod(wib, 0o755); err != nil {
		return "", fmt.Errorf("chmod 0755 %s: %w", wib, err)
	}
	dir := filepath.Join(wib, computer)
	ents, err := os.ReadDir(wib)
	if err != nil {
		return "", fmt.Errorf("list %s: %w", wib, err)
	}
	for _, e := range ents {
		if e.IsDir() && strings.EqualFold(e.Name(), computer) {
			dir = filepath.Join(wib, e.Name())
			break
		}
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	// What an earlier run of WSB left under another user must be
	// replaceable by this one: WSB deletes the previous Backup folder.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return "", fmt.Errorf("give %s to uid %d: %w", dir, uid, err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		return "", fmt.Errorf("chmod 0750 %s: %w", dir, err)
	}
	return dir, nil
}

// UserIDs returns the numeric uid and gid of u.
func UserIDs(u *user.User) (uid, gid int, err error) {
	uid, err = strconv.Atoi(u.Uid)
	if err == nil {
		gid, err = strconv.Atoi(u.Gid)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("user %q: ids %s:%s: %w", u.Username, u.Uid, u.Gid, err)
	}
	return uid, gid, nil
}
