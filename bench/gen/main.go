// Command gen writes the deterministic benchmark data set used by
// bench/run.sh. Every byte depends only on -seed, -scale and the file's
// path, so two runs with the same parameters produce identical trees
// (independent of scheduling, Go version or machine).
//
// Layout below -out:
//
//	set/large/big-N.bin         3 x 512 MiB incompressible
//	set/small/dNNN/eNN/fNNNNN.* ~20,000 files of 1-64 KiB, half text-like
//	set/text/log-NN.log         ~256 MiB of log-like (compressible) text
//	single/single.bin           2 GiB incompressible
//	ins/a/file.bin              1 GiB incompressible
//	ins/b/file.bin              the same with 100 scattered 4 KiB insertions
//	files/text/dNN/eNN/fNNNNN.* 12,000 text-like files of 0.2-40 KiB (prose,
//	                            log lines, source-like code)
//	files/media/img-N.bin       3 x 96 MiB incompressible (photos, archives)
//	files/var/app.log           64 MiB of log lines
//
// files/ is the small-file-heavy set: most of its files and most of the
// time a backup spends opening files are in files/text, most bytes in the
// few large files, as on a home or /etc-and-/var tree.
//
// All sizes, the small file counts and the number of insertions are
// multiplied by -scale (so the insertion density stays 100 per GiB).
package main

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30

	smallPerDir    = 50 // files per leaf directory
	leafPerTop     = 20 // leaf directories per top-level directory
	textFileMax    = 32 * mib
	insertionBytes = 4 * kib
)

var (
	seed  string
	scale float64
)

// key derives a 32-byte key from the seed and a stream name.
func key(name string) [32]byte {
	return sha256.Sum256([]byte("recall-bench\x00" + seed + "\x00" + name))
}

// randStream returns a deterministic incompressible byte stream (AES-256-CTR
// keystream) for the given name.
func randStream(name string) io.Reader {
	k := key(name)
	block, err := aes.NewCipher(k[:])
	if err != nil {
		panic(err)
	}
	iv := make([]byte, aes.BlockSize)
	return &cipher.StreamReader{S: cipher.NewCTR(block, iv), R: zeroReader{}}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// rng is splitmix64: tiny, fast and stable forever (unlike math/rand).
type rng struct{ s uint64 }

func newRNG(name string) *rng {
	k := key(name)
	return &rng{s: binary.LittleEndian.Uint64(k[:8])}
}

func (r *rng) u64() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *rng) intn(n int) int         { return int(r.u64() % uint64(n)) }
func (r *rng) float() float64         { return float64(r.u64()>>11) / (1 << 53) }
func (r *rng) pick(s []string) string { return s[r.intn(len(s))] }

func scaled(base int64) int64 {
	v := int64(math.Round(float64(base) * scale))
	if v < 1 {
		v = 1
	}
	return v
}

// vocabulary is a fixed pseudo-word list shared by all text generators.
var vocabulary = func() []string {
	common := strings.Fields(`the of and to in is that for it as was with be by on not he
		this are or his from at which but have an they you were her she there been one all
		we their has would when if so no will more can out up what about into than them
		request response error warning cache server client index block chunk store backup
		restore snapshot point source file directory latency timeout retry connection user
		session token config value result status failed success pending queue worker task`)
	r := &rng{s: 0x5eed}
	const letters = "etaoinshrdlcumwfgypbvkjxqz"
	for len(common) < 600 {
		n := 2 + r.intn(9)
		b := make([]byte, n)
		for i := range b {
			// Skewed letter distribution, roughly like English.
			b[i] = letters[int(float64(len(letters))*r.float()*r.float())]
		}
		common = append(common, string(b))
	}
	return common
}()

var (
	levels   = []string{"INFO ", "INFO ", "INFO ", "INFO ", "DEBUG", "DEBUG", "WARN ", "ERROR"}
	methods  = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	services = []string{"api", "auth", "billing", "search", "storage", "gateway", "scheduler"}
	paths    = []string{"/v1/users", "/v1/orders", "/v1/items", "/v2/search", "/healthz", "/v1/files", "/v1/sessions"}
	statuses = []string{"200", "200", "200", "200", "201", "204", "304", "400", "404", "500"}
)

func sentence(r *rng, b []byte) []byte {
	n := 4 + r.intn(14)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, r.pick(vocabulary)...)
	}
	return b
}

// writeText writes size bytes of prose-like text.
func writeText(w io.Writer, r *rng, size int64) error {
	buf := make([]byte, 0, 64*kib)
	for size > 0 {
		buf = buf[:0]
		for len(buf) < 60*kib {
			buf = sentence(r, buf)
			if r.intn(6) == 0 {
				buf = append(buf, ".\n\n"...)
			} else {
				buf = append(buf, ". "...)
			}
		}
		n := min(int64(len(buf)), size)
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		size -= n
	}
	return nil
}

