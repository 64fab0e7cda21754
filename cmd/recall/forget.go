package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/recall-backup/recall/chunkstore"
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
			r, err := openReader(c)
			if err != nil {
				return err
			}
			st := r.Store()
			defer st.Close()
			p, err := r.FindPoint(c.Args().First(), c.String("source"))
			var dp *engine.DamagedPointError
			if errors.As(err, &dp) {
				return forgetDamaged(c, st, dp)
			}
			if err != nil {
				return err
			}
			// Where the mount shows it, for the message.
			pts, err := r.Points()
			if err != nil {
				return err
			}
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
			name := fs.SnapshotName(p.Time)
			if at >= 0 {
				name = fs.PointNames(times)[at]
			}
			lock, err := lockForget(c, st, p.ID)
			if err != nil {
				return err
			}
			defer lock.Unlock()
			if err := st.RemovePoint(p.ID); err != nil {
				return err
			}
			fs.Refresh(c.String("home"), p.Source)
			if c.Bool("json") {
				return printJSON(c, forgetJSON{ID: p.ID.String(), Source: p.Source, Time: p.Time, Name: name})
			}
			fmt.Fprintf(c.App.Writer, "forgot point %s of source %s from %s (%s in a mount); its chunks stay in the store until garbage collection\n",
				p.ID.String()[:12], p.Source, p.Time.Format(time.RFC3339), name)
			return nil
		},
	})
}

func lockForget(c *cli.Context, st *chunkstore.Store, id chunkstore.ID) (*chunkstore.Lock, error) {
	return st.LockWriter(c.Context, "forget point "+id.Short(), c.Duration("lock-wait"), func(h chunkstore.LockInfo) {
		logf("store is busy: waiting for %s", h)
	})
}

// forgetDamaged removes a point whose manifest cannot be read. Mounts
// never showed it, so none needs refreshing.
func forgetDamaged(c *cli.Context, st *chunkstore.Store, dp *engine.DamagedPointError) error {
	lock, err := lockForget(c, st, dp.ID)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if err := st.RemovePoint(dp.ID); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c, forgetJSON{ID: dp.ID.String(), Damaged: dp.Reason})
	}
	fmt.Fprintf(c.App.Writer, "forgot damaged point %s (%s); its chunks stay in the store until garbage collection\n",
		dp.ID.String()[:12], dp.Reason)
	return nil
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
