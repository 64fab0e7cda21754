package engine

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
	"golang.org/x/sys/unix"
)

// ErrBadOption marks a backup option that cannot be used as given (a bad
// pattern, size or name); the command line reports it as a usage error.
var ErrBadOption = errors.New("bad backup option")

// Exclude says what a backup leaves out. It is recorded in the point's
// manifest as given, so a point says what it does not hold.
//
// Patterns follow .gitignore: a pattern without '/' (other than a
// trailing one) matches a name at any depth; a pattern with a '/' at its
// start or in its middle matches the path from the backed-up root ("/a/b"
// and "a/b" both match only <root>/a/b); "*" and "?" never match '/', "**"
// matches any number of directories ("**/cache", "a/**/b"; "a/**" is what
// is inside a, not a itself); "[...]" is a class of characters; '{', '}'
// and ',' are ordinary characters; a trailing '/' matches directories
// only; '\' escapes the next character. An excluded directory is never
// listed. Negation ("!pattern") is not supported.
type Exclude struct {
	Patterns []string      `json:"patterns,omitempty"`
	Files    []ExcludeFile `json:"files,omitempty"`
	// Caches leaves out the content of directories holding a valid
	// CACHEDIR.TAG (https://bford.info/cachedir/); the tag file is kept,
	// so a restore shows the directory was a cache.
	Caches bool `json:"caches,omitempty"`
	// IfPresent leaves out the content of directories holding an entry
	// of one of these names; that entry is kept.
	IfPresent []string `json:"if_present,omitempty"`
	// LargerThan leaves out regular files of more bytes than this (0:
	// no limit).
	LargerThan int64 `json:"larger_than,omitempty"`
	// OneFileSystem stays on the file system of the backed-up path:
	// other mount points are kept as empty directories and listed in the
	// point's mount_points.
	OneFileSystem bool `json:"one_file_system,omitempty"`
}

// ExcludeFile is a file of patterns, one a line, as read at backup time.
type ExcludeFile struct {
	Path     string   `json:"path"`
	Patterns []string `json:"patterns"`
}

// ReadExcludeFile reads a pattern file: one pattern a line; blank lines
// and lines starting with '#' are ignored, as are spaces around a pattern.
// A pattern that cannot be used is an error naming the file and its line
// (path:7: ...), wrapping ErrBadOption: the ExcludeFile keeps no line
// numbers.
func ReadExcludeFile(path string) (ExcludeFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return ExcludeFile{}, fmt.Errorf("exclude file: %w", err)
	}
	defer f.Close()
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	xf := ExcludeFile{Path: abs, Patterns: []string{}}
	sc := bufio.NewScanner(f)
	// Every bad line is named, a line each (up to maxBadLines), so one
	// run of the command finds them all.
	const maxBadLines = 20
	var bad []error
	nbad := 0
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := compilePattern(line); err != nil {
			if nbad++; nbad <= maxBadLines {
				bad = append(bad, fmt.Errorf("%s:%d: %w", path, n, err))
			}
			continue
		}
		xf.Patterns = append(xf.Patterns, line)
	}
	if err := sc.Err(); err != nil {
		return ExcludeFile{}, fmt.Errorf("exclude file %s: %w", path, err)
	}
	if nbad > maxBadLines {
		bad = append(bad, fmt.Errorf("%s: %d more bad lines", path, nbad-maxBadLines))
	}
	if len(bad) > 0 {
		return ExcludeFile{}, errors.Join(bad...)
	}
	return xf, nil
}

// Check reports the first option that cannot be used, wrapping
// ErrBadOption, or nil.
func (x *Exclude) Check() error {
	_, err := x.compile()
	return err
}

// IsZero reports whether x leaves nothing out.
func (x *Exclude) IsZero() bool {
	return len(x.Patterns) == 0 && len(x.Files) == 0 && !x.Caches && len(x.IfPresent) == 0 &&
		x.LargerThan == 0 && !x.OneFileSystem
}

// pattern is one compiled exclude pattern.
type pattern struct {
	glob     string // doublestar pattern
	anchored bool   // matched against the path from the root, else against the name
	dirOnly  bool
}

