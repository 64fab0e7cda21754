// Command recall is the recall backup server's command line.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/engine/server"
	"github.com/recall-backup/recall/fs"
	"github.com/recall-backup/recall/tapefs"
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
	app := &cli.App{
		Name:  "recall",
		Usage: "back up directory trees, files and block devices; browse and restore recovery points",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "home", Usage: "state directory holding the store and catalog", EnvVars: []string{"RECALL_HOME"}, Value: defaultHome()},
			&cli.StringFlag{Name: "password-file", EnvVars: []string{"RECALL_PASSWORD_FILE"}, Usage: "read the store passphrase from `FILE` (with neither this nor --password-command: RECALL_PASSWORD, else asked on a terminal)"},
			&cli.StringFlag{Name: "password-command", EnvVars: []string{"RECALL_PASSWORD_COMMAND"}, Usage: "run `CMD` with sh -c; the first line it prints is the store passphrase"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors and warnings (and the summary line --json asks for)"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "list each file as backup saves it or restore restores it"},
			&cli.DurationFlag{Name: "progress-interval", Value: 10 * time.Second, Usage: "how often progress is printed when stderr is not a terminal, and --json status lines"},
			// RECALL_STORE is read by storeLocation, not here: a location
			// typed on the command line may override the home's, one from
			// the environment may not.
			&cli.StringFlag{Name: "store", Usage: "the store is at `LOC`: a directory, or s3:http(s)://host[:port]/bucket[/prefix] (env RECALL_STORE; default: the one the home records, else HOME/store)"},
			&cli.StringFlag{Name: "s3-profile", EnvVars: []string{"RECALL_S3_PROFILE"}, Usage: "take S3 credentials from `PROFILE` of the credentials file (default: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, else AWS_PROFILE or default)"},
			&cli.StringFlag{Name: "s3-region", EnvVars: []string{"RECALL_S3_REGION"}, Usage: "the bucket's `REGION` (default: asked of the server)"},
			&cli.StringFlag{Name: "s3-ca-file", EnvVars: []string{"RECALL_S3_CA_FILE"}, Usage: "trust the certificates in PEM `FILE` beside the system's, for a gateway with its own CA"},
			&cli.BoolFlag{Name: "s3-path-style", EnvVars: []string{"RECALL_S3_PATH_STYLE"}, Usage: "name the bucket in the path, not the host name (a gateway without wildcard DNS; IP addresses and localhost always are)"},
			&cli.IntFlag{Name: "connections", EnvVars: []string{"RECALL_CONNECTIONS"}, Value: 8, Usage: "at most `N` requests to an object store in flight"},
			&cli.StringFlag{Name: "store-cache-size", EnvVars: []string{"RECALL_STORE_CACHE_SIZE"}, Value: "2GiB", Usage: "keep at most `SIZE` (e.g. 500MB, 4GiB) of a remote store's index files, manifests and tree packs in the home's cache"},
			&cli.DurationFlag{Name: "s3-lock-stale", EnvVars: []string{"RECALL_S3_LOCK_STALE"}, Value: 30 * time.Minute, Usage: "a lock on an object store whose holder stopped refreshing it (killed, cut off) is free after `DURATION`; a holder cut off that long stops writing"},
		},
		Commands:        commands,
		HideHelpCommand: false,
		ExitErrHandler:  func(*cli.Context, error) {},
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return flagError(c, c.App.Flags, err)
		},
		Action: unknownCommand,
		Before: func(c *cli.Context) error {
			if err := unknownHelpTopic(c); err != nil {
				return err
			}
			if _, err := cacheBytes(c); err != nil {
				return err
			}
			if err := nonNegative(c, c.App.Flags); err != nil {
				return err
			}
			if !c.IsSet("home") {
				switch c.Args().First() {
				case "", "version", "help", "h", "serve": // serve reads the file itself
				default:
					if err := configProblem(); err != nil {
						return err
					}
				}
			}
			if c.String("home") == "" {
				switch c.Args().First() {
				case "", "version", "help", "h":
				default:
					// An empty --home is the current directory, which then
					// had "no store here" without saying where it looked.
					return usagef("--home is empty (is RECALL_HOME set to \"\"?): give the directory of recall's store and catalog, or leave it out for %s", defaultHome())
				}
			}
			return nil
		},
	}
	for _, c := range commands {
		checkUsage(c)
	}
	return app
}

