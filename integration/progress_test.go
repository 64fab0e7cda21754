package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The progress tests read through a FUSE view of a real directory whose
// reads are held to a fixed rate, so a backup, restore or verify of a few
// MiB takes seconds, reads every byte through the kernel as it would from
// a slow disk, and shows several progress updates on any machine.

// slowRate is the throttle: bytes per second, for all readers together.
const slowRate = 8 << 20

// limiter spaces reads so that they add up to rate bytes a second.
type limiter struct {
	mu   sync.Mutex
	next time.Time
	rate float64
}

func (l *limiter) take(n int) {
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	l.next = l.next.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	until := l.next
	l.mu.Unlock()
	// The throttle itself, not a wait for an event: this is what makes
	// the source slow.
	time.Sleep(time.Until(until))
}

type slowNode struct {
	*fs.LoopbackNode
	lim *limiter
}

var _ = (fs.NodeOpener)((*slowNode)(nil))
var _ = (fs.NodeWrapChilder)((*slowNode)(nil))

// WrapChild makes every node below the root a throttled one too.
func (n *slowNode) WrapChild(_ context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &slowNode{LoopbackNode: ops.(*fs.LoopbackNode), lim: n.lim}
}

// Open hands out a throttled handle with direct I/O, so that no read is
// served from the page cache and every run reads at the throttled rate.
func (n *slowNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, _, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		return nil, 0, syscall.EIO
	}
	return &slowFile{lf, n.lim}, fuse.FOPEN_DIRECT_IO, 0
}

type slowFile struct {
	*fs.LoopbackFile
	lim *limiter
}

var _ = (fs.FileReader)((*slowFile)(nil))

func (f *slowFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.lim.take(len(dest))
	return f.LoopbackFile.Read(ctx, dest, off)
}

// slowMount shows dir at mnt (a new directory when "") with reads
// throttled to rate bytes a second; it is unmounted when the test ends.
func slowMount(t *testing.T, dir, mnt string, rate float64) string {
	t.Helper()
	requireFUSE(t)
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	lim := &limiter{rate: rate}
	root := &fs.LoopbackRoot{Path: dir, Dev: uint64(st.Dev)}
	root.RootNode = &slowNode{LoopbackNode: &fs.LoopbackNode{RootData: root}, lim: lim}
	if mnt == "" {
		mnt = t.TempDir()
	}
	srv, err := fs.Mount(mnt, root.RootNode, &fs.Options{MountOptions: fuse.MountOptions{FsName: "slow", Name: "slow"}})
	if err != nil {
		t.Fatalf("mount a throttled view of %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	return mnt
}

// progressSource writes a tree of size random bytes (one large file and a
// few small ones) and returns its path and its size in bytes.
func progressSource(t *testing.T, size int) (string, int64) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(filepath.Join(src, "docs"), 0o755))
	big := make([]byte, size)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(src, "big.img"), big, 0o644))
	total := int64(size)
	for i, s := range []string{"a", "bb", "ccc"} {
		data := []byte(strings.Repeat(s, 1000*(i+1)))
		must(t, os.WriteFile(filepath.Join(src, "docs", s+".txt"), data, 0o644))
		total += int64(len(data))
	}
	return src, total
}

// statusLine is what these tests read of a --json status line.
type statusLine struct {
	MessageType  string   `json:"message_type"`
	PercentDone  float64  `json:"percent_done"`
	TotalFiles   int64    `json:"total_files"`
	FilesDone    int64    `json:"files_done"`
	TotalBytes   int64    `json:"total_bytes"`
	BytesDone    int64    `json:"bytes_done"`
	TotalsFinal  bool     `json:"totals_final"`
	CurrentFiles []string `json:"current_files"`
}

