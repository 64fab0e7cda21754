package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/engine/wsb"
	"github.com/recall-backup/recall/internal/atomicfile"
)

// AlertsFile is where the server keeps, in its home, the active alerts.
// Version 1, replaced atomically (temp file, fsync, rename) at each
// change; pinned by testdata/alerts-v1.golden:
//
//	{
//	  "version": 1,             format version; another one is refused
//	  "next_id": N,             the id the next alert gets (ids are never reused)
//	  "alerts": [               the active alerts, oldest first
//	    {
//	      "id": N,
//	      "job": "backup",      kind of the job that failed: backup, prune, gc, check, mount, tape;
//	                            or "image": a registered source's newest image is overdue;
//	                            or "clock": the clock was set back behind the group's schedule;
//	                            or "catalog": the catalog was damaged and replaced (until acked)
//	      "group": "g",         absent for gc
//	      "source": "s",        for a backup: the member's source; for a mount: its path
//	      "member": "/path",    for a backup: the member's path
//	      "error": "...",       the latest failure's message
//	      "action": "...",      what to do about it
//	      "since": "<RFC 3339>",  the first failure (the server's clock)
//	      "last": "<RFC 3339>",   the latest failure
//	      "count": N,           failures since it opened
//	      "catalog_job": N      the catalog's number of the latest failed job (absent: none)
//	    }
//	  ]
//	}
//
// Cleared and acked alerts are dropped from the file (the log and the
// notifications keep their history). Losing the file loses only the
// open alerts: the next failure opens them again.
const AlertsFile = "alerts.json"

const alertsVersion = 1

// ErrNoAlert: no active alert has the id given.
var ErrNoAlert = errors.New("no such active alert")

// Alert is one active alert: a condition that made jobs fail, open until
// a later job of the same kind on the same group and source succeeds or
// someone acknowledges it.
type Alert struct {
	ID  uint64 `json:"id"`
	Job string `json:"job"` // the kind of job that failed: backup, prune, gc, check, mount, tape; image: no new image; clock: set back

	Group  string `json:"group,omitempty"`  // "" for gc
	Source string `json:"source,omitempty"` // for a backup: the member's source
	Member string `json:"member,omitempty"` // for a backup: the member's path
	// Error is the latest failure's message; Action says what to do.
	Error  string    `json:"error"`
	Action string    `json:"action"`
	Since  time.Time `json:"since"` // the first failure
	Last   time.Time `json:"last"`  // the latest failure
	Count  int       `json:"count"` // failures since it opened
	// CatalogJob is the catalog's number of the latest failed job (0
	// when the job was not recorded).
	CatalogJob uint64 `json:"catalog_job,omitempty"`
}

// key is what makes two failures the same alert.
// memberGone reports whether a member's path is not there (a member that
// is there failed on something else it needs, which the error names).
func memberGone(m string) bool {
	_, err := os.Lstat(m)
	return errors.Is(err, os.ErrNotExist)
}

func (a *Alert) key() string { return a.Job + "\x00" + a.Group + "\x00" + a.Source }

// AlertEvent is what Options.OnAlert hears: an alert opened (its first
// failure), cleared (a later job succeeded) or acked (someone said they
// know). A repeated failure of an open alert is no event: it changes
// only Count and Last.
type AlertEvent struct {
	Kind  string // opened, cleared, acked
	Alert Alert
	// Reason says why an alert was cleared without a good job: its
	// subject is gone (a group deleted, a member taken out, a mount no
	// longer configured). "": a later job succeeded, or an ack.
	Reason string
}

// alerts is the set of active alerts, kept in <home>/alerts.json.
type alerts struct {
	path string
	mu   sync.Mutex
	file alertsFile
}

type alertsFile struct {
	Version int      `json:"version"`
	Next    uint64   `json:"next_id"`
	Alerts  []*Alert `json:"alerts"`
}

func loadAlerts(home string) (*alerts, error) {
	a := &alerts{path: filepath.Join(home, AlertsFile), file: alertsFile{Version: alertsVersion, Next: 1, Alerts: []*Alert{}}}
	b, err := os.ReadFile(a.path)
	if errors.Is(err, os.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read alerts: %w", err)
	}
	if err := json.Unmarshal(b, &a.file); err != nil {
		return nil, fmt.Errorf("alerts %s: %w (remove it: the active alerts are forgotten, and open again at the next failure)", a.path, err)
	}
	if a.file.Version != alertsVersion {
		return nil, fmt.Errorf("alerts %s have version %d; this recall knows %d (run the recall that wrote them, or remove the file)", a.path, a.file.Version, alertsVersion)
	}
	if a.file.Alerts == nil {
		a.file.Alerts = []*Alert{}
	}
	return a, nil
}

