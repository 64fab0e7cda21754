package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/tapefs"
	"github.com/urfave/cli/v2"
)

// The tape commands parse and print; the engine does the work.

func init() {
	libFlag := &cli.StringFlag{Name: "library", Usage: "tape library `NAME` (needed when there are several)"}
	jsonFlag := &cli.BoolFlag{Name: "json", Usage: "print JSON"}
	register(&cli.Command{
		Name:  "tape",
		Usage: "the tape tier: libraries, pools, writing recovery points to tape and restoring from it",
		Subcommands: []*cli.Command{
			{
				Name:  "library",
				Usage: "tape libraries",
				Subcommands: []*cli.Command{{
					Name:      "add",
					Usage:     "add an emulated library (a directory) or a real one (mtx changer and st drives)",
					ArgsUsage: "NAME",
					Flags: []cli.Flag{
						&cli.StringFlag{Name: "emulated", Usage: "an emulated library in `DIR` (created when new)"},
						&cli.IntFlag{Name: "slots", Value: 8, Usage: "storage slots of a new emulated library"},
						&cli.IntFlag{Name: "drives", Value: 1, Usage: "drives of a new emulated library"},
						&cli.StringFlag{Name: "capacity", Usage: "cartridge `SIZE` of a new emulated library (default 18TB, LTO-9; at least 32MiB, so the largest pack fits whole)"},
						&cli.StringFlag{Name: "early-warning", Usage: "early-warning zone `SIZE` before the end of a cartridge (default: 2% of the capacity, at least 256MiB, at most a quarter)"},
						&cli.StringFlag{Name: "rate", Usage: "drive speed of a new emulated library, like 400MB/s (default: unlimited)"},
						&cli.StringFlag{Name: "changer", Usage: "a real library's changer `DEV` (/dev/sgN, driven with mtx)"},
						&cli.StringSliceFlag{Name: "drive", Usage: "a real library's drive `DEV` (/dev/nstN), by drive number; repeat for each"},
					},
					Action: tapeLibraryAdd,
				}, {
					Name:      "set",
					Usage:     "point a library at where it is now: a moved emulated library's directory, a real one's changer and drive devices (renumbered at a reboot)",
					ArgsUsage: "NAME",
					Flags: []cli.Flag{
						&cli.StringFlag{Name: "emulated", Usage: "the emulated library's `DIR` now"},
						&cli.StringFlag{Name: "changer", Usage: "the changer's `DEV` now (/dev/sgN; lsscsi -g lists it as mediumx)"},
						&cli.StringSliceFlag{Name: "drive", Usage: "each drive's `DEV` now (/dev/nstN), by drive number; repeat for each (all of them)"},
					},
					Action: tapeLibrarySet,
				},
					emulatedAction(engine.EmulatedEject, "BARCODE", "take a cartridge out of an emulated library (into its outside/, as at a real library's door)", libFlag),
					emulatedAction(engine.EmulatedInsert, "BARCODE", "put a cartridge taken out back into an emulated library's first free slot", libFlag),
					emulatedAction(engine.EmulatedAddBlank, "[BARCODE]", "add a blank cartridge to an emulated library's first free slot (the next barcode when none is given)", libFlag),
				},
			},
			{
				Name:   "inventory",
				Usage:  "list a library's drives and slots: barcodes, pools, sets, free/writing/full/expired",
				Flags:  []cli.Flag{libFlag, jsonFlag},
				Action: tapeInventory,
			},
			{
				Name:  "pool",
				Usage: "media pools",
				Subcommands: []*cli.Command{{
					Name:      "create",
					Usage:     "create a media pool",
					ArgsUsage: "NAME",
					Flags: []cli.Flag{
						libFlag,
						&cli.StringFlag{Name: "retention", Required: true, Usage: "how long a set is kept: `SPAN` like 7y, 18mo, 4w, 30d"},
						&cli.BoolFlag{Name: "encrypt", Usage: "encrypt the pool's sets (AES-256-GCM; export the key with 'recall tape key export')"},
						&cli.BoolFlag{Name: "compress", Usage: "compress tape blocks with zstd"},
						&cli.StringFlag{Name: "allocation", Value: engine.AllocContinue, Usage: "continue (append to the pool's open set) or always (a new set for every write)"},
						&cli.StringFlag{Name: "append-window", Usage: "how long after its creation a set accepts appends: `SPAN` (default " + engine.DefaultAppendWindow + "); a set expires its retention after the window closes"},
					},
					Action: tapePoolCreate,
				}, {
					Name:      "set",
					Usage:     "change a pool's policy (sets already written keep their expiry)",
					ArgsUsage: "NAME",
					Flags: []cli.Flag{
						&cli.StringFlag{Name: "retention", Usage: "how long a set is kept: `SPAN` like 7y, 18mo, 4w, 30d"},
						&cli.StringFlag{Name: "append-window", Usage: "how long after its creation a set accepts appends: `SPAN`"},
						&cli.BoolFlag{Name: "compress", Usage: "compress tape blocks with zstd"},
						&cli.BoolFlag{Name: "no-compress", Usage: "do not compress tape blocks"},
						&cli.StringFlag{Name: "allocation", Usage: "continue (append to the pool's open set) or always (a new set for every write)"},
					},
					Action: tapePoolSet,
				}, {
					Name:   "list",
					Usage:  "list the media pools: library, retention, append window, allocation, encryption key",
					Flags:  []cli.Flag{jsonFlag},
					Action: tapePoolList,
				}},
			},
			{
				Name:  "label",
				Usage: "label the cartridge in a slot for a pool (refuses another pool's or an unexpired set's cartridge)",
				Flags: []cli.Flag{libFlag,
					&cli.IntFlag{Name: "slot", Required: true, Usage: "slot `N`"},
					&cli.StringFlag{Name: "pool", Required: true, Usage: "pool `NAME`"},
					&cli.BoolFlag{Name: "force", Usage: "overwrite a cartridge of another pool or an unexpired set"},
				},
				Action: func(c *cli.Context) error { return tapeRelabel(c, true) },
			},
			{
				Name:  "erase",
				Usage: "make the cartridge in a slot free again (free or expired cartridges only, unless --force)",
				Flags: []cli.Flag{libFlag,
					&cli.IntFlag{Name: "slot", Required: true, Usage: "slot `N`"},
					&cli.BoolFlag{Name: "force", Usage: "erase a cartridge holding an unexpired set"},
				},
				Action: func(c *cli.Context) error { return tapeRelabel(c, false) },
			},
			{
				Name:      "write",
				Usage:     "write recovery points to a pool's media set",
				ArgsUsage: "[POINT...]",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "pool", Required: true, Usage: "pool `NAME`"},
					&cli.StringFlag{Name: "source", Usage: "write the latest point of source `NAME`"},
					&cli.StringFlag{Name: "group", Usage: "write the latest point of each member of group `NAME`"},
					jsonFlag,
				},
				Action: tapeWrite,
			},
			{
				Name:  "list",
				Usage: "list the cartridges holding data: barcode, pool, set, written, expiry, points held",
				Flags: []cli.Flag{jsonFlag,
					&cli.StringFlag{Name: "point", Usage: "only the cartridges holding point `ID` (or a unique prefix)"},
				},
				Action: tapeList,
			},
			{
				Name:      "restore",
				Usage:     "restore a recovery point from tape alone, loading the cartridges it needs",
				ArgsUsage: "POINT (id or unique id prefix, or latest with --source)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "target", Required: true, Usage: "directory to restore into (created if missing)"},
					&cli.StringFlag{Name: "source", Usage: "with POINT latest: the data source `NAME` whose newest point on tape is restored"},
					&cli.StringFlag{Name: "path", Usage: "restore only `SUB`, a path inside the point"},
					&cli.BoolFlag{Name: "overwrite", Usage: "restore into a non-empty target"},
					jsonFlag,
				},
				Action: tapeRestore,
			},
			{
				Name:   "catalog",
				Usage:  "read cartridges (every full slot, or --slot) into this server's media catalog",
				Flags:  []cli.Flag{libFlag, &cli.IntFlag{Name: "slot", Usage: "only slot `N`"}, jsonFlag},
				Action: tapeCatalog,
			},
			{
				Name:  "copy",
				Usage: "copy a media set to another pool (a second copy for another site): points still in the store are read from it, the others from the set's cartridges",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "set", Required: true, Usage: "set `ID` (or a unique prefix)"},
					&cli.StringFlag{Name: "pool", Required: true, Usage: "the copy's pool `NAME`"},
					&cli.StringFlag{Name: "to-set", Usage: "continue the copy that stopped in set `ID` of the pool (what it holds is not written again)"},
					jsonFlag,
				},
				Action: tapeCopy,
			},
			{
				Name:  "key",
				Usage: "pool keys",
				Subcommands: []*cli.Command{
					{
						Name:  "export",
						Usage: "write a pool's key to a passphrase-protected file (the passphrase from the usual sources, else asked)",
						Flags: []cli.Flag{
							&cli.StringFlag{Name: "pool", Required: true, Usage: "pool `NAME`"},
							&cli.StringFlag{Name: "to", Required: true, Usage: "key `FILE` to write"},
						},
						Action: tapeKeyExport,
					},
					{
						Name:      "import",
						Usage:     "keep a pool key from an exported key file on this server (a pool not on this server yet needs --retention; a plain pool then encrypts, its open sets closed)",
						ArgsUsage: "FILE",
						Flags: []cli.Flag{
							&cli.StringFlag{Name: "retention", Usage: "for a pool not on this server yet: how long the sets this server writes to it are kept, `SPAN` like 7y"},
						},
						Action: tapeKeyImport,
					},
				},
			},
		},
	})
}

