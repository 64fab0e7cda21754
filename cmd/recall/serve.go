package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/recall-backup/recall/chunkstore"
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

// serviceEnvFile is the environment file dist/recall.service reads (its
// EnvironmentFile=): where an encrypted store's passphrase source is set
// for the server.
const serviceEnvFile = "/etc/recall/environment"

// jsonLogOptions writes a duration as the text log does ("30s"), not as
// a count of nanoseconds (30000000000), which a reader of the log had to
// divide to make sense of.
var jsonLogOptions = &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}}

func serve(c *cli.Context) error {
	var h slog.Handler
	switch f := c.String("log-format"); f {
	case "text":
		h = slog.NewTextHandler(os.Stderr, nil)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, jsonLogOptions)
	default:
		return usagef("--log-format %q: allowed: text, json", f)
	}
	log := slog.New(h)
	// "stopped" is the last line of a server that ran: after its mounts
	// are down and its last notifications are out (the defers below).
	ran := false
	defer func() {
		if ran {
			log.Info("stopped")
		}
	}()
	// A hangup (the terminal of 'recall serve &' closed, an SSH session
	// ended) killed the server at once, mid-backup, with no line in its
	// log. It runs on; SIGTERM and SIGINT stop it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				log.Info("SIGHUP ignored: recall serve stops on SIGTERM or SIGINT")
			case <-c.Context.Done():
				return
			}
		}
	}()
	cfg, err := loadConfig(c.String("config"))
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
	// A [[mount]] that would hide the home or the store, or lie inside
	// the store, is refused before anything starts, as 'recall mount'
	// refuses it (the server made the directory inside the store, left
	// it there, and retried the mount for ever).
	for _, m := range cfg.Mount {
		abs, err := filepath.Abs(m.Path)
		if err != nil {
			return err
		}
		if err := mountHidesHome(abs, home, storeDir(c)); err != nil {
			return fmt.Errorf("configuration: [[mount]] path %s: %w", m.Path, err)
		}
	}
	st, err := openStore(c)
	if errors.Is(err, chunkstore.ErrNoPassword) && os.Getenv("NOTIFY_SOCKET") != "" {
		// Started by systemd, with no terminal to ask on: say where the
		// unit takes its passphrase from.
		return fmt.Errorf("%w; under systemd, put RECALL_PASSWORD_FILE=/etc/recall/passphrase (a file only root can read) in %s, which the unit reads, and restart it", err, serviceEnvFile)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	// Notifications, metrics and the job log hear every job event; the
	// service manager hears READY once the home is ours, and WATCHDOG.
	notifier := server.NewNotifier(cfg, server.NotifierOptions{Log: log})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), notifyStopGrace)
		defer cancel()
		notifier.Close(ctx)
	}()
	metrics := server.NewMetrics(server.MetricsOptions{Store: st, Textfile: cfg.Metrics.Textfile, Log: log})
	observe := server.Observers(server.JobLog(log), metrics.Observe, notifier.Observe)
	srv, err := server.New(server.Options{Home: home, Store: st, Concurrency: cfg.Concurrency, Log: log, Observe: observe, Socket: cfg.Socket, SmbConf: cfg.SmbConf,
		OnAlert: notifier.AlertEvent})
	if err != nil {
		return err
	}
	defer srv.Close()
	// After New: a second server on the home fails naming the first, not
	// on the first's metrics port.
	if cfg.Metrics.Listen != "" {
		addr, err := metrics.Serve(c.Context, cfg.Metrics.Listen)
		if err != nil {
			return err
		}
		log.Info("metrics endpoint listening", "addr", addr.String(), "path", "/metrics")
	}
	// Each [[mount]] is served by a child 'recall mount --foreground'
	// that the server restarts when it dies (mounts.go in engine/server
	// says why a child). Setpgid: a Ctrl-C meant for a foreground server
	// reaches its mounts only through it, in order. Pdeathsig: a server
	// killed outright takes its mounts down rather than leaving them
	// unsupervised; the next start mounts them again.
	absHome, err := filepath.Abs(home)
	if err != nil {
		return err
	}
	mountPassword := &mountPassphrase{c: c, pw: resolved}
	if c.String("log-format") == "json" {
		mountPassword.log = log
	}
	stopMounts := srv.SuperviseMounts(cfg.Mount, server.MountsOptions{Start: func(ctx context.Context, m server.MountConfig) (*exec.Cmd, error) {
		args := []string{"--home", absHome, "mount", "--foreground"}
		if m.AllowOther {
			args = append(args, "--allow-other")
		}
		args = append(args, "--", m.Path)
		return mountPassword.start(ctx, args, &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM})
	}})
	defer stopMounts()
	if _, err := server.SdNotify("READY=1"); err != nil {
		log.Warn("service manager not told the server is ready", "err", err)
	}
	if d := server.WatchdogInterval(); d > 0 {
		go srv.Watchdog(c.Context, d)
	}
	stopping := make(chan struct{})
	go func() {
		defer close(stopping)
		// Said when the stop begins: running jobs may take the grace.
		<-c.Context.Done()
		if _, err := server.SdNotify("STOPPING=1"); err != nil {
			log.Warn("service manager not told the server is stopping", "err", err)
		}
	}()
	log.Info("recall serve started", "pid", os.Getpid(), "home", home, "config", cfg.Path, "concurrency", cfg.Concurrency,
		"notify_targets", notifier.Targets(), "metrics", cfg.Metrics.Listen, "metrics_textfile", cfg.Metrics.Textfile)
	// A stop by SIGTERM or SIGINT is the normal end: Run returns nil.
	// STOPPING=1 is on its way by then; it must not be lost with the
	// process.
	ran = true
	err = srv.Run(c.Context)
	if c.Context.Err() != nil {
		<-stopping
	}
	return err
}

