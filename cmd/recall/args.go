package main

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"
)

// helpPath turns "help CMD SUB..." into "CMD SUB... --help": urfave/cli's
// help command shows the help of its first argument only, so "recall help
// key passwd" showed key's. Anything else is left as it was.
func helpPath(app *cli.App, args, global, rest []string) []string {
	if len(rest) < 2 {
		return args
	}
	cmd := app.Command(rest[0])
	for _, a := range rest[1:] {
		if cmd == nil {
			return args
		}
		cmd = cmd.Command(a)
	}
	if cmd == nil {
		return args
	}
	out := append([]string{args[0]}, global...)
	out = append(out, rest...)
	return append(out, "--help")
}

// interspersed reorders a command line into the one shape urfave/cli
// parses: global flags, the command (and subcommands), the command's
// flags, "--", then the positional arguments. urfave/cli stops parsing
// flags at the first positional argument and knows a global flag only
// before the command, but restic and borg taught administrators to write
// "restore POINT --target DIR" and "backup --home H PATH".
//
// After the command, a flag the command (or subcommand) does not define
// but the app does is a global flag and moves in front of the command;
// one both define stays the command's. Nothing after "--" moves.
func interspersed(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	args = splitShort(app, args)
	var global []string
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "--" {
		if !defines(app.Flags, args[i]) {
			if moved := commandFlagFirst(app, args, i); moved != nil {
				return interspersed(app, moved)
			}
		}
		i = take(&global, args, i, app.Flags)
	}
	if i >= len(args) || args[i] == "--" {
		return args
	}
	if args[i] == "help" || args[i] == "h" { // not among app.Commands before Run
		return helpPath(app, args, global, args[i+1:])
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return args
	}
	path := []string{args[i]}
	i++
	var flags, pos []string
	dangling := "" // "command" or "global": the last argument, a flag, lacks its value
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			switch {
			case defines(cmd.Flags, a):
				if i == len(args)-1 && takesValue(cmd.Flags, a) {
					dangling = "command"
				}
				i = take(&flags, args, i, cmd.Flags) - 1
			case defines(app.Flags, a):
				if i == len(args)-1 && takesValue(app.Flags, a) {
					dangling = "global"
				}
				i = take(&global, args, i, app.Flags) - 1
			default:
				// A subcommand's flag before its name ('group --json
				// list') moves after it.
				if len(pos) == 0 && len(flags) == 0 {
					if moved := subcommandFirst(app, cmd, args, i); moved != nil {
						return interspersed(app, moved)
					}
				}
				// Unknown: left for urfave/cli to report.
				flags = append(flags, a)
			}
			continue
		}
		// A subcommand name counts only before any positional argument
		// (and before a flag of its parent, which urfave/cli would not
		// parse there either).
		if len(pos) == 0 && len(flags) == 0 && len(cmd.Subcommands) > 0 {
			if sub := cmd.Command(a); sub != nil {
				path = append(path, a)
				cmd = sub
				continue
			}
		}
		pos = append(pos, a)
	}
	out := append([]string{args[0]}, global...)
	out = append(out, path...)
	out = append(out, flags...)
	switch {
	// The last argument is a flag that wants a value and has none.
	// Ending the line with it, the parser says so ("flag needs an
	// argument"); before the "--" below it took "--" for its value:
	// 'restore latest --target' restored into ./--, and 'backup DIR
	// --source' made a source named "--".
	case dangling == "command":
		return out
	case dangling == "global":
		return []string{args[0], args[len(args)-1]} // said as the app's
	}
	if len(pos) > 0 {
		out = append(out, "--")
		out = append(out, pos...)
	}
	return out
}

// splitShort writes combined one-letter switches apart, as getopt reads
// them: "-xv" is "-x -v" when each letter is a boolean flag's one-letter
// name (of the app or of some command; the parser then says which do not
// belong to the command). Anything else is left as it is, and so is
// everything after "--". It was "unknown flag --xv".
func splitShort(app *cli.App, args []string) []string {
	short := map[byte]bool{}
	seen := map[*cli.Command]bool{} // urfave/cli's help command is among its own subcommands
	var collect func(flags []cli.Flag, cmds []*cli.Command)
	collect = func(flags []cli.Flag, cmds []*cli.Command) {
		for _, f := range flags {
			if _, ok := f.(*cli.BoolFlag); ok {
				for _, n := range f.Names() {
					if len(n) == 1 {
						short[n[0]] = true
					}
				}
			}
		}
		for _, c := range cmds {
			if !seen[c] {
				seen[c] = true
				collect(c.Flags, c.Subcommands)
			}
		}
	}
	collect(app.Flags, app.Commands)
	var out []string
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		letters := strings.TrimPrefix(a, "-")
		if i == 0 || len(a) < 3 || a[0] != '-' || a[1] == '-' || strings.ContainsFunc(letters, func(r rune) bool { return r > 0x7f || !short[byte(r)] }) {
			out = append(out, a)
			continue
		}
		for j := range len(letters) {
			out = append(out, "-"+letters[j:j+1])
		}
	}
	return out
}

