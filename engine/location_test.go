package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/internal/golden"
)

// store.json is a format: pinned.
func TestRecordStoreGolden(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	if err := RecordStore(home, "s3:http://127.0.0.1:7480/backups/site-a"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(HomeStorePath(home))
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "store-json-v1.golden", b)
	got, err := RecordedStore(home)
	if err != nil || got != "s3:http://127.0.0.1:7480/backups/site-a" {
		t.Fatalf("RecordedStore = %q, %v", got, err)
	}
	if err := RequireStore(home); err != nil {
		t.Errorf("RequireStore of a home recording its store: %v", err)
	}
	ents, _ := os.ReadDir(home)
	if len(ents) != 1 {
		t.Errorf("home holds %d files after RecordStore, want store.json alone", len(ents))
	}
}

// Which store a home's command uses, and when a given one is refused.
func TestHomeStore(t *testing.T) {
	const s3a, s3b = "s3:http://127.0.0.1:7480/bucket/a", "s3:http://127.0.0.1:7480/bucket/b"
	local := t.TempDir()
	if _, err := chunkstore.Init(StoreDir(local), chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	remote := filepath.Join(t.TempDir(), "remote")
	if err := RecordStore(remote, s3a); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(t.TempDir(), "fresh")
	bad := t.TempDir()
	os.WriteFile(HomeStorePath(bad), []byte(`{"version":2,"location":"s3:x/y"}`), 0o600)
	cases := []struct {
		name, home, given string
		explicit          bool
		want              string
		note              bool
		err               error
		errText           string
	}{
		{name: "local home", home: local, want: StoreDir(local)},
		{name: "recorded", home: remote, want: s3a},
		{name: "fresh home", home: fresh, want: StoreDir(fresh)},
		{name: "fresh home given", home: fresh, given: s3b, want: s3b},
		{name: "same as recorded", home: remote, given: s3a + "/", want: s3a + "/"},
		{name: "same local, as the home", home: local, given: local, want: local},
		{name: "other, explicit", home: remote, given: s3b, explicit: true, want: s3b, note: true},
		{name: "other, from the environment", home: remote, given: s3b, err: ErrOtherStore},
		{name: "local home, other from the environment", home: local, given: s3b, err: ErrOtherStore},
		{name: "newer store.json", home: bad, errText: "version 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			loc, note, err := HomeStore(c.home, c.given, c.explicit)
			switch {
			case c.err != nil || c.errText != "":
				if err == nil || (c.err != nil && !errors.Is(err, c.err)) || !strings.Contains(err.Error(), c.errText) {
					t.Fatalf("HomeStore = %q, %v; want error %v %q", loc, err, c.err, c.errText)
				}
			case err != nil:
				t.Fatal(err)
			case loc != c.want || (note != "") != c.note:
				t.Errorf("HomeStore = %q (note %q), want %q (note: %v)", loc, note, c.want, c.note)
			}
		})
	}
}