// checkUsage gives c and its subcommands the command line checks every
// command needs, so a command added later gets them by being registered:
//
//   - a negative duration (--lock-wait -1m) is a usage error: none of
//     recall's waits, graces or intervals means anything below zero, and
//     one was taken silently as none (nonNegative; the app's own flags
//     are checked by its Before);
//   - a flag that does not parse (--last abc) is a usage error;
//   - positional arguments are declared by ArgsUsage: its leading
//     upper-case words ("PATH", "[NAME]", "POINT (id, ...)") are the most a
//     command takes, and a word ending in "..." takes any number; one more
//     is a usage error ("verify extra"). A command checks its own minimum;
//   - a command with subcommands rejects an unknown one, and gives the
//     same hint for 'help' of one (unknownHelpTopic);
//   - a missing required flag is one line on stderr (missingFlags);
//   - an empty argument is a usage error: 'backup ""' (a cron line's unset
//     variable) backed up the current directory, and 'mount ""' mounted on it.
func checkUsage(c *cli.Command) {
	for _, f := range c.Flags {
		// A repeatable flag's values are in its Value, made once with
		// the command: a second app in one process (a test's next run)
		// starts from none, not from the values the last one was given.
		if g, ok := f.(*cli.GenericFlag); ok {
			if r, ok := g.Value.(*repeated); ok {
				r.list = nil
			}
		}
	}
	subs := ownSubcommands(c)
	if c.Action != nil || len(subs) > 0 {
		before := c.Before
		c.Before = func(ctx *cli.Context) error {
			if len(subs) > 0 {
				if err := unknownHelpTopic(ctx); err != nil {
					return err
				}
			}
			if err := nonNegative(ctx, c.Flags); err != nil {
				return err
			}
			if before != nil {
				return before(ctx)
			}
			return nil
		}
	}
	if c.OnUsageError == nil {
		c.OnUsageError = func(ctx *cli.Context, err error, _ bool) error {
			return flagError(ctx, append(slices.Clip(c.Flags), ctx.App.Flags...), err)
		}
	}
	if len(subs) > 0 {
		if c.Action == nil {
			c.Action = unknownCommand
		}
		for _, sub := range subs {
			checkUsage(sub)
		}
		return
	}
	required := takeRequired(c)
	before := c.Before
	c.Before = func(ctx *cli.Context) error {
		running.Store(ctx.Command.FullName())
		if max := maxArgs(c.ArgsUsage); max >= 0 && ctx.NArg() > max {
			if max == 0 {
				hint := ""
				if slices.ContainsFunc(c.Flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), "file") }) && ctx.NArg() == 1 && !ctx.IsSet("file") {
					// 'recall apply groups.toml': the file is a flag.
					hint = fmt.Sprintf(" (did you mean --file %s?)", ctx.Args().First())
				}
				return usagef("%s takes no arguments, got %q%s", ctx.Command.FullName(), ctx.Args().Slice(), hint)
			}
			return usagef("%s takes at most %d argument(s) (%s), got %q", ctx.Command.FullName(), max, c.ArgsUsage, ctx.Args().Slice())
		}
		if i := slices.Index(ctx.Args().Slice(), ""); i >= 0 {
			name, here := argName(c.ArgsUsage, i), ""
			if strings.Contains(name, "path") || strings.Contains(name, "mountpoint") || strings.Contains(name, "dir") {
				here = ", or '.' for the current directory"
			}
			return usagef("%s: argument %d is empty (is the variable that should give it set?); give the %s%s", ctx.Command.FullName(), i+1, name, here)
		}
		if err := emptyFlagValues(ctx); err != nil {
			return err
		}
		// After the arguments' check, which TestEveryCommandRejectsExtraArguments
		// proves without the required flags (takeRequired hid them from it).
		if err := missingFlags(ctx, required); err != nil {
			return err
		}
		if before != nil {
			return before(ctx)
		}
		return nil
	}
}

// emptyFlagValues refuses a flag given an empty value on the command
// line ('--source ""', '--path='), the command's or a global one. Taken
// as not given, it widened what the command does: 'points --source ""'
// listed every source and 'restore --path ""' restored the whole point
// when the variable meant to name one was unset. Not refused: a group's
// policy flags, which emptyPolicyFlags judges ("" is none or the default
// there), and a flag whose usage says what "" means. A flag from an empty
// environment variable is left as before: the variable is taken as unset.
func emptyFlagValues(c *cli.Context) error {
	policy := map[string]bool{}
	if slices.ContainsFunc(c.Command.Flags, func(f cli.Flag) bool { return f.Names()[0] == "pre-script" }) {
		for _, f := range policyFlags() {
			policy[f.Names()[0]] = true
		}
	}
	check := func(ctx *cli.Context, f cli.Flag) error {
		name := f.Names()[0]
		if policy[name] || !ctx.IsSet(name) {
			return nil
		}
		if d, ok := f.(cli.DocGenerationFlag); ok && strings.Contains(d.GetUsage(), `""`) {
			return nil
		}
		var empty bool
		switch f := f.(type) {
		case *cli.StringFlag:
			if slices.ContainsFunc(f.EnvVars, func(v string) bool { _, ok := os.LookupEnv(v); return ok }) {
				return nil
			}
			empty = strings.TrimSpace(ctx.String(name)) == ""
		case *cli.GenericFlag:
			if r, ok := f.Value.(*repeated); ok {
				empty = slices.ContainsFunc(r.list, func(v string) bool { return strings.TrimSpace(v) == "" })
			}
		}
		if !empty {
			return nil
		}
		return usagef("--%s is given an empty value (is the variable that should give it set?); give --%s%s, or leave the flag out", name, name, placeholder(ctx.Command, name))
	}
	for _, f := range c.Command.Flags {
		if err := check(c, f); err != nil {
			return err
		}
	}
	for _, f := range c.App.Flags {
		if err := check(c, f); err != nil {
			return err
		}
	}
	return nil
}

