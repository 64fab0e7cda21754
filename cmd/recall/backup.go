package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/engine/server"
	"github.com/recall-backup/recall/fs"
	"github.com/urfave/cli/v2"
)

// pointJSON is the --json form of a point; scripts rely on these fields.
type pointJSON struct {
	ID      string          `json:"id"`
	Source  string          `json:"source"`
	Time    time.Time       `json:"time"`
	Kind    string          `json:"kind"`
	Path    string          `json:"path"`
	PathRaw string          `json:"path_raw,omitempty"` // Path's bytes when they are not UTF-8 (rawName)
	Host    string          `json:"host"`
	Parent  string          `json:"parent,omitempty"`
	Stats   engine.Stats    `json:"stats"`
	Errors  []pathErrorJSON `json:"errors,omitempty"`
	// Exclude is what the backup was told to leave out ({} for points
	// written before exclusions were recorded).
	Exclude     engine.Exclude   `json:"exclude"`
	MountPoints []mountPointJSON `json:"mount_points,omitempty"`
	Compression string           `json:"compression,omitempty"` // codec of the point's new blobs; absent in old points
	// Group, PolicyVersion and Scheduled: the protection group the point
	// was made for, its policy version, and the recovery point time it
	// is (absent for syncs and backups of a path).
	Group         string    `json:"group,omitempty"`
	PolicyVersion uint64    `json:"policy_version,omitempty"`
	Scheduled     time.Time `json:"scheduled,omitzero"`
	// Damaged is why the manifest is unreadable; every other field but
	// id is then zero.
	Damaged string `json:"damaged,omitempty"`
	// Name is the point's directory in the recovery tree (@GMT-...).
	Name string `json:"name,omitempty"`
}

func toJSON(p *engine.Point) pointJSON {
	return pointJSON{ID: p.ID.String(), Source: p.Source, Time: p.Time, Kind: p.Kind, Path: p.Path, PathRaw: rawName(p.Path), Host: p.Host,
		Parent: p.Parent, Stats: p.Stats, Errors: pathErrorsJSON(p.Errors), Exclude: p.Exclude, MountPoints: mountPointsJSON(p.MountPoints),
		Compression: string(p.Compression), Damaged: p.Damaged, Group: p.Group, PolicyVersion: p.PolicyVersion, Scheduled: p.Scheduled,
		Name: engine.RecordedName(p)}
}

