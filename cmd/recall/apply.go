package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/internal/tomlmsg"
	"github.com/urfave/cli/v2"
)

// groupsFile is the grammar of groups.toml: one [[group]] table per
// protection group, its keys the policy flags' names with '_' for '-'
// (see the README). A key not known is refused: a misspelt key silently
// taking its default would be a policy nobody asked for.
type groupsFile struct {
	Group []groupDecl `toml:"group"`
}

type groupDecl struct {
	Name          string   `toml:"name"`
	Members       []string `toml:"members"`
	engine.Policy          // its fields' toml tags are the keys
}

func init() {
	register(&cli.Command{
		Name:  "apply",
		Usage: "make the protection groups what a groups.toml file declares (idempotent; prints the changes)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Required: true, Usage: "the groups file `FILE` (TOML)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the changes without making them"},
			&cli.BoolFlag{Name: "json", Usage: "print the changes as a JSON array"},
		},
		Action: func(c *cli.Context) error {
			decl, lines, warns, err := readGroupsFile(c.String("file"))
			if err != nil {
				return err
			}
			err = withCatalog(c, catalogWait, func(cat *engine.Catalog) error {
				if err := sharedMembers(c.String("file"), decl, lines, cat); err != nil {
					return err
				}
				tst, err := cat.TapeState()
				if err != nil {
					return err
				}
				for _, g := range decl {
					if err := engine.CheckTapeGoalPool(tst, g.Name, g.Policy, time.Now()); err != nil {
						// Not flagsAsKeys: the advice names commands to run.
						return usagef("groups file %s: %v", c.String("file"), err)
					}
					if w := engine.TapeGoalPoolMissing(tst, g.Name, g.Policy); w != "" {
						warns = append(warns, w)
					}
				}
				for _, g := range decl {
					warns = append(warns, g.ExcludeSlips()...)
				}
				for _, w := range warns {
					warnf("%s", w)
				}
				changes, err := cat.ApplyGroups(decl, c.Bool("dry-run"), time.Now())
				if errors.Is(err, engine.ErrBadPolicy) {
					// The checks name command-line flags; the file has keys.
					return usagef("groups file %s: %s", c.String("file"), flagsAsKeys(err.Error()))
				}
				if err != nil {
					return err
				}
				if c.Bool("json") {
					if changes == nil {
						changes = []engine.GroupChange{}
					}
					return printJSON(c, changes)
				}
				w := report(c)
				verb := map[string]string{"create": "+ create", "update": "~ update", "unchanged": "= unchanged", "absent": "? absent"}
				n := 0
				for _, ch := range changes {
					fmt.Fprintf(w, "%s group %s\n", verb[ch.Action], ch.Group)
					if ch.Action == "create" || ch.Action == "update" || ch.Action == "absent" {
						for _, l := range ch.Lines {
							fmt.Fprintf(w, "    %s\n", l)
						}
					}
					if ch.Action == "create" || ch.Action == "update" {
						n++
					}
				}
				switch {
				case c.Bool("dry-run"):
					fmt.Fprintf(w, "dry run: %d group(s) would change\n", n)
				default:
					fmt.Fprintf(w, "%d group(s) changed\n", n)
				}
				return nil
			})
			if c.Bool("dry-run") {
				return err
			}
			return wakeAfter(c, err)
		},
	})
}

