package engine

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/dustin/go-humanize"
	"github.com/recall-backup/recall/chunkstore"
)

// A protection group's policy, DPM's model: every sync makes a recovery
// point (deduplication makes them cheap); the points made at the scheduled
// recovery point times (At, on Days) are kept for the whole retention
// range, the others for the sync window. Beyond the range the keep-* rules
// thin what is left, restic/PBS style. The policy also says what a backup
// of a member reads (Exclude, OneFileSystem, Compression), which scripts
// run around it, whether the members appear in mounts and shares, and the
// long-term (tape) goals, which the tape issue carries out.
//
// A Policy holds the values as a person writes them ("14d", "15m",
// "09:00"): that is what 'group show', --json and groups.toml show, so a
// value read back is a value that can be given again. Check validates and
// compile turns them into numbers.
//
// Spans: time.ParseDuration reads the short ones (15m, 2h30m, 120s); it
// has no unit longer than an hour, so spans of days and more are parsed
// here: <n>d (days), <n>w (weeks of 7 days), <n>mo (months of 30 days)
// and <n>y (years of 365 days).

// ErrBadPolicy marks a policy value that cannot be used; the message names
// the allowed values. The command line reports it as a usage error.
var ErrBadPolicy = errors.New("invalid policy")

// Policy is a protection group's policy. The zero value of a field means
// its default (see Defaults).
type Policy struct {
	Retention  string   `json:"retention" toml:"retention"`     // retention range: 1d to 10y
	Sync       string   `json:"sync" toml:"sync"`               // 15m to 24h, or "before-point"
	At         []string `json:"at" toml:"at"`                   // recovery point times, HH:MM, server local time
	Days       []string `json:"days" toml:"days"`               // mon..sun
	SyncWindow string   `json:"sync_window" toml:"sync_window"` // how long points between scheduled ones are kept

	KeepDaily   int `json:"keep_daily,omitempty" toml:"keep_daily"`
	KeepWeekly  int `json:"keep_weekly,omitempty" toml:"keep_weekly"`
	KeepMonthly int `json:"keep_monthly,omitempty" toml:"keep_monthly"`
	KeepYearly  int `json:"keep_yearly,omitempty" toml:"keep_yearly"`

	Exclude []string `json:"exclude,omitempty" toml:"exclude"`
	// The other exclusions of backup, as its flags: --exclude-caches,
	// --exclude-if-present NAME, --exclude-larger-than SIZE, and
	// --exclude-file FILE, whose patterns are read at each backup.
	ExcludeCaches     bool     `json:"exclude_caches,omitempty" toml:"exclude_caches"`
	ExcludeIfPresent  []string `json:"exclude_if_present,omitempty" toml:"exclude_if_present"`
	ExcludeLargerThan string   `json:"exclude_larger_than,omitempty" toml:"exclude_larger_than"`
	ExcludeFile       []string `json:"exclude_file,omitempty" toml:"exclude_file"`
	OneFileSystem     bool     `json:"one_file_system,omitempty" toml:"one_file_system"`
	Compression       string   `json:"compression,omitempty" toml:"compression"` // "" is the store's default

	PreScript     string `json:"pre_script,omitempty" toml:"pre_script"`
	PostScript    string `json:"post_script,omitempty" toml:"post_script"`
	ScriptTimeout string `json:"script_timeout" toml:"script_timeout"`

	EndUserRecovery string `json:"end_user_recovery" toml:"end_user_recovery"` // on or off

	TapeRetention string `json:"tape_retention,omitempty" toml:"tape_retention"`
	TapeFrequency string `json:"tape_frequency,omitempty" toml:"tape_frequency"`
	TapePool      string `json:"tape_pool,omitempty" toml:"tape_pool"`

	// Consistency checks (policy_check.go).
	CheckSchedule  string `json:"check" toml:"check"`                       // off, daily, weekly or on-failure
	CheckReadShare string `json:"check_read_share" toml:"check_read_share"` // packs read per check: 1% to 100%
	// Limit caps the bytes a second the group's backups read, inside
	// LimitWindow ("": always); see policy_limit.go.
	Limit       string `json:"limit,omitempty" toml:"limit"`
	LimitWindow string `json:"limit_window,omitempty" toml:"limit_window"`
}