// argName is the name ArgsUsage gives positional argument i, in lower
// case ("path"), or "argument".
func argName(argsUsage string, i int) string {
	var words []string
	for _, w := range strings.Fields(argsUsage) {
		w = strings.Trim(w, "[].")
		if w == "" || strings.ToUpper(w) != w || strings.ToLower(w) == w {
			break
		}
		words = append(words, w)
	}
	switch {
	case len(words) == 0:
		return "argument"
	case i < len(words):
		return strings.ToLower(words[i])
	}
	return strings.ToLower(words[len(words)-1])
}

// maxArgs reads the most positional arguments a command takes from its
// ArgsUsage (see checkUsage); -1 means any number.
func maxArgs(argsUsage string) int {
	n := 0
	for _, w := range strings.Fields(argsUsage) {
		w = strings.Trim(w, "[]")
		if strings.HasSuffix(w, "...") {
			return -1
		}
		if w == "" || strings.ToUpper(w) != w || !unicode.IsLetter(rune(w[0])) {
			break
		}
		n++
	}
	return n
}

// unknownCommand is the action of the app and of every command with
// subcommands: with no argument it shows help, else the name is unknown,
// and the message says what was probably meant (commandHint).
func unknownCommand(c *cli.Context) error {
	if c.NArg() > 0 {
		path := commandPath(c)
		return unknownName(c.Args().First(), path, subcommands(c), path == c.App.Name)
	}
	if c.Command != nil && c.Command.Name != "" {
		return cli.ShowSubcommandHelp(c)
	}
	return cli.ShowAppHelp(c)
}

// unknownName is the usage error for name, which is none of cmds, the
// commands of path (top: the app's own).
func unknownName(name, path string, cmds []*cli.Command, top bool) error {
	if hint := commandHint(name, path, cmds, top); hint != "" {
		return usagef("unknown command %q; %s", name, hint)
	}
	return usagef("unknown command %q; run '%s --help' for the list", name, path)
}

// ownSubcommands are c's subcommands but urfave/cli's help command,
// which running a command adds to its subcommands (and to the help
// command's own): a command that ran once in a process (a test's) is no
// command group for that.
func ownSubcommands(c *cli.Command) []*cli.Command {
	var out []*cli.Command
	for _, sub := range c.Subcommands {
		if !sub.HasName("help") {
			out = append(out, sub)
		}
	}
	return out
}

// subcommands are the commands c's arguments may name: the app's, or
// those of c's command.
func subcommands(c *cli.Context) []*cli.Command {
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
		return c.Command.Subcommands
	}
	return c.App.Commands
}

// unknownHelpTopic is unknownName's error for "help NAME..." (or "h")
// when a NAME is not a command where it stands, as the name without
// "help" gets; nil for anything else. urfave/cli's help command says only
// "No help topic". It runs before c's command is dispatched, on the
// arguments c's command has left; a name under a command that has no
// subcommands is left to the help command (it shows that command's).
func unknownHelpTopic(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) < 2 || (args[0] != "help" && args[0] != "h") {
		return nil
	}
	path := commandPath(c)
	cmds, top := subcommands(c), path == c.App.Name
	for _, name := range args[1:] {
		if name == "--" {
			continue // interspersed's, once help is among the subcommands
		}
		if len(cmds) == 0 || name == "help" || name == "h" || strings.HasPrefix(name, "-") {
			return nil
		}
		i := slices.IndexFunc(cmds, func(cmd *cli.Command) bool { return cmd.HasName(name) })
		if i < 0 {
			return unknownName(name, path, cmds, top)
		}
		cmds, path, top = ownSubcommands(cmds[i]), path+" "+cmds[i].Name, false
	}
	return nil
}

// commandPath is the command line from the app down to c's command
// ("recall group create"): FullName holds only the last name for a
// command nested two deep.
func commandPath(c *cli.Context) string {
	var path []string
	for _, l := range c.Lineage() {
		if l.Command != nil && l.Command.Name != "" && l.Command.Name != c.App.Name {
			path = append([]string{l.Command.Name}, path...)
		}
	}
	return strings.Join(append([]string{c.App.Name}, path...), " ")
}

