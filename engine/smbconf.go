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
// <dir of smb.conf>/recall-shares.conf, version 2:
//
//	# recall-shares.conf version 2: Samba shares written by recall ...
//	(free comment lines)
//
//	# recall: begin NAME source=SOURCE kind=KIND
//	(the share's comment lines, its [NAME] section and parameters)
//	# recall: end NAME
//
//	# recall: begin OTHER source=SOURCE kind=KIND
//	...
//
// One block per share, between its markers. NAME is the share's name
// (it holds no '=', which share names cannot), SOURCE the data source
// the share is of (anything up to the last " kind="; a source name may
// hold blanks), KIND "bmr-target" or "bmr-recovery" (no blanks): so a
// block names who installed it. A block is replaced whole when the same
// share (names compare case-insensitively, as Samba's do) is installed
// again by the same source and kind; a share of that name of another
// source or kind is refused, so that one source can never take over
// another's share. The file is replaced atomically, so smbd never reads
// half a file. Lines outside blocks are kept as they are; the first line
// gives the newest version of block the file holds.
//
// Version 1 blocks are still read, and kept as they are beside version 2
// ones:
//
//	# BEGIN recall share NAME
//	...
//	# END recall share NAME
//
// Their source and kind are read from the first comment line recall
// wrote in them (`Staging share of data source "SOURCE"` for a
// bmr-target share, `Recovery point ... of data source "SOURCE"` for a
// bmr-recovery one, SOURCE Go-quoted); a version 1 block that names none
// is replaced by nobody. Replacing a version 1 block writes a version 2
// one.
//
// smb.conf gets one line "include = <the file>" appended, once; recall
// never rewrites or removes a line it did not write.

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
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/recall-backup/recall/internal/atomicfile"
)

// SambaIncludeName is the name of recall's include file, in the directory
// of the smb.conf that includes it.
const SambaIncludeName = "recall-shares.conf"

// DefaultSmbConf is the smb.conf of a Debian/Ubuntu/RHEL Samba.
const DefaultSmbConf = "/etc/samba/smb.conf"

// sambaIncludeVersion is the version of the include file's layout (the
// comment at the top of this file).
const sambaIncludeVersion = 2

// Block markers: version 2, and version 1 (read, never written).
const (
	beginMarker = "# recall: begin "
	endMarker   = "# recall: end "
	blockBegin  = "# BEGIN recall share "
	blockEnd    = "# END recall share "
)

// Kinds of share recall installs, as block markers name them.
const (
	ShareKindTarget   = "bmr-target"
	ShareKindRecovery = "bmr-recovery"
)

// Errors of the share helpers, checked with errors.Is.
var (
	// ErrShareConflict: smb.conf, or a file or registry share it
	// includes, defines a share of that name.
	ErrShareConflict = errors.New("share is defined in smb.conf")
	// ErrShareTaken: recall's include file holds a share of that name of
	// another source or kind.
	ErrShareTaken = errors.New("share name is taken")
	// ErrBadShare: a name or value that cannot be written as given, or a
	// user that cannot serve as given.
	ErrBadShare = errors.New("bad share setting")
)

// SambaShare is one share section of smb.conf, and who installs it.
type SambaShare struct {
	Name    string
	Source  string   // the data source it is of
	Kind    string   // ShareKindTarget or ShareKindRecovery
	Comment []string // lines written as "# ..." before the section
	Params  []SambaParam
}

// SambaParam is one "key = value" line of a section.
type SambaParam struct{ Key, Value string }

// Param is the value of the share's parameter key, "" when it has none.
func (s SambaShare) Param(key string) string {
	for _, p := range s.Params {
		if p.Key == key {
			return p.Value
		}
	}
	return ""
}

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
// a name Windows accepts, a source and kind the block markers can name,
// and text that Samba reads back as written (CheckText).
func (s SambaShare) Check() error {
	if err := s.CheckText(); err != nil {
		return err
	}
	if err := ValidSourceName(s.Source); err != nil {
		return fmt.Errorf("%w: share %q: %v", ErrBadShare, s.Name, err)
	}
	if s.Kind != ShareKindTarget && s.Kind != ShareKindRecovery {
		return fmt.Errorf("%w: share %q: kind %q is neither %s nor %s", ErrBadShare, s.Name, s.Kind, ShareKindTarget, ShareKindRecovery)
	}
	return nil
}

