package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/recall-backup/recall/engine"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// How a long command (backup, restore, verify --read-data) reports while
// it runs, chosen from the global flags and where stderr goes:
//
//   - -q: nothing; with --json the summary line still ends stdout;
//   - --json: a status line (statusJSON) on stdout every
//     --progress-interval, then one summary line;
//   - stderr a terminal: a bar redrawn barRefresh apart (bytes done of the
//     total, files, rate, ETA, the current path);
//   - otherwise one plain line on stderr every --progress-interval.
//
// -v adds one line per file saved, restored or (verify) pack read, on
// stdout: the path, or with --json a verbose_status line.
//
// The engine only counts (engine.Progress); this file polls the counts, so
// a slow terminal never slows a backup.

// barRefresh is how often the terminal bar is redrawn.
const barRefresh = 200 * time.Millisecond

// reporter shows one command's progress.
type reporter struct {
	cmd      string // backup, restore, verify
	action   string // what -v says of a file: saved, restored, read
	prog     *engine.Progress
	out      io.Writer // stdout: JSON lines and -v
	json     bool
	quiet    bool
	tty      bool
	interval time.Duration
	start    time.Time

	mu   sync.Mutex // one writer at a time on the terminal and stdout
	bar  *progressbar.ProgressBar
	stop chan struct{}
	done chan struct{}
}

// newReporter prepares the progress of command cmd; show is false when
// the command has nothing to count (verify without --read-data).
func newReporter(c *cli.Context, cmd, action string, jsonOut, show bool) (*reporter, error) {
	r := &reporter{
		cmd: cmd, action: action, prog: &engine.Progress{}, out: c.App.Writer,
		json: jsonOut, quiet: c.Bool("quiet"), interval: c.Duration("progress-interval"),
		tty: term.IsTerminal(int(os.Stderr.Fd())), start: time.Now(),
	}
	if r.quiet && c.Bool("verbose") {
		return nil, usagef("-q and -v contradict each other: choose one")
	}
	if r.interval <= 0 {
		return nil, usagef("--progress-interval %s: give a positive duration, like 10s or 500ms", r.interval)
	}
	if c.Bool("verbose") {
		r.prog.Item = r.item
		if cmd == "backup" {
			r.prog.Saved = r.saved
		}
	}
	if show && !r.quiet {
		if r.tty && !r.json {
			// Drawn at once: the bar's clock, and so its rate, starts
			// with the command.
			r.drawBar(r.prog.Status())
		}
		r.stop, r.done = make(chan struct{}), make(chan struct{})
		go r.run()
	}
	return r, nil
}

// Progress is what the engine counts into; nil with -q, which so spares
// a backup its scan for totals.
func (r *reporter) Progress() *engine.Progress {
	if r.quiet {
		return nil
	}
	return r.prog
}

// text says whether the command prints its human-readable result.
func (r *reporter) text() bool { return !r.quiet && !r.json }

// run shows the progress until Stop.
func (r *reporter) run() {
	defer close(r.done)
	every := r.interval
	if r.tty && !r.json {
		every = barRefresh
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
			r.show(r.prog.Status())
		}
	}
}

// Stop ends the display and clears the bar; the result may follow.
func (r *reporter) Stop() {
	if r.stop == nil {
		return
	}
	close(r.stop)
	<-r.done
	r.stop = nil
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bar != nil {
		r.bar.Clear()
		r.bar.Exit()
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
}

func (r *reporter) show(s engine.Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.json:
		r.line(r.status(s))
	case r.tty:
		r.drawBar(s)
	default:
		fmt.Fprintf(os.Stderr, "recall: %s %s\n", r.cmd, r.plain(s))
	}
}

// item is engine.Progress.Item for -v.
func (r *reporter) item(path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		r.line(verboseJSON{MessageType: "verbose_status", Action: r.action, Item: path, ItemRaw: rawName(path)})
		return
	}
	if r.bar != nil {
		r.bar.Clear()
	}
	fmt.Fprintf(r.out, "%s %s\n", r.action, oneLine(path))
}

