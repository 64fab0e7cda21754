package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "restore",
		Usage:     "restore a recovery point (or a path inside it) into a directory, or a device image onto a block device",
		ArgsUsage: "POINT (id, unique id prefix, or \"latest\")",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "source", Usage: "data source `NAME` POINT belongs to (needed for \"latest\" with several sources)"},
			&cli.StringFlag{Name: "target", Usage: "directory to restore into (created if missing), or a block device", Required: true},
			&cli.StringFlag{Name: "path", Usage: "restore only `SUB`, a path inside the point: a directory's content fills the target, anything else becomes TARGET/<name>"},
			&cli.BoolFlag{Name: "overwrite", Usage: "restore into a non-empty target, replacing only the entries the restore writes (never a non-empty directory)"},
			&cli.BoolFlag{Name: "resume", Usage: "go on with a restore of this point into TARGET that stopped: as --overwrite, but files already there with the point's size, time and mode are kept"},
			&cli.BoolFlag{Name: "json", Usage: "print progress and the result as JSON lines (see the README)"},
		},
		Action: withJob("restore", func(c *cli.Context, j *engine.Job) error {
			if c.NArg() != 1 {
				return usagef("restore needs exactly one POINT")
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			r := st.Reader()
			pts, err := r.Points()
			if err != nil {
				return err
			}
			p, err := r.FindPointIn(pts, c.Args().First(), c.String("source"))
			if err != nil {
				return err
			}
			j.Point, j.Source = p.ID.String(), p.Source
			if c.Args().First() == "latest" {
				warnPassedOver(pts, p)
			}
			rep, err := newReporter(c, "restore", "restored", c.Bool("json"), true)
			if err != nil {
				return err
			}
			res, err := engine.Restore(c.Context, r, p, engine.RestoreOptions{
				Target: c.String("target"), Path: c.String("path"), Overwrite: c.Bool("overwrite"), Resume: c.Bool("resume"),
				Protect:  []string{home(c)},
				Log:      func(f string, a ...any) { logf(f, a...) },
				Progress: rep.Progress(),
			})
			rep.Stop()
			if res == nil || (err != nil && !errors.Is(err, engine.ErrDamaged)) {
				// Stopped: the error says what is left where.
				return err
			}
			if c.Bool("json") {
				rep.Summary(restoreSummary(p, res, time.Since(rep.start)))
			} else if rep.text() {
				kept := ""
				if res.Kept > 0 {
					kept = fmt.Sprintf(" (%d files, %s, were in place already and kept)", res.Kept, human(res.KeptBytes))
				}
				fmt.Fprintf(c.App.Writer, "%s point %s of %s: %d files, %d dirs, %d other, %s into %s%s%s\n",
					restoredVerb(res), p.ID.String()[:12], cell(p.Source), res.Files, res.Dirs, res.Others, human(res.Bytes), oneLine(res.Root), kept, damagedNote(res))
				if res.TargetKept {
					fmt.Fprintf(c.App.Writer, "%s held entries before the restore, so it kept its own owner, mode and times (a new or empty target takes the point's)\n", oneLine(res.Target))
				}
				if res.AsidesRemoved > 0 {
					fmt.Fprintf(c.App.Writer, "removed %d entries the restore that stopped had moved aside (.recall-old-*) to replace them: the files that replaced them are whole now\n", res.AsidesRemoved)
				}
			}
			if n := len(res.AsidesKept); n > 0 {
				paths := make([]string, n)
				for i, p := range res.AsidesKept {
					paths[i] = oneLine(filepath.Join(res.Target, p))
				}
				fmt.Fprintf(c.App.ErrWriter, "recall: kept %d entries the restore that stopped had moved aside (.recall-old-*), holding what it was replacing, as this restore did not restore every file whole: %s; once the files beside them are as you want, remove them (find %s -name '.recall-old-*')\n",
					n, engine.ListSome(paths, 10), oneLine(res.Target))
			}
			for _, d := range res.Damaged {
				fmt.Fprintf(c.App.ErrWriter, "recall: damaged: %s\n", oneLine(d.Path+": "+d.Error))
			}
			if err != nil && res.Unreadable {
				return fmt.Errorf("%w; every other file was restored", err)
			}
			if err != nil {
				return fmt.Errorf("%w; every other file was restored; run 'recall verify --read-data' for the damaged packs", err)
			}
			return restoreWarnings(res)
		}),
	})
}

