package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/recall-backup/recall/engine/wsb"
)

// Ingestion makes a point of a registered source's staging tree once WSB
// has finished writing an image there: the newest Backup folder complete,
// nothing written for the settle time, and not the one already ingested.
// The point is an ordinary backup of the staging directory under the
// source's name (same session, job record and progress as any backup), so
// the .vhdx files deduplicate against the previous image's chunks and the
// point's root holds WindowsImageBackup, what a recovery share serves.
// The staging tree is left as it is: WSB's next run reads its catalog and
// replaces its Backup folder.

// Ingestion outcomes that make no point and are no failure: the caller
// says so and waits for WSB's next run.
var (
	// ErrNothingNew: the newest Backup folder is the one already ingested.
	ErrNothingNew = errors.New("nothing new to ingest")
	// ErrNotSettled: something was written within the settle time; WSB
	// may still be writing.
	ErrNotSettled = errors.New("image not settled")
)

// ErrOtherComputer: a computer other than the source's wrote into its
// staging share; refused, as one share belongs to one computer.
var ErrOtherComputer = errors.New("another computer wrote into the share")

// NoSettle as a settle time takes an image as soon as it is complete,
// however recent its last write (`recall backup --source NAME --settle 0s`,
// for an administrator who knows WSB has finished).
const NoSettle time.Duration = -1

// IngestOptions configure Ingest.
type IngestOptions struct {
	// Home's catalog records, once the point is made, the Backup folder
	// ingested and the image size (EditSource); the job is the caller's
	// (RunJob, BackupGroup). "" records nothing; then src.Ingested alone
	// says what was ingested before.
	Home string
	// Settle overrides the source's settle time for this run (0: the
	// source's; NoSettle: none, the image is taken once complete).
	Settle time.Duration
	// Backup carries the rest of the backup's options (clock, log,
	// progress, group, schedule, compression, limiter); Path, Source and
	// Flagged are Ingest's.
	Backup BackupOptions
	Lock   LockOptions
	// Warn receives what could not be recorded in the catalog.
	Warn func(format string, args ...any)
}

// InspectSource reads src's staging tree and says whether it holds an
// image to ingest: the image, or an error that is, in this order, the
// tree unreadable, another computer's folder (wraps ErrOtherComputer),
// the image already ingested (ErrNothingNew), a write within settle
// (ErrNotSettled) or an incomplete image (wsb.ErrIncomplete, naming
// every missing part). The image is returned with every error but
// the first.
func InspectSource(src Source, settle time.Duration, now time.Time) (*wsb.Image, error) {
	switch {
	case settle < 0:
		settle = 0 // NoSettle
	case settle == 0 && src.Settle > 0:
		settle = src.Settle
	case settle == 0:
		settle = DefaultSettle
	}
	if fi, err := os.Stat(src.Staging); err != nil {
		return nil, fmt.Errorf("staging directory of source %s: %w (create it, or set another with 'recall source edit %s --staging DIR')", src.Name, err, src.Name)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("staging directory %s of source %s is not a directory (set another with 'recall source edit %s --staging DIR')", src.Staging, src.Name, src.Name)
	}
	im, err := wsb.Inspect(os.DirFS(src.Staging), src.Computer)
	if err != nil {
		return nil, fmt.Errorf("source %s: read %s: %w", src.Name, src.Staging, err)
	}
	if len(im.Others) > 0 {
		var errs []error
		for _, o := range im.Others {
			errs = append(errs, fmt.Errorf("%s/%s: %w of source %s (computer %s) in %s; one share per computer: give %s its own source with 'recall source add NAME --kind %s --computer %s', and move its folder away",
				wsb.Dir, o, ErrOtherComputer, src.Name, src.Computer, src.Staging, o, src.Kind, o))
		}
		return im, errors.Join(errs...)
	}
	// The newest Backup folder is named when WSB starts writing it, so
	// one already ingested means nothing new, whatever else is written.
	if src.Ingested != "" && im.Backup == src.Ingested {
		return im, fmt.Errorf("source %s: %w: %s/%s/%s is the backup ingested last", src.Name, ErrNothingNew, wsb.Dir, im.Computer, im.Backup)
	}
	if !im.LastWrite.IsZero() && settle > 0 {
		if age := now.Sub(im.LastWrite); age < settle {
			return im, fmt.Errorf("source %s: %w: last write %s ago; WSB may still be writing; settle time %s (try again later, or give --settle)",
				src.Name, ErrNotSettled, shortSpan(age.Round(time.Second)), shortSpan(settle))
		}
	}
	if err := im.Err(); errors.Is(err, wsb.ErrNoImage) {
		return im, fmt.Errorf("source %s (%s): %w; no point was made: share the directory with 'recall share bmr-target --source %s' and run the backup on %s to it (wbadmin start backup)",
			src.Name, src.Staging, err, src.Name, src.Computer)
	} else if err != nil {
		return im, fmt.Errorf("source %s (%s): %w; no point was made: run the backup on %s again (wbadmin start backup) and check the share has room for it",
			src.Name, src.Staging, err, src.Computer)
	}
	return im, nil
}