// otherTools are the commands restic and borg users type, and what recall
// does instead: the first thing a new user tries should not be a dead end.
var otherTools = map[string]string{
	"snapshots": "recovery points are listed by 'recall points'",
	"snapshot":  "recovery points are listed by 'recall points'",
	"list":      "recovery points are listed by 'recall points'",
	"check":     "the store is checked by 'recall verify' (--read-data reads every pack)",
	"stats":     "sizes, growth and points kept are shown by 'recall status'",
	"info":      "sizes, growth and points kept are shown by 'recall status'",
	"ls":        "to see a point's files, mount the points with 'recall mount MOUNTPOINT' and browse MOUNTPOINT/<source>/",
	"find":      "to search the points' files, mount them with 'recall mount MOUNTPOINT' and search MOUNTPOINT/<source>/ (one directory per point)",
	"dump":      "to read a file of a point, mount the points with 'recall mount MOUNTPOINT', or restore it with 'recall restore POINT PATH --target DIR'",
	"unlock": "recall has no unlock: a store lock is freed when the process holding it ends " +
		"(on an object store, once its holder stops refreshing it for --s3-lock-stale, 30m by default); " +
		"a command that finds the store locked names the holder",
	"create":  "a recovery point is made by 'recall backup'",
	"extract": "points are restored by 'recall restore'",
	"delete":  "points are removed by 'recall forget' (or by policy: 'recall prune')",
	"compact": "the space of forgotten points is returned by 'recall gc'",
}

// subcommandAliases are names other tools give a subcommand (group ls).
var subcommandAliases = map[string]string{"ls": "list", "info": "show", "cat": "show"}

// commandHint is what an unknown command name probably meant, among cmds
// of the command path: a name another tool uses (top is set for the app's
// own commands), a near miss of a name ("restor"), or "".
func commandHint(name, path string, cmds []*cli.Command, top bool) string {
	var names []string
	for _, c := range cmds {
		if !c.Hidden {
			names = append(names, c.Names()...)
		}
	}
	if top {
		if hint, ok := otherTools[name]; ok {
			return hint
		}
	}
	if alias, ok := subcommandAliases[name]; ok && slices.Contains(names, alias) {
		return fmt.Sprintf("did you mean '%s %s'?", path, alias)
	}
	if near := nearest(name, names); near != "" {
		return fmt.Sprintf("did you mean '%s %s'? (run '%s --help' for the list)", path, near, path)
	}
	if top {
		// A near miss of another tool's name ("chek" for check).
		if near := nearest(name, slices.Collect(maps.Keys(otherTools))); near != "" {
			return otherTools[near]
		}
	}
	return ""
}

// nearest is the one name of names within a typing mistake of s (an edit
// distance of 1, or 2 for names of 5 or more letters), else "".
func nearest(s string, names []string) string {
	limit := 1
	if len(s) >= 5 {
		limit = 2
	}
	best, bestD, ties := "", limit+1, 0
	for _, n := range names {
		d := engine.EditDistance(strings.ToLower(s), n)
		switch {
		case d < bestD:
			best, bestD, ties = n, d, 0
		case d == bestD && n != best:
			ties++
		}
	}
	if ties > 0 {
		return "" // two equally near: a guess would mislead
	}
	return best
}

// takeRequired takes the Required mark off c's flags and returns their
// names, for missingFlags: urfave/cli prints the whole command help on
// stdout before its "Required flag" error, --json or not, which a
// script then reads as the command's output.
func takeRequired(c *cli.Command) [][]string {
	var out [][]string
	for _, f := range c.Flags {
		rf, ok := f.(cli.RequiredFlag)
		if !ok || !rf.IsRequired() {
			continue
		}
		// Every urfave/cli v2 flag type has the field; one that had not
		// would keep urfave/cli's own check.
		v := reflect.ValueOf(f)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			continue
		}
		req := v.FieldByName("Required")
		if !req.IsValid() || req.Kind() != reflect.Bool || !req.CanSet() {
			continue
		}
		req.SetBool(false)
		out = append(out, f.Names())
	}
	return out
}