// jsonLines splits --json output into its status lines and its one
// summary line (decoded into summary), failing on anything else.
func jsonLines(t *testing.T, out string, summary any) []statusLine {
	t.Helper()
	var status []statusLine
	summaries := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var s statusLine
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		switch s.MessageType {
		case "status":
			if summaries > 0 {
				t.Errorf("status line after the summary: %s", sc.Text())
			}
			status = append(status, s)
		case "summary":
			summaries++
			must(t, json.Unmarshal(sc.Bytes(), summary))
		default:
			t.Errorf("unexpected message_type %q: %s", s.MessageType, sc.Text())
		}
	}
	if summaries != 1 {
		t.Fatalf("%d summary lines, want 1:\n%s", summaries, out)
	}
	return status
}

// summaryLine returns the last line of --json output: the summary, after
// any status lines.
func summaryLine(t *testing.T, out string) []byte {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(last, `"message_type":"summary"`) {
		t.Fatalf("--json output does not end with a summary line:\n%s", out)
	}
	return []byte(last)
}

// growing fails unless the counts never go down and at least min of them
// are distinct values strictly between 0 and total: updates from the
// middle of the work.
func growing(t *testing.T, what string, counts []int64, total int64, min int) {
	t.Helper()
	distinct := map[int64]bool{}
	for i, c := range counts {
		if i > 0 && c < counts[i-1] {
			t.Errorf("%s: byte count went down: %v", what, counts)
			return
		}
		if c > 0 && c < total {
			distinct[c] = true
		}
	}
	if len(distinct) < min {
		t.Errorf("%s: %d distinct counts in the middle of the work, want at least %d: %v", what, len(distinct), min, counts)
	}
}

// barRE finds the byte counts of the terminal bar: "(3.5/16 MiB, ...)" or
// "(512 KiB/16 MiB, ...)".
var barRE = regexp.MustCompile(`\(([0-9.]+) ?([KMGT]iB|B)?/([0-9.]+) ?([KMGT]iB|B)`)

func parseSize(num, unit string) int64 {
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return -1
	}
	mult := map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[unit]
	return int64(f * mult)
}

// TestProgressTerminal runs a backup of a slow source in a pseudo-terminal:
// the bar is redrawn several times while the one large file is read, with
// growing byte counts, the file count and the current path.
func TestProgressTerminal(t *testing.T) {
	src, size := progressSource(t, 16<<20)
	mnt := slowMount(t, src, "", slowRate)
	e := newEnv(t)
	e.ok("init")

	cmd := e.command("backup", "--source", "slow", mnt)
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 160})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	out, err := io.ReadAll(ptmx)
	if err != nil && !errors.Is(err, syscall.EIO) { // EIO: the terminal's other side closed
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("backup in a terminal: %v\n%s", err, out)
	}

	var counts []int64
	sawPath, sawFiles := false, false
	for _, frame := range regexp.MustCompile(`[\r\n]`).Split(string(out), -1) {
		m := barRE.FindStringSubmatch(frame)
		if m == nil {
			continue
		}
		unit := m[2]
		if unit == "" {
			unit = m[4] // one unit for both: "3.5/16 MiB"
		}
		counts = append(counts, parseSize(m[1], unit))
		sawPath = sawPath || strings.Contains(frame, filepath.Join(mnt, "big.img"))
		sawFiles = sawFiles || regexp.MustCompile(`\d+/\d+ files`).MatchString(frame)
		if got := parseSize(m[3], m[4]); got < size-(1<<20) || got > size+(1<<20) {
			t.Errorf("bar total %s %s, want about %d bytes: %q", m[3], m[4], size, frame)
		}
	}
	growing(t, "terminal bar", counts, size, 4)
	if !sawPath || !sawFiles {
		t.Errorf("the bar never showed the current path (%v) or the file count (%v):\n%q", sawPath, sawFiles, out)
	}
	if !strings.Contains(string(out), "point ") {
		t.Errorf("no result line after the bar:\n%q", out)
	}
}