// CheckText says why the smb.conf text of s would not be read by Samba
// as written, nil when it would: its name (ValidShareName), comment lines
// without line breaks (one would end the comment and start a live line),
// and parameter values CheckSambaValue accepts. It is Check without who
// installs the share, for a stanza only printed.
func (s SambaShare) CheckText() error {
	if err := ValidShareName(s.Name); err != nil {
		return err
	}
	for _, c := range s.Comment {
		if strings.ContainsAny(c, "\r\n") {
			return fmt.Errorf("%w: share %q: a comment line holds a line break", ErrBadShare, s.Name)
		}
	}
	for _, p := range s.Params {
		if err := CheckSambaValue(p.Value); err != nil {
			return fmt.Errorf("%w: share %q: %s %q: %v; use a path or name without it", ErrBadShare, s.Name, p.Key, p.Value, err)
		}
	}
	return nil
}

// CheckSambaValue says why smbd would not read value, written after
// "key = " on a line of smb.conf, as written; nil when it would. Samba's
// parser (what testparm -s shows of a file) drops the blanks around a
// value, makes a run of blanks inside it one, and joins the next line to
// a line ending in '\'; lp_string strips a '"' at either end; '%' starts
// a substitution (%U the user, %m the client, %S the share...) at every
// connection, and smb.conf has no way to escape it. None of this can be
// quoted around, so a value that meets any of it is refused, never
// written to be read as something else (another directory, a share that
// is not there).
func CheckSambaValue(value string) error {
	switch {
	case !utf8.ValidString(value):
		return errors.New("it is not valid UTF-8, Samba's unix charset")
	case strings.IndexFunc(value, unicode.IsControl) >= 0:
		return errors.New("it holds a control character (a line break would end the line)")
	case strings.Contains(value, "%"):
		return errors.New("it holds '%', which Samba replaces (%U by the user name, %m by the client's...) and smb.conf cannot escape")
	case value != strings.TrimSpace(value):
		return errors.New("it starts or ends with blanks, which Samba drops")
	case strings.Contains(value, "  "):
		return errors.New("it holds a run of blanks, which Samba reads as one")
	case strings.HasSuffix(value, `\`):
		return errors.New("a '\\' at the end of a line joins the next line to it")
	case strings.HasPrefix(value, `"`) || strings.HasSuffix(value, `"`):
		return errors.New(`it starts or ends with '"', which Samba strips`)
	}
	return nil
}

// shareNameChars are the characters no share name holds: Windows refuses
// "/\[]:|<>+=;,?* in share names, a ']' would end the [section] line
// early, and Samba replaces %-sequences. ('#' is fine: only a line that
// starts with it is a comment, and Windows takes it.)
const shareNameChars = `"/\[]:|<>+=;,?*%`

// ValidShareName says why name cannot name an SMB share, nil when it can:
// 1 to 80 characters (Windows's limit, NNLEN), valid UTF-8, none of
// shareNameChars, no control characters, no blanks at either end nor a
// run of them (Samba trims and joins them), not "global", "homes",
// "printers" or "ipc$" (Samba's special sections).
func ValidShareName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: share name %q: %s; give another with --name", ErrBadShare, name, why)
	}
	switch i := strings.IndexAny(name, shareNameChars); {
	case name == "":
		return bad("empty")
	case !utf8.ValidString(name):
		return bad("not valid UTF-8")
	case utf8.RuneCountInString(name) > 80:
		return bad("longer than 80 characters")
	case i >= 0:
		return bad(fmt.Sprintf("it holds '%c': share names cannot hold any of %s (Windows refuses them, ']' would end the section line, Samba replaces %%-sequences)", name[i], shareNameChars))
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return bad("control characters are not allowed")
	case name != strings.TrimSpace(name):
		return bad("leading or trailing blanks are not allowed")
	case strings.Contains(name, "  "):
		return bad("Samba reads a run of blanks as one")
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
	// OldPath is the path the share's block served before it was
	// replaced, when that was another ("" for a new share, or the same
	// path): a recovery share of one name made again for another point.
	OldPath string
}

// InstallSambaShare puts share into recall's include file next to smbConf
// (replacing the block of the same share of the same source and kind, or
// adding one) and appends "include = <that file>" to smbConf when it has
// no such line. Refused: a share of that name the administrator defines
// in smbConf, a file it includes or the registry (ErrShareConflict: the
// administrator's definition would silently win or lose), and one of
// another source or kind in the include file (ErrShareTaken).
func InstallSambaShare(smbConf string, share SambaShare) (SambaInstall, error) {
	p, err := planShare(smbConf, share)
	if err != nil {
		return SambaInstall{}, err
	}
	inst := SambaInstall{Include: p.include, OldPath: p.oldPath}
	if !bytes.Equal(p.updated, p.old) {
		if err := atomicfile.Write(inst.Include, p.updated, 0o644); err != nil {
			return inst, err
		}
		inst.Changed = true
	}
	if !includes(p.conf, inst.Include) {
		if err := appendLine(p.smbConf, p.conf, "include = "+inst.Include); err != nil {
			return inst, err
		}
		inst.IncludeAdded = true
	}
	return inst, nil
}

// CheckSambaShare says why InstallSambaShare would refuse share, nil
// when it would not: a command checks before it changes anything else.
func CheckSambaShare(smbConf string, share SambaShare) error {
	_, err := planShare(smbConf, share)
	return err
}

// InstalledShare is a share of recall's include file.
type InstalledShare struct {
	Name, Source, Kind string // Source and Kind "" for a version 1 block that names none
	Path               string // its path parameter
	File               string // the include file
}

// InstalledShares lists the shares of recall's include file beside
// smbConf, in the file's order; none when there is no such file.
func InstalledShares(smbConf string) ([]InstalledShare, error) {
	_, include, err := includeOf(smbConf)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(include)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", include, err)
	}
	var out []InstalledShare
	for _, bl := range parseBlocks(b) {
		out = append(out, InstalledShare{Name: bl.Name, Source: bl.Source, Kind: bl.Kind,
			Path: blockParam(b[bl.start:bl.end], "path"), File: include})
	}
	return out, nil
}

// Serves reports whether s is a recovery share of point id of source:
// one whose path is the point's directory by id in a mount
// (MOUNTPOINT/SOURCE/ID), as 'recall share bmr-recovery' writes it.
func (s InstalledShare) Serves(source, id string) bool {
	return s.Kind == ShareKindRecovery && s.Source == source &&
		filepath.Base(s.Path) == id && filepath.Base(filepath.Dir(s.Path)) == source
}

// ShareHolds returns PruneOptions.Held for the recovery shares installed
// beside smbConf: a point one of them serves is kept by retention, since
// a machine may be restoring from it (its restore takes hours, and a
// prune in the middle would leave Windows RE reading a vanished image).
// Only 'recall forget', which an administrator names the point to, drops
// it. An include file that cannot be read is an error: prune cannot then
// tell which points are held, and forgets nothing rather than guess.
func ShareHolds(smbConf string) (func(*Point) string, error) {
	shares, err := InstalledShares(smbConf)
	if err != nil {
		return nil, fmt.Errorf("recovery shares not known, so prune cannot tell which points they hold: %w; fix the file, or name another Samba configuration with --smb-conf", err)
	}
	return func(p *Point) string {
		var names []string
		file := ""
		for _, s := range shares {
			if s.Serves(p.Source, p.ID.String()) {
				names = append(names, "["+s.Name+"]")
				file = s.File
			}
		}
		if names == nil {
			return ""
		}
		return fmt.Sprintf("served by recovery share %s of %s, which a machine may be restoring from; held until the share serves another point or its block is removed", strings.Join(names, " "), file)
	}, nil
}

// includeOf returns smbConf made absolute, and recall's include file
// beside it.
func includeOf(smbConf string) (abs, include string, err error) {
	if abs, err = filepath.Abs(smbConf); err != nil {
		return "", "", err
	}
	return abs, filepath.Join(filepath.Dir(abs), SambaIncludeName), nil
}

// sharePlan is what installing a share reads and would write.
type sharePlan struct {
	smbConf      string // absolute
	conf         []byte // its content
	include      string // recall's include file beside it
	old, updated []byte // the include file's content, and with the share put in
	oldPath      string // SambaInstall.OldPath
}

// planShare checks share against smbConf and recall's include file
// beside it, and returns what installing it writes.
func planShare(smbConf string, share SambaShare) (sharePlan, error) {
	var p sharePlan
	if err := share.Check(); err != nil {
		return p, err
	}
	var err error
	if p.smbConf, p.include, err = includeOf(smbConf); err != nil {
		return p, err
	}
	if p.conf, err = os.ReadFile(p.smbConf); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return p, fmt.Errorf("read %s: %w: install Samba (Debian package samba) or give its configuration with --smb-conf", p.smbConf, err)
		}
		return p, fmt.Errorf("read %s: %w", p.smbConf, err)
	}
	where, err := shareDefined(p.smbConf, p.conf, p.include, share.Name)
	if err != nil {
		return p, err
	}
	if where != "" {
		return p, fmt.Errorf("%s: [%s]: %w; recall keeps its shares in %s: give another name with --name",
			where, share.Name, ErrShareConflict, p.include)
	}
	p.old, err = os.ReadFile(p.include)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return p, fmt.Errorf("read %s: %w", p.include, err)
	}
	if p.updated, err = putBlock(p.old, share); err != nil {
		return p, fmt.Errorf("%s: %w", p.include, err)
	}
	for _, b := range parseBlocks(p.old) {
		if strings.EqualFold(b.Name, share.Name) {
			if old := blockParam(p.old[b.start:b.end], "path"); old != share.Param("path") {
				p.oldPath = old
			}
		}
	}
	return p, nil
}

