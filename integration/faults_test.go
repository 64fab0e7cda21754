package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// storeListing describes every file of a home, to prove nothing was written.
func storeListing(t *testing.T, home string) string {
	var lines []string
	filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, _ := d.Info()
		lines = append(lines, fmt.Sprintf("%s %d %d", p, info.Size(), info.ModTime().UnixNano()))
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// runAsNobody runs recall on home as user and group 65534 (nobody).
func runAsNobody(home string, args ...string) result {
	cmd := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", recallBin, "--home", home}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return result{out.String(), errb.String(), code}
}

// nobodyBase returns a temp directory under which nobody may work (not
// t.TempDir: its parents are root's alone), or skips without setpriv.
func nobodyBase(t *testing.T) string {
	requireRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		skip(t, "setpriv missing")
	}
	base, err := os.MkdirTemp("", "recall-nobody-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	return base
}

func TestUnreadableFileSkipped(t *testing.T) {
	base := nobodyBase(t)
	src := filepath.Join(base, "src")
	must(t, os.MkdirAll(filepath.Join(src, "locked-dir"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "ok.txt"), []byte("fine"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "secret.txt"), []byte("root only"), 0o600))
	must(t, os.WriteFile(filepath.Join(src, "locked-dir/inner"), []byte("x"), 0o644))
	must(t, os.Chmod(filepath.Join(src, "locked-dir"), 0o700))
	home := filepath.Join(base, "home")
	must(t, os.Mkdir(home, 0o755))
	must(t, os.Chown(home, 65534, 65534))
	asNobody := func(args ...string) result { return runAsNobody(home, args...) }
	if r := asNobody("init"); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	r := asNobody("backup", "--json", src)
	if r.code != 3 {
		t.Fatalf("backup with unreadable entries: exit %d, want 3 (completed with warnings)\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var p struct {
		Errors []struct{ Path, Error string }
	}
	must(t, json.Unmarshal([]byte(r.stdout), &p))
	got := map[string]bool{}
	for _, e := range p.Errors {
		got[e.Path] = strings.Contains(e.Error, "permission denied")
	}
	if !got["secret.txt"] || !got["locked-dir"] || len(got) != 2 {
		t.Errorf("error list: %+v", p.Errors)
	}
	if !strings.Contains(r.stderr, "secret.txt") {
		t.Errorf("stderr does not name the file: %s", r.stderr)
	}
	out := filepath.Join(base, "out") // not in the home, which no restore writes in
	must(t, os.Mkdir(out, 0o755))
	must(t, os.Chown(out, 65534, 65534))
	dst := filepath.Join(out, "restored")
	if r := asNobody("restore", "latest", "--target", dst); r.code != 0 && r.code != 3 {
		t.Fatalf("restore: %+v", r)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "ok.txt")); string(b) != "fine" {
		t.Error("readable file not restored")
	}
}

func TestWrongPassphrase(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "f"), 1, 100_000)
	e.vars = []string{"RECALL_PASSWORD=right"}
	e.ok("init", "--encrypt")
	e.ok("backup", src)
	before := storeListing(t, filepath.Join(e.home, "store"))
	e.vars = []string{"RECALL_PASSWORD=wrong"}
	for _, args := range [][]string{{"backup", src}, {"points"}, {"restore", "latest", "--target", t.TempDir() + "/x"}, {"verify"}} {
		r := e.run(args...)
		if r.code != 5 || !strings.Contains(r.stderr, "wrong passphrase") {
			t.Errorf("%v with a wrong passphrase: exit %d, %s", args, r.code, r.stderr)
		}
	}
	e.vars = nil
	if r := e.run("backup", src); r.code != 5 || !strings.Contains(r.stderr, "RECALL_PASSWORD") {
		t.Errorf("no passphrase: exit %d, %s", r.code, r.stderr)
	}
	if after := storeListing(t, filepath.Join(e.home, "store")); after != before {
		t.Errorf("store changed by failed attempts:\n%s\n---\n%s", before, after)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("right\n"), 0o600)
	e.ok("--password-file", pw, "verify", "--read-data")
}