// TestProgressJSON: backup --json prints status lines with growing
// bytes_done and the final totals, then one summary line that still
// carries the point's fields; without a terminal and without --json the
// progress is a plain line every --progress-interval.
func TestProgressJSON(t *testing.T) {
	src, size := progressSource(t, 16<<20)
	mnt := slowMount(t, src, "", slowRate)
	e := newEnv(t)
	e.ok("init")

	var sum struct {
		ID                  string `json:"id"`
		SnapshotID          string `json:"snapshot_id"`
		Source              string `json:"source"`
		TotalBytesProcessed int64  `json:"total_bytes_processed"`
		Stats               struct {
			Files int64 `json:"files"`
			Bytes int64 `json:"bytes"`
		} `json:"stats"`
	}
	out := e.ok("--progress-interval", "200ms", "backup", "--json", "--source", "slow", mnt)
	status := jsonLines(t, out, &sum)
	var counts []int64
	for _, s := range status {
		counts = append(counts, s.BytesDone)
		if s.TotalsFinal && (s.TotalBytes != size || s.TotalFiles != 4) {
			t.Errorf("final totals %d files, %d bytes; want 4 files, %d bytes", s.TotalFiles, s.TotalBytes, size)
		}
		if s.BytesDone > 0 && s.BytesDone < size && len(s.CurrentFiles) == 0 {
			t.Errorf("status in the middle names no current file: %+v", s)
		}
	}
	growing(t, "backup --json", counts, size, 3)
	if len(status) == 0 || !status[len(status)-1].TotalsFinal {
		t.Errorf("the scan never finished its totals: %+v", status)
	}
	if sum.ID == "" || sum.SnapshotID != sum.ID || sum.Source != "slow" || sum.Stats.Bytes != size || sum.TotalBytesProcessed != size || sum.Stats.Files != 4 {
		t.Errorf("summary %+v: want the point of source slow, %d bytes in 4 files", sum, size)
	}

	// Plain lines on a pipe; -q silences them and the result.
	r := e.run("--progress-interval", "200ms", "backup", "--source", "plain", mnt)
	if r.code != 0 {
		t.Fatalf("backup: exit %d\n%s", r.code, r.stderr)
	}
	var pct []int64
	for _, l := range strings.Split(r.stderr, "\n") {
		if m := regexp.MustCompile(`^recall: backup \S+: ([0-9.]+)%, `).FindStringSubmatch(l); m != nil {
			f, _ := strconv.ParseFloat(m[1], 64)
			pct = append(pct, int64(f*10))
		}
	}
	growing(t, "plain progress lines (per mille)", pct, 1000, 3)
	if !strings.Contains(r.stdout, "point ") {
		t.Errorf("no result line: %q", r.stdout)
	}
	r = e.run("-q", "--progress-interval", "200ms", "backup", "--source", "quiet", mnt)
	if r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Errorf("backup -q: exit %d, printed %q and %q; want nothing", r.code, r.stdout, r.stderr)
	}
}

