package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// Group is a protection group: named data sources sharing one policy. It
// lives in the catalog's groups bucket; each point made under it records
// its name and PolicyVersion, so the store alone still says what every
// point is.
type Group struct {
	Name string `json:"name"`
	// Members are absolute paths (directories, files, block devices, and
	// registered sources' staging directories); each is the data source
	// Sources() names.
	Members []string `json:"members"`
	// SourceOf names the registered source (source.go) of each member
	// that is one: its staging directory -> its name. The catalog keeps
	// it in step with the sources bucket at every change of the group.
	SourceOf map[string]string `json:"sources,omitempty"`
	Policy   Policy            `json:"policy"`
	// PolicyVersion starts at 1 and grows by one with each change of the
	// policy (not of the members).
	PolicyVersion uint64    `json:"policy_version"`
	Created       time.Time `json:"created"`
	Modified      time.Time `json:"modified"`
}

// Group errors.
var (
	ErrNoGroup     = errors.New("no such protection group")
	ErrGroupExists = errors.New("protection group exists")
	// ErrMemberTaken: a data source belongs to one group at most.
	ErrMemberTaken = errors.New("data source already belongs to a protection group")
)

// Sources returns the data source of each member, in member order: a
// registered source's name, else the name derived from the path.
func (g *Group) Sources() []string {
	out := make([]string, len(g.Members))
	for i, m := range g.Members {
		if name, ok := g.SourceOf[m]; ok {
			out[i] = name
			continue
		}
		out[i] = SourceName(m)
	}
	return out
}

// linkSources sets g.SourceOf from the registered sources: a member that
// is a source's staging directory is that source.
func linkSources(tx *bolt.Tx, g *Group) error {
	all, err := loadSources(tx)
	if err != nil {
		return err
	}
	g.SourceOf = nil
	for _, s := range all {
		if slices.Contains(g.Members, s.Staging) {
			if g.SourceOf == nil {
				g.SourceOf = map[string]string{}
			}
			g.SourceOf[s.Staging] = s.Name
		}
	}
	for _, m := range g.Members {
		if s, ok := all[SourceName(m)]; ok && g.SourceOf[m] == "" {
			return fmt.Errorf("group %s: member %s: %w: its source name %s is taken by the registered %s source of computer %s (staging %s): back the path up outside groups under another name ('recall backup %s --source NAME')",
				g.Name, m, ErrSourceExists, s.Name, s.Kind, s.Computer, s.Staging, m)
		}
	}
	return nil
}

// CheckGroupName reports why name cannot name a group, or nil.
func CheckGroupName(name string) error {
	if checkName(name) != nil {
		return fmt.Errorf("%w: group name %q: allowed: %s", ErrBadPolicy, name, allowedPoolName)
	}
	return nil
}

// MemberPath makes a member path absolute and clean; the member's file
// need not exist now (a gone member fails its job, not the group).
func MemberPath(m string) (string, error) {
	if m == "" {
		return "", fmt.Errorf("%w: --member \"\": give a path of a directory, file or block device", ErrBadPolicy)
	}
	abs, err := filepath.Abs(m)
	if err != nil {
		return "", fmt.Errorf("member %s: %w", m, err)
	}
	return abs, nil
}

// normalize checks g and brings it to the form stored: members absolute,
// unique and sorted, the policy with its defaults filled.
func (g *Group) normalize() error {
	if err := CheckGroupName(g.Name); err != nil {
		return err
	}
	if err := g.notUTF8(); err != nil {
		return err
	}
	var ms []string
	for _, m := range g.Members {
		abs, err := MemberPath(m)
		if err != nil {
			return err
		}
		ms = append(ms, abs)
	}
	slices.Sort(ms)
	g.Members = slices.Compact(ms)
	g.Policy = g.Policy.Defaults()
	if err := g.Policy.Check(); err != nil {
		return fmt.Errorf("group %s: %w", g.Name, err)
	}
	return nil
}

