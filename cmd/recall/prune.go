package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/fs"
	"github.com/urfave/cli/v2"
)

// pruneJSON is one point of prune --json; scripts rely on these fields.
type pruneJSON struct {
	Group   string    `json:"group"`
	Source  string    `json:"source"`
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Keep    bool      `json:"keep"`
	Rule    string    `json:"rule"`
	Why     string    `json:"why"`
	Removed bool      `json:"removed"`
}

func init() {
	register(&cli.Command{
		Name:  "prune",
		Usage: "forget the points that fall outside their protection group's policy (their chunks stay until gc)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "group", Usage: "prune only group `NAME`"},
			&cli.BoolFlag{Name: "dry-run", Usage: "list what would be kept and forgotten, forget nothing"},
			&cli.StringFlag{Name: "as-of", Usage: "decide as of `TIME` (RFC 3339, like 2026-11-21T18:00:00Z; default now)"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array, one element per point"},
			&cli.DurationFlag{Name: "lock-wait", Value: 10 * time.Minute, Usage: "how long to wait for a running backup of a source to finish"},
			smbConfFlag,
		},
		Action: func(c *cli.Context) error {
			asOf := time.Now()
			if s := c.String("as-of"); s != "" {
				t, err := time.Parse(time.RFC3339, s)
				if err != nil {
					return usagef("--as-of %q: give an RFC 3339 time, like 2026-11-21T18:00:00Z or 2026-11-21T18:00:00+01:00", s)
				}
				asOf = t
				if ahead := time.Until(asOf); ahead > time.Minute && !c.Bool("dry-run") {
					// Decided as of a later time, the policy drops points
					// it keeps now: a real run would forget them for good.
					return usagef("--as-of %s is %s from now: a prune decided then would forget points the policy keeps today; add --dry-run to see what it would forget then",
						asOf.UTC().Format(time.RFC3339), ahead.Round(time.Second))
				}
			}
			groups, st, err := groupsAndStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			// An unknown group is refused before the job is recorded and
			// anything is decided, so that nothing reads as a prune run.
			if name := c.String("group"); name != "" && !slices.ContainsFunc(groups, func(g engine.Group) bool { return g.Name == name }) {
				return fmt.Errorf("group %q: %w (list them with 'recall group list')", name, engine.ErrNoGroup)
			}
			j := &engine.Job{Kind: "prune"}
			var entries []engine.PruneEntry
			run := func() (*engine.Point, error) {
				held, err := engine.ShareHolds(c.String("smb-conf"))
				if err != nil {
					return nil, err
				}
				entries, err = st.Prune(c.Context, groups, engine.PruneOptions{Group: c.String("group"), AsOf: asOf, DryRun: c.Bool("dry-run"), Lock: lockWait(c), Held: held})
				return nil, err
			}
			if c.Bool("dry-run") {
				run()
			} else {
				engine.RunJob(c.String("home"), j, warnf, run)
			}
			refreshed := map[string]bool{}
			removed := 0
			for _, e := range entries {
				if e.Removed {
					removed++
				}
				if e.Removed && !refreshed[e.Point.Source] {
					fs.Refresh(c.String("home"), e.Point.Source)
					refreshed[e.Point.Source] = true
				}
			}
			if err != nil {
				// A failed prune reports what it did, the points it forgot
				// before the error, never a summary that reads as success.
				entries = slices.DeleteFunc(entries, func(e engine.PruneEntry) bool { return !e.Removed })
				if len(entries) == 0 {
					return err
				}
			}
			if c.Bool("json") {
				out := []pruneJSON{}
				for _, e := range entries {
					out = append(out, pruneJSON{Group: e.Group, Source: e.Point.Source, ID: e.Point.ID.String(), Time: e.Point.Time,
						Keep: e.Keep, Rule: e.Rule, Why: e.Why, Removed: e.Removed})
				}
				if perr := printJSON(c, out); perr != nil {
					return perr
				}
				return err
			}
			w := report(c)
			kept, dropped := 0, 0
			for _, e := range entries {
				verb := "keep"
				switch {
				case e.Keep:
					kept++
				case e.Removed:
					verb, dropped = "forgot", dropped+1
				default:
					verb, dropped = "drop", dropped+1
				}
				fmt.Fprintf(w, "%-6s %s %-20s %s %-16s %s\n", verb, e.Point.ID.String()[:12], e.Point.Source,
					e.Point.Time.UTC().Format(time.RFC3339), e.Rule, e.Why)
			}
			switch {
			case err != nil:
				// The lines above are what was forgotten; the error says the rest.
			case c.Bool("dry-run"):
				fmt.Fprintf(w, "dry run as of %s: %d kept, %d would be forgotten\n", asOf.Format(time.RFC3339), kept, dropped)
			default:
				fmt.Fprintf(w, "as of %s: %d kept, %d forgotten; their chunks stay until 'recall gc'\n", asOf.Format(time.RFC3339), kept, dropped)
			}
			return err
		},
	})
}