func tapeLog(c *cli.Context) func(string, ...any) {
	if c.Bool("quiet") {
		return func(string, ...any) {}
	}
	return logf
}

func home(c *cli.Context) string { return c.String("home") }

func tapeLibraryAdd(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("tape library add needs a NAME")
	}
	o := engine.AddLibraryOptions{Name: c.Args().First(), Dir: c.String("emulated"), Changer: c.String("changer"), Drives: c.StringSlice("drive"), Warn: warnf}
	o.Emulator = tapefs.EmulatorOptions{Slots: c.Int("slots"), Drives: c.Int("drives")}
	var err error
	if v := c.String("capacity"); v != "" {
		if o.Emulator.Capacity, err = parseSize(v); err != nil {
			return usagef("--capacity: %v", err)
		}
	}
	if v := c.String("early-warning"); v != "" {
		if o.Emulator.EarlyWarning, err = parseSize(v); err != nil {
			return usagef("--early-warning: %v", err)
		}
	}
	if v := c.String("rate"); v != "" {
		if o.Emulator.Rate, err = parseSize(strings.TrimSuffix(v, "/s")); err != nil {
			return usagef("--rate: %v", err)
		}
	}
	if (o.Dir == "") == (o.Changer == "") {
		return usagef("tape library add: give --emulated DIR, or --changer /dev/sgN with --drive /dev/nstN")
	}
	l, err := engine.AddTapeLibrary(c.Context, home(c), o)
	if err != nil {
		return err
	}
	if !c.Bool("quiet") {
		fmt.Fprintf(c.App.Writer, "library %s added (%s %s%s)\n", l.Name, l.Kind, l.Dir, l.Changer)
	}
	return nil
}

