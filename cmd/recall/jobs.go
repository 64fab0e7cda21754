package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/urfave/cli/v2"
)

func catalogPath(c *cli.Context) string { return filepath.Join(c.String("home"), "catalog.db") }

// catalogWait bounds how long a job waits for the catalog; the catalog is
// only ever held for one short transaction.
const catalogWait = 30 * time.Second

// withCatalog opens the catalog for one short transaction.
func withCatalog(c *cli.Context, fn func(*engine.Catalog) error) error {
	cat, err := engine.OpenCatalog(catalogPath(c), catalogWait)
	if err != nil {
		return err
	}
	defer cat.Close()
	return fn(cat)
}

// startJob records a job in the catalog and returns the function that
// records its end. A catalog that cannot be opened is reported and the job
// runs anyway: the history is worth less than the backup.
func startJob(c *cli.Context, j *engine.Job) func(p *engine.Point, err error) {
	j.Started = time.Now().UTC()
	if err := withCatalog(c, func(cat *engine.Catalog) error { return cat.StartJob(j) }); err != nil {
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
		if cerr := withCatalog(c, func(cat *engine.Catalog) error { return cat.FinishJob(j) }); cerr != nil {
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
			var jobs []engine.Job
			err := withCatalog(c, func(cat *engine.Catalog) (err error) {
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
