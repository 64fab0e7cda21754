package chunkstore

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/local"
	"github.com/restic/chunker"
	"github.com/zeebo/blake3"
)

// The config is the one file a store cannot be read without: it holds the
// sealed key of an encrypted store. So it is kept twice, <store>/config and
// <store>/config.copy, with the same bytes, and each carries a checksum:
//
//	checksum  hex BLAKE3-256 of the file's JSON encoding (two-space
//	          indent, fields in struct order) with checksum set to ""
//
// A config whose checksum fails, that does not parse, or whose sealed key
// does not open with a passphrase that opens its copy, is damaged: the
// store is opened from the copy, the damage is reported (ConfigProblem,
// which verify shows), and the next writer rewrites both files from the
// good one. Stores written before the checksum existed have no checksum and
// no copy; they are read as before, and their first writer adds both.

const configCopyName = "config.copy"

// encodeConfig returns the file bytes of cfg with its checksum set.
func encodeConfig(cfg *Config) []byte {
	c := *cfg
	c.Checksum = ""
	b, _ := json.MarshalIndent(&c, "", "  ")
	sum := blake3.Sum256(b)
	c.Checksum = hex.EncodeToString(sum[:])
	b, _ = json.MarshalIndent(&c, "", "  ")
	return append(b, '\n')
}

// parseConfig decodes and checks one config file's bytes: syntax, version,
// checksum (when present) and chunk parameters.
func parseConfig(b []byte) (*Config, error) {
	cfg := &Config{}
	if err := json.Unmarshal(b, cfg); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if cfg.Checksum != "" {
		c := *cfg
		c.Checksum = ""
		enc, _ := json.MarshalIndent(&c, "", "  ")
		sum := blake3.Sum256(enc)
		if hex.EncodeToString(sum[:]) != cfg.Checksum {
			return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
		}
	}
	if cfg.Version < 1 || cfg.Version > ConfigVersion {
		if cfg.Checksum == "" && cfg.Version < 1 {
			// Every version but the first has a checksum.
			return nil, fmt.Errorf("%w: format version %d", ErrCorrupt, cfg.Version)
		}
		return nil, fmt.Errorf("%w: format version %d, this recall reads versions 1 to %d", errConfigVersion, cfg.Version, ConfigVersion)
	}
	if cfg.Compression != "" {
		if _, err := ParseCompression(string(cfg.Compression)); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
	}
	bits := cfg.AverageBits
	if bits == 0 {
		bits = 20
	}
	if err := checkChunkBounds(int(cfg.MinChunk), int(cfg.MaxChunk), bits); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return cfg, nil
}

var errConfigVersion = errors.New("unsupported store version")

// openedConfig is the config a store was opened with.
type openedConfig struct {
	cfg     *Config
	keys    *keys
	pol     chunker.Pol
	problem string // why config (or its copy) is damaged; "" when both are whole
}

// configPath names a config file in messages.
func configPath(be backend.Backend, name string) string {
	return strings.TrimSuffix(be.Location(), "/") + "/" + name
}

// resealed reports whether a and b are one store's config sealed apart
// (a passphrase change).
func resealed(a, b *Config) bool {
	return a.ID == b.ID && a.Encryption != nil && b.Encryption != nil && !bytes.Equal(a.Encryption.Salt, b.Encryption.Salt)
}