func (a *alerts) encode() []byte {
	b, _ := json.MarshalIndent(&a.file, "", "  ")
	return append(b, '\n')
}

// save replaces the file atomically; a.mu is held.
func (a *alerts) save() error {
	return atomicfile.Write(a.path, a.encode(), 0o644)
}

// List returns a copy of the active alerts, oldest first.
func (a *alerts) list() []Alert {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Alert, 0, len(a.file.Alerts))
	for _, x := range a.file.Alerts {
		out = append(out, *x)
	}
	return out
}

// fail records a failure of the job described by f at now: a new alert,
// or one more of an open one. It returns the event to send, if any.
func (a *alerts) fail(f Alert, err error, now time.Time) (*AlertEvent, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f.Error, f.Action = err.Error(), suggest(&f, err)
	for _, x := range a.file.Alerts {
		if x.key() == f.key() {
			x.Count++
			x.Last, x.Error, x.Action, x.CatalogJob, x.Member = now, f.Error, f.Action, f.CatalogJob, f.Member
			return nil, a.save()
		}
	}
	f.ID, f.Since, f.Last, f.Count = a.file.Next, now, now, 1
	a.file.Next++
	a.file.Alerts = append(a.file.Alerts, &f)
	return &AlertEvent{Kind: "opened", Alert: f}, a.save()
}

// succeed clears the alert of the job described by f, if one is open.
func (a *alerts) succeed(f Alert) (*AlertEvent, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, x := range a.file.Alerts {
		if x.key() == f.key() {
			a.file.Alerts = slices.Delete(a.file.Alerts, i, i+1)
			return &AlertEvent{Kind: "cleared", Alert: *x}, a.save()
		}
	}
	return nil, nil
}

// clearIf clears the alert of the job described by f, if one is open and
// match says it is the one to clear.
func (a *alerts) clearIf(f Alert, match func(*Alert) bool) (*AlertEvent, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, x := range a.file.Alerts {
		if x.key() == f.key() && match(x) {
			a.file.Alerts = slices.Delete(a.file.Alerts, i, i+1)
			return &AlertEvent{Kind: "cleared", Alert: *x}, a.save()
		}
	}
	return nil, nil
}

// closeGone clears every alert for which gone gives a reason (its subject
// no longer exists): such an alert could never clear by itself, no job
// of its subject being left to succeed.
func (a *alerts) closeGone(gone func(*Alert) string) ([]AlertEvent, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var evs []AlertEvent
	a.file.Alerts = slices.DeleteFunc(a.file.Alerts, func(x *Alert) bool {
		why := gone(x)
		if why != "" {
			evs = append(evs, AlertEvent{Kind: "cleared", Alert: *x, Reason: why})
		}
		return why != ""
	})
	if len(evs) == 0 {
		return nil, nil
	}
	return evs, a.save()
}

// ack closes alert id: the condition is known; if it persists, the next
// failure opens a new alert.
func (a *alerts) ack(id uint64) (*AlertEvent, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, x := range a.file.Alerts {
		if x.ID == id {
			a.file.Alerts = slices.Delete(a.file.Alerts, i, i+1)
			return &AlertEvent{Kind: "acked", Alert: *x}, a.save()
		}
	}
	return nil, fmt.Errorf("alert %d: %w (list them with 'recall alerts')", id, ErrNoAlert)
}

