package chunkstore

import "fmt"

// Limits on the key derivation a config may ask for. The config is read
// before anything in it is authenticated, so these are untrusted numbers:
// argon2 allocates memory_kib KiB and runs time passes over it, and panics
// on a zero time or thread count. New stores use time 2 and 64 MiB; the
// limits leave room for stronger settings and none for a config that asks
// for terabytes or hours.
const (
	maxKDFTime     = 16
	maxKDFMemoryKB = 4 << 20 // 4 GiB
)

// checkKDF rejects key derivation parameters argon2 panics on or that
// cost more than the limits above.
func checkKDF(e *EncryptCfg) error {
	// Less memory than argon2's minimum (8 KiB a thread) is raised to it
	// by argon2 itself, so it is no error: a store made so still opens.
	if e.Time < 1 || e.Time > maxKDFTime || e.Threads < 1 || e.MemoryKB > maxKDFMemoryKB {
		return fmt.Errorf("%w: key derivation time %d, memory %d KiB, threads %d: want time 1..%d, threads 1..255, memory up to %d KiB",
			ErrCorrupt, e.Time, e.MemoryKB, e.Threads, maxKDFTime, maxKDFMemoryKB)
	}
	return nil
}

// checkMasterKey rejects an unsealed key whose parts are not the sizes
// its uses take: AES-256 and BLAKE3's keyed mode need exactly 32 bytes;
// a shorter key would silently select AES-128 or fail the first hash.
// The sealed key is authenticated, so only a faulty writer or someone who
// knows the passphrase makes one, but the store must refuse it, not crash.
func checkMasterKey(mk *masterKey) error {
	if len(mk.EncKey) != 32 || len(mk.IDKey) != 32 {
		return fmt.Errorf("%w: sealed key holds a %d-byte encryption key and a %d-byte id key, want 32 each",
			ErrCorrupt, len(mk.EncKey), len(mk.IDKey))
	}
	return nil
}
