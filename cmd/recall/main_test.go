package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/engine/server"
)

func TestMaxArgs(t *testing.T) {
	for _, tc := range []struct {
		argsUsage string
		want      int
	}{
		{"", 0},
		{"PATH", 1},
		{`POINT (id, unique id prefix, or "latest")`, 1},
		{"SRC DST", 2},
		{"NAME [MORE]", 2},
		{"PATH...", -1},
		{"POINT [PATH...]", -1},
		{"lower case words are prose", 0},
	} {
		if got := maxArgs(tc.argsUsage); got != tc.want {
			t.Errorf("maxArgs(%q) = %d, want %d", tc.argsUsage, got, tc.want)
		}
	}
}

// Every registered command gets the usage checks, including ones added
// later: an extra argument is a usage error before the action runs.
func TestEveryCommandRejectsExtraArguments(t *testing.T) {
	app := newApp()
	for _, c := range app.Commands {
		if len(ownSubcommands(c)) > 0 || maxArgs(c.ArgsUsage) < 0 {
			continue
		}
		args := []string{"recall", "--home", t.TempDir(), c.Name}
		for i := 0; i <= maxArgs(c.ArgsUsage); i++ {
			args = append(args, fmt.Sprint("arg", i))
		}
		// Required flags are left out: the arguments are checked first
		// (a missing flag is a usage error too, so the message tells).
		if err := app.Run(interspersed(app, args)); exitCode(err) != exitUsage || strings.Contains(err.Error(), " needs --") {
			t.Errorf("%s with %d arguments: %v (exit %d), want a usage error about the arguments", c.Name, maxArgs(c.ArgsUsage)+1, err, exitCode(err))
		}
	}
}

// An empty argument is a usage error for every command that takes one,
// nested ones included: 'backup ""' (a cron line's unset variable) backed
// up the current directory, and 'mount ""' mounted over it.
func TestEveryCommandRejectsEmptyArgument(t *testing.T) {
	app := newApp()
	var walk func(path []string, cs []*cli.Command)
	n := 0
	walk = func(path []string, cs []*cli.Command) {
		for _, c := range cs {
			p := append(slices.Clip(path), c.Name)
			if subs := ownSubcommands(c); len(subs) > 0 {
				walk(p, subs)
				continue
			}
			if maxArgs(c.ArgsUsage) == 0 {
				continue
			}
			n++
			home := t.TempDir()
			args := append(append([]string{"recall", "--home", home}, p...), "")
			err := app.Run(interspersed(app, args))
			if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "argument 1 is empty") {
				t.Errorf("%s \"\": %v (exit %d), want a usage error naming the empty argument", strings.Join(p, " "), err, exitCode(err))
			}
			if ents, _ := os.ReadDir(home); len(ents) != 0 {
				t.Errorf("%s \"\" wrote into the home", strings.Join(p, " "))
			}
		}
	}
	walk(nil, app.Commands)
	if n < 20 {
		t.Fatalf("only %d commands take arguments: the walk missed the nested ones", n)
	}
	if got := argName("PATH", 0); got != "path" {
		t.Errorf("argName(PATH) = %q", got)
	}
	if got := argName(`POINT (id, unique id prefix, or "latest")`, 3); got != "point" {
		t.Errorf("argName(POINT (...), 3) = %q", got)
	}
}

