package main

import (
	"errors"
	"log/slog"
	"os"

	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/engine/server"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:  "serve",
		Usage: "run the protection groups' schedules: backups, recovery points, prune and garbage collection",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", EnvVars: []string{"RECALL_CONFIG"}, Usage: "read the configuration from `FILE` (default " + server.DefaultConfigPath + ", if it exists)"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log lines on stderr as text or json"},
		},
		Action: serve,
	})
}

func serve(c *cli.Context) error {
	var h slog.Handler
	switch f := c.String("log-format"); f {
	case "text":
		h = slog.NewTextHandler(os.Stderr, nil)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, nil)
	default:
		return usagef("--log-format %q: allowed: text, json", f)
	}
	log := slog.New(h)
	cfg, err := server.LoadConfig(c.String("config"))
	if errors.Is(err, server.ErrBadConfig) {
		return usageError{err.Error()}
	}
	if err != nil {
		return err
	}
	// --home or RECALL_HOME, when given, wins over the file: the same
	// home for the server and the commands that read it.
	if !c.IsSet("home") {
		if err := c.Set("home", cfg.Home); err != nil {
			return err
		}
	}
	home := c.String("home")
	if err := engine.RequireStore(home); err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	srv, err := server.New(server.Options{Home: home, Store: st, Concurrency: cfg.Concurrency, Log: log, Socket: cfg.Socket})
	if err != nil {
		return err
	}
	defer srv.Close()
	log.Info("recall serve started", "pid", os.Getpid(), "home", home, "config", cfg.Path, "concurrency", cfg.Concurrency)
	// A stop by SIGTERM or SIGINT is the normal end: Run returns nil.
	return srv.Run(c.Context)
}