// Policy defaults: DPM's (5 days of retention, a sync every 15 minutes, one
// recovery point a day at 20:00, 120 s for a script) and the 48 h
// sync window.
const (
	DefaultRetention     = "5d"
	DefaultSync          = "15m"
	DefaultAt            = "20:00"
	DefaultSyncWindow    = "48h"
	DefaultScriptTimeout = "120s"
	SyncBeforePoint      = "before-point"
)

// Allowed values, as the messages name them.
const (
	allowedRetention  = "1d to 10y, like 14d, 6w, 3mo or 7y (d: days, w: weeks, mo: 30 days, y: 365 days)"
	allowedSync       = "15m to 24h (like 15m, 1h, 2h30m) or before-point"
	allowedAt         = "times of day HH:MM (00:00 to 23:59), like 09:00,12:00,18:00"
	allowedDays       = "mon, tue, wed, thu, fri, sat, sun (or daily)"
	allowedWindow     = "1h to 10y, like 48h or 3d"
	allowedTimeout    = "1s to 24h, like 120s or 10m"
	allowedEUR        = "on or off"
	allowedCompress   = "zstd, s2 or off"
	allowedKeep       = "a count of 0 or more"
	allowedTapeSpans  = "1w to 4w, 1mo to 11mo, or 1y to 99y"
	allowedPoolName   = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
	maxRetentionYears = 10
)

var weekdays = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// Tape frequencies by the unit of the tape retention: DPM's table.
var (
	tapeFreqYears  = []string{"daily", "weekly", "bi-weekly", "monthly", "quarterly", "half-yearly", "yearly"}
	tapeFreqMonths = []string{"daily", "weekly", "bi-weekly", "monthly"}
	tapeFreqWeeks  = []string{"daily", "weekly"}
)

// Defaults returns p with every unset field at its default and the lists
// in a canonical order (times sorted, days Monday first), so that two
// policies that mean the same compare equal.
func (p Policy) Defaults() Policy {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&p.Retention, DefaultRetention)
	def(&p.Sync, DefaultSync)
	def(&p.SyncWindow, DefaultSyncWindow)
	def(&p.ScriptTimeout, DefaultScriptTimeout)
	def(&p.EndUserRecovery, "on")
	if len(p.At) == 0 {
		p.At = []string{DefaultAt}
	}
	if len(p.Days) == 0 {
		p.Days = []string{"daily"}
	}
	p.At = slices.Clone(p.At)
	for i, a := range p.At {
		if m, err := parseClock(a); err == nil {
			p.At[i] = fmt.Sprintf("%02d:%02d", m/60, m%60)
		}
	}
	slices.Sort(p.At)
	p.At = slices.Compact(p.At)
	var days []string
	all := false
	for _, d := range p.Days {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "daily" {
			all = true
		}
		days = append(days, d)
	}
	if all {
		days = []string{"daily"}
	} else {
		slices.SortFunc(days, func(a, b string) int { return dayOrder(a) - dayOrder(b) })
		days = slices.Compact(days)
		if len(days) == 7 && dayOrder(days[0]) == 0 && dayOrder(days[6]) == 6 {
			days = []string{"daily"}
		}
	}
	p.Days = days
	p.checkDefaults()
	return p
}

// dayOrder puts Monday first; unknown names last (Check refuses them).
func dayOrder(d string) int {
	i := slices.Index(weekdays, d)
	if i < 0 {
		return 99
	}
	return (i + 6) % 7
}

