package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Kinds of data source. A bmr or systemstate source is registered in the
// catalog (Source): its data is what Windows Server Backup leaves in its
// staging directory, ingested as points of the source (ingest.go). A path
// source is not registered: it is derived from a group member's path or
// from the points of the store (SourceName), and `source list` names its
// kind "path".
const (
	KindBMR         = "bmr"
	KindSystemState = "systemstate"
	KindPath        = "path"
)

// Registered sources' defaults and limits. The reservation is DPM's: room
// on the server for one image, at least 15 GiB, 30 by default; recall
// does not set it aside, it warns when an image grows past it (status.go).
const (
	DefaultReservation int64 = 30 << 30
	MinReservation     int64 = 15 << 30
	// DefaultSettle is how long a staging tree must see no writes before
	// it is taken as finished: WSB writes an image in one go, and a pause
	// of minutes means it is done or has died (the completeness check
	// tells which).
	DefaultSettle = 2 * time.Minute
	// DefaultStagingRoot holds the staging directories of sources added
	// without --staging, one per source name.
	DefaultStagingRoot = "/srv/recall-bmr"
)

// Registry errors.
var (
	ErrNoSource     = errors.New("no such data source")
	ErrSourceExists = errors.New("data source exists")
	// ErrSourceRule: a registration that breaks one of the registry's
	// rules (one source per computer, a reservation of at least 15 GiB,
	// a staging directory of its own outside the home). A value that is
	// wrong in itself (a kind, a size) wraps ErrBadPolicy too, which the
	// command line reports as a usage error.
	ErrSourceRule = errors.New("data source refused")
)

// ruleError is a refusal of the registry: its message alone, matching
// the sentinels in is.
type ruleError struct {
	msg string
	is  []error
}

func (e *ruleError) Error() string   { return e.msg }
func (e *ruleError) Unwrap() []error { return e.is }

// refuse is a conflict with the registry's state (a computer protected
// twice, a staging directory shared).
func refuse(format string, args ...any) error {
	return &ruleError{fmt.Sprintf(format, args...), []error{ErrSourceRule}}
}

// Source is a registered data source: a Windows computer's bare-metal
// (bmr) or system-state image, written by WSB into Staging, kept in the
// catalog's sources bucket.
type Source struct {
	Name        string        `json:"name"`
	Kind        string        `json:"kind"`
	Computer    string        `json:"computer"`
	Staging     string        `json:"staging"` // absolute; the share's root; holds WindowsImageBackup
	Reservation int64         `json:"reservation"`
	Settle      time.Duration `json:"settle"`         // no writes for this long = WSB has finished
	User        string        `json:"user,omitempty"` // the Samba user of its bmr-target share
	// Ingested is the Backup folder of the last point made, ImageSize its
	// images' size.
	Ingested  string    `json:"ingested,omitempty"`
	ImageSize int64     `json:"image_size,omitempty"`
	Created   time.Time `json:"created"`
	// IngestedPrint is the ingested tree's wsb.Image.Print: the same
	// Backup folder written again is a new image.
	IngestedPrint string `json:"ingested_print,omitempty"`
}

// DefaultStaging is the staging directory of a source added without one.
func DefaultStaging(name string) string { return filepath.Join(DefaultStagingRoot, name) }

