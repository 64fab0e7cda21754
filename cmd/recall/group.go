package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/urfave/cli/v2"
)

// policyFlags are the flags of a group's policy; scripts rely on their
// names. Each maps to one engine.Policy field.
func policyFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "retention", Usage: "keep scheduled recovery points for `SPAN`: 1d to 10y (14d, 6w, 3mo, 7y) (default " + engine.DefaultRetention + ")"},
		&cli.StringFlag{Name: "sync", Usage: "synchronization frequency `SPAN`: 15m to 24h, or before-point (default " + engine.DefaultSync + ")"},
		&cli.StringFlag{Name: "at", Usage: "recovery point `TIMES`, HH:MM,... in the server's local time (default " + engine.DefaultAt + ")"},
		&cli.StringFlag{Name: "days", Usage: "`DAYS` the recovery point times apply: mon,...,sun or daily (default daily)"},
		&cli.StringFlag{Name: "sync-window", Usage: "keep points made between recovery point times for `SPAN` (default " + engine.DefaultSyncWindow + ")"},
		&cli.IntFlag{Name: "keep-daily", Usage: "beyond the retention range, keep the newest point of each of the last `N` days"},
		&cli.IntFlag{Name: "keep-weekly", Usage: "beyond the retention range, keep the newest point of each of the last `N` weeks"},
		&cli.IntFlag{Name: "keep-monthly", Usage: "beyond the retention range, keep the newest point of each of the last `N` months"},
		&cli.IntFlag{Name: "keep-yearly", Usage: "beyond the retention range, keep the newest point of each of the last `N` years"},
		&cli.GenericFlag{Name: "exclude", Value: &repeated{}, Usage: "leave out what matches `PATTERN`, as backup --exclude (repeatable; replaces the group's list; \"\": none)"},
		&cli.BoolFlag{Name: "one-file-system", Usage: "stay on each member's file system"},
		&cli.BoolFlag{Name: "exclude-caches", Usage: "leave out the content of directories holding a valid CACHEDIR.TAG, as backup --exclude-caches"},
		&cli.GenericFlag{Name: "exclude-if-present", Value: &repeated{}, Usage: "leave out the content of directories holding an entry `NAME` (repeatable; replaces the group's list; \"\": none)"},
		&cli.StringFlag{Name: "exclude-larger-than", Usage: "leave out files larger than `SIZE` (100MiB, 2GiB; \"\": no limit)"},
		&cli.GenericFlag{Name: "exclude-file", Value: &repeated{}, Usage: "leave out the patterns of `FILE` (absolute; read at each backup; repeatable; replaces the group's list; \"\": none)"},
		&cli.StringFlag{Name: "compression", Usage: "codec of new data: zstd, s2 or off (default: the store's)"},
		&cli.StringFlag{Name: "pre-script", Usage: "run `CMD` (sh -c) before each member's backup; its failure fails that member's job"},
		&cli.StringFlag{Name: "post-script", Usage: "run `CMD` (sh -c) after each member's backup, even a failed one (RECALL_OUTCOME says how it went)"},
		&cli.StringFlag{Name: "script-timeout", Usage: "kill a script (and its process group) after `SPAN`: 1s to 24h (default " + engine.DefaultScriptTimeout + ")"},
		&cli.StringFlag{Name: "end-user-recovery", Usage: "`on|off`: whether the members appear in mounts and shares (default on)"},
		&cli.StringFlag{Name: "tape-retention", Usage: "long-term goal: keep tapes for `SPAN`: 1w-4w, 1mo-11mo or 1y-99y"},
		&cli.StringFlag{Name: "tape-frequency", Usage: "long-term goal: `FREQ` daily, weekly, bi-weekly, monthly, quarterly, half-yearly or yearly (as the tape retention allows)"},
		&cli.StringFlag{Name: "tape-pool", Usage: "long-term goal: tape pool `NAME`"},
		&cli.StringFlag{Name: "check", Usage: "scheduled consistency check `WHEN`: off, daily, weekly or on-failure (default " + engine.CheckOff + ")"},
		&cli.StringFlag{Name: "check-read-share", Usage: "packs each check reads back: `PERCENT`, 1% to 100%; every pack is read within ceil(100/PERCENT) checks (default " + engine.DefaultCheckReadShare + ")"},
		&cli.StringFlag{Name: "limit", Usage: "read the members at most `RATE`, all at once together: 50MiB/s, 400Mbit/s (\"\": no limit)"},
		&cli.StringFlag{Name: "limit-window", Usage: "when --limit holds, server local time: `WINDOWS` like mon-fri,08:00-18:00 (;-separated; \"\": always)"},
	}
}