// suggest says what to do about err, the failure of the job f describes.
func suggest(f *Alert, err error) string {
	switch {
	case f.Job == "tape":
		return "group " + f.Group + "'s tape goal was not written (the error says why: most often no cartridge of its pool, nor a blank one, is in the library, or one is write-protected): 'recall tape inventory' shows the slots; insert a cartridge, and the server tries again within the hour"
	case f.Job == "image":
		return "Windows Server Backup has written no new image to source " + f.Source + "'s share for longer than group " + f.Group + "'s schedule allows (the error says since when): check the scheduled backup on the Windows side (wbadmin get versions, the task's history), the share's free space and the WSB user's password; the alert clears once a new image is ingested"
	case f.Job == "catalog":
		return "the catalog was damaged and moved aside (the error names both files): the protection groups, registered sources and tape media catalog it held are gone, so the server runs no group until they are back: re-create them ('recall apply -f groups.toml', 'recall source add', 'recall tape catalog'), then ack this alert ('recall alerts ack ID'); every recovery point is still in the store"
	case f.Job == "clock":
		return "the server's clock was set back (NTP correcting a clock that was ahead at boot?): group " + f.Group + "'s schedule resumed from the clock, so the runs between the clock and the time recorded are made, not skipped. Points made while the clock was ahead carry times ahead of it, and prune keeps them (rule future) until the clock passes them. Check the clock ('timedatectl', the hardware clock, NTP); the alert clears at the group's next backup that makes its points"
	case f.Job == "mount" && errors.Is(err, chunkstore.ErrWrongPassword):
		// The server's own jobs go on with the key they hold; only a new
		// mount server needs the passphrase.
		return "the recovery tree at " + f.Source + " is not mounted because the store's passphrase changed ('recall key passwd') and the one the server has no longer opens it: put the new passphrase where the error says the server reads it (a password file, what the password command prints), and the server uses it at its next attempt; a passphrase in RECALL_PASSWORD or typed at the start needs a restart of the server. Backups go on meanwhile; the alert clears once the tree is mounted"
	case f.Job == "mount" && err != nil && strings.Contains(err.Error(), "is not empty"):
		return "the recovery tree at " + f.Source + " is not mounted because the directory holds files (the error names some): move them elsewhere, or give the [[mount]] an empty directory in the server's config; the server keeps trying, and the alert clears once it is mounted"
	case f.Job == "mount":
		return "the recovery tree at " + f.Source + " is not mounted: the error says why, and the server's log has the mount server's own words (is /dev/fuse there? is something else mounted there?); the server keeps trying, and the alert clears once it is mounted"
	case errors.Is(err, chunkstore.ErrLocked):
		// The lock error names the holder: pid, host, purpose, since.
		return "another process holds the store lock (the error names it): wait for it to finish, or stop it if it hangs; the server retries"
	case errors.Is(err, engine.ErrCatalogBusy):
		return "another recall process holds the catalog: wait for it, or stop it if it hangs; the server retries"
	case errors.Is(err, syscall.ENOSPC):
		return "the store's file system is full: free space on it, or shorten retention ('recall group edit " + f.Group + " --retention ...') and run 'recall prune' and 'recall gc'"
	case errors.Is(err, os.ErrNotExist) && strings.Contains(err.Error(), "exclude file"):
		return fmt.Sprintf("an exclude file of group %s is missing (the error names it): put it back, or drop it from the group's policy ('recall group edit %s --exclude-file ...', or apply a groups file without it); the next run tries again", f.Group, f.Group)
	case errors.Is(err, os.ErrNotExist) && f.Member != "" && memberGone(f.Member):
		return fmt.Sprintf("member %s is gone: restore or remount it, or take it out of the group with 'recall group remove %s --member %s'", f.Member, f.Group, f.Member)
	case errors.Is(err, os.ErrPermission):
		return "permission denied: recall serve must run as root to read every file"
	case errors.Is(err, engine.ErrVerifyIncomplete):
		return "the check could not read some packs, so they were not verified, and nothing was found damaged: 'recall verify --read-data' names each with why. Refused (permission denied): give recall serve (root) read access to the store's files again. Read failed (input/output error): check the disk or file system under the store (the kernel log names the device). Not 'recall repair packs': that is for damaged packs"
	case errors.Is(err, engine.ErrVerifyFailed):
		return checkAction(f)
	case errors.Is(err, engine.ErrWarnings):
		return "the point was made but entries were skipped or damaged: see the job's errors with 'recall jobs'"
	case errors.Is(err, engine.ErrOtherComputer):
		return "another computer's folder is in source " + f.Source + "'s staging share (the error names it): give that computer a source and a share of its own, and move its folder away; the server ingests again once it is gone"
	case errors.Is(err, wsb.ErrIncomplete):
		return "Windows Server Backup's image in source " + f.Source + "'s staging share is incomplete (the error names what is missing): run the backup on the Windows side again (wbadmin start backup) and check the share's free space; the server ingests it by itself once it is complete, and the alert clears"
	}
	if f.CatalogJob != 0 {
		return fmt.Sprintf("see job %d in 'recall jobs'; fix the cause, then run 'recall backup --group %s' or wait for the next run", f.CatalogJob, f.Group)
	}
	return "see the server's log; the next scheduled run tries again"
}