func init() {
	register(&cli.Command{
		Name:      "backup",
		Usage:     "back up a directory, a file or a block device as a new recovery point",
		ArgsUsage: "[PATH]",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "group", Usage: "back up every member of protection group `NAME` now, each as its own job, under the group's policy (no PATH); when recall serve runs, the server does it and this follows the job"},
			&cli.StringFlag{Name: "source", Usage: "data source `NAME` (default: derived from PATH); with no PATH, ingest registered source NAME now (see 'recall source add'): through recall serve when it runs and a group holds the source; exit 1 and no point when WSB is still writing the image (not settled, or written during the ingestion): try again later; exit 0 when there is nothing new"},
			&cli.DurationFlag{Name: "settle", Usage: "with --source and no PATH: take the image as finished after `SPAN` without writes, for this run", DefaultText: "the source's settle time"},
			&cli.BoolFlag{Name: "json", Usage: "print progress and the new point as JSON lines (see the README)"},
			&cli.DurationFlag{Name: "lock-wait", Value: 30 * time.Minute, Usage: "how long to wait for another backup of this store to finish"},
			&cli.IntFlag{Name: "files", Value: 4, Usage: "large files read at once (files of one chunk or less get 8 times as many slots of their own), and directories walked at once"},
			&cli.BoolFlag{Name: "one-file-system", Aliases: []string{"x"}, Usage: "stay on PATH's file system: other mount points are kept as empty directories"},
			&cli.GenericFlag{Name: "exclude", Value: &repeated{}, Usage: "leave out what matches `PATTERN` (gitignore-style, '**' allowed; repeatable)"},
			&cli.GenericFlag{Name: "exclude-file", Value: &repeated{}, Usage: "read exclude patterns from `FILE`, one a line, '#' comments (repeatable)"},
			&cli.BoolFlag{Name: "exclude-caches", Usage: "leave out the content of directories holding a valid CACHEDIR.TAG (the tag is kept)"},
			&cli.GenericFlag{Name: "exclude-if-present", Value: &repeated{}, Usage: "leave out the content of directories holding an entry `NAME` (it is kept; repeatable)"},
			&cli.StringFlag{Name: "exclude-larger-than", Usage: "leave out files larger than `SIZE` (100MiB, 2GiB; 1M is 10^6 bytes)"},
			&cli.StringFlag{Name: "compression", Usage: "codec of new data for this backup: zstd, s2 or off (default: the store's, set at init)"},
			&cli.StringFlag{Name: "limit", Usage: "read PATH at most `RATE`: 50MiB/s, 400Mbit/s"},
			&cli.StringFlag{Name: "limit-window", Usage: "hold --limit only in `WINDOWS` (local time) like mon-fri,08:00-18:00 (default: always)"},
		}, socketFlags...),
		Action: func(c *cli.Context) error {
			if c.IsSet("group") {
				return backupGroup(c)
			}
			if c.NArg() == 0 && c.IsSet("source") {
				return backupSource(c)
			}
			if c.NArg() != 1 {
				return usagef("backup needs exactly one PATH (or --group NAME, or --source NAME of a registered source)")
			}
			if c.IsSet("settle") {
				return usagef("backup --settle is for a registered source's image: give --source NAME and no PATH")
			}
			if s := c.String("source"); c.IsSet("source") {
				if err := engine.ValidSourceName(s); err != nil {
					return usageError{err.Error()}
				}
			}
			if _, err := excludeOptions(c); err != nil {
				return err
			}
			if _, err := compressionFlag(c); err != nil {
				return err
			}
			if _, err := limitFlags(c); err != nil {
				return err
			}
			source, err := engine.BackupSource(c.Args().First(), c.String("source"))
			if err != nil {
				return err
			}
			if err := checkPathSource(c, source); err != nil {
				return err
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			// The job names its source from the start: a backup that
			// failed or was killed made no point to name it.
			path := c.Args().First()
			if abs, err := filepath.Abs(path); err == nil {
				path = abs
			}
			p, err := engine.RunJob(c.String("home"), &engine.Job{Kind: "backup", Source: source, Path: path}, warnf,
				func() (*engine.Point, error) { return backup(c, st) })
			if p != nil {
				// Mounts of this store show the point, and latest moves to
				// it, before this command returns.
				fs.Refresh(c.String("home"), p.Source)
			}
			return err
		},
	})
}

// checkPathSource refuses a backup of a path under the name of a
// registered source (Catalog.CheckPathSource). A catalog that cannot be
// opened or read only skips the check, with a warning: the catalog is
// never a reason not to back up (README), as it is not for restore and
// verify, whose job records only warn (engine.RunJob). A home with no
// store, or a store without a usable config, is left to the store's open
// to report.
func checkPathSource(c *cli.Context, source string) error {
	err := withCatalog(c, catalogWait, func(cat *engine.Catalog) error { return cat.CheckPathSource(source) })
	switch {
	case err == nil, errors.Is(err, chunkstore.ErrNoStore), errors.Is(err, chunkstore.ErrConfigMissing), errors.Is(err, chunkstore.ErrConfigDamaged):
		// The store's own trouble, not the catalog's: its open says
		// what to do. Told to move a sound catalog aside, a reader
		// would lose its history, groups and sources for nothing.
		return nil
	case errors.Is(err, engine.ErrSourceExists):
		return err
	case errors.Is(err, engine.ErrCatalogBusy):
		warnf("catalog %s: source name %s not checked against the registered sources: %v", engine.CatalogPath(c.String("home")), source, err)
	case errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS):
		// Not damage: a file or home this user may not write, or a
		// read-only mount. Moving it aside would lose what it holds.
		warnf("catalog %s cannot be written (%v): source name %s not checked against the registered sources; run as a user who may write it, or on a writable home",
			engine.CatalogPath(c.String("home")), err, source)
	default:
		warnf("catalog %s cannot be used (%v): source name %s not checked against the registered sources; if it stays so, move it aside: a fresh catalog is then started in its place, without the history, groups and sources it held",
			engine.CatalogPath(c.String("home")), err, source)
	}
	return nil
}