// blockParam is the value of key in a block of the include file, "" when
// it has none.
func blockParam(block []byte, key string) string {
	v := ""
	confLines(block, func(l string) {
		if k, val, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == key {
			v = strings.TrimSpace(val)
		}
	})
	return v
}

// testparmProgram resolves an smb.conf as smbd reads it: included files,
// registry shares. Tests take it away to exercise the fallback.
var testparmProgram = "testparm"

// shareDefined says where the administrator's configuration defines a
// share name (section names compare case-insensitively, as Samba's do),
// "" when it does not: smbConf (content conf), a file it includes or a
// registry share, as testparm resolves them, recall's own include file
// left out. Without testparm it reads smbConf alone.
func shareDefined(smbConf string, conf []byte, include, name string) (string, error) {
	prog, err := exec.LookPath(testparmProgram)
	if err != nil {
		if sectionDefined(conf, name) {
			return smbConf, nil
		}
		return "", nil
	}
	// A copy without the line that includes recall's file, so that
	// recall's own block of that name is not taken for the
	// administrator's. Where the copy lies does not matter: Samba resolves
	// a relative include from the working directory, not from the
	// including file's.
	f, err := os.CreateTemp("", "recall-smb-*.conf")
	if err != nil {
		return "", fmt.Errorf("check share [%s] with testparm: %w", name, err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(withoutInclude(conf, include))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("check share [%s] with testparm: %w", name, err)
	}
	cmd := exec.Command(prog, "-s", "--section-name", name, f.Name())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return smbConf + " (or a file or registry share it includes)", nil
	case errors.As(err, &ee) && strings.Contains(stderr.String(), "Unknown section"):
		return "", nil
	default:
		return "", fmt.Errorf("testparm -s --section-name %s %s: %w: %s; fix what it reports ('testparm -s %s' shows it)",
			name, smbConf, err, strings.TrimSpace(stderr.String()), smbConf)
	}
}

