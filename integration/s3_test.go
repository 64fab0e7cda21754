package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/s3"
	"github.com/recall-backup/recall/internal/cephtest"
)

// The store on an S3 gateway: a single-node Ceph cluster (memstore: the
// data here is small) shared by the subtests, each in its own bucket. The
// gateway's restart comes last: it is the one subtest that disturbs the
// others' gateway.
func TestS3(t *testing.T) {
	cl := cephtest.Start(t, cephtest.Options{})
	t.Logf("ceph cluster ready in %v at %s", cl.StartTime.Round(time.Millisecond), cl.Endpoint)
	f := &s3Fixture{cl: cl}
	t.Run("Workflow", f.workflow)
	t.Run("Mount", f.mount)
	t.Run("Refusals", f.refusals)
	t.Run("Repair", f.repair)
	t.Run("GCBesideBackup", f.gc)
	t.Run("Copy", f.copy)
	t.Run("CopyKilled", f.copyKilled)
	t.Run("CacheSize", f.cacheSize)
	t.Run("GatewayRestart", f.gatewayRestart)
}

type s3Fixture struct {
	cl *cephtest.Cluster
}

// loc is the store location of prefix in bucket.
func (f *s3Fixture) loc(bucket, prefix string) string {
	if prefix == "" {
		return "s3:" + f.cl.Endpoint + "/" + bucket
	}
	return "s3:" + f.cl.Endpoint + "/" + bucket + "/" + prefix
}

// env is a new home whose commands have the S3 user's credentials.
func (f *s3Fixture) env(t *testing.T) *env {
	e := newEnv(t)
	e.vars = append(e.vars, f.cl.Env()...)
	return e
}

// backend opens the store at loc directly, as the tests' own client.
func (f *s3Fixture) backend(t *testing.T, loc string) (*s3.Backend, error) {
	t.Helper()
	cfg, err := s3.ParseURL(loc)
	must(t, err)
	cfg.AccessKey, cfg.SecretKey = f.cl.AccessKey, f.cl.SecretKey
	cfg.Attempts = 2
	be, err := s3.Open(context.Background(), cfg)
	if err == nil {
		t.Cleanup(func() { be.Close() })
	}
	return be, err
}

// listing names every object of the store at loc, by type.
func (f *s3Fixture) listing(t *testing.T, loc string) []string {
	t.Helper()
	be, err := f.backend(t, loc)
	must(t, err)
	var all []string
	for _, ft := range backend.FileTypes {
		must(t, be.List(context.Background(), ft, func(name string, size int64) error {
			all = append(all, fmt.Sprintf("%s/%s %d", ft, name, size))
			return nil
		}))
	}
	slices.Sort(all)
	return all
}

// names lists the objects of one type in the store at loc.
func (f *s3Fixture) names(t *testing.T, loc string, ft backend.FileType) []string {
	t.Helper()
	be, err := f.backend(t, loc)
	must(t, err)
	var out []string
	must(t, be.List(context.Background(), ft, func(name string, _ int64) error { out = append(out, name); return nil }))
	return out
}

// mixedTree writes large random files (several packs) and small ones,
// from seeds seed*100+i and seed*1000+i: other data of a test takes
// seeds far from these, or it shares their bytes.
func mixedTree(t *testing.T, dir string, seed int64, large int) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	for i := 0; i < large; i++ {
		writeRandom(t, filepath.Join(dir, fmt.Sprintf("big%d", i)), seed*100+int64(i), 3<<20+rng.Intn(2<<20))
	}
	sub := filepath.Join(dir, "docs", "deep")
	must(t, os.MkdirAll(sub, 0o755))
	for i := 0; i < 40; i++ {
		writeRandom(t, filepath.Join(sub, fmt.Sprintf("f%d", i)), seed*1000+int64(i), 100+rng.Intn(30000))
	}
	must(t, os.Symlink("deep/f1", filepath.Join(dir, "docs", "link")))
}