// setPolicy changes p by the policy flags given on the command line;
// flags not given leave their field as it is.
func setPolicy(c *cli.Context, p *engine.Policy) {
	str := map[string]*string{
		"retention": &p.Retention, "sync": &p.Sync, "sync-window": &p.SyncWindow, "compression": &p.Compression,
		"pre-script": &p.PreScript, "post-script": &p.PostScript, "script-timeout": &p.ScriptTimeout,
		"end-user-recovery": &p.EndUserRecovery, "tape-retention": &p.TapeRetention,
		"tape-frequency": &p.TapeFrequency, "tape-pool": &p.TapePool,
		"check": &p.CheckSchedule, "check-read-share": &p.CheckReadShare,
		"limit": &p.Limit, "limit-window": &p.LimitWindow, "exclude-larger-than": &p.ExcludeLargerThan,
	}
	for name, f := range str {
		if c.IsSet(name) {
			*f = c.String(name)
		}
	}
	for name, f := range map[string]*int{"keep-daily": &p.KeepDaily, "keep-weekly": &p.KeepWeekly, "keep-monthly": &p.KeepMonthly, "keep-yearly": &p.KeepYearly} {
		if c.IsSet(name) {
			*f = c.Int(name)
		}
	}
	if c.IsSet("at") {
		p.At = splitList(c.String("at"))
	}
	if c.IsSet("days") {
		p.Days = splitList(c.String("days"))
	}
	if c.IsSet("exclude") {
		p.Exclude = listOrNone(c, "exclude")
	}
	if c.IsSet("one-file-system") {
		p.OneFileSystem = c.Bool("one-file-system")
	}
	if c.IsSet("exclude-caches") {
		p.ExcludeCaches = c.Bool("exclude-caches")
	}
	if c.IsSet("exclude-if-present") {
		p.ExcludeIfPresent = listOrNone(c, "exclude-if-present")
	}
	if c.IsSet("exclude-file") {
		p.ExcludeFile = nil
		for _, f := range listOrNone(c, "exclude-file") {
			if abs, err := filepath.Abs(f); err == nil {
				f = abs
			}
			p.ExcludeFile = append(p.ExcludeFile, f)
		}
	}
}

func memberFlag(usage string) cli.Flag {
	return &cli.GenericFlag{Name: "member", Value: &repeated{}, Usage: usage}
}

func sourceFlag(usage string) cli.Flag {
	return &cli.GenericFlag{Name: "source", Value: &repeated{}, Usage: usage}
}

// warnMissingMembers says which member paths do not exist: a typing
// mistake would otherwise show only as the first run's failure and
// alert. They are kept (a member may be a mount that is not there yet).
func warnMissingMembers(paths []string) {
	for _, p := range paths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			warnf("member %s does not exist (yet): its backups fail until it does (recall serve raises an alert for each)", p)
		}
	}
}

// sourceMembers are the member paths of the registered sources --source
// names: their staging directories.
func sourceMembers(c *cli.Context, cat *engine.Catalog) ([]string, error) {
	var out []string
	for _, name := range c.Generic("source").(*repeated).list {
		s, err := cat.Source(name)
		if err != nil {
			return nil, err
		}
		out = append(out, s.Staging)
	}
	return out, nil
}

// groupName is the one NAME argument of a group subcommand.
func groupName(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", usagef("%s needs exactly one group NAME", c.Command.FullName())
	}
	return c.Args().First(), nil
}

