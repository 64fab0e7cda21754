package server

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/recall-backup/recall/engine"
)

// SourceCheckInterval is how often the server looks into the staging tree
// of each registered source of a group: WSB writes when the Windows side
// schedules it, so the server notices a finished image within this much
// of its settle time, and each look is a directory listing and some stats.
const SourceCheckInterval = 30 * time.Second

// sourceWatch is what the server remembers of one registered source
// between two looks.
type sourceWatch struct {
	next time.Time // when to look again
	// failed is the state of the tree the last failing run was queued
	// for: an incomplete image fails once, opening an alert, not every 30
	// seconds. It is the Backup folder and the image's print, or, for
	// another computer's folder, the foreign folders' names (WSB writing
	// beside them changes nothing of that).
	failed string
	// overdue is the image (folder and print) the open "image" alert was
	// raised for: it is raised once per image, not at each look.
	overdue string
}

// tickSources looks into the staging tree of each registered member of
// groups that is due for a look (tick), and queues the member's backup
// job when it has a complete, settled image not yet ingested, or a
// settled one in a state no run has failed on yet (the job fails, naming
// what is missing, which opens an alert). An image still being written
// waits. wakeAt hears when the next look is due.
//
// Each look also opens the source's "image" alert when its newest image
// is older than the group's schedule allows (engine.ImageOverdue) and
// clears it when not, and clears an alert about another computer's
// folder once the folder is gone: with the image ingested already, no
// job would run to clear it. An "image" alert of a source it no longer
// watches in that group is cleared.
func (s *Server) tickSources(now time.Time, groups []engine.Group, sources []engine.Source, wakeAt func(time.Time)) {
	byName := map[string]engine.Source{}
	for _, src := range sources {
		byName[src.Name] = src
	}
	seen := map[string]bool{}
	for _, g := range groups {
		for member, name := range g.SourceOf {
			src, ok := byName[name]
			if !ok || src.Staging != member {
				continue
			}
			// One watch per source and group: a source moved to another
			// group is a new watch, whose overdue image is that group's
			// alert.
			key := g.Name + "\x00" + name
			seen[key] = true
			s.mu.Lock()
			w := s.watches[key]
			if w == nil {
				w = &sourceWatch{}
				s.watches[key] = w
			}
			due := !w.next.After(now)
			if due {
				w.next = now.Add(SourceCheckInterval)
			}
			next, failed := w.next, w.failed
			s.mu.Unlock()
			wakeAt(next)
			if !due {
				continue
			}
			s.noteOverdue(g, src, w, now)
			im, err := engine.InspectSource(src, 0, now)
			if im != nil && len(im.Others) == 0 {
				s.clearForeign(g.Name, src)
			}
			state := ""
			switch {
			case err == nil:
			case errors.Is(err, engine.ErrNothingNew), errors.Is(err, engine.ErrNotSettled):
				continue
			case errors.Is(err, engine.ErrOtherComputer) && im != nil:
				state = "others\x00" + strings.Join(im.Others, "\x00")
			case im != nil:
				state = im.Backup + "\x00" + im.Print
			default:
				state = err.Error()
			}
			if state != "" && state == failed {
				continue
			}
			rg := g
			rg.Members = []string{member}
			if !s.enqueue(&task{kind: "backup", group: rg}) {
				continue
			}
			if state != "" {
				s.o.Log.Warn("staging tree of a source is not ingestible: its backup job fails and says why", "group", g.Name, "source", name, "err", err)
				s.mu.Lock()
				w.failed = state
				s.mu.Unlock()
			} else {
				s.o.Log.Info("image ready: ingesting", "group", g.Name, "source", name, "backup", im.Backup)
			}
		}
	}
	s.mu.Lock()
	for key := range s.watches {
		if !seen[key] {
			delete(s.watches, key)
		}
	}
	s.mu.Unlock()
	// An image alert of a source no longer watched in its group (the
	// source removed, its group deleted, the source moved to another)
	// would stay open forever: no look clears it. The alerts kept from
	// before a restart are judged too.
	for _, a := range s.alerts.list() {
		if a.Job == "image" && !seen[a.Group+"\x00"+a.Source] {
			id := a.ID
			s.sendAlertEvent(s.alerts.clearIf(a, func(x *Alert) bool { return x.ID == id }))
		}
	}
}

// noteOverdue opens source src's "image" alert, once per image, when its
// newest image is older than g's schedule allows, and clears it when not.
func (s *Server) noteOverdue(g engine.Group, src engine.Source, w *sourceWatch, now time.Time) {
	f := Alert{Job: "image", Group: g.Name, Source: src.Name, Member: src.Staging}
	err := engine.ImageOverdue(src, g, now)
	image := src.Ingested + "\x00" + src.IngestedPrint
	s.mu.Lock()
	raised := w.overdue
	if err == nil {
		w.overdue = ""
	} else {
		w.overdue = image
	}
	s.mu.Unlock()
	switch {
	case err == nil:
		s.sendAlertEvent(s.alerts.succeed(f))
	case raised != image:
		s.sendAlertEvent(s.alerts.fail(f, err, now))
	}
}

// clearForeign clears the backup alert of src in group if it is about
// another computer's folder: a look found none.
func (s *Server) clearForeign(group string, src engine.Source) {
	f := Alert{Job: "backup", Group: group, Source: src.Name}
	s.sendAlertEvent(s.alerts.clearIf(f, func(a *Alert) bool {
		return strings.Contains(a.Error, engine.ErrOtherComputer.Error())
	}))
}

// BackupSource queues the ingestion of registered source name, a member
// of a group, now, as the member's backup job under the group's policy;
// settle, if not zero, overrides the source's settle time for this run.
// A backup of the group queued or running already is returned with an
// error wrapping ErrJobBusy, as Backup does.
func (s *Server) BackupSource(name string, settle time.Duration) (uint64, error) {
	var g engine.Group
	var src engine.Source
	err := engine.WithCatalog(s.o.Home, time.Minute, s.warn, func(cat *engine.Catalog) error {
		var err error
		if src, err = cat.Source(name); err != nil {
			return err
		}
		gs, err := cat.Groups()
		if err != nil {
			return err
		}
		for _, x := range gs {
			if x.SourceOf[src.Staging] == name {
				g = x
				return nil
			}
		}
		return fmt.Errorf("source %s is in no protection group, so the server does not ingest it: add it to one with 'recall group add GROUP --source %s'; 'recall backup --source %s' ingests it without the server", name, name, name)
	})
	if err != nil {
		return 0, err
	}
	rg := g
	rg.Members = []string{src.Staging}
	queued := s.enqueue(&task{kind: "backup", group: rg, settle: settle})
	id := s.activeBackup(g.Name)
	if !queued {
		return id, fmt.Errorf("group %s: %w as job %d (follow it with 'recall jobs --follow %d')", g.Name, ErrJobBusy, id, id)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return id, nil
}