// Every flag that takes a word refuses an empty one on the command line
// (the variable meant to give it unset), where it was taken as not
// given: 'restore --path ""' restored the whole point. Not walked: the
// group policy flags (TestEmptyPolicyFlags) and the flags whose usage
// says what "" means.
func TestEveryFlagRejectsEmptyValue(t *testing.T) {
	var walk func(path []string, cs []*cli.Command)
	n := 0
	walk = func(path []string, cs []*cli.Command) {
		for _, c := range cs {
			p := append(slices.Clip(path), c.Name)
			if subs := ownSubcommands(c); len(subs) > 0 {
				walk(p, subs)
				continue
			}
			policy := slices.ContainsFunc(c.Flags, func(f cli.Flag) bool { return f.Names()[0] == "pre-script" })
			for _, f := range c.Flags {
				name := f.Names()[0]
				switch f := f.(type) {
				case *cli.StringFlag:
				case *cli.GenericFlag:
					if _, ok := f.Value.(*repeated); !ok {
						continue
					}
				default:
					continue
				}
				if d := f.(cli.DocGenerationFlag); strings.Contains(d.GetUsage(), `""`) {
					continue
				}
				if policy && slices.ContainsFunc(policyFlags(), func(g cli.Flag) bool { return g.Names()[0] == name }) {
					continue
				}
				n++
				home := t.TempDir()
				for _, form := range [][]string{{"--" + name, ""}, {"--" + name + "="}} {
					app := newApp()
					args := append(append([]string{"recall", "--home", home}, p...), form...)
					err := app.Run(interspersed(app, args))
					if exitCode(err) != exitUsage || !strings.Contains(fmt.Sprint(err), "--"+name+" is given an empty value") {
						t.Errorf("%s %q: %v (exit %d), want a usage error naming the empty flag", strings.Join(p, " "), form, err, exitCode(err))
					}
				}
				if ents, _ := os.ReadDir(home); len(ents) != 0 {
					t.Errorf("%s --%s \"\" wrote into the home", strings.Join(p, " "), name)
				}
			}
		}
	}
	walk(nil, newApp().Commands)
	if n < 40 {
		t.Fatalf("only %d flags walked: the walk missed some", n)
	}
	// Where "" means something, it is taken.
	for _, tc := range [][]string{
		{"group", "create", "g", "--member", "/nonexistent", "--pre-script", ""},
	} {
		home := t.TempDir()
		app := newApp()
		err := app.Run(interspersed(app, append([]string{"recall", "--home", home}, tc...)))
		if err != nil && strings.Contains(err.Error(), "empty value") {
			t.Errorf("%q: %v", tc, err)
		}
	}
}

func TestExitCodeInterrupted(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{interrupted{sig: syscall.SIGINT, cmd: "restore"}, 130},
		{interrupted{sig: syscall.SIGTERM, cmd: "backup"}, 143},
		{fmt.Errorf("restore x: %w", interrupted{sig: syscall.SIGTERM}), 143},
		// An interruption outranks what the command made of it.
		{fmt.Errorf("%w (%w)", interrupted{sig: syscall.SIGINT}, engine.ErrDamaged), 130},
		{usagef("x"), exitUsage},
		// A configuration file that cannot be used is a usage error for
		// every command that reads it (serve, notify test, the client).
		{fmt.Errorf("%w: recall.toml:3: unknown key", server.ErrBadConfig), exitUsage},
		{errors.New("x"), exitError},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// Commands given neither --home nor RECALL_HOME use the home the server's
// configuration file names, so they see what recall serve serves; a file
// without one, or one that is not TOML, leaves the built-in default.
func TestDefaultHomeFromConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "recall.toml")
	t.Setenv("RECALL_CONFIG", cfg)
	os.WriteFile(cfg, []byte("home = \"/srv/backup/recall\"\nconcurrency = 2\n"), 0o644)
	if h := defaultHome(); h != "/srv/backup/recall" {
		t.Errorf("home from the file: %q", h)
	}
	for _, text := range []string{"concurrency = 2\n", "home = [\n"} {
		os.WriteFile(cfg, []byte(text), 0o644)
		if h := defaultHome(); h == "" || h == "/srv/backup/recall" {
			t.Errorf("file %q: home %q", text, h)
		}
	}
}

// Every command with subcommands, given none, prints its help and exits
// 0. (Fix: repair alone was a usage error, exit 2, unlike key or tape.)
func TestCommandGroupsWithoutSubcommandShowHelp(t *testing.T) {
	app := newApp()
	groups := 0
	for _, c := range app.Commands {
		if len(ownSubcommands(c)) == 0 || c.Name == "alerts" { // alerts alone lists the alerts
			continue
		}
		groups++
		out, err := runRecall(t, "--home", t.TempDir(), c.Name)
		if err != nil || exitCode(err) != exitOK {
			t.Errorf("recall %s: %v (exit %d), want its help and exit 0", c.Name, err, exitCode(err))
		}
		if !strings.Contains(out, "recall "+c.Name) {
			t.Errorf("recall %s printed %q, want its help", c.Name, out)
		}
	}
	if groups == 0 {
		t.Fatal("no command with subcommands registered")
	}
}

