package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/recall-backup/recall/engine"
	"github.com/urfave/cli/v2"
)

// groupsFile is the grammar of groups.toml: one [[group]] table per
// protection group, its keys the policy flags' names with '_' for '-'
// (see the README). A key not known is refused: a misspelt key silently
// taking its default would be a policy nobody asked for.
type groupsFile struct {
	Group []groupDecl `toml:"group"`
}

type groupDecl struct {
	Name          string   `toml:"name"`
	Members       []string `toml:"members"`
	engine.Policy          // its fields' toml tags are the keys
}

func init() {
	register(&cli.Command{
		Name:  "apply",
		Usage: "make the protection groups what a groups.toml file declares (idempotent; prints the changes)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Required: true, Usage: "the groups file `FILE` (TOML)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the changes without making them"},
			&cli.BoolFlag{Name: "json", Usage: "print the changes as a JSON array"},
		},
		Action: func(c *cli.Context) error {
			decl, err := readGroupsFile(c.String("file"))
			if err != nil {
				return err
			}
			return withCatalog(c, catalogWait, func(cat *engine.Catalog) error {
				tst, err := cat.TapeState()
				if err != nil {
					return err
				}
				for _, g := range decl {
					if err := engine.CheckTapeGoalPool(tst, g.Name, g.Policy, time.Now()); err != nil {
						// Not flagsAsKeys: the advice names commands to run.
						return usagef("groups file %s: %v", c.String("file"), err)
					}
				}
				changes, err := cat.ApplyGroups(decl, c.Bool("dry-run"), time.Now())
				if errors.Is(err, engine.ErrBadPolicy) {
					// The checks name command-line flags; the file has keys.
					return usagef("groups file %s: %s", c.String("file"), flagsAsKeys(err.Error()))
				}
				if err != nil {
					return err
				}
				if c.Bool("json") {
					if changes == nil {
						changes = []engine.GroupChange{}
					}
					return printJSON(c, changes)
				}
				verb := map[string]string{"create": "+ create", "update": "~ update", "unchanged": "= unchanged", "absent": "? absent"}
				n := 0
				for _, ch := range changes {
					fmt.Fprintf(c.App.Writer, "%s group %s\n", verb[ch.Action], ch.Group)
					if ch.Action == "create" || ch.Action == "update" || ch.Action == "absent" {
						for _, l := range ch.Lines {
							fmt.Fprintf(c.App.Writer, "    %s\n", l)
						}
					}
					if ch.Action == "create" || ch.Action == "update" {
						n++
					}
				}
				switch {
				case c.Bool("dry-run"):
					fmt.Fprintf(c.App.Writer, "dry run: %d group(s) would change\n", n)
				default:
					fmt.Fprintf(c.App.Writer, "%d group(s) changed\n", n)
				}
				return nil
			})
		},
	})
}

// readGroupsFile parses a groups file; what is wrong with it is a usage
// error naming the file.
func readGroupsFile(path string) ([]engine.Group, error) {
	var f groupsFile
	md, err := toml.DecodeFile(path, &f)
	if os.IsNotExist(err) {
		return nil, usagef("groups file %s: no such file", path)
	}
	if err != nil {
		return nil, usagef("groups file %s: %v", path, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		var keys []string
		for _, k := range un {
			keys = append(keys, k.String())
		}
		return nil, usagef("groups file %s: unknown key(s) %s; a group's keys are name, members and the policy flags with '_' for '-' (retention, sync, at, days, sync_window, keep_daily, ..., tape_pool, check, check_read_share, limit, limit_window)", path, strings.Join(keys, ", "))
	}
	var out []engine.Group
	for i, d := range f.Group {
		if d.Name == "" {
			return nil, usagef("groups file %s: group %d has no name", path, i+1)
		}
		out = append(out, engine.Group{Name: d.Name, Members: d.Members, Policy: d.Policy})
	}
	return out, nil
}

// flagRE matches a policy flag's name in a message.
var flagRE = regexp.MustCompile(`--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)`)

// flagsAsKeys spells the policy flags a message names (--keep-daily) as
// the keys of a groups file (keep_daily).
func flagsAsKeys(msg string) string {
	return flagRE.ReplaceAllStringFunc(msg, func(f string) string {
		return strings.ReplaceAll(strings.TrimPrefix(f, "--"), "-", "_")
	})
}