// backup runs one backup and prints its point.
func backup(c *cli.Context, st *engine.Store) (*engine.Point, error) {
	path := c.Args().First()
	source, err := engine.BackupSource(path, c.String("source"))
	if err != nil {
		return nil, err
	}
	s, err := st.Session(c.Context, engine.SessionOptions{Purpose: "backup of " + path, Source: source, Blobs: true, LockOptions: lockWait(c)})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	x, err := excludeOptions(c)
	if err != nil {
		return nil, err
	}
	lim, err := limitFlags(c)
	if err != nil {
		return nil, err
	}
	rep, err := newReporter(c, "backup", "saved", c.Bool("json"), true)
	if err != nil {
		return nil, err
	}
	opts := engine.BackupOptions{
		Path: path, Source: source, SourceDerived: c.String("source") == "", Files: c.Int("files"), Exclude: x, Compression: chunkstore.Compression(c.String("compression")),
		Log:      func(f string, a ...any) { logf(f, a...) },
		Info:     infof(c),
		Progress: rep.Progress(),
	}
	if lim != nil {
		opts.Limiter = lim
	}
	p, err := engine.Backup(c.Context, s, opts)
	rep.Stop()
	if p == nil {
		return nil, err
	}
	printPoint(c, rep, p)
	return p, err
}

// summaryWarnings is how many of a point's warnings its text summary
// repeats.
const summaryWarnings = 20

// printPoint prints the point a backup made, as text or as the --json
// summary line.
func printPoint(c *cli.Context, rep *reporter, p *engine.Point) {
	if c.Bool("json") {
		rep.Summary(backupSummary(p))
	} else if rep.text() {
		s := p.Stats
		fmt.Fprintf(c.App.Writer, "point %s of source %s at %s\n", p.ID.String()[:12], p.Source, p.Time.Format(time.RFC3339))
		fmt.Fprintf(c.App.Writer, "  %d files (%d unchanged), %d dirs, %d other; %s in files, %s new, %s stored, in %s\n",
			s.Files, s.Unchanged, s.Dirs, s.Others, human(s.Bytes), human(s.NewBytes), human(s.StoredBytes),
			time.Duration(s.DurationNano).Round(time.Millisecond))
		for _, m := range p.MountPoints {
			fmt.Fprintf(c.App.Writer, "  mount point not entered (--one-file-system): %s (%s)\n", oneLine(m.Path), m.FSType)
		}
		for i, e := range p.Errors {
			if i == summaryWarnings && len(p.Errors) > i+1 {
				// Each was logged as it happened; thousands (a directory
				// deleted during the backup) would bury the summary.
				fmt.Fprintf(c.App.Writer, "  ... and %d more warnings, logged above as they happened ('recall points --json' keeps them all)\n", len(p.Errors)-i)
				break
			}
			fmt.Fprintf(c.App.Writer, "  warning: %s: %s\n", oneLine(e.Path), oneLine(e.Error))
		}
	}
}

// excludeOptions gathers the exclusion flags; anything unusable is a
// usage error.
func excludeOptions(c *cli.Context) (engine.Exclude, error) {
	x := engine.Exclude{
		Patterns:      c.Generic("exclude").(*repeated).list,
		Caches:        c.Bool("exclude-caches"),
		IfPresent:     c.Generic("exclude-if-present").(*repeated).list,
		OneFileSystem: c.Bool("one-file-system"),
	}
	for _, f := range c.Generic("exclude-file").(*repeated).list {
		xf, err := engine.ReadExcludeFile(f)
		if err != nil {
			return x, usagef("--exclude-file: %v", err)
		}
		x.Files = append(x.Files, xf)
	}
	if s := c.String("exclude-larger-than"); s != "" {
		n, err := engine.ParseExcludeSize(s)
		if err != nil {
			return x, usagef("--exclude-larger-than %v", err)
		}
		x.LargerThan = n
	}
	if err := x.Check(); err != nil {
		return x, usageError{err.Error()}
	}
	return x, nil
}

// limitFlags is the limit of backup --limit and --limit-window, nil for
// none; a bad value is a usage error (engine.ErrBadPolicy).
func limitFlags(c *cli.Context) (*engine.RateLimit, error) {
	return engine.NewRateLimit(c.String("limit"), c.String("limit-window"), nil)
}

// repeated is a flag value that collects every use of the flag, commas
// and all (a StringSliceFlag would split "{a,b}" patterns).
type repeated struct{ list []string }

func (r *repeated) Set(s string) error { r.list = append(r.list, s); return nil }
func (r *repeated) String() string     { return strings.Join(r.list, ", ") }

