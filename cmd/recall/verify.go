package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:  "verify",
		Usage: "check that every recovery point can be restored",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "read-data", Usage: "also read back, decrypt and re-hash every stored blob"},
			&cli.StringFlag{Name: "read-data-share", Usage: "with --read-data (implied), read back only `PERCENT` of the packs (1% to 100%): the part run --read-data-run picks; without it, the run after the last one this home made, so runs in a row read every pack"},
			&cli.Uint64Flag{Name: "read-data-run", Usage: "with --read-data-share P, the run number `K`: runs K to K+ceil(100/P)-1 read every pack between them", DefaultText: "the run after the last one this home made"},
			&cli.BoolFlag{Name: "json", Usage: "print progress (with --read-data) and the report as JSON lines (see the README)"},
		},
		Action: withJob("verify", func(c *cli.Context, _ *engine.Job) error {
			st, err := openStoreUncached(c)
			if err != nil {
				return err
			}
			defer st.Close()
			r := st.Reader()
			opts := engine.VerifyOptions{ReadData: c.Bool("read-data")}
			if c.IsSet("read-data-share") {
				n, err := engine.ParseReadShare(c.String("read-data-share"))
				if err != nil {
					return usagef("--read-data-share %q: allowed: 1%% to 100%%, like 10%%", c.String("read-data-share"))
				}
				run := c.Uint64("read-data-run")
				if !c.IsSet("read-data-run") {
					// Not given: the run after the last this home made
					// and after those running, so that runs in a row
					// read every pack, and two at once two shares. Each
					// one read the same share, the others never.
					claimed, err := engine.ClaimShareRun(home(c))
					if err != nil {
						warnf("%v; reading run %d", err, engine.NextShareRun(home(c)))
						claimed = engine.NextShareRun(home(c))
					} else {
						defer func() { engine.ShareRunDone(home(c), claimed, false) }() // made: see below
					}
					run = claimed
				}
				opts.ReadData, opts.Share = true, engine.ReadShare{Percent: n, Run: run}
			} else if c.IsSet("read-data-run") {
				return usagef("--read-data-run needs --read-data-share")
			}
			pr, err := newReporter(c, "verify", "read", c.Bool("json"), opts.ReadData)
			if err != nil {
				return err
			}
			opts.Progress = pr.Progress()
			rep, err := engine.Verify(c.Context, r, opts)
			pr.Stop()
			if rep == nil {
				return err
			}
			if c.IsSet("read-data-share") && !c.IsSet("read-data-run") {
				// The share was read (damage found in it is reported
				// below): the next run reads the next one.
				if werr := engine.ShareRunDone(home(c), opts.Share.Run, true); werr != nil {
					warnf("%v; the next verify --read-data-share reads run %d again", werr, opts.Share.Run)
				}
			}
			if c.Bool("json") {
				v := verifyJSON{VerifyReport: rep, Damage: damagesJSON(rep.Damage), SecondsElapsed: round3(time.Since(pr.start).Seconds())}
				if n := opts.Share.Buckets(); n > 1 {
					v.ReadDataRun, v.ReadDataRuns = &opts.Share.Run, n
				}
				pr.Summary(v)
				return err
			}
			out := c.App.Writer
			for _, p := range slices.Sorted(maps.Keys(rep.BadPacks)) {
				fmt.Fprintf(out, "damaged pack %s: %s\n", p, rep.BadPacks[p])
			}
			// A pack cut short or gone damages every blob in it, hundreds
			// of lines of one cause: a few are shown per pack (all with -v;
			// --json lists every one), then how many more. The files they
			// damage are all listed below.
			perPack := map[string]int{}
			for _, b := range rep.DamagedBlobs {
				if perPack[b.Pack]++; perPack[b.Pack] > blobLinesPerPack && !c.Bool("verbose") {
					continue
				}
				fmt.Fprintf(out, "damaged blob %s", b.Blob)
				if b.Pack != "" {
					fmt.Fprintf(out, " in pack %s", b.Pack)
				}
				fmt.Fprintf(out, ": %s\n", b.Error)
			}
			if !c.Bool("verbose") {
				for _, p := range slices.Sorted(maps.Keys(perPack)) {
					n := perPack[p] - blobLinesPerPack
					switch {
					case n <= 0:
					case p == "":
						// Blobs in no pack: not in the index (lost).
						fmt.Fprintf(out, "damaged blobs: %d more in no pack (-v or --json lists every one)\n", n)
					default:
						fmt.Fprintf(out, "damaged blobs: %d more in pack %s (-v or --json lists every one)\n", n, p)
					}
				}
			}
			for _, p := range rep.Store {
				fmt.Fprintf(out, "damaged store file: %s\n", p) // with its repair
			}
			for _, p := range slices.Sorted(maps.Keys(rep.Unreadable)) {
				fmt.Fprintf(out, "unreadable pack %s (not verified): %s\n", p, rep.Unreadable[p])
			}
			for _, d := range rep.DamagedPoints {
				fmt.Fprintf(out, "damaged point %s: %s\n", d.Point[:12], d.Error)
			}
			for _, d := range rep.Damage {
				fmt.Fprintf(out, "damaged: point %s (%s): %s: %s", d.Point[:12], d.Source, d.Path, d.Error)
				if d.Pack != "" {
					fmt.Fprintf(out, " [pack %s]", d.Pack)
				}
				fmt.Fprintln(out)
			}
			what := "structure"
			if opts.Share.Buckets() > 1 {
				n := opts.Share.Buckets()
				what = fmt.Sprintf("structure and data (%d packs read: run %d, share %d of %d; any %d runs in a row read every pack)", rep.Packs, opts.Share.Run, opts.Share.Run%uint64(n)+1, n, n)
			} else if opts.ReadData {
				what = fmt.Sprintf("structure and data (%d packs read)", rep.Packs)
			}
			perms := unreadableAdvice(rep, st.Dir())
			switch {
			case errors.Is(err, engine.ErrVerifyFailed) && len(rep.Damage)+len(rep.BadPacks)+len(rep.DamagedPoints) == 0:
				// Only store files: no data is lost.
				return fmt.Errorf("%w; run 'recall repair index'%s", err, perms)
			case errors.Is(err, engine.ErrVerifyFailed) && len(rep.Damage)+len(rep.BadPacks) == 0:
				// Only damaged points: the engine's error says to forget
				// them; backing up again and repair points mend nothing.
				return fmt.Errorf("%w%s", err, perms)
			case errors.Is(err, engine.ErrVerifyFailed) && len(rep.Damage)+len(rep.DamagedPoints) == 0 && onlyUnindexed(rep):
				// Files in packs/ no index file lists, whose header does
				// not read (a copy under another name, not recall's): no
				// point needs them, and repair packs leaves them.
				fmt.Fprintf(out, "0 damaged files; %d pack files no index file lists\n", len(rep.BadPacks))
				return fmt.Errorf("%w; no point uses them: for each, put back a copy of its index file and run 'recall repair index', or move it out of packs/ (a copy of another pack, or a file that is not recall's)%s", err, perms)
			case errors.Is(err, engine.ErrVerifyFailed) && !inPacks(rep):
				// What is damaged is in no pack any more: repair packs has
				// nothing to salvage (it already reported the loss).
				fmt.Fprintf(out, "%d damaged files in %d points; %d damaged packs\n", len(rep.Damage), countPoints(rep.Damage), len(rep.BadPacks))
				return fmt.Errorf("%w; no pack holds what they miss: restore what you can with 'recall restore', "+
					"back up the affected sources again, then run 'recall repair points' for points that keep lost files%s", err, perms)
			case errors.Is(err, engine.ErrVerifyFailed):
				fmt.Fprintf(out, "%d damaged files in %d points; %d damaged packs\n", len(rep.Damage), countPoints(rep.Damage), len(rep.BadPacks))
				return fmt.Errorf("%w; restore what you can with 'recall restore', run 'recall repair packs' (it keeps every readable blob), "+
					"back up the affected sources again, then run 'recall repair points' for points that keep lost files%s", err, perms)
			case err != nil:
				return fmt.Errorf("%w%s", err, perms)
			}
			if pr.quiet {
				return nil
			}
			fmt.Fprintf(out, "verified %s: %d points, %d trees, %d chunks: no errors\n", what, rep.Points, rep.Trees, rep.Chunks)
			return nil
		}),
	})
}