// saved is engine.Progress.Saved for backup -v: each file new or
// modified, as restic's -v names them ("unchanged" ones too in JSON;
// a skipped one has its warning).
func (r *reporter) saved(path, how string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		if how != "skipped" {
			r.line(verboseJSON{MessageType: "verbose_status", Action: how, Item: path, ItemRaw: rawName(path)})
		}
		return
	}
	if how == "skipped" || how == "unchanged" {
		return
	}
	if r.bar != nil {
		r.bar.Clear()
	}
	fmt.Fprintf(r.out, "%-8s %s\n", how, oneLine(path))
}

// line writes v as one JSON line on stdout; r.mu is held.
func (r *reporter) line(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own types always marshal
	}
	r.out.Write(append(b, '\n'))
}

// Summary ends the output with the one summary line of --json: v's fields
// and "message_type":"summary".
func (r *reporter) Summary(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(b) > 2 {
		b = append([]byte(`{"message_type":"summary",`), b[1:]...)
	} else {
		b = []byte(`{"message_type":"summary"}`)
	}
	r.out.Write(append(b, '\n'))
}

// statusJSON is the --json status line, documented in the README; the
// names are restic's.
type statusJSON struct {
	MessageType      string   `json:"message_type"` // "status"
	SecondsElapsed   float64  `json:"seconds_elapsed"`
	SecondsRemaining *float64 `json:"seconds_remaining,omitempty"`
	PercentDone      float64  `json:"percent_done"`
	TotalFiles       int64    `json:"total_files"`
	FilesDone        int64    `json:"files_done"`
	TotalBytes       int64    `json:"total_bytes"`
	BytesDone        int64    `json:"bytes_done"`
	TotalsFinal      bool     `json:"totals_final"`
	ErrorCount       int64    `json:"error_count"`
	CurrentFiles     []string `json:"current_files"`
	CurrentFilesRaw  []string `json:"current_files_raw,omitempty"` // rawNames
}

type verboseJSON struct {
	MessageType string `json:"message_type"` // "verbose_status"
	Action      string `json:"action"`
	Item        string `json:"item"`
	ItemRaw     string `json:"item_raw,omitempty"` // rawName
}

