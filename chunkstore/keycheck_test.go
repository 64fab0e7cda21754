package chunkstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestOpenRefusesForeignConfig: a store whose config is another store's
// (copied over it) is refused at open, ErrKeyMismatch, nothing read as
// damage: opened, every manifest, index file and pack header failed its
// check and the repairs deleted them all. Its own config opens it again.
func TestOpenRefusesForeignConfig(t *testing.T) {
	mk := func(encrypt, point bool) string {
		dir := filepath.Join(t.TempDir(), "store")
		if _, err := Init(dir, InitOptions{Encrypt: encrypt, Password: "pw", KDFMemoryKB: 1024}); err != nil {
			t.Fatal(err)
		}
		if point {
			s, err := Open(dir, OpenOptions{Password: "pw"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.SavePoint([]byte(`{"version":1}`)); err != nil {
				t.Fatal(err)
			}
			s.Close()
		}
		return dir
	}
	swapConfig := func(from, to string) func() {
		saved := map[string][]byte{}
		for _, name := range []string{"config", "config.copy"} {
			b, _ := os.ReadFile(filepath.Join(to, name))
			saved[name] = b
			c, err := os.ReadFile(filepath.Join(from, name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(to, name), c, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return func() {
			for name, b := range saved {
				os.WriteFile(filepath.Join(to, name), b, 0o600)
			}
		}
	}
	for _, c := range []struct {
		name         string
		data, config bool // data store encrypted, config's store encrypted
	}{
		{"encrypted, another key", true, true},
		{"encrypted, a plain config", true, false},
		{"plain, an encrypted config", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := mk(c.data, true)
			restore := swapConfig(mk(c.config, false), dir)
			s, err := Open(dir, OpenOptions{Password: "pw"})
			if !errors.Is(err, ErrKeyMismatch) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("open with another store's config: %v, want ErrKeyMismatch", err)
			}
			restore()
			s, err = Open(dir, OpenOptions{Password: "pw"})
			if err != nil {
				t.Fatalf("open with its own config again: %v", err)
			}
			s.Close()
		})
	}
	// Damaged manifests are passed over: the first whole one decides,
	// wherever it is listed. With only the first few looked at, a store
	// whose first manifests were damaged was not judged, and the repairs
	// deleted its good point.
	t.Run("damaged manifests first", func(t *testing.T) {
		dir := mk(true, false)
		s, err := Open(dir, OpenOptions{Password: "pw"})
		if err != nil {
			t.Fatal(err)
		}
		var ids []ID
		for i := range 8 {
			id, err := s.SavePoint([]byte(fmt.Sprintf(`{"version":1,"n":%d}`, i)))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		s.Close()
		// The whole one last in the listing's (sorted) order.
		slices.SortFunc(ids, func(a, b ID) int { return strings.Compare(a.String(), b.String()) })
		for _, id := range ids[:len(ids)-1] {
			if err := os.Truncate(filepath.Join(dir, "points", id.String()), 20); err != nil {
				t.Fatal(err)
			}
		}
		swapConfig(mk(true, false), dir)
		if s, err := Open(dir, OpenOptions{Password: "pw"}); !errors.Is(err, ErrKeyMismatch) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("open with another store's config, one whole manifest of 8: %v, want ErrKeyMismatch", err)
		}
	})
	// A store of the same kind and no point is not judged.
	dir := mk(true, false)
	swapConfig(mk(true, false), dir)
	s, err := Open(dir, OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatalf("empty store, another's config: %v", err)
	}
	s.Close()
}
