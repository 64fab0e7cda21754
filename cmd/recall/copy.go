package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:  "copy",
		Usage: "copy recovery points to another store (an off-site copy), with what they need that it lacks",
		Description: `Copies the recovery points of the store at --from (a recall home or a store directory)
to the store at --to: all of them, or those of --source, or those made at or after --since.
Only what the destination lacks is copied, blob by blob, as stored (still compressed, and
sealed when the store is encrypted), so a copy deduplicates against what the destination
holds (an earlier copy, its own backups) and copying again copies only what is new.
Packs are written first, then index files, then the points' manifests: a point never shows
at the destination before everything it needs (points are copied oldest first, in batches
of about 4 GiB). A copy that is stopped or killed is
completed by running it again. Check a copy with 'recall verify --read-data'.

Either side may be an S3 location, s3:http(s)://host[:port]/bucket[/prefix], reached with the
global --s3-* flags and the AWS_* credentials; a destination bucket that is missing is made.

--to is a store directory or a recall home. A new or empty directory is made a recall
home whose store (DIR/store) has the source's config files: the same keys and, when
encrypted, the same passphrase; 'recall --home DIR verify --read-data' then checks the
copy, and every other command reads it the same way. A destination made
with other keys (another store, one made by 'recall init') is refused before anything is
written: blobs of one store mean nothing in another.

An encrypted source needs its passphrase (RECALL_PASSWORD, --password-file or
--password-command) to copy blob by blob. Without it the whole store is copied sealed,
file by file (packs, index files, manifests the destination lacks), into a new destination
or a copy made before; --source and --since then cannot be used.

Backups into the destination may run during a copy (it holds a write session there,
named "recall copy"); a second copy into the same destination waits for the first. The
source is read without a lock.

With --json, status lines as for backup (files are the source packs read, bytes the stored
bytes copied), then one summary line: message_type "summary", from, to, created (the
destination was made), sealed, points (copied: id, source, time), points_present (selected
points the destination had), failed (points not copied: id, source, time, error), forgotten (points
forgotten at the source while the copy ran, so not copied: id, source, time; absent
when none),
blobs_copied, bytes_copied (stored bytes), packs_written, blobs_skipped and bytes_skipped
(needed, and already at the destination), seconds.

Exit code 4 when points could not be copied for damage at the source (they are listed;
the others are copied).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "copy from the store at `HOME_OR_STORE` (a recall home, a store directory, or s3:http(s)://host[:port]/bucket[/prefix])", Required: true},
			&cli.StringFlag{Name: "to", Usage: "copy into the store at `STORE` (a store directory, a recall home, or an s3: location); a new or empty directory, or an empty bucket (made when missing), gets a new store", Required: true},
			&cli.StringFlag{Name: "source", Usage: "copy only the points of data source `NAME`"},
			&cli.StringFlag{Name: "since", Usage: "copy only points made at or after `TIME` (RFC 3339, like 2026-11-21T18:00:00Z, or a date, 2026-11-21, UTC)"},
			&cli.BoolFlag{Name: "json", Usage: "print progress and the result as JSON lines (see above)"},
			&cli.DurationFlag{Name: "lock-wait", Value: 30 * time.Minute, Usage: "how long to wait for another copy into the destination to finish"},
		},
		Action: copyAction,
	})
}

func copyAction(c *cli.Context) error {
	o := engine.CopyOptions{Source: c.String("source"), LockOptions: lockWait(c), Remote: remoteOptions(c), Log: func(f string, a ...any) { logf(f, a...) }}
	if s := c.String("since"); s != "" {
		t, err := parseSince(s)
		if err != nil {
			return usagef("--since %q: give an RFC 3339 time, like 2026-11-21T18:00:00Z, or a date, like 2026-11-21", s)
		}
		o.Since = t
	}
	// Asked only of what is given: without a passphrase an encrypted
	// store is copied sealed, which is what a job without the key wants.
	pw, err := password(c)
	if err != nil {
		return err
	}
	o.Password = pw
	pr, err := newReporter(c, "copy", "copied", c.Bool("json"), true)
	if err != nil {
		return err
	}
	o.Progress = pr.Progress()
	rep, err := engine.Copy(c.Context, c.String("from"), c.String("to"), o)
	pr.Stop()
	if err != nil {
		err = copyError(err)
	}
	if rep == nil || (err != nil && !errors.Is(err, engine.ErrDamaged)) {
		return err
	}
	for _, f := range rep.Failed {
		what := f.ID
		if f.Source != "" {
			what = fmt.Sprintf("%s of %s (%s)", f.ID[:12], f.Source, f.Time.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(c.App.ErrWriter, "recall: not copied: point %s: %s\n", what, f.Error)
	}
	if !c.Bool("json") && pr.text() {
		for _, p := range rep.Forgotten {
			fmt.Fprintf(c.App.Writer, "not copied: point %s of %s (%s) was forgotten at the source while the copy ran\n", p.ID[:12], cell(p.Source), p.Time.UTC().Format(time.RFC3339))
		}
	}
	if c.Bool("json") {
		pr.Summary(rep)
		return err
	}
	if pr.text() {
		out := c.App.Writer
		if rep.Created {
			fmt.Fprintf(out, "made store %s with the keys of %s\n", rep.To, rep.From)
		}
		how := ""
		if rep.Sealed {
			how = " (sealed: no passphrase given)"
		}
		fmt.Fprintf(out, "copied %d points from %s to %s%s: %d blobs, %s in %d packs; skipped %d blobs (%s) and %d points the destination had; %s\n",
			len(rep.Points), rep.From, rep.To, how, rep.Blobs, human(rep.Bytes), rep.Packs, rep.SkippedBlobs, human(rep.SkippedBytes), rep.Present,
			time.Duration(rep.Seconds*float64(time.Second)).Round(time.Millisecond))
		if c.Bool("verbose") {
			for _, p := range rep.Points {
				fmt.Fprintf(out, "copied point %s of %s (%s)\n", p.ID, cell(p.Source), p.Time.UTC().Format(time.RFC3339))
			}
		}
	}
	if err != nil && len(rep.Failed) > 0 {
		return err // it says what to do already
	}
	if err != nil {
		return fmt.Errorf("%w; run 'recall verify --read-data' on %s, 'recall repair packs' there, and copy again", err, rep.From)
	}
	return nil
}

// copyError says what a copy stopped by a full destination keeps there:
// the packs written whole before it filled are journaled, and the next
// copy's session adopts them.
func copyError(err error) error {
	if !errors.Is(err, backend.ErrNoSpace) {
		return err
	}
	return &rewordedError{msg: err.Error() + "; the packs this copy finished stay there and the next copy reuses them, so run it again once there is room", err: err}
}

// rewordedError says msg and wraps err, whose kind gives the exit code.
type rewordedError struct {
	msg string
	err error
}

func (e *rewordedError) Error() string { return e.msg }
func (e *rewordedError) Unwrap() error { return e.err }

// parseSince reads --since: an RFC 3339 time or a date (midnight UTC).
func parseSince(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Parse(time.DateOnly, s)
}
