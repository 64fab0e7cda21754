package chunkstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/local"
)

// Every single damaged byte of config, in a plaintext and an encrypted
// store, is survived: the store opens from the copy with the same
// identity and keys (a blob saved before reads back), the damage is
// reported unless the change is one JSON cannot see, and the next writer
// rewrites config. Even a change JSON cannot see (the case of a key's
// letter) is reported, as config then differs from its copy.
func TestConfigDamageEveryByte(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[enc], func(t *testing.T) {
			dir, s := newStore(t, enc)
			lock, w, data, id := saveRandom(t, s, 1, 5000)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			lock.Unlock()
			s.Close()
			orig, err := os.ReadFile(filepath.Join(dir, "config"))
			if err != nil {
				t.Fatal(err)
			}
			if cp, _ := os.ReadFile(filepath.Join(dir, configCopyName)); !bytes.Equal(cp, orig) {
				t.Fatal("init did not write an identical copy")
			}
			want := &Config{}
			json.Unmarshal(orig, want)
			step := 1
			if enc {
				step = 7 // each open runs the KDF
			}
			unseen := 0
			for off := 0; off < len(orig); off += step {
				for _, bit := range []byte{0x01, 0x20} {
					b := bytes.Clone(orig)
					b[off] ^= bit
					if err := os.WriteFile(filepath.Join(dir, "config"), b, 0o600); err != nil {
						t.Fatal(err)
					}
					s, err := Open(dir, OpenOptions{Password: "pw"})
					if err != nil {
						t.Fatalf("byte %d ^ %#x (%q): open: %v", off, bit, orig[off], err)
					}
					if s.Config().ID != want.ID || s.Polynomial() != s.pol || s.MinChunk() != int(want.MinChunk) {
						t.Fatalf("byte %d ^ %#x: opened with another config", off, bit)
					}
					if got, err := s.LoadBlob(id, nil); err != nil || !bytes.Equal(got, data) {
						t.Fatalf("byte %d ^ %#x: blob: %v", off, bit, err)
					}
					if s.ConfigProblem() == "" {
						unseen++
					}
					s.Close()
				}
			}
			if unseen > 0 {
				t.Errorf("%d damaged configs not reported", unseen)
			}
			// A writer puts config back.
			s, err = Open(dir, OpenOptions{Password: "pw"})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			lock, _ = openWriter(t, s)
			lock.Unlock()
			for _, name := range []string{"config", configCopyName} {
				if b, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(b, orig) {
					t.Errorf("%s not rewritten by the writer", name)
				}
			}
			if p := s.ConfigProblem(); p != "" {
				t.Errorf("problem after the writer: %s", p)
			}
		})
	}
}