// withoutInclude returns conf with its lines that include path blanked.
func withoutInclude(conf []byte, path string) []byte {
	lines := strings.SplitAfter(string(conf), "\n")
	for i, l := range lines {
		if includes([]byte(l), path) {
			lines[i] = "\n"
		}
	}
	return []byte(strings.Join(lines, ""))
}

// sambaHeader is the head of a new include file; its first line is
// rewritten to the current version when a block is put into an older
// file.
func sambaHeader() string {
	return headerLine() +
		"# ('recall share bmr-target|bmr-recovery --apply'). Each share is the block\n" +
		"# between its begin and end lines, replaced whole when the command runs again.\n"
}

const headerPrefix = "# recall-shares.conf version "

func headerLine() string {
	return fmt.Sprintf("%s%d: Samba shares written by recall\n", headerPrefix, sambaIncludeVersion)
}

// includeBlock is one share's block in the include file: [start, end)
// are the byte offsets of its lines, markers included.
type includeBlock struct {
	Name, Source, Kind string // Source and Kind "" when a version 1 block names none
	Version            int
	start, end         int
}

// v1Source finds the source a version 1 block's comment names.
var v1Source = regexp.MustCompile(`^# (Staging share|Recovery point .*) of data source ("(?:[^"\\]|\\.)*")`)

