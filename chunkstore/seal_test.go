package chunkstore

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"
	"testing/cryptotest"
)

// sealRef is seal as the format defines it, written the plain way: a fresh
// nonce, then nonce, ciphertext and tag appended to dst. seal must produce
// the same bytes from the same random stream.
func sealRef(t *testing.T, k *keys, dst, plain, ad []byte) []byte {
	t.Helper()
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	return k.aead.Seal(append(dst, nonce...), nonce, plain, ad)
}

func TestSealBytesAndRoundTrip(t *testing.T) {
	k := goldenKeys(t)
	ad := []byte("ad")
	for _, tc := range []struct {
		name   string
		prefix []byte
		spare  int // capacity beyond the prefix, filled with junk
		plain  []byte
	}{
		{"nil dst, empty", nil, 0, nil},
		{"nil dst", nil, 0, randBytes(1, 1000)},
		{"prefix, no room", []byte("MAGIC"), 0, randBytes(2, 1000)},
		{"prefix, some room", []byte("MAGIC"), 20, randBytes(3, 1000)},
		{"prefix, room to spare", []byte("MAGIC"), 4096, randBytes(4, 1000)},
		{"empty dst with room", []byte{}, 2048, randBytes(5, 2000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mkdst := func() []byte {
				if tc.prefix == nil {
					return nil
				}
				d := bytes.Repeat([]byte{0xee}, len(tc.prefix)+tc.spare)
				return append(d[:0], tc.prefix...)
			}
			plain := bytes.Clone(tc.plain)
			cryptotest.SetGlobalRandom(t, 7)
			want := sealRef(t, k, mkdst(), tc.plain, ad)
			cryptotest.SetGlobalRandom(t, 7)
			got := seal(k.aead, mkdst(), tc.plain, ad)
			if !bytes.Equal(got, want) {
				t.Fatalf("seal differs from the format:\n got %x\nwant %x", got, want)
			}
			if !bytes.Equal(tc.plain, plain) {
				t.Fatal("seal changed its plaintext")
			}
			if want := len(tc.prefix) + k.aead.NonceSize() + len(tc.plain) + k.aead.Overhead(); len(got) != want {
				t.Fatalf("sealed length %d, want %d", len(got), want)
			}
			out, err := open(k.aead, nil, got[len(tc.prefix):], ad)
			if err != nil || !bytes.Equal(out, tc.plain) {
				t.Fatalf("open: %v, equal %v", err, bytes.Equal(out, tc.plain))
			}
		})
	}
}

// Two seals of one plaintext use two nonces: a nonce drawn into dst must
// not be reused from what dst held before.
func TestSealFreshNonce(t *testing.T) {
	k := goldenKeys(t)
	plain := randBytes(1, 100)
	buf := make([]byte, 0, 1024)
	a := bytes.Clone(seal(k.aead, buf, plain, nil))
	b := seal(k.aead, buf, plain, nil)
	ns := k.aead.NonceSize()
	if bytes.Equal(a[:ns], b[:ns]) {
		t.Fatalf("two seals share nonce %x", a[:ns])
	}
}

// seal into a buffer with room allocates nothing (the writer seals every
// blob into a pooled buffer); into nil, only the result: never a buffer
// just to hold the nonce.
func TestSealAllocs(t *testing.T) {
	k := goldenKeys(t)
	ad := make([]byte, 32)
	for _, size := range []int{100, 64 << 10, 1 << 20} {
		plain := randBytes(int64(size), size)
		buf := make([]byte, 0, size+k.aead.NonceSize()+k.aead.Overhead())
		for _, tc := range []struct {
			name string
			dst  func() []byte
			want float64
		}{
			{"room", func() []byte { return buf[:0] }, 0},
			{"nil", func() []byte { return nil }, 1},
		} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, size), func(t *testing.T) {
				got := testing.AllocsPerRun(20, func() {
					seal(k.aead, tc.dst(), plain, ad)
				})
				if got != tc.want {
					t.Fatalf("%v allocations per seal, want %v", got, tc.want)
				}
			})
		}
	}
}

// BenchmarkSeal seals a mean-sized chunk into a reused buffer, as the
// writer does; -benchmem shows the allocations per blob.
func BenchmarkSeal(b *testing.B) {
	enc := make([]byte, 32)
	a, err := newAEAD(enc)
	if err != nil {
		b.Fatal(err)
	}
	plain := make([]byte, 3<<19)
	ad := make([]byte, 32)
	buf := make([]byte, 0, len(plain)+a.NonceSize()+a.Overhead())
	b.SetBytes(int64(len(plain)))
	b.ReportAllocs()
	for b.Loop() {
		buf = seal(a, buf[:0], plain, ad)
	}
}