func tapeLibrarySet(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("tape library set needs a NAME")
	}
	o := engine.SetLibraryOptions{Name: c.Args().First(), Dir: c.String("emulated"), Changer: c.String("changer"), Warn: warnf}
	if c.IsSet("drive") {
		o.Drives = c.StringSlice("drive")
	}
	if o.Dir == "" && o.Changer == "" && o.Drives == nil {
		return usagef("tape library set: give --emulated DIR, or --changer /dev/sgN and/or --drive /dev/nstN")
	}
	l, err := engine.SetTapeLibrary(c.Context, home(c), o)
	if err != nil {
		return err
	}
	if !c.Bool("quiet") {
		fmt.Fprintf(c.App.Writer, "library %s is now %s\n", l.Name, l.Where())
	}
	return nil
}

// emulatedAction is the command of an operator action on an emulated
// library.
func emulatedAction(action, args, usage string, libFlag cli.Flag) *cli.Command {
	return &cli.Command{
		Name: action, Usage: usage, ArgsUsage: args,
		Flags: []cli.Flag{libFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 || c.NArg() == 0 && action != engine.EmulatedAddBlank {
				return usagef("tape library %s takes %s", action, args)
			}
			bc, slot, err := engine.EmulatedLibraryAction(c.Context, home(c), c.String("library"), action, c.Args().First(), warnf)
			if err != nil {
				return err
			}
			if action == engine.EmulatedEject {
				fmt.Fprintf(c.App.Writer, "cartridge %s taken out\n", bc)
			} else {
				fmt.Fprintf(c.App.Writer, "cartridge %s in slot %d\n", bc, slot)
			}
			return nil
		},
	}
}