// parseBlocks returns the blocks of an include file, in order. A block
// whose end line is missing runs to the end of the file.
func parseBlocks(b []byte) []includeBlock {
	var out []includeBlock
	var cur *includeBlock
	at := 0
	for _, l := range strings.SplitAfter(string(b), "\n") {
		t := strings.TrimRight(l, "\r\n")
		switch {
		case cur == nil && strings.HasPrefix(t, beginMarker):
			cur = &includeBlock{Version: 2, start: at}
			rest := strings.TrimPrefix(t, beginMarker)
			if k := strings.LastIndex(rest, " kind="); k >= 0 {
				cur.Kind = rest[k+len(" kind="):]
				rest = rest[:k]
			}
			cur.Name, cur.Source, _ = strings.Cut(rest, " source=")
		case cur == nil && strings.HasPrefix(t, blockBegin):
			cur = &includeBlock{Version: 1, start: at, Name: strings.TrimPrefix(t, blockBegin)}
		case cur != nil && cur.Version == 1 && cur.Source == "" && strings.HasPrefix(t, "# "):
			if m := v1Source.FindStringSubmatch(t); m != nil {
				if src, err := strconv.Unquote(m[2]); err == nil {
					cur.Source, cur.Kind = src, ShareKindRecovery
					if m[1] == "Staging share" {
						cur.Kind = ShareKindTarget
					}
				}
			}
		}
		at += len(l)
		if cur != nil && (cur.Version == 2 && strings.HasPrefix(t, endMarker) || cur.Version == 1 && strings.HasPrefix(t, blockEnd)) {
			cur.end = at
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		cur.end = at
		out = append(out, *cur)
	}
	return out
}

// putBlock returns the include file old with share's block replaced or
// added; everything else is kept byte for byte but the version in the
// first line. A block of that name of another source or kind, or a
// version 1 block naming no source, is refused (ErrShareTaken).
func putBlock(old []byte, share SambaShare) ([]byte, error) {
	block := fmt.Sprintf("%s%s source=%s kind=%s\n%s%s%s\n", beginMarker, share.Name, share.Source, share.Kind, share.String(), endMarker, share.Name)
	if len(old) == 0 {
		return []byte(sambaHeader() + "\n" + block), nil
	}
	var out strings.Builder
	replaced, at := false, 0
	for _, b := range parseBlocks(old) {
		if !strings.EqualFold(b.Name, share.Name) {
			continue
		}
		if b.Source == "" {
			return nil, fmt.Errorf("share [%s]: %w: a block of an older recall holds it and names no source: give the %s share of source %q another name with --name, or delete that block (from its BEGIN to its END line) by hand",
				share.Name, ErrShareTaken, share.Kind, share.Source)
		}
		if b.Source != share.Source || b.Kind != share.Kind {
			return nil, fmt.Errorf("share [%s]: %w: it is the %s share of source %q, which stays: give the %s share of source %q another name with --name",
				share.Name, ErrShareTaken, b.Kind, b.Source, share.Kind, share.Source)
		}
		out.Write(old[at:b.start])
		if !replaced {
			out.WriteString(block)
			replaced = true
		}
		at = b.end
	}
	out.Write(old[at:])
	s := out.String()
	if !replaced {
		if !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		s += "\n" + block
	}
	if v, _, ok := strings.Cut(strings.TrimPrefix(s, headerPrefix), ":"); ok && strings.HasPrefix(s, headerPrefix) {
		if n, err := strconv.Atoi(v); err == nil && n < sambaIncludeVersion {
			_, rest, _ := strings.Cut(s, "\n")
			s = headerLine() + rest
		}
	}
	return []byte(s), nil
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

// UnixAccount is a user account as the system's user database has it.
type UnixAccount struct {
	Name     string
	UID, GID int
	Shell    string // "/bin/sh" when the entry gives none, as login(1) takes it
	// System: a system account, with a uid under UID_MIN of
	// /etc/login.defs (1000 when unset) and not root.
	System bool
}

// loginDefs is where useradd finds the uid ranges.
const loginDefs = "/etc/login.defs"

// LookupUnixAccount returns the account name as getent(1) finds it in the
// system's user database (files, LDAP: whatever NSS serves); ok false
// when there is none.
func LookupUnixAccount(name string) (a UnixAccount, ok bool, err error) {
	out, err := exec.Command("getent", "passwd", name).Output()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() == 2: // getent: key not found
		return UnixAccount{}, false, nil
	case err != nil:
		return UnixAccount{}, false, fmt.Errorf("getent passwd %s: %w", name, err)
	}
	if a, err = parsePasswd(string(out)); err != nil {
		return UnixAccount{}, false, fmt.Errorf("getent passwd %s: %w", name, err)
	}
	defs, err := os.ReadFile(loginDefs)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return UnixAccount{}, false, fmt.Errorf("read %s: %w", loginDefs, err)
	}
	a.System = a.UID > 0 && a.UID < systemUIDLimit(defs)
	return a, true, nil
}

