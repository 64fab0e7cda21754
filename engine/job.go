package engine

import (
	"errors"
	"path/filepath"
	"time"
)

// A home is the server's state directory: the store and the catalog.

// CatalogPath is where a home keeps its catalog.
func CatalogPath(home string) string { return filepath.Join(home, "catalog.db") }

// WithCatalog opens the catalog of home for one short transaction,
// waiting up to wait for another process to close it, and runs fn. What
// the catalog did on its own (a damaged file moved aside) goes to warn.
func WithCatalog(home string, wait time.Duration, warn func(format string, args ...any), fn func(*Catalog) error) error {
	if err := RequireStore(home); err != nil {
		return err
	}
	return withCatalogFile(home, wait, warn, fn)
}

// withCatalogFile is WithCatalog once home is known to be recall's.
func withCatalogFile(home string, wait time.Duration, warn func(format string, args ...any), fn func(*Catalog) error) error {
	cat, err := OpenCatalog(CatalogPath(home), wait)
	if err != nil {
		return err
	}
	defer cat.Close()
	err = fn(cat)
	for _, n := range cat.Notes() {
		warn("%s", n)
	}
	return err
}

// end records how j ended: ok, warnings (err wraps ErrWarnings), skipped
// (ErrNotSettled: an image still being written) or failed, with the
// error.
func (j *Job) end(err error) {
	j.Finished = time.Now().UTC()
	switch {
	case err == nil:
		j.Status = "ok"
	case errors.Is(err, ErrWarnings):
		j.Status = "warnings"
	case errors.Is(err, ErrNotSettled):
		// An ingestion that found WSB writing: no failure, nothing done.
		j.Status, j.Error = "skipped", err.Error()
	case interruptedBy(err):
		// Stopped by a signal (Ctrl-C, SIGTERM), as a job whose process
		// died or that its server stopped shows: not a failure of it.
		j.Status, j.Error = "interrupted", err.Error()
	default:
		j.Status = "failed"
		j.Error = err.Error()
	}
}

// interruptedBy reports whether err is (or wraps) the cause a command
// stopped by a signal gives its context: one that says so with an
// Interrupted method (the command line's).
func interruptedBy(err error) bool {
	var ie interface{ Interrupted() bool }
	return errors.As(err, &ie) && ie.Interrupted()
}

// jobRecordWait is how long recording a job waits for another process to
// close the catalog, which is only ever held for one short transaction.
// Recording is best-effort: history is not worth delaying a restore.
const jobRecordWait = 2 * time.Second

// startJob records j as running in the catalog of home and returns the
// function that records how it ended: ok, warnings (err wraps
// ErrWarnings) or failed, with the point it made, if any. A catalog that
// cannot be opened is reported to warn and the job runs anyway: the
// history is worth less than the backup. A home with no store records
// nothing; the job's own open of the store says so.
func startJob(home string, j *Job, warn func(format string, args ...any)) (finish func(p *Point, err error)) {
	j.Started = time.Now().UTC()
	if RequireStore(home) != nil {
		return func(*Point, error) {}
	}
	if err := WithCatalog(home, jobRecordWait, warn, func(cat *Catalog) error { return cat.StartJob(j) }); err != nil {
		warn("job not recorded in the catalog: %v", err)
		return func(*Point, error) {}
	}
	return func(p *Point, err error) {
		j.end(err)
		if p != nil {
			j.Point, j.Stats, j.Warnings = p.ID.String(), &p.Stats, len(p.Errors)
			j.Source = p.Source
		}
		if cerr := WithCatalog(home, jobRecordWait, warn, func(cat *Catalog) error { return cat.FinishJob(j) }); cerr != nil {
			warn("job result not recorded in the catalog: %v", cerr)
		}
	}
}

// RunJob runs fn as a job of home's catalog: recorded when it starts and
// when it ends, with the point fn made.
func RunJob(home string, j *Job, warn func(format string, args ...any), fn func() (*Point, error)) (*Point, error) {
	finish := startJob(home, j, warn)
	p, err := fn()
	finish(p, err)
	return p, err
}