func init() {
	register(&cli.Command{
		Name:  "group",
		Usage: "protection groups: data sources sharing one policy (retention, sync, recovery point times, scripts, tape goals)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a protection group",
				ArgsUsage: "NAME",
				Flags: append([]cli.Flag{memberFlag("protect `PATH` (directory, file or block device; repeatable)"),
					sourceFlag("protect registered source `NAME` (see 'recall source add'; repeatable)")}, policyFlags()...),
				Action: func(c *cli.Context) error {
					name, err := groupName(c)
					if err != nil {
						return err
					}
					if err := emptyPolicyFlags(c); err != nil {
						return err
					}
					g := engine.Group{Name: name, Members: c.Generic("member").(*repeated).list}
					setPolicy(c, &g.Policy)
					warns, err := checkGroupPolicy(name, g.Policy)
					if err != nil {
						return err
					}
					return wakeAfter(c, withCatalog(c, catalogWait, func(cat *engine.Catalog) error {
						ms, err := sourceMembers(c, cat)
						if err != nil {
							return err
						}
						warnMissingMembers(g.Members)
						g.Members = append(g.Members, ms...)
						tst, err := cat.TapeState()
						if err != nil {
							return err
						}
						if err := engine.CheckTapeGoalPool(tst, g.Name, g.Policy, time.Now()); err != nil {
							return err
						}
						if w := engine.TapeGoalPoolMissing(tst, g.Name, g.Policy); w != "" {
							warns = append(warns, w)
						}
						g, err := cat.CreateGroup(g, time.Now())
						if err != nil {
							return err
						}
						fmt.Fprintf(report(c), "created group %s (policy version %d) with %d member(s)\n", g.Name, g.PolicyVersion, len(g.Members))
						for _, w := range append(warns, g.ExcludeSlips()...) {
							warnf("%s", w)
						}
						return nil
					}))
				},
			},
			{
				Name:      "edit",
				Usage:     "change a group's policy (flags not given keep their value)",
				ArgsUsage: "NAME",
				Flags:     policyFlags(),
				Action: func(c *cli.Context) error {
					if err := emptyPolicyFlags(c); err != nil {
						return err
					}
					var warns []string
					err := editGroupWith(c, func(cat *engine.Catalog) (func(*engine.Group) error, error) {
						tst, err := cat.TapeState()
						if err != nil {
							return nil, err
						}
						return func(g *engine.Group) error {
							setPolicy(c, &g.Policy)
							w, err := checkGroupPolicy(g.Name, g.Policy)
							if err != nil {
								return err
							}
							warns = w
							if m := engine.TapeGoalPoolMissing(tst, g.Name, g.Policy); m != "" {
								warns = append(warns, m)
							}
							return engine.CheckTapeGoalPool(tst, g.Name, g.Policy, time.Now())
						}, nil
					})
					if err == nil {
						for _, w := range warns {
							warnf("%s", w)
						}
					}
					return err
				},
			},
			{
				Name:      "add",
				Usage:     "add members to a group",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{memberFlag("add `PATH` (repeatable)"), sourceFlag("add registered source `NAME` (repeatable)")},
				Action: func(c *cli.Context) error {
					ms := c.Generic("member").(*repeated).list
					if len(ms) == 0 && !c.IsSet("source") {
						return usagef("group add needs --member PATH or --source NAME")
					}
					warnMissingMembers(ms)
					return editGroupWith(c, func(cat *engine.Catalog) (func(*engine.Group) error, error) {
						srcs, err := sourceMembers(c, cat)
						if err != nil {
							return nil, err
						}
						return func(g *engine.Group) error { g.Members = append(g.Members, append(ms, srcs...)...); return nil }, nil
					})
				},
			},
			{
				Name:      "remove",
				Usage:     "take members out of a group (their points stay)",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{memberFlag("remove `PATH` (repeatable)"), sourceFlag("remove registered source `NAME` (repeatable)")},
				Action: func(c *cli.Context) error {
					ms := c.Generic("member").(*repeated).list
					srcs := c.Generic("source").(*repeated).list
					if len(ms) == 0 && len(srcs) == 0 {
						return usagef("group remove needs --member PATH or --source NAME")
					}
					return editGroup(c, func(g *engine.Group) error {
						for _, name := range srcs {
							i := slices.IndexFunc(g.Members, func(m string) bool { return g.SourceOf[m] == name })
							if i < 0 {
								return fmt.Errorf("group %s does not hold source %s (its sources: %s)", g.Name, name, strings.Join(g.Sources(), ", "))
							}
							g.Members = slices.Delete(g.Members, i, i+1)
						}
						for _, m := range ms {
							abs, err := engine.MemberPath(m)
							if err != nil {
								return err
							}
							i := slices.Index(g.Members, abs)
							if i < 0 {
								if len(g.Members) == 0 {
									return fmt.Errorf("group %s has no member %s (it has no members)", g.Name, abs)
								}
								return fmt.Errorf("group %s has no member %s (its members: %s)", g.Name, abs, strings.Join(g.Members, ", "))
							}
							g.Members = slices.Delete(g.Members, i, i+1)
						}
						return nil
					})
				},
			},
			{
				Name:  "list",
				Usage: "list protection groups",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print a JSON array of groups"}},
				Action: func(c *cli.Context) error {
					return withCatalog(c, catalogWait, func(cat *engine.Catalog) error {
						gs, err := cat.Groups()
						if err != nil {
							return err
						}
						if c.Bool("json") {
							if gs == nil {
								gs = []engine.Group{}
							}
							for i := range gs {
								gs[i].Members = noNilMembers(gs[i].Members)
							}
							return printJSON(c, gs) // one line, as every --json
						}
						fmt.Fprintf(c.App.Writer, "%-16s %7s %9s %12s %s\n", "NAME", "MEMBERS", "RETENTION", "SYNC", "POINTS AT")
						for _, g := range gs {
							fmt.Fprintf(c.App.Writer, "%-16s %7d %9s %12s %s\n", g.Name, len(g.Members), g.Policy.Retention, g.Policy.Sync, strings.Join(g.Policy.At, ","))
						}
						return nil
					})
				},
			},
			{
				Name:      "show",
				Usage:     "show a group's members and policy",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the group as JSON"}},
				Action: func(c *cli.Context) error {
					name, err := groupName(c)
					if err != nil {
						return err
					}
					return withCatalog(c, catalogWait, func(cat *engine.Catalog) error {
						g, err := cat.Group(name)
						if err != nil {
							return err
						}
						if c.Bool("json") {
							g.Members = noNilMembers(g.Members)
							return printJSON(c, g)
						}
						showGroup(c.App.Writer, &g)
						return nil
					})
				},
			},
			{
				Name:      "delete",
				Usage:     "delete a group (its points stay, and are no longer pruned by a policy)",
				ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					name, err := groupName(c)
					if err != nil {
						return err
					}
					return wakeAfter(c, withCatalog(c, catalogWait, func(cat *engine.Catalog) error {
						if err := cat.DeleteGroup(name); err != nil {
							return err
						}
						fmt.Fprintf(report(c), "deleted group %s; its points stay\n", name)
						return nil
					}))
				},
			},
		},
	})
}