// parsePasswd reads one passwd(5) line: name:password:uid:gid:gecos:home:shell.
func parsePasswd(line string) (UnixAccount, error) {
	f := strings.Split(strings.TrimRight(line, "\r\n"), ":")
	if len(f) != 7 {
		return UnixAccount{}, fmt.Errorf("passwd entry %q: want 7 fields", line)
	}
	uid, err := strconv.Atoi(f[2])
	if err != nil {
		return UnixAccount{}, fmt.Errorf("passwd entry %q: uid: %w", line, err)
	}
	gid, err := strconv.Atoi(f[3])
	if err != nil {
		return UnixAccount{}, fmt.Errorf("passwd entry %q: gid: %w", line, err)
	}
	a := UnixAccount{Name: f[0], UID: uid, GID: gid, Shell: f[6]}
	if a.Shell == "" {
		a.Shell = "/bin/sh"
	}
	return a, nil
}

// systemUIDLimit is UID_MIN of a login.defs: the first uid of the
// accounts of people; system accounts are below it.
func systemUIDLimit(defs []byte) int {
	limit := 1000
	for _, l := range strings.Split(string(defs), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == "UID_MIN" {
			if n, err := strconv.Atoi(f[1]); err == nil && n > 0 {
				limit = n
			}
		}
	}
	return limit
}

