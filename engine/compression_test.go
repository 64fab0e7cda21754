package engine

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
)

// A manifest with a compression field is version 2 still: the field is
// optional, so an older reader of version 2 reads the point and ignores it.
func TestPointCompressionGolden(t *testing.T) {
	p := samplePoint()
	p.Compression = chunkstore.CompressionS2
	checkPointGolden(t, p, "point-v2-compression.golden")
	// Written before the field: no compression recorded.
	old, err := decodePoint(id(5), readGolden(t, "point-v2.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if old.Compression != "" {
		t.Errorf("a point without the field decodes with compression %q", old.Compression)
	}
}

// A backup records the codec it stored new blobs with: the store's
// default, or the one it was told.
func TestBackupCompression(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	text := bytes.Repeat([]byte("the same line of a log file, again and again\n"), 20000)
	if err := os.WriteFile(filepath.Join(src, "log"), text, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		opt, want chunkstore.Compression
	}{{"", chunkstore.CompressionZstd}, {chunkstore.CompressionS2, chunkstore.CompressionS2}, {chunkstore.CompressionOff, chunkstore.CompressionOff}} {
		// A line of its own per run, so each stores a new chunk.
		data := append([]byte{byte('a' + i), '\n'}, text...)
		if err := os.WriteFile(filepath.Join(src, "log"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := ts.backup(BackupOptions{Path: src, Compression: c.opt})
		if err != nil {
			t.Fatal(err)
		}
		if p.Compression != c.want {
			t.Errorf("backup with compression %q: point records %q, want %q", c.opt, p.Compression, c.want)
		}
		stored, err := ts.r.LoadPoint(p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.Compression != c.want {
			t.Errorf("stored point records %q, want %q", stored.Compression, c.want)
		}
		if got := ts.content(p, "log"); !bytes.Equal(got, data) {
			t.Errorf("backup with compression %q: content differs", c.opt)
		}
		if c.want == chunkstore.CompressionOff && p.Stats.StoredBytes < p.Stats.NewBytes {
			t.Errorf("compression off stored %d bytes for %d new", p.Stats.StoredBytes, p.Stats.NewBytes)
		}
	}
	if _, err := ts.backup(BackupOptions{Path: src, Compression: "bogus"}); !errors.Is(err, ErrBadOption) {
		t.Errorf("compression bogus: %v, want ErrBadOption", err)
	}
}
