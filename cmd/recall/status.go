package main

import (
	"fmt"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:  "status",
		Usage: "per group and source: last good point, points kept, sizes, growth, days until the store is full, warnings",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the status as JSON (see the README for the fields)"},
		},
		Action: func(c *cli.Context) error {
			groups, st, err := groupsAndStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			s, err := st.Status(c.Context, groups, time.Now())
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if s.Sources == nil {
					s.Sources = []engine.SourceStatus{}
				}
				return printJSON(c, s)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "%-12s %-24s %-20s %6s %10s %10s %6s %10s\n", "GROUP", "SOURCE", "LAST GOOD", "POINTS", "PROTECTED", "STORED", "DEDUP", "GROWTH/DAY")
			for _, x := range s.Sources {
				g, last := x.Group, "-"
				if g == "" {
					g = "(none)"
				}
				if x.LastGood != "" {
					last = x.LastTime.Local().Format("2006-01-02 15:04")
				}
				fmt.Fprintf(w, "%-12s %-24s %-20s %6d %10s %10s %5.1fx %10s\n", g, x.Source, last, x.Points, human(x.Protected), human(x.Stored), x.DedupRatio, human(x.GrowthPerDay))
			}
			fmt.Fprintf(w, "store: %s stored, %s protected, growing %s a day", human(s.Stored), human(s.Protected), human(s.GrowthPerDay))
			if s.Free >= 0 {
				fmt.Fprintf(w, ", %s free", human(s.Free))
			}
			if s.DaysUntilFull >= 0 {
				fmt.Fprintf(w, ", full in %.1f days at that rate", s.DaysUntilFull)
			}
			fmt.Fprintln(w)
			for _, m := range s.Warnings {
				fmt.Fprintf(w, "warning: %s\n", m)
			}
			return nil
		},
	})
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