// readGroupsFile parses a groups file; what is wrong with it is a usage
// error naming the file, and the line where the decoder or keyLines
// knows it. It returns where each group's keys are (see keyLines), and
// warnings of policies that are odd (policyOddities).
func readGroupsFile(path string) ([]engine.Group, groupsLines, []string, error) {
	text, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, groupsLines{}, nil, usagef("groups file %s: no such file", path)
	}
	if err != nil {
		return nil, groupsLines{}, nil, usagef("groups file %s: %v", path, err)
	}
	fromJSON := false
	if t := bytes.TrimLeft(bytes.TrimPrefix(text, []byte("\xef\xbb\xbf")), " \t\r\n"); isJSONGroups(t) {
		fromJSON = true
		// What 'recall group list --json' (or 'group show --json')
		// printed, kept as the README advises: read as the TOML it
		// stands for.
		if text, err = groupsJSONAsTOML(t); err != nil {
			return nil, groupsLines{}, nil, usagef("groups file %s: %v (a JSON groups file is what 'recall group list --json' or 'recall group show NAME --json' prints)", path, err)
		}
	}
	var f groupsFile
	md, err := toml.Decode(string(text), &f)
	if err != nil {
		return nil, groupsLines{}, nil, usagef("groups file %s: %s", path, tomlmsg.Message(err))
	}
	lines := groupsLines{} // from JSON: the TOML's lines are not the file's
	if !fromJSON {
		lines = keyLines(string(text))
	}
	if un := md.Undecoded(); len(un) > 0 {
		known := groupKeys()
		var msgs []string
		for _, k := range un {
			// The decoder lists a key of [[group]] once per table holding
			// it; unknownKey names every line.
			if m := unknownKey(k, f.Group, lines, known); !slices.Contains(msgs, m) {
				msgs = append(msgs, m)
			}
		}
		return nil, groupsLines{}, nil, usagef("groups file %s: %s; a group's keys are name, members and the policy flags with '_' for '-' (%s)", path, strings.Join(msgs, "; "), strings.Join(known[2:], ", "))
	}
	// The keys each group gives, for the values given empty: the struct
	// cannot tell at = [] from no at.
	var given struct {
		Group []map[string]any `toml:"group"`
	}
	if _, err := toml.Decode(string(text), &given); err != nil {
		return nil, groupsLines{}, nil, usagef("groups file %s: %s", path, tomlmsg.Message(err))
	}
	var out []engine.Group
	var warns []string
	first := map[string]int{} // group name -> index of its first table
	for i, d := range f.Group {
		if d.Name == "" {
			return nil, groupsLines{}, nil, usagef("groups file %s: %sgroup %d has no name", path, at(lines.header(i)), i+1)
		}
		if j, dup := first[d.Name]; dup {
			return nil, groupsLines{}, nil, usagef("groups file %s: %sgroup %s is declared twice (first on line %d): keep one", path, at(lines.key(i, "name")), d.Name, lines.key(j, "name"))
		}
		first[d.Name] = i
		// Checked here, not only by ApplyGroups, to say the line.
		if err := engine.CheckGroupName(d.Name); err != nil {
			return nil, groupsLines{}, nil, usagef("groups file %s: %s%v", path, at(lines.key(i, "name")), err)
		}
		if key, msg := emptyKeys(given.Group[i]); key != "" {
			return nil, groupsLines{}, nil, usagef("groups file %s: %sgroup %s: %s", path, at(lines.key(i, key)), d.Name, msg)
		}
		if c := policyConflict(d.Policy); c != nil {
			key := strings.ReplaceAll(c.flag, "-", "_")
			return nil, groupsLines{}, nil, usagef("groups file %s: %sgroup %s: %s %s", path, at(lines.key(i, key)), d.Name, key, flagsAsKeys(c.msg))
		}
		// Checked here, not only by ApplyGroups, to say the value's line.
		if err := d.Policy.Check(); err != nil {
			line := 0
			if m := flagRE.FindStringSubmatch(err.Error()); m != nil {
				line = lines.key(i, strings.ReplaceAll(m[1], "-", "_"))
			}
			return nil, groupsLines{}, nil, usagef("groups file %s: %sgroup %s: %s", path, at(line), d.Name, flagsAsKeys(err.Error()))
		}
		for _, o := range policyOddities(d.Policy) {
			key := strings.ReplaceAll(o.flag, "-", "_")
			warns = append(warns, fmt.Sprintf("groups file %s: %sgroup %s: %s: %s", path, at(lines.key(i, key)), d.Name, key, flagsAsKeys(o.msg)))
		}
		for _, m := range d.Members {
			// A declaration means the same wherever it is applied from
			// (cron, a systemd unit, a shell): a relative member would
			// be taken from the working directory, and applying the
			// file again elsewhere would move the group.
			if m != "" && !filepath.IsAbs(m) {
				return nil, groupsLines{}, nil, usagef("groups file %s: %sgroup %s: member %q is a relative path: give it absolute (applied from elsewhere, it would name another directory)", path, at(lines.key(i, "members")), d.Name, m)
			}
			if _, err := os.Lstat(m); m != "" && errors.Is(err, os.ErrNotExist) {
				warns = append(warns, fmt.Sprintf("groups file %s: %sgroup %s: member %s does not exist (yet): its backups fail until it does (recall serve raises an alert for each)", path, at(lines.key(i, "members")), d.Name, m))
			}
		}
		out = append(out, engine.Group{Name: d.Name, Members: d.Members, Policy: d.Policy})
	}
	return out, lines, warns, nil
}

