package chunkstore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/local"
	"github.com/restic/chunker"
	"github.com/zeebo/blake3"
	"golang.org/x/crypto/argon2"
)

// ConfigVersion is the store format version written by Init. Version 2
// adds compression, and s2 blobs (pack.go): a store holding any is version
// 2, so that a recall before it refuses the store instead of reading those
// blobs as damage. Version 1 is read as version 2 with zstd.
const ConfigVersion = 2

// Config is the content of <store>/config (JSON). For an encrypted store
// the chunker polynomial and the id key live only inside the sealed key.
type Config struct {
	Version    int    `json:"version"`
	ID         string `json:"id"`
	Polynomial uint64 `json:"chunker_polynomial,omitempty"`
	MinChunk   uint   `json:"min_chunk"`
	MaxChunk   uint   `json:"max_chunk"`
	// AverageBits sets the cut probability (2^-bits per byte after the
	// minimum): 19 gives chunks of about 1 MiB on average. Absent means 20,
	// restic's default.
	AverageBits int `json:"average_bits,omitempty"`
	// Compression is the codec of new blobs: "zstd", "s2" or "off"
	// (version 2; absent means zstd). A backup may override it.
	Compression Compression `json:"compression,omitempty"`
	Encryption  *EncryptCfg `json:"encryption,omitempty"`
	// Checksum guards the file against damage (configfile.go); absent in
	// stores written before it existed.
	Checksum string `json:"checksum,omitempty"`
}

// EncryptCfg describes how the master key is derived and sealed.
type EncryptCfg struct {
	Cipher   string `json:"cipher"` // "aes-256-gcm"
	KDF      string `json:"kdf"`    // "argon2id"
	Time     uint32 `json:"time"`
	MemoryKB uint32 `json:"memory_kib"`
	Threads  uint8  `json:"threads"`
	Salt     []byte `json:"salt"`
	Sealed   []byte `json:"sealed_key"` // AEAD(kek, masterKey JSON)
}

type masterKey struct {
	EncKey     []byte `json:"enc_key"`
	IDKey      []byte `json:"id_key"`
	Polynomial uint64 `json:"chunker_polynomial"`
}

// keys is the unsealed key material of an open store; nil aead = plaintext store.
type keys struct {
	aead  cipher.AEAD
	idKey []byte
}

// KDF parameters for new stores. Tests may lower them through InitOptions.
const (
	defaultKDFTime   = 2
	defaultKDFMemory = 64 * 1024
)

// DefaultAverageBits is the chunk size parameter of new stores. With a
// 512 KiB minimum, 2^19 gives a mean chunk of ~1 MiB instead of restic's
// ~1.5 MiB: an edit in the middle of a large file rewrites the chunk that
// holds it, whose expected size (size-biased) drops from ~2.2 MiB to
// ~1.25 MiB, at the cost of 1.5x more chunks (24 bytes of RAM each).
const DefaultAverageBits = 19