func TestFlippedByteInPack(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	files := map[string][]byte{}
	for i := 0; i < 8; i++ {
		name := fmt.Sprintf("file%d", i)
		files[name] = writeRandom(t, filepath.Join(src, name), int64(i), 200_000)
	}
	e.ok("init")
	e.ok("backup", "--source", "s", src)
	// Flip one byte inside the first blob of the data pack.
	var packs []string
	filepath.WalkDir(filepath.Join(e.home, "store/packs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			packs = append(packs, p)
		}
		return nil
	})
	var data string
	for _, p := range packs {
		if st, _ := os.Stat(p); st.Size() > 1_000_000 {
			data = p
		}
	}
	if data == "" {
		t.Fatalf("no data pack among %v", packs)
	}
	b := mustRead(t, data)
	b[1000] ^= 0x01
	must(t, os.WriteFile(data, b, 0o600))

	e.ok("verify") // structure is intact
	r := e.run("verify", "--read-data")
	if r.code != 4 || !strings.Contains(r.stdout, filepath.Base(data)) {
		t.Fatalf("verify --read-data: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var damaged []string
	for name := range files {
		if strings.Contains(r.stdout, ": "+name+": ") {
			damaged = append(damaged, name)
		}
	}
	if len(damaged) != 1 {
		t.Fatalf("verify should name exactly one damaged file, named %v:\n%s", damaged, r.stdout)
	}
	dst := filepath.Join(t.TempDir(), "out")
	r = e.run("restore", "--source", "s", "latest", "--target", dst)
	if r.code != 4 || !strings.Contains(r.stderr, damaged[0]) {
		t.Fatalf("restore: exit %d\n%s", r.code, r.stderr)
	}
	for name, want := range files {
		if name == damaged[0] {
			continue
		}
		if got := mustRead(t, filepath.Join(dst, name)); !bytes.Equal(got, want) {
			t.Errorf("undamaged file %s not restored exactly", name)
		}
	}
}

// mountTmpfs mounts a tmpfs of size (mount's "24m") on dir until the
// test ends, or skips the test where that cannot be done.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		skip(t, "cannot mount a small tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

func TestDiskFull(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	home := filepath.Join(base, "home")
	must(t, os.Mkdir(home, 0o755))
	mountTmpfs(t, home, "24m")
	e := &env{t: t, home: home}
	src := filepath.Join(base, "src")
	os.Mkdir(src, 0o755)
	small := writeRandom(t, filepath.Join(src, "small"), 1, 2<<20)
	e.ok("init")
	e.ok("backup", "--source", "s", src)
	for i := 0; i < 4; i++ {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("big%d", i)), int64(10+i), 10<<20)
	}
	r := e.run("backup", "--source", "s", src)
	if r.code != 1 || !strings.Contains(r.stderr, "is full") || !strings.Contains(r.stderr, "free space") {
		t.Fatalf("backup onto a full disk: exit %d\n%s", r.code, r.stderr)
	}
	e.ok("verify", "--read-data")
	out := e.ok("points", "--json")
	var pts []any
	json.Unmarshal([]byte(out), &pts)
	if len(pts) != 1 {
		t.Errorf("%d points after the failed backup, want 1", len(pts))
	}
	dst := filepath.Join(base, "out")
	e.ok("restore", "latest", "--source", "s", "--target", dst)
	if !bytes.Equal(mustRead(t, filepath.Join(dst, "small")), small) {
		t.Error("earlier point damaged")
	}
	if ents, _ := os.ReadDir(filepath.Join(home, "store/tmp")); len(ents) != 0 {
		t.Errorf("failed backup left %d temp files", len(ents))
	}
	// Without the big files the next backup fits and works.
	for i := 0; i < 4; i++ {
		os.Remove(filepath.Join(src, fmt.Sprintf("big%d", i)))
	}
	e.ok("backup", "--source", "s", src)
	e.ok("verify", "--read-data")
}

// onePoint makes e's store with one point of source s: a 3 MiB file,
// base/src/a.
func onePoint(e *env, base string) {
	src := filepath.Join(base, "src")
	os.Mkdir(src, 0o755)
	writeRandom(e.t, filepath.Join(src, "a"), 1, 3<<20)
	e.ok("init")
	e.ok("backup", "--source", "s", src)
}