func tapeInventory(c *cli.Context) error {
	inv, err := engine.TapeInventory(c.Context, home(c), c.String("library"), time.Now(), warnf)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c, inv)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ELEMENT\tBARCODE\tSTATE\tPOOL\tSET\tSEQ\tEXPIRY")
	for _, s := range inv {
		bc, state := dash(s.Barcode), dash(s.State)
		if !s.Full {
			bc, state = "(empty)", "-"
		} else if s.State == "" {
			state = "unknown"
		}
		if s.Cleaning {
			state = "cleaning"
		}
		if s.Full && s.SetClosed && s.State == engine.MediaWriting {
			// Room left, but its set takes no more points: free again
			// once the set expires. One word: scripts split the columns.
			state = "closed"
		}
		seq, exp := "-", "-"
		if s.Sequence > 0 {
			seq = fmt.Sprint(s.Sequence)
		}
		if !s.Expiry.IsZero() {
			exp = s.Expiry.Format(time.DateOnly)
		}
		fmt.Fprintf(tw, "%s %d\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Element, s.Number, bc, state, dash(s.Pool), dash(s.Set), seq, exp)
	}
	return tw.Flush()
}

func tapePoolCreate(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("tape pool create needs a NAME")
	}
	p, err := engine.CreateTapePool(home(c), engine.TapePool{Name: c.Args().First(), Library: c.String("library"), Retention: c.String("retention"),
		Encrypt: c.Bool("encrypt"), Compress: c.Bool("compress"), Allocation: c.String("allocation"), AppendWindow: c.String("append-window")}, time.Now(), warnf)
	if err != nil {
		return err
	}
	if !c.Bool("quiet") {
		fmt.Fprintf(c.App.Writer, "pool %s created (library %s, retention %s, append window %s, allocation %s)\n", p.Name, p.Library, p.Retention, p.Window(), p.Allocation)
		if p.Encrypt {
			fmt.Fprintf(c.App.Writer, "its sets are encrypted with key %s: export it now with 'recall tape key export --pool %s --to FILE' and keep the file apart from the cartridges; without it they cannot be read on another server\n", p.KeyFingerprint, p.Name)
		}
	}
	return nil
}

func tapePoolSet(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("tape pool set needs a NAME")
	}
	var ch engine.TapePoolChange
	for _, f := range []struct {
		name string
		to   **string
	}{{"retention", &ch.Retention}, {"append-window", &ch.AppendWindow}, {"allocation", &ch.Allocation}} {
		if c.IsSet(f.name) {
			v := c.String(f.name)
			*f.to = &v
		}
	}
	switch {
	case c.Bool("compress") && c.Bool("no-compress"):
		return usagef("tape pool set: give --compress or --no-compress, not both")
	case c.Bool("compress"), c.Bool("no-compress"):
		v := c.Bool("compress")
		ch.Compress = &v
	}
	if ch == (engine.TapePoolChange{}) {
		return usagef("tape pool set: nothing to change (give --retention, --append-window, --compress, --no-compress or --allocation)")
	}
	p, err := engine.SetTapePool(home(c), c.Args().First(), ch, time.Now(), warnf)
	if err != nil {
		return err
	}
	if !c.Bool("quiet") {
		fmt.Fprintf(c.App.Writer, "pool %s: retention %s, append window %s, allocation %s, compress %v (sets already written keep their expiry)\n",
			p.Name, p.Retention, p.Window(), p.Allocation, p.Compress)
	}
	return nil
}

