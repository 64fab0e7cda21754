package tapefs

import (
	"bytes"
	"errors"
	"testing"
)

// cheapKDF lowers the argon2id cost for tests that are not about it.
func cheapKDF(t *testing.T) {
	old := keyFileParams
	keyFileParams.Time, keyFileParams.Memory, keyFileParams.Threads = 1, 64, 1
	t.Cleanup(func() { keyFileParams = old })
}

func TestKeyDerivation(t *testing.T) {
	k1, err := NewPoolKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := NewPoolKey()
	if bytes.Equal(k1, k2) || len(k1) != 32 {
		t.Fatalf("pool keys %x, %x", k1, k2)
	}
	s1, s2 := SetKey(k1, "set-a"), SetKey(k1, "set-b")
	if bytes.Equal(s1, s2) || bytes.Equal(s1, SetKey(k2, "set-a")) || !bytes.Equal(s1, SetKey(k1, "set-a")) || len(s1) != 32 {
		t.Fatal("set keys must differ by set and by pool key, and be stable")
	}
	if f := KeyFingerprint(k1); len(f) != 32 || f == KeyFingerprint(k2) || f != KeyFingerprint(k1) {
		t.Fatalf("fingerprint %q", f)
	}
}

func TestKeyFileRoundTrip(t *testing.T) {
	cheapKDF(t)
	key, _ := NewPoolKey()
	file, err := ExportKey("offsite", key, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	pool, got, err := ImportKey(file, "correct horse")
	if err != nil || pool != "offsite" || !bytes.Equal(got, key) {
		t.Fatalf("import: %q %x %v", pool, got, err)
	}
	if _, _, err := ImportKey(file, "wrong horse"); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong passphrase: %v, want ErrWrongKey", err)
	}
	// The pool name is bound to the sealed key.
	renamed := bytes.Replace(file, []byte(`"offsite"`), []byte(`"onsite"`), 1)
	if _, _, err := ImportKey(renamed, "correct horse"); err == nil {
		t.Fatal("a key file whose pool was renamed opened")
	}
	future := bytes.Replace(file, []byte(`"version": 1`), []byte(`"version": 9`), 1)
	if _, _, err := ImportKey(future, "correct horse"); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("future key file: %v", err)
	}
}