// CheckBMRUser says why the existing account a cannot be the Samba user
// of source's bmr-target share, nil when it can. That user gets a Samba
// password and the computer's folder, so root (uid 0) and Samba's guest
// account (guest, SambaGuestAccount), whom anyone may be, never serve;
// any other existing account serves only when it is the one recorded for
// the source (recorded) or the administrator says so (allowExisting):
// being a system account without a login shell says nothing of what else
// it owns (www-data, daemon, backup). An account recall creates is
// recorded for its source.
func CheckBMRUser(a UnixAccount, guest, source string, recorded, allowExisting bool) error {
	switch {
	case a.UID == 0:
		return fmt.Errorf("%w: user %s has uid 0: the account WSB logs on as must not be root; give another with --user (recall creates a system user when it does not exist)", ErrBadShare, a.Name)
	case a.Name == guest:
		return fmt.Errorf("%w: user %s is Samba's guest account ('guest account' in smb.conf), which anyone connecting as a guest is: give another with --user (recall creates a system user when it does not exist)", ErrBadShare, a.Name)
	case recorded || allowExisting:
		return nil
	}
	what := "a system account"
	if !a.System {
		what = "not a system account"
	}
	return fmt.Errorf("%w: user %s (uid %d, shell %s) exists, is %s, and is not the one recorded for source %s: it would get a Samba password and the computer's folder, and whatever else it owns would be within reach of WSB's password: give another with --user (recall creates a system user when it does not exist), or take this one anyway with --allow-existing-user",
		ErrBadShare, a.Name, a.UID, a.Shell, what, source)
}

// DefaultGuestAccount is Samba's guest account when smb.conf sets none.
const DefaultGuestAccount = "nobody"

// SambaGuestAccount returns the "guest account" smbConf gives smbd, as
// testparm resolves it; Samba's default when testparm is not installed or
// smbConf does not exist (then no smbd reads another).
func SambaGuestAccount(smbConf string) (string, error) {
	prog, err := exec.LookPath(testparmProgram)
	if err != nil {
		return DefaultGuestAccount, nil
	}
	if _, err := os.Stat(smbConf); errors.Is(err, fs.ErrNotExist) {
		return DefaultGuestAccount, nil
	}
	out, err := exec.Command(prog, "-s", "--parameter-name", "guest account", smbConf).Output()
	if err != nil {
		return "", fmt.Errorf("testparm -s --parameter-name 'guest account' %s: %w; fix what 'testparm -s %s' reports", smbConf, err, smbConf)
	}
	if g := strings.TrimSpace(string(out)); g != "" {
		return g, nil
	}
	return DefaultGuestAccount, nil
}

// PlanSambaPassword says what to do with the Samba account of user for
// source's bmr-target share: set the password given (set; also enables
// the account), make a new one (generate), or leave the account as it is
// (neither). exists: the account is in the passdb; recorded: it is the
// user recorded for the source; file and env name where a password was
// given, "" for none. A new account gets the password given or a new one;
// an existing account's password is reset only with a password from a
// file, or from the environment for the account recorded for the source.
func PlanSambaPassword(user, source string, exists, recorded bool, file, env string) (set, generate bool, err error) {
	switch {
	case !exists:
		return file != "" || env != "", file == "" && env == "", nil
	case file != "":
		return true, false, nil
	case env != "" && recorded:
		return true, false, nil
	case env != "":
		return false, false, fmt.Errorf("%w: Samba account %s exists and is not the one recorded for source %s: the password in %s does not reset it; give --password-file to reset its password (and enable the account), or unset %s to leave it as it is",
			ErrBadShare, user, source, env, env)
	}
	return false, false, nil
}

// EnsureUnixUser returns the Unix user name, creating it as a system user
// with no home and no login shell when it does not exist (created true).
// An existing user is left as it is: check it with CheckBMRUser first.
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
	// What the user owns already is left alone: a chown sets the change
	// time, which is in the image's print (wsb.Image.Print), and a
	// second run would make the image ingested last look new.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid && int(st.Gid) == gid {
			return nil
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