// backupJSON is the summary line of backup --json: the point as every
// --json of a point shows it, and restic's names for the totals.
type backupJSON struct {
	// MessageType is "summary" in backup --group --json's array, whose
	// elements are each a summary line; the summary line itself gets it
	// from the reporter (summaryLine), so it is empty there.
	MessageType string `json:"message_type,omitempty"`
	pointJSON
	SnapshotID          string    `json:"snapshot_id"`
	FilesUnmodified     int64     `json:"files_unmodified"`
	DataBlobs           int64     `json:"data_blobs"`
	DataAdded           int64     `json:"data_added"`
	DataAddedPacked     int64     `json:"data_added_packed"`
	TotalFilesProcessed int64     `json:"total_files_processed"`
	TotalBytesProcessed int64     `json:"total_bytes_processed"`
	TotalDuration       float64   `json:"total_duration"`
	BackupStart         time.Time `json:"backup_start"`
	BackupEnd           time.Time `json:"backup_end"`
}

func backupSummary(p *engine.Point) backupJSON {
	s := p.Stats
	d := time.Duration(s.DurationNano)
	return backupJSON{pointJSON: toJSON(p), SnapshotID: p.ID.String(), FilesUnmodified: s.Unchanged,
		DataBlobs: s.NewBlobs, DataAdded: s.NewBytes, DataAddedPacked: s.StoredBytes,
		TotalFilesProcessed: s.Files, TotalBytesProcessed: s.Bytes, TotalDuration: round3(d.Seconds()),
		BackupStart: p.Time, BackupEnd: p.Time.Add(d)}
}

// groupSummary is an element of backup --group --json: the member's
// point as backup --json's summary line is, message_type included.
func groupSummary(p *engine.Point) backupJSON {
	s := backupSummary(p)
	s.MessageType = "summary"
	return s
}

func human(n int64) string {
	if n < 0 {
		return "-" + humanize.IBytes(uint64(-n))
	}
	return humanize.IBytes(uint64(n))
}

// backupGroup is backup --group: the group's policy says what to read, so
// the flags that say it for one PATH are refused rather than ignored.
func backupGroup(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("backup --group takes no PATH: it backs up the group's members (add one with 'recall group add')")
	}
	if c.IsSet("source") {
		// Not a policy flag: a member's source is its path's name, or the
		// registered source the group lists.
		return usagef("backup --group: --source is not for a group: each member has its own source (see 'recall group show %s'); back up one registered source with 'recall backup --source NAME', without --group", c.String("group"))
	}
	for _, f := range []string{"exclude", "exclude-file", "exclude-caches", "exclude-if-present", "exclude-larger-than", "one-file-system", "compression", "limit", "limit-window"} {
		if c.IsSet(f) {
			return usagef("backup --group: --%s comes from the group's policy; change it with 'recall group edit %s --...'", f, c.String("group"))
		}
	}
	if c.IsSet("settle") {
		return usagef("backup --group: --settle is for one registered source: give --source NAME instead of --group")
	}
	a, err := serverClient(c)
	if err != nil {
		return err
	}
	if a != nil {
		return backupGroupServed(c, a)
	}
	var g engine.Group
	if err := withCatalog(c, catalogWait, func(cat *engine.Catalog) error {
		var err error
		g, err = cat.Group(c.String("group"))
		return err
	}); err != nil {
		return err
	}
	if len(g.Members) == 0 {
		return fmt.Errorf("group %s has no members: add one with 'recall group add %s --member PATH'", g.Name, g.Name)
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := st.BackupGroup(c.Context, c.String("home"), &g, engine.GroupBackupOptions{
		Log:  func(f string, a ...any) { logf(f, a...) },
		Info: infof(c),
		Warn: warnf,
		Lock: lockWait(c),
		Skipped: func(member string, err error) {
			if !c.Bool("quiet") {
				logf("member %s: %v", member, err)
			}
		},
	})
	return printGroupResults(c, res, err)
}

// printGroupResults prints how each member of a group's backup run here
// went, and returns the run's error.
func printGroupResults(c *cli.Context, res []engine.MemberResult, err error) error {
	var out []backupJSON
	for _, r := range res {
		if r.Point != nil {
			fs.Refresh(c.String("home"), r.Point.Source)
		}
		switch {
		case c.Bool("json"):
			if r.Point != nil {
				out = append(out, groupSummary(r.Point))
			}
		case c.Bool("quiet"):
		case r.Point != nil:
			kind := "sync"
			if !r.Point.Scheduled.IsZero() {
				kind = "recovery point of " + r.Point.Scheduled.Local().Format("15:04")
			}
			fmt.Fprintf(c.App.Writer, "member %s: point %s of source %s (%s, job %d)\n", cell(r.Member), r.Point.ID.String()[:12], cell(r.Source), kind, r.Job)
			if r.Err != nil {
				fmt.Fprintf(c.App.Writer, "  %v\n", r.Err)
			}
		default:
			fmt.Fprintf(c.App.Writer, "member %s: failed (job %d): %s\n", cell(r.Member), r.Job, oneLine(r.Err.Error()))
		}
	}
	if c.Bool("json") {
		if out == nil {
			out = []backupJSON{}
		}
		if perr := printJSON(c, out); perr != nil {
			return perr
		}
	}
	return err
}

