package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeebo/blake3"
)

// storeFiles maps every file of the store but its config, config copy and
// lock file to the hash of its bytes.
func storeFiles(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case rel == "config", rel == configCopyName, filepath.Dir(rel) == "locks":
			return nil // the config changes; locks are who holds what, not content
		}
		b, err := os.ReadFile(p)
		out[rel] = blake3.Sum256(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func lockStore(t *testing.T, s *Store) *Lock {
	t.Helper()
	l, err := s.LockWriter(context.Background(), "test", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestChangePassword(t *testing.T) {
	dir, s := newStore(t, true)
	lock, w, data, id := saveRandom(t, s, 1, 300_000)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	before := storeFiles(t, dir)
	oldCfg := *s.Config().Encryption
	if err := lock.ChangePassword("pw", "new pw"); err != nil {
		t.Fatal(err)
	}
	lock.Unlock()
	s.Close()

	if _, err := Open(dir, OpenOptions{Password: "pw"}); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("old passphrase after the change: %v, want ErrWrongPassword", err)
	}
	s2, err := Open(dir, OpenOptions{Password: "new pw"})
	if err != nil {
		t.Fatalf("new passphrase: %v", err)
	}
	defer s2.Close()
	if got, err := s2.LoadBlob(id, nil); err != nil || !bytes.Equal(got, data) {
		t.Errorf("blob saved before the change: %v, equal %v", err, bytes.Equal(got, data))
	}
	if p := s2.ConfigProblem(); p != "" {
		t.Errorf("config problem after the change: %s", p)
	}
	prim, _ := os.ReadFile(filepath.Join(dir, "config"))
	cp, _ := os.ReadFile(filepath.Join(dir, configCopyName))
	if !bytes.Equal(prim, cp) {
		t.Error("config and its copy differ")
	}
	e := s2.Config().Encryption
	if bytes.Equal(e.Salt, oldCfg.Salt) || bytes.Equal(e.Sealed, oldCfg.Sealed) {
		t.Error("salt or sealed key unchanged")
	}
	if e.MemoryKB != defaultKDFMemory || e.Time < oldCfg.Time {
		t.Errorf("key derivation %d KiB, time %d; want the default %d KiB, time >= %d", e.MemoryKB, e.Time, defaultKDFMemory, oldCfg.Time)
	}
	after := storeFiles(t, dir)
	for p, h := range before {
		if after[p] != h {
			t.Errorf("%s changed", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
}

func TestChangePasswordRefused(t *testing.T) {
	for _, tc := range []struct {
		name     string
		encrypt  bool
		old, new string
		want     error
	}{
		{"wrong old passphrase", true, "nope", "new", ErrWrongPassword},
		{"no old passphrase", true, "", "new", ErrNoPassword},
		{"empty new passphrase", true, "pw", "", ErrNoPassword},
		{"plaintext store", false, "pw", "new", ErrNotEncrypted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, s := newStore(t, tc.encrypt)
			defer s.Close()
			cfg, _ := os.ReadFile(filepath.Join(dir, "config"))
			lock := lockStore(t, s)
			defer lock.Unlock()
			if err := lock.ChangePassword(tc.old, tc.new); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
			if now, _ := os.ReadFile(filepath.Join(dir, "config")); !bytes.Equal(now, cfg) {
				t.Error("config changed")
			}
		})
	}
}

// A process that opened the store before the passphrase changed, then
// writes, keeps the new passphrase: it must not write back the config it
// read at open.
func TestChangePasswordSurvivesEarlierWriter(t *testing.T) {
	dir, early := newStore(t, true)
	defer early.Close()
	s, err := Open(dir, OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	lock := lockStore(t, s)
	if err := lock.ChangePassword("pw", "new"); err != nil {
		t.Fatal(err)
	}
	lock.Unlock()
	s.Close()

	lock, w, data, id := saveRandom(t, early, 2, 100_000)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	lock.Unlock()
	if _, err := Open(dir, OpenOptions{Password: "pw"}); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("old passphrase after an earlier opener wrote: %v, want ErrWrongPassword", err)
	}
	s2, err := Open(dir, OpenOptions{Password: "new"})
	if err != nil {
		t.Fatalf("new passphrase after an earlier opener wrote: %v", err)
	}
	defer s2.Close()
	if got, err := s2.LoadBlob(id, nil); err != nil || !bytes.Equal(got, data) {
		t.Errorf("blob the earlier opener saved: %v", err)
	}
}

// A passphrase change stopped between the copy and the config (kill -9)
// is named as that, with what finishes it, under either passphrase: not
// as a damaged config.
func TestChangePasswordInterrupted(t *testing.T) {
	dir, s := newStore(t, true)
	oldConfig, err := os.ReadFile(filepath.Join(dir, "config"))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := s.LockExclusive(context.Background(), "test", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.ChangePassword("pw", "new pw"); err != nil {
		t.Fatal(err)
	}
	ex.Unlock()
	s.Close()
	// As if stopped after the copy: config still sealed with "pw".
	if err := os.WriteFile(filepath.Join(dir, "config"), oldConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"pw", "new pw"} {
		s, err := Open(dir, OpenOptions{Password: pw})
		if err != nil {
			t.Fatalf("%q: %v", pw, err)
		}
		p := s.ConfigProblem()
		s.Close()
		if !strings.Contains(p, "passphrase change stopped half way") || !strings.Contains(p, "recall key passwd") || strings.Contains(p, "damaged") {
			t.Errorf("%q: problem %q, want the interrupted change named", pw, p)
		}
	}
}
