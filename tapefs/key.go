package tapefs

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"golang.org/x/crypto/argon2"
)

// PoolKeySize is the size of a pool key.
const PoolKeySize = 32

// The HKDF info strings; the package comment lists them. They are part of
// the format: changing one changes every key.
const (
	setKeyInfo      = "recall tape set key v1 "
	fingerprintInfo = "recall tape key fingerprint v1"
)

// NewPoolKey returns a new random pool key.
func NewPoolKey() ([]byte, error) {
	k := make([]byte, PoolKeySize)
	if _, err := io.ReadFull(rand.Reader, k); err != nil {
		return nil, fmt.Errorf("new pool key: %w", err)
	}
	return k, nil
}

// SetKey derives the key of media set setID from its pool's key
// (HKDF-SHA256, no salt, info "recall tape set key v1 " + setID): every
// set is sealed under its own key, so no two sets share nonces.
func SetKey(poolKey []byte, setID string) []byte {
	k, err := hkdf.Key(sha256.New, poolKey, nil, setKeyInfo+setID, 32)
	if err != nil {
		// Only a key length beyond 255 hashes fails, and 32 is not.
		panic(err)
	}
	return k
}

// KeyFingerprint names a pool key without revealing it: the hex of 16
// bytes HKDF derives with its own info string. Set labels carry it, so a
// reader tells a wrong key before it reads any data.
func KeyFingerprint(poolKey []byte) string {
	k, err := hkdf.Key(sha256.New, poolKey, nil, fingerprintInfo, 16)
	if err != nil {
		panic(err)
	}
	return hex.EncodeToString(k)
}

// The key file; the package comment documents it.
const (
	keyFileTag     = "recall tape pool key"
	keyFileVersion = 1
	// Defaults: RFC 9106's second recommended option.
	argonTime    = 3
	argonMemory  = 64 << 10 // KiB
	argonThreads = 4
	// Bounds on what a key file may ask, so a damaged or hostile file
	// cannot make ImportKey take unbounded memory or time.
	maxArgonTime    = 64
	maxArgonMemory  = 4 << 20 // KiB: 4 GiB
	maxKeyFileSize  = 64 << 10
	keyFileSaltSize = 16
)

type keyFileJSON struct {
	Format      string     `json:"format"`
	Version     int        `json:"version"`
	Pool        string     `json:"pool"`
	Fingerprint string     `json:"fingerprint"`
	KDF         keyFileKDF `json:"kdf"`
	Nonce       []byte     `json:"nonce"`
	Sealed      []byte     `json:"sealed"`
}

type keyFileKDF struct {
	Name    string `json:"name"`
	Time    uint32 `json:"time"`
	Memory  uint32 `json:"memory_kib"`
	Threads uint8  `json:"threads"`
	Salt    []byte `json:"salt"`
}

// keyFileRand is where ExportKey takes its salt and nonce; golden tests
// replace it.
var keyFileRand io.Reader = rand.Reader

// keyFileParams are the argon2id costs ExportKey writes; tests lower them.
var keyFileParams = keyFileKDF{Name: "argon2id", Time: argonTime, Memory: argonMemory, Threads: argonThreads}

// ExportKey seals poolKey under passphrase into a key file (versioned
// JSON): argon2id turns the passphrase into an AES-256-GCM key that seals
// the pool key, with the pool name and fingerprint as additional data.
func ExportKey(pool string, poolKey []byte, passphrase string) ([]byte, error) {
	if len(poolKey) != PoolKeySize {
		return nil, fmt.Errorf("export key of pool %q: the key is %d bytes, want %d", pool, len(poolKey), PoolKeySize)
	}
	if passphrase == "" {
		return nil, fmt.Errorf("export key of pool %q: give a passphrase", pool)
	}
	f := keyFileJSON{Format: keyFileTag, Version: keyFileVersion, Pool: pool, Fingerprint: KeyFingerprint(poolKey), KDF: keyFileParams}
	f.KDF.Salt = make([]byte, keyFileSaltSize)
	f.Nonce = make([]byte, 12)
	if _, err := io.ReadFull(keyFileRand, f.KDF.Salt); err != nil {
		return nil, fmt.Errorf("export key: %w", err)
	}
	if _, err := io.ReadFull(keyFileRand, f.Nonce); err != nil {
		return nil, fmt.Errorf("export key: %w", err)
	}
	aead, err := keyFileAEAD(&f, passphrase)
	if err != nil {
		return nil, err
	}
	f.Sealed = aead.Seal(nil, f.Nonce, poolKey, keyFileAD(&f))
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func keyFileAD(f *keyFileJSON) []byte {
	return []byte(keyFileTag + "\x00" + f.Pool + "\x00" + f.Fingerprint)
}

func keyFileAEAD(f *keyFileJSON, passphrase string) (cipher.AEAD, error) {
	k := argon2.IDKey([]byte(passphrase), f.KDF.Salt, f.KDF.Time, f.KDF.Memory, f.KDF.Threads, 32)
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// parseKeyFile decodes and checks a key file without deriving anything.
func parseKeyFile(file []byte) (*keyFileJSON, error) {
	if len(file) > maxKeyFileSize {
		return nil, fmt.Errorf("key file of %d bytes: not a recall key file", len(file))
	}
	var f keyFileJSON
	if err := json.Unmarshal(file, &f); err != nil {
		return nil, fmt.Errorf("key file: %v", err)
	}
	if f.Format != keyFileTag {
		return nil, fmt.Errorf("key file: says it is %q, not %q", f.Format, keyFileTag)
	}
	if f.Version > keyFileVersion {
		return nil, fmt.Errorf("key file of version %d (this recall reads up to %d): %w", f.Version, keyFileVersion, ErrUnsupportedVersion)
	}
	if f.Version < 1 {
		return nil, fmt.Errorf("key file: version %d", f.Version)
	}
	k := f.KDF
	if k.Name != "argon2id" || k.Time < 1 || k.Time > maxArgonTime || k.Memory < 8*uint32(max(k.Threads, 1)) || k.Memory > maxArgonMemory ||
		k.Threads < 1 || len(k.Salt) < 8 {
		return nil, fmt.Errorf("key file: key derivation %s time %d memory %d KiB threads %d salt %d bytes is out of bounds", k.Name, k.Time, k.Memory, k.Threads, len(k.Salt))
	}
	if len(f.Nonce) != 12 || len(f.Sealed) != PoolKeySize+16 {
		return nil, fmt.Errorf("key file: nonce of %d bytes, sealed key of %d", len(f.Nonce), len(f.Sealed))
	}
	return &f, nil
}

// ImportKey opens a key file ExportKey wrote. A wrong passphrase gives
// ErrWrongKey.
func ImportKey(file []byte, passphrase string) (pool string, poolKey []byte, err error) {
	f, err := parseKeyFile(file)
	if err != nil {
		return "", nil, err
	}
	aead, err := keyFileAEAD(f, passphrase)
	if err != nil {
		return "", nil, err
	}
	key, err := aead.Open(nil, f.Nonce, f.Sealed, keyFileAD(f))
	if err != nil {
		return "", nil, fmt.Errorf("key file of pool %q: the passphrase does not open it: %w", f.Pool, ErrWrongKey)
	}
	if subtle.ConstantTimeCompare([]byte(KeyFingerprint(key)), []byte(f.Fingerprint)) != 1 {
		return "", nil, fmt.Errorf("key file of pool %q: the key does not match its fingerprint %s", f.Pool, f.Fingerprint)
	}
	return f.Pool, key, nil
}
