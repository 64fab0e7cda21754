package fs

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"golang.org/x/sys/unix"
)

// Mount benchmarks. Run them with
//
//	go test ./fs/ -run '^$' -bench Mount -benchtime 3x
//
// as root (they mount). Fixtures are built once per process through the
// engine in $TMPDIR; RECALL_BENCH_FILE_MB sets the size of the big file
// (default 4096, the 4 GiB; building it takes ~20 s). The issue's
// targets: 100k-entry listing < 1 s, `ls` of 1,000 points < 0.2 s, mount
// ready < 1 s with 1,000 points, random 4 KiB reads median < 2 ms cold.
// bench/run.sh runs them (section mountgo) and judges them; the
// comparison with restic lives there too.

var (
	fixMu   sync.Mutex
	fixDirs = map[string]string{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range fixDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// fixture returns a store dir built once by build (which gets the store
// dir and a scratch dir for source data).
func fixture(b *testing.B, name string, build func(b *testing.B, store, scratch string)) string {
	fixMu.Lock()
	defer fixMu.Unlock()
	if d, ok := fixDirs[name]; ok {
		return filepath.Join(d, "store")
	}
	if os.Geteuid() != 0 {
		skip(b, "mount benchmarks need root")
	}
	d, err := os.MkdirTemp("", "recall-fsbench-"+name+"-")
	if err != nil {
		b.Fatal(err)
	}
	fixDirs[name] = d
	store := filepath.Join(d, "store")
	if _, err := chunkstore.Init(store, chunkstore.InitOptions{}); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	build(b, store, filepath.Join(d, "scratch"))
	b.Logf("fixture %s built in %v", name, time.Since(start).Round(time.Millisecond))
	return store
}

func benchBackup(b *testing.B, store, path, source string, at time.Time) {
	st, err := engine.Open(store, chunkstore.OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	s, err := st.Session(context.Background(), engine.SessionOptions{Purpose: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	o := engine.BackupOptions{Path: path, Source: source}
	if !at.IsZero() {
		o.Now = func() time.Time { return at }
	}
	if _, err := engine.Backup(context.Background(), s, o); err != nil {
		b.Fatal(err)
	}
}

func bigFileMB() int {
	if v, err := strconv.Atoi(os.Getenv("RECALL_BENCH_FILE_MB")); err == nil && v > 0 {
		return v
	}
	return 4096
}

func bigFileStore(b *testing.B) string {
	return fixture(b, "bigfile", func(b *testing.B, store, scratch string) {
		os.MkdirAll(scratch, 0o755)
		f, err := os.Create(filepath.Join(scratch, "big"))
		if err != nil {
			b.Fatal(err)
		}
		r := rand.New(rand.NewSource(1))
		buf := make([]byte, 1<<20)
		for i := 0; i < bigFileMB(); i++ {
			r.Read(buf)
			f.Write(buf)
		}
		f.Close()
		benchBackup(b, store, scratch, "big", time.Time{})
		os.RemoveAll(scratch)
	})
}

// benchMount opens the store, builds the tree and mounts it.
func benchMount(b *testing.B, store string, o Options) (*Server, func()) {
	st, err := chunkstore.Open(store, chunkstore.OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	tr, err := New(NewEngineBackend(engine.NewReader(st)), o)
	if err != nil {
		b.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "recall-fsbench-mnt-")
	if err != nil {
		b.Fatal(err)
	}
	srv, err := Mount(dir, tr, MountOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return srv, func() {
		if srv.Unmount() != nil {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
		os.Remove(dir)
		st.Close()
	}
}

// BenchmarkMountSequentialRead: first read of a big file through a fresh
// mount (new tree and kernel cache each iteration; pack files may be in
// the page cache, as for the other tools in `make bench`).
func BenchmarkMountSequentialRead(b *testing.B) {
	store := bigFileStore(b)
	b.SetBytes(int64(bigFileMB()) << 20)
	buf := make([]byte, 1<<20)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		srv, done := benchMount(b, store, Options{})
		b.StartTimer()
		f, err := os.Open(filepath.Join(srv.Dir(), "big", LatestName, "big"))
		if err != nil {
			b.Fatal(err)
		}
		for {
			n, err := f.Read(buf)
			if n == 0 || err != nil {
				break
			}
		}
		f.Close()
		b.StopTimer()
		done()
		b.StartTimer()
	}
}

// BenchmarkMountRandom4K: 4 KiB reads at random offsets of the big file,
// cold: the chunk cache (16 MiB) is tiny next to the file and packs are
// read with O_DIRECT, so nearly every read loads a chunk from disk and
// verifies it. Each iteration makes randomReads reads; the median and
// 90th percentile are over all of them.
func BenchmarkMountRandom4K(b *testing.B) {
	const randomReads = 100
	store := bigFileStore(b)
	srv, done := benchMount(b, store, Options{CacheBytes: 16 << 20})
	defer done()
	f, err := os.Open(filepath.Join(srv.Dir(), "big", LatestName, "big"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	size := int64(bigFileMB()) << 20
	r := rand.New(rand.NewSource(2))
	buf := make([]byte, 4096)
	lat := make([]time.Duration, 0, b.N*randomReads)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for range randomReads {
			off := r.Int63n(size/4096) * 4096
			t0 := time.Now()
			if _, err := f.ReadAt(buf, off); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds())/1000, "ms-p90")
}

// BenchmarkMountList100k: list a 100,000-entry directory through a fresh
// mount: names (ls), names plus attributes (what ls -l stats), and ls -l
// run as a command. RECALL_BENCH_ENTRIES changes the count.
func BenchmarkMountList100k(b *testing.B) {
	entries := benchEntries()
	store := fixture(b, "list100k", func(b *testing.B, store, scratch string) {
		d := filepath.Join(scratch, "dir")
		os.MkdirAll(d, 0o755)
		for i := 0; i < entries; i++ {
			f, err := os.Create(filepath.Join(d, fmt.Sprintf("file-%06d.txt", i)))
			if err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
		benchBackup(b, store, scratch, "many", time.Time{})
		os.RemoveAll(scratch)
	})
	for _, withAttrs := range []bool{false, true} {
		name := "names"
		if withAttrs {
			name = "names+attrs"
		}
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				srv, done := benchMount(b, store, Options{})
				b.StartTimer()
				dir := filepath.Join(srv.Dir(), "many", LatestName, "dir")
				ents, err := os.ReadDir(dir)
				if err != nil || len(ents) != entries {
					b.Fatalf("%d entries, %v", len(ents), err)
				}
				if withAttrs {
					var st unix.Stat_t
					for _, e := range ents {
						if err := unix.Lstat(filepath.Join(dir, e.Name()), &st); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				done()
				b.StartTimer()
			}
		})
	}
	// ls -l itself: besides names and attributes it asks for the SELinux
	// label and the access ACL of every entry (see doc.go, Metadata, for
	// which of those reach the server). ls-l lists a fresh mount,
	// ls-l-again a mount that ls -l listed once already.
	for _, again := range []bool{false, true} {
		name := "ls-l"
		if again {
			name = "ls-l-again"
		}
		b.Run(name, func(b *testing.B) {
			ls, err := exec.LookPath("ls")
			if err != nil {
				skip(b, "ls -l benchmark: %v", err)
			}
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				srv, done := benchMount(b, store, Options{})
				dir := filepath.Join(srv.Dir(), "many", LatestName, "dir")
				list := func() {
					if err := exec.Command(ls, "-l", dir).Run(); err != nil {
						b.Fatalf("ls -l %s: %v", dir, err)
					}
				}
				if again {
					list()
				}
				b.StartTimer()
				list()
				b.StopTimer()
				done()
				b.StartTimer()
			}
		})
	}
}

func benchEntries() int {
	if v, err := strconv.Atoi(os.Getenv("RECALL_BENCH_ENTRIES")); err == nil && v > 0 {
		return v
	}
	return 100000
}

func thousandPoints(b *testing.B) string {
	return fixture(b, "points1000", func(b *testing.B, store, scratch string) {
		os.MkdirAll(scratch, 0o755)
		os.WriteFile(filepath.Join(scratch, "f"), []byte("x"), 0o644)
		base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := 0; i < 1000; i++ {
			benchBackup(b, store, scratch, "src", base.Add(time.Duration(i)*time.Hour))
		}
	})
}

// BenchmarkMountListPoints1000: `ls <mnt>/<source>` with 1,000 points.
func BenchmarkMountListPoints1000(b *testing.B) {
	store := thousandPoints(b)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		srv, done := benchMount(b, store, Options{})
		b.StartTimer()
		ents, err := os.ReadDir(filepath.Join(srv.Dir(), "src"))
		if err != nil || len(ents) != 1001 {
			b.Fatalf("%d entries, %v", len(ents), err)
		}
		b.StopTimer()
		done()
		b.StartTimer()
	}
}

// BenchmarkMountReady1000Points: open the store, load 1,000 points and
// mount, until the kernel serves the tree.
func BenchmarkMountReady1000Points(b *testing.B) {
	store := thousandPoints(b)
	for i := 0; i < b.N; i++ {
		srv, done := benchMount(b, store, Options{})
		if _, err := os.Stat(filepath.Join(srv.Dir(), "src", LatestName)); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		done()
		b.StartTimer()
	}
}
