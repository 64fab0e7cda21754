//go:build linux && (386 || amd64 || arm || arm64 || loong64 || riscv64 || s390x)

package tapefs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCheckNonRewinding(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mode  uint32
		rdev  uint64
		ok    bool
		words string
	}{
		{name: "/dev/nst0", mode: unix.S_IFCHR | 0o660, rdev: unix.Mkdev(9, 128), ok: true},
		{name: "/dev/nst1", mode: unix.S_IFCHR | 0o660, rdev: unix.Mkdev(9, 129), ok: true},
		{name: "/dev/nst0l (mode 1)", mode: unix.S_IFCHR | 0o660, rdev: unix.Mkdev(9, 160), ok: true},
		{name: "/dev/st0", mode: unix.S_IFCHR | 0o660, rdev: unix.Mkdev(9, 0), words: "rewinding"},
		{name: "/dev/sg3", mode: unix.S_IFCHR | 0o660, rdev: unix.Mkdev(21, 3), words: "not an st tape device"},
		{name: "a file", mode: unix.S_IFREG | 0o644, words: "not a character device"},
	} {
		err := checkNonRewinding(tc.mode, tc.rdev)
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), tc.words)) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestParseSTOptions(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0x00000800\n", 0x800, true},
		{"0x00001b81\n", 0x1b81, true},
		{"0x0", 0, true},
		{"", 0, false},
		{"options", 0, false},
	} {
		got, err := parseSTOptions(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("parseSTOptions(%q) = %#x, %v", tc.in, got, err)
		}
	}
}

// TestOpenSTRefuses opens what is not a tape drive: each error names the
// path and says what to give instead.
func TestOpenSTRefuses(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nst0")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path  string
		errno error
		words string
	}{
		{path: file, words: "/dev/nstN"},
		{path: filepath.Join(t.TempDir(), "missing"), errno: syscall.ENOENT, words: "modprobe st"},
		{path: "/dev/null", words: "not an st tape device"},
	} {
		d, err := OpenST(tc.path)
		if err == nil {
			d.Close()
			t.Errorf("OpenST(%s) succeeded", tc.path)
			continue
		}
		var de *DeviceError
		if !errors.As(err, &de) || de.Device != tc.path || !strings.Contains(err.Error(), tc.words) {
			t.Errorf("OpenST(%s) = %v, want a device error naming it and saying %q", tc.path, err, tc.words)
		}
		if tc.errno != nil && !errors.Is(err, tc.errno) {
			t.Errorf("OpenST(%s) = %v, want it to keep %v", tc.path, err, tc.errno)
		}
	}
}