// isJSONGroups says whether t (a groups file, white space trimmed) is
// JSON: an object, or an array of objects (or none). A TOML file starts
// with a table's '[', then its name or a second '['.
func isJSONGroups(t []byte) bool {
	if len(t) == 0 {
		return false
	}
	if t[0] == '{' {
		return true
	}
	rest := bytes.TrimLeft(t[1:], " \t\r\n")
	return t[0] == '[' && len(rest) > 0 && (rest[0] == '{' || rest[0] == ']')
}

// groupsJSONAsTOML turns the groups 'recall group list --json' prints (an
// array; 'group show --json' prints one) into the groups file they stand
// for: each group's name, members and policy keys, whatever else it
// records (policy_version, created, modified) left out.
func groupsJSONAsTOML(b []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more follows the first JSON value: give one array of groups")
	}
	list, ok := v.([]any)
	if !ok {
		list = []any{v}
	}
	var number func(v any) any
	number = func(v any) any {
		switch x := v.(type) {
		case json.Number:
			if i, err := x.Int64(); err == nil {
				return i
			}
			f, _ := x.Float64()
			return f
		case []any:
			for i := range x {
				x[i] = number(x[i])
			}
		case map[string]any:
			for k := range x {
				x[k] = number(x[k])
			}
		}
		return v
	}
	groups := make([]map[string]any, 0, len(list))
	for i, e := range list {
		g, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("group %d is not an object", i+1)
		}
		for k := range g {
			switch k {
			case "name", "members", "policy", "policy_version", "created", "modified":
			default:
				// As TOML refuses a key it does not know: a misspelt one
				// would leave its value at the default.
				return nil, fmt.Errorf("group %d: unknown key %q: a group is {name, members, policy: {...}} as 'recall group list --json' prints it", i+1, k)
			}
		}
		out := map[string]any{}
		for _, k := range []string{"name", "members"} {
			if v, ok := g[k]; ok && v != nil {
				out[k] = number(v)
			}
		}
		if pol, ok := g["policy"].(map[string]any); ok {
			for k, v := range pol {
				if v != nil {
					out[k] = number(v)
				}
			}
		}
		groups = append(groups, out)
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(map[string]any{"group": groups}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// groupKeys are the keys a [[group]] table takes: name, members, then
// the policy flags' names with '_' for '-'.
func groupKeys() []string {
	keys := []string{"name", "members"}
	for _, f := range policyFlags() {
		keys = append(keys, strings.ReplaceAll(f.Names()[0], "-", "_"))
	}
	return keys
}

// unknownKey describes one key the decoder did not take: its line(s) and
// group(s), and the known key it is a misspelling of, if one is near.
func unknownKey(k toml.Key, groups []groupDecl, lines groupsLines, known []string) string {
	name := k[len(k)-1]
	var where []string
	if len(k) == 2 && k[0] == "group" {
		for i := range groups {
			if l := lines.key(i, name); l > 0 {
				where = append(where, fmt.Sprintf("line %d (group %s)", l, groupLabel(groups[i].Name, i)))
			}
		}
	} else if l := lines.top[name]; l > 0 {
		where = append(where, fmt.Sprintf("line %d", l))
	}
	msg := fmt.Sprintf("unknown key %s", name)
	if len(where) > 0 {
		msg = strings.Join(where, ", ") + ": " + msg
	}
	if len(k) == 2 && k[0] == "group" {
		if near := nearest(name, known); near != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", near)
		}
	} else if len(k) == 1 {
		msg += " (a groups file holds only [[group]] tables)"
	}
	return msg
}

// groupLabel names the i-th group of a file: its name, or its number when
// it has none.
func groupLabel(name string, i int) string {
	if name == "" {
		return fmt.Sprintf("#%d", i+1)
	}
	return name
}

// at is "line N: ", or "" for a line not known.
func at(line int) string {
	if line <= 0 {
		return ""
	}
	return fmt.Sprintf("line %d: ", line)
}

