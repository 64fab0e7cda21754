package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/engine/server"
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
		Usage: "list the history of backups, restores and verifications, failed ones included; with a server, its queued and running jobs with progress",
		Flags: append([]cli.Flag{
			&cli.IntFlag{Name: "last", Value: 20, Usage: "show the last `N` jobs (0: all)"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array (with --follow: a JSON object a line)"},
			&cli.Uint64Flag{Name: "follow", Usage: "follow the server's job `ID` (as 'recall jobs' or 'recall backup --group' show it) until it ends"},
		}, socketFlags...),
		Action: func(c *cli.Context) error {
			if c.Int("last") < 0 {
				return usagef("--last %d: give a number of jobs, or 0 for all", c.Int("last"))
			}
			a, err := serverClient(c)
			if err != nil {
				return err
			}
			if c.IsSet("follow") {
				if a == nil {
					return fmt.Errorf("--follow: %w: the server's jobs can be followed only while it runs", errNoServer)
				}
				v, err := a.follow(c.Context, c.Uint64("follow"), c.Duration("progress-interval"), printFollow(c))
				if err != nil {
					return err
				}
				return jobOutcome(v)
			}
			var live []server.JobView
			if a != nil {
				var out struct {
					Jobs []server.JobView `json:"jobs"`
				}
				if err := a.call(c.Context, "GET", "/jobs", nil, &out); err != nil {
					return err
				}
				live = out.Jobs
			}
			if len(live) > 0 && !c.Bool("json") {
				printServerJobs(c, live)
			}
			var jobs []engine.Job
			err = withCatalog(c, catalogWait, func(cat *engine.Catalog) (err error) {
				jobs, err = cat.Jobs(c.Int("last"))
				return err
			})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				out := make([]jobJSON, 0, len(jobs))
				for _, j := range jobs {
					out = append(out, jobJSON{Job: j, Progress: liveProgress(live, j)})
				}
				b, _ := json.MarshalIndent(out, "", "  ")
				fmt.Fprintln(c.App.Writer, string(b))
				return nil
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tKIND\tSTARTED (UTC)\tDURATION\tSTATUS\tSOURCE\tPOINT\tDETAIL")
			for _, j := range jobs {
				dur := ""
				switch {
				case !j.Finished.IsZero():
					dur = j.Finished.Sub(j.Started).Round(time.Millisecond).String()
				case j.Status == "interrupted":
					dur = "unknown" // its process died, some time before it was found so
				}
				pt := j.Point
				if len(pt) > 12 {
					pt = pt[:12]
				}
				detail := j.Error
				if detail == "" && j.Warnings > 0 {
					detail = fmt.Sprintf("%d entries skipped or flagged", j.Warnings)
				}
				if p := liveProgress(live, j); p != nil {
					detail = fmt.Sprintf("%d/%d files, %s/%s", p.FilesDone, p.FilesTotal, human(p.BytesDone), human(p.BytesTotal))
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.Number, j.Kind, j.Started.Format(time.DateTime), dur, j.Status, dashOr(j.Source), dash(pt), oneLine(detail))
			}
			return tw.Flush()
		},
	})
}

// withJob records every run of action in the catalog.
// The action may fill in the job's point and source once it knows them
// (restore: the point "latest" named); the job is recorded as it ends.
// Its path is the --target given, made absolute: a relative one said
// nothing once the shell that typed it was gone.
func withJob(kind string, action func(c *cli.Context, j *engine.Job) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		j := &engine.Job{Kind: kind, Source: c.String("source"), Path: c.String("target")}
		if j.Path != "" {
			if abs, err := filepath.Abs(j.Path); err == nil {
				j.Path = abs
			}
		}
		_, err := engine.RunJob(c.String("home"), j, warnf,
			func() (*engine.Point, error) { return nil, action(c, j) })
		return err
	}
}

// jobJSON is an element of jobs --json: the catalog's job, and while the
// server runs it, its progress.
type jobJSON struct {
	engine.Job
	Progress *server.Progress `json:"progress,omitempty"`
}

// liveProgress is the progress of catalog job j from the server's jobs:
// the running member of j's group whose path j backs up.
func liveProgress(live []server.JobView, j engine.Job) *server.Progress {
	if j.Status != "running" || j.Kind != "backup" || j.Group == "" {
		return nil
	}
	for _, v := range live {
		if v.Kind != "backup" || v.Group != j.Group || v.Done() {
			continue
		}
		for _, m := range v.Members {
			if m.State == "running" && m.Member == j.Path {
				return m.Progress
			}
		}
	}
	return nil
}

// printServerJobs lists the server's jobs that have not ended, with their
// progress, above the catalog's history.
func printServerJobs(c *cli.Context, live []server.JobView) {
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER JOB\tKIND\tGROUP\tSTATE\tQUEUED (UTC)\tPROGRESS")
	n := 0
	for _, j := range live {
		if j.Done() {
			continue
		}
		n++
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Kind, dash(j.Group), j.State, j.Queued.UTC().Format(time.DateTime), progressLine(j))
	}
	if n == 0 {
		return
	}
	tw.Flush()
	fmt.Fprintln(c.App.Writer)
}

// jobOutcome is the error a command returns for a server job that ended
// as v did: members that failed wrap engine.ErrMembersFailed, skipped
// entries engine.ErrWarnings, as the same backup run here would.
func jobOutcome(v server.JobView) error {
	switch v.State {
	case "ok":
		return nil
	case "warnings":
		return remoteError{fmt.Sprintf("server job %d: %s", v.ID, v.Error), engine.ErrWarnings}
	case "interrupted":
		msg := fmt.Sprintf("server job %d (%s) was interrupted: recall serve stopped before it ended (%s)", v.ID, v.Kind, v.Error)
		if v.Kind == "backup" {
			msg += "; the server makes the backup again at its next start"
		}
		return remoteError{msg, errServerGone}
	}
	if v.Kind == "backup" && len(v.Members) > 0 {
		return remoteError{fmt.Sprintf("server job %d: %s", v.ID, v.Error), engine.ErrMembersFailed}
	}
	return fmt.Errorf("server job %d (%s) failed: %s", v.ID, v.Kind, v.Error)
}

// remoteError is the server's message for an error it had, matching the
// sentinel the message came from.
type remoteError struct {
	msg string
	is  error
}

func (e remoteError) Error() string { return e.msg }
func (e remoteError) Unwrap() error { return e.is }

// dashOr is a name for a table: "-" for none (a source name never is),
// else as cell prints it.
func dashOr(s string) string {
	if s == "" {
		return "-"
	}
	return cell(s)
}