// commandFlagFirst handles a flag before the command that the app does
// not define ('recall --json points', 'recall --source s restore ...',
// as restic takes its --json): when the command, or the subcommand its
// next word names, defines it, it returns the line with the flag (and its
// value) moved after the command; else nil, and urfave/cli refuses it.
// Between the flag and the command there may be global flags and more of
// the command's ('recall --json --home H points', as restic users write
// 'restic --json -r REPO snapshots'): the command is the first word that
// names one and that every word before it, from the flag on, reads as
// such flags and their values. Global flags stay before the command.
func commandFlagFirst(app *cli.App, args []string, i int) []string {
	for c := i + 1; c < len(args); c++ {
		cmd := app.Command(args[c])
		if cmd == nil {
			continue
		}
		leaf, end := cmd, c+1
		if end < len(args) {
			if sub := cmd.Command(args[end]); sub != nil {
				leaf, end = sub, end+1
			}
		}
		global, local, ok := splitFlags(app.Flags, leaf.Flags, args[i:c])
		if !ok || len(local) == 0 || !defines(leaf.Flags, args[i]) {
			continue // 'recall --source points points': the value is a command's name
		}
		out := append(slices.Clip(args[:i]), global...)
		out = append(out, args[c:end]...)
		out = append(out, local...)
		return append(out, args[end:]...)
	}
	return nil
}

// subcommandFirst handles a flag between a command and its subcommand
// that the command does not define ('recall group --json list', as
// 'recall --json group list' is taken): when the subcommand the next
// words name defines it, and every word between reads as its flags or
// global ones, it returns the line with the subcommand's name moved
// before them; else nil.
func subcommandFirst(app *cli.App, cmd *cli.Command, args []string, i int) []string {
	if len(cmd.Subcommands) == 0 {
		return nil
	}
	for c := i + 1; c < len(args); c++ {
		sub := cmd.Command(args[c])
		if sub == nil {
			continue
		}
		if _, local, ok := splitFlags(app.Flags, sub.Flags, args[i:c]); !ok || len(local) == 0 || !defines(sub.Flags, args[i]) {
			continue
		}
		out := append(slices.Clip(args[:i]), args[c])
		out = append(out, args[i:c]...)
		return append(out, args[c+1:]...)
	}
	return nil
}

// splitFlags reads words as flags with their values, each the app's
// (global) or else the command's (local); ok is false when a word is not
// a flag either defines, or a flag lacks its value.
func splitFlags(appFlags, cmdFlags []cli.Flag, words []string) (global, local []string, ok bool) {
	for k := 0; k < len(words); {
		a := words[k]
		if !strings.HasPrefix(a, "-") || a == "--" {
			return nil, nil, false
		}
		flags, dst := appFlags, &global
		switch {
		case defines(appFlags, a):
		case defines(cmdFlags, a):
			flags, dst = cmdFlags, &local
		default:
			return nil, nil, false
		}
		if takesValue(flags, a) && k+1 >= len(words) {
			return nil, nil, false
		}
		k = take(dst, words, k, flags)
	}
	return global, local, true
}

// take appends the flag at args[i] to dst, with its value when it takes
// one as the next argument, and returns the index after them.
func take(dst *[]string, args []string, i int, flags []cli.Flag) int {
	*dst = append(*dst, args[i])
	if takesValue(flags, args[i]) && i+1 < len(args) {
		i++
		*dst = append(*dst, args[i])
	}
	return i + 1
}

// flagName is the name in "-x", "--name" or "--name=value".
func flagName(arg string) string {
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	return name
}

// defines reports whether flags has the flag arg names.
func defines(flags []cli.Flag, arg string) bool { return lookup(flags, arg) != nil }

func lookup(flags []cli.Flag, arg string) cli.Flag {
	name := flagName(arg)
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

// takesValue reports whether arg is a flag whose value is the next
// argument: not a boolean, and not written as --name=value.
func takesValue(flags []cli.Flag, arg string) bool {
	if strings.Contains(arg, "=") {
		return false
	}
	f := lookup(flags, arg)
	if f == nil {
		return false
	}
	_, isBool := f.(*cli.BoolFlag)
	return !isBool
}

// parseSize reads a size flag: a byte count, or a number with a decimal
// (1GB = 10^9 bytes, 1k = 1000) or binary (1GiB = 2^30 bytes) unit, as
// humanize.ParseBytes does, so 1GB and 1GiB mean what they say.
func parseSize(s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || n > math.MaxInt64 {
		return 0, fmt.Errorf("invalid size %q: give a byte count or a size like 500K, 100MiB, 2GB or 2GiB", s)
	}
	return int64(n), nil
}