func tapePoolList(c *cli.Context) error {
	ps, err := engine.ListTapePools(home(c), warnf)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		// The window in effect, as the table shows it: the record
		// leaves the default out, and the JSON left it out too.
		for i := range ps {
			ps[i].AppendWindow = ps[i].Window()
		}
		return printJSON(c, ps)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tLIBRARY\tRETENTION\tAPPEND WINDOW\tALLOCATION\tCOMPRESS\tKEY")
	for _, p := range ps {
		key := "-"
		if p.Encrypt {
			key = p.KeyFingerprint
		}
		comp := "no"
		if p.Compress {
			comp = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, dash(p.Library), dash(p.Retention), p.Window(), p.Allocation, comp, key)
	}
	return tw.Flush()
}

func tapeRelabel(c *cli.Context, label bool) error {
	o := engine.TapeLabelOptions{Library: c.String("library"), Slot: c.Int("slot"), Force: c.Bool("force"), Now: time.Now(), Warn: warnf}
	if label {
		o.Pool = c.String("pool")
	}
	r, err := engine.RelabelTape(c.Context, home(c), o)
	if err != nil {
		return err
	}
	if c.Bool("quiet") {
		return nil
	}
	m := r.Medium
	if label {
		fmt.Fprintf(c.App.Writer, "cartridge %s in slot %d labelled for pool %s\n", m.Barcode, m.Slot, m.Pool)
	} else {
		fmt.Fprintf(c.App.Writer, "cartridge %s in slot %d erased: free\n", m.Barcode, m.Slot)
	}
	switch {
	case r.Set == "":
	case !r.SetKnown:
		fmt.Fprintf(c.App.Writer, "it held sequence %d of set %s, which this server's catalog does not record: the points it held are not known here\n", r.Sequence, r.Set)
	default:
		var gone, kept []string
		for _, id := range r.PointsLost {
			if set, ok := r.PointsElsewhere[id]; ok {
				kept = append(kept, id+" (whole on set "+set+")")
			} else {
				gone = append(gone, id)
			}
		}
		lost := "none"
		if len(gone) > 0 {
			lost = strings.Join(gone, ", ")
		}
		fmt.Fprintf(c.App.Writer, "it held sequence %d of set %s: the set is closed (later writes start a new set); points no longer on any tape: %s\n", r.Sequence, r.Set, lost)
		if len(kept) > 0 {
			fmt.Fprintf(c.App.Writer, "points no longer readable from that set but still on another: %s\n", strings.Join(kept, ", "))
		}
	}
	return nil
}

func tapeWrite(c *cli.Context) error {
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	r := st.Reader()
	var points []*engine.Point
	for _, spec := range c.Args().Slice() {
		p, err := r.FindPoint(spec, "")
		if err != nil {
			return err
		}
		points = append(points, p)
	}
	if s := c.String("source"); s != "" {
		p, err := r.FindPoint("latest", s)
		if err != nil {
			return err
		}
		points = append(points, p)
	}
	if g := c.String("group"); g != "" {
		var grp engine.Group
		if err := withCatalog(c, catalogWait, func(cat *engine.Catalog) (err error) {
			grp, err = cat.Group(g)
			return err
		}); err != nil {
			return err
		}
		for _, src := range grp.Sources() {
			p, err := r.FindPoint("latest", src)
			if err != nil {
				warnf("group %s: source %s: %v", g, src, err)
				continue
			}
			points = append(points, p)
		}
	}
	if len(points) == 0 {
		return usagef("tape write: name the points (POINT..., --source or --group)")
	}
	rep, err := st.WriteTape(c.Context, home(c), engine.TapeWriteOptions{Pool: c.String("pool"), Points: points, Log: tapeLog(c)})
	if rep != nil && c.Bool("json") {
		if perr := printJSON(c, rep); err == nil {
			err = perr
		}
	} else if err == nil && !c.Bool("quiet") {
		fmt.Fprintf(c.App.Writer, "wrote %d point(s) to set %s of pool %s: %d packs, %s (%d already on the set) on %s in %.1fs (%s/s)\n",
			len(rep.Points), rep.Set, rep.Pool, rep.Packs, human(rep.Bytes), rep.PacksSkipped, strings.Join(rep.Tapes, ", "), rep.Seconds, human(int64(float64(rep.Bytes)/max(rep.Seconds, 1e-3))))
	}
	return err
}