// InitOptions configure a new store.
type InitOptions struct {
	Encrypt  bool
	Password string
	// KDFMemoryKB overrides the argon2id memory (tests); 0 = default 64 MiB.
	KDFMemoryKB uint32
	// Compression is the store's default codec; "" means zstd.
	Compression Compression
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal appends nonce, ciphertext and tag to dst. The nonce is drawn into
// dst itself, which grows at most once, to the sealed size: a blob costs
// no allocation when dst has the room (the writer's pooled buffers do).
// plain must not overlap dst's spare capacity.
func seal(a cipher.AEAD, dst, plain, ad []byte) []byte {
	n, ns := len(dst), a.NonceSize()
	dst = slices.Grow(dst, ns+len(plain)+a.Overhead())
	nonce := dst[n : n+ns]
	if _, err := rand.Read(nonce); err != nil {
		panic(err)
	}
	// Seal writes after the nonce, never over it: the nonce may alias dst.
	return a.Seal(dst[:n+ns], nonce, plain, ad)
}

func open(a cipher.AEAD, dst, sealed, ad []byte) ([]byte, error) {
	ns := a.NonceSize()
	if len(sealed) < ns+a.Overhead() {
		return nil, ErrCorrupt
	}
	out, err := a.Open(dst, sealed[:ns], sealed[ns:], ad)
	if err != nil {
		return nil, ErrCorrupt
	}
	return out, nil
}

func kek(e *EncryptCfg, password string) ([]byte, error) {
	if e.KDF != "argon2id" || e.Cipher != "aes-256-gcm" {
		return nil, fmt.Errorf("unsupported kdf %q / cipher %q", e.KDF, e.Cipher)
	}
	if err := checkKDF(e); err != nil {
		return nil, err
	}
	return argon2.IDKey([]byte(password), e.Salt, e.Time, e.MemoryKB, e.Threads, 32), nil
}

// Init creates an empty store in the local directory dir.
func Init(dir string, o InitOptions) (*Config, error) {
	if err := refuseInit(local.Open(dir)); err != nil {
		return nil, err
	}
	be, err := local.Create(dir)
	if err != nil {
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	defer be.Close()
	return InitBackend(be, o)
}

// InitBackend creates an empty store in be, which holds no store yet.
//
// The check and the writing are done under the store's lock, held
// exclusively: two inits started together on one location (a second
// terminal, a configuration tool run twice) would both find nothing, and
// the slower one's config would replace the first one's, with a new key,
// after the first store was in use.
func InitBackend(be backend.Backend, o InitOptions) (*Config, error) {
	dir := be.Location()
	info, _ := json.Marshal(NewLockInfo("init", "exclusive", ""))
	u, err := be.Lock(backend.FreeDeadHere(bg), storeLock, backend.Exclusive, info)
	if err != nil {
		var le *backend.LockedError
		if errors.As(err, &le) {
			who := "another process"
			if i, _ := lockHolder(le); i.PID != 0 {
				who = i.String()
			}
			return nil, fmt.Errorf("init %s: %w: %s holds it (a store is being made or used there)", dir, ErrExists, who)
		}
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	defer u.Unlock()
	if err := refuseInit(be); err != nil {
		return nil, err
	}
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		return nil, err
	}
	idb := make([]byte, 16)
	if _, err := rand.Read(idb); err != nil {
		return nil, err
	}
	comp := CompressionZstd
	if o.Compression != "" {
		if comp, err = ParseCompression(string(o.Compression)); err != nil {
			return nil, fmt.Errorf("init %s: %w", dir, err)
		}
	}
	cfg := &Config{Version: ConfigVersion, ID: fmt.Sprintf("%x", idb), MinChunk: chunker.MinSize, MaxChunk: chunker.MaxSize, AverageBits: DefaultAverageBits, Compression: comp}
	if o.Encrypt {
		if o.Password == "" {
			return nil, ErrNoPassword
		}
		mk := masterKey{EncKey: make([]byte, 32), IDKey: make([]byte, 32), Polynomial: uint64(pol)}
		rand.Read(mk.EncKey)
		rand.Read(mk.IDKey)
		e := &EncryptCfg{Cipher: "aes-256-gcm", KDF: "argon2id", Time: defaultKDFTime, MemoryKB: defaultKDFMemory, Threads: 2, Salt: make([]byte, 16)}
		if o.KDFMemoryKB != 0 {
			e.MemoryKB = o.KDFMemoryKB
		}
		rand.Read(e.Salt)
		k, err := kek(e, o.Password)
		if err != nil {
			return nil, err
		}
		a, err := newAEAD(k)
		if err != nil {
			return nil, err
		}
		plain, _ := json.Marshal(mk)
		e.Sealed = seal(a, nil, plain, []byte(cfg.ID))
		cfg.Encryption = e
	} else {
		cfg.Polynomial = uint64(pol)
	}
	if err := writeConfigFiles(be, cfg); err != nil {
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	return cfg, nil
}

// refuseInit fails, wrapping ErrExists, when be holds any part of a
// store: its config, the config's copy, or a pack, index file or point.
// A store that lost its config still has its copy, and one that lost
// both is still all its data: a new config written over it would carry
// a new key (an encrypted store's data could never be read again) and a
// new chunker polynomial, and every repair the new store then proposed
// would remove the old data as damage.
func refuseInit(be backend.Backend) error {
	dir := be.Location()
	switch has, err := hasConfig(be); {
	case err != nil:
		return fmt.Errorf("init %s: %w", dir, err)
	case has:
		return fmt.Errorf("init %s: %w", dir, ErrExists)
	}
	if what := storeRemains(be); what != "" {
		return fmt.Errorf("init %s: %w: it holds %s but no config; put back the store's config (any copy of this store's config or config.copy), or init another directory", dir, ErrExists, what)
	}
	return nil
}

// hasConfig reports whether be holds the store's config or its copy.
func hasConfig(be backend.Backend) (bool, error) {
	for _, name := range []string{"config", configCopyName} {
		_, err := be.Stat(bg, backend.Handle{Type: backend.Config, Name: name})
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, backend.ErrNotExist) {
			return false, err
		}
	}
	return false, nil
}

// storeRemains names the first kind of store file be holds (its points,
// index files or packs), or returns "" when it holds none. A listing that
// fails counts as holding some: init must not guess.
func storeRemains(be backend.Backend) string {
	for _, t := range []backend.FileType{backend.Points, backend.Index, backend.Packs} {
		found := errors.New("found")
		err := be.List(bg, t, func(string, int64) error { return found })
		if err == found {
			return t.String()
		}
		if err != nil && !errors.Is(err, backend.ErrNotExist) {
			return t.String() + " (its listing failed: " + err.Error() + ")"
		}
	}
	return ""
}

// unlock derives the keys; for a plaintext store it returns empty keys.
func (cfg *Config) unlock(password string) (*keys, chunker.Pol, error) {
	if cfg.Encryption == nil {
		return &keys{}, chunker.Pol(cfg.Polynomial), nil
	}
	mk, err := cfg.unseal(password)
	if err != nil {
		return nil, 0, err
	}
	ea, err := newAEAD(mk.EncKey)
	if err != nil {
		return nil, 0, err
	}
	return &keys{aead: ea, idKey: mk.IDKey}, chunker.Pol(mk.Polynomial), nil
}

// hash computes a blob id.
func (k *keys) hash(data []byte) ID {
	if k.idKey == nil {
		if len(data) >= leavesFrom {
			return hashWhole(data) // by 16-lane leaves where the CPU has AVX-512
		}
		return blake3.Sum256(data)
	}
	h, _ := blake3.NewKeyed(k.idKey)
	h.Write(data)
	var id ID
	h.Sum(id[:0])
	return id
}

// compression returns the store's default codec.
func (cfg *Config) compression() Compression {
	if cfg.Compression == "" {
		return CompressionZstd
	}
	return cfg.Compression
}