func TestConfigBothDamaged(t *testing.T) {
	dir, s := newStore(t, false)
	s.Close()
	for _, name := range []string{"config", configCopyName} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("{garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Open(dir, OpenOptions{})
	// Damage (exit 4), with what to do next. (Fix: no next step, exit 1.)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "config")) || !strings.Contains(err.Error(), configCopyName) ||
		!errors.Is(err, ErrConfigDamaged) || !strings.Contains(err.Error(), "put back a copy of either") {
		t.Errorf("both damaged: %v", err)
	}
}

// A store from before the copy existed (no checksum, no copy) opens as
// before, reports nothing, and gets both from its first writer.
func TestConfigWithoutCopy(t *testing.T) {
	dir, s := newStore(t, true)
	s.Close()
	old := &Config{}
	b, _ := os.ReadFile(filepath.Join(dir, "config"))
	json.Unmarshal(b, old)
	old.Checksum = ""
	b, _ = json.MarshalIndent(old, "", "  ")
	os.WriteFile(filepath.Join(dir, "config"), b, 0o600)
	os.Remove(filepath.Join(dir, configCopyName))
	if _, err := Open(dir, OpenOptions{Password: "nope"}); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("wrong password: %v", err)
	}
	s, err := Open(dir, OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p := s.ConfigProblem(); p != "" {
		t.Errorf("problem reported for an old store: %s", p)
	}
	lock, _ := openWriter(t, s)
	lock.Unlock()
	a, _ := os.ReadFile(filepath.Join(dir, "config"))
	c, _ := os.ReadFile(filepath.Join(dir, configCopyName))
	if !bytes.Equal(a, c) || !bytes.Contains(a, []byte(`"checksum"`)) {
		t.Errorf("writer did not add the checksum and the copy:\n%s\n%s", a, c)
	}
	if _, err := Open(dir, OpenOptions{Password: "pw"}); err != nil {
		t.Error(err)
	}
}

// The copy alone keeps the store: config deleted.
func TestConfigMissingReadFromCopy(t *testing.T) {
	dir, s := newStore(t, false)
	s.Close()
	os.Remove(filepath.Join(dir, "config"))
	s, err := Open(dir, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(s.ConfigProblem(), "missing") {
		t.Errorf("problem: %q", s.ConfigProblem())
	}
}

// init never writes a new config over a store: not while the config's
// copy is there, nor when both are gone but its packs, index files and
// points are. A new config would carry a new key and polynomial, and an
// encrypted store's data could never be read again. Opening such a store
// says what is missing, not that there is no store.
func TestInitRefusesStoreWithoutConfig(t *testing.T) {
	dir, s := newStore(t, true)
	lock, w := openWriter(t, s)
	data := randBytes(1, 100_000)
	id := s.Hash(data)
	if _, err := w.SaveBlob(DataBlob, id, data); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	lock.Unlock()
	s.Close()
	sealed, err := os.ReadFile(filepath.Join(dir, "config.copy"))
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "config"))
	if _, err := Init(dir, InitOptions{Encrypt: true, Password: "pw", KDFMemoryKB: 1024}); !errors.Is(err, ErrExists) {
		t.Fatalf("init over a store without its config: %v, want ErrExists", err)
	}
	os.Remove(filepath.Join(dir, "config.copy"))
	_, err = Init(dir, InitOptions{Encrypt: true, Password: "pw", KDFMemoryKB: 1024})
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "put back") {
		t.Fatalf("init over a store without either config: %v, want ErrExists saying what to do", err)
	}
	for _, err := range []error{CheckLocal(dir), func() error { _, err := Open(dir, OpenOptions{Password: "pw"}); return err }()} {
		if !errors.Is(err, ErrConfigMissing) || errors.Is(err, ErrNoStore) {
			t.Errorf("a store without its config files: %v, want ErrConfigMissing", err)
		}
	}
	// Put back, the old config opens the old data: nothing was rewritten.
	if err := os.WriteFile(filepath.Join(dir, "config"), sealed, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.LoadBlob(id, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob after the config was put back: %v", err)
	}
	// An empty directory is no store, and init makes one there.
	empty := filepath.Join(t.TempDir(), "store")
	if err := CheckLocal(empty); !errors.Is(err, ErrNoStore) {
		t.Errorf("empty directory: %v, want ErrNoStore", err)
	}
	if _, err := Init(empty, InitOptions{}); err != nil {
		t.Fatal(err)
	}
}

// eioConfig is a store whose config files cannot be read: the disk under
// it fails (EIO), as on an ext4 shut down after I/O errors.
type eioConfig struct{ backend.Backend }

func (b eioConfig) Load(ctx context.Context, h backend.Handle, off int64, n int, buf []byte) ([]byte, error) {
	if h.Type == backend.Config {
		return nil, &fs.PathError{Op: "open", Path: h.Name, Err: syscall.EIO}
	}
	return b.Backend.Load(ctx, h, off, n, buf)
}

// Config files that cannot be read are not called damaged: the fix is
// the disk, not a repair of the store.
func TestConfigUnreadableIsNotDamage(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(dir, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := openConfig(eioConfig{local.Open(dir)}, "")
	if err == nil || strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), "cannot be read") || !strings.Contains(err.Error(), "dmesg") {
		t.Errorf("config on a failing disk: %v", err)
	}
}

// Fix (a copy to a new store stopped before its config): every command
// there said "run 'recall init' first", and a store made so has another
// key, which the copy then refused. The message now says to run the
// stopped command again.
func TestStoreFoldersWithoutConfigSayRunAgain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	if _, err := local.Create(dir); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, OpenOptions{})
	if !errors.Is(err, ErrNoStore) || !strings.Contains(err.Error(), "run that command again") {
		t.Errorf("open of a store's folders without a config: %v", err)
	}
	if err := CheckLocal(dir); !errors.Is(err, ErrNoStore) || !strings.Contains(err.Error(), "run that command again") {
		t.Errorf("CheckLocal: %v", err)
	}
	if _, err := Open(t.TempDir(), OpenOptions{}); !errors.Is(err, ErrNoStore) || !strings.Contains(err.Error(), "run 'recall init' first") {
		t.Errorf("open of an empty directory: %v", err)
	}
}