// On a store whose file system has no block left, forget still takes its
// lock (its holder file is left empty, which needs no block) and
// forgets: before, taking any lock failed with "no space left", so the
// commands that free space were the ones refused.
func TestForgetOnFullStore(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	fs := filepath.Join(base, "fs")
	must(t, os.Mkdir(fs, 0o755))
	mountTmpfs(t, fs, "16m")
	e := &env{t: t, home: filepath.Join(fs, "home")}
	onePoint(e, base)
	// Fill the file system to its last block.
	f, err := os.Create(filepath.Join(fs, "filler"))
	must(t, err)
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	f.Close()
	out := e.ok("forget", "--source", "s", "latest")
	if !strings.Contains(out, "forgot point") {
		t.Errorf("forget on a full store: %s", out)
	}
	out = e.ok("points", "--json")
	var pts []any
	json.Unmarshal([]byte(out), &pts)
	if len(pts) != 0 {
		t.Errorf("%d points after forget, want 0", len(pts))
	}
	if ents, _ := filepath.Glob(filepath.Join(e.home, "store", "locks", "*.*")); len(ents) != 0 {
		t.Errorf("holder files left: %v", ents)
	}
	// And gc frees the forgotten point's packs: it writes its plan and
	// hiding index in the room of the reserve the backup set aside, and
	// sets the reserve aside again from what it freed.
	var before, after syscall.Statfs_t
	must(t, syscall.Statfs(fs, &before))
	out = e.ok("gc")
	if !strings.Contains(out, "freed: 3.0 MiB") {
		t.Errorf("gc on a full store:\n%s", out)
	}
	must(t, syscall.Statfs(fs, &after))
	if freed := int64(after.Bfree-before.Bfree) * after.Bsize; freed < 3<<20-(4<<20)/8 {
		t.Errorf("gc freed %d bytes of the file system, want about 3 MiB", freed)
	}
	if fi, err := os.Stat(filepath.Join(e.home, "store", "reserve")); err != nil || fi.Size() != 4<<20 {
		t.Errorf("reserve after gc: %v", err)
	}
}

// A restore into a file system too small for it stops at the first file
// that does not fit, says so, names the target and what to do, and
// leaves only files restored whole: none cut short (with its time set,
// one would pass for the original). Whether the large file or the small
// ones run out of room first, the store is untouched and the next
// restore into room enough is exact.
func TestRestoreTargetFull(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	src := t.TempDir()
	files := map[string][]byte{"large": writeRandom(t, filepath.Join(src, "large"), 1, 6<<20)}
	rng := rand.New(rand.NewSource(2))
	for i := range 300 {
		rel := fmt.Sprintf("d%d/f%03d", i%5, i)
		os.MkdirAll(filepath.Join(src, filepath.Dir(rel)), 0o755)
		files[rel] = writeRandom(t, filepath.Join(src, rel), int64(100+i), 8<<10+rng.Intn(8<<10))
	}
	// A link to the large file: removed with it when it is cut short.
	must(t, os.Link(filepath.Join(src, "large"), filepath.Join(src, "d0/link")))
	files["d0/link"] = files["large"]
	e.ok("init")
	e.ok("backup", "--source", "s", src)
	before := storeListing(t, filepath.Join(e.home, "store"))
	for _, size := range []string{"3m", "8m"} {
		t.Run(size, func(t *testing.T) {
			mnt := t.TempDir()
			mountTmpfs(t, mnt, size)
			dst := filepath.Join(mnt, "out")
			r := e.run("restore", "-v", "latest", "--source", "s", "--target", dst)
			if r.code != 1 || !strings.Contains(r.stderr, "restore target "+dst+" is full") ||
				!strings.Contains(r.stderr, "no space left on device") || !strings.Contains(r.stderr, "free space (or inodes) there") ||
				strings.Contains(r.stderr, "damaged") {
				t.Fatalf("restore into %s of room: exit %d\n%s", size, r.code, r.stderr)
			}
			listed := map[string]bool{}
			for _, l := range strings.Split(r.stdout, "\n") {
				if rel, ok := strings.CutPrefix(l, "restored "); ok {
					listed[rel] = true
				}
			}
			whole := 0
			filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return nil
				}
				rel, _ := filepath.Rel(dst, p)
				got, want := mustRead(t, p), files[rel]
				if !bytes.Equal(got, want) {
					t.Errorf("%s: left cut short (%d of %d bytes)", rel, len(got), len(want))
				}
				a, _ := os.Stat(filepath.Join(src, rel))
				b, _ := os.Stat(p)
				if !a.ModTime().Equal(b.ModTime()) {
					t.Errorf("%s: time %v, want %v", rel, b.ModTime(), a.ModTime())
				}
				if !listed[rel] {
					t.Errorf("%s: restored but not listed", rel)
				}
				delete(listed, rel)
				whole++
				return nil
			})
			for rel := range listed {
				t.Errorf("%s: listed as restored, not in the target", rel)
			}
			if !strings.Contains(r.stderr, fmt.Sprintf("%d files restored whole", whole)) {
				t.Errorf("the error does not count the %d files left:\n%s", whole, r.stderr)
			}
			if whole == len(files) || (size == "8m" && whole == 0) {
				t.Errorf("%d of %d files restored into %s", whole, len(files), size)
			}
			t.Logf("%s: %d of %d files restored whole before the stop", size, whole, len(files))
		})
	}
	if after := storeListing(t, filepath.Join(e.home, "store")); after != before {
		t.Errorf("the store changed:\n%s\nwas\n%s", after, before)
	}
	dst := filepath.Join(t.TempDir(), "out")
	e.ok("restore", "latest", "--source", "s", "--target", dst)
	for rel, want := range files {
		if !bytes.Equal(mustRead(t, filepath.Join(dst, rel)), want) {
			t.Errorf("%s: not restored exactly into room enough", rel)
		}
	}
}