// rules is a checked policy in numbers.
type rules struct {
	retention   time.Duration
	sync        time.Duration // 0: before-point
	at          []int         // minutes after midnight, sorted
	days        [7]bool       // by time.Weekday
	window      time.Duration
	keep        [4]int // daily, weekly, monthly, yearly
	timeout     time.Duration
	compression chunkstore.Compression
}

// Check reports the first value of p (after Defaults) that cannot be used,
// naming the flag and the allowed values; the error wraps ErrBadPolicy.
func (p Policy) Check() error {
	_, err := p.Defaults().compile()
	return err
}

func bad(flag, value, allowed string) error {
	return fmt.Errorf("%w: --%s %q: allowed: %s", ErrBadPolicy, flag, value, allowed)
}

// compile checks p, which Defaults has filled, and returns it in numbers.
func (p Policy) compile() (*rules, error) {
	r := &rules{}
	var err error
	if r.retention, err = parseSpan(p.Retention); err != nil || r.retention < 24*time.Hour || r.retention > maxRetentionYears*year {
		return nil, bad("retention", p.Retention, allowedRetention)
	}
	if p.Sync != SyncBeforePoint {
		if r.sync, err = parseSpan(p.Sync); err != nil || r.sync < 15*time.Minute || r.sync > 24*time.Hour {
			return nil, bad("sync", p.Sync, allowedSync)
		}
	}
	for _, a := range p.At {
		m, err := parseClock(a)
		if err != nil {
			return nil, bad("at", a, allowedAt)
		}
		r.at = append(r.at, m)
	}
	slices.Sort(r.at)
	r.at = slices.Compact(r.at)
	for _, d := range p.Days {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "daily" {
			r.days = [7]bool{true, true, true, true, true, true, true}
			continue
		}
		i := slices.Index(weekdays, d)
		if i < 0 {
			return nil, bad("days", d, allowedDays)
		}
		r.days[i] = true
	}
	if r.window, err = parseSpan(p.SyncWindow); err != nil || r.window < time.Hour || r.window > maxRetentionYears*year {
		return nil, bad("sync-window", p.SyncWindow, allowedWindow)
	}
	for i, k := range []struct {
		flag string
		n    int
	}{{"keep-daily", p.KeepDaily}, {"keep-weekly", p.KeepWeekly}, {"keep-monthly", p.KeepMonthly}, {"keep-yearly", p.KeepYearly}} {
		if k.n < 0 {
			return nil, bad(k.flag, strconv.Itoa(k.n), allowedKeep)
		}
		r.keep[i] = k.n
	}
	if err := (&Exclude{Patterns: p.Exclude}).Check(); err != nil {
		return nil, fmt.Errorf("%w: --exclude: %v", ErrBadPolicy, err)
	}
	if p.ExcludeLargerThan != "" {
		if _, err := parseExcludeSize(p.ExcludeLargerThan); err != nil {
			return nil, bad("exclude-larger-than", p.ExcludeLargerThan, ExcludeSizeHint(err))
		}
	}
	for _, f := range p.ExcludeFile {
		if !filepath.IsAbs(f) {
			return nil, bad("exclude-file", f, "an absolute path (read at each backup)")
		}
	}
	for _, n := range p.ExcludeIfPresent {
		if n == "" || strings.Contains(n, "/") {
			return nil, bad("exclude-if-present", n, "a file name, without '/'")
		}
	}
	if p.Compression != "" {
		c, err := chunkstore.ParseCompression(p.Compression)
		if err != nil {
			return nil, bad("compression", p.Compression, allowedCompress)
		}
		r.compression = c
	}
	if r.timeout, err = parseSpan(p.ScriptTimeout); err != nil || r.timeout < time.Second || r.timeout > 24*time.Hour {
		return nil, bad("script-timeout", p.ScriptTimeout, allowedTimeout)
	}
	if p.EndUserRecovery != "on" && p.EndUserRecovery != "off" {
		return nil, bad("end-user-recovery", p.EndUserRecovery, allowedEUR)
	}
	if err := p.checkTape(); err != nil {
		return nil, err
	}
	if err := p.checkCheck(); err != nil {
		return nil, err
	}
	if err := p.checkLimit(); err != nil {
		return nil, err
	}
	return r, nil
}

