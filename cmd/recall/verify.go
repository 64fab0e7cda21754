package main

import (
	"encoding/json"
	"fmt"

	"github.com/recall-backup/recall/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:  "verify",
		Usage: "check that every recovery point can be restored",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "read-data", Usage: "also read back, decrypt and re-hash every stored blob"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
		},
		Action: withJob("verify", func(c *cli.Context) error {
			r, err := openReader(c)
			if err != nil {
				return err
			}
			defer r.Store().Close()
			rep, err := engine.Verify(c.Context, r, engine.VerifyOptions{ReadData: c.Bool("read-data")})
			if rep == nil {
				return err
			}
			if c.Bool("json") {
				b, _ := json.MarshalIndent(rep, "", "  ")
				fmt.Fprintln(c.App.Writer, string(b))
				return err
			}
			for pack, why := range rep.BadPacks {
				fmt.Fprintf(c.App.Writer, "damaged pack %s: %s\n", pack, why)
			}
			for _, d := range rep.Damage {
				fmt.Fprintf(c.App.Writer, "damaged: point %s (%s): %s: %s", d.Point[:12], d.Source, d.Path, d.Error)
				if d.Pack != "" {
					fmt.Fprintf(c.App.Writer, " [pack %s]", d.Pack)
				}
				fmt.Fprintln(c.App.Writer)
			}
			what := "structure"
			if c.Bool("read-data") {
				what = fmt.Sprintf("structure and data (%d packs read)", rep.Packs)
			}
			if err != nil {
				return fmt.Errorf("%w; restore what you can with 'recall restore', and back up the affected sources again", err)
			}
			fmt.Fprintf(c.App.Writer, "verified %s: %d points, %d trees, %d chunks: no errors\n", what, rep.Points, rep.Trees, rep.Chunks)
			return nil
		}),
	})
}
