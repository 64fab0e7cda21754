package engine

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Migration 4 adds the sources bucket to a version 3 catalog and keeps
// its jobs and groups.
func TestCatalogMigration4(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	db, err := bolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, m := range migrations[:3] {
			if err := m.apply(tx); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keyVersion, binary.BigEndian.AppendUint64(nil, 3)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketGroups).Put([]byte("g"), []byte(`{"name":"g","members":["/srv/www"]}`)); err != nil {
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
		if tx.Bucket(bucketSources) == nil {
			t.Error("no sources bucket")
		}
		if v := tx.Bucket(bucketMeta).Get(keyVersion); binary.BigEndian.Uint64(v) != 4 {
			t.Errorf("version %x", v)
		}
		return nil
	})
	jobs, err := c.Jobs(0)
	if err != nil || len(jobs) != 1 || jobs[0].Kind != "backup" {
		t.Errorf("jobs after migration: %+v %v", jobs, err)
	}
	gs, err := c.Groups()
	if err != nil || len(gs) != 1 || gs[0].Name != "g" || gs[0].Sources()[0] != "srv-www" {
		t.Errorf("groups after migration: %+v %v", gs, err)
	}
	if _, err := c.AddSource(Source{Name: "srv01", Kind: KindBMR, Computer: "SRV01", Staging: "/srv/recall-bmr/srv01"}, time.Now()); err != nil {
		t.Error(err)
	}
}

