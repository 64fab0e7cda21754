package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/fs"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "forget",
		Usage:     "remove recovery points (their chunks stay in the store until garbage collection)",
		ArgsUsage: "POINT... (id, unique id prefix, or \"latest\")",
		Description: "Every POINT is looked up before any is removed: one that names no point, or several, removes none.\n" +
			"With --json, one object per point forgotten, a line each.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "source", Usage: "data source `NAME` the POINTs belong to (needed for \"latest\" with several sources)"},
			&cli.DurationFlag{Name: "lock-wait", Value: time.Minute, Usage: "how long to wait for a running backup to finish"},
			&cli.BoolFlag{Name: "json", Usage: "print each forgotten point as a JSON line"},
			smbConfFlag,
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usagef("forget needs a POINT (an id, a unique id prefix, or \"latest\"); 'recall points' lists them")
			}
			if slices.Contains(c.Args().Slice(), "") {
				return usagef("forget: a POINT given empty (is a variable unset?): give an id, a unique id prefix, or \"latest\"; 'recall points' lists them")
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			done, err := st.ForgetAll(c.Context, c.Args().Slice(), c.String("source"), lockWait(c))
			refreshed := map[string]bool{}
			shares := installedShares(c, len(done))
			for _, f := range done {
				if perr := printForgotten(c, f, refreshed, shares); perr != nil && err == nil {
					err = perr
				}
			}
			forgetIngested(c, done)
			if err != nil && len(done) > 0 {
				return fmt.Errorf("%w (the %d points above were forgotten)", err, len(done))
			}
			return err
		},
	})
}

// printForgotten says what forget removed, and refreshes the mounts of its
// source (once per source: refreshed). Of shares, it names those that
// served the point (warnShares).
func printForgotten(c *cli.Context, f *engine.Forgotten, refreshed map[string]bool, shares []engine.InstalledShare) error {
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
	if !refreshed[p.Source] {
		fs.Refresh(c.String("home"), p.Source)
		refreshed[p.Source] = true
	}
	served := warnShares(p, shares)
	switch {
	case c.Bool("json"):
		return printJSON(c, forgetJSON{ID: p.ID.String(), Source: p.Source, Time: p.Time, Name: name, Shares: served})
	case c.Bool("quiet"):
		return nil // -q: errors only, as every command
	}
	fmt.Fprintf(c.App.Writer, "forgot point %s of source %s from %s (%s in a mount); its chunks stay in the store until garbage collection\n",
		p.ID.String()[:12], cell(p.Source), p.Time.Format(time.RFC3339), name)
	return nil
}

// mountName is the directory a mount showed p in, among pts.
func mountName(p *engine.Point, pts []*engine.Point) string {
	if n, ok := engine.PointNames(pts)[p.ID]; ok {
		return n
	}
	if n := engine.RecordedName(p); n != "" {
		return n
	}
	return fs.SnapshotName(p.Time)
}

// forgetJSON is what forget --json prints; scripts rely on these fields.
// A point whose manifest was damaged has only its id and why.
type forgetJSON struct {
	ID      string    `json:"id"`
	Source  string    `json:"source,omitempty"`
	Time    time.Time `json:"time,omitzero"`
	Name    string    `json:"name,omitempty"` // its directory in a mount: @GMT-...
	Damaged string    `json:"damaged,omitempty"`
	Shares  []string  `json:"shares,omitempty"` // recovery shares that served it
}

// smbConfFlag names the Samba configuration beside which recall keeps its
// shares, for the commands that forget points.
var smbConfFlag = &cli.StringFlag{Name: "smb-conf", Value: engine.DefaultSmbConf,
	Usage: "Samba configuration `FILE` beside which recall keeps its shares: prune holds a point a recovery share serves, forget names the share"}

// installedShares lists recall's Samba shares (beside --smb-conf) when n
// points were forgotten; a file it cannot read is warned about.
func installedShares(c *cli.Context, n int) []engine.InstalledShare {
	if n == 0 {
		return nil
	}
	shares, err := engine.InstalledShares(c.String("smb-conf"))
	if err != nil {
		warnf("recovery shares of the forgotten points not checked: %v", err)
	}
	return shares
}

// warnShares warns of each recovery share among shares that served point
// p, now forgotten, and returns their names. The share is left as it is
// (recall removes nothing it was not asked to), but Windows RE finds no
// system image there any more: the mount shows nothing at its path.
func warnShares(p *engine.Point, shares []engine.InstalledShare) []string {
	var names []string
	for _, s := range shares {
		if !s.Serves(p.Source, p.ID.String()) {
			continue
		}
		names = append(names, s.Name)
		warnf("share [%s] (%s) served point %s of source %s, which is forgotten: Windows RE finds no system image there now; serve another point under that name ('recall share bmr-recovery --source %s --name %s POINT --apply') or remove the share's block from %s",
			s.Name, s.File, p.ID.String()[:12], p.Source, p.Source, s.Name, s.File)
	}
	return names
}

// forgetIngested tells the catalog of each WSB source whose newest point
// was forgotten that the image in its share is no longer in the store
// (engine.Catalog.ForgetIngested), so that the next ingestion takes it
// again. Only the newest: the record is of the image ingested last.
func forgetIngested(c *cli.Context, done []*engine.Forgotten) {
	var sources []string
	for _, f := range done {
		if f.Point.Damaged != "" || f.Point.Source == "" {
			continue
		}
		var last *engine.Point
		for _, p := range f.Before {
			if p.Damaged == "" && p.Source == f.Point.Source {
				last = p
			}
		}
		if last != nil && last.ID == f.Point.ID && !slices.Contains(sources, f.Point.Source) {
			sources = append(sources, f.Point.Source)
		}
	}
	if len(sources) == 0 {
		return
	}
	if _, err := os.Stat(engine.CatalogPath(c.String("home"))); err != nil {
		return // no catalog: no source is registered
	}
	err := withCatalog(c, catalogWait, func(cat *engine.Catalog) error {
		for _, s := range sources {
			if err := cat.ForgetIngested(s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		warnf("the catalog could not record that the newest point of %s was forgotten: %v; the image in its share is taken again only once WSB writes a new one", strings.Join(sources, ", "), err)
	}
}
