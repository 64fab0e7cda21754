package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Migration 2 adds the groups bucket to a version 1 catalog and keeps its
// jobs.
func TestCatalogMigration2(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	db, err := bolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := migrations[0].apply(tx); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Put(keyVersion, binary.BigEndian.AppendUint64(nil, 1)); err != nil {
			return err
		}
		return tx.Bucket(bucketJobs).Put(binary.BigEndian.AppendUint64(nil, 1), []byte(`{"number":1,"kind":"backup","status":"ok"}`))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenCatalog(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketGroups) == nil {
			t.Error("no groups bucket")
		}
		if v := tx.Bucket(bucketMeta).Get(keyVersion); binary.BigEndian.Uint64(v) != catalogVersion {
			t.Errorf("version %x", v)
		}
		return nil
	})
	jobs, err := c.Jobs(0)
	if err != nil || len(jobs) != 1 || jobs[0].Kind != "backup" {
		t.Errorf("jobs after migration: %+v %v", jobs, err)
	}
	if _, err := c.CreateGroup(Group{Name: "g"}, time.Now()); err != nil {
		t.Error(err)
	}
}

func testCatalog(t *testing.T) *Catalog {
	t.Helper()
	c, err := OpenCatalog(filepath.Join(t.TempDir(), "catalog.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestGroupLifecycle(t *testing.T) {
	c := testCatalog(t)
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	g, err := c.CreateGroup(Group{Name: "web", Members: []string{"/srv/www", "/srv/www/", "/etc"}, Policy: Policy{Retention: "14d"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if g.PolicyVersion != 1 || !reflect.DeepEqual(g.Members, []string{"/etc", "/srv/www"}) || g.Policy.Sync != DefaultSync {
		t.Errorf("created %+v", g)
	}
	if _, err := c.CreateGroup(Group{Name: "web"}, now); !errors.Is(err, ErrGroupExists) {
		t.Errorf("second create: %v", err)
	}
	// A source belongs to one group: the message names the first.
	_, err = c.CreateGroup(Group{Name: "db", Members: []string{"/var/lib/pg", "/etc"}}, now)
	if !errors.Is(err, ErrMemberTaken) || !strings.Contains(err.Error(), `group "web"`) {
		t.Errorf("member in two groups: %v", err)
	}
	if _, err := c.CreateGroup(Group{Name: "db", Members: []string{"/var/lib/pg"}}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EditGroup("db", now, func(g *Group) error { g.Members = append(g.Members, "/srv/www"); return nil }); !errors.Is(err, ErrMemberTaken) || !strings.Contains(err.Error(), `group "web"`) {
		t.Errorf("add a taken member: %v", err)
	}
	// An edit that changes nothing keeps the version; a policy change
	// bumps it; a member change does not.
	for _, c2 := range []struct {
		fn      func(*Group)
		version uint64
	}{
		{func(g *Group) { g.Policy.Retention = "14d" }, 1},
		{func(g *Group) { g.Policy.Retention = "30d" }, 2},
		{func(g *Group) { g.Members = append(g.Members, "/home") }, 2},
		{func(g *Group) { g.Policy.At = []string{"9:00", "21:00"} }, 3},
	} {
		g, err = c.EditGroup("web", now, func(g *Group) error { c2.fn(g); return nil })
		if err != nil || g.PolicyVersion != c2.version {
			t.Errorf("edit: version %d %v, want %d", g.PolicyVersion, err, c2.version)
		}
	}
	if _, err := c.EditGroup("web", now, func(g *Group) error { g.Policy.Sync = "1m"; return nil }); !errors.Is(err, ErrBadPolicy) {
		t.Errorf("bad edit: %v", err)
	}
	if g, _ := c.Group("web"); g.PolicyVersion != 3 || g.Policy.Sync != DefaultSync {
		t.Errorf("a refused edit was stored: %+v", g)
	}
	gs, err := c.Groups()
	if err != nil || len(gs) != 2 || gs[0].Name != "db" || gs[1].Name != "web" {
		t.Errorf("groups %+v %v", gs, err)
	}
	if err := c.DeleteGroup("db"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Group("db"); !errors.Is(err, ErrNoGroup) {
		t.Errorf("deleted group: %v", err)
	}
	if _, err := c.CreateGroup(Group{Name: "bad name"}, now); !errors.Is(err, ErrBadPolicy) {
		t.Errorf("bad name: %v", err)
	}
}

// Applying a declaration is idempotent; a dry run changes nothing and
// reports what the real run does.
func TestApplyGroups(t *testing.T) {
	c := testCatalog(t)
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	if _, err := c.CreateGroup(Group{Name: "old", Members: []string{"/old"}}, now); err != nil {
		t.Fatal(err)
	}
	decl := []Group{
		{Name: "web", Members: []string{"/srv/www"}, Policy: Policy{Retention: "14d", At: []string{"09:00", "18:00"}}},
		{Name: "old", Members: []string{"/old"}, Policy: Policy{Retention: "30d"}},
	}
	dry, err := c.ApplyGroups(decl, true, now)
	if err != nil {
		t.Fatal(err)
	}
	if gs, _ := c.Groups(); len(gs) != 1 {
		t.Errorf("dry run stored: %+v", gs)
	}
	real, err := c.ApplyGroups(decl, false, now)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dry, real) {
		t.Errorf("dry run %+v\nreal %+v", dry, real)
	}
	if real[0].Action != "create" || real[1].Action != "update" || !strings.Contains(strings.Join(real[1].Lines, "\n"), `retention: "5d" -> "30d"`) {
		t.Errorf("changes %+v", real)
	}
	again, err := c.ApplyGroups(decl, false, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range again {
		if ch.Action != "unchanged" {
			t.Errorf("second apply: %+v", ch)
		}
	}
	if g, _ := c.Group("old"); g.PolicyVersion != 2 {
		t.Errorf("old: version %d", g.PolicyVersion)
	}
	// One source in two declared groups: refused, nothing stored.
	bad := append(decl, Group{Name: "x", Members: []string{"/srv/www"}})
	if _, err := c.ApplyGroups(bad, false, now); !errors.Is(err, ErrMemberTaken) {
		t.Errorf("conflict: %v", err)
	}
	if _, err := c.Group("x"); !errors.Is(err, ErrNoGroup) {
		t.Errorf("a refused apply stored group x")
	}
}

// A manifest with the group fields is version 2 still: they are optional,
// and manifests without them decode with none.
func TestPointGroupGolden(t *testing.T) {
	p := samplePoint()
	p.Group, p.PolicyVersion = "web", 3
	p.Scheduled = time.Date(2026, 11, 21, 21, 0, 0, 0, time.UTC)
	checkPointGolden(t, p, "point-v2-group.golden")
	for _, name := range []string{"point-v2.golden", "point-v1.golden"} {
		old, err := decodePoint(id(5), readGolden(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if old.Group != "" || old.PolicyVersion != 0 || !old.Scheduled.IsZero() {
			t.Errorf("%s decodes with group %q version %d scheduled %s", name, old.Group, old.PolicyVersion, old.Scheduled)
		}
	}
}

// A member that is gone fails its own job, naming it; the other members
// run; the post-script runs for both, with the outcome in its environment.
func TestBackupGroupGoneMember(t *testing.T) {
	home, st := newHome(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.MkdirAll(good, 0o755)
	os.WriteFile(filepath.Join(good, "f"), []byte("data"), 0o644)
	outcomes := filepath.Join(dir, "outcomes")
	g := &Group{Name: "g", PolicyVersion: 1, Members: []string{filepath.Join(dir, "gone"), good},
		Policy: Policy{PostScript: `echo "$RECALL_MEMBER $RECALL_OUTCOME $RECALL_PHASE" >> ` + outcomes}}
	res, err := st.BackupGroup(context.Background(), home, g, GroupBackupOptions{})
	if !errors.Is(err, ErrMembersFailed) || !strings.Contains(err.Error(), filepath.Join(dir, "gone")) {
		t.Errorf("err %v", err)
	}
	if len(res) != 2 || res[0].Point != nil || res[1].Point == nil || res[1].Err != nil {
		t.Fatalf("results %+v", res)
	}
	b, _ := os.ReadFile(outcomes)
	want := filepath.Join(dir, "gone") + " failed post\n" + good + " ok post\n"
	if string(b) != want {
		t.Errorf("post-script saw\n%s\nwant\n%s", b, want)
	}
	var jobs []Job
	WithCatalog(home, time.Second, t.Logf, func(c *Catalog) error { jobs, err = c.Jobs(0); return err })
	if len(jobs) != 2 || jobs[0].Status != "failed" || !strings.Contains(jobs[0].Error, "gone") || jobs[0].Group != "g" ||
		jobs[1].Status != "ok" || len(jobs[1].Scripts) != 1 || jobs[1].Scripts[0].Phase != "post" {
		t.Errorf("jobs %+v", jobs)
	}
}

// TestBackupGroupPlannedSlot: a backup planned for a recovery point time
// makes that recovery point for every member however late the clock is
// (here two hours, far past the sync interval); planned with no slot it
// makes syncs even at a recovery point time; a member that already has
// the point makes a sync.
func TestBackupGroupPlannedSlot(t *testing.T) {
	_, st := newHome(t)
	dir := t.TempDir()
	var members []string
	for _, m := range []string{"m1", "m2"} {
		p := filepath.Join(dir, m)
		os.MkdirAll(p, 0o755)
		os.WriteFile(filepath.Join(p, "f"), []byte(m), 0o644)
		members = append(members, p)
	}
	g := &Group{Name: "g", PolicyVersion: 1, Members: members, Policy: Policy{Sync: "15m", At: []string{"12:00"}}}
	noon := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	late := func() time.Time { return noon.Add(2 * time.Hour) }
	backup := func(now func() time.Time, slot time.Time) []MemberResult {
		t.Helper()
		res, err := st.BackupGroup(context.Background(), "", g, GroupBackupOptions{Now: now, Planned: true, Slot: slot})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, r := range backup(late, noon) {
		if !r.Point.Scheduled.Equal(noon) {
			t.Errorf("planned for 12:00, run at 14:00: %s's point is scheduled %v, want 12:00", r.Member, r.Point.Scheduled)
		}
	}
	for _, r := range backup(late, noon) {
		if !r.Point.Scheduled.IsZero() {
			t.Errorf("planned for 12:00 again: %s's point is scheduled %v, want a sync (it has the point)", r.Member, r.Point.Scheduled)
		}
	}
	next := noon.Add(24 * time.Hour)
	for _, r := range backup(func() time.Time { return next }, time.Time{}) {
		if !r.Point.Scheduled.IsZero() {
			t.Errorf("planned as a sync at 12:00: %s's point is scheduled %v, want a sync", r.Member, r.Point.Scheduled)
		}
	}
}

// A member of an existing group claimed by a group new in an applied file
// is refused naming the existing group as the one that has it (before,
// the names' order decided, and the message named the new group, which
// did not exist, as the one to remove it from). Two member paths that
// derive one source name are refused, in one group or two, saying so,
// not with a removal that fails.
func TestGroupMemberClashNamesOwner(t *testing.T) {
	c := testCatalog(t)
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	if _, err := c.CreateGroup(Group{Name: "web", Members: []string{"/srv/data/a"}}, now); err != nil {
		t.Fatal(err)
	}
	_, err := c.ApplyGroups([]Group{{Name: "o3", Members: []string{"/srv/data/a"}}, {Name: "web", Members: []string{"/srv/data/a"}}}, false, now)
	if !errors.Is(err, ErrMemberTaken) || !strings.Contains(err.Error(), `group o3: member /srv/data/a`) ||
		!strings.Contains(err.Error(), "recall group remove web --member /srv/data/a") {
		t.Errorf("apply: %v", err)
	}
	for _, g := range []Group{
		{Name: "cg2", Members: []string{"/srv/data/x/y"}},
		{Name: "one", Members: []string{"/srv/x-y", "/srv/x/y"}},
	} {
		if g.Name == "cg2" {
			if _, err := c.EditGroup("web", now, func(w *Group) error { w.Members = append(w.Members, "/srv/data/x-y"); return nil }); err != nil {
				t.Fatal(err)
			}
		}
		_, err := c.CreateGroup(g, now)
		if !errors.Is(err, ErrMemberTaken) || !strings.Contains(err.Error(), "is the one derived from member") ||
			strings.Contains(err.Error(), "remove it there first") {
			t.Errorf("%s: %v", g.Name, err)
		}
	}
}

// A group leaves out what backup's exclusion flags leave out: caches,
// directories marked by a name, files over a size, and the patterns of a
// file read at each backup; bad values are refused when the policy is
// set, and an exclude file gone by backup time fails it, naming the file.
func TestGroupExclusions(t *testing.T) {
	dir := t.TempDir()
	xf := filepath.Join(dir, "exclude.txt")
	if err := os.WriteFile(xf, []byte("# scratch\n*.tmp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := Policy{ExcludeCaches: true, ExcludeIfPresent: []string{".nobackup"}, ExcludeLargerThan: "1MiB", ExcludeFile: []string{xf}}
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	x, err := p.BackupExclude()
	if err != nil {
		t.Fatal(err)
	}
	if !x.Caches || !slices.Equal(x.IfPresent, []string{".nobackup"}) || x.LargerThan != 1<<20 ||
		len(x.Files) != 1 || !slices.Equal(x.Files[0].Patterns, []string{"*.tmp"}) {
		t.Errorf("exclude %+v", x)
	}
	for _, bad := range []Policy{{ExcludeLargerThan: "lots"}, {ExcludeLargerThan: "0"}, {ExcludeFile: []string{"rel.txt"}}, {ExcludeIfPresent: []string{"a/b"}}} {
		if err := bad.Check(); !errors.Is(err, ErrBadPolicy) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	os.Remove(xf)
	if _, err := p.BackupExclude(); err == nil || !strings.Contains(err.Error(), xf) {
		t.Errorf("exclude file gone: %v", err)
	}
}

// A member that is the store of the catalog's home, or inside it, is
// refused at create, edit and apply: every run of the group failed (the
// backup refuses it) and the alert's advice, to run it again, could not
// help. The home itself, which holds the store, is a member like any
// other: its backups leave the store out.
func TestGroupMemberInsideStoreRefused(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(StoreDir(home), "points"), 0o700); err != nil {
		t.Fatal(err)
	}
	c, err := OpenCatalog(CatalogPath(home), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range []string{StoreDir(home), filepath.Join(StoreDir(home), "points"), filepath.Join(StoreDir(home), "not-yet")} {
		if _, err := c.CreateGroup(Group{Name: "g", Members: []string{m}}, time.Now()); !errors.Is(err, ErrBadPolicy) || !strings.Contains(err.Error(), "is the store of this home") {
			t.Errorf("member %s: %v, want it refused", m, err)
		}
		if _, err := c.ApplyGroups([]Group{{Name: "g", Members: []string{m}}}, false, time.Now()); !errors.Is(err, ErrBadPolicy) {
			t.Errorf("member %s applied: %v, want it refused", m, err)
		}
	}
	if _, err := c.CreateGroup(Group{Name: "h", Members: []string{home}}, time.Now()); err != nil {
		t.Fatalf("the home as a member: %v", err)
	}
	if _, err := c.EditGroup("h", time.Now(), func(g *Group) error { g.Members = append(g.Members, StoreDir(home)); return nil }); !errors.Is(err, ErrBadPolicy) {
		t.Errorf("the store added by an edit: %v, want it refused", err)
	}
}

// A group whose exclude file is not there is warned of when it is made
// or changed, as a missing member is: it fails every backup of the group.
func TestExcludeSlipsMissingExcludeFile(t *testing.T) {
	there := filepath.Join(t.TempDir(), "ex.txt")
	if err := os.WriteFile(there, []byte("*.tmp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.txt")
	g := Group{Name: "g", Members: []string{"/srv"}, Policy: Policy{ExcludeFile: []string{there, missing}}}
	slips := g.ExcludeSlips()
	if len(slips) != 1 || !strings.Contains(slips[0], "exclude file "+missing+" does not exist") {
		t.Errorf("slips %q, want the missing exclude file named", slips)
	}
}

// A member or policy value that is not UTF-8 is refused: the catalog's
// JSON would have kept another path, marker or script than the one given.
func TestGroupNotUTF8Refused(t *testing.T) {
	home := t.TempDir()
	c, err := OpenCatalog(CatalogPath(home), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ok := t.TempDir()
	for _, g := range []Group{
		{Name: "m", Members: []string{filepath.Join(ok, "caf\xe9")}},
		{Name: "x", Members: []string{ok}, Policy: Policy{ExcludeIfPresent: []string{"marker\xe9"}}},
		{Name: "s", Members: []string{ok}, Policy: Policy{PreScript: "touch /tmp/pre\xe9"}},
	} {
		if _, err := c.CreateGroup(g, time.Now()); !errors.Is(err, ErrBadPolicy) || !strings.Contains(err.Error(), "is not UTF-8") {
			t.Errorf("group %s: %v, want it refused", g.Name, err)
		}
		if _, err := c.ApplyGroups([]Group{g}, false, time.Now()); !errors.Is(err, ErrBadPolicy) {
			t.Errorf("group %s applied: %v, want it refused", g.Name, err)
		}
	}
	if _, err := c.CreateGroup(Group{Name: "fine", Members: []string{ok}, Policy: Policy{ExcludeIfPresent: []string{"marker?"}}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EditGroup("fine", time.Now(), func(g *Group) error { g.Policy.PostScript = "echo \xff"; return nil }); !errors.Is(err, ErrBadPolicy) {
		t.Errorf("edit to a script not UTF-8: %v, want it refused", err)
	}
}