// notUTF8 refuses a member or policy value that is not UTF-8: the
// catalog keeps a group as JSON, which makes each such byte a U+FFFD, so
// the group would hold another path than the one given (every run failed
// with "member is gone"), an exclude marker that never matched, or a
// script other than the one typed. A backup keeps such names exactly in
// its trees; it is the group's record that cannot.
func (g *Group) notUTF8() error {
	const why = "is not UTF-8, which a group's record cannot hold as it is"
	for _, m := range g.Members {
		if !utf8.ValidString(m) {
			return fmt.Errorf("%w: member %q %s: protect the directory above it (a backup keeps every name in it exactly), or rename it", ErrBadPolicy, m, why)
		}
	}
	v := reflect.ValueOf(g.Policy)
	for i := range v.NumField() {
		flag := strings.ReplaceAll(strings.Split(v.Type().Field(i).Tag.Get("toml"), ",")[0], "_", "-")
		var vals []string
		switch f := v.Field(i); {
		case f.Kind() == reflect.String:
			vals = []string{f.String()}
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			vals = f.Interface().([]string)
		}
		for _, s := range vals {
			if !utf8.ValidString(s) {
				return fmt.Errorf("%w: --%s %q %s: give it in UTF-8 (a pattern matches such a byte with ?; a script can spell it $'\\xHH')", ErrBadPolicy, flag, s, why)
			}
		}
	}
	return nil
}

// membersOutsideStore refuses a member that is the store of the
// catalog's home or inside it: each run of the group would fail (the
// backup refuses it), and the alert's advice, to run it again, could not
// help. A store kept elsewhere (--store) is checked by the backup only.
func (c *Catalog) membersOutsideStore(g *Group) error {
	dir := StoreDir(filepath.Dir(c.path))
	id, ok := dirID(dir)
	if !ok {
		return nil
	}
	for _, m := range g.Members {
		if inside(m, id) {
			return fmt.Errorf("%w: group %s: member %s is the store of this home (%s) or inside it: a backup of it would store the store again; protect the store with 'recall copy' or tape", ErrBadPolicy, g.Name, m, dir)
		}
	}
	return nil
}

// loadGroups reads every group of the bucket, by name.
func loadGroups(tx *bolt.Tx) (map[string]*Group, error) {
	out := map[string]*Group{}
	err := tx.Bucket(bucketGroups).ForEach(func(k, v []byte) error {
		g := &Group{}
		if err := json.Unmarshal(v, g); err != nil {
			return fmt.Errorf("catalog: group record %q is unreadable (%v); delete it with 'recall group delete %s' and create it again", k, err, k)
		}
		out[g.Name] = g
		return nil
	})
	return out, err
}

// checkMembers refuses a data source in two groups, and two member paths
// whose derived source names are one (/a/x-y and /a/x/y: a member is
// backed up under the name derived from its path, so the two would be
// one source, each the other's older versions). The member named as the
// one that had the source is prior's (source -> group, as before the
// change), else one of a group not being changed, else the first by
// group name.
func checkMembers(all map[string]*Group, changed string, prior map[string]string) error {
	type holder struct{ group, member string }
	bySource := map[string][]holder{}
	names := slices.Sorted(maps.Keys(all))
	for _, n := range names {
		g := all[n]
		for i, src := range g.Sources() {
			if !slices.Contains(bySource[src], holder{n, g.Members[i]}) {
				bySource[src] = append(bySource[src], holder{n, g.Members[i]})
			}
		}
	}
	for _, src := range slices.Sorted(maps.Keys(bySource)) {
		hs := bySource[src]
		if len(hs) < 2 {
			continue
		}
		// The one that had it first goes first.
		rank := func(h holder) int {
			switch {
			case prior[src] == h.group:
				return 0
			case h.group != changed:
				return 1
			}
			return 2
		}
		slices.SortStableFunc(hs, func(a, b holder) int { return rank(a) - rank(b) })
		first, other := hs[0], hs[1]
		g := all[other.group]
		if other.member != first.member {
			return fmt.Errorf("group %s: member %s: %w: its source name %q is the one derived from member %s of group %s, and a member is backed up under the name derived from its path, so the two would be one source; "+
				"back %s up by hand under a name of its own (recall backup --source NAME %s), or rename one of the directories",
				other.group, other.member, ErrMemberTaken, src, first.member, first.group, other.member, other.member)
		}
		how := "--member " + other.member
		if g.SourceOf[other.member] != "" {
			how = "--source " + src
		}
		return fmt.Errorf("group %s: member %s: %w: source %q is in group %q (remove it there first: recall group remove %s %s)",
			other.group, other.member, ErrMemberTaken, src, first.group, first.group, how)
	}
	return nil
}