// backupGroupServed is backup --group while recall serve runs: the server
// owns the home, so it runs the backup (a write: root only) and this
// follows the job. A backup of the group already queued or running is
// followed instead of queueing another.
func backupGroupServed(c *cli.Context, a *apiClient) error {
	return backupServed(c, a, map[string]string{"group": c.String("group")}, "group "+c.String("group"))
}

// backupServed asks the server for the backup req describes (what names
// it for messages) and follows the job.
func backupServed(c *cli.Context, a *apiClient, req map[string]string, what string) error {
	resp, err := a.do(c.Context, "POST", "/backup", req)
	if err != nil {
		return err
	}
	var out struct {
		Jobs  []uint64 `json:"jobs"`
		Error string   `json:"error"`
	}
	code := resp.StatusCode
	if code == http.StatusConflict {
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err == nil && len(out.Jobs) == 1 && !c.Bool("quiet") {
			logf("%s; following it", out.Error)
		}
	} else {
		err = decodeAnswer(resp, &out)
		resp.Body.Close()
	}
	if err != nil {
		return err
	}
	if len(out.Jobs) != 1 {
		return fmt.Errorf("recall serve queued %d jobs for %s; expected one", len(out.Jobs), what)
	}
	if code != http.StatusConflict && !c.Bool("quiet") && !c.Bool("json") {
		// A conflict followed the job already queued or running, and
		// said so above: this one was not queued.
		logf("backup of %s queued in recall serve as server job %d", what, out.Jobs[0])
	}
	show := printFollow(c)
	if c.Bool("json") {
		// As without a server: the points, once.
		show = func(server.JobView) {}
	}
	v, err := a.follow(c.Context, out.Jobs[0], c.Duration("progress-interval"), show)
	if err != nil {
		return err
	}
	if name := req["source"]; name != "" && len(v.Members) == 0 && v.Error == "" {
		// The server left the member alone: WSB wrote into the share
		// during its look (or an ingestion took the image meanwhile).
		return fmt.Errorf("source %s: %w: no point was made (job %d): WSB wrote into the share during the ingestion, or the image was ingested meanwhile (the server's log says which); try again later",
			name, engine.ErrNotSettled, out.Jobs[0])
	}
	if c.Bool("json") {
		if perr := printServedPoints(c, v); perr != nil {
			return perr
		}
	}
	if !c.Bool("quiet") && !c.Bool("json") {
		for _, m := range v.Members {
			switch {
			case m.Point != "":
				fmt.Fprintf(c.App.Writer, "member %s: point %s of source %s (job %d)\n", cell(m.Member), m.Point[:12], cell(m.Source), m.CatalogJob)
				if m.Error != "" {
					fmt.Fprintf(c.App.Writer, "  %s\n", m.Error)
				}
			default:
				fmt.Fprintf(c.App.Writer, "member %s: failed (job %d): %s\n", cell(m.Member), m.CatalogJob, oneLine(m.Error))
			}
		}
	}
	return jobOutcome(v)
}

// printServedPoints prints the points a server's backup job made as
// backup --group --json does without a server, read from the store.
func printServedPoints(c *cli.Context, v server.JobView) error {
	out := []backupJSON{}
	var st *engine.Store
	for _, m := range v.Members {
		if m.Point == "" {
			continue
		}
		if st == nil {
			var err error
			if st, err = openStore(c); err != nil {
				return err
			}
			defer st.Close()
		}
		id, err := chunkstore.ParseID(m.Point)
		if err != nil {
			return fmt.Errorf("point %q of member %s from the server: %w", m.Point, m.Member, err)
		}
		p, err := st.Reader().LoadPoint(id)
		if err != nil {
			return err
		}
		out = append(out, groupSummary(p))
	}
	return printJSON(c, out)
}