// TestSourceRules: each rule of the registry refuses with a message
// naming both sides and what to do.
func TestSourceRules(t *testing.T) {
	now := time.Date(2026, 11, 2, 21, 0, 0, 0, time.UTC)
	setup := func(t *testing.T) *Catalog {
		c := testCatalog(t)
		if _, err := c.AddSource(Source{Name: "srv01", Kind: KindBMR, Computer: "SRV01", Staging: "/srv/recall-bmr/srv01"}, now); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateGroup(Group{Name: "files", Members: []string{"/srv/www", "/data/shares"}}, now); err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		src  Source
		is   error
		want []string // each in the message
	}{
		{"name of a registered source", Source{Name: "srv01", Kind: KindSystemState, Computer: "SRV02"},
			ErrSourceExists, []string{"srv01", "kind bmr", "SRV01", "recall source edit srv01"}},
		{"name of a path source", Source{Name: "srv-www", Kind: KindBMR, Computer: "WEB"},
			ErrSourceExists, []string{"srv-www", "/srv/www", "group files", "recall group remove files --member /srv/www"}},
		{"name of a registered source in another case", Source{Name: "SRV01", Kind: KindBMR, Computer: "SRV02", Staging: "/srv/recall-bmr/SRV01x"},
			ErrSourceExists, []string{"source SRV01", "srv01", "ignoring case", "kind bmr", "choose another name"}},
		{"name of a path source in another case", Source{Name: "Srv-WWW", Kind: KindBMR, Computer: "WEB"},
			ErrSourceExists, []string{"Srv-WWW", "srv-www", "/srv/www", "group files"}},
		{"computer protected", Source{Name: "srv01-state", Kind: KindSystemState, Computer: "srv01"},
			ErrSourceRule, []string{"srv01-state", "source srv01 (kind bmr)", "BMR includes system state; protect srv01 by one source"}},
		{"reservation too small", Source{Name: "x", Kind: KindBMR, Computer: "X", Reservation: 10 << 30},
			ErrSourceRule, []string{"source x", "15 GiB", "--reservation 15GiB"}},
		{"staging in the home", Source{Name: "x", Kind: KindBMR, Computer: "X", Staging: "HOME/bmr/x"},
			ErrSourceRule, []string{"source x", "overlaps recall's home", "/srv/recall-bmr/x"}},
		{"staging of another source", Source{Name: "x", Kind: KindBMR, Computer: "X", Staging: "/srv/recall-bmr/srv01/x"},
			ErrSourceRule, []string{"source x", "/srv/recall-bmr/srv01", "of source srv01", "--staging /srv/recall-bmr/x"}},
		{"staging protected as a path", Source{Name: "x", Kind: KindBMR, Computer: "X", Staging: "/data/shares/x"},
			ErrSourceRule, []string{"source x", "member /data/shares of group files", "recall group remove files --member /data/shares"}},
		{"kind", Source{Name: "x", Kind: "vm", Computer: "X"},
			ErrSourceRule, []string{`kind "vm"`, "--kind bmr"}},
		{"computer", Source{Name: "x", Kind: KindBMR, Computer: `a\b`},
			ErrSourceRule, []string{`computer "a\\b"`, "--computer"}},
		// ".." named the folder above WindowsImageBackup\<computer> only
		// once a share was applied, after it had made a Samba account;
		// '%' is a Samba substitution in the share's comment.
		{"computer ..", Source{Name: "x", Kind: KindBMR, Computer: ".."},
			ErrSourceRule, []string{`computer ".."`, "--computer"}},
		{"computer .", Source{Name: "x", Kind: KindBMR, Computer: "."},
			ErrSourceRule, []string{`computer "."`, "--computer"}},
		{"computer with %", Source{Name: "x", Kind: KindBMR, Computer: "A%U"},
			ErrSourceRule, []string{`computer "A%U"`, "--computer"}},
		{"name", Source{Name: "a/b", Kind: KindBMR, Computer: "X"},
			ErrSourceRule, []string{`"a/b"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := setup(t)
			tc.src.Staging = strings.ReplaceAll(tc.src.Staging, "HOME", c.home())
			_, err := c.AddSource(tc.src, now)
			if !errors.Is(err, tc.is) {
				t.Fatalf("AddSource(%+v): %v, want %v", tc.src, err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
			if ss, _ := c.Sources(); len(ss) != 1 {
				t.Errorf("sources after a refusal: %+v", ss)
			}
		})
	}
}

// TestSourceInGroups: a registered source joins a group as its staging
// directory under its name, belongs to one group at most, cannot be
// removed while a group holds it, and a new staging directory moves its
// membership along.
func TestSourceInGroups(t *testing.T) {
	c := testCatalog(t)
	now := time.Date(2026, 11, 2, 21, 0, 0, 0, time.UTC)
	s, err := c.AddSource(Source{Name: "srv01", Kind: KindBMR, Computer: "SRV01"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if s.Staging != "/srv/recall-bmr/srv01" || s.Reservation != DefaultReservation || s.Settle != DefaultSettle || !s.Created.Equal(now) {
		t.Errorf("defaults: %+v", s)
	}
	g, err := c.CreateGroup(Group{Name: "servers", Members: []string{s.Staging, "/etc"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(g.Sources(), ","); got != "etc,srv01" {
		t.Errorf("group sources %s, want etc,srv01", got)
	}
	_, err = c.CreateGroup(Group{Name: "other", Members: []string{s.Staging}}, now)
	if !errors.Is(err, ErrMemberTaken) || !strings.Contains(err.Error(), "recall group remove servers --source srv01") {
		t.Errorf("second group: %v", err)
	}
	if _, err := c.CreateGroup(Group{Name: "paths", Members: []string{"/srv01"}}, now); !errors.Is(err, ErrSourceExists) || !strings.Contains(err.Error(), "registered bmr source of computer SRV01") {
		t.Errorf("a path member named as a registered source: %v", err)
	}
	if err := c.CheckPathSource("srv01"); !errors.Is(err, ErrSourceExists) || !strings.Contains(err.Error(), "recall backup --source srv01") {
		t.Errorf("a path backed up under a registered source's name: %v", err)
	}
	if err := c.CheckPathSource("SRV01"); !errors.Is(err, ErrSourceExists) || !strings.Contains(err.Error(), "ignoring case, the registered bmr source srv01") {
		t.Errorf("a path backed up under a registered source's name in another case: %v", err)
	}
	if err := c.CheckPathSource("etc"); err != nil {
		t.Errorf("a path source's name: %v", err)
	}
	if err := c.RemoveSource("srv01"); err == nil || !strings.Contains(err.Error(), "recall group remove servers --source srv01") {
		t.Errorf("remove while in a group: %v", err)
	}
	if _, err := c.EditSource("srv01", func(s *Source) error { s.Staging = "/srv/bmr/srv01"; return nil }); err != nil {
		t.Fatal(err)
	}
	g, err = c.Group("servers")
	if err != nil || strings.Join(g.Members, ",") != "/etc,/srv/bmr/srv01" || g.SourceOf["/srv/bmr/srv01"] != "srv01" {
		t.Errorf("group after the staging moved: %+v %v", g, err)
	}
	if _, err := c.EditGroup("servers", now, func(g *Group) error { g.Members = []string{"/etc"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveSource("srv01"); err != nil {
		t.Error(err)
	}
	if _, err := c.Source("srv01"); !errors.Is(err, ErrNoSource) {
		t.Errorf("after remove: %v", err)
	}
	if err := c.RemoveSource("srv01"); !errors.Is(err, ErrNoSource) {
		t.Errorf("second remove: %v", err)
	}
}

// TestStatusReservation: status shows each registered source's
// reservation and last image size, gives a source with no point a line,
// and warns when an image grew past its reservation.
func TestStatusReservation(t *testing.T) {
	s := &StoreStatus{Sources: []SourceStatus{{Group: "servers", Source: "srv01", Points: 3}, {Group: "servers", Source: "etc"}}}
	s.AddSources([]Source{
		{Name: "srv01", Kind: KindBMR, Computer: "SRV01", Reservation: 30 << 30, ImageSize: 34<<30 + 100<<20},
		{Name: "srv02", Kind: KindSystemState, Computer: "SRV02", Reservation: 30 << 30, ImageSize: 30 << 30},
	})
	want := []SourceStatus{
		{Source: "srv02", Kind: KindSystemState, Computer: "SRV02", Reservation: 30 << 30, ImageSize: 30 << 30},
		{Group: "servers", Source: "etc"},
		{Group: "servers", Source: "srv01", Points: 3, Kind: KindBMR, Computer: "SRV01", Reservation: 30 << 30, ImageSize: 34<<30 + 100<<20},
	}
	if len(s.Sources) != len(want) {
		t.Fatalf("sources %+v, want %+v", s.Sources, want)
	}
	for i := range want {
		if s.Sources[i] != want[i] {
			t.Errorf("source %d: %+v, want %+v", i, s.Sources[i], want[i])
		}
	}
	w := "image of SRV01 is 34.1 GiB, past its reservation of 30 GiB: raise it with 'recall source edit srv01 --reservation SIZE'"
	if len(s.Warnings) != 1 || s.Warnings[0] != w {
		t.Errorf("warnings %q, want only %q", s.Warnings, w)
	}
}

// TestSourceUser: one Samba user serves one source's share, so that one
// computer's credentials cannot write another's folder.
func TestSourceUser(t *testing.T) {
	c := testCatalog(t)
	now := time.Date(2026, 11, 2, 21, 0, 0, 0, time.UTC)
	for _, s := range []Source{
		{Name: "web", Kind: KindBMR, Computer: "WEB1"},
		{Name: "db", Kind: KindBMR, Computer: "DB1"},
	} {
		if _, err := c.AddSource(s, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.EditSource("web", func(s *Source) error { s.User = "wsb-web"; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		source, user string
		ok           bool
	}{
		{"web", "wsb-web", true}, // its own
		{"db", "wsb-db", true},
		{"db", "wsb-web", false},
		{"db", "wsb-Web", true}, // Unix user names are case-sensitive
	} {
		err := c.CheckSourceUser(tc.source, tc.user)
		if tc.ok != (err == nil) {
			t.Errorf("CheckSourceUser(%s, %s) = %v, want ok %v", tc.source, tc.user, err, tc.ok)
		}
		if err != nil {
			for _, w := range []string{"source " + tc.source, "user " + tc.user, "source web", "--user"} {
				if !strings.Contains(err.Error(), w) || !errors.Is(err, ErrSourceRule) {
					t.Errorf("message %q lacks %q (or is not ErrSourceRule)", err, w)
				}
			}
		}
	}
	// Recording it is refused too, whatever the caller checked before.
	_, err := c.EditSource("db", func(s *Source) error { s.User = "wsb-web"; return nil })
	if !errors.Is(err, ErrSourceRule) || !strings.Contains(err.Error(), "source web") {
		t.Errorf("recording another source's user: %v", err)
	}
	if s, _ := c.Source("db"); s.User != "" {
		t.Errorf("user recorded after a refusal: %+v", s)
	}
}

// Messages about a source name quote it, and name no backup option: a
// name from the API may hold a newline, which went raw into the
// suggested 'recall source add' command, and 'source add latest' said
// "bad backup option".
func TestSourceNameMessages(t *testing.T) {
	c := testCatalog(t)
	_, err := c.Source("srv01\n{\"level\":\"ERROR\"}")
	if !errors.Is(err, ErrNoSource) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "recall source add NAME") {
		t.Errorf("unknown source with a newline: %q", err)
	}
	_, err = c.AddSource(Source{Name: "latest", Kind: KindBMR, Computer: "X"}, time.Now())
	if !errors.Is(err, ErrBadOption) || strings.Contains(err.Error(), "backup option") || !strings.Contains(err.Error(), `invalid source name "latest"`) {
		t.Errorf("source add latest: %q", err)
	}
}
