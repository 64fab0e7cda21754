package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/fs"
	"github.com/urfave/cli/v2"
)

func init() {
	common := func() []cli.Flag {
		return []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print what would change, change nothing"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.DurationFlag{Name: "lock-wait", Value: time.Minute, Usage: "how long to wait for a running backup to finish"},
		}
	}
	register(&cli.Command{
		Name:      "repair",
		Usage:     "repair a damaged store: rebuild its index, salvage damaged packs, rewrite points without what is lost",
		ArgsUsage: "index|packs|points",
		Description: `After damage, in this order: 'recall verify --read-data' (finds and records damaged
blobs), 'recall repair packs' (salvages every readable blob), a new backup of each
affected source that still has its data (stores again what was lost), then
'recall repair points' (rewrites the points that still miss something, listing each
lost file in the point's errors). 'recall repair index' replaces corrupt index files.
Each prints every change it makes; --dry-run prints them and changes nothing.
Exit code 4: damage stays in the store and is reported.`,
		Subcommands: []*cli.Command{
			{
				Name:  "index",
				Usage: "rebuild index files from pack headers, replacing corrupt ones, and consolidate the index",
				Flags: common(),
				Action: repairAction("index", func(ctx context.Context, s *engine.Session, c *cli.Context, o engine.RepairOptions) (*engine.RepairReport, error) {
					return engine.RepairIndex(ctx, s, o)
				}),
			},
			{
				Name:  "packs",
				Usage: "salvage every readable blob of damaged packs into new packs, then drop the damaged packs",
				Flags: common(),
				Action: repairAction("packs", func(ctx context.Context, s *engine.Session, c *cli.Context, o engine.RepairOptions) (*engine.RepairReport, error) {
					return engine.RepairPacks(ctx, s, o)
				}),
			},
			{
				Name:  "points",
				Usage: "write, for each point with lost files, a new point without them that lists each in its errors",
				Flags: append(common(), &cli.BoolFlag{Name: "forget-damaged",
					Usage: "remove each damaged point once its repaired copy is written, points whose root directory is lost, and unreadable manifests"}),
				Action: repairAction("points", func(ctx context.Context, s *engine.Session, c *cli.Context, o engine.RepairOptions) (*engine.RepairReport, error) {
					return engine.RepairPoints(ctx, s, engine.RepairPointsOptions{RepairOptions: o, ForgetDamaged: c.Bool("forget-damaged")})
				}),
			},
		},
	})
}

type repairFunc func(context.Context, *engine.Session, *cli.Context, engine.RepairOptions) (*engine.RepairReport, error)

// repairAction takes an exclusive session, runs one repair and prints its
// report.
func repairAction(what string, run repairFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() != 0 {
			return usagef("repair %s takes no arguments", what)
		}
		st, err := openStoreUncached(c)
		if err != nil {
			return err
		}
		defer st.Close()
		// Mounts of the store are told afterwards, source by source.
		var sources []string
		if pts, err := st.Reader().Points(); err == nil {
			seen := map[string]bool{}
			for _, p := range pts {
				if p.Damaged == "" && !seen[p.Source] {
					seen[p.Source] = true
					sources = append(sources, p.Source)
				}
			}
		}
		dry, asJSON := c.Bool("dry-run"), c.Bool("json")
		s, err := st.Session(c.Context, engine.SessionOptions{Purpose: "repair " + what, Exclusive: true, DryRun: dry, LockOptions: lockWait(c)})
		if err != nil {
			return err
		}
		defer s.Close()
		if s.Note != "" {
			fmt.Fprintf(c.App.ErrWriter, "recall: %s\n", s.Note)
		}
		// Actions are printed as they happen: salvaging packs can take
		// long, and what was done before an error is said.
		o := engine.RepairOptions{DryRun: dry, Log: func(format string, args ...any) {
			if !asJSON {
				fmt.Fprintf(report(c), format+"\n", args...)
			}
		}}
		rep, err := run(c.Context, s, c, o)
		if rep == nil {
			return err
		}
		if err == nil {
			// Damage that stays and is reported is exit 4 (README,
			// Repair); repair index leaves it to its caller.
			err = rep.DamageLeft("repair " + what)
		}
		if what == "points" && !dry && len(rep.Actions) > 0 {
			for _, s := range sources {
				fs.Refresh(c.String("home"), s)
			}
		}
		if asJSON {
			b, _ := json.MarshalIndent(rep, "", "  ")
			fmt.Fprintln(c.App.Writer, string(b))
			return err
		}
		// What stays damaged, by name: the error says only how much, so
		// these lines are printed under --quiet too.
		for _, l := range rep.Lost {
			fmt.Fprintf(c.App.Writer, "lost blob %s of pack %s: %s\n", l.Blob, l.Pack, l.Error)
		}
		for _, p := range rep.Unlocatable {
			fmt.Fprintf(c.App.Writer, "unlocatable pack %s: its header is unreadable and no index file lists it, so none of its blobs can be found; it is left in place (it may hold another store's data, or not be recall's): put back a copy of its index file and run 'recall repair index', or move it out of packs/ once nothing needs it\n", p)
		}
		switch {
		case len(rep.Actions) == 0 && err == nil:
			fmt.Fprintf(report(c), "repair %s: nothing to repair\n", what)
		case dry:
			fmt.Fprintf(report(c), "repair %s: dry run, nothing was changed\n", what)
		}
		return err
	}
}