func TestKillDuringBackup(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 6; i++ {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("big%d", i)), int64(i), 12<<20)
	}
	for d := 0; d < 10; d++ {
		os.MkdirAll(filepath.Join(src, fmt.Sprintf("d%d", d)), 0o755)
		for i := 0; i < 100; i++ {
			writeRandom(t, filepath.Join(src, fmt.Sprintf("d%d/f%d", d, i)), int64(d*1000+i), 1000+rng.Intn(20000))
		}
	}
	e.ok("init")
	start := time.Now()
	e.ok("backup", "--source", "ref", src)
	full := time.Since(start)
	e.ok("restore", "latest", "--source", "ref", "--target", filepath.Join(t.TempDir(), "warm")) // page cache warm, timings stable
	killed := 0
	for i := 0; i < 20; i++ {
		cmd := e.command("backup", "--source", fmt.Sprintf("k%d", i), src)
		// Each kill lands at a random moment of a full-length backup.
		if i%2 == 0 {
			os.WriteFile(filepath.Join(src, "big0"), bytes.Repeat([]byte{byte(i)}, 1<<20), 0o644)
			writeRandom(t, filepath.Join(src, fmt.Sprintf("big%d", 1+i%5)), int64(100+i), 12<<20)
		}
		must(t, cmd.Start())
		time.Sleep(time.Duration(rng.Int63n(int64(full) + 1)))
		if cmd.Process.Signal(syscall.SIGKILL) == nil {
			killed++
		}
		cmd.Wait()
		if r := e.run("verify"); r.code != 0 {
			t.Fatalf("after kill %d: verify exit %d\n%s%s", i, r.code, r.stdout, r.stderr)
		}
	}
	out := e.ok("backup", "--json", "--source", "final", src)
	var p struct{ Stats map[string]int64 }
	must(t, json.Unmarshal([]byte(out), &p))
	if p.Stats["new_bytes"] >= p.Stats["bytes"] {
		t.Errorf("backup after kills reused nothing: %v", p.Stats)
	}
	e.ok("verify", "--read-data")
	t.Logf("%d kills; final backup: %v", killed, p.Stats)
}

func TestConcurrentBackups(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	for i := 0; i < 4; i++ {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("f%d", i)), int64(i), 10<<20)
	}
	e.ok("init")
	var wg sync.WaitGroup
	res := make([]result, 2)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = e.run("backup", "--source", fmt.Sprintf("s%d", i), src)
		}()
	}
	wg.Wait()
	for i, r := range res {
		if r.code != 0 {
			t.Errorf("backup %d: exit %d %s", i, r.code, r.stderr)
		}
		if strings.Contains(r.stderr, "waiting") && !strings.Contains(r.stderr, "pid ") {
			t.Errorf("wait message does not name the holder: %s", r.stderr)
		}
	}
	out := e.ok("points", "--json")
	var pts []any
	json.Unmarshal([]byte(out), &pts)
	if len(pts) != 2 {
		t.Errorf("%d points, want 2", len(pts))
	}
	e.ok("verify", "--read-data")
	// A backup that may not wait names the holder and exits 6.
	lockf := filepath.Join(e.home, "store/locks/writer")
	f, err := os.OpenFile(lockf, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	must(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX))
	f.Truncate(0)
	f.WriteAt([]byte(`{"pid":4242,"host":"h","purpose":"backup of /x","since":"2026-11-21T00:00:00Z"}`), 0)
	r := e.run("backup", "--lock-wait", "0", src)
	if r.code != 6 || !strings.Contains(r.stderr, "pid 4242") {
		t.Errorf("locked store: exit %d %s", r.code, r.stderr)
	}
}

