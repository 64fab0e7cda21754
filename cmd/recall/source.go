package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/fs"
	"github.com/urfave/cli/v2"
)

// sourceName is the one NAME argument of a source subcommand.
func sourceName(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", usagef("%s needs exactly one source NAME", c.Command.FullName())
	}
	return c.Args().First(), nil
}

// sourceFlags are the flags add and edit share; edit changes only those
// given.
func sourceFlags(add bool) []cli.Flag {
	staging, reservation, settle := "WSB's share: `DIR`, created if missing (default "+engine.DefaultStagingRoot+"/NAME)",
		"room one image of the computer needs, `SIZE` of at least 15GiB (30GiB, 40GB; default 30GiB); status warns when an image grows past it",
		"`SPAN` with no write into the staging tree after which WSB counts as finished"
	settleDefault := engine.DefaultSettle.String() // the flag's own would say 0s
	if !add {
		staging = "move the source to staging `DIR` (created if missing; the old one is left as it is; a group holding the source follows it)"
		reservation = "new reservation `SIZE`, at least 15GiB"
		settle = "new settle time `SPAN`"
		settleDefault = "unchanged"
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "staging", Usage: staging},
		&cli.StringFlag{Name: "reservation", Usage: reservation},
		&cli.DurationFlag{Name: "settle", Usage: settle, DefaultText: settleDefault},
	}
}

// setSource changes s by the flags given.
func setSource(c *cli.Context, s *engine.Source) error {
	if c.IsSet("staging") {
		s.Staging = c.String("staging")
	}
	if c.IsSet("reservation") {
		n, err := parseSize(c.String("reservation"))
		if err != nil {
			return usagef("--reservation: %v", err)
		}
		s.Reservation = n
		if n == 0 {
			return usagef("--reservation 0: give at least 15GiB")
		}
	}
	if c.IsSet("settle") {
		if c.Duration("settle") <= 0 {
			return usagef("--settle %s: give a positive span like 2m", c.Duration("settle"))
		}
		s.Settle = c.Duration("settle")
	}
	return nil
}

func init() {
	register(&cli.Command{
		Name:  "source",
		Usage: "data sources: Windows computers' bare-metal (bmr) and system-state images that WSB writes to a staging share, and the paths groups protect",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "register a Windows computer's bmr or systemstate source and create its staging directory",
				ArgsUsage: "NAME",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "kind", Usage: "`KIND` bmr (bare metal recovery, which includes system state) or systemstate"},
					&cli.StringFlag{Name: "computer", Usage: "the Windows computer's name `PC`, as WSB writes it under WindowsImageBackup"},
				}, sourceFlags(true)...),
				Action: sourceAdd,
			},
			{
				Name:      "edit",
				Usage:     "change a registered source's staging directory, reservation or settle time (flags not given keep their value)",
				ArgsUsage: "NAME",
				Flags:     sourceFlags(false),
				Action: func(c *cli.Context) error {
					name, err := sourceName(c)
					if err != nil {
						return err
					}
					if !c.IsSet("staging") && !c.IsSet("reservation") && !c.IsSet("settle") {
						return usagef("source edit %s: give --staging, --reservation or --settle", name)
					}
					return withCatalog(c, catalogWait, func(cat *engine.Catalog) error {
						s, err := cat.EditSource(name, func(s *engine.Source) error { return setSource(c, s) })
						if err != nil {
							return err
						}
						if err := os.MkdirAll(s.Staging, 0o755); err != nil {
							return fmt.Errorf("source %s: create its staging directory: %w (create it by hand)", name, err)
						}
						fmt.Fprintf(c.App.Writer, "source %s: staging %s, reservation %s, settle %s\n", s.Name, s.Staging, human(s.Reservation), s.Settle)
						return nil
					})
				},
			},
			{
				Name:      "remove",
				Usage:     "unregister a source (refused while a group holds it); its points and its staging directory stay",
				ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					name, err := sourceName(c)
					if err != nil {
						return err
					}
					return withCatalog(c, catalogWait, func(cat *engine.Catalog) error {
						s, err := cat.Source(name)
						if err != nil {
							return err
						}
						if err := cat.RemoveSource(name); err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "removed source %s; its points and its staging directory %s stay\n", name, s.Staging)
						return nil
					})
				},
			},
			{
				Name:   "list",
				Usage:  "list every data source with its kind: registered ones (bmr, systemstate) and the paths groups and points name (path)",
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print a JSON array of sources"}},
				Action: sourceList,
			},
		},
	})
}