// normalize fills s's defaults and checks what it alone can tell: the
// name, the kind, the computer, the reservation and the staging path.
// home is the catalog's directory, which a staging tree must stay out of.
func (s *Source) normalize(home string) error {
	bad := func(format string, args ...any) error {
		return &ruleError{"source " + s.Name + ": " + fmt.Sprintf(format, args...), []error{ErrSourceRule, ErrBadPolicy}}
	}
	if err := ValidSourceName(s.Name); err != nil {
		return &ruleError{err.Error(), []error{ErrSourceRule, ErrBadPolicy, err}}
	}
	switch s.Kind {
	case KindBMR, KindSystemState:
	default:
		return bad("kind %q: give --kind bmr (bare metal recovery, which includes system state) or --kind systemstate", s.Kind)
	}
	// Windows refuses \ / : * ? " < > | in a computer name; an
	// all-dots one names no folder (and ".." another one), and '%' is a
	// Samba substitution in the share the name ends up in.
	if s.Computer == "" || strings.ContainsAny(s.Computer, `/\:*?"<>|%`) || strings.Trim(s.Computer, ".") == "" ||
		strings.IndexFunc(s.Computer, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return bad("computer %q: give the Windows computer's name as WSB writes it under WindowsImageBackup (--computer SRV01)", s.Computer)
	}
	if s.Reservation == 0 {
		s.Reservation = DefaultReservation
	}
	if s.Reservation < MinReservation {
		return bad("reservation of %s (%d bytes) is under the minimum of 15 GiB: give --reservation 15GiB or more (a system image of a Windows server is rarely smaller)", gib(s.Reservation), s.Reservation)
	}
	if s.Settle == 0 {
		s.Settle = DefaultSettle
	}
	if s.Settle < 0 {
		return bad("settle time %s: give a positive span like 2m", s.Settle)
	}
	if s.Staging == "" {
		s.Staging = DefaultStaging(s.Name)
	}
	abs, err := filepath.Abs(s.Staging)
	if err != nil || !filepath.IsAbs(abs) {
		return bad("staging directory %q is not an absolute path: give --staging /srv/recall-bmr/%s", s.Staging, s.Name)
	}
	s.Staging = abs
	if abs == "/" {
		return bad("staging directory /: give a directory of its own, like %s", DefaultStaging(s.Name))
	}
	if home != "" {
		if h, err := filepath.Abs(home); err == nil && (within(abs, h) || within(h, abs)) {
			return bad("staging directory %s overlaps recall's home %s (its store and catalog): give a directory outside it, like %s", abs, h, DefaultStaging(s.Name))
		}
	}
	return nil
}

// within reports whether path is dir or inside it (both clean and absolute).
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// checkSources applies the rules between sources to all (by name) and the
// groups: one source per computer, one staging directory per source, one
// Samba user per source, and no staging directory that a group protects
// as a path. changed is the source being added or edited, which the
// messages name second.
func checkSources(all map[string]*Source, groups map[string]*Group, changed string) error {
	s := all[changed]
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		o := all[n]
		if n == changed {
			continue
		}
		if strings.EqualFold(o.Computer, s.Computer) {
			return refuse("source %s: computer %s is protected by source %s (kind %s); BMR includes system state; protect %s by one source (change that one with 'recall source edit %s', or remove it with 'recall source remove %s')",
				s.Name, s.Computer, o.Name, o.Kind, s.Computer, o.Name, o.Name)
		}
		if within(s.Staging, o.Staging) || within(o.Staging, s.Staging) {
			return refuse("source %s: staging directory %s overlaps %s, the staging directory of source %s; each computer writes to a share of its own: give --staging %s",
				s.Name, s.Staging, o.Staging, o.Name, DefaultStaging(s.Name))
		}
		if err := userTaken(s.Name, s.User, o); err != nil {
			return err
		}
	}
	gnames := make([]string, 0, len(groups))
	for n := range groups {
		gnames = append(gnames, n)
	}
	sort.Strings(gnames)
	for _, gn := range gnames {
		g := groups[gn]
		for i, m := range g.Members {
			src := g.Sources()[i]
			switch {
			case g.SourceOf[m] == s.Name:
				// The source itself, a member of g.
			case g.SourceOf[m] == "" && strings.EqualFold(src, s.Name):
				// Registered sources are compared by name in the loop
				// above (AddSource refuses a case-only pair; one
				// registered before that is warned about by status).
				return fmt.Errorf("source %s: %w: the name (compared ignoring case) is taken by member %s of group %s (path source %s): choose another name, or take the member out with 'recall group remove %s --member %s'",
					s.Name, ErrSourceExists, m, gn, src, gn, m)
			case g.SourceOf[m] == "" && (within(m, s.Staging) || within(s.Staging, m)):
				return refuse("source %s: staging directory %s overlaps member %s of group %s, protected as a path: give another --staging, or take the member out with 'recall group remove %s --member %s'",
					s.Name, s.Staging, m, gn, gn, m)
			}
		}
	}
	return nil
}