func (r *reporter) status(s engine.Status) statusJSON {
	el := time.Since(r.start)
	j := statusJSON{MessageType: "status", SecondsElapsed: round3(el.Seconds()),
		TotalFiles: s.FilesTotal, FilesDone: s.FilesDone, TotalBytes: s.BytesTotal, BytesDone: s.BytesDone,
		TotalsFinal: s.TotalsFinal, ErrorCount: s.Errors, CurrentFiles: s.Current, CurrentFilesRaw: rawNames(s.Current)}
	if j.CurrentFiles == nil {
		j.CurrentFiles = []string{}
	}
	j.PercentDone = round3(fraction(s))
	if eta, ok := remaining(s, el); ok {
		sec := round3(eta.Seconds())
		j.SecondsRemaining = &sec
	}
	return j
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// fraction is how much of the work is done, 0 to 1: by bytes, or by
// files when there are no bytes to count.
func fraction(s engine.Status) float64 {
	var f float64
	switch {
	case s.BytesTotal > 0:
		f = float64(s.BytesDone) / float64(s.BytesTotal)
	case s.FilesTotal > 0:
		f = float64(s.FilesDone) / float64(s.FilesTotal)
	}
	return min(max(f, 0), 1)
}

// remaining estimates the time left from the rate so far; only once the
// totals are final and something was done: a hundredth of the work, or
// anything after 5 s. verify counts a pack's bytes when it is read whole,
// and the first one done may be a small tree pack: from it a second's
// verify was said to have three hours left.
func remaining(s engine.Status, el time.Duration) (time.Duration, bool) {
	f := fraction(s)
	if !s.TotalsFinal || f <= 0 || (f < 0.01 && el < 5*time.Second) {
		return 0, false
	}
	return time.Duration(float64(el) * (1 - f) / f), true
}

// unit is what the command counts: verify --read-data reads packs.
func (r *reporter) unit() string {
	if r.cmd == "verify" {
		return "packs"
	}
	return "files"
}

// plain is the progress as one line of text.
func (r *reporter) plain(s engine.Status) string {
	el := time.Since(r.start)
	of := "of"
	if !s.TotalsFinal {
		of = "of at least"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %.1f%%, %s %s %s, %d %s %d %s, %s/s", el.Round(time.Second), 100*fraction(s),
		human(s.BytesDone), of, human(s.BytesTotal), s.FilesDone, of, s.FilesTotal, r.unit(), human(int64(float64(s.BytesDone)/max(el.Seconds(), 1e-3))))
	if eta, ok := remaining(s, el); ok {
		fmt.Fprintf(&b, ", %s left", eta.Round(time.Second))
	}
	if s.Errors > 0 {
		fmt.Fprintf(&b, ", %d errors", s.Errors)
	}
	if len(s.Current) > 0 {
		fmt.Fprintf(&b, "; %s", oneLine(s.Current[0]))
	}
	return b.String()
}

// barFixed is about how many columns the bar and its figures take
// before barDesc's text: percent, a bar of barWidth, bytes done of the
// total and the rate, the elapsed time.
const (
	barWidth = 12
	barFixed = 58
)

// barDesc is the text after the terminal bar, on a terminal width
// columns wide: the time left (eta, when known), files (or devices) done
// of the total, errors, the current path.
func barDesc(s engine.Status, unit string, width int, eta string) string {
	of := "/"
	if !s.TotalsFinal {
		of = "/>="
	}
	desc := fmt.Sprintf("%d%s%d %s", s.FilesDone, of, s.FilesTotal, unit)
	if eta != "" {
		desc = eta + " left, " + desc
	}
	if s.Errors > 0 {
		desc += fmt.Sprintf(", %d errors", s.Errors)
	}
	if len(s.Current) > 0 {
		// The path gets the rest of the line, cut at its start, so the
		// line never wraps (a wrapped line is not redrawn in place).
		room := width - barFixed - len(desc)
		// Escaped as every message naming a file is (oneLine): a name
		// can hold a terminal's escape sequences.
		if p := oneLine(s.Current[0]); room >= 10 {
			if len(p) > room {
				cut := len(p) - room + 3
				for cut < len(p) && !utf8.RuneStart(p[cut]) {
					cut++ // not inside a character
				}
				p = "..." + p[cut:]
			}
			desc += " " + p
		}
	}
	return desc
}

// drawBar redraws the terminal bar; r.mu is held.
func (r *reporter) drawBar(s engine.Status) {
	if r.bar == nil && s.BytesTotal == 0 && s.FilesTotal == 0 && s.BytesDone == 0 && len(s.Current) == 0 {
		return // nothing known yet: no bar of 0 of 1 B
	}
	// One byte more than done at least: the library stops drawing a bar
	// that reached its maximum, and a backup's total may still grow.
	total := max(s.BytesTotal, s.BytesDone) + 1
	if r.bar == nil {
		r.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionShowBytes(true),
			progressbar.OptionUseIECUnits(true),
			progressbar.OptionShowCount(),
			// The time left is remaining's, in the description: the
			// library's own is from its first update on, however small.
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetWidth(barWidth),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionSetDescription(""),
		)
	}
	if r.bar.GetMax64() != total {
		r.bar.ChangeMax64(total)
	}
	width := 80
	if w, _, err := term.GetSize(int(os.Stderr.Fd())); err == nil && w > 0 {
		width = w
	}
	eta := ""
	if d, ok := remaining(s, time.Since(r.start)); ok {
		eta = d.Round(time.Second).String()
	}
	desc := barDesc(s, r.unit(), width, eta)
	r.bar.Describe(desc)
	r.bar.Set64(s.BytesDone)
}