// restoreSame restores point (an id or "latest") of the store e reaches
// and compares it with want.
func restoreSame(t *testing.T, e *env, point string, want map[string]entry, args ...string) {
	t.Helper()
	target := filepath.Join(t.TempDir(), "r")
	e.ok(append([]string{"restore", point, "--target", target}, args...)...)
	compareTrees(t, want, snapshot(t, target))
}

// init on a missing bucket makes it and records the location in the
// home, with no secret in it; backup, points, restore (byte-identical)
// and verify --read-data run with --home alone. A fresh home on "another
// machine" reads the store with --store alone, and records it. A
// location from RECALL_STORE that is not the home's is refused; a typed
// --store wins for its run, with a warning.
func (f *s3Fixture) workflow(t *testing.T) {
	e := f.env(t)
	loc := f.loc("workflow", "site-a")
	if _, err := f.backend(t, loc); !errors.Is(err, s3.ErrNoBucket) {
		t.Fatalf("the bucket exists before init: %v", err)
	}
	out := e.ok("init", "--store", loc)
	if !strings.Contains(out, loc) {
		t.Errorf("init does not say where the store is: %q", out)
	}
	rec, err := os.ReadFile(filepath.Join(e.home, "store.json"))
	must(t, err)
	if !strings.Contains(string(rec), `"location":"`+loc+`"`) || strings.Contains(string(rec), f.cl.SecretKey) || strings.Contains(string(rec), f.cl.AccessKey) {
		t.Errorf("store.json: %s", rec)
	}
	if _, err := os.Stat(filepath.Join(e.home, "store")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("init of a remote store made a local store directory: %v", err)
	}

	src := t.TempDir()
	mixedTree(t, src, 1, 4)
	e.ok("backup", "--source", "docs", src)
	want := snapshot(t, src)
	if len(f.names(t, loc, backend.Packs)) < 2 || len(f.names(t, loc, backend.Points)) != 1 {
		t.Fatalf("after a backup the bucket holds %v", f.listing(t, loc))
	}
	if ids := e.pointIDs(); len(ids) != 1 {
		t.Fatalf("points: %v", ids)
	}
	restoreSame(t, e, "latest", want)
	e.ok("verify", "--read-data")
	jobs := e.ok("jobs", "--json")
	if !strings.Contains(jobs, `"docs"`) {
		t.Errorf("the backup is not in the home's catalog: %s", jobs)
	}

	fresh := f.env(t)
	if r := fresh.run("points"); r.code == 0 {
		t.Fatalf("points of a fresh home with no store: exit 0")
	}
	if pts := fresh.ok("--store", loc, "points", "--json"); !strings.Contains(pts, `"docs"`) {
		t.Errorf("points of a fresh home with --store: %s", pts)
	}
	restoreSame(t, fresh, "latest", want, "--store", loc)
	// The first command recorded the store: --home alone finds it now.
	restoreSame(t, fresh, "latest", want)
	// What opening and browsing read again and again is kept in the
	// home: its cache of the store holds the index files and manifests.
	if n := dirSize(t, filepath.Join(fresh.home, "cache")); n == 0 {
		t.Errorf("the fresh home keeps no cache of the remote store")
	}

	other := f.loc("workflow", "site-b")
	f.env(t).ok("--store", other, "init")
	e.vars = append(e.vars, "RECALL_STORE="+other)
	r := e.run("points")
	if r.code != 2 || !strings.Contains(r.stderr, loc) || !strings.Contains(r.stderr, other) || !strings.Contains(r.stderr, "--store") {
		t.Errorf("RECALL_STORE other than the home's store: exit %d, %q", r.code, r.stderr)
	}
	t.Logf("RECALL_STORE not the home's: %s", strings.TrimSpace(r.stderr))
	r = e.run("points", "--json", "--store", other)
	if r.code != 0 || strings.Contains(r.stdout, `"docs"`) || !strings.Contains(r.stderr, "for this run") {
		t.Errorf("--store other than the home's: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
}

// A fresh home mounts the remote store, and the mount reads its files.
func (f *s3Fixture) mount(t *testing.T) {
	requireFUSE(t)
	e := f.env(t)
	loc := f.loc("mount", "")
	e.ok("init", "--store", loc)
	src := t.TempDir()
	mixedTree(t, src, 2, 2)
	e.ok("backup", "--source", "data", src)

	fresh := f.env(t)
	mnt := t.TempDir()
	fresh.mount(mnt, "--store", loc)
	for _, p := range []string{"big1", "docs/deep/f7", "docs/link"} {
		got, err := os.ReadFile(filepath.Join(mnt, "data", "latest", p))
		must(t, err)
		if want := mustRead(t, filepath.Join(src, p)); string(got) != string(want) {
			t.Errorf("%s read through the mount differs", p)
		}
	}
}

// Wrong credentials, a missing bucket and another store's bucket give a
// clear error naming the endpoint and what to do, before anything is
// written.
func (f *s3Fixture) refusals(t *testing.T) {
	good := f.env(t)
	loc := f.loc("taken", "")
	good.ok("init", "--store", loc)
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "f"), 3, 1<<20)
	good.ok("backup", "--source", "s", src)
	before := f.listing(t, loc)

	wrongKey := f.env(t)
	wrongKey.vars = append(wrongKey.vars, "AWS_SECRET_ACCESS_KEY=not-the-key")
	missing := f.loc("never-made", "p")
	cases := []struct {
		name string
		e    *env
		args []string
		want []string
	}{
		{"wrong key, init", wrongKey, []string{"init", "--store", f.loc("wrong-key", "")}, []string{f.cl.Endpoint, "credentials", "AWS_ACCESS_KEY_ID"}},
		{"wrong key, backup", wrongKey, []string{"--store", loc, "backup", "--source", "s", src}, []string{f.cl.Endpoint, "credentials"}},
		{"missing bucket, points", f.env(t), []string{"--store", missing, "points"}, []string{missing, "does not exist", "recall init"}},
		{"missing bucket, backup", f.env(t), []string{"--store", missing, "backup", "--source", "s", src}, []string{missing, "recall init"}},
		{"another store's bucket", f.env(t), []string{"init", "--store", loc}, []string{loc, "another store"}},
	}
	for _, c := range cases {
		r := c.e.run(c.args...)
		if r.code == 0 {
			t.Errorf("%s: exit 0", c.name)
			continue
		}
		t.Logf("%s: exit %d: %s", c.name, r.code, strings.TrimSpace(r.stderr))
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: the error lacks %q: %s", c.name, w, r.stderr)
			}
		}
		if strings.Contains(r.stderr, f.cl.SecretKey) {
			t.Errorf("%s: the error shows the secret key", c.name)
		}
		if _, err := os.Stat(filepath.Join(c.e.home, "store.json")); err == nil {
			t.Errorf("%s: a refused command recorded a store in the home", c.name)
		}
	}
	for _, b := range []string{f.loc("wrong-key", ""), missing} {
		if _, err := f.backend(t, b); !errors.Is(err, s3.ErrNoBucket) {
			t.Errorf("%s: a refused command made the bucket: %v", b, err)
		}
	}
	if after := f.listing(t, loc); !slices.Equal(before, after) {
		t.Errorf("refused commands wrote to the store:\n%v\nthen\n%v", before, after)
	}
}

