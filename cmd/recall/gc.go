package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/recall-backup/recall/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:  "gc",
		Usage: "return the space of forgotten points (runs beside backups)",
		Description: "Marks every chunk the remaining points reach, deletes the packs with none and rewrites\n" +
			"the packs mostly dead. Backups go on meanwhile: the packs are first hidden, and deleted once\n" +
			"every backup that started before that has ended (--wait waits for them; otherwise the next\n" +
			"gc finishes the work).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "say what would be deleted and rewritten, change nothing"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.Float64Flag{Name: "repack-threshold", Value: 50, Usage: "rewrite a pack when at least `PERCENT` of its bytes are dead (above 100: never)"},
			&cli.StringFlag{Name: "max-unused", Value: "5%", Usage: "then rewrite the most-dead packs below the threshold until their dead bytes are at most `PERCENT` of the live ones (\"unlimited\": the threshold alone decides)"},
			&cli.DurationFlag{Name: "wait", Usage: "how long to wait for backups that started before the packs were hidden"},
			&cli.DurationFlag{Name: "lock-wait", Value: time.Minute, Usage: "how long to wait for a repair or another gc to finish"},
			&cli.DurationFlag{Name: "index-grace", Value: time.Hour, Usage: "how long superseded index files stay (readers that listed them still find them), and the packs of a stopped backup wait for its next run"},
		},
		Action: func(c *cli.Context) error {
			th := c.Float64("repack-threshold")
			if th <= 0 {
				return usagef("--repack-threshold %v: must be a percentage above 0 (above 100: never rewrite)", th)
			}
			maxUnused, err := parseMaxUnused(c.String("max-unused"))
			if err != nil {
				return err
			}
			grace := c.Duration("index-grace")
			if grace == 0 {
				grace = -1 // none
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			o := engine.GCOptions{RepackThreshold: th / 100, MaxUnused: maxUnused, DryRun: c.Bool("dry-run"), Wait: c.Duration("wait"), IndexGrace: grace, LockOptions: lockWait(c)}
			// -q prints no progress. The few warnings chunkstore's GC
			// has (a pack left unrewritten) share this log with its
			// progress, so they go too, as with --json; its errors come
			// back from GC.
			if !c.Bool("json") && !c.Bool("quiet") {
				o.Log = logf
			}
			rep, err := engine.GC(c.Context, st, o)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, rep)
			}
			if !c.Bool("quiet") {
				printGC(c, rep)
			}
			return nil
		},
	})
}

func printGC(c *cli.Context, r *engine.GCReport) {
	w := c.App.Writer
	b := func(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }
	say := func(done, would string) string {
		if r.DryRun {
			return would
		}
		return done
	}
	if r.Resumed {
		fmt.Fprintln(w, "finished the plan an earlier gc left")
	}
	if r.Points > 0 || r.PacksMarked > 0 {
		// PacksMarked counts every indexed pack looked at, live or not:
		// "marked: 6 packs" read as six packs found in use.
		fmt.Fprintf(w, "marked: %d chunks reachable from %d points (%d packs of %s examined in %s)\n",
			r.LiveBlobs, r.Points, r.PacksMarked, b(r.BytesMarked), r.MarkTime.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "%s: %d packs (%s)\n", say("deleted", "would delete"), r.PacksDeleted, b(r.BytesDeleted))
	fmt.Fprintf(w, "%s: %d packs (%d live chunks, %s copied)\n", say("rewritten", "would rewrite"), r.PacksRewritten, r.BlobsCopied, b(r.BytesCopied))
	if r.PacksRestored > 0 {
		fmt.Fprintf(w, "kept: %d hidden packs that points committed meanwhile use\n", r.PacksRestored)
	}
	if r.PacksAdopted > 0 {
		fmt.Fprintf(w, "%s: %d packs that backups or copies which stopped left, collected as any others%s\n", say("indexed", "would index"), r.PacksAdopted,
			say("", " (not counted below: what they hold is read when they are indexed)"))
	}
	if r.LeftoverPacks > 0 {
		fmt.Fprintf(w, "%s: %d packs (%s) that backups or copies which stopped left, for their next run; a gc from %s collects those no point uses (--index-grace 0: this one)\n",
			say("kept", "would keep"), r.LeftoverPacks, b(r.LeftoverBytes), r.LeftoverUntil.Local().Format(time.DateTime))
	}
	if r.TempRemoved > 0 {
		fmt.Fprintf(w, "%s: %s of temp files, packs that backups or copies which stopped were building\n", say("removed", "would remove up to"), b(r.TempRemoved))
	}
	fmt.Fprintf(w, "%s: %s\n", say("freed", "would free"), b(r.Freed))
	if r.IndexConsolidated {
		fmt.Fprintln(w, "consolidated: the index files backups wrote, into one the store reads in place")
	}
	if len(r.IndexUnreadable) > 0 {
		fmt.Fprintf(w, "left: %d index files that do not decode, neither merged nor removed: %s; 'recall repair index' replaces them\n",
			len(r.IndexUnreadable), strings.Join(r.IndexUnreadable, ", "))
	}
	if r.Pending {
		var who []string
		for _, s := range r.WaitingFor {
			who = append(who, s.LockInfo.String())
		}
		fmt.Fprintf(w, "pending: %d packs are hidden and go once these backups end: %s; run 'recall gc' again then (or use --wait)\n",
			r.PacksHidden, strings.Join(who, "; "))
	}
}

// parseMaxUnused reads --max-unused: a percentage ("5%" or "5") or
// "unlimited". 0% is kept as a tiny share, since 0 means the default.
func parseMaxUnused(v string) (float64, error) {
	if v == "unlimited" {
		return -1, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), "%"), 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, usagef("--max-unused %q: give a percentage of the live bytes, like 5%%, or \"unlimited\"", v)
	}
	if f == 0 {
		return math.SmallestNonzeroFloat64, nil
	}
	return f / 100, nil
}
