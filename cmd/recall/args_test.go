package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/recall-backup/recall/engine"
	"github.com/urfave/cli/v2"
)

func TestInterspersed(t *testing.T) {
	app := newApp()
	for _, tc := range []struct{ in, want string }{
		// Global flags before the command stay there.
		{"recall --home H points --json", "recall --home H points --json"},
		{"recall --home=H points", "recall --home=H points"},
		// After the command they move in front of it, with their value.
		{"recall points --home H", "recall --home H points"},
		{"recall points --json --home H", "recall --home H points --json"},
		{"recall backup --home H /data", "recall --home H backup -- /data"},
		{"recall backup /data --home H --source s", "recall --home H backup --source s -- /data"},
		{"recall backup --home=H /data", "recall --home=H backup -- /data"},
		{"recall backup /data --password-file=/pf --home H", "recall --password-file=/pf --home H backup -- /data"},
		{"recall --home A points --password-command cat", "recall --home A --password-command cat points"},
		// A command's flags go before its positional arguments.
		{"recall restore latest --target /t", "recall restore --target /t -- latest"},
		// After "--" nothing is a flag, global or not.
		{"recall backup --home H -- --home", "recall --home H backup -- --home"},
		{"recall backup -- /data --home H", "recall backup -- /data --home H"},
		// Subcommands, with global flags before, between and after.
		{"recall key passwd --home H", "recall --home H key passwd"},
		{"recall key --home H passwd", "recall --home H key passwd"},
		{"recall share samba --source s --home H", "recall --home H share samba --source s"},
		// A subcommand's flag between the command and the subcommand
		// moves after the subcommand.
		{"recall group --json list", "recall group list --json"},
		{"recall group --json --home H list", "recall --home H group list --json"},
		{"recall key --json passwd", "recall key passwd --json"},
		{"recall group --nope list", "recall group --nope -- list"},
		{"recall group --json nope list", "recall group --json -- nope list"},
		// A command's flag before the command moves after it, as restic
		// takes its --json before the command.
		{"recall --json points", "recall points --json"},
		{"recall --home H --json points --source s", "recall --home H points --json --source s"},
		{"recall --source s restore latest --target /t", "recall restore --source s --target /t -- latest"},
		{"recall --json group list", "recall group list --json"},
		{"recall --source=s points", "recall points --source=s"},
		{"recall --source points points", "recall points --source points"},
		// ... with global flags and more of the command's between it and
		// the command, as in 'restic --json -r REPO snapshots'.
		{"recall --json --home H points", "recall --home H points --json"},
		{"recall -q --json --home H restore latest --target x", "recall -q --home H restore --json --target x -- latest"},
		{"recall --json --source s --home=H points", "recall --home=H points --json --source s"},
		{"recall --json --home H --source s restore latest", "recall --home H restore --json --source s -- latest"},
		{"recall --json --home H", "recall --json --home H"},
		{"recall --json --nope points", "recall --json --nope points"},
		// One the command does not define stays, for urfave/cli to refuse.
		{"recall --nope points", "recall --nope points"},
		{"recall --target /t points", "recall --target /t points"},
		// One-letter switches written together are apart, as getopt reads them.
		{"recall backup /data -xq", "recall -q backup -x -- /data"},
		{"recall -qv points", "recall -q -v points"},
		{"recall repair index -nq", "recall -q repair index -n"},
		// Not all letters switches: left for urfave/cli to refuse.
		{"recall backup /data -xz", "recall backup -xz -- /data"},
		{"recall backup -- -xq", "recall backup -- -xq"},
		// A flag nobody defines is left for urfave/cli to refuse.
		{"recall points --nope --home H", "recall --home H points --nope"},
		// An unknown command is left alone.
		{"recall nope --home H x", "recall nope --home H x"},
		{"recall --home H", "recall --home H"},
		// help of a subcommand is its --help (urfave/cli's help command
		// showed its first argument's); help of a command stays.
		{"recall help key passwd", "recall key passwd --help"},
		{"recall --home H help share samba", "recall --home H share samba --help"},
		{"recall help key", "recall help key"},
		{"recall help key nope", "recall help key nope"},
		// A flag that wants a value ends the line without one: it stays
		// last, so the parser says it needs one. It took the "--" before
		// the positional arguments for its value: a restore into ./--,
		// a source named "--".
		{"recall restore --source s latest --target", "recall restore --source s --target"},
		{"recall backup /data --source", "recall backup --source"},
		{"recall backup /data --home", "recall --home"},
		{"recall points --source", "recall points --source"},
	} {
		got := interspersed(app, strings.Fields(tc.in))
		if want := strings.Fields(tc.want); !reflect.DeepEqual(got, want) {
			t.Errorf("interspersed(%q)\n got %q\nwant %q", tc.in, got, want)
		}
	}
}

