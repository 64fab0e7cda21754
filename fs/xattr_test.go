package fs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// xattrRequests counts the GETXATTR requests of a mount by attribute
// name, from its request log (MountOptions.Debug).
type xattrRequests struct {
	mu sync.Mutex
	n  map[string]int
}

var getxattrLine = regexp.MustCompile(`rx \d+: GETXATTR .*"([^"]+)"`)

func (r *xattrRequests) log(format string, args ...any) {
	if m := getxattrLine.FindStringSubmatch(sprintf(format, args...)); m != nil {
		r.mu.Lock()
		r.n[m[1]]++
		r.mu.Unlock()
	}
}

// take returns the counts since the last call.
func (r *xattrRequests) take() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.n
	r.n = map[string]int{}
	return n
}

// Where a point has no SELinux labels, a question for one is answered as
// a file system without labels answers it (EOPNOTSUPP), so ls -l asks
// the server once instead of once per entry. A point with a labeled root,
// and a directory with a label in it, answer every entry exactly; every
// other attribute is served as before.
func TestMountSELinuxLabels(t *testing.T) {
	if _, err := os.Stat("/sys/fs/selinux/enforce"); err == nil {
		skip(t, "SELinux is on here: the kernel answers for labels itself")
	}
	ls, err := exec.LookPath("ls")
	if err != nil {
		skip(t, "no ls: %v", err)
	}
	label := []byte("system_u:object_r:user_home_t:s0")
	setLabel := func(path string) {
		t.Helper()
		if err := unix.Lsetxattr(path, "security.selinux", label, 0); err != nil {
			skip(t, "cannot set an SELinux label on %s: %v", path, err)
		}
	}
	const files = 200
	plain, labeled := t.TempDir(), t.TempDir() // two sources; labeled's root has a label
	for _, src := range []string{plain, labeled} {
		for i := range files {
			writeFile(t, filepath.Join(src, "d", sprintf("f%03d", i)), []byte("x"), 0o644)
		}
	}
	if err := unix.Lsetxattr(filepath.Join(plain, "d", "f007"), "user.note", []byte("kept"), 0); err != nil {
		skip(t, "user xattrs unsupported under %s: %v", plain, err)
	}
	writeFile(t, filepath.Join(plain, "mixed", "labeled"), []byte("a"), 0o644)
	writeFile(t, filepath.Join(plain, "mixed", "unlabeled"), []byte("b"), 0o644)
	setLabel(filepath.Join(plain, "mixed", "labeled"))
	setLabel(labeled)
	ts := newTestStore(t)
	ts.backup(plain, "plain", time.Time{})
	ts.backup(labeled, "labeled", time.Time{})
	tr, err := New(ts.backend(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	reqs := &xattrRequests{n: map[string]int{}}
	mnt := mountTree(t, tr, MountOptions{Debug: true, Log: reqs.log}).Dir()
	point := func(src string) string { return filepath.Join(mnt, src, LatestName) }

	buf := make([]byte, 256)
	for _, c := range []struct {
		path, name string
		want       string // the value, or the error
	}{
		{"plain/d/f001", "security.selinux", unix.EOPNOTSUPP.Error()},
		{"plain/d/f007", "security.selinux", unix.EOPNOTSUPP.Error()},
		{"plain/d", "security.selinux", unix.EOPNOTSUPP.Error()},
		{"plain/d/f007", "user.note", "kept"},
		{"plain/d/f001", "user.note", unix.ENODATA.Error()},
		{"plain/d/f001", "system.posix_acl_access", unix.ENODATA.Error()},
		{"plain/mixed/labeled", "security.selinux", string(label)},
		{"plain/mixed/unlabeled", "security.selinux", unix.ENODATA.Error()},
		{"labeled/d/f001", "security.selinux", unix.ENODATA.Error()},
		{"labeled/d", "security.selinux", unix.ENODATA.Error()},
		{"labeled", "security.selinux", string(label)},
	} {
		src, rest, _ := strings.Cut(c.path, "/")
		n, err := unix.Getxattr(filepath.Join(point(src), rest), c.name, buf)
		got := string(buf[:max(n, 0)])
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("getxattr %s %s: %q, want %q", c.path, c.name, got, c.want)
		}
	}
	labeledFile := filepath.Join(point("plain"), "mixed", "labeled")
	n, err := unix.Llistxattr(labeledFile, buf)
	if err != nil || string(buf[:n]) != "security.selinux\x00" {
		t.Errorf("listxattr of the labeled file: %q, %v", buf[:max(n, 0)], err)
	}
	if _, err := unix.Lgetxattr(labeledFile, "security.selinux", make([]byte, 4)); !errors.Is(err, unix.ERANGE) {
		t.Errorf("label into a small buffer: %v, want ERANGE", err)
	}

	lsl := func(dir string, args ...string) string {
		t.Helper()
		reqs.take()
		cmd := exec.Command(ls, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ls %v in %s: %v\n%s", args, dir, err, out)
		}
		return string(out)
	}
	if out := lsl(point("plain"), "-l", "d"); strings.Count(out, "\n") != files+1 {
		t.Fatalf("ls -l d:\n%s", out)
	}
	got := reqs.take()
	if got["system.posix_acl_access"] == 0 {
		t.Fatalf("ls -l made no ACL request: requests are not counted (counts %v)", got)
	}
	if got["security.selinux"] > 1 {
		t.Errorf("ls -l of %d files in a point without labels asked for %d labels, want at most 1", files, got["security.selinux"])
	}
	// A labeled point: ls asks for every label, and is answered.
	lsl(point("labeled"), "-l", "d")
	if n := reqs.take()["security.selinux"]; n < files {
		t.Errorf("ls -l of %d files in a labeled point asked for %d labels", files, n)
	}
	// A directory with a label: ls shows it.
	if out := lsl(filepath.Join(point("plain"), "mixed"), "-lZ"); !strings.Contains(out, string(label)) {
		t.Errorf("ls -lZ of a directory with a label does not show it:\n%s", out)
	}
}