// inPacks reports whether some damage verify found is in a pack, which
// repair packs salvages: a damaged pack, or a damaged blob or file that
// names its pack.
func inPacks(rep *engine.VerifyReport) bool {
	if len(rep.BadPacks) > 0 {
		return true
	}
	for _, b := range rep.DamagedBlobs {
		if b.Pack != "" {
			return true
		}
	}
	for _, d := range rep.Damage {
		if d.Pack != "" {
			return true
		}
	}
	return false
}

// countPoints counts the points that damage touches.
func countPoints(ds []engine.Damage) int {
	pts := map[string]bool{}
	for _, d := range ds {
		pts[d.Point] = true
	}
	return len(pts)
}

// verifyJSON is the summary line of verify --json: the report and the
// time it took. Damage, with the raw field of each path, stands for the
// report's (the shallower field wins in encoding/json).
type verifyJSON struct {
	*engine.VerifyReport
	Damage         []damageJSON `json:"damage,omitempty"`
	SecondsElapsed float64      `json:"seconds_elapsed"`
	// ReadDataRun and ReadDataRuns: with --read-data-share, the run made
	// and the number of runs that read every pack.
	ReadDataRun  *uint64 `json:"read_data_run,omitempty"`
	ReadDataRuns int     `json:"read_data_runs,omitempty"`
}

// blobLinesPerPack is how many damaged blobs of one pack verify lists
// without -v.
const blobLinesPerPack = 5

// unreadableAdvice is what to do about the packs verify could not read,
// by why: their owner or mode, or the disk under them (an I/O error says
// nothing of their bytes; a repair, which rewrites and deletes packs,
// must not be sent to them). "" when there are none.
// onlyUnindexed says whether every damaged pack of rep is a file no index
// file lists whose header does not read (engine's unindexed problem).
func onlyUnindexed(rep *engine.VerifyReport) bool {
	if len(rep.BadPacks) == 0 {
		return false
	}
	for _, why := range rep.BadPacks {
		if !strings.HasPrefix(why, engine.UnindexedProblem) {
			return false
		}
	}
	return true
}

func unreadableAdvice(rep *engine.VerifyReport, dir string) string {
	var perm, io bool
	for _, why := range rep.Unreadable {
		if strings.Contains(why, "permission denied") || strings.Contains(why, "operation not permitted") {
			perm = true
		} else {
			io = true
		}
	}
	var steps []string
	if perm {
		steps = append(steps, fmt.Sprintf("let recall read the packs refused it (their owner or mode under %s)", dir))
	}
	if io {
		steps = append(steps, fmt.Sprintf("check the disk or file system under %s for the packs with read errors (the kernel log names the device): they are left as they are, not repaired", dir))
	}
	if len(steps) == 0 {
		return ""
	}
	return "; " + strings.Join(steps, "; ") + "; then verify again"
}