// checkTape checks the long-term goals against DPM's table: the unit of
// the tape retention decides which backup frequencies are allowed.
func (p Policy) checkTape() error {
	if p.TapeRetention == "" && p.TapeFrequency == "" && p.TapePool == "" {
		return nil
	}
	if p.TapeRetention == "" {
		return fmt.Errorf("%w: --tape-frequency and --tape-pool need --tape-retention (allowed: %s)", ErrBadPolicy, allowedTapeSpans)
	}
	n, unit, err := splitSpan(p.TapeRetention)
	var allowed []string
	switch {
	case err != nil:
	case unit == "w" && n >= 1 && n <= 4:
		allowed = tapeFreqWeeks
	case unit == "mo" && n >= 1 && n <= 11:
		allowed = tapeFreqMonths
	case unit == "y" && n >= 1 && n <= 99:
		allowed = tapeFreqYears
	}
	if allowed == nil {
		return bad("tape-retention", p.TapeRetention, allowedTapeSpans)
	}
	if !slices.Contains(allowed, p.TapeFrequency) {
		return bad("tape-frequency", p.TapeFrequency, fmt.Sprintf("with --tape-retention %s: %s", p.TapeRetention, strings.Join(allowed, ", ")))
	}
	if p.TapePool != "" {
		if err := checkName(p.TapePool); err != nil {
			return bad("tape-pool", p.TapePool, allowedPoolName)
		}
	}
	return nil
}

// checkName accepts group and pool names: 1 to 64 bytes of letters,
// digits, '.', '_' and '-', starting with a letter or digit, so a name
// is safe in a path, a share name and a shell line.
func checkName(name string) error {
	if name == "" || len(name) > 64 {
		return errors.New("length")
	}
	for i, r := range name {
		ok := r < 0x80 && (unicode.IsLetter(r) || unicode.IsDigit(r) || (i > 0 && strings.ContainsRune("._-", r)))
		if !ok {
			return fmt.Errorf("character %q", r)
		}
	}
	return nil
}

const (
	day  = 24 * time.Hour
	year = 365 * day
)

// splitSpan reads "<n><unit>" for the units of days and longer.
func splitSpan(s string) (int, string, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if i <= 0 {
		return 0, "", fmt.Errorf("span %q: no number", s)
	}
	n, err := strconv.Atoi(s[:i])
	if err != nil {
		return 0, "", err
	}
	switch unit := s[i:]; unit {
	case "d", "w", "mo", "y":
		return n, unit, nil
	}
	return 0, "", fmt.Errorf("span %q: unknown unit", s)
}

// parseSpan reads a span: "<n>d", "<n>w", "<n>mo", "<n>y", or anything
// time.ParseDuration reads.
// A span is at most maxSpan, whatever its unit: a guard against a count
// of months or years that would overflow a time.Duration; callers apply
// their own, smaller limits (retention: 10 years).
func parseSpan(s string) (time.Duration, error) {
	if n, unit, err := splitSpan(s); err == nil {
		if n == 0 {
			return 0, fmt.Errorf("span %q: not a span", s) // as "0h" is not
		}
		u := map[string]time.Duration{"d": day, "w": 7 * day, "mo": 30 * day, "y": year}[unit]
		if n > int(maxSpan/u) {
			return 0, fmt.Errorf("span %q: too long (at most 36600 days)", s)
		}
		return time.Duration(n) * u, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("span %q: not a span", s)
	}
	if d > maxSpan {
		return 0, fmt.Errorf("span %q: too long (at most 36600 days)", s)
	}
	return d, nil
}

// maxSpan is the longest span parseSpan accepts: 36,600 days, a century.
const maxSpan = 100 * 366 * day