// userTaken refuses user as the Samba user of source name when source o,
// another one, has it: whoever logs on as it could write both computers'
// folders.
func userTaken(name, user string, o *Source) error {
	if user == "" || o.Name == name || o.User != user {
		return nil
	}
	return refuse("source %s: user %s is the Samba user of source %s (computer %s); each computer logs on as a user of its own: give another with --user",
		name, user, o.Name, o.Computer)
}

// sameName returns the registered source whose name equals name ignoring
// case, nil when none does. Names that differ only in case would give two
// sources the same default share and user (Samba's share names and
// Windows's compare ignoring case).
func sameName(all map[string]*Source, name string) *Source {
	if s, ok := all[name]; ok {
		return s
	}
	for n, s := range all {
		if strings.EqualFold(n, name) {
			return s
		}
	}
	return nil
}

// loadSources reads every registered source, by name.
func loadSources(tx *bolt.Tx) (map[string]*Source, error) {
	out := map[string]*Source{}
	err := tx.Bucket(bucketSources).ForEach(func(k, v []byte) error {
		s := &Source{}
		if err := json.Unmarshal(v, s); err != nil {
			return fmt.Errorf("catalog: source record %q is unreadable (%v); remove it with 'recall source remove %s' and add it again", k, err, k)
		}
		out[s.Name] = s
		return nil
	})
	return out, err
}

func putSource(tx *bolt.Tx, s *Source) error {
	v, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketSources).Put([]byte(s.Name), v)
}

// home is the directory of the catalog: recall's home.
func (c *Catalog) home() string { return filepath.Dir(c.path) }

// AddSource registers s (defaults filled: staging, reservation, settle)
// and returns it as stored. A name taken by a registered source wraps
// ErrSourceExists; a broken rule wraps ErrSourceRule. The staging
// directory is not created here (the command line does it).
func (c *Catalog) AddSource(s Source, now time.Time) (Source, error) {
	if err := s.normalize(c.home()); err != nil {
		return Source{}, err
	}
	s.Created, s.Ingested, s.ImageSize = now.UTC(), "", 0
	err := c.guard(func() error {
		return c.db.Update(func(tx *bolt.Tx) error {
			all, err := loadSources(tx)
			if err != nil {
				return err
			}
			if o := sameName(all, s.Name); o != nil {
				if o.Name != s.Name {
					return fmt.Errorf("source %s: %w: source %s has that name ignoring case (kind %s, computer %s), and would share its default share and user: choose another name, or change that one with 'recall source edit %s'",
						s.Name, ErrSourceExists, o.Name, o.Kind, o.Computer, o.Name)
				}
				return fmt.Errorf("source %s: %w (kind %s, computer %s): choose another name, or change it with 'recall source edit %s'", s.Name, ErrSourceExists, o.Kind, o.Computer, s.Name)
			}
			groups, err := loadGroups(tx)
			if err != nil {
				return err
			}
			all[s.Name] = &s
			if err := checkSources(all, groups, s.Name); err != nil {
				return err
			}
			return putSource(tx, &s)
		})
	})
	return s, err
}

// Source returns the registered source name; ErrNoSource when there is
// none.
func (c *Catalog) Source(name string) (Source, error) {
	var out Source
	err := c.guard(func() error {
		return c.db.View(func(tx *bolt.Tx) error {
			v := tx.Bucket(bucketSources).Get([]byte(name))
			if v == nil {
				// The name goes into the suggested command only when it
				// is one: a name from the API may hold anything, a
				// newline too, which would break the message's line.
				add := name
				if ValidSourceName(name) != nil {
					add = "NAME"
				}
				return fmt.Errorf("source %q: %w%s (list them with 'recall source list'; add one with 'recall source add %s --kind bmr --computer PC')", name, ErrNoSource, registeredHint(tx, name), add)
			}
			return json.Unmarshal(v, &out)
		})
	})
	return out, err
}