// writeLog writes size bytes of log-like lines.
func writeLog(w io.Writer, r *rng, size int64, start time.Time) error {
	t := start
	buf := make([]byte, 0, 256*kib)
	for size > 0 {
		buf = buf[:0]
		for len(buf) < 250*kib {
			t = t.Add(time.Duration(r.intn(50_000)) * time.Microsecond)
			buf = t.AppendFormat(buf, "2006-01-02T15:04:05.000000Z07:00")
			buf = fmt.Appendf(buf, " %s svc=%s-%d req=%08x method=%s path=%s/%d status=%s dur_ms=%d.%03d bytes=%d msg=\"",
				r.pick(levels), r.pick(services), r.intn(8), uint32(r.u64()), r.pick(methods),
				r.pick(paths), r.intn(5000), r.pick(statuses), r.intn(300), r.intn(1000), r.intn(100000))
			buf = sentence(r, buf)
			buf = append(buf, "\"\n"...)
		}
		n := min(int64(len(buf)), size)
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		size -= n
	}
	return nil
}

var written atomic.Int64

func create(path string, fill func(w io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 4*mib)
	cw := &countWriter{w: bw}
	err = fill(cw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	written.Add(cw.n)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func randomFile(path, stream string, size int64) func() error {
	return func() error {
		return create(path, func(w io.Writer) error {
			_, err := io.CopyN(w, randStream(stream), size)
			return err
		})
	}
}

// insertedFile writes the stream "ins" (same as ins/a) with n scattered
// 4 KiB random blocks inserted at deterministic sorted offsets.
func insertedFile(path string, size int64, n int) func() error {
	return func() error {
		r := newRNG("ins-offsets")
		offs := make([]int64, n)
		for i := range offs {
			offs[i] = int64(r.u64() % uint64(size))
		}
		sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
		return create(path, func(w io.Writer) error {
			base := randStream("ins")
			extra := randStream("ins-extra")
			var pos int64
			for _, off := range offs {
				if _, err := io.CopyN(w, base, off-pos); err != nil {
					return err
				}
				pos = off
				if _, err := io.CopyN(w, extra, insertionBytes); err != nil {
					return err
				}
			}
			_, err := io.CopyN(w, base, size-pos)
			return err
		})
	}
}

func smallFiles(out string, first, last int) func() error {
	return func() error {
		for i := first; i < last; i++ {
			leaf := i / smallPerDir
			dir := filepath.Join(out, fmt.Sprintf("d%03d", leaf/leafPerTop), fmt.Sprintf("e%02d", leaf%leafPerTop))
			name := fmt.Sprintf("f%05d", i)
			r := newRNG("small/" + name)
			// Log-uniform 1..64 KiB, not block aligned.
			size := int64(float64(kib)*math.Exp2(6*r.float())) + int64(r.intn(kib)) - 512
			size = max(kib, min(64*kib, size))
			var err error
			if r.intn(2) == 0 {
				err = create(filepath.Join(dir, name+".txt"), func(w io.Writer) error {
					return writeText(w, r, size)
				})
			} else {
				err = randomFile(filepath.Join(dir, name+".bin"), "small/"+name, size)()
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
}

// writeCode writes size bytes of source-code-like text: indented lines of
// identifiers and punctuation, which compresses about like real code.
func writeCode(w io.Writer, r *rng, size int64) error {
	buf := make([]byte, 0, 64*kib)
	keywords := []string{"func", "if", "for", "return", "var", "const", "else", "switch", "case", "defer", "go"}
	for size > 0 {
		buf = buf[:0]
		for len(buf) < 60*kib {
			depth := r.intn(4)
			for i := 0; i < depth; i++ {
				buf = append(buf, '\t')
			}
			buf = append(buf, r.pick(keywords)...)
			buf = append(buf, ' ')
			buf = append(buf, r.pick(vocabulary)...)
			buf = append(buf, '(')
			buf = append(buf, r.pick(vocabulary)...)
			buf = fmt.Appendf(buf, ", %d) {\n", r.intn(1000))
		}
		n := min(int64(len(buf)), size)
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		size -= n
	}
	return nil
}

// textFiles writes files/text files [first, last): log-uniform sizes of
// 0.2-40 KiB, every one text-like (prose, log lines or code).
func textFiles(out string, first, last int) func() error {
	return func() error {
		start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
		for i := first; i < last; i++ {
			leaf := i / smallPerDir
			dir := filepath.Join(out, fmt.Sprintf("d%03d", leaf/leafPerTop), fmt.Sprintf("e%02d", leaf%leafPerTop))
			name := fmt.Sprintf("f%05d", i)
			r := newRNG("files/" + name)
			size := int64(200 * math.Pow(40*kib/200.0, r.float()))
			var fill func(w io.Writer) error
			switch r.intn(3) {
			case 0:
				name += ".txt"
				fill = func(w io.Writer) error { return writeText(w, r, size) }
			case 1:
				name += ".log"
				fill = func(w io.Writer) error { return writeLog(w, r, size, start.Add(time.Duration(i)*time.Minute)) }
			default:
				name += ".go"
				fill = func(w io.Writer) error { return writeCode(w, r, size) }
			}
			if err := create(filepath.Join(dir, name), fill); err != nil {
				return err
			}
		}
		return nil
	}
}

func main() {
	out := flag.String("out", "", "output directory (required)")
	flag.StringVar(&seed, "seed", "1", "seed")
	flag.Float64Var(&scale, "scale", 1, "size multiplier")
	parts := flag.String("parts", "set,single,ins,files", "comma separated parts to generate: set, single, ins, files")
	jobsN := flag.Int("j", runtime.GOMAXPROCS(0), "parallel writers")
	flag.Parse()
	if *out == "" || scale <= 0 || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}

	var jobs []func() error
	for _, part := range strings.Split(*parts, ",") {
		switch part {
		case "set":
			large := scaled(512 * mib)
			for i := 0; i < 3; i++ {
				jobs = append(jobs, randomFile(filepath.Join(*out, "set/large", fmt.Sprintf("big-%d.bin", i)), fmt.Sprintf("large-%d", i), large))
			}
			nsmall := max(10, int(math.Round(20000*scale)))
			for i := 0; i < nsmall; i += smallPerDir {
				jobs = append(jobs, smallFiles(filepath.Join(*out, "set/small"), i, min(nsmall, i+smallPerDir)))
			}
			text := scaled(256 * mib)
			start := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
			for i := 0; text > 0; i++ {
				size := min(text, textFileMax)
				text -= size
				path := filepath.Join(*out, "set/text", fmt.Sprintf("log-%02d.log", i))
				r := newRNG(fmt.Sprintf("log-%d", i))
				st := start.Add(time.Duration(i) * 24 * time.Hour)
				jobs = append(jobs, func() error {
					return create(path, func(w io.Writer) error { return writeLog(w, r, size, st) })
				})
			}
		case "single":
			jobs = append(jobs, randomFile(filepath.Join(*out, "single/single.bin"), "single", scaled(2*gib)))
		case "ins":
			size := scaled(1 * gib)
			jobs = append(jobs, randomFile(filepath.Join(*out, "ins/a/file.bin"), "ins", size))
			n := max(1, int(math.Round(100*scale)))
			jobs = append(jobs, insertedFile(filepath.Join(*out, "ins/b/file.bin"), size, n))
		case "files":
			for i := 0; i < 3; i++ {
				jobs = append(jobs, randomFile(filepath.Join(*out, "files/media", fmt.Sprintf("img-%d.bin", i)), fmt.Sprintf("files-media-%d", i), scaled(96*mib)))
			}
			logSize := scaled(64 * mib)
			r := newRNG("files-log")
			jobs = append(jobs, func() error {
				return create(filepath.Join(*out, "files/var/app.log"), func(w io.Writer) error {
					return writeLog(w, r, logSize, time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC))
				})
			})
			ntext := max(10, int(math.Round(12000*scale)))
			for i := 0; i < ntext; i += smallPerDir {
				jobs = append(jobs, textFiles(filepath.Join(*out, "files/text"), i, min(ntext, i+smallPerDir)))
			}
		default:
			fmt.Fprintf(os.Stderr, "gen: unknown part %q\n", part)
			os.Exit(2)
		}
	}
	// Large files are queued first so they overlap with the many small jobs.
	start := time.Now()
	ch := make(chan func() error)
	var wg sync.WaitGroup
	var failed atomic.Bool
	for w := 0; w < max(1, *jobsN); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range ch {
				if err := job(); err != nil {
					fmt.Fprintln(os.Stderr, "gen:", err)
					failed.Store(true)
				}
			}
		}()
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
	if failed.Load() {
		os.Exit(1)
	}
	d := time.Since(start).Seconds()
	fmt.Printf("gen: wrote %d bytes in %.1fs (%.0f MB/s)\n", written.Load(), d, float64(written.Load())/d/1e6)
}