// help of a name that is no command gets the hint the name alone gets,
// and exit 2, at any depth. (Fix: urfave/cli's help command said only
// "No help topic for 'restor'".)
func TestHelpOfUnknownCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"help", "restor"}, "did you mean 'recall restore'?"},
		{[]string{"h", "restor"}, "did you mean 'recall restore'?"},
		{[]string{"help", "snapshots"}, "'recall points'"},
		{[]string{"help", "frobnicate"}, "run 'recall --help' for the list"},
		{[]string{"help", "key", "paswd"}, "did you mean 'recall key passwd'?"},
		{[]string{"key", "help", "paswd"}, "did you mean 'recall key passwd'?"},
		{[]string{"help", "group", "ls"}, "did you mean 'recall group list'?"},
	} {
		line := strings.Join(tc.args, " ")
		_, plain := runRecall(t, append([]string{"--home", t.TempDir()}, tc.args[len(tc.args)-1])...)
		_, err := runRecall(t, append([]string{"--home", t.TempDir()}, tc.args...)...)
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("recall %s: %v (exit %d), want exit 2 and %q", line, err, exitCode(err), tc.want)
		}
		if len(tc.args) == 2 && (plain == nil || err == nil || plain.Error() != err.Error()) {
			t.Errorf("recall %s: %v; want what recall %s says: %v", line, err, tc.args[1], plain)
		}
	}
	// Known topics still show their help.
	for _, args := range [][]string{{"help", "restore"}, {"help", "key"}, {"help", "key", "passwd"}, {"key", "help", "passwd"}, {"help", "restore", "extra"}} {
		if out, err := runRecall(t, append([]string{"--home", t.TempDir()}, args...)...); err != nil || !strings.Contains(out, "USAGE") {
			t.Errorf("recall %s: %v, %q; want help", strings.Join(args, " "), err, out)
		}
	}
}

// An empty --home (RECALL_HOME="" in a unit file) is a usage error naming
// it, not "no store here" about the current directory.
func TestEmptyHomeRefused(t *testing.T) {
	t.Setenv("RECALL_HOME", "")
	for _, args := range [][]string{{"points"}, {"--home", "", "points"}, {"points", "--home="}} {
		_, err := runRecall(t, args...)
		if exitCode(err) != exitUsage || err == nil || !strings.Contains(err.Error(), "--home is empty") {
			t.Errorf("recall %q: %v (exit %d), want a usage error naming --home", args, err, exitCode(err))
		}
	}
	if _, err := runRecall(t, "version"); err != nil {
		t.Errorf("recall version with an empty home: %v", err)
	}
}

// A bad exclude pattern's advice reads as what to type: it was "write
// \\! for a name starting with '!'" (the message's one backslash, shown
// doubled), and '\\!bang' left out nothing.
func TestExcludePatternAdvice(t *testing.T) {
	src := t.TempDir()
	for pat, advice := range map[string]string{
		"!bang": "put a backslash before the '!'",
		`a\`:    "for a name ending in a backslash, end the pattern with two",
		"[ab":   "for a '[' itself, put a backslash before it",
	} {
		_, err := runRecall(t, "--home", t.TempDir(), "backup", "--exclude", pat, src)
		msg := errorLines(err)
		_, after, _ := strings.Cut(msg, fmt.Sprintf("%q", pat))
		if exitCode(err) != exitUsage || !strings.Contains(after, advice) || strings.Contains(after, `\`) {
			t.Errorf("--exclude %s: exit %d, %s\nwant exit 2 and the advice %q, without a backslash", pat, exitCode(err), msg, advice)
		}
	}
}

// A RECALL_CONFIG naming a file that is missing or not TOML is an error
// for a command given no --home (exit 2): it went on in the built-in
// default home (for root /var/lib/recall) without a word. With --home the
// file is not needed.
func TestBadConfigFileRefused(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("RECALL_HOME", "")
	os.Unsetenv("RECALL_HOME")
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("home = \"/x\n"), 0o644)
	for _, cfg := range []string{filepath.Join(dir, "absent.toml"), bad} {
		t.Setenv("RECALL_CONFIG", cfg)
		_, err := runRecall(t, "points")
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), cfg) {
			t.Errorf("RECALL_CONFIG=%s: %v (exit %d); want a usage error naming the file", cfg, err, exitCode(err))
		}
		home := filepath.Join(dir, "home")
		if _, err := runRecall(t, "--home", home, "init"); err != nil {
			t.Errorf("RECALL_CONFIG=%s with --home: %v", cfg, err)
		}
		os.RemoveAll(home)
	}
}