// groupsLines is where the keys of a groups file are: those before any
// table, and per [[group]] table, in order, its header's line and each
// key's. The TOML decoder keeps no position of a key in an array of
// tables, so this is a scan of the text, line by line: a key is a bare or
// quoted name at the start of a line followed by '='. A multi-line string
// holding such a line can mislead it, so a line is only ever a hint.
type groupsLines struct {
	top    map[string]int
	groups []groupLines
}

type groupLines struct {
	header int
	keys   map[string]int
}

var (
	tableRE = regexp.MustCompile(`^\s*\[\[?\s*([^\]]*?)\s*\]`)
	keyRE   = regexp.MustCompile(`^\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*=`)
)

// keyLines scans text (see groupsLines).
func keyLines(text string) groupsLines {
	out := groupsLines{top: map[string]int{}}
	cur := out.top
	for i, l := range strings.Split(text, "\n") {
		if m := tableRE.FindStringSubmatch(l); m != nil {
			cur = map[string]int{} // a table other than [[group]] is no group's
			if m[1] == "group" && strings.Contains(l, "[[") {
				out.groups = append(out.groups, groupLines{header: i + 1, keys: cur})
			}
			continue
		}
		if m := keyRE.FindStringSubmatch(l); m != nil {
			k := m[1] + m[2] + m[3]
			if _, ok := cur[k]; !ok {
				cur[k] = i + 1
			}
		}
	}
	return out
}

// header is the line of the i-th [[group]], 0 when not known.
func (g groupsLines) header(i int) int {
	if i < len(g.groups) {
		return g.groups[i].header
	}
	return 0
}

// key is the line of key k of the i-th [[group]], 0 when not known.
func (g groupsLines) key(i int, k string) int {
	if i < len(g.groups) {
		return g.groups[i].keys[k]
	}
	return 0
}

// sharedMembers refuses a data source that two groups of the file (or
// two members of one) both hold, naming the groups as the file writes
// them: ApplyGroups would report it as held by a group that may not
// exist yet, with advice (remove it there first) for the catalog, not the
// file. Sources are named as ApplyGroups names them: a registered
// source's staging directory by the source, any other member by its path.
func sharedMembers(path string, decl []engine.Group, lines groupsLines, cat *engine.Catalog) error {
	srcs, err := cat.Sources()
	if err != nil {
		return err
	}
	registered := map[string]string{}
	for _, s := range srcs {
		registered[s.Staging] = s.Name
	}
	type holder struct {
		group, member string
		i             int
	}
	seen := map[string]holder{}
	for i, g := range decl {
		for _, m := range g.Members {
			abs, err := engine.MemberPath(m)
			if err != nil {
				return usagef("groups file %s: %sgroup %s: %s", path, at(lines.key(i, "members")), g.Name, flagsAsKeys(err.Error()))
			}
			src := registered[abs]
			if src == "" {
				src = engine.SourceName(abs)
			}
			h, ok := seen[src]
			if !ok {
				seen[src] = holder{g.Name, abs, i}
				continue
			}
			where := func(h holder) string {
				if l := lines.key(h.i, "members"); l > 0 {
					return fmt.Sprintf("group %s (line %d)", h.group, l)
				}
				return "group " + h.group
			}
			switch {
			case h.member == abs && h.group == g.Name:
				continue // listed twice in one group: the same member
			case h.member == abs:
				return usagef("groups file %s: member %s is in %s and in %s; a data source belongs to one group: keep it in one of them",
					path, abs, where(h), where(holder{g.Name, abs, i}))
			default:
				return usagef("groups file %s: members %s of %s and %s of %s would be one data source %q (a member is backed up under the name derived from its path); keep one of them, or rename one of the directories",
					path, h.member, where(h), abs, where(holder{g.Name, abs, i}), src)
			}
		}
	}
	return nil
}

// flagRE matches a policy flag's name in a message.
var flagRE = regexp.MustCompile(`--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)`)

// flagsAsKeys spells the policy flags a message names (--keep-daily) as
// the keys of a groups file (keep_daily).
func flagsAsKeys(msg string) string {
	return flagRE.ReplaceAllStringFunc(msg, func(f string) string {
		return strings.ReplaceAll(strings.TrimPrefix(f, "--"), "-", "_")
	})
}