// noSource is the error for name, which is not a registered source.
func noSource(tx *bolt.Tx, name string) error {
	return fmt.Errorf("source %q: %w%s (list them with 'recall source list')", name, ErrNoSource, registeredHint(tx, name))
}

// registeredHint is "; did you mean X?" when a registered source's name
// is one slip from name, else "".
func registeredHint(tx *bolt.Tx, name string) string {
	var have []string
	_ = tx.Bucket(bucketSources).ForEach(func(k, _ []byte) error {
		have = append(have, string(k))
		return nil
	})
	if best := closeName(name, have); best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return ""
}

// Sources returns the registered sources, by name. Values are copied out
// of the transaction.
func (c *Catalog) Sources() ([]Source, error) {
	var out []Source
	err := c.guard(func() error {
		out = out[:0]
		return c.db.View(func(tx *bolt.Tx) error {
			all, err := loadSources(tx)
			for _, s := range all {
				out = append(out, *s)
			}
			return err
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// EditSource changes the source name with fn and stores it, under the
// rules of AddSource. A new staging directory moves the source's
// membership of its group along with it (the group's member is the
// staging directory). The name and the creation time stay.
func (c *Catalog) EditSource(name string, fn func(*Source) error) (Source, error) {
	var out Source
	err := c.guard(func() error {
		return c.db.Update(func(tx *bolt.Tx) error {
			all, err := loadSources(tx)
			if err != nil {
				return err
			}
			old, ok := all[name]
			if !ok {
				return noSource(tx, name)
			}
			s := *old
			if err := fn(&s); err != nil {
				return err
			}
			s.Name, s.Created = old.Name, old.Created
			if err := s.normalize(c.home()); err != nil {
				return err
			}
			groups, err := loadGroups(tx)
			if err != nil {
				return err
			}
			if s.Staging != old.Staging {
				for _, g := range groups {
					if g.SourceOf[old.Staging] != name {
						continue
					}
					for i, m := range g.Members {
						if m == old.Staging {
							g.Members[i] = s.Staging
						}
					}
					delete(g.SourceOf, old.Staging)
					g.SourceOf[s.Staging] = name
					if err := g.normalize(); err != nil {
						return err
					}
					if err := putGroup(tx, g); err != nil {
						return err
					}
				}
			}
			all[name] = &s
			if err := checkSources(all, groups, name); err != nil {
				return err
			}
			out = s
			return putSource(tx, &s)
		})
	})
	return out, err
}

// RecordIngested records on source name the image an ingestion took: the
// Backup folder, its print and its images' size. It changes nothing the
// registry's rules judge, so it does not apply them: a catalog whose
// sources broke a rule added later must still record what it ingested,
// or each look would ingest the same image again.
func (c *Catalog) RecordIngested(name, backup, print string, size int64) error {
	return c.updateSource(name, func(s *Source) bool {
		s.Ingested, s.IngestedPrint, s.ImageSize = backup, print, size
		return true
	})
}

// updateSource changes registered source name with fn, and stores it
// when fn reports a change. It applies none of the registry's rules (see
// RecordIngested).
func (c *Catalog) updateSource(name string, fn func(*Source) bool) error {
	return c.guard(func() error {
		return c.db.Update(func(tx *bolt.Tx) error {
			all, err := loadSources(tx)
			if err != nil {
				return err
			}
			s, ok := all[name]
			if !ok {
				return noSource(tx, name)
			}
			if !fn(s) {
				return nil
			}
			return putSource(tx, s)
		})
	})
}

// ForgetIngested clears what source name records of the image ingested
// last, when the point made of it is forgotten: the image still in the
// staging share is then new again, and the next look ingests it. Before,
// forgetting a WSB source's only point left it unable to make one until
// WSB wrote a new image: each ingestion said "nothing new". A name that
// is not a registered source, or one that ingested nothing, is left.
func (c *Catalog) ForgetIngested(name string) error {
	err := c.updateSource(name, func(s *Source) bool {
		if s.Ingested == "" && s.IngestedPrint == "" {
			return false
		}
		s.Ingested, s.IngestedPrint = "", ""
		return true
	})
	if errors.Is(err, ErrNoSource) {
		return nil
	}
	return err
}

// CaseOnlyPairs returns a warning for each two of srcs whose names differ
// only in case, and for each registered source named, but for case, as a
// path member of groups: a catalog may hold them from before AddSource
// refused them; their default share and user collide, and Windows and
// Samba take the names for one.
func CaseOnlyPairs(srcs []Source, groups []Group) []string {
	var out []string
	for i, a := range srcs {
		for _, b := range srcs[i+1:] {
			if a.Name != b.Name && strings.EqualFold(a.Name, b.Name) {
				x, y := min(a.Name, b.Name), max(a.Name, b.Name)
				out = append(out, fmt.Sprintf("sources %s and %s differ only in case: their default shares and users collide (Samba and Windows compare names ignoring case); give each a share and user of its own ('recall share bmr-target --source NAME --name SHARE --user USER'), or replace one with a source of another name",
					x, y))
			}
		}
		for _, g := range groups {
			for j, m := range g.Members {
				if src := g.Sources()[j]; g.SourceOf[m] == "" && src != a.Name && strings.EqualFold(src, a.Name) {
					out = append(out, fmt.Sprintf("source %s and member %s of group %s (path source %s) differ only in case: take the member out with 'recall group remove %s --member %s' and add it back under another name with --source",
						a.Name, m, g.Name, src, g.Name, m))
				}
			}
		}
	}
	return out
}

// CheckSourceUser says why user cannot be the Samba user of source name,
// nil when it can: another source has it (ErrSourceRule). EditSource
// refuses to record it too; a command checks first, before it gives the
// user a password or folders.
func (c *Catalog) CheckSourceUser(name, user string) error {
	return c.guard(func() error {
		return c.db.View(func(tx *bolt.Tx) error {
			all, err := loadSources(tx)
			if err != nil {
				return err
			}
			names := make([]string, 0, len(all))
			for n := range all {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				if err := userTaken(name, user, all[n]); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// RemoveSource unregisters a source; refused while a group holds it. Its
// points and its staging directory stay.
func (c *Catalog) RemoveSource(name string) error {
	return c.guard(func() error {
		return c.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketSources)
			if b.Get([]byte(name)) == nil {
				return noSource(tx, name)
			}
			groups, err := loadGroups(tx)
			if err != nil {
				return err
			}
			for _, g := range groups {
				for m, src := range g.SourceOf {
					if src == name {
						return fmt.Errorf("source %s is in group %s: take it out first with 'recall group remove %s --source %s' (its points and its staging directory %s stay)",
							name, g.Name, g.Name, name, m)
					}
				}
			}
			return b.Delete([]byte(name))
		})
	})
}

// CheckPathSource refuses a backup of a path under name when name is a
// registered source's, compared ignoring case as source names are: its
// points are ingestions of complete images, which a backup of any path
// (its staging directory included) is not.
func (c *Catalog) CheckPathSource(name string) error {
	all, err := c.Sources()
	if err != nil {
		return err
	}
	for _, s := range all {
		if !strings.EqualFold(s.Name, name) {
			continue
		}
		if s.Name != name {
			return fmt.Errorf("source %s: %w: it is, ignoring case, the registered %s source %s of computer %s: back the path up under another name with --source",
				name, ErrSourceExists, s.Kind, s.Name, s.Computer)
		}
		return fmt.Errorf("source %s: %w: it is the registered %s source of computer %s: ingest its staging tree with 'recall backup --source %s' (no PATH), or back the path up under another name with --source",
			name, ErrSourceExists, s.Kind, s.Computer, name)
	}
	return nil
}