func editGroup(c *cli.Context, fn func(*engine.Group) error) error {
	return editGroupWith(c, func(*engine.Catalog) (func(*engine.Group) error, error) { return fn, nil })
}

// editGroupWith is editGroup with a change that is made from what the
// catalog holds (the registered sources a flag names).
func editGroupWith(c *cli.Context, change func(*engine.Catalog) (func(*engine.Group) error, error)) error {
	name, err := groupName(c)
	if err != nil {
		return err
	}
	return wakeAfter(c, withCatalog(c, catalogWait, func(cat *engine.Catalog) error {
		fn, err := change(cat)
		if err != nil {
			return err
		}
		g, err := cat.EditGroup(name, time.Now(), fn)
		if err != nil {
			return err
		}
		fmt.Fprintf(report(c), "group %s: policy version %d, %d member(s)\n", g.Name, g.PolicyVersion, len(g.Members))
		for _, w := range g.ExcludeSlips() {
			warnf("%s", w)
		}
		return nil
	}))
}

// wakeAfter wakes the server once the groups changed (err nil) and the
// catalog is closed again, so its scheduler can read them at once.
func wakeAfter(c *cli.Context, err error) error {
	if err == nil {
		wakeServer(c)
	}
	return err
}

// showGroup prints a group as 'group show' does: one "field: value" a
// line, fields named as their flags.
func showGroup(w io.Writer, g *engine.Group) {
	p := g.Policy
	fmt.Fprintf(w, "group %s (policy version %d, modified %s)\n", g.Name, g.PolicyVersion, g.Modified.Format(time.RFC3339))
	for i, m := range g.Members {
		if g.SourceOf[m] != "" {
			fmt.Fprintf(w, "  member %s (registered source %s)\n", cell(m), cell(g.Sources()[i]))
			continue
		}
		fmt.Fprintf(w, "  member %s (source %s)\n", cell(m), cell(g.Sources()[i]))
	}
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "  %s: %s\n", k, oneLine(v))
		}
	}
	num := func(n int) string {
		if n == 0 {
			return ""
		}
		return fmt.Sprint(n)
	}
	line("retention", p.Retention)
	line("sync", p.Sync)
	line("at", strings.Join(p.At, ","))
	line("days", strings.Join(p.Days, ","))
	line("sync-window", p.SyncWindow)
	line("keep-daily", num(p.KeepDaily))
	line("keep-weekly", num(p.KeepWeekly))
	line("keep-monthly", num(p.KeepMonthly))
	line("keep-yearly", num(p.KeepYearly))
	for _, x := range p.Exclude {
		line("exclude", x)
	}
	if p.OneFileSystem {
		line("one-file-system", "yes")
	}
	if p.ExcludeCaches {
		line("exclude-caches", "yes")
	}
	for _, x := range p.ExcludeIfPresent {
		line("exclude-if-present", x)
	}
	line("exclude-larger-than", p.ExcludeLargerThan)
	for _, x := range p.ExcludeFile {
		line("exclude-file", x)
	}
	line("compression", p.Compression)
	line("pre-script", p.PreScript)
	line("post-script", p.PostScript)
	line("script-timeout", p.ScriptTimeout)
	line("end-user-recovery", p.EndUserRecovery)
	line("tape-retention", p.TapeRetention)
	line("tape-frequency", p.TapeFrequency)
	line("tape-pool", p.TapePool)
	line("check", p.CheckSchedule)
	line("check-read-share", p.CheckReadShare)
	line("limit", p.Limit)
	line("limit-window", p.LimitWindow)
}

// noNilMembers is a group's members for JSON: [] for none, not null,
// which a script reading the list as an array trips on.
func noNilMembers(m []string) []string {
	if m == nil {
		return []string{}
	}
	return m
}