// The reordered line parses: a global flag after the command reaches the
// command as the global value, in every form.
func TestGlobalFlagAfterCommand(t *testing.T) {
	for _, line := range []string{
		"recall --home H probe X",
		"recall probe --home H X",
		"recall probe X --home=H",
		"recall probe X --json --home H",
	} {
		var home, arg string
		app := newApp()
		app.Commands = append(app.Commands, &cli.Command{
			Name:  "probe",
			Flags: []cli.Flag{&cli.BoolFlag{Name: "json"}},
			Action: func(c *cli.Context) error {
				home, arg = c.String("home"), c.Args().First()
				return nil
			},
		})
		if err := app.Run(interspersed(app, strings.Fields(line))); err != nil {
			t.Errorf("%s: %v", line, err)
			continue
		}
		if home != "H" || arg != "X" {
			t.Errorf("%s: home %q, argument %q; want H and X", line, home, arg)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"512", 512},
		{"1GB", 1_000_000_000},
		{"1GiB", 1 << 30},
		{"1gib", 1 << 30},
		{"256MiB", 256 << 20},
		{"2.5 MB", 2_500_000},
		{"1k", 1000},
		{"1KiB", 1024},
		{"-1", -1},
		{"ten", -1},
		{"1XB", -1},
	} {
		got, err := parseSize(tc.in)
		if tc.want < 0 {
			if err == nil {
				t.Errorf("parseSize(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestHuman(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{1 << 30, "1.0 GiB"},
		{1_000_000_000, "954 MiB"},
		{-2048, "-2.0 KiB"},
	} {
		if got := human(tc.n); got != tc.want {
			t.Errorf("human(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// --store-cache-size is global, before or after the command, in both
// units, and reaches the remote store's options; a command's own
// --cache-size (mount's chunk cache) is another flag. A size that is no
// size is a usage error.
func TestCacheSizeFlag(t *testing.T) {
	for _, tc := range []struct {
		line string
		own  bool // the command defines its own --cache-size, as mount does
		want int64
		args string // what storeArgs passes on
	}{
		{"recall probe", false, 2 << 30, ""},
		{"recall --store-cache-size 1GB probe", false, 1_000_000_000, "--store-cache-size 1GB"},
		{"recall probe --store-cache-size 1GiB", false, 1 << 30, "--store-cache-size 1GiB"},
		{"recall probe --store-cache-size=500MB --home H", false, 500_000_000, "--store-cache-size 500MB"},
		{"recall probe --cache-size 5MiB", true, 2 << 30, ""},
		{"recall --store-cache-size 3GiB probe --cache-size 5MiB", true, 3 << 30, "--store-cache-size 3GiB"},
		{"recall --store-cache-size ten probe", false, -1, ""},
		{"recall probe --store-cache-size 0", false, -1, ""},
	} {
		var got engine.RemoteOptions
		var args []string
		app := newApp()
		probe := &cli.Command{Name: "probe", Action: func(c *cli.Context) error {
			got, args = remoteOptions(c), storeArgs(c)
			return nil
		}}
		if tc.own {
			probe.Flags = []cli.Flag{&cli.StringFlag{Name: "cache-size", Value: "256MiB"}}
		}
		app.Commands = append(app.Commands, probe)
		err := app.Run(interspersed(app, strings.Fields(tc.line)))
		if tc.want < 0 {
			if exitCode(err) != exitUsage {
				t.Errorf("%s: %v (exit %d), want a usage error", tc.line, err, exitCode(err))
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.line, err)
			continue
		}
		if got.CacheBytes != tc.want {
			t.Errorf("%s: CacheBytes %d, want %d", tc.line, got.CacheBytes, tc.want)
		}
		if s := strings.Join(args, " "); !strings.Contains(s, tc.args) || (tc.args == "" && strings.Contains(s, "cache-size")) {
			t.Errorf("%s: passes on %q, want %q", tc.line, s, tc.args)
		}
	}
	t.Setenv("RECALL_STORE_CACHE_SIZE", "64MiB")
	var got int64
	app := newApp()
	app.Commands = append(app.Commands, &cli.Command{Name: "probe", Action: func(c *cli.Context) error {
		got = remoteOptions(c).CacheBytes
		return nil
	}})
	if err := app.Run([]string{"recall", "probe"}); err != nil || got != 64<<20 {
		t.Errorf("RECALL_STORE_CACHE_SIZE=64MiB: CacheBytes %d, %v", got, err)
	}
}

// A command line ending in a flag that wants a value is a usage error
// naming the flag, whether the flag is the command's or the app's.
func TestTrailingFlagWithoutValue(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--home", dir, "restore", "--source", "s", "latest", "--target"},
		{"--home", dir, "backup", dir, "--source"},
		{"backup", dir, "--home"},
	} {
		_, err := runRecall(t, args...)
		flag := args[len(args)-1]
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), flag+" needs a value") {
			t.Errorf("recall %s: %v (exit %d), want exit 2 saying %s needs a value", strings.Join(args, " "), err, exitCode(err), flag)
		}
	}
}
