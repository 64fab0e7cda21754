package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/urfave/cli/v2"
)

func catalogPath(c *cli.Context) string { return filepath.Join(c.String("home"), "catalog.db") }

// How long a command waits for another process to close the catalog,
// which is only ever held for one short transaction. Recording a job is
// best-effort, so it waits briefly: history is not worth delaying a
// restore. Listing jobs is the command's whole point, so it waits longer.
const (
	catalogWait = 30 * time.Second
	recordWait  = 2 * time.Second
)

// requireStore fails unless --home holds a store, so that nothing (a new
// catalog.db) is written into a directory that is not recall's.
func requireStore(c *cli.Context) error {
	if _, err := os.Stat(filepath.Join(storeDir(c), "config")); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: %w (run 'recall init' first, or check --home)", storeDir(c), chunkstore.ErrNoStore)
		}
		return fmt.Errorf("store %s: %w", storeDir(c), err)
	}
	return nil
}

// withCatalog opens the catalog for one short transaction and prints what
// the catalog reports on its own (a damaged file moved aside).
func withCatalog(c *cli.Context, wait time.Duration, fn func(*engine.Catalog) error) error {
	if err := requireStore(c); err != nil {
		return err
	}
	cat, err := engine.OpenCatalog(catalogPath(c), wait)
	if err != nil {
		return err
	}
	defer cat.Close()
	err = fn(cat)
	for _, n := range cat.Notes() {
		logf("warning: %s", n)
	}
	return err
}

// startJob records a job in the catalog and returns the function that
// records its end. A catalog that cannot be opened is reported and the job
// runs anyway: the history is worth less than the backup. A --home with no
// store records nothing; the command's own open of the store says so.
func startJob(c *cli.Context, j *engine.Job) func(p *engine.Point, err error) {
	j.Started = time.Now().UTC()
	if requireStore(c) != nil {
		return func(*engine.Point, error) {}
	}
	if err := withCatalog(c, recordWait, func(cat *engine.Catalog) error { return cat.StartJob(j) }); err != nil {
		logf("warning: job not recorded in the catalog: %v", err)
		return func(*engine.Point, error) {}
	}
	return func(p *engine.Point, err error) {
		j.Finished = time.Now().UTC()
		switch {
		case err == nil:
			j.Status = "ok"
		case errors.Is(err, engine.ErrWarnings):
			j.Status = "warnings"
		default:
			j.Status = "failed"
			j.Error = err.Error()
		}
		if p != nil {
			j.Point, j.Stats, j.Warnings = p.ID.String(), &p.Stats, len(p.Errors)
			j.Source = p.Source
		}
		if cerr := withCatalog(c, recordWait, func(cat *engine.Catalog) error { return cat.FinishJob(j) }); cerr != nil {
			logf("warning: job result not recorded in the catalog: %v", cerr)
		}
	}
}

func init() {
	register(&cli.Command{
		Name:  "jobs",
		Usage: "list the history of backups, restores and verifications, failed ones included",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "last", Value: 20, Usage: "show the last `N` jobs (0: all)"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array"},
		},
		Action: func(c *cli.Context) error {
			if c.Int("last") < 0 {
				return usagef("--last %d: give a number of jobs, or 0 for all", c.Int("last"))
			}
			var jobs []engine.Job
			err := withCatalog(c, catalogWait, func(cat *engine.Catalog) (err error) {
				jobs, err = cat.Jobs(c.Int("last"))
				return err
			})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if jobs == nil {
					jobs = []engine.Job{}
				}
				b, _ := json.MarshalIndent(jobs, "", "  ")
				fmt.Fprintln(c.App.Writer, string(b))
				return nil
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tKIND\tSTARTED (UTC)\tDURATION\tSTATUS\tSOURCE\tPOINT\tDETAIL")
			for _, j := range jobs {
				dur := ""
				if !j.Finished.IsZero() {
					dur = j.Finished.Sub(j.Started).Round(time.Millisecond).String()
				}
				pt := j.Point
				if len(pt) > 12 {
					pt = pt[:12]
				}
				detail := j.Error
				if detail == "" && j.Warnings > 0 {
					detail = fmt.Sprintf("%d entries skipped or flagged", j.Warnings)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.Number, j.Kind, j.Started.Format(time.DateTime), dur, j.Status, j.Source, pt, detail)
			}
			return tw.Flush()
		},
	})
}

// withJob records every run of action in the catalog.
func withJob(kind string, action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		finish := startJob(c, &engine.Job{Kind: kind, Source: c.String("source"), Path: c.String("target")})
		err := action(c)
		finish(nil, err)
		return err
	}
}