// restoreWarnings is the error (exit 3) of a restore that left entries
// unrestored or metadata unapplied, saying how many of each there are.
func restoreWarnings(res *engine.RestoreResult) error {
	var parts []string
	if n := len(res.Skipped); n > 0 {
		parts = append(parts, fmt.Sprintf("%d entries not restored", n))
	}
	if n := len(res.Warnings); n > 0 {
		parts = append(parts, fmt.Sprintf("%d metadata items not applied", n))
	}
	if len(parts) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s (listed above)", engine.ErrWarnings, strings.Join(parts, ", "))
}

// restoredVerb and damagedNote make a restore's summary line say, before
// the damaged files are named below it, that not all of it came back.
func restoredVerb(res *engine.RestoreResult) string {
	if len(res.Damaged) > 0 {
		return "partly restored"
	}
	return "restored"
}

func damagedNote(res *engine.RestoreResult) string {
	if len(res.Damaged) == 0 {
		return ""
	}
	return fmt.Sprintf("; %d file(s) damaged, named below", len(res.Damaged))
}

// restoreJSON is the summary line of restore --json; the totals carry
// restic's names.
type restoreJSON struct {
	Point          string          `json:"point"`
	Source         string          `json:"source"`
	Root           string          `json:"root"`
	RootRaw        string          `json:"root_raw,omitempty"` // Root's bytes when they are not UTF-8 (rawName)
	SecondsElapsed float64         `json:"seconds_elapsed"`
	FilesRestored  int64           `json:"files_restored"`
	Dirs           int64           `json:"dirs"`
	Others         int64           `json:"others"`
	BytesRestored  int64           `json:"bytes_restored"`
	FilesKept      int64           `json:"files_kept,omitempty"`
	BytesKept      int64           `json:"bytes_kept,omitempty"`
	TargetKept     bool            `json:"target_kept,omitempty"`
	AsidesRemoved  int64           `json:"asides_removed,omitempty"`
	AsidesKept     []string        `json:"asides_kept,omitempty"`
	Damaged        []pathErrorJSON `json:"damaged,omitempty"`
	Skipped        []pathErrorJSON `json:"skipped,omitempty"`
	Warnings       []pathErrorJSON `json:"warnings,omitempty"`
}

func restoreSummary(p *engine.Point, res *engine.RestoreResult, el time.Duration) restoreJSON {
	return restoreJSON{Point: p.ID.String(), Source: p.Source, Root: res.Root, RootRaw: rawName(res.Root), SecondsElapsed: round3(el.Seconds()),
		FilesRestored: res.Files, Dirs: res.Dirs, Others: res.Others, BytesRestored: res.Bytes,
		FilesKept: res.Kept, BytesKept: res.KeptBytes, TargetKept: res.TargetKept,
		AsidesRemoved: res.AsidesRemoved, AsidesKept: res.AsidesKept,
		Damaged: pathErrorsJSON(res.Damaged), Skipped: pathErrorsJSON(res.Skipped), Warnings: pathErrorsJSON(res.Warnings)}
}

// warnPassedOver says that "latest" passed over points whose manifest is
// damaged: their source and time are unknown, so one of them may be the
// newer point of this source, and the restore, which exits 0, brought
// back older data without a word.
func warnPassedOver(pts []*engine.Point, p *engine.Point) {
	var damaged []string
	for _, q := range pts {
		if q.Damaged != "" {
			damaged = append(damaged, q.ID.String()[:12])
		}
	}
	if len(damaged) > 0 {
		warnf("\"latest\" is point %s of %s, from %s; %d point(s) whose manifest is damaged were passed over (%s): their source and time are unknown, and one may be newer; 'recall points' lists them, with why",
			p.ID.String()[:12], p.Source, p.Time.UTC().Format(time.DateTime), len(damaged), strings.Join(damaged, ", "))
	}
}
