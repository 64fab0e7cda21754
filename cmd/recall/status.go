package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/engine/server"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:  "status",
		Usage: "per group and source: last good point, points kept, sizes, growth, days until the store is full, warnings; with a server: next runs, running jobs, alerts",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the status as JSON (see the README for the fields)"},
		}, socketFlags...),
		Action: func(c *cli.Context) error {
			a, err := serverClient(c)
			if err != nil {
				return err
			}
			if a != nil {
				return serverStatus(c, a)
			}
			groups, st, err := groupsAndStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			s, err := st.Status(c.Context, groups, time.Now())
			if err != nil {
				return err
			}
			var tape *engine.TapeState
			var sources []engine.Source
			var jobs []engine.Job
			if err := withCatalog(c, catalogWait, func(cat *engine.Catalog) (err error) {
				if sources, err = cat.Sources(); err != nil {
					return err
				}
				if tape, err = cat.TapeState(); err != nil {
					return err
				}
				jobs, err = cat.Jobs(200)
				return err
			}); err != nil {
				return err
			}
			s.AddSources(sources)
			s.AddImageWarnings(sources, groups)
			s.AddTape(tape, groups)
			s.AddJobs(jobs) // after the image warnings, which say more of an image
			if c.Bool("json") {
				if s.Sources == nil {
					s.Sources = []engine.SourceStatus{}
				}
				return printJSON(c, s)
			}
			printStoreStatus(c.App.Writer, s)
			return nil
		},
	})
}

// serverStatus is status through the server: the store's part as without
// one, then the schedule, the running jobs and the alerts.
func serverStatus(c *cli.Context, a *apiClient) error {
	var v server.StatusView
	if err := a.call(c.Context, "GET", "/status", nil, &v); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c, v)
	}
	w := c.App.Writer
	if v.StoreStatus != nil {
		printStoreStatus(w, v.StoreStatus)
	} else {
		fmt.Fprintf(w, "store: status unknown: %s\n", v.StoreError)
	}
	fmt.Fprintf(w, "server: pid %d, home %s, up since %s\n", v.Server.PID, v.Server.Home, v.Server.Started.Local().Format(time.DateTime+" MST"))
	for _, g := range v.Schedule {
		switch {
		case g.Error != "":
			fmt.Fprintf(w, "  group %s: not scheduled: %s\n", g.Group, g.Error)
		case g.NextRun.IsZero() && g.Running != 0:
			fmt.Fprintf(w, "  group %s: first backup running as server job %d\n", g.Group, g.Running)
		default:
			fmt.Fprintf(w, "  group %s: next run %s", g.Group, g.NextRun.Local().Format("2006-01-02 15:04 MST"))
			if g.Running != 0 {
				fmt.Fprintf(w, ", backup running as server job %d", g.Running)
			}
			if !g.RetryAt.IsZero() {
				fmt.Fprintf(w, ", retry at %s", g.RetryAt.Local().Format("15:04:05 MST"))
			}
			if !g.NextTape.IsZero() {
				fmt.Fprintf(w, ", next tape write %s", g.NextTape.Local().Format("2006-01-02 15:04 MST"))
			}
			fmt.Fprintln(w)
		}
	}
	for _, j := range v.Jobs {
		fmt.Fprintf(w, "  %s\n", progressLine(j))
	}
	if v.Alerts > 0 {
		fmt.Fprintf(w, "alerts: %d active (see 'recall alerts')\n", v.Alerts)
	}
	return nil
}

