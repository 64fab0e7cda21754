package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
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
//
// WSB's next run may start at any moment, and nothing on the share says
// when it does. So the tree is looked at three times: to decide, again
// once the store's lock is held (the wait may be long), and once the
// files are read, before the point is committed; the looks compare the
// image's print (wsb.Image.Print: the name, size, write and change time
// of each file the point holds) and a change makes no point (ErrChanged).
// The print of the tree ingested is recorded (Source.IngestedPrint), so
// the same Backup folder written again is a new image, and the same tree
// is nothing new. Backup folders other than the newest (left by a run
// that broke off) are excluded from the point: it holds one backup.

// Ingestion outcomes that make no point and are no failure: the caller
// says so and waits for WSB's next run.
var (
	// ErrNothingNew: the newest Backup folder is the one already ingested.
	ErrNothingNew = errors.New("nothing new to ingest")
	// ErrNotSettled: something was written within the settle time; WSB
	// may still be writing.
	ErrNotSettled = errors.New("image not settled")
	// ErrChanged: the tree changed between the looks of one ingestion;
	// no point was made, and the next look tries again. It wraps
	// ErrNotSettled: WSB was writing.
	ErrChanged = fmt.Errorf("%w: WSB wrote into the share during the ingestion", ErrNotSettled)
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
	// ingested, its print and the image size (RecordIngested); the job is the caller's
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
// tree unreadable, the image already ingested (ErrNothingNew), a write
// within settle (ErrNotSettled), another computer's folder (wraps
// ErrOtherComputer) or an incomplete image (wsb.ErrIncomplete, naming
// every missing part). The image is returned with every error but the
// first. Settling comes before the other computer's folder: while WSB
// writes, the share is not judged.
//
// A write time after now (the writer's clock ahead, or set by hand)
// counts as the time of the first look, in this process, that saw the
// tree as it is now (same print): the image settles one settle time
// after that look, by this clock.
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
	im, err := inspect(src)
	if err != nil {
		return nil, err
	}
	// The newest Backup folder is named when WSB starts writing it, so
	// the tree ingested last, as it was, means nothing new, whatever is
	// written next to it (another computer's folder is judged when its
	// own image comes).
	if src.IngestedPrint != "" && im.Print == src.IngestedPrint ||
		src.IngestedPrint == "" && src.Ingested != "" && im.Backup == src.Ingested {
		return im, fmt.Errorf("source %s: %w: %s/%s/%s is the backup ingested last", src.Name, ErrNothingNew, wsb.Dir, im.Computer, im.Backup)
	}
	if !im.LastWrite.IsZero() && settle > 0 {
		last, ahead := im.LastWrite, ""
		if last.After(now) {
			seen := firstSeen(src, im.Print, now)
			ahead = fmt.Sprintf(" (a write time is %s ahead of this server's clock: the settle time counts from %s, when this process first saw the tree as it is; a command run alone sees it first each time: give --settle 0s once WSB has finished)",
				shortSpan(last.Sub(now).Round(time.Second)), seen.Format(time.DateTime))
			last = seen
		}
		if age := now.Sub(last); age < settle {
			return im, fmt.Errorf("source %s: %w: last write %s ago%s; WSB may still be writing; settle time %s (try again later, or give --settle)",
				src.Name, ErrNotSettled, shortSpan(age.Round(time.Second)), ahead, shortSpan(settle))
		}
	}
	if len(im.Others) > 0 {
		var errs []error
		for _, o := range im.Others {
			errs = append(errs, fmt.Errorf("%s/%s: %w of source %s (computer %s) in %s; one share per computer: give %s its own source with 'recall source add NAME --kind %s --computer %s', and move its folder away",
				wsb.Dir, o, ErrOtherComputer, src.Name, src.Computer, src.Staging, o, src.Kind, o))
		}
		return im, errors.Join(errs...)
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

// inspect reads src's staging tree.
func inspect(src Source) (*wsb.Image, error) {
	im, err := wsb.Inspect(os.DirFS(src.Staging), src.Computer)
	if err != nil {
		return nil, fmt.Errorf("source %s: read %s: %w", src.Name, src.Staging, err)
	}
	return im, nil
}

// looks remembers, per staging tree, the print of the last look and when
// a look first saw it: the clock of a tree whose write times are in the
// future. One entry per tree: a new print replaces it.
var looks = struct {
	sync.Mutex
	m map[string]look
}{m: map[string]look{}}

type look struct {
	print string
	at    time.Time
}

// firstSeen returns when a look first saw src's tree with print, now if
// this is the first.
func firstSeen(src Source, print string, now time.Time) time.Time {
	key := src.Staging + "\x00" + src.Computer
	looks.Lock()
	defer looks.Unlock()
	if l, ok := looks.m[key]; ok && l.print == print && !l.at.After(now) {
		return l.at
	}
	looks.m[key] = look{print, now}
	return now
}

// changed is the error of an ingestion whose tree changed between two
// looks (when says which).
func changed(src Source, when string) error {
	return fmt.Errorf("source %s: %w (%s): no point was made; the next look ingests the image once it is complete and settled",
		src.Name, ErrChanged, when)
}

// strayBackups returns exclude patterns for the Backup folders of src's
// computer other than the newest (a run that broke off while replacing
// the previous one leaves both): a point holds one backup, the one its
// recovery share and wbadmin get versions show.
func strayBackups(src Source, im *wsb.Image) ([]string, error) {
	dir := filepath.Join(src.Staging, wsb.Dir, im.Computer)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", src.Name, err)
	}
	var out []string
	for _, e := range ents {
		if _, ok := wsb.BackupTime(e.Name()); ok && e.IsDir() && e.Name() != im.Backup {
			out = append(out, "/"+globQuote(wsb.Dir)+"/"+globQuote(im.Computer)+"/"+globQuote(e.Name())+"/")
		}
	}
	return out, nil
}

// globQuote escapes name's glob characters (a computer's name may hold
// braces) for an exclude pattern.
func globQuote(name string) string {
	var b strings.Builder
	for _, r := range name {
		if strings.ContainsRune(`\*?[]{}!`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// checkImages checks each image file of im as a VHDX and returns, for
// each one that is not valid, a warning to record in the point: the bytes
// are ingested all the same (WSB's files are what a recovery gives back,
// whatever recall thinks of them). An image file cut short (its blocks
// lie past its end: a transfer that broke off, a full share) is an
// incomplete image, never taken: that is the error, wrapping
// wsb.ErrIncomplete, and no point is made.
func checkImages(src Source, im *wsb.Image) ([]PathError, error) {
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
		if errors.Is(err, wsb.ErrIncomplete) {
			return nil, fmt.Errorf("source %s: %s: %w; no point is made of it: the transfer broke off or the share filled (check its free space); WSB's next run on %s writes a whole image", src.Name, rel, err, src.Computer)
		}
		if err != nil {
			out = append(out, PathError{Path: rel, Error: fmt.Sprintf("%v; ingested as it is: check the backup on %s (wbadmin get versions) and run it again", err, src.Computer)})
		}
	}
	return out, nil
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
	first, err := InspectSource(src, o.Settle, now())
	if err != nil {
		return nil, first, err
	}
	sess, err := s.Session(ctx, SessionOptions{Purpose: "ingestion of " + src.Staging + " (source " + src.Name + ")", Source: src.Name, Blobs: true, LockOptions: o.Lock})
	if err != nil {
		return nil, first, err
	}
	defer sess.Close()
	// The wait for the lock may have been long: WSB's next run may have
	// replaced the Backup folder meanwhile, or another ingestion of the
	// source (the server's, a command's) taken this image.
	if o.Home != "" {
		if err := WithCatalog(o.Home, time.Minute, o.Warn, func(cat *Catalog) error {
			x, err := cat.Source(src.Name)
			if err == nil {
				src.Ingested, src.IngestedPrint = x.Ingested, x.IngestedPrint
			}
			return err
		}); err != nil {
			return nil, first, err
		}
	}
	im, err := InspectSource(src, o.Settle, now())
	if err != nil {
		return nil, im, err
	}
	if im.Print != first.Print {
		return nil, im, changed(src, "while waiting for the store's lock")
	}
	stray, err := strayBackups(src, im)
	if err != nil {
		return nil, im, err
	}
	flagged, err := checkImages(src, im)
	if err != nil {
		return nil, im, err
	}
	bo := o.Backup
	bo.Path, bo.Source, bo.Flagged = src.Staging, src.Name, flagged
	bo.Exclude = Exclude{Patterns: stray}
	bo.beforeCommit = func() error {
		after, err := inspect(src)
		if err != nil {
			return err
		}
		if after.Print != im.Print {
			return changed(src, "while its files were read")
		}
		return nil
	}
	p, err := Backup(ctx, sess, bo)
	if p == nil {
		return nil, im, err
	}
	if o.Home != "" {
		if rerr := WithCatalog(o.Home, time.Minute, o.Warn, func(cat *Catalog) error {
			return cat.RecordIngested(src.Name, im.Backup, im.Print, im.Size)
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