func TestJobsHistory(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "f"), 1, 1000)
	e.ok("init")
	e.ok("backup", "--source", "s", src)
	if r := e.run("backup", "--source", "s", filepath.Join(src, "missing")); r.code != 1 {
		t.Fatalf("backup of a missing path: exit %d", r.code)
	}
	// A backup killed while it runs shows as interrupted.
	big := t.TempDir()
	writeRandom(t, filepath.Join(big, "b"), 2, 200<<20)
	cmd := e.command("backup", "--source", "big", big)
	must(t, cmd.Start())
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if strings.Contains(e.ok("jobs", "--json"), `"running"`) {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	var jobs []struct {
		Kind, Status, Source, Point, Error string
	}
	must(t, json.Unmarshal([]byte(e.ok("jobs", "--json", "--last", "0")), &jobs))
	if len(jobs) != 3 || jobs[0].Status != "ok" || jobs[0].Point == "" ||
		jobs[1].Status != "failed" || !strings.Contains(jobs[1].Error, "missing") ||
		jobs[2].Status != "interrupted" || jobs[2].Source != "big" {
		t.Errorf("jobs: %+v", jobs)
	}
	// When it ended is not known: the table says so rather than a
	// duration that runs on until whenever it is read.
	for _, l := range strings.Split(e.ok("jobs"), "\n") {
		if strings.Contains(l, "interrupted") && !strings.Contains(l, "unknown") {
			t.Errorf("jobs: %q: want the duration unknown", l)
		}
	}
}

// On a store whose file system is read-only (mounted so, or remounted so
// by the kernel after disk errors) every dry run works: it can take no
// lock, says so, and reports what it would do. What must write says what
// to do, and what works meanwhile.
func TestDryRunsOnReadOnlyStore(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	rw := &env{t: t, home: filepath.Join(base, "home")}
	onePoint(rw, base)
	rw.ok("forget", "--source", "s", "latest")
	ro := &env{t: t, home: filepath.Join(base, "ro")}
	must(t, os.Mkdir(ro.home, 0o755))
	if out, err := exec.Command("sh", "-c", "mount --bind \"$1\" \"$2\" && mount -o remount,bind,ro \"$2\"", "sh", rw.home, ro.home).CombinedOutput(); err != nil {
		skip(t, "cannot make a read-only bind mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", ro.home).Run() })
	note := "is on a read-only file system: this dry run holds no lock"
	r := ro.run("gc", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "would free: 3.0 MiB") || !strings.Contains(r.stderr, note) {
		t.Errorf("gc --dry-run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, what := range []string{"index", "packs", "points"} {
		r := ro.run("repair", what, "--dry-run")
		if r.code != 0 || !strings.Contains(r.stdout, "nothing to repair") || !strings.Contains(r.stderr, note) {
			t.Errorf("repair %s --dry-run: exit %d\n%s%s", what, r.code, r.stdout, r.stderr)
		}
	}
	r = ro.run("gc")
	if r.code != 1 || !strings.Contains(r.stderr, "garbage collection needs to write there; remount it read-write") {
		t.Errorf("gc: exit %d\n%s", r.code, r.stderr)
	}
	// Nothing was written: the collection still has it all to do.
	if out := rw.ok("gc"); !strings.Contains(out, "freed: 3.0 MiB") {
		t.Errorf("gc after the dry runs:\n%s", out)
	}
}