// missingFlags is the usage error for the required flags (as takeRequired
// returned them) the command line does not give: one line, naming each
// with its placeholder and where the command's help is.
func missingFlags(c *cli.Context, required [][]string) error {
	var missing []string
	for _, names := range required {
		if !slices.ContainsFunc(names, c.IsSet) {
			missing = append(missing, dashed(names[0])+placeholder(c.Command, names[0]))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	path := commandPath(c)
	return usagef("%s needs %s; see '%s --help'", strings.TrimPrefix(path, c.App.Name+" "), strings.Join(missing, " and "), path)
}

// placeholder is " DIR" for a flag whose usage names its value `DIR`.
func placeholder(cmd *cli.Command, name string) string {
	if cmd == nil {
		return ""
	}
	for _, f := range cmd.Flags {
		if d, ok := f.(cli.DocGenerationFlag); ok && slices.Contains(f.Names(), name) {
			// urfave/cli's convention: the value's name is in backquotes.
			if _, v, ok := strings.Cut(d.GetUsage(), "`"); ok && d.TakesValue() {
				if v, _, ok := strings.Cut(v, "`"); ok && v != "" {
					return " " + v
				}
			}
		}
	}
	return ""
}

// dashed is a flag's name as it is typed: --name, or -n for one letter.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// Go's flag package's messages, which urfave/cli passes on: they spell
// every flag with one dash, and a bad value says only "parse error".
var (
	undefinedFlagRE = regexp.MustCompile(`^flag provided but not defined: -+(.+)$`)
	badValueRE      = regexp.MustCompile(`^invalid (?:boolean )?value (".*") for (?:flag )?-+([^:]+): (.*)$`)
	needsValueRE    = regexp.MustCompile(`^flag needs an argument: -+(.+)$`)
)

// flagError is the usage error for a flag that did not parse, among
// flags (the command's and the app's): flags spelt as they are typed, a
// near miss of an unknown flag named, and the form a bad value needs.
func flagError(c *cli.Context, flags []cli.Flag, err error) error {
	msg := err.Error()
	path := commandPath(c)
	if m := undefinedFlagRE.FindStringSubmatch(msg); m != nil {
		if path == c.App.Name && (m[1] == "version" || m[1] == "V") {
			return usagef("recall has no %s flag; run 'recall version' for the version, commit and store format", dashed(m[1]))
		}
		var names []string
		for _, f := range flags {
			names = append(names, f.Names()...)
		}
		if near := nearest(m[1], names); near != "" {
			return usagef("unknown flag %s; did you mean %s? (see '%s --help')", dashed(m[1]), dashed(near), path)
		}
		return usagef("unknown flag %s; see '%s --help'", dashed(m[1]), path)
	}
	if m := badValueRE.FindStringSubmatch(msg); m != nil {
		return usagef("invalid value %s for %s: %s", m[1], dashed(m[2]), valueForm(flags, m[2], m[3]))
	}
	if m := needsValueRE.FindStringSubmatch(msg); m != nil {
		want := "a value"
		if p := placeholder(&cli.Command{Flags: flags}, m[1]); p != "" {
			want = fmt.Sprintf("a value (%s%s)", dashed(m[1]), p)
		}
		return usagef("%s needs %s; see '%s --help'", dashed(m[1]), want, path)
	}
	return usageError{msg}
}

// valueForm says what value the flag name takes; why is the flag
// package's reason, used when the type says nothing better.
func valueForm(flags []cli.Flag, name, why string) string {
	for _, f := range flags {
		if !slices.Contains(f.Names(), name) {
			continue
		}
		switch f.(type) {
		case *cli.DurationFlag:
			return "give a duration such as 10s, 1m or 1h30m"
		case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag:
			return "give a whole number"
		case *cli.Float64Flag:
			return "give a number"
		case *cli.BoolFlag:
			return "give true or false"
		}
	}
	if why == "parse error" {
		return "not a value it takes"
	}
	return why
}

// running is the command being run, for the message of an interruption
// (read by the signal goroutine).
var running atomic.Value

// interrupted is how a command stopped by SIGINT or SIGTERM ends: the
// context's cause, so the engine's own errors carry it, and the error main
// reports whatever the command returned.
type interrupted struct {
	sig syscall.Signal
	cmd string
}

// Interrupted says the command was stopped by a signal: its job is
// recorded "interrupted", not "failed" (engine).
func (e interrupted) Interrupted() bool { return true }

// signal names the signal, as messages say it.
func (e interrupted) signal() string {
	return map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[e.sig]
}

func (e interrupted) Error() string {
	name := e.signal()
	what := e.cmd
	if what == "" {
		what = "recall" // before the command was known
	}
	msg := fmt.Sprintf("%s interrupted by %s", what, name)
	if e.cmd == "backup" {
		msg += "; no recovery point was made, but the packs finished so far are kept and the next backup reuses them"
	}
	return msg
}

// defaultHome is the home of a command given neither --home nor
// RECALL_HOME: the server's, when its configuration file (RECALL_CONFIG,
// else server.DefaultConfigPath) names one, so that points, group list
// and the rest act on what recall serve serves; else /var/lib/recall for
// root and the XDG data directory for others.
func defaultHome() string {
	if h := configHome(); h != "" {
		return h
	}
	if os.Geteuid() == 0 {
		return "/var/lib/recall"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "recall")
	}
	h, _ := os.UserHomeDir()
	return filepath.Join(h, ".local", "share", "recall")
}

// configProblem is the usage error of a command given neither --home nor
// RECALL_HOME while RECALL_CONFIG names a file that cannot be read or is
// not TOML: the README says such a file must exist, and the command went
// on in the built-in default home (for root /var/lib/recall), where it
// found no store or, worse, another one.
func configProblem() error {
	p := os.Getenv("RECALL_CONFIG")
	if p == "" {
		return nil
	}
	if _, err := readConfigHome(p); err != nil {
		return usagef("RECALL_CONFIG names %s: %v; the server's configuration names the home every command uses: fix the file, unset RECALL_CONFIG, or give --home", p, err)
	}
	return nil
}

// configHome is the home the server's configuration file names, or "".
// Only that key is read: a file recall serve would refuse for another
// reason is its to report, and a file that cannot be read at all (or is
// not TOML) names no home (configProblem refuses it when RECALL_CONFIG
// names it).
func configHome() string {
	p := os.Getenv("RECALL_CONFIG")
	if p == "" {
		p = server.DefaultConfigPath
	}
	h, _ := readConfigHome(p)
	return h
}

// readConfigHome reads the home the server's configuration file p names
// (only that key).
func readConfigHome(p string) (string, error) {
	var c struct {
		Home string `toml:"home"`
	}
	_, err := toml.DecodeFile(p, &c)
	return c.Home, err
}

// storeLocation is where the store of the command's home is: --store,
// RECALL_STORE, what the home records, or HOME/store (engine.HomeStore).
// A --store that overrides the home's own store is said once.
func storeLocation(c *cli.Context) (string, error) {
	given, explicit := c.String("store"), c.IsSet("store")
	if !explicit {
		given = os.Getenv("RECALL_STORE")
	}
	loc, note, err := engine.HomeStore(c.String("home"), given, explicit)
	if err != nil {
		return "", err
	}
	if note != "" && !warnedStore {
		warnedStore = true
		logf("warning: %s", note)
	}
	return loc, nil
}

var warnedStore bool

// storeDir names the store in messages (a directory or an s3: location);
// an unreadable store.json is reported by the command's open.
func storeDir(c *cli.Context) string {
	if loc, err := storeLocation(c); err == nil {
		return loc
	}
	return engine.StoreDir(c.String("home"))
}

// remoteOptions are the global flags for a store on an object store.
func remoteOptions(c *cli.Context) engine.RemoteOptions {
	cache, _ := cacheBytes(c) // checked by the app's Before
	return engine.RemoteOptions{Profile: c.String("s3-profile"), Region: c.String("s3-region"), CAFile: c.String("s3-ca-file"),
		PathStyle: c.Bool("s3-path-style"), Connections: c.Int("connections"), LockStale: c.Duration("s3-lock-stale"), CacheBytes: cache}
}

// cacheBytes is --store-cache-size, the bound of the home's cache of a remote
// store.
func cacheBytes(c *cli.Context) (int64, error) {
	n, err := parseSize(c.String("store-cache-size"))
	if err == nil && n <= 0 {
		err = fmt.Errorf("invalid size %q: the cache needs room; give a size like 500MB or 2GiB", c.String("store-cache-size"))
	}
	if err != nil {
		return 0, usagef("--store-cache-size: %v", err)
	}
	return n, nil
}

// storeArgs are the global flags that choose the store, as given, for a
// child process of this one (the mount server).
func storeArgs(c *cli.Context) []string {
	var args []string
	for _, f := range []string{"store", "store-cache-size", "s3-profile", "s3-region", "s3-ca-file"} {
		if c.IsSet(f) {
			args = append(args, "--"+f, c.String(f))
		}
	}
	if c.IsSet("s3-path-style") {
		args = append(args, fmt.Sprintf("--s3-path-style=%t", c.Bool("s3-path-style")))
	}
	if c.IsSet("connections") {
		args = append(args, "--connections", fmt.Sprint(c.Int("connections")))
	}
	if c.IsSet("s3-lock-stale") {
		args = append(args, "--s3-lock-stale", c.Duration("s3-lock-stale").String())
	}
	return args
}

// openLocation opens the command's store with o. The home's own store/
// opens as it always did; another location goes through
// engine.OpenLocation. A remote store opened for a home that records
// none and holds nothing is recorded there, so that the next command
// (and the home's catalog) needs only --home.
func openLocation(c *cli.Context, o chunkstore.OpenOptions) (*engine.Store, error) {
	return openLocationCached(c, o, true)
}

// openLocationCached is openLocation; a remote store goes through the
// home's cache only when cached is set.
func openLocationCached(c *cli.Context, o chunkstore.OpenOptions, cached bool) (*engine.Store, error) {
	loc, err := storeLocation(c)
	if err != nil {
		return nil, err
	}
	home := c.String("home")
	if loc == engine.StoreDir(home) {
		return engine.Open(loc, o)
	}
	record := engine.IsRemote(loc) && engine.RequireStore(home) != nil && newHome(home)
	ro := remoteOptions(c)
	if cached {
		ro.CacheDir = engine.CacheDir(home)
	}
	st, err := engine.OpenLocation(c.Context, loc, ro, o)
	if err != nil {
		return nil, err
	}
	if record {
		if err := engine.RecordStore(home, loc); err != nil {
			warnf("%v; give --store again next time", err)
		}
	}
	return st, nil
}

// newHome reports whether dir is missing or holds nothing but the cache
// an earlier open made.
func newHome(dir string) bool {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	for _, e := range ents {
		if e.Name() != filepath.Base(engine.CacheDir(dir)) {
			return false
		}
	}
	return err == nil
}

// openStore opens the store; nothing is locked until a write session is
// taken.
func openStore(c *cli.Context) (*engine.Store, error) { return openStoreCached(c, true) }

// openStoreUncached is openStore that reads a remote store itself, never
// the home's cache of it: what verify and repair check and mend is the
// remote's files (a copy in the cache would hide their damage).
func openStoreUncached(c *cli.Context) (*engine.Store, error) { return openStoreCached(c, false) }

func openStoreCached(c *cli.Context, cached bool) (*engine.Store, error) {
	// The passphrase is sought only once the store turns out to need one:
	// a plaintext store runs no --password-command and asks nothing.
	pw := ""
	st, err := openLocationCached(c, chunkstore.OpenOptions{}, cached)
	if noPassword := err; errors.Is(err, chunkstore.ErrNoPassword) {
		if pw, err = password(c); err != nil {
			return nil, err
		}
		if pw == "" {
			asked, aerr := askPassword(c, storeDir(c))
			if errors.Is(aerr, errNoTerminal) {
				return nil, noPassword
			}
			if aerr != nil {
				return nil, aerr
			}
			pw = asked
		}
		st, err = openLocationCached(c, chunkstore.OpenOptions{Password: pw}, cached)
	}
	if err != nil {
		return nil, err
	}
	resolved = pw
	if p := st.ConfigProblem(); p != "" {
		logf("warning: %s; the next backup or repair rewrites it", p)
	}
	return st, nil
}

// printJSON prints v as one line of JSON: what --json prints for a
// single result.
func printJSON(c *cli.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.App.Writer, string(b))
	return err
}