// sourceOwners is which group has each data source, for checkMembers.
func sourceOwners(all map[string]*Group) map[string]string {
	out := map[string]string{}
	for n, g := range all {
		for _, src := range g.Sources() {
			out[src] = n
		}
	}
	return out
}

func putGroup(tx *bolt.Tx, g *Group) error {
	v, err := json.Marshal(g)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketGroups).Put([]byte(g.Name), v)
}

// Groups returns every group, by name. Values are copied out of the
// transaction.
func (c *Catalog) Groups() ([]Group, error) {
	var out []Group
	err := c.guard(func() error {
		out = out[:0]
		return c.db.View(func(tx *bolt.Tx) error {
			all, err := loadGroups(tx)
			for _, g := range all {
				out = append(out, *g)
			}
			return err
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// Group returns the group name; ErrNoGroup when there is none.
func (c *Catalog) Group(name string) (Group, error) {
	gs, err := c.Groups()
	if err != nil {
		return Group{}, err
	}
	for _, g := range gs {
		if g.Name == name {
			return g, nil
		}
	}
	return Group{}, fmt.Errorf("group %q: %w (list them with 'recall group list')", name, ErrNoGroup)
}

// CreateGroup stores a new group at policy version 1.
func (c *Catalog) CreateGroup(g Group, now time.Time) (Group, error) {
	if err := g.normalize(); err != nil {
		return Group{}, err
	}
	if err := c.membersOutsideStore(&g); err != nil {
		return Group{}, err
	}
	g.PolicyVersion, g.Created, g.Modified = 1, now.UTC(), now.UTC()
	err := c.guard(func() error {
		return c.db.Update(func(tx *bolt.Tx) error {
			all, err := loadGroups(tx)
			if err != nil {
				return err
			}
			if _, ok := all[g.Name]; ok {
				return fmt.Errorf("group %q: %w (change it with 'recall group edit')", g.Name, ErrGroupExists)
			}
			if err := linkSources(tx, &g); err != nil {
				return err
			}
			prior := sourceOwners(all)
			all[g.Name] = &g
			if err := checkMembers(all, g.Name, prior); err != nil {
				return err
			}
			return putGroup(tx, &g)
		})
	})
	return g, err
}

// EditGroup changes the group name with fn and stores it: its policy
// version grows when the policy changed.
func (c *Catalog) EditGroup(name string, now time.Time, fn func(*Group) error) (Group, error) {
	var out Group
	err := c.guard(func() error {
		return c.db.Update(func(tx *bolt.Tx) error {
			all, err := loadGroups(tx)
			if err != nil {
				return err
			}
			old, ok := all[name]
			if !ok {
				return fmt.Errorf("group %q: %w (list them with 'recall group list')", name, ErrNoGroup)
			}
			g := *old
			g.Members = slices.Clone(old.Members)
			g.SourceOf = maps.Clone(old.SourceOf)
			if err := fn(&g); err != nil {
				return err
			}
			g.Name = name
			if err := g.normalize(); err != nil {
				return err
			}
			if err := c.membersOutsideStore(&g); err != nil {
				return err
			}
			if err := linkSources(tx, &g); err != nil {
				return err
			}
			changed := bumpVersion(old, &g, now)
			prior := sourceOwners(all)
			all[name] = &g
			if err := checkMembers(all, name, prior); err != nil {
				return err
			}
			out = g
			if !changed {
				return nil
			}
			return putGroup(tx, &g)
		})
	})
	return out, err
}

// bumpVersion sets g's version and modification time from old's and
// reports whether anything changed.
func bumpVersion(old, g *Group, now time.Time) bool {
	g.PolicyVersion, g.Created, g.Modified = old.PolicyVersion, old.Created, old.Modified
	od := old.Policy.Defaults()
	// A span given again in other words ("1440m" for "24h") changes
	// nothing: the group keeps its spelling and its version.
	for _, f := range []struct{ was, now *string }{
		{&od.Retention, &g.Policy.Retention}, {&od.Sync, &g.Policy.Sync}, {&od.SyncWindow, &g.Policy.SyncWindow},
		{&od.ScriptTimeout, &g.Policy.ScriptTimeout}, {&od.TapeRetention, &g.Policy.TapeRetention},
	} {
		if *f.was == *f.now {
			continue
		}
		a, errA := parseSpan(*f.was)
		b, errB := parseSpan(*f.now)
		if errA == nil && errB == nil && a == b {
			*f.now = *f.was
		}
	}
	policyChanged := !reflect.DeepEqual(od, g.Policy)
	if policyChanged {
		g.PolicyVersion++
	}
	if policyChanged || !slices.Equal(old.Members, g.Members) || !maps.Equal(old.SourceOf, g.SourceOf) {
		g.Modified = now.UTC()
		return true
	}
	return false
}

// DeleteGroup removes a group. Its points stay; they are no longer pruned
// by any policy.
func (c *Catalog) DeleteGroup(name string) error {
	return c.guard(func() error {
		return c.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketGroups)
			if b.Get([]byte(name)) == nil {
				return fmt.Errorf("group %q: %w (list them with 'recall group list')", name, ErrNoGroup)
			}
			return b.Delete([]byte(name))
		})
	})
}

// GroupChange is what ApplyGroups did (or would do) to one group.
type GroupChange struct {
	Group  string `json:"group"`
	Action string `json:"action"` // create, update, unchanged, absent
	// Lines describe the change: "retention: 5d -> 14d", "+member /srv".
	Lines []string `json:"lines,omitempty"`
}

// ApplyGroups makes the catalog's groups what decl declares, in one
// transaction: every group of decl is created or changed to match it
// (members and the whole policy: a field the declaration leaves out takes
// its default). Groups the catalog has and decl lacks are left alone and
// reported as "absent": deleting one is a separate, explicit act. With
// dryRun nothing is stored. Applying the same declaration twice changes
// nothing the second time.
func (c *Catalog) ApplyGroups(decl []Group, dryRun bool, now time.Time) ([]GroupChange, error) {
	seen := map[string]bool{}
	for i := range decl {
		if err := decl[i].normalize(); err != nil {
			return nil, err
		}
		if err := c.membersOutsideStore(&decl[i]); err != nil {
			return nil, err
		}
		if seen[decl[i].Name] {
			return nil, fmt.Errorf("%w: group %q is declared twice", ErrBadPolicy, decl[i].Name)
		}
		seen[decl[i].Name] = true
	}
	var changes []GroupChange
	errDry := errors.New("dry run")
	err := c.guard(func() error {
		changes = changes[:0]
		err := c.db.Update(func(tx *bolt.Tx) error {
			all, err := loadGroups(tx)
			if err != nil {
				return err
			}
			var names []string
			for n := range all {
				names = append(names, n)
			}
			prior := sourceOwners(all)
			for _, d := range decl {
				g := d
				if err := linkSources(tx, &g); err != nil {
					return err
				}
				old, ok := all[g.Name]
				ch := GroupChange{Group: g.Name}
				switch {
				case !ok:
					g.PolicyVersion, g.Created, g.Modified = 1, now.UTC(), now.UTC()
					ch.Action, ch.Lines = "create", groupDiff(&Group{}, &g)
				default:
					ch.Lines = groupDiff(old, &g)
					ch.Action = "unchanged"
					if bumpVersion(old, &g, now) {
						ch.Action = "update"
					}
				}
				all[g.Name] = &g
				if ch.Action != "unchanged" {
					if err := putGroup(tx, &g); err != nil {
						return err
					}
				}
				changes = append(changes, ch)
			}
			if err := checkMembers(all, "", prior); err != nil {
				return err
			}
			sort.Strings(names)
			for _, n := range names {
				if !seen[n] {
					changes = append(changes, GroupChange{Group: n, Action: "absent",
						Lines: []string{"not in the file: left as it is (delete it with 'recall group delete " + n + "')"}})
				}
			}
			if dryRun {
				return errDry
			}
			return nil
		})
		if errors.Is(err, errDry) {
			return nil
		}
		return err
	})
	return changes, err
}

// groupDiff describes how g differs from old: members added and removed,
// then each policy field that changed, by its flag's name.
func groupDiff(old, g *Group) []string {
	var lines []string
	for _, m := range g.Members {
		if !slices.Contains(old.Members, m) {
			lines = append(lines, "+member "+m)
		}
	}
	for _, m := range old.Members {
		if !slices.Contains(g.Members, m) {
			lines = append(lines, "-member "+m)
		}
	}
	var a, b map[string]any
	if old.Name != "" {
		ja, _ := json.Marshal(old.Policy.Defaults())
		json.Unmarshal(ja, &a)
	}
	jb, _ := json.Marshal(g.Policy)
	json.Unmarshal(jb, &b)
	keys := make([]string, 0, len(b))
	for k := range b {
		keys = append(keys, k)
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		va, vb := a[k], b[k]
		if reflect.DeepEqual(va, vb) {
			continue
		}
		show := func(v any) string {
			if v == nil {
				return "(none)"
			}
			j, _ := json.Marshal(v)
			return string(j)
		}
		if old.Name == "" {
			lines = append(lines, fmt.Sprintf("%s: %s", k, show(vb)))
		} else {
			lines = append(lines, fmt.Sprintf("%s: %s -> %s", k, show(va), show(vb)))
		}
	}
	return lines
}

// ExcludeSlips says, for each of the group's exclude patterns spelt as the
// file system path of something inside a member (--exclude /srv/www/cache
// for the member /srv/www), that it matches nothing and what to write:
// patterns are matched from the member's directory, as .gitignore's. The
// backups warn of it too, but under the server only in its log.
func (g *Group) ExcludeSlips() []string {
	var out []string
	for _, pat := range g.Policy.Exclude {
		for _, m := range g.Members {
			m = filepath.Clean(m)
			if rest, ok := strings.CutPrefix(pat, m+"/"); ok && filepath.IsAbs(m) && m != "/" {
				out = append(out, fmt.Sprintf("group %s: exclude pattern %q is matched from the member's directory %s, so it leaves out %s/%s, which is likely not there; to leave out %s write %q", g.Name, pat, m, m, strings.TrimPrefix(pat, "/"), pat, "/"+rest))
				break
			}
		}
	}
	// An exclude file is read at each backup: one that is not there
	// fails every backup of the group, as a missing member fails its own.
	for _, f := range g.Policy.ExcludeFile {
		if _, err := os.Stat(f); errors.Is(err, os.ErrNotExist) {
			out = append(out, fmt.Sprintf("group %s: exclude file %s does not exist (yet): the group's backups fail until it does (recall serve raises an alert for each)", g.Name, f))
		}
	}
	return out
}
