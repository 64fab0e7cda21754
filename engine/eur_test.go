package engine

import (
	"errors"
	"maps"
	"os"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestNoEndUserRecovery(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name    string
		setup   func(t *testing.T, home string)
		want    map[string]string
		wantErr error
	}{
		{name: "no catalog", setup: func(*testing.T, string) {}, want: map[string]string{}},
		{name: "catalog from before groups", setup: func(t *testing.T, home string) {
			db, err := bolt.Open(CatalogPath(home), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(migrations[0].apply); err != nil {
				t.Fatal(err)
			}
			db.Close()
		}, want: map[string]string{}},
		{name: "groups on and off", setup: func(t *testing.T, home string) {
			c, err := OpenCatalog(CatalogPath(home), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, g := range []Group{
				{Name: "open", Members: []string{"/srv/a"}},
				{Name: "hr", Members: []string{"/srv/pay", "/srv/staff"}, Policy: Policy{EndUserRecovery: "off"}},
				{Name: "pub", Members: []string{"/srv/pub"}, Policy: Policy{EndUserRecovery: "on"}},
			} {
				if _, err := c.CreateGroup(g, now); err != nil {
					t.Fatal(err)
				}
			}
		}, want: map[string]string{"srv-pay": "hr", "srv-staff": "hr"}},
		{name: "damaged", setup: func(t *testing.T, home string) {
			if err := os.WriteFile(CatalogPath(home), make([]byte, 8192), 0o600); err != nil {
				t.Fatal(err)
			}
		}, wantErr: errCatalogDamaged},
	} {
		t.Run(c.name, func(t *testing.T) {
			home := t.TempDir()
			c.setup(t, home)
			before, _ := os.ReadDir(home)
			got, err := NoEndUserRecovery(home, 100*time.Millisecond)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err %v, want %v", err, c.wantErr)
				}
			} else if err != nil || !maps.Equal(got, c.want) {
				t.Fatalf("got %v, %v; want %v", got, err, c.want)
			}
			// Read-only: nothing created, moved aside or migrated.
			after, _ := os.ReadDir(home)
			if len(after) != len(before) {
				t.Errorf("home changed: %v -> %v", before, after)
			}
		})
	}
}

// A writer holding the catalog makes the read fail as busy after the
// wait, not hang.
func TestNoEndUserRecoveryBusy(t *testing.T) {
	home := t.TempDir()
	c, err := OpenCatalog(CatalogPath(home), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := NoEndUserRecovery(home, 100*time.Millisecond); !errors.Is(err, ErrCatalogBusy) {
		t.Fatalf("err %v, want %v", err, ErrCatalogBusy)
	}
}

// The watch reads the catalog again once it changed, and gives the error
// (not a stale answer as fresh) while it cannot.
func TestEndUserRecoveryWatch(t *testing.T) {
	home := t.TempDir()
	w := NewEndUserRecoveryWatch(home, 100*time.Millisecond)
	if off, err := w.Off(); err != nil || len(off) != 0 {
		t.Fatalf("no catalog: %v, %v", off, err)
	}
	edit := func(fn func(*Catalog)) {
		c, err := OpenCatalog(CatalogPath(home), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fn(c)
	}
	edit(func(c *Catalog) {
		if _, err := c.CreateGroup(Group{Name: "g", Members: []string{"/data"}, Policy: Policy{EndUserRecovery: "off"}}, time.Now()); err != nil {
			t.Fatal(err)
		}
	})
	if off, err := w.Off(); err != nil || !maps.Equal(off, map[string]string{"data": "g"}) {
		t.Fatalf("after create: %v, %v", off, err)
	}
	edit(func(c *Catalog) {
		if _, err := c.EditGroup("g", time.Now(), func(g *Group) error { g.Policy.EndUserRecovery = "on"; return nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Off(); !errors.Is(err, ErrCatalogBusy) {
			t.Errorf("while held: %v, want busy", err)
		}
	})
	if off, err := w.Off(); err != nil || len(off) != 0 {
		t.Fatalf("after edit: %v, %v", off, err)
	}
	// An old, unchanged file is not read again: its answer is kept even
	// when reading it would now fail.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(CatalogPath(home), old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Off(); err != nil {
		t.Fatal(err)
	}
	edit(func(*Catalog) {
		if err := os.Chtimes(CatalogPath(home), old, old); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Off(); err != nil {
			t.Errorf("unchanged catalog read again: %v", err)
		}
	})
}