// A mount as a user other than root goes through the set-uid
// fusermount3, whose error alone ("fusermount exited with code 256")
// says nothing of why: recall's says what a user's mount needs and
// which of it is missing.
func TestUserMountSaysWhatItNeeds(t *testing.T) {
	base := nobodyBase(t)
	home, mnt := filepath.Join(base, "home"), filepath.Join(base, "mnt")
	for _, d := range []string{home, mnt} {
		must(t, os.Mkdir(d, 0o755))
		must(t, os.Chown(d, 65534, 65534))
	}
	run := func(args ...string) result { return runAsNobody(home, args...) }
	if r := run("init"); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	// In the foreground: the background server is this binary run
	// again, from the test's build directory, which only root may enter.
	done := make(chan result, 1)
	go func() { done <- run("mount", "--foreground", mnt) }()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		exec.Command("umount", "-l", mnt).Run()
		<-done
		skip(t, "a user may mount here: nothing is missing to be named")
	}
	if !strings.Contains(r.stderr, "mounting as a user other than root needs /dev/fuse and the set-uid fusermount3, and here ") &&
		!strings.Contains(r.stderr, "a user's mount also needs") {
		t.Errorf("user mount: exit %d\n%s", r.code, r.stderr)
	}
}

// A backup with many warnings logs each as it happens and repeats only
// the first 20 in its summary, then says how many more: before, 2,958
// warnings of a deleted directory were printed twice, the summary buried.
func TestManyWarningsSummaryCapped(t *testing.T) {
	base := nobodyBase(t)
	src := filepath.Join(base, "src")
	must(t, os.MkdirAll(src, 0o755))
	for i := range 30 {
		must(t, os.WriteFile(filepath.Join(src, fmt.Sprintf("secret%02d", i)), []byte("root only"), 0o600))
	}
	home := filepath.Join(base, "home")
	must(t, os.Mkdir(home, 0o755))
	must(t, os.Chown(home, 65534, 65534))
	if r := runAsNobody(home, "init"); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	r := runAsNobody(home, "backup", src)
	if r.code != 3 || strings.Count(r.stderr, "permission denied") != 30 {
		t.Fatalf("backup: exit %d, want 3 and 30 warnings logged\n%s", r.code, r.stderr)
	}
	if n := strings.Count(r.stdout, "  warning: "); n != 20 || !strings.Contains(r.stdout, "and 10 more warnings") {
		t.Errorf("summary repeats %d warnings, want 20 and the count of the rest:\n%s", n, r.stdout)
	}
}

// A restore --overwrite by a user into a target holding a directory of
// theirs without write permission leaves that directory as it is (mode
// 0500 kept) and names it, restores everything else and exits 3. (Fix:
// the restore stopped at its first entry, "remove: permission denied",
// with the entries after it never restored, and still chmodded it 0755.)
func TestRestoreOverwriteUnwritableDirAsUser(t *testing.T) {
	base := nobodyBase(t)
	src := filepath.Join(base, "src")
	must(t, os.MkdirAll(filepath.Join(src, "a"), 0o755))
	must(t, os.MkdirAll(filepath.Join(src, "z"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "a/f"), []byte("new"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "top"), []byte("top"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "z/f"), []byte("zf"), 0o644))
	home := filepath.Join(base, "home")
	must(t, os.Mkdir(home, 0o755))
	dst := filepath.Join(base, "dst")
	must(t, os.MkdirAll(filepath.Join(dst, "a"), 0o755))
	must(t, os.WriteFile(filepath.Join(dst, "a/f"), []byte("old"), 0o644))
	for _, p := range []string{home, dst, filepath.Join(dst, "a"), filepath.Join(dst, "a/f")} {
		must(t, os.Chown(p, 65534, 65534))
	}
	must(t, os.Chmod(filepath.Join(dst, "a"), 0o500))
	if r := runAsNobody(home, "init"); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	if r := runAsNobody(home, "backup", "--source", "s", src); r.code != 0 {
		t.Fatalf("backup: %+v", r)
	}
	r := runAsNobody(home, "restore", "--source", "s", "latest", "--target", dst, "--overwrite")
	if r.code != 3 || !strings.Contains(r.stderr, "a/: access "+filepath.Join(dst, "a")+": permission denied: the directory in the target cannot be written in") {
		t.Fatalf("restore: exit %d, want 3 naming a/ as left as it was\n%s", r.code, r.stderr)
	}
	for rel, want := range map[string]string{"a/f": "old", "top": "top", "z/f": "zf"} {
		if b, err := os.ReadFile(filepath.Join(dst, rel)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", rel, b, err, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dst, "a")); err != nil || fi.Mode().Perm() != 0o500 {
		t.Errorf("a: %v, %v; want its mode 0500 kept", fi.Mode(), err)
	}
}