// loadConfig is server.LoadConfig with every failure a configuration
// that cannot be used (ErrBadConfig, exit code 2, as the README says): a
// file named with --config that is missing or cannot be read as much as
// one that does not parse. The error names the file.
func loadConfig(path string) (*server.Config, error) {
	cfg, err := server.LoadConfig(path)
	if err != nil && !errors.Is(err, server.ErrBadConfig) {
		return nil, fmt.Errorf("%w: %w", server.ErrBadConfig, err)
	}
	return cfg, err
}

// notifyStopGrace is how long a stopping server lets notifications
// still being delivered finish.
const notifyStopGrace = 10 * time.Second

// mountPassphrase is the passphrase the server hands its mount servers:
// the one it opened the store with, until that stops opening the store
// (changed with 'recall key passwd' while the server runs: the server's
// own jobs go on with the key they hold). Then its source is read again,
// so that writing the new passphrase there, as after any change, brings
// the tree back at the next attempt, without a restart.
type mountPassphrase struct {
	c  *cli.Context
	mu sync.Mutex
	pw string // "" for a plaintext store
	// log, with --log-format json, takes the mount servers' output, a
	// JSON line for each of their lines: written as it was to stderr,
	// it broke a jq reading the log.
	log *slog.Logger
}

// output is where a mount server's output goes: our stderr, or with
// log, a pipe whose lines are logged; done closes this side of it once
// the server started (or failed to).
func (p *mountPassphrase) output(args []string) (out *os.File, done func()) {
	if p.log == nil {
		return os.Stderr, func() {}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return os.Stderr, func() {}
	}
	mnt := ""
	if len(args) > 0 {
		mnt = args[len(args)-1]
	}
	go func() {
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.log.Info("mount server output", "mount", mnt, "line", sc.Text())
		}
	}()
	return w, func() { w.Close() }
}

// start starts a mount server with args (see startMountServer), its
// output on our stderr. A store the passphrase no longer opens fails
// wrapping chunkstore.ErrWrongPassword and naming where the server
// reads the passphrase.
func (p *mountPassphrase) start(ctx context.Context, args []string, attr *syscall.SysProcAttr) (*exec.Cmd, error) {
	p.mu.Lock()
	pw := p.pw
	p.mu.Unlock()
	out, done := p.output(args)
	cmd, err := startMountServer(ctx, args, out, attr, pw)
	done()
	if pw == "" || !errors.Is(err, chunkstore.ErrWrongPassword) {
		return cmd, err
	}
	src, again := passwordSource(p.c)
	if !again {
		return nil, fmt.Errorf("%w: %s, which the server was started with, no longer opens the store (changed with 'recall key passwd'?): restart the server with the store's passphrase", err, src)
	}
	fresh, rerr := password(p.c)
	if rerr != nil {
		return nil, fmt.Errorf("%w: the server's passphrase no longer opens the store, and reading %s again failed: %v", err, src, rerr)
	}
	if fresh != pw {
		out, done := p.output(args)
		cmd, err = startMountServer(ctx, args, out, attr, fresh)
		done()
		if err == nil {
			p.mu.Lock()
			p.pw = fresh
			p.mu.Unlock()
			return cmd, nil
		}
		if !errors.Is(err, chunkstore.ErrWrongPassword) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: the passphrase from %s does not open the store (changed with 'recall key passwd'?): put the store's passphrase there; the server reads it again at each attempt", err, src)
}
