package chunkstore

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// Changing the passphrase re-seals the master key: the key that encrypts
// blobs and keys chunk ids never changes, so no pack, index or point is
// rewritten, only the config and its copy (with a new salt, and key
// derivation parameters no weaker than before nor than those of a new
// store). The copy is written first: a crash between the two files leaves
// one sealed with each passphrase; either opens the store, which reports
// the other file as damaged, and the next writer makes them agree.
//
// A process that opened the store before the change keeps working (its
// master key is unchanged), and when it takes the writer lock it adopts
// the re-sealed config instead of writing back the one it read
// (adoptResealedConfig): else the old passphrase would return.

// ErrNotEncrypted: the store has no passphrase to change.
var ErrNotEncrypted = errors.New("store is not encrypted")

// ChangePassword re-seals the store's master key with newPassword;
// oldPassword must open it. Only the config and its copy are rewritten.
// No other user of this Store may run during the call.
func (l *Lock) ChangePassword(oldPassword, newPassword string) error {
	if err := l.needExclusive("changing the passphrase"); err != nil {
		return err
	}
	s := l.s
	s.adoptResealedConfig()
	old := s.cfg.Encryption
	if old == nil {
		return fmt.Errorf("change passphrase of %s: %w: it has none", s.Dir(), ErrNotEncrypted)
	}
	if newPassword == "" {
		return fmt.Errorf("change passphrase of %s: %w", s.Dir(), ErrNoPassword)
	}
	mk, err := s.cfg.unseal(oldPassword)
	if err != nil {
		return fmt.Errorf("change passphrase of %s: %w", s.Dir(), err)
	}
	plain, _ := json.Marshal(mk)
	e := &EncryptCfg{
		Cipher:   old.Cipher,
		KDF:      old.KDF,
		Time:     max(old.Time, defaultKDFTime),
		MemoryKB: max(old.MemoryKB, defaultKDFMemory),
		Threads:  max(old.Threads, 2),
		Salt:     make([]byte, 16),
	}
	if _, err := rand.Read(e.Salt); err != nil {
		return err
	}
	k, err := kek(e, newPassword)
	if err != nil {
		return fmt.Errorf("change passphrase of %s: %w", s.Dir(), err)
	}
	a, err := newAEAD(k)
	if err != nil {
		return err
	}
	e.Sealed = seal(a, nil, plain, []byte(s.cfg.ID))
	cfg := *s.cfg
	cfg.Encryption = e
	if err := writeConfigFiles(s.be, &cfg); err != nil {
		return fmt.Errorf("change passphrase of %s: %w", s.Dir(), err)
	}
	s.fmu.Lock()
	s.cfg.Encryption = e
	s.cfgProblem = ""
	s.fmu.Unlock()
	return nil
}

// unseal opens the master key with password and checks it.
func (cfg *Config) unseal(password string) (*masterKey, error) {
	if password == "" {
		return nil, ErrNoPassword
	}
	k, err := kek(cfg.Encryption, password)
	if err != nil {
		return nil, err
	}
	a, err := newAEAD(k)
	if err != nil {
		return nil, err
	}
	plain, err := open(a, nil, cfg.Encryption.Sealed, []byte(cfg.ID))
	if err != nil {
		return nil, ErrWrongPassword
	}
	var mk masterKey
	if err := json.Unmarshal(plain, &mk); err != nil {
		return nil, fmt.Errorf("sealed key: %w", err)
	}
	if err := checkMasterKey(&mk); err != nil {
		return nil, err
	}
	return &mk, nil
}

// adoptResealedConfig takes the config on disk in place of the one s was
// opened with when another process changed the passphrase since: both
// files whole and alike, and differing from s's config only in how the
// key is sealed. The writer lock is held, so no change is under way.
func (s *Store) adoptResealedConfig() {
	if s.cfg.Encryption == nil {
		return
	}
	var raw [2][]byte
	for i, name := range []string{"config", configCopyName} {
		b, err := s.be.Load(bg, backend.Handle{Type: backend.Config, Name: name}, 0, -1, nil)
		if err != nil {
			return
		}
		raw[i] = b
	}
	if !bytes.Equal(raw[0], raw[1]) || bytes.Equal(raw[0], encodeConfig(s.cfg)) {
		return
	}
	disk, err := parseConfig(raw[0])
	if err != nil || disk.Encryption == nil {
		return
	}
	same := *disk
	same.Encryption = s.cfg.Encryption
	if !bytes.Equal(encodeConfig(&same), encodeConfig(s.cfg)) {
		return
	}
	s.fmu.Lock()
	s.cfg.Encryption = disk.Encryption
	s.fmu.Unlock()
}