// cachedFile reports whether a file named name is under dir.
func cachedFile(t *testing.T, dir, name string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == name {
			found = true
		}
		return err
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return found
}

// A tree pack object overwritten with garbage: verify --read-data finds it,
// repair drops it after salvaging what it can, a new backup stores the
// lost blobs again, and the store verifies clean and restores.
func (f *s3Fixture) repair(t *testing.T) {
	e := f.env(t)
	loc := f.loc("repair", "r")
	e.ok("init", "--store", loc)
	src := t.TempDir()
	mixedTree(t, src, 4, 3)
	e.ok("backup", "--source", "s", src)
	packs := f.names(t, loc, backend.Packs)
	if len(packs) < 2 {
		t.Fatalf("packs: %v", packs)
	}
	// The victim is a tree pack the home keeps a copy of in its cache
	// (the restore put it there): verify and repair must read the remote
	// object, not that copy, or its damage goes unseen.
	restoreSame(t, e, "latest", snapshot(t, src))
	var victim string
	for _, p := range packs {
		if cachedFile(t, filepath.Join(e.home, "cache"), p) {
			victim = p
			break
		}
	}
	if victim == "" {
		t.Fatalf("no pack of %v in the home's cache after a restore", packs)
	}
	be, err := f.backend(t, loc)
	must(t, err)
	garbage := make([]byte, 1<<20)
	rand.New(rand.NewSource(5)).Read(garbage)
	must(t, be.Save(context.Background(), backend.Handle{Type: backend.Packs, Name: victim}, garbage))

	r := e.run("verify", "--read-data")
	if r.code != 4 || !strings.Contains(r.stdout+r.stderr, victim[:12]) {
		t.Fatalf("verify --read-data of a store with a garbage pack: exit %d, want 4 naming %s\n%s%s", r.code, victim[:12], r.stdout, r.stderr)
	}
	for _, args := range [][]string{{"repair", "index"}, {"repair", "packs"}} {
		if r := e.run(args...); r.code != 0 && r.code != 4 {
			t.Fatalf("recall %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	if slices.Contains(f.names(t, loc, backend.Packs), victim) {
		t.Errorf("repair packs left the damaged pack %s", victim)
	}
	e.ok("backup", "--source", "s", src)
	if r := e.run("repair", "points", "--forget-damaged"); r.code != 0 && r.code != 4 {
		t.Fatalf("repair points: exit %d\n%s", r.code, r.stderr)
	}
	e.ok("verify", "--read-data")
	restoreSame(t, e, "latest", snapshot(t, src))
}

// forget and gc delete the objects only forgotten points needed; a
// backup run beside a gc stays whole.
func (f *s3Fixture) gc(t *testing.T) {
	e := f.env(t)
	loc := f.loc("gc-beside", "")
	e.ok("init", "--store", loc)
	src, second := t.TempDir(), t.TempDir()
	mixedTree(t, src, 6, 3)
	e.ok("backup", "--source", "s", src)
	firstPacks := f.names(t, loc, backend.Packs)
	for i := 0; i < 3; i++ {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("big%d", i)), int64(96000+i), 7<<20)
	}
	e.ok("backup", "--source", "s", src)
	e.ok("forget", e.pointIDs()[0])
	if r := e.gc(); r.PacksDeleted == 0 {
		t.Fatalf("gc after forget deleted nothing: %+v", r)
	}
	left := f.names(t, loc, backend.Packs)
	gone := 0
	for _, p := range firstPacks {
		if !slices.Contains(left, p) {
			gone++
		}
	}
	if gone == 0 {
		t.Errorf("gc deleted no pack object of the forgotten point")
	}
	e.ok("verify", "--read-data")

	// Once more, with a backup of another source running beside the gc,
	// throttled so that it runs across gc's hide and delete: it holds
	// copies of the files only the forgotten point has, so it
	// deduplicates against the very packs gc hides and deletes, and is
	// left whole only if gc waits for it or it stores them again.
	for i := 0; i < 3; i++ {
		writeRandom(t, filepath.Join(second, fmt.Sprintf("z-big%d", i)), int64(96000+i), 7<<20) // the forgotten point's
		writeRandom(t, filepath.Join(src, fmt.Sprintf("big%d", i)), int64(97000+i), 7<<20)
	}
	writeRandom(t, filepath.Join(second, "a-filler"), 7, 6<<20) // read first, slowly
	e.ok("backup", "--source", "s", src)
	forgotten := e.pointIDs()[0]
	e.ok("forget", forgotten)
	bk := e.command("backup", "-q", "--limit", "2MiB/s", "--source", "beside", second)
	var bkErr strings.Builder
	bk.Stderr = &bkErr
	must(t, bk.Start())
	bkDone := make(chan error, 1)
	var bkEnd time.Time
	go func() { err := bk.Wait(); bkEnd = time.Now(); bkDone <- err }()
	// gc starts once the backup's session is registered: polling the
	// store's locks is the only sign of it from outside.
	for !slices.ContainsFunc(f.names(t, loc, backend.Locks), func(n string) bool { return strings.HasPrefix(n, "session-") }) {
		select {
		case err := <-bkDone:
			t.Fatalf("the backup beside gc ended before it was seen registered: %v\n%s", err, bkErr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	g := e.run("gc", "--json", "--index-grace", "0", "--wait", "2m")
	gcEnd := time.Now()
	if err := <-bkDone; err != nil {
		t.Fatalf("the backup beside gc: %v\n%s", err, bkErr.String())
	}
	if g.code != 0 {
		t.Fatalf("gc beside a backup: exit %d\n%s", g.code, g.stderr)
	}
	// gc hid the forgotten packs while the backup ran and deleted them
	// only once it had ended: the window under test was crossed.
	if gcEnd.Before(bkEnd) {
		t.Errorf("gc ended %v before the backup beside it: it did not wait for the session", bkEnd.Sub(gcEnd))
	}
	var gr gcJSON
	must(t, json.Unmarshal([]byte(g.stdout), &gr))
	if gr.PacksHidden+gr.PacksDeleted == 0 {
		t.Errorf("gc beside the backup hid and deleted nothing: %+v", gr)
	}
	// Whether the forgotten packs are deleted (the backup stored its
	// copies again) or indexed again (it deduplicated against them before
	// they were hidden) depends on the timing; the restore below is what
	// must hold either way.
	t.Logf("gc beside a throttled backup: %+v, ended %v after the backup", gr, gcEnd.Sub(bkEnd).Round(time.Millisecond))
	e.ok("verify", "--read-data")
	restoreSame(t, e, "latest", snapshot(t, second), "--source", "beside")
	restoreSame(t, e, "latest", snapshot(t, src), "--source", "s")
}

// copy local->S3, S3->local and S3->S3; each copy verifies reading every
// blob and restores byte for byte.
func (f *s3Fixture) copy(t *testing.T) {
	e := f.env(t)
	e.ok("init")
	src := t.TempDir()
	mixedTree(t, src, 8, 3)
	e.ok("backup", "--source", "s", src)
	want := snapshot(t, src)

	toS3 := f.loc("copies", "one")
	toLocal := filepath.Join(t.TempDir(), "local")
	toS3b := f.loc("copies-b", "two")
	for _, c := range []struct{ from, to string }{{e.home, toS3}, {toS3, toLocal}, {toS3, toS3b}} {
		e.ok("copy", "-q", "--from", c.from, "--to", c.to)
		dst := f.env(t)
		args := []string{}
		if strings.HasPrefix(c.to, "s3:") {
			args = append(args, "--store", c.to)
		} else {
			dst.home = c.to
		}
		dst.ok(append(args, "verify", "--read-data")...)
		restoreSame(t, dst, "latest", want)
	}
	again := e.ok("copy", "--json", "-q", "--from", toS3, "--to", toS3b)
	if !strings.Contains(again, `"blobs_copied":0`) {
		t.Errorf("a second S3->S3 copy copied blobs: %s", again)
	}
}

// A copy to S3 killed at random moments, ten times, is completed by the
// next run; the copy verifies reading every blob and restores.
func (f *s3Fixture) copyKilled(t *testing.T) {
	e := f.env(t)
	e.ok("init")
	src := t.TempDir()
	mixedTree(t, src, 9, 8)
	e.ok("backup", "--source", "a", src)
	want := snapshot(t, src)
	loc := f.loc("killed", "")
	// A killed copy's locks at the destination keep the next copy out
	// until they go stale: 30 minutes by default, 3 s here.
	e.vars = append(e.vars, "RECALL_S3_LOCK_STALE=3s")
	rng := rand.New(rand.NewSource(10))
	start := time.Now()
	e.ok("copy", "-q", "--from", e.home, "--to", f.loc("killed-timing", ""))
	full := time.Since(start)
	killed := 0
	// The kill comes within the time the last whole copy took: the first
	// copies all of it, later ones only what the backups since added, so
	// on a loaded machine the first copy's time let most of them finish.
	span := full
	for i := 0; killed < 10 && i < 40; i++ {
		cmd := e.command("copy", "-q", "--from", e.home, "--to", loc)
		began := time.Now()
		must(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		at := 20*time.Millisecond + time.Duration(rng.Int63n(int64(max(span*9/10, 100*time.Millisecond))))
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("copy %d failed before it was killed: %v", i, err)
			}
			span = min(span, time.Since(began))
			// Complete: new data gives the next run work.
			writeRandom(t, filepath.Join(src, fmt.Sprintf("new%d", i)), int64(99000+i), 8<<20)
			e.ok("backup", "--source", "a", src)
			want = snapshot(t, src)
		case <-time.After(at):
			must(t, cmd.Process.Signal(syscall.SIGKILL))
			<-done
			killed++
		}
	}
	if killed < 10 {
		t.Errorf("only %d copies were killed while they ran", killed)
	}
	e.ok("copy", "-q", "--from", e.home, "--to", loc)
	dst := f.env(t)
	dst.ok("--store", loc, "verify", "--read-data")
	restoreSame(t, dst, "latest", want)
	t.Logf("a whole copy took %v; %d killed", full, killed)
}

// The gateway stopped in the middle of a backup and started again: the
// backup retries and finishes, or fails naming the endpoint; either way
// the store verifies clean, and a backup run then finishes.
func (f *s3Fixture) gatewayRestart(t *testing.T) {
	e := f.env(t)
	loc := f.loc("restart", "")
	e.ok("init", "--store", loc)
	src := t.TempDir()
	mixedTree(t, src, 11, 16)
	// Stopped once a pack's worth of data has been read, so the writes
	// in flight meet the stopped gateway.
	stopped, linesAfter := false, 0
	stderr, err := e.backupWatched(t, src, func(_ *os.Process, done int64) {
		if stopped {
			linesAfter++
		} else if done > 24<<20 {
			f.cl.StopGateway()
			stopped = true
			must(t, f.cl.StartGateway())
		}
	})
	if !stopped || linesAfter == 0 {
		t.Fatalf("the backup did not run across the gateway's restart (stopped %v, %d status lines after): %v\n%s", stopped, linesAfter, err, stderr)
	}
	if err != nil {
		if !strings.Contains(stderr, f.cl.Endpoint) {
			t.Errorf("the backup failed without naming the endpoint: %s", stderr)
		}
		t.Logf("the backup failed cleanly: %s", stderr)
	} else if len(e.pointIDs()) != 1 {
		t.Errorf("the backup succeeded but made no point")
	} else {
		t.Logf("the backup retried and finished")
	}
	e.ok("verify", "--read-data")
	e.ok("backup", "--source", "s", src)
	e.ok("verify", "--read-data")
	restoreSame(t, e, "latest", snapshot(t, src))
}

// backupWatched runs `recall backup --json --source s SRC` with a status
// line every 50 ms and calls fn with its process and the bytes it has
// read at each one, until the backup ends (fn may kill it); it returns
// the backup's stderr and what waiting for it returned.
func (e *env) backupWatched(t *testing.T, src string, fn func(p *os.Process, done int64)) (string, error) {
	t.Helper()
	cmd := e.command("--progress-interval", "50ms", "backup", "--json", "--source", "s", src)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	must(t, cmd.Start())
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var st struct {
			Type  string `json:"message_type"`
			Bytes int64  `json:"bytes_done"`
		}
		if json.Unmarshal(sc.Bytes(), &st) == nil && st.Type == "status" {
			fn(cmd.Process, st.Bytes)
		}
	}
	err = cmd.Wait()
	return stderr.String(), err
}
