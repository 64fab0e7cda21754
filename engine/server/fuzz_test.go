package server

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseConfig: any file is either refused with an error naming it, or
// gives a configuration whose concurrency is in range.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(fullConfig))
	f.Add([]byte("concurrency = 0\n"))
	f.Add([]byte("[metrics]\nlisten = 5\n"))
	f.Add([]byte("nosuchkey = 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig("recall.toml", b)
		if err != nil {
			if !bytes.Contains([]byte(err.Error()), []byte("recall.toml")) {
				t.Fatalf("refusal does not name the file: %v", err)
			}
			return
		}
		if c.Concurrency < 1 || c.Concurrency > maxConcurrency {
			t.Fatalf("accepted concurrency %d", c.Concurrency)
		}
	})
}

// FuzzState: the server's state file is read back as written, or refused;
// never a panic.
func FuzzState(f *testing.F) {
	f.Add([]byte(`{"version": 1, "groups": {"g": {"covered": "2026-01-02T03:04:05Z"}}}`))
	f.Add([]byte(`{"version": 2}`))
	f.Add([]byte(`{"version": 1, "groups": {"g": null}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		home := t.TempDir()
		if err := os.WriteFile(filepath.Join(home, StateFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := loadState(home)
		if err != nil {
			return
		}
		enc := st.encode()
		if err := os.WriteFile(filepath.Join(home, StateFile), enc, 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := loadState(home)
		if err != nil {
			t.Fatalf("state it read does not read once written: %v\n%s", err, enc)
		}
		if !bytes.Equal(again.encode(), enc) {
			t.Fatalf("state changed through write and read:\n%s\n%s", enc, again.encode())
		}
	})
}
