package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/urfave/cli/v2"
)

// catalogWait is how long 'recall jobs' waits for another process to
// close the catalog, which is only ever held for one short transaction:
// listing jobs is the command's whole point, so it waits longer than
// recording a job does.
const catalogWait = 30 * time.Second

// withCatalog opens the catalog for one short transaction and prints what
// the catalog reports on its own (a damaged file moved aside).
func withCatalog(c *cli.Context, wait time.Duration, fn func(*engine.Catalog) error) error {
	return engine.WithCatalog(c.String("home"), wait, warnf, fn)
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
		_, err := engine.RunJob(c.String("home"), &engine.Job{Kind: kind, Source: c.String("source"), Path: c.String("target")}, warnf,
			func() (*engine.Point, error) { return nil, action(c) })
		return err
	}
}