// openConfig reads config and its copy and unlocks the store's key with
// the first that is whole and opens. It writes nothing.
func openConfig(be backend.Backend, password string) (*openedConfig, error) {
	dir := be.Location()
	type candidate struct {
		path string
		raw  []byte
		cfg  *Config
		err  error
	}
	read := func(name string) candidate {
		c := candidate{path: configPath(be, name)}
		c.raw, c.err = be.Load(bg, backend.Handle{Type: backend.Config, Name: name}, 0, -1, nil)
		if c.err == nil {
			c.cfg, c.err = parseConfig(c.raw)
		}
		return c
	}
	prim, cp := read("config"), read(configCopyName)
	primMissing := errors.Is(prim.err, backend.ErrNotExist)
	copyMissing := errors.Is(cp.err, backend.ErrNotExist)
	if primMissing && copyMissing {
		if what := storeRemains(be); what != "" {
			return nil, configMissing(dir, what)
		}
		return nil, noStore(be)
	}
	// A version this recall does not read is not damage.
	for _, c := range []candidate{prim, cp} {
		if errors.Is(c.err, errConfigVersion) {
			return nil, c.err
		}
	}
	var firstErr error
	for i, c := range []candidate{prim, cp} {
		if c.err != nil {
			continue
		}
		if i == 1 && prim.err == nil && bytes.Equal(prim.raw, cp.raw) {
			break // the same bytes cannot open where the first did not
		}
		k, pol, err := c.cfg.unlock(password)
		if err != nil {
			if errors.Is(err, ErrNoPassword) {
				return nil, err
			}
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		oc := &openedConfig{cfg: c.cfg, keys: k, pol: pol}
		// Both whole, of one store, sealed with different salts: a
		// passphrase change (ChangePassword writes the copy first)
		// stopped between the two files.
		interrupted := prim.err == nil && cp.err == nil && resealed(prim.cfg, cp.cfg)
		switch {
		case interrupted:
			other := prim.path
			if i == 0 {
				other = cp.path
			}
			oc.problem = fmt.Sprintf("a passphrase change stopped half way: %s is sealed with another passphrase than the one given, and either opens the store until a writer keeps the one it was given; run 'recall key passwd' to finish the change", other)
		case i == 1 && primMissing:
			oc.problem = fmt.Sprintf("store config %s is missing; read from its copy %s", prim.path, cp.path)
		case i == 1 && prim.err != nil:
			oc.problem = fmt.Sprintf("store config %s is damaged (%v); read from its copy %s", prim.path, prim.err, cp.path)
		case i == 1:
			oc.problem = fmt.Sprintf("store config %s does not open the key its copy %s opens: it is damaged; read from the copy", prim.path, cp.path)
		case cp.err != nil && !copyMissing:
			oc.problem = fmt.Sprintf("store config copy %s is damaged (%v)", cp.path, cp.err)
		case cp.err == nil && !bytes.Equal(prim.raw, cp.raw):
			oc.problem = fmt.Sprintf("store config copy %s differs from %s", cp.path, prim.path)
		}
		return oc, nil
	}
	if firstErr != nil {
		// Every readable config refused the passphrase.
		return nil, firstErr
	}
	if unreadable(prim.err) && (copyMissing || unreadable(cp.err)) {
		// Not damage: the files could not be read at all (a disk
		// failing, a file system shut down after I/O errors, a
		// permission). Repairing the store is not the fix.
		also := " and it has no copy"
		if !copyMissing {
			also = fmt.Sprintf(", nor can its copy %s (%v)", cp.path, cp.err)
		}
		fix := "check that this user may read the store"
		if errors.Is(prim.err, syscall.EIO) {
			fix = "the disk or its file system fails: check it (dmesg, fsck) before anything else"
		}
		return nil, fmt.Errorf("store config %s cannot be read (%v)%s: %s; the store cannot be opened", prim.path, prim.err, also, fix)
	}
	const putBack = "put back a copy of either (from a copy of the store, or a backup of this machine); do not run 'recall init' here"
	if copyMissing {
		return nil, fmt.Errorf("store config %s is %w (%v) and has no copy: the store cannot be opened: %s", prim.path, ErrConfigDamaged, prim.err, putBack)
	}
	return nil, fmt.Errorf("store config %s is %w (%v) and so is its copy %s (%v): the store cannot be opened: %s", prim.path, ErrConfigDamaged, prim.err, cp.path, cp.err, putBack)
}

// unreadable reports whether err is a failure to read a file that is
// there (I/O error, permission), not a file that reads but is not right.
func unreadable(err error) bool {
	var pe *fs.PathError
	return err != nil && errors.As(err, &pe) && !errors.Is(err, fs.ErrNotExist)
}

// writeConfigFiles writes both config files from cfg, the copy first, so
// a crash leaves at least one whole file. Only files whose bytes differ
// are written.
func writeConfigFiles(be backend.Backend, cfg *Config) error {
	want := encodeConfig(cfg)
	for _, name := range []string{configCopyName, "config"} {
		h := backend.Handle{Type: backend.Config, Name: name}
		if have, err := be.Load(bg, h, 0, -1, nil); err == nil && bytes.Equal(have, want) {
			continue
		}
		if err := be.Save(bg, h, want); err != nil {
			return fmt.Errorf("write store config %s: %w", configPath(be, name), err)
		}
	}
	return nil
}

// ConfigProblem says why the store's config or its copy is damaged, or ""
// when both are whole. The next writer repairs it.
func (s *Store) ConfigProblem() string {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.cfgProblem
}

// HealConfig rewrites both config files from the config the store was
// opened with (repair index calls it; every writer does).
func (l *Lock) HealConfig() error { return l.s.healConfig() }

// healConfig rewrites damaged, missing or outdated config files from the
// config the store was opened with. The writer lock is held.
func (s *Store) healConfig() error {
	s.adoptResealedConfig()
	if err := writeConfigFiles(s.be, s.cfg); err != nil {
		return err
	}
	s.fmu.Lock()
	s.cfgProblem = ""
	s.fmu.Unlock()
	return nil
}

// CheckLocal tells whether the local directory dir holds a store, without
// opening it: nil when it has its config or the config's copy; an error
// wrapping ErrConfigMissing when it holds a store's data but neither;
// else one wrapping ErrNoStore.
func CheckLocal(dir string) error {
	be := local.Open(dir)
	switch has, err := hasConfig(be); {
	case err != nil:
		return fmt.Errorf("store %s: %w", dir, err)
	case has:
		return nil
	}
	if what := storeRemains(be); what != "" {
		return configMissing(dir, what)
	}
	return noStore(be)
}

// noStore is the error of a place that holds no store (ErrNoStore). A
// local directory with a store's empty folders and no config is what a
// 'recall copy' to a new store (or an init) stopped before its config
// leaves: run again, the copy completes it, while 'recall init' there
// makes a store of another key, which the copy then refuses.
func noStore(be backend.Backend) error {
	dir := be.Location()
	if _, ok := be.(*local.Backend); ok {
		if fi, err := os.Stat(filepath.Join(dir, "packs")); err == nil && fi.IsDir() {
			return fmt.Errorf("%s: %w: it has a store's empty folders but no config, as a 'recall copy' to it (or a 'recall init') stopped before the end leaves them: run that command again, which completes it; if nothing was meant to be there, remove %s and run 'recall init'", dir, ErrNoStore, dir)
		}
	}
	return fmt.Errorf("%s: %w (run 'recall init' first, or check --home)", dir, ErrNoStore)
}

func configMissing(dir, what string) error {
	return fmt.Errorf("%s: %w: it holds %s, but its config and config.copy are missing: put back a copy of either (from a copy of the store, or a backup of this machine); do not run 'recall init' here", dir, ErrConfigMissing, what)
}