func compilePattern(s string) (pattern, error) {
	bad := func(why string) (pattern, error) {
		return pattern{}, fmt.Errorf("%w: exclude pattern %q: %s", ErrBadOption, s, why)
	}
	// Advice is in words, not the pattern to type: the command line
	// shows a backslash outside a quoted name doubled (oneLine), and
	// "write \\!" was typed as shown, leaving out nothing.
	p := pattern{glob: s}
	if strings.HasPrefix(s, "!") {
		return bad("negation is not supported; for a name starting with '!', put a backslash before the '!'")
	}
	for strings.HasSuffix(p.glob, "/") && !strings.HasSuffix(p.glob, `\/`) {
		p.glob, p.dirOnly = p.glob[:len(p.glob)-1], true
	}
	if strings.HasPrefix(p.glob, "/") {
		p.glob, p.anchored = strings.TrimLeft(p.glob, "/"), true
	}
	if strings.Contains(p.glob, "/") {
		p.anchored = true
	}
	if p.glob == "" {
		return bad("it matches nothing; to leave out everything, back up nothing")
	}
	if strings.HasSuffix(p.glob, "/**") {
		// In .gitignore "sub/**" is everything inside sub, not sub
		// itself, which doublestar's "**" (zero or more directories)
		// matches too: sub is kept, empty, with its owner, mode and
		// times. "/*" wants one name more.
		p.glob += "/*"
	}
	p.glob = literalBraces(p.glob)
	if !doublestar.ValidatePattern(p.glob) {
		if n := len(p.glob) - len(strings.TrimRight(p.glob, `\`)); n%2 == 1 {
			return bad("it ends in a backslash, which escapes nothing; for a name ending in a backslash, end the pattern with two")
		}
		return bad("a '[' starts a class of characters, which needs at least one character and a closing ']'; for a '[' itself, put a backslash before it")
	}
	return p, nil
}

// literalBraces escapes the '{' and '}' of a gitignore glob for
// doublestar, which reads them as alternation ("{a,b}"): in .gitignore
// they are ordinary characters, and "{x}" must leave out the file named
// "{x}", not x. Escaped characters and character classes (where
// doublestar takes braces as they are) are copied unchanged; a class
// without its ']' is too, for doublestar to refuse.
func literalBraces(glob string) string {
	var b strings.Builder
	for i := 0; i < len(glob); i++ {
		switch c := glob[i]; c {
		case '\\':
			end := min(i+2, len(glob))
			b.WriteString(glob[i:end])
			i = end - 1
		case '[':
			end := len(glob)
			for j := i + 1; j < len(glob); j++ {
				if glob[j] == '\\' {
					j++
				} else if glob[j] == ']' {
					end = j + 1
					break
				}
			}
			b.WriteString(glob[i:end])
			i = end - 1
		case '{', '}':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// match reports whether the entry at rel (the path from the backed-up
// root, '/'-separated), named name, is left out.
func (p *pattern) match(rel, name string, isDir bool) bool {
	if p.dirOnly && !isDir {
		return false
	}
	subject := name
	if p.anchored {
		subject = rel
	}
	ok, _ := doublestar.Match(p.glob, subject) // validated in compilePattern
	return ok
}

// excluder is an Exclude ready to be asked about entries.
type excluder struct {
	patterns   []pattern
	needType   bool // some pattern matches directories only
	caches     bool
	ifPresent  []string
	largerThan int64
	oneFS      bool
}

func (x *Exclude) compile() (*excluder, error) {
	e := &excluder{caches: x.Caches, ifPresent: x.IfPresent, largerThan: x.LargerThan, oneFS: x.OneFileSystem}
	add := func(list []string) error {
		for _, s := range list {
			p, err := compilePattern(s)
			if err != nil {
				return err
			}
			e.patterns = append(e.patterns, p)
			e.needType = e.needType || p.dirOnly
		}
		return nil
	}
	if err := add(x.Patterns); err != nil {
		return nil, err
	}
	for _, f := range x.Files {
		if err := add(f.Patterns); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
	}
	for _, n := range x.IfPresent {
		if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\x00") {
			return nil, fmt.Errorf("%w: exclude-if-present %q: give a file name, not a path or pattern", ErrBadOption, n)
		}
	}
	if x.LargerThan < 0 {
		return nil, fmt.Errorf("%w: exclude-larger-than %d: a size cannot be negative", ErrBadOption, x.LargerThan)
	}
	return e, nil
}

// byName reports whether a pattern leaves out rel whatever its type; it
// needs no stat. A directory-only pattern is asked with byType.
func (e *excluder) byName(rel, name string) bool {
	for i := range e.patterns {
		if p := &e.patterns[i]; !p.dirOnly && p.match(rel, name, false) {
			return true
		}
	}
	return false
}

// byType reports whether a directory-only pattern leaves out the
// directory rel.
func (e *excluder) byType(rel, name string) bool {
	for i := range e.patterns {
		if p := &e.patterns[i]; p.dirOnly && p.match(rel, name, true) {
			return true
		}
	}
	return false
}

// cacheDirSignature starts every valid CACHEDIR.TAG.
const cacheDirSignature = "Signature: 8a477f597d28d172789f06886806bc55"

// marker returns the name of the entry that marks dir as one whose
// content is left out (a valid CACHEDIR.TAG or an --exclude-if-present
// name), or "". It opens or stats only those names; dir is not listed.
func (e *excluder) marker(dir string) string {
	if e.caches {
		// Non-blocking and not following a symlink: a FIFO or a link
		// named CACHEDIR.TAG must not stall or steer the backup.
		f, err := os.OpenFile(filepath.Join(dir, "CACHEDIR.TAG"), os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW, 0)
		if err == nil {
			buf := make([]byte, len(cacheDirSignature))
			var st unix.Stat_t
			if unix.Fstat(int(f.Fd()), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
				_, err = io.ReadFull(f, buf)
			}
			f.Close()
			if err == nil && string(buf) == cacheDirSignature {
				return "CACHEDIR.TAG"
			}
		}
	}
	for _, n := range e.ifPresent {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			return n
		}
	}
	return ""
}