// report is where a command's report for a person goes: the app's
// writer, or nowhere under --quiet (cron mails whatever a command prints).
// What --json asks for goes to c.App.Writer either way: a script asked.
func report(c *cli.Context) io.Writer {
	if c.Bool("quiet") {
		return io.Discard
	}
	return c.App.Writer
}

// infof is logf for the lines that say what a command does, not what
// went wrong: --quiet drops them.
func infof(c *cli.Context) func(format string, args ...any) {
	if c.Bool("quiet") {
		return func(string, ...any) {}
	}
	return logf
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "recall: %s\n", oneLine(fmt.Sprintf(format, args...)))
}

// oneLine escapes the control characters of s (\x0a for a newline, \x1b
// for an escape), so that a message naming a file stays one line: a file
// name may hold a newline and text that reads as another message
// ("recall: completed"), or a terminal's escape sequences. A backslash is
// escaped too (\\), so that a name holding a tab and one holding the four
// characters \x09 print differently, except in a Go-quoted string (%q),
// which is escaped already. Bytes that are not UTF-8 are left as they
// are.
func oneLine(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r == '\\' || unicode.IsControl(r) }) {
		return s
	}
	var b strings.Builder
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		if r == '"' {
			// A name the message quoted (%q) is escaped already, and
			// unambiguously: printed as it is, not as "q\\"".
			if q, err := strconv.QuotedPrefix(s); err == nil && !strings.ContainsFunc(q, unicode.IsControl) {
				b.WriteString(q)
				s = s[len(q):]
				continue
			}
		}
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case unicode.IsControl(r):
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			b.WriteString(s[:n]) // a byte that is not UTF-8 as it is
		}
		s = s[n:]
	}
	return b.String()
}

