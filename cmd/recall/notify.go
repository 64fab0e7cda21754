package main

import (
	"errors"
	"fmt"

	"github.com/recall-backup/recall/engine/server"
	"github.com/urfave/cli/v2"
)

// errNotifyTest: a target did not take the test message.
var errNotifyTest = errors.New("some notification targets failed")

func init() {
	register(&cli.Command{
		Name:  "notify",
		Usage: "notification targets of recall serve ([[notify.webhook]], [[notify.mail]])",
		Subcommands: []*cli.Command{{
			Name:  "test",
			Usage: "send a test message to every notification target, whatever its \"on\", and report each result",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "config", EnvVars: []string{"RECALL_CONFIG"}, Usage: "read the configuration from `FILE` (default " + server.DefaultConfigPath + ", if it exists)"},
			},
			Action: notifyTest,
		}},
	})
}

func notifyTest(c *cli.Context) error {
	cfg, err := server.LoadConfig(c.String("config"))
	if err != nil {
		return err
	}
	n := server.NewNotifier(cfg, server.NotifierOptions{})
	if n.Targets() == 0 {
		where := cfg.Path
		if where == "" {
			where = server.DefaultConfigPath + " (absent)"
		}
		return usagef("no notification targets in %s: add [[notify.webhook]] or [[notify.mail]]", where)
	}
	failed := 0
	for _, r := range n.Test(c.Context) {
		if r.Err != nil {
			failed++
			fmt.Fprintf(c.App.Writer, "FAILED %s: %v\n", r.Target, r.Err)
			continue
		}
		fmt.Fprintf(c.App.Writer, "ok     %s\n", r.Target)
	}
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d (see above)", errNotifyTest, failed, n.Targets())
	}
	return nil
}
