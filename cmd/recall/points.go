package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/recall-backup/recall/engine"
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
			names := engine.PointNames(pts)
			for _, p := range pts {
				if s := c.String("source"); s != "" && p.Source != s && p.Damaged == "" {
					continue
				}
				j := toJSON(p)
				j.Name = names[p.ID]
				out = append(out, j)
			}
			if s := c.String("source"); s != "" {
				// An empty list says nothing of a slip in the name.
				if have := engine.PointSources(pts); !slices.Contains(have, s) {
					warnf("no point of source %q%s", s, engine.SourcesHint(s, have))
				}
			}
			if c.Bool("json") {
				// A damaged point has only its id and why, as the README
				// says: its other fields are unknown, not empty or year 1.
				list := make([]any, len(out))
				for i, p := range out {
					list[i] = p
					if p.Damaged != "" {
						list[i] = struct {
							ID      string `json:"id"`
							Damaged string `json:"damaged"`
						}{p.ID, p.Damaged}
					}
				}
				b, _ := json.MarshalIndent(list, "", "  ")
				fmt.Fprintln(c.App.Writer, string(b))
				return nil
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSOURCE\tTIME (UTC)\tKIND\tFILES\tSIZE\tWARNINGS\tPATH")
			for _, p := range out {
				if p.Damaged != "" {
					fmt.Fprintf(tw, "%s\t-\tDAMAGED\t-\t-\t-\t-\t%s\n", p.ID[:12], cell(p.Damaged))
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", p.ID[:12], cell(p.Source), p.Time.Format(time.DateTime),
					cell(p.Kind), p.Stats.Files, human(p.Stats.Bytes), len(p.Errors), cell(p.Path))
			}
			return tw.Flush()
		},
	})
}

// cell is a string from a manifest as the table prints it: as it is when
// it is plain printable text, else quoted with Go's escapes
// (strconv.Quote). A manifest says what the store says, and a crafted or
// damaged one may hold a newline (a forged row), a tab (shifted columns)
// or a terminal's escape sequences, which went to the terminal as they
// were. An empty string or one that starts with a quote is quoted too,
// so that no plain name reads as a quoted one or as a missing column.
// --json needs none of this: its encoder escapes.
func cell(s string) string {
	if s != "" && s[0] != '"' && utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) < 0 {
		return s
	}
	return strconv.Quote(s)
}