// errorLines is the text of the error a command ends with, as oneLine
// makes a message safe: each line escaped, and the lines after the first
// (errors.Join puts several errors on lines of their own) indented, so no
// line of it, however a file name it quotes was made, reads as a line
// recall printed or reaches the terminal as an escape sequence.
func errorLines(err error) string {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = oneLine(l)
	}
	return strings.Join(lines, "\n  ")
}

// warnf is logf for warnings, which the engine reports through it.
func warnf(format string, args ...any) { logf("warning: "+format, args...) }

// lockWait is how a command waits for the store's lock: up to --lock-wait,
// saying once whom it waits for.
func lockWait(c *cli.Context) engine.LockOptions {
	return engine.LockOptions{Wait: c.Duration("lock-wait"), OnWait: func(h chunkstore.LockInfo) {
		logf("store is busy: waiting for %s", h)
	}}
}

// exitCode maps an error to the documented exit code; the one place that does.
func exitCode(err error) int {
	var ue usageError
	var ie interrupted
	var ec cli.ExitCoder // only urfave/cli's own ("No help topic for ..."): recall never makes one
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ie):
		return 128 + int(ie.sig)
	case errors.As(err, &ue), errors.As(err, &ec), strings.HasPrefix(err.Error(), "Required flag"), strings.HasPrefix(err.Error(), "flag provided but not defined"):
		return exitUsage
	case errors.Is(err, engine.ErrBadPolicy), errors.Is(err, server.ErrBadConfig), errors.Is(err, engine.ErrOtherStore):
		return exitUsage
	case errors.Is(err, chunkstore.ErrWrongPassword), errors.Is(err, chunkstore.ErrNoPassword), errors.Is(err, chunkstore.ErrKeyMismatch), errors.Is(err, tapefs.ErrWrongKey), errors.Is(err, engine.ErrNoKey):
		return exitAuth
	case errors.Is(err, chunkstore.ErrLocked), errors.Is(err, server.ErrHomeBusy):
		return exitLocked
	case errors.Is(err, engine.ErrDamaged), errors.Is(err, engine.ErrVerifyFailed), errors.Is(err, chunkstore.ErrConfigDamaged):
		return exitDamaged
	case errors.Is(err, engine.ErrWarnings):
		return exitWarnings
	case errors.Is(err, fs.ErrBusy), errors.Is(err, fs.ErrMounted), errors.Is(err, fs.ErrNotMounted):
		return exitBusy
	}
	return exitError
}