func tapeCopy(c *cli.Context) error {
	var st *engine.Store
	if engine.RequireStore(home(c)) == nil {
		var err error
		if st, err = openStore(c); err != nil {
			return err
		}
		defer st.Close()
	}
	rep, err := engine.CopyTapeSet(c.Context, st, home(c), engine.TapeCopyOptions{Set: c.String("set"), Pool: c.String("pool"), ToSet: c.String("to-set"), Log: tapeLog(c),
		Password: func() (string, error) { return stagedPassword(c) }})
	if rep != nil && c.Bool("json") {
		if perr := printJSON(c, rep); err == nil {
			err = perr
		}
	} else if err == nil && !c.Bool("quiet") {
		fmt.Fprintf(c.App.Writer, "copied %d point(s) of set %s to set %s of pool %s: %d packs, %s on %s\n",
			len(rep.Points), c.String("set"), rep.Set, rep.Pool, rep.Packs, human(rep.Bytes), strings.Join(rep.Tapes, ", "))
	}
	return err
}

// stagedPassword is the passphrase of the store points on tape were
// written from, for a staging store: the usual sources, else asked.
func stagedPassword(c *cli.Context) (string, error) {
	pw, err := password(c)
	if err != nil || pw != "" {
		return pw, err
	}
	pw, err = askPassword(c, "the points were written from")
	if errors.Is(err, errNoTerminal) {
		return "", fmt.Errorf("%w: the points were written from an encrypted store: give its passphrase (RECALL_PASSWORD, --password-file or --password-command)", chunkstore.ErrNoPassword)
	}
	return pw, err
}

func tapeList(c *cli.Context) error {
	ls, err := engine.ListTapes(home(c), c.String("point"), warnf)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c, ls)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BARCODE\tPOOL\tSET\tSEQ\tSTATE\tWRITTEN (UTC)\tEXPIRY\tPOINTS")
	for _, e := range ls {
		pts := make([]string, len(e.Points))
		for i, p := range e.Points {
			pts[i] = p[:min(12, len(p))]
		}
		written := "-"
		if !e.Written.IsZero() {
			written = e.Written.UTC().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", e.Barcode, e.Pool, e.Set, e.Sequence, dash(e.State), written, e.Expiry.Format(time.DateOnly), dash(strings.Join(pts, " ")))
	}
	return tw.Flush()
}

func tapeRestore(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("tape restore needs exactly one POINT")
	}
	rep, err := newReporter(c, "restore", "restored", c.Bool("json"), true)
	if err != nil {
		return err
	}
	res, err := engine.RestoreFromTape(c.Context, home(c), engine.TapeRestoreOptions{
		Point: c.Args().First(), Source: c.String("source"), Target: c.String("target"), Path: c.String("path"), Overwrite: c.Bool("overwrite"),
		Password: func() (string, error) { return stagedPassword(c) },
		Log:      tapeLog(c), Progress: rep.Progress(),
	})
	rep.Stop()
	if res == nil || res.RestoreResult == nil || (err != nil && !errors.Is(err, engine.ErrDamaged)) {
		return err
	}
	p, rr := res.Point, res.RestoreResult
	if c.Bool("json") {
		rep.Summary(restoreSummary(p, rr, time.Since(rep.start)))
	} else if rep.text() {
		fmt.Fprintf(c.App.Writer, "%s point %s of %s from cartridge(s) %s: %d files, %d dirs, %d other, %s into %s%s\n",
			restoredVerb(rr), p.ID.String()[:12], cell(p.Source), strings.Join(res.Tapes, ", "), rr.Files, rr.Dirs, rr.Others, human(rr.Bytes), rr.Root, damagedNote(rr))
	}
	for _, d := range rr.Damaged {
		fmt.Fprintf(c.App.ErrWriter, "recall: damaged: %s\n", oneLine(d.Path+": "+d.Error))
	}
	if err != nil {
		byCause := map[string][]string{}
		for _, l := range res.Lost {
			byCause[l.Cause] = append(byCause[l.Cause], l.Name)
		}
		var why []string
		for _, c := range []string{engine.LostBadBlocks, engine.LostMissing} {
			if len(byCause[c]) > 0 {
				why = append(why, fmt.Sprintf("%s: %s", c, strings.Join(byCause[c], ", ")))
			}
		}
		return fmt.Errorf("%w; every other file was restored; %d pack(s) could not be read from tape (%s)", err, len(res.LostPacks), strings.Join(why, "; "))
	}
	return restoreWarnings(rr)
}

