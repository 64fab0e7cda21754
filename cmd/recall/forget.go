package main

import (
	"fmt"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/fs"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "forget",
		Usage:     "remove a recovery point (its chunks stay in the store until garbage collection)",
		ArgsUsage: "POINT (id, unique id prefix, or \"latest\")",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "source", Usage: "data source `NAME` POINT belongs to (needed for \"latest\" with several sources)"},
			&cli.DurationFlag{Name: "lock-wait", Value: time.Minute, Usage: "how long to wait for a running backup to finish"},
			&cli.BoolFlag{Name: "json", Usage: "print the forgotten point as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("forget needs exactly one POINT")
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			f, err := st.Forget(c.Context, c.Args().First(), c.String("source"), lockWait(c))
			if err != nil {
				return err
			}
			p := f.Point
			if p.Damaged != "" {
				// Mounts never showed it, so none needs refreshing.
				switch {
				case c.Bool("json"):
					return printJSON(c, forgetJSON{ID: p.ID.String(), Damaged: p.Damaged})
				case c.Bool("quiet"):
					return nil
				}
				fmt.Fprintf(c.App.Writer, "forgot damaged point %s (%s); its chunks stay in the store until garbage collection\n",
					p.ID.String()[:12], p.Damaged)
				return nil
			}
			name := mountName(p, f.Before)
			fs.Refresh(c.String("home"), p.Source)
			switch {
			case c.Bool("json"):
				return printJSON(c, forgetJSON{ID: p.ID.String(), Source: p.Source, Time: p.Time, Name: name})
			case c.Bool("quiet"):
				return nil // -q: errors only, as every command
			}
			fmt.Fprintf(c.App.Writer, "forgot point %s of source %s from %s (%s in a mount); its chunks stay in the store until garbage collection\n",
				p.ID.String()[:12], p.Source, p.Time.Format(time.RFC3339), name)
			return nil
		},
	})
}

// mountName is the directory a mount showed p in, among pts.
func mountName(p *engine.Point, pts []*engine.Point) string {
	var times []time.Time
	at := -1
	for _, q := range pts {
		if q.Source == p.Source && q.Damaged == "" {
			if q.ID == p.ID {
				at = len(times)
			}
			times = append(times, q.Time)
		}
	}
	if at < 0 {
		return fs.SnapshotName(p.Time)
	}
	return fs.PointNames(times)[at]
}

// forgetJSON is what forget --json prints; scripts rely on these fields.
// A point whose manifest was damaged has only its id and why.
type forgetJSON struct {
	ID      string    `json:"id"`
	Source  string    `json:"source,omitempty"`
	Time    time.Time `json:"time,omitzero"`
	Name    string    `json:"name,omitempty"` // its directory in a mount: @GMT-...
	Damaged string    `json:"damaged,omitempty"`
}