// noteJob opens, counts or clears the alerts a finished job decides; it
// returns the events to send.
func (a *alerts) noteJob(e Event, now time.Time) ([]AlertEvent, error) {
	var evs []AlertEvent
	var errs []error
	add := func(ev *AlertEvent, err error) {
		if ev != nil {
			evs = append(evs, *ev)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if e.Job == "backup" && result(e.Err) != "failed" && result(e.Err) != "interrupted" && len(e.Results) > 0 {
		// Backups go on after a clock set back (clockback.go).
		add(a.succeed(Alert{Job: "clock", Group: e.Group}))
	}
	if e.Job != "backup" {
		f := Alert{Job: e.Job, Group: e.Group}
		if e.Err != nil && !stopped(e.Err) {
			add(a.fail(f, e.Err, now))
		} else if e.Err == nil {
			add(a.succeed(f))
		}
		return evs, errors.Join(errs...)
	}
	for _, r := range e.Results {
		f := Alert{Job: "backup", Group: e.Group, Source: r.Source, Member: r.Member, CatalogJob: r.Job}
		switch {
		case r.Point != nil:
			// A point with warnings still protects the source: the
			// condition that stopped backups is gone.
			add(a.succeed(f))
		case errors.Is(r.Err, engine.ErrNotSettled):
			// WSB wrote during the ingestion: no failure, and nothing
			// is cleared; the next look tries again.
		case r.Err != nil && !stopped(r.Err):
			add(a.fail(f, r.Err, now))
		}
	}
	if len(e.Results) == 0 && e.Err != nil && !stopped(e.Err) {
		// The group failed before any member ran (an invalid policy).
		add(a.fail(Alert{Job: "backup", Group: e.Group}, e.Err, now))
	}
	return evs, errors.Join(errs...)
}

// sendAlertEvent logs ev, an alert the server decided outside a job's
// end (mounts, images, the clock, subjects gone), and hands it to
// OnAlert; err is the failure to save the alerts, if any.
func (s *Server) sendAlertEvent(ev *AlertEvent, err error) {
	if err != nil {
		s.o.Log.Error("alerts not saved; they are kept in memory until the next save", "err", err)
	}
	if ev == nil {
		return
	}
	args := []any{"alert", ev.Alert.ID, "job", ev.Alert.Job, "group", ev.Alert.Group, "source", ev.Alert.Source, "action", ev.Alert.Action}
	if ev.Reason != "" {
		args = append(args, "why", ev.Reason)
	}
	s.o.Log.Warn("alert "+ev.Kind, args...)
	if s.o.OnAlert != nil {
		s.o.OnAlert(*ev)
	}
}

// closeAlertsGone clears the alerts whose subject the catalog no longer
// has (groups as tick read them): a deleted group's, a member's taken
// out of its group. Mounts are SuperviseMounts' to judge.
func (s *Server) closeAlertsGone(groups []engine.Group) {
	byName := map[string]*engine.Group{}
	for i := range groups {
		byName[groups[i].Name] = &groups[i]
	}
	evs, err := s.alerts.closeGone(func(a *Alert) string {
		if a.Group == "" || a.Job == "mount" {
			return ""
		}
		g := byName[a.Group]
		switch {
		case g == nil:
			return "group " + a.Group + " was deleted"
		case a.Job != "backup":
			return ""
		case a.Member != "" && !slices.Contains(g.Members, a.Member):
			return "member " + a.Member + " is no longer in group " + a.Group
		case a.Member == "" && a.Source != "" && !slices.Contains(g.Sources(), a.Source):
			return "source " + a.Source + " is no longer in group " + a.Group
		}
		return ""
	})
	s.sendAlertEvents(evs, err)
}

// sendAlertEvents is sendAlertEvent for several events.
func (s *Server) sendAlertEvents(evs []AlertEvent, err error) {
	if len(evs) == 0 {
		s.sendAlertEvent(nil, err)
	}
	for i := range evs {
		if i > 0 {
			err = nil
		}
		s.sendAlertEvent(&evs[i], err)
	}
}

// stopped reports whether err is the stop's cancellation: no failure of
// the thing the job protects.
func stopped(err error) bool {
	return errors.Is(err, ErrShutdown) || errors.Is(err, context.Canceled)
}

// result is what a finished job (or one member of it) came to, as the API,
// the log, the metrics and the notifications name it: "ok"; "warnings"
// when a point was made but entries were skipped (never when a member
// failed outright); "interrupted" when the server stopped it; else
// "failed".
func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case stopped(err):
		return "interrupted"
	case errors.Is(err, engine.ErrWarnings) && !errors.Is(err, engine.ErrMembersFailed):
		return "warnings"
	}
	return "failed"
}

// ReadAlerts returns the active alerts kept in home, oldest first: what
// 'recall alerts' shows when no server runs.
func ReadAlerts(home string) ([]Alert, error) {
	if err := engine.RequireStore(home); err != nil {
		return nil, err
	}
	a, err := loadAlerts(home)
	if err != nil {
		return nil, err
	}
	return a.list(), nil
}

// AckAlert closes alert id in home when no server runs: it takes the
// home as a server does (ErrHomeBusy when one runs: ask it instead).
func AckAlert(home string, id uint64) (Alert, error) {
	if err := engine.RequireStore(home); err != nil {
		return Alert{}, err
	}
	l, err := lockHome(home)
	if err != nil {
		return Alert{}, err
	}
	defer l.release()
	a, err := loadAlerts(home)
	if err != nil {
		return Alert{}, err
	}
	ev, err := a.ack(id)
	if ev == nil {
		return Alert{}, err
	}
	return ev.Alert, err
}