func tapeCatalog(c *cli.Context) error {
	out, err := engine.CatalogTapes(c.Context, home(c), engine.TapeCatalogOptions{Library: c.String("library"), Slot: c.Int("slot"), Log: tapeLog(c)})
	if c.Bool("json") {
		if err != nil && len(out) == 0 {
			return err // nothing was scanned: no list, as the other commands
		}
		if out == nil {
			out = []engine.ScannedCartridge{}
		}
		if perr := printJSON(c, out); err == nil {
			err = perr
		}
		return err
	}
	if !c.Bool("quiet") {
		for _, s := range out {
			switch {
			case s.Error != "":
			case s.Blank:
				fmt.Fprintf(c.App.Writer, "slot %d: %s is blank\n", s.Slot, s.Barcode)
			case s.Set == "":
				fmt.Fprintf(c.App.Writer, "slot %d: %s is free (pool %s)\n", s.Slot, s.Barcode, dash(s.Pool))
			default:
				how := "its catalog file"
				if !s.FromCatalogFile {
					how = "a full scan"
				}
				fmt.Fprintf(c.App.Writer, "slot %d: %s: pool %s, set %s, sequence %d: %d files, the set holds %d points (from %s)\n", s.Slot, s.Barcode, s.Pool, s.Set, s.Sequence, s.Files, s.Points, how)
				if s.Filled {
					fmt.Fprintf(c.App.Writer, "  filled: its last file was cut by the end of the medium; the set goes on on sequence %d\n", s.ContinuedOn)
				}
				if s.Torn {
					fmt.Fprintf(c.App.Writer, "  its last file is torn (a power cut while writing?): everything before it was read\n")
				}
				for _, d := range s.Damaged {
					fmt.Fprintf(c.App.Writer, "  damaged: %s\n", d)
				}
			}
		}
	}
	return err
}

// keyFilePassword says where a key file's passphrase can come from when
// there is no terminal to ask it on (exit 5, as for a store's).
func keyFilePassword(err error) error {
	if errors.Is(err, errNoTerminal) {
		return errNoKeyFilePassword{}
	}
	return err
}

type errNoKeyFilePassword struct{}

func (errNoKeyFilePassword) Error() string {
	return "no passphrase for the key file, and no terminal to ask it on: give it with RECALL_PASSWORD, --password-file FILE or --password-command CMD"
}

func (errNoKeyFilePassword) Is(target error) bool { return target == chunkstore.ErrNoPassword }

func tapeKeyExport(c *cli.Context) error {
	pw, err := password(c)
	if err != nil {
		return err
	}
	if pw, err = newPassword(c, pw, "passphrase for the key file"); err != nil {
		return keyFilePassword(err)
	}
	b, err := engine.ExportTapeKey(home(c), c.String("pool"), pw, warnf)
	if err != nil {
		return err
	}
	to := c.String("to")
	if err := os.WriteFile(to, b, 0o600); err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	if !c.Bool("quiet") {
		fmt.Fprintf(c.App.Writer, "key of pool %s written to %s; keep it (and its passphrase) apart from the cartridges\n", c.String("pool"), to)
	}
	return nil
}

func tapeKeyImport(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("tape key import needs the key FILE")
	}
	b, err := os.ReadFile(c.Args().First())
	if err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	pw, err := password(c)
	if err != nil {
		return err
	}
	if pw == "" {
		if pw, err = readPassword(c.Context, "passphrase of the key file: "); err != nil {
			return keyFilePassword(err)
		}
	}
	p, err := engine.ImportTapeKey(home(c), b, pw, c.String("retention"), time.Now(), warnf)
	if errors.Is(err, tapefs.ErrWrongKey) {
		return fmt.Errorf("%s: %w", c.Args().First(), err)
	}
	if errors.Is(err, engine.ErrNeedRetention) {
		return usagef("tape key import: pool %s is not on this server: give --retention SPAN (how long the sets this server writes to it are kept, like 7y) to create it", p.Name)
	}
	if err != nil {
		return err
	}
	if !c.Bool("quiet") {
		fmt.Fprintf(c.App.Writer, "key of pool %s imported (fingerprint %s)\n", p.Name, p.KeyFingerprint)
	}
	return nil
}