// checkImages checks each image file of im as a VHDX and returns, for
// each one that is not valid, a warning to record in the point: the bytes
// are ingested all the same (WSB's files are what a recovery gives back,
// whatever recall thinks of them).
func checkImages(src Source, im *wsb.Image) []PathError {
	var out []PathError
	for _, f := range im.Images {
		rel := path.Join(wsb.Dir, im.Computer, f.Name)
		if !strings.HasSuffix(strings.ToLower(f.Name), ".vhdx") {
			continue // a .vhd has no header to check
		}
		err := func() error {
			fh, err := os.Open(filepath.Join(src.Staging, filepath.FromSlash(rel)))
			if err != nil {
				return err
			}
			defer fh.Close()
			return wsb.CheckVHDX(fh, f.Size)
		}()
		if err != nil {
			out = append(out, PathError{Path: rel, Error: fmt.Sprintf("%v; ingested as it is: check the backup on %s (wbadmin get versions) and run it again", err, src.Computer)})
		}
	}
	return out
}

// Ingest makes a point of src's staging tree if InspectSource finds an
// image to ingest (else it returns its error and no point; nothing is
// written to the store), then records the Backup folder ingested and the
// image size in the catalog. An image file that is not a valid VHDX is
// ingested with a warning: the error then wraps ErrWarnings, as a backup
// that flagged entries. The image is returned whenever it was read.
func (s *Store) Ingest(ctx context.Context, src Source, o IngestOptions) (*Point, *wsb.Image, error) {
	now := time.Now
	if o.Backup.Now != nil {
		now = o.Backup.Now
	}
	if o.Warn == nil {
		o.Warn = func(string, ...any) {}
	}
	im, err := InspectSource(src, o.Settle, now())
	if err != nil {
		return nil, im, err
	}
	bo := o.Backup
	bo.Path, bo.Source, bo.Flagged = src.Staging, src.Name, checkImages(src, im)
	sess, err := s.Session(ctx, SessionOptions{Purpose: "ingestion of " + src.Staging + " (source " + src.Name + ")", Source: src.Name, Blobs: true, LockOptions: o.Lock})
	if err != nil {
		return nil, im, err
	}
	defer sess.Close()
	p, err := Backup(ctx, sess, bo)
	if p == nil {
		return nil, im, err
	}
	if o.Home != "" {
		if rerr := WithCatalog(o.Home, time.Minute, o.Warn, func(cat *Catalog) error {
			_, err := cat.EditSource(src.Name, func(x *Source) error {
				x.Ingested, x.ImageSize = im.Backup, im.Size
				return nil
			})
			return err
		}); rerr != nil {
			o.Warn("point %s of source %s made, but the catalog did not record it as ingested (%v): the next run ingests %s again, which adds nothing to the store", p.ID.Short(), src.Name, rerr, im.Backup)
		}
	}
	return p, im, err
}

// shortSpan prints d as a person writes it: 2m, 1h30m, 20s.
func shortSpan(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
