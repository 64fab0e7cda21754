// Command recall is the recall backup server's command line.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/fs"
	"github.com/urfave/cli/v2"
)

// Exit codes, documented in the README. Scripts rely on them.
const (
	exitOK       = 0
	exitError    = 1 // failed; nothing was committed
	exitUsage    = 2 // bad command line
	exitWarnings = 3 // completed with warnings (skipped entries, metadata not applied)
	exitDamaged  = 4 // damaged data found (verify) or files not restorable (restore)
	exitAuth     = 5 // wrong or missing passphrase
	exitLocked   = 6 // another process holds the store lock
	exitBusy     = 7 // mount point busy, already mounted, or not mounted
)

// commands lists every command; each lives in its own file.
var commands []*cli.Command

func register(c *cli.Command) { commands = append(commands, c) }

// usageError marks errors that are the caller's command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func newApp() *cli.App {
	return &cli.App{
		Name:  "recall",
		Usage: "back up directory trees, files and block devices; browse and restore recovery points",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "home", Usage: "state directory holding the store and catalog", EnvVars: []string{"RECALL_HOME"}, Value: defaultHome()},
			&cli.StringFlag{Name: "password-file", Usage: "read the store passphrase from `FILE` (else RECALL_PASSWORD)"},
		},
		Commands:        commands,
		HideHelpCommand: false,
		ExitErrHandler:  func(*cli.Context, error) {},
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return usageError{err.Error()}
		},
	}
}

func defaultHome() string {
	if os.Geteuid() == 0 {
		return "/var/lib/recall"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "recall")
	}
	h, _ := os.UserHomeDir()
	return filepath.Join(h, ".local", "share", "recall")
}

func storeDir(c *cli.Context) string { return filepath.Join(c.String("home"), "store") }

func password(c *cli.Context) (string, error) {
	if f := c.String("password-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("password file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return os.Getenv("RECALL_PASSWORD"), nil
}

// openStore opens the store read-only (no lock).
func openStore(c *cli.Context) (*chunkstore.Store, error) {
	pw, err := password(c)
	if err != nil {
		return nil, err
	}
	return chunkstore.Open(storeDir(c), chunkstore.OpenOptions{Password: pw})
}

func openReader(c *cli.Context) (*engine.Reader, error) {
	st, err := openStore(c)
	if err != nil {
		return nil, err
	}
	return engine.NewReader(st), nil
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "recall: "+format+"\n", args...) }

// exitCode maps an error to the documented exit code; the one place that does.
func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue), strings.HasPrefix(err.Error(), "Required flag"), strings.HasPrefix(err.Error(), "flag provided but not defined"):
		return exitUsage
	case errors.Is(err, chunkstore.ErrWrongPassword), errors.Is(err, chunkstore.ErrNoPassword):
		return exitAuth
	case errors.Is(err, chunkstore.ErrLocked):
		return exitLocked
	case errors.Is(err, engine.ErrDamaged), errors.Is(err, engine.ErrVerifyFailed):
		return exitDamaged
	case errors.Is(err, engine.ErrWarnings):
		return exitWarnings
	case errors.Is(err, fs.ErrBusy), errors.Is(err, fs.ErrMounted), errors.Is(err, fs.ErrNotMounted):
		return exitBusy
	}
	return exitError
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if p := os.Getenv("RECALL_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.StartCPUProfile(f) // stopped before os.Exit below
		}
	}
	if os.Getenv("GOGC") == "" {
		// The heap is mostly pointer-free chunk buffers: collecting often
		// is cheap and keeps peak memory near the live set.
		debug.SetGCPercent(25)
	}
	app := newApp()
	err := app.RunContext(ctx, interspersed(app, os.Args))
	code := exitCode(err)
	if err != nil {
		if code == exitWarnings {
			fmt.Fprintf(os.Stderr, "recall: %v\n", err)
		} else {
			fmt.Fprintf(os.Stderr, "recall: error: %v\n", err)
		}
	}
	pprof.StopCPUProfile()
	os.Exit(code)
}
