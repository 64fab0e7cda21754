package main

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeConfigUnusable: a configuration file that cannot be used
// stops recall serve with exit code 2 before anything starts, naming
// the file: one that is missing or unreadable as well as one that does
// not parse; a [[mount]] without its path names the line of that
// [[mount]], not line 0.
func TestServeConfigUnusable(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct{ config, want string }{
		{filepath.Join(dir, "missing.toml"), filepath.Join(dir, "missing.toml") + ": no such file or directory"},
		{dir, dir + ": is a directory"},
		{write("nopath.toml", "home = \"/x\"\n\n[[mount]]\npath = \"/a\"\n\n[[mount]]\nallow_other = true\n"), "nopath.toml:6: mount.path"},
		{write("first.toml", "[[mount]]\nallow_other = true\n"), "first.toml:1: mount.path"},
	} {
		_, err := runRecall(t, "--home", filepath.Join(dir, "home"), "serve", "--config", tt.config)
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("serve --config %s: exit %d, %v; want exit %d and %q", tt.config, exitCode(err), err, exitUsage, tt.want)
		}
	}
}

// The JSON log writes a duration as the text log does, "30s", not as
// nanoseconds.
func TestJSONLogDuration(t *testing.T) {
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, jsonLogOptions)).Info("stopping", "grace", 30*time.Second, "jobs", 1)
	if !strings.Contains(b.String(), `"grace":"30s"`) || !strings.Contains(b.String(), `"jobs":1`) {
		t.Errorf("JSON log line %s, want grace 30s and jobs 1", b.String())
	}
}

// A busy unmount is logged on one line, whatever fusermount printed.
func TestBusyUnmountLine(t *testing.T) {
	err := errors.New("/usr/bin/fusermount3: failed to unmount /mnt: Device or resource busy\n (code exit status 1)\n")
	if got := busyUnmountLine(err); strings.Contains(got, "\n") || !strings.Contains(got, "busy (code exit status 1); detaching lazily") {
		t.Errorf("busyUnmountLine: %q", got)
	}
}