func printStoreStatus(w io.Writer, s *engine.StoreStatus) {
	fmt.Fprintf(w, "%-12s %-24s %-20s %6s %10s %10s %6s %10s\n", "GROUP", "SOURCE", "LAST GOOD", "POINTS", "PROTECTED", "STORED", "DEDUP", "GROWTH/DAY")
	for _, x := range s.Sources {
		g, last := x.Group, "-"
		if g == "" {
			g = "(none)"
		}
		if x.LastGood != "" {
			last = x.LastTime.Local().Format("2006-01-02 15:04 MST")
		}
		dedup := "-" // no points, or nothing stored of its own: no ratio to show
		if x.DedupRatio > 0 {
			dedup = fmt.Sprintf("%.1fx", x.DedupRatio)
			if x.DedupRatio >= 1000 {
				dedup = fmt.Sprintf("%.0fx", x.DedupRatio)
			}
			if x.DedupRatio < 0.1 {
				// A few bytes protected in a tree and manifest of their
				// own: "0.0x" read as nothing protected.
				dedup = fmt.Sprintf("%.2gx", x.DedupRatio)
			}
		}
		fmt.Fprintf(w, "%-12s %-24s %-20s %6d %10s %10s %6s %10s\n", g, x.Source, last, x.Points, human(x.Protected), human(x.Stored), dedup, human(x.GrowthPerDay))
	}
	for _, x := range s.Sources {
		if x.Kind == "" {
			continue
		}
		image := "no image ingested yet"
		if x.ImageSize > 0 {
			image = "last image " + human(x.ImageSize)
		}
		fmt.Fprintf(w, "source %s (%s of %s): reservation %s, %s\n", x.Source, x.Kind, x.Computer, human(x.Reservation), image)
	}
	fmt.Fprintf(w, "store: %s stored, %s protected, growing %s a day", human(s.Stored), human(s.Protected), human(s.GrowthPerDay))
	if s.Free >= 0 {
		fmt.Fprintf(w, ", %s free", human(s.Free))
	}
	if s.DaysUntilFull >= 0 {
		switch d := s.DaysUntilFull; {
		case d >= 100*365:
			// Millions of years say nothing but "not at this rate".
			fmt.Fprintf(w, ", not full within 100 years at that rate")
		case d >= 2*365:
			fmt.Fprintf(w, ", full in %.0f years at that rate", d/365)
		case d >= 10:
			fmt.Fprintf(w, ", full in %.0f days at that rate", d)
		default:
			fmt.Fprintf(w, ", full in %.1f days at that rate", d)
		}
	}
	fmt.Fprintln(w)
	for _, p := range s.Tape {
		fmt.Fprintf(w, "tape pool %s (library %s): %s, %s, cartridges %s, %d usable", p.Pool, p.Library, count(p.Sets, "set"), count(p.Points, "point"), mediaCounts(p.Media), p.Usable)
		if !p.LastWritten.IsZero() {
			fmt.Fprintf(w, ", last written %s", p.LastWritten.Local().Format("2006-01-02 15:04 MST"))
		}
		if !p.NextExpiry.IsZero() {
			fmt.Fprintf(w, ", next set expires %s", p.NextExpiry.Local().Format(time.DateOnly))
		}
		fmt.Fprintln(w)
	}
	for _, m := range s.Warnings {
		fmt.Fprintf(w, "warning: %s\n", m)
	}
}

// groupsAndStore reads the protection groups, holding the catalog only
// for that (one process at a time owns it, and a prune may run long), and
// opens the store: what a command that weighs points against their groups'
// policies needs. The caller closes the store.
func groupsAndStore(c *cli.Context) ([]engine.Group, *engine.Store, error) {
	var groups []engine.Group
	if err := withCatalog(c, catalogWait, func(cat *engine.Catalog) (err error) {
		groups, err = cat.Groups()
		return err
	}); err != nil {
		return nil, nil, err
	}
	st, err := openStore(c)
	if err != nil {
		return nil, nil, err
	}
	return groups, st, nil
}

// mediaCounts prints cartridge counts by state in a fixed order.
func mediaCounts(m map[string]int) string {
	var parts []string
	for _, st := range []string{engine.MediaWriting, engine.MediaFull, engine.MediaFree, engine.MediaExpired} {
		if m[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", m[st], st))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// count says n things, in the singular for one.
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
