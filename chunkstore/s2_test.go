package chunkstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/recall-backup/recall/internal/fuzzcheck"
	"github.com/recall-backup/recall/internal/golden"
	"github.com/zeebo/blake3"
)

// s2GoldenText is the plaintext of testdata/blob-s2.golden.
var s2GoldenText = bytes.Repeat([]byte("recall keeps every version of every file; "), 24)

func TestPackHeaderS2Golden(t *testing.T) {
	entries := []PackEntry{
		{Type: DataBlob, Comp: compS2, Offset: 0, Length: 120, RawLength: 4096, ID: testID(1)},
		{Type: DataBlob, Comp: compZstd, Offset: 120, Length: 90, RawLength: 4096, ID: testID(2)},
		{Type: TreeBlob, Comp: compS2, Offset: 210, Length: 40, RawLength: 300, ID: testID(3)},
	}
	hdr := encodePackHeader(entries, &keys{})
	golden.Check(t, "pack-header-v1-s2.golden", hdr)
	hl, err := packHeaderLength(hdr[len(hdr)-packTrailerLen:])
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodePackHeader(hdr[len(hdr)-packTrailerLen-hl:len(hdr)-packTrailerLen], &keys{}, 250+int64(len(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range entries {
		if got[i] != entries[i] {
			t.Errorf("entry %d: got %+v want %+v", i, got[i], entries[i])
		}
	}
}

// The golden s2 blob is bytes as a plaintext store holds them: whatever a
// later s2 encoder writes, these must decode to the same text forever.
func TestS2BlobGolden(t *testing.T) {
	stored := golden.Load(t, "blob-s2.golden")
	_, s := newStore(t, false)
	defer s.Close()
	id := ID(blake3.Sum256(s2GoldenText))
	out, err := s.decodeBlob(id, stored, compS2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, s2GoldenText) {
		t.Errorf("golden s2 blob decodes to %q", out)
	}
	if len(stored) >= len(s2GoldenText)/4 {
		t.Errorf("golden s2 blob of %d bytes for %d of text: not compressed", len(stored), len(s2GoldenText))
	}
}

// initStore makes a store whose default codec is comp.
func initStore(t testing.TB, encrypt bool, comp Compression) (string, *Store) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if _, err := Init(dir, InitOptions{Encrypt: encrypt, Password: "pw", KDFMemoryKB: 1024, Compression: comp}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	return dir, s
}

// codesOf returns the compression code of every blob in the store, by
// blob id, as the pack headers say.
func codesOf(t *testing.T, s *Store) map[ID]uint8 {
	t.Helper()
	codes := map[ID]uint8{}
	err := s.ListPacks(func(id ID, _ int64) error {
		pc, err := s.CheckPack(id)
		if err != nil {
			return err
		}
		if pc.Header != nil || len(pc.Bad) > 0 {
			t.Errorf("pack %s: header %v, bad blobs %v", id.Short(), pc.Header, pc.Bad)
		}
		for _, e := range pc.Entries {
			codes[e.ID] = e.Comp
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return codes
}

// TestCodecRoundTrip: each codec, as a store's default, stores
// compressible blobs with its code and incompressible ones as they are,
// and a reopened store reads both back.
func TestCodecRoundTrip(t *testing.T) {
	text, random := logText(4, 300<<10), randBytes(4, 300<<10)
	small := []byte(strings.Repeat("tree entry ", 20))
	for _, c := range []struct {
		comp Compression
		code uint8
	}{{CompressionZstd, compZstd}, {CompressionS2, compS2}, {CompressionOff, compNone}} {
		for _, enc := range []bool{false, true} {
			t.Run(string(c.comp)+map[bool]string{false: "/plain", true: "/encrypted"}[enc], func(t *testing.T) {
				dir, s := initStore(t, enc, c.comp)
				if got := s.Config().Compression; got != c.comp {
					t.Errorf("config compression %q, want %q", got, c.comp)
				}
				lock, w := openWriter(t, s)
				if w.Compression() != c.comp {
					t.Errorf("writer compression %q, want the store's %q", w.Compression(), c.comp)
				}
				want := map[ID]uint8{}
				for _, b := range []struct {
					data []byte
					t    BlobType
					code uint8
				}{{text, DataBlob, c.code}, {random, DataBlob, compNone}, {small, TreeBlob, c.code}} {
					id := s.Hash(b.data)
					if _, err := w.SaveBlob(b.t, id, b.data); err != nil {
						t.Fatal(err)
					}
					want[id] = b.code
				}
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
				lock.Unlock()
				s.Close()
				s, err := Open(dir, OpenOptions{Password: "pw"})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				for _, data := range [][]byte{text, random, small} {
					got, err := s.LoadBlob(s.Hash(data), nil)
					if err != nil || !bytes.Equal(got, data) {
						t.Errorf("blob of %d bytes: %v, equal %v", len(data), err, bytes.Equal(got, data))
					}
				}
				codes := codesOf(t, s)
				for id, code := range want {
					if codes[id] != code {
						t.Errorf("blob %s stored with code %d, want %d", id.Short(), codes[id], code)
					}
				}
			})
		}
	}
}

// TestMixedCodecs: sessions with each codec write into one store, and an
// s2 store backed up with zstd keeps s2 as its default.
func TestMixedCodecs(t *testing.T) {
	dir, s := initStore(t, false, CompressionS2)
	data := map[Compression][]byte{}
	for i, c := range []Compression{"", CompressionZstd, CompressionOff, CompressionS2} {
		lock, w := openWriter(t, s)
		if c != "" {
			if err := w.SetCompression(c); err != nil {
				t.Fatal(err)
			}
		} else {
			c = CompressionS2 // the store's default
		}
		if w.Compression() != c {
			t.Errorf("writer compression %q, want %q", w.Compression(), c)
		}
		b := logText(uint64(10+i), 200<<10)
		data[c] = append(data[c], b...)
		if _, err := w.SaveBlob(DataBlob, s.Hash(b), b); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		lock.Unlock()
	}
	s.Close()
	s, err := Open(dir, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Config().Compression != CompressionS2 {
		t.Errorf("store default became %q after a zstd session", s.Config().Compression)
	}
	codes := codesOf(t, s)
	seen := map[uint8]int{}
	for _, code := range codes {
		seen[code]++
	}
	if seen[compS2] != 2 || seen[compZstd] != 1 || seen[compNone] != 1 {
		t.Errorf("blobs per code %v, want 2 s2, 1 zstd, 1 none", seen)
	}
	for id := range codes {
		if _, err := s.LoadBlob(id, nil); err != nil {
			t.Errorf("blob %s: %v", id.Short(), err)
		}
	}
}

// TestVersion1Config: a store written before the codec choice has no
// compression in its config and means zstd; choosing s2 for a session
// makes it version 2, so a recall that does not know s2 refuses it.
func TestVersion1Config(t *testing.T) {
	dir, s := newStore(t, false)
	s.Close()
	cfg := readConfig(t, dir)
	cfg.Version, cfg.Compression = 1, ""
	for _, name := range []string{"config", configCopyName} {
		if err := os.WriteFile(filepath.Join(dir, name), encodeConfig(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(dir, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lock, w := openWriter(t, s)
	defer lock.Unlock()
	if w.Compression() != CompressionZstd {
		t.Errorf("version 1 store: writer compression %q, want zstd", w.Compression())
	}
	if err := w.SetCompression(CompressionOff); err != nil {
		t.Fatal(err)
	}
	if v := readConfig(t, dir).Version; v != 1 {
		t.Errorf("a session without s2 made the store version %d", v)
	}
	if err := w.SetCompression(CompressionS2); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"config", configCopyName} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseConfig(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.Version != 2 || got.Compression != "" {
			t.Errorf("%s after an s2 session: version %d, compression %q; want 2 and the default left as it was", name, got.Version, got.Compression)
		}
	}
}

func readConfig(t *testing.T, dir string) *Config {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "config"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestBadCompression(t *testing.T) {
	for _, name := range []string{"", "bogus", "ZSTD", "none", "lz4"} {
		_, err := ParseCompression(name)
		if !errors.Is(err, ErrCompression) || !strings.Contains(err.Error(), "zstd, s2 or off") {
			t.Errorf("ParseCompression(%q): %v, want ErrCompression naming the codecs", name, err)
		}
	}
	dir := filepath.Join(t.TempDir(), "store")
	if _, err := Init(dir, InitOptions{Compression: "bogus"}); !errors.Is(err, ErrCompression) {
		t.Errorf("Init with compression bogus: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "config")); err == nil {
		t.Error("Init with a bad compression wrote a config")
	}
	_, s := newStore(t, false)
	defer s.Close()
	lock, w := openWriter(t, s)
	defer lock.Unlock()
	if err := w.SetCompression("gzip"); !errors.Is(err, ErrCompression) {
		t.Errorf("SetCompression(gzip): %v", err)
	}
	// A config naming a codec this recall does not have, checksum and
	// all, is not a store this recall can write.
	cfg := *s.Config()
	cfg.Compression = "lz4"
	if _, err := parseConfig(encodeConfig(&cfg)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("config with compression lz4: %v, want ErrCorrupt", err)
	}
	b, _ := json.Marshal(map[string]any{"version": ConfigVersion + 1})
	if _, err := parseConfig(b); !errors.Is(err, errConfigVersion) {
		t.Errorf("config version %d: %v, want errConfigVersion", ConfigVersion+1, err)
	}
}

// An 11-byte s2 block declaring 200 MiB is refused before s2.Decode
// allocates what it declares; so is one declaring more than a blob holds,
// and a compression code no codec has.
func TestDecodeBlobRefusesS2Bomb(t *testing.T) {
	_, s := newStore(t, false)
	defer s.Close()
	over := []byte{0x80, 0x80, 0x80, 0x80, 0x01, 0x00, 'x'} // 256 MiB declared, one literal byte
	for name, c := range map[string]struct {
		b    []byte
		comp uint8
	}{
		"bomb":         {s2BombSeed(), compS2},
		"over limit":   {over, compS2},
		"unknown code": {s2.Encode(nil, s2GoldenText), 3},
	} {
		var err error
		fuzzcheck.Bounded(t, "decodeBlob", fuzzcheck.Slack, func() { _, err = s.decodeBlob(ID{}, c.b, c.comp, nil) })
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: decodeBlob: %v, want ErrCorrupt", name, err)
		}
	}
}

// BenchmarkCodecs compares the codecs for text and random data: "save"
// is SaveBlob's compression (sampling included), "load" the decompression
// of what it stored. Compare MB/s and stored/raw within one run: the
// machine's speed varies between runs.
func BenchmarkCodecs(b *testing.B) {
	_, s := newStore(b, false)
	defer s.Close()
	for _, d := range []struct {
		name string
		data []byte
	}{{"text", logText(1, 1<<20)}, {"random", randBytes(1, 1<<20)}} {
		for _, c := range []Compression{CompressionZstd, CompressionS2, CompressionOff} {
			scratch := make([]byte, 0, 2<<20)
			code, stored := s.compressBlob(c.code(), d.data, &scratch)
			stored = bytes.Clone(stored)
			b.Run(d.name+"/"+string(c)+"/save", func(b *testing.B) {
				b.SetBytes(int64(len(d.data)))
				for b.Loop() {
					s.compressBlob(c.code(), d.data, &scratch)
				}
				b.ReportMetric(float64(len(stored))/float64(len(d.data)), "stored/raw")
			})
			b.Run(d.name+"/"+string(c)+"/load", func(b *testing.B) {
				dst := make([]byte, 0, 2<<20)
				b.SetBytes(int64(len(d.data)))
				for b.Loop() {
					if _, err := s.decompress(code, stored, dst); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
