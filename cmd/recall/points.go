package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:  "points",
		Usage: "list recovery points, oldest first; points whose manifest is damaged come last, marked DAMAGED",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "source", Usage: "only points of data source `NAME` (and damaged points: their source is unknown)"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array"},
		},
		Action: func(c *cli.Context) error {
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			r := st.Reader()
			pts, err := r.Points()
			if err != nil {
				return err
			}
			out := []pointJSON{}
			for _, p := range pts {
				if s := c.String("source"); s != "" && p.Source != s && p.Damaged == "" {
					continue
				}
				out = append(out, toJSON(p))
			}
			if c.Bool("json") {
				b, _ := json.MarshalIndent(out, "", "  ")
				fmt.Fprintln(c.App.Writer, string(b))
				return nil
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSOURCE\tTIME (UTC)\tKIND\tFILES\tSIZE\tWARNINGS\tPATH")
			for _, p := range out {
				if p.Damaged != "" {
					fmt.Fprintf(tw, "%s\t-\tDAMAGED\t-\t-\t-\t-\t%s\n", p.ID[:12], p.Damaged)
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", p.ID[:12], p.Source, p.Time.Format(time.DateTime),
					p.Kind, p.Stats.Files, human(p.Stats.Bytes), len(p.Errors), p.Path)
			}
			return tw.Flush()
		},
	})
}