// parseClock reads HH:MM as minutes after midnight.
func parseClock(s string) (int, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || len(h) == 0 || len(h) > 2 || hh < 0 || hh > 23 || mm < 0 || mm > 59 {
		return 0, fmt.Errorf("time %q: not HH:MM", s)
	}
	return hh*60 + mm, nil
}

// ScheduledSlot returns the recovery point time a backup started at now
// is made for, if any: the latest scheduled time T (an At time on one of
// Days, in now's location) with T <= now < T + tolerance, where the
// tolerance is the sync frequency (15 minutes for before-point): a sync
// that runs at or just after a recovery point time makes that recovery
// point. The policy must be valid (Check).
func (p Policy) ScheduledSlot(now time.Time) (time.Time, bool) {
	r, err := p.Defaults().compile()
	if err != nil {
		return time.Time{}, false
	}
	return r.slot(now)
}

func (r *rules) slot(now time.Time) (time.Time, bool) {
	tol := r.sync
	if tol == 0 {
		tol = 15 * time.Minute
	}
	// A slot on the day before can still be within the tolerance (a
	// 23:50 point and a 24h sync).
	for back := 0; back <= 1; back++ {
		y, mo, d := now.AddDate(0, 0, -back).Date()
		midnight := time.Date(y, mo, d, 0, 0, 0, 0, now.Location())
		if !r.days[midnight.Weekday()] {
			continue
		}
		for i := len(r.at) - 1; i >= 0; i-- {
			t := time.Date(y, mo, d, r.at[i]/60, r.at[i]%60, 0, 0, now.Location())
			if !t.After(now) && now.Sub(t) < tol {
				return t, true
			}
		}
	}
	return time.Time{}, false
}

// BackupExclude is what a backup of a member leaves out under p. Its
// exclude files are read now, as backup --exclude-file reads them; one
// that cannot be read fails the backup, naming it.
func (p Policy) BackupExclude() (Exclude, error) {
	x := Exclude{Patterns: slices.Clone(p.Exclude), OneFileSystem: p.OneFileSystem,
		Caches: p.ExcludeCaches, IfPresent: slices.Clone(p.ExcludeIfPresent)}
	if p.ExcludeLargerThan != "" {
		n, err := parseExcludeSize(p.ExcludeLargerThan)
		if err != nil {
			return x, fmt.Errorf("%w: exclude-larger-than %q: %v", ErrBadPolicy, p.ExcludeLargerThan, err)
		}
		x.LargerThan = n
	}
	for _, f := range p.ExcludeFile {
		xf, err := ReadExcludeFile(f)
		if err != nil {
			return x, fmt.Errorf("the group's exclude file: %w", err)
		}
		x.Files = append(x.Files, xf)
	}
	return x, x.Check()
}

// parseExcludeSize reads a size as backup --exclude-larger-than does.
func parseExcludeSize(s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	switch {
	case err != nil:
		err = errNotASize
	case n == 0:
		err = errZeroSize
	case n > math.MaxInt64:
		err = errors.New("out of range")
	}
	return int64(n), err
}

var (
	errNotASize = errors.New("not a size")
	errZeroSize = errors.New("zero")
)

// ExcludeSizeHint says what --exclude-larger-than takes, after err from
// parsing it: a unit not known ("1XB") is told apart from a size of
// none ("0"), which would leave out every file with content.
func ExcludeSizeHint(err error) string {
	if errors.Is(err, errZeroSize) {
		return "a size of at least one byte (0 would leave out every file with content), like 500K, 100MiB or 2GiB"
	}
	return "a byte count, or a number with a unit of K, M, G, T (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), like 500K, 100MiB or 2GiB"
}

// ParseExcludeSize reads --exclude-larger-than: a size of one byte or
// more; the error says what is wrong with it (ExcludeSizeHint).
func ParseExcludeSize(s string) (int64, error) {
	n, err := parseExcludeSize(s)
	if err != nil {
		return 0, fmt.Errorf("%q: give %s", s, ExcludeSizeHint(err))
	}
	return n, nil
}