func sourceAdd(c *cli.Context) error {
	name, err := sourceName(c)
	if err != nil {
		return err
	}
	if !c.IsSet("kind") || !c.IsSet("computer") {
		return usagef("source add %s needs --kind bmr|systemstate and --computer PC", name)
	}
	s := engine.Source{Name: name, Kind: c.String("kind"), Computer: c.String("computer")}
	if err := setSource(c, &s); err != nil {
		return err
	}
	if err := pathSourceNamed(c, name, s.Staging); err != nil {
		return err
	}
	err = withCatalog(c, catalogWait, func(cat *engine.Catalog) error {
		var err error
		if s, err = cat.AddSource(s, time.Now()); err != nil {
			return err
		}
		if err := os.MkdirAll(s.Staging, 0o755); err != nil {
			if rerr := cat.RemoveSource(name); rerr != nil {
				return fmt.Errorf("source %s: create its staging directory: %w; it stays registered (%v): create the directory by hand", name, err, rerr)
			}
			return fmt.Errorf("source %s not added: create its staging directory: %w (give another with --staging)", name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "added source %s (kind %s, computer %s): WSB writes to %s; reservation %s, settle %s\n", s.Name, s.Kind, s.Computer, s.Staging, human(s.Reservation), s.Settle)
	fmt.Fprintf(c.App.Writer, "share it with 'recall share bmr-target --source %s', protect it with 'recall group add GROUP --source %s'\n", s.Name, s.Name)
	return nil
}

// pathSourceNamed refuses name when points of a path source carry it
// (made from another path than staging, which a registered source of that
// name once had). Reading the points needs the store's key: an encrypted
// store with no passphrase at hand is not asked for one, and the check is
// left out, as the catalog's own check of the groups' members still runs.
func pathSourceNamed(c *cli.Context, name, staging string) error {
	st, err := openLocation(c, chunkstore.OpenOptions{})
	if errors.Is(err, chunkstore.ErrNoPassword) {
		pw, perr := password(c)
		if perr != nil || pw == "" {
			return nil
		}
		if st, err = openLocation(c, chunkstore.OpenOptions{Password: pw}); err != nil {
			return nil
		}
	}
	if err != nil {
		return err
	}
	defer st.Close()
	pts, err := st.Reader().Points()
	if err != nil {
		return err
	}
	if staging == "" {
		staging = engine.DefaultStaging(name)
	}
	// Names compare ignoring case, as the registry's do.
	n, other, path := 0, "", ""
	for _, p := range pts {
		if strings.EqualFold(p.Source, name) && (p.Source != name || p.Path != staging) {
			n, other, path = n+1, p.Source, p.Path
		}
	}
	if n > 0 {
		return fmt.Errorf("source %s: %w: the store holds %d point(s) of path source %s (%s): choose another name", name, engine.ErrSourceExists, n, other, path)
	}
	return nil
}

// sourceJSON is one entry of source list --json; scripts rely on these
// fields.
type sourceJSON struct {
	Name        string    `json:"name"`
	Kind        string    `json:"kind"` // bmr, systemstate, path
	Group       string    `json:"group,omitempty"`
	Computer    string    `json:"computer,omitempty"`
	Staging     string    `json:"staging,omitempty"`
	Path        string    `json:"path,omitempty"` // a path source's path
	Reservation int64     `json:"reservation,omitempty"`
	Settle      string    `json:"settle,omitempty"`
	User        string    `json:"user,omitempty"`
	Ingested    string    `json:"ingested,omitempty"`   // the Backup folder of the last point made
	ImageSize   int64     `json:"image_size,omitempty"` // its images' size
	Points      int       `json:"points"`
	LastPoint   time.Time `json:"last_point,omitzero"`
	Created     time.Time `json:"created,omitzero"`
}

func sourceList(c *cli.Context) error {
	var regs []engine.Source
	var groups []engine.Group
	if err := withCatalog(c, catalogWait, func(cat *engine.Catalog) (err error) {
		if regs, err = cat.Sources(); err != nil {
			return err
		}
		groups, err = cat.Groups()
		return err
	}); err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	pts, err := st.Reader().Points()
	if err != nil {
		return err
	}
	by := map[string]*sourceJSON{}
	for _, s := range regs {
		by[s.Name] = &sourceJSON{Name: s.Name, Kind: s.Kind, Computer: s.Computer, Staging: s.Staging, Reservation: s.Reservation,
			Settle: s.Settle.String(), User: s.User, Ingested: s.Ingested, ImageSize: s.ImageSize, Created: s.Created}
	}
	for _, g := range groups {
		for i, src := range g.Sources() {
			e := by[src]
			if e == nil {
				e = &sourceJSON{Name: src, Kind: engine.KindPath, Path: g.Members[i]}
				by[src] = e
			}
			e.Group = g.Name
		}
	}
	for _, p := range pts {
		if p.Damaged != "" {
			continue
		}
		e := by[p.Source]
		if e == nil {
			e = &sourceJSON{Name: p.Source, Kind: engine.KindPath, Path: p.Path}
			by[p.Source] = e
		}
		e.Points++
		if p.Time.After(e.LastPoint) {
			e.LastPoint = p.Time
			if e.Kind == engine.KindPath {
				e.Path = p.Path
			}
		}
	}
	out := make([]sourceJSON, 0, len(by))
	for _, e := range by {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if c.Bool("json") {
		return printJSON(c, out)
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tKIND\tGROUP\tCOMPUTER\tSTAGING / PATH\tRESERVATION\tLAST INGESTED\tIMAGE SIZE\tPOINTS")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, e := range out {
		where, res, size := e.Path, "-", "-"
		if e.Kind != engine.KindPath {
			where, res = e.Staging, human(e.Reservation)
			if e.ImageSize > 0 {
				size = human(e.ImageSize)
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", cell(e.Name), e.Kind, dash(e.Group), dash(e.Computer), cell(where), res, dash(oneLine(e.Ingested)), size, e.Points)
	}
	return w.Flush()
}

// backupSource is backup --source NAME with no PATH: ingest the
// registered source's staging tree now. A source a group holds is
// ingested as that member's backup under the group's policy, by recall
// serve when it runs; one in no group, as a backup of its own.
func backupSource(c *cli.Context) error {
	name := c.String("source")
	for _, f := range []string{"exclude", "exclude-file", "exclude-caches", "exclude-if-present", "exclude-larger-than", "one-file-system", "compression", "limit", "limit-window"} {
		if c.IsSet(f) {
			return usagef("backup --source %s (no PATH) ingests the staging tree as WSB wrote it: --%s does not apply (a group's policy sets it for its members)", name, f)
		}
	}
	settle := c.Duration("settle")
	switch {
	case c.IsSet("settle") && settle < 0:
		return usagef("--settle %s: give a span like 2m, or 0s to take a complete image at once", settle)
	case c.IsSet("settle") && settle == 0:
		settle = engine.NoSettle
	}
	var src engine.Source
	var group *engine.Group
	if err := withCatalog(c, catalogWait, func(cat *engine.Catalog) error {
		var err error
		if src, err = cat.Source(name); err != nil {
			if errors.Is(err, engine.ErrNoSource) {
				return fmt.Errorf("%w; to back up a path as source %s, give the PATH", err, name)
			}
			return err
		}
		gs, err := cat.Groups()
		for i := range gs {
			if gs[i].SourceOf[src.Staging] == name {
				group = &gs[i]
			}
		}
		return err
	}); err != nil {
		return err
	}
	// Nothing new and still being written are said before any job is
	// queued or recorded: neither is a failure. Still being written
	// exits 1 (no point: try again later), as when WSB writes during the
	// ingestion (ErrChanged; its job is recorded as skipped); nothing
	// new exits 0.
	if _, err := engine.InspectSource(src, settle, time.Now()); errors.Is(err, engine.ErrNothingNew) {
		if !c.Bool("quiet") {
			fmt.Fprintf(c.App.Writer, "%v; nothing to do until WSB writes the next one\n", err)
		}
		return nil
	} else if errors.Is(err, engine.ErrNotSettled) {
		return err
	}
	home := c.String("home")
	if group != nil {
		a, err := serverClient(c)
		if err != nil {
			return err
		}
		if a != nil {
			req := map[string]string{"source": name}
			if c.IsSet("settle") {
				req["settle"] = c.Duration("settle").String() // "0s": none
			}
			return backupServed(c, a, req, "source "+name)
		}
		st, err := openStore(c)
		if err != nil {
			return err
		}
		defer st.Close()
		g := *group
		g.Members = []string{src.Staging}
		var later error
		res, err := st.BackupGroup(c.Context, home, &g, engine.GroupBackupOptions{
			Log:    func(f string, a ...any) { logf(f, a...) },
			Warn:   warnf,
			Lock:   lockWait(c),
			Settle: settle,
			Skipped: func(member string, err error) {
				if errors.Is(err, engine.ErrNotSettled) {
					later = err // as when found before: exit 1, try again later
				} else if !c.Bool("quiet") {
					fmt.Fprintf(c.App.Writer, "%v\n", err)
				}
			},
		})
		if err := printGroupResults(c, res, err); err != nil || later == nil {
			return err
		}
		return later
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	rep, err := newReporter(c, "backup", "saved", c.Bool("json"), true)
	if err != nil {
		return err
	}
	p, err := engine.RunJob(home, &engine.Job{Kind: "backup", Source: name, Path: src.Staging}, warnf, func() (*engine.Point, error) {
		p, _, err := st.Ingest(c.Context, src, engine.IngestOptions{Home: home, Settle: settle, Lock: lockWait(c), Warn: warnf,
			Backup: engine.BackupOptions{Files: c.Int("files"), Log: func(f string, a ...any) { logf(f, a...) }, Progress: rep.Progress()}})
		return p, err
	})
	rep.Stop()
	if p != nil {
		fs.Refresh(home, p.Source)
		printPoint(c, rep, p)
	}
	return err
}