// stopOnSignal returns a context cancelled, with an interrupted cause, by
// the first SIGINT or SIGTERM; a second one ends the process at once.
func stopOnSignal() (ctx context.Context, caught func() *interrupted) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	var got atomic.Pointer[interrupted]
	go func() {
		sig := (<-ch).(syscall.Signal)
		signal.Stop(ch)
		cmd, _ := running.Load().(string)
		e := &interrupted{sig: sig, cmd: cmd}
		got.Store(e)
		cancel(*e)
	}()
	return ctx, got.Load
}

func main() {
	ctx, caught := stopOnSignal()
	if p := os.Getenv("RECALL_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.StartCPUProfile(f) // stopped before os.Exit below
		}
	}
	if p := os.Getenv("RECALL_TRACE"); p != "" {
		if f, err := os.Create(p); err == nil {
			trace.Start(f) // stopped before os.Exit below
		}
	}
	mp := startMemProfile(os.Getenv("RECALL_MEMPROFILE"))
	if os.Getenv("GOGC") == "" {
		// The heap is mostly pointer-free chunk buffers: collecting often
		// is cheap and keeps peak memory near the live set.
		debug.SetGCPercent(25)
	}
	app := newApp()
	err := app.RunContext(ctx, interspersed(app, os.Args))
	if ie := caught(); ie != nil && err != nil && !errors.As(err, new(interrupted)) {
		// The command saw only a cancelled context; say why.
		if err.Error() == context.Canceled.Error() {
			err = *ie
		} else {
			err = fmt.Errorf("%w (%v)", *ie, err)
		}
	}
	code := exitCode(err)
	if err != nil {
		if code == exitWarnings {
			fmt.Fprintf(os.Stderr, "recall: %s\n", errorLines(err))
		} else {
			fmt.Fprintf(os.Stderr, "recall: error: %s\n", errorLines(err))
		}
	}
	pprof.StopCPUProfile()
	trace.Stop()
	mp.Stop()
	os.Exit(code)
}

// nonNegative refuses a negative value of any duration flag among flags:
// a wait, a grace or an interval below zero means nothing, and before,
// 'gc --index-grace -1h' or 'gc --wait -1s' was taken silently as none.
// So is --connections below 1 (no request could ever be made).
func nonNegative(c *cli.Context, flags []cli.Flag) error {
	for _, f := range flags {
		if n, ok := f.(*cli.IntFlag); ok && n.Name == "connections" && c.IsSet(n.Name) {
			if v := c.Int(n.Name); v < 1 {
				return usagef("--connections %d: give 1 or more requests in flight", v)
			}
		}
		if d, ok := f.(*cli.DurationFlag); ok {
			if v := c.Duration(d.Name); v <= 0 && d.Name == "progress-interval" {
				// An interval of none would print without end.
				return usagef("--progress-interval %s: give a positive duration, like 10s or 500ms", v)
			} else if v < 0 {
				return usagef("--%s %s: must not be negative (give 0 or a span, like 30s or 1h)", d.Name, v)
			}
		}
	}
	return nil
}