// TestProgressRestoreVerify: restore and verify --read-data, reading the
// packs through the throttled view, print status lines with growing
// counts and one summary line; -v lists every file restored.
func TestProgressRestoreVerify(t *testing.T) {
	src, size := progressSource(t, 16<<20)
	e := newEnv(t)
	e.ok("init")
	e.ok("backup", "--source", "data", src)

	// The packs move out of the store and come back throttled.
	packs := filepath.Join(e.home, "store", "packs")
	real := filepath.Join(t.TempDir(), "packs")
	must(t, os.Rename(packs, real))
	must(t, os.Mkdir(packs, 0o700))
	slowMount(t, real, packs, slowRate)

	var rsum struct {
		FilesRestored int64 `json:"files_restored"`
		BytesRestored int64 `json:"bytes_restored"`
	}
	out := e.ok("--progress-interval", "200ms", "restore", "--json", "--source", "data", "latest", "--target", filepath.Join(t.TempDir(), "r"))
	status := jsonLines(t, out, &rsum)
	var counts []int64
	for _, s := range status {
		counts = append(counts, s.BytesDone)
		if !s.TotalsFinal || s.TotalBytes != size || s.TotalFiles != 4 {
			t.Errorf("restore status %+v: want the final totals, 4 files of %d bytes", s, size)
		}
	}
	growing(t, "restore --json", counts, size, 3)
	if rsum.FilesRestored != 4 || rsum.BytesRestored != size {
		t.Errorf("restore summary %+v, want 4 files, %d bytes", rsum, size)
	}

	var vsum struct {
		Points    int `json:"points"`
		PacksRead int `json:"packs_read"`
	}
	out = e.ok("--progress-interval", "200ms", "verify", "--read-data", "--json")
	status = jsonLines(t, out, &vsum)
	if len(status) < 3 {
		t.Errorf("verify --read-data --json: %d status lines, want several:\n%s", len(status), out)
	}
	// Lines printed while verify lists the packs, before it reads any,
	// have no totals yet; from the first with totals on they are final.
	for len(status) > 0 && !status[0].TotalsFinal && status[0].TotalFiles == 0 && status[0].BytesDone == 0 {
		status = status[1:]
	}
	if len(status) == 0 {
		t.Errorf("verify --read-data --json: no status line with totals:\n%s", out)
	}
	for i, s := range status {
		// The random file does not compress: the packs hold at least it.
		if !s.TotalsFinal || int(s.TotalFiles) != vsum.PacksRead || s.TotalBytes < 16<<20 {
			t.Errorf("verify status %+v: want the final totals of %d packs, at least %d bytes", s, vsum.PacksRead, 16<<20)
		}
		if i > 0 && s.BytesDone < status[i-1].BytesDone {
			t.Errorf("verify bytes_done went down: %+v then %+v", status[i-1], s)
		}
	}
	if vsum.Points != 1 || vsum.PacksRead < 2 {
		t.Errorf("verify summary %+v: want 1 point, its data and tree packs read", vsum)
	}

	// -v lists every file as it is restored.
	out = e.ok("-v", "restore", "--source", "data", "latest", "--target", filepath.Join(t.TempDir(), "v"))
	for _, f := range []string{"big.img", "docs/a.txt", "docs/bb.txt", "docs/ccc.txt"} {
		if !strings.Contains(out, "restored "+f+"\n") {
			t.Errorf("restore -v does not list %s:\n%s", f, out)
		}
	}
}

// backup -v says of each file whether it is new or modified, as restic
// does, and leaves out unchanged ones; with --json each file is a
// verbose_status line whose action is new, modified or unchanged. (Fix:
// every file, the unchanged ones too, was "saved": 2,003 lines for a
// backup that picked up one new file.)
func TestBackupVerboseNewModifiedUnchanged(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(src, 0o755))
	for _, f := range []string{"a", "b", "c"} {
		must(t, os.WriteFile(filepath.Join(src, f), []byte("first "+f), 0o644))
	}
	out := e.ok("-v", "backup", "--source", "s", src)
	for _, f := range []string{"a", "b", "c"} {
		if !strings.Contains(out, "new      "+filepath.Join(src, f)+"\n") {
			t.Errorf("first backup -v does not list %s as new:\n%s", f, out)
		}
	}
	must(t, os.WriteFile(filepath.Join(src, "a"), []byte("second a, longer"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "d"), []byte("new d"), 0o644))
	out = e.ok("-v", "backup", "--source", "s", src)
	if !strings.Contains(out, "modified "+filepath.Join(src, "a")+"\n") || !strings.Contains(out, "new      "+filepath.Join(src, "d")+"\n") ||
		strings.Contains(out, filepath.Join(src, "b")+"\n") {
		t.Errorf("second backup -v: want a modified, d new, b and c not listed:\n%s", out)
	}
	must(t, os.WriteFile(filepath.Join(src, "b"), []byte("second b, longer"), 0o644))
	actions := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(e.ok("-v", "backup", "--json", "--source", "s", src)), "\n") {
		var v struct {
			MessageType string `json:"message_type"`
			Action      string
			Item        string
		}
		must(t, json.Unmarshal([]byte(l), &v))
		if v.MessageType == "verbose_status" {
			actions[filepath.Base(v.Item)] = v.Action
		}
	}
	if want := map[string]string{"a": "unchanged", "b": "modified", "c": "unchanged", "d": "unchanged"}; !maps.Equal(actions, want) {
		t.Errorf("backup -v --json actions %v, want %v", actions, want)
	}
}
