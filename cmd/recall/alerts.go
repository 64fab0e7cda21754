package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/recall-backup/recall/engine/server"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:  "alerts",
		Usage: "list the active alerts: what failed, since when, how often, what to do",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array (see the README for the fields)"},
		}, socketFlags...),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("alerts takes no arguments (did you mean 'recall alerts ack ID'?)")
			}
			var list []server.Alert
			a, err := serverClient(c)
			if err != nil {
				return err
			}
			if a != nil {
				var out struct {
					Alerts []server.Alert `json:"alerts"`
				}
				err = a.call(c.Context, "GET", "/alerts", nil, &out)
				list = out.Alerts
			} else {
				list, err = server.ReadAlerts(c.String("home"))
			}
			if err != nil {
				return err
			}
			if list == nil {
				list = []server.Alert{}
			}
			if c.Bool("json") {
				return printJSON(c, list)
			}
			if len(list) == 0 {
				fmt.Fprintln(c.App.Writer, "no active alerts")
				return nil
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tJOB\tGROUP\tSOURCE\tSINCE\tCOUNT\tLAST")
			for _, x := range list {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", x.ID, x.Job, dash(x.Group), dash(x.Source), x.Since.Local().Format(time.DateTime+" MST"), x.Count, x.Last.Local().Format(time.DateTime+" MST"))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, x := range list {
				fmt.Fprintf(c.App.Writer, "\nalert %d: %s\n  do: %s\n", x.ID, x.Error, x.Action)
			}
			return nil
		},
		Subcommands: []*cli.Command{{
			Name:      "ack",
			Usage:     "close an alert: you know of it (if the condition persists, the next failure opens a new one)",
			ArgsUsage: "ID",
			Flags:     socketFlags,
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usagef("alerts ack needs exactly one alert ID (list them with 'recall alerts')")
				}
				id, err := strconv.ParseUint(c.Args().First(), 10, 64)
				if err != nil {
					return usagef("alerts ack %q: give the number 'recall alerts' shows", c.Args().First())
				}
				a, err := serverClient(c)
				if err != nil {
					return err
				}
				var x server.Alert
				if a != nil {
					err = a.call(c.Context, "POST", fmt.Sprintf("/alerts/%d/ack", id), nil, &x)
				} else {
					x, err = server.AckAlert(c.String("home"), id)
				}
				if err != nil {
					return err
				}
				if !c.Bool("quiet") {
					fmt.Fprintf(c.App.Writer, "alert %d acked: %s of %s\n", x.ID, x.Job, alertSubject(x))
				}
				return nil
			},
		}},
	})
}

// alertSubject names what an alert is about: its source, else its group,
// else the store (garbage collection).
func alertSubject(x server.Alert) string {
	switch {
	case x.Source != "":
		return "source " + x.Source
	case x.Group != "":
		return "group " + x.Group
	}
	return "the store"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
