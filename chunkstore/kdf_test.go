package chunkstore

import (
	"errors"
	"testing"
)

func TestCheckKDF(t *testing.T) {
	for _, tc := range []struct {
		time, memKB uint32
		threads     uint8
		ok          bool
	}{
		{defaultKDFTime, defaultKDFMemory, 2, true}, // what Init writes
		{1, 0, 1, true}, // argon2 raises memory to its minimum
		{maxKDFTime, maxKDFMemoryKB, 255, true},
		{0, 64, 1, false}, // argon2 panics
		{1, 64, 0, false}, // argon2 panics
		{maxKDFTime + 1, 64, 1, false},
		{1, maxKDFMemoryKB + 1, 1, false},
		{1<<32 - 1, 1<<32 - 1, 1, false},
	} {
		err := checkKDF(&EncryptCfg{Cipher: "aes-256-gcm", KDF: "argon2id", Time: tc.time, MemoryKB: tc.memKB, Threads: tc.threads})
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrCorrupt) {
			t.Errorf("time %d, memory %d KiB, threads %d: %v, want ok %v", tc.time, tc.memKB, tc.threads, err, tc.ok)
		}
	}
}
