package engine

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
	"golang.org/x/sys/unix"
)

// openTestStore makes a store, encrypted or not, and returns it with the
// directory it lives in (to damage it and open it again).
func openTestStore(t *testing.T, encrypt bool) (*testStore, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if _, err := chunkstore.Init(dir, chunkstore.InitOptions{Encrypt: encrypt, Password: "pw", KDFMemoryKB: 1024}); err != nil {
		t.Fatal(err)
	}
	return reopen(t, dir), dir
}

// reopen opens the store in dir afresh, as the next command would.
func reopen(t *testing.T, dir string) *testStore {
	t.Helper()
	st, err := chunkstore.Open(dir, chunkstore.OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &testStore{t: t, st: st, r: NewReader(st)}
}

func writeFiles(t *testing.T, root string, files map[string][]byte) {
	t.Helper()
	for name, b := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func randomBytes(seed byte, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// readBack restores p into a new directory and returns every regular
// file's content by relative path.
func readBack(t *testing.T, ts *testStore, p *Point) map[string][]byte {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "out")
	if _, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: dst}); err != nil {
		t.Fatalf("restore point %s: %v", pointShort(p.ID), err)
	}
	got := map[string][]byte{}
	filepath.Walk(dst, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			rel, _ := filepath.Rel(dst, path)
			got[rel], _ = os.ReadFile(path)
		}
		return err
	})
	return got
}

func sameFiles(t *testing.T, what string, want, got map[string][]byte) {
	t.Helper()
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s: %s missing", what, name)
		} else if !bytes.Equal(g, w) {
			t.Errorf("%s: %s differs", what, name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: unexpected %s", what, name)
		}
	}
}

func TestPointsWithDamagedManifest(t *testing.T) {
	for _, enc := range []bool{false, true} {
		for _, damage := range []string{"flipped byte", "undecodable", "newer format"} {
			name := map[bool]string{false: "plain", true: "encrypted"}[enc] + "/" + damage
			t.Run(name, func(t *testing.T) {
				ts, dir := openTestStore(t, enc)
				src := t.TempDir()
				files := map[string][]byte{"a": randomBytes(1, 5000), "d/b": randomBytes(2, 7000)}
				writeFiles(t, src, files)
				if _, err := ts.backup(BackupOptions{Path: src, Source: "s"}); err != nil {
					t.Fatal(err)
				}
				if _, err := ts.backup(BackupOptions{Path: src, Source: "s"}); err != nil {
					t.Fatal(err)
				}
				pts, err := ts.r.Points()
				if err != nil || len(pts) != 2 {
					t.Fatalf("points: %v, %v", pts, err)
				}
				// The newest manifest is the damaged one, so "latest" must
				// step over it.
				var bad chunkstore.ID
				healthy := pts[:1]
				switch damage {
				case "flipped byte":
					bad = pts[1].ID
					manifest := filepath.Join(dir, "points", bad.String())
					b, err := os.ReadFile(manifest)
					if err != nil {
						t.Fatal(err)
					}
					b[len(b)/2] ^= 0x20
					if err := os.WriteFile(manifest, b, 0o600); err != nil {
						t.Fatal(err)
					}
				case "undecodable":
					// Bytes that pass the hash and authentication but are
					// no manifest.
					if bad, err = ts.st.SavePoint([]byte(`{"version":1,"source":`)); err != nil {
						t.Fatal(err)
					}
					healthy = pts
				case "newer format":
					// Intact, but not readable by this recall: listed,
					// never removed by repair.
					if bad, err = ts.st.SavePoint([]byte(`{"version":99,"source":"s","future":true}`)); err != nil {
						t.Fatal(err)
					}
					healthy = pts
				}
				ts = reopen(t, dir)

				pts, err = ts.r.Points()
				if err != nil {
					t.Fatalf("points: %v", err)
				}
				if len(pts) != len(healthy)+1 {
					t.Fatalf("got %d points, want %d", len(pts), len(healthy)+1)
				}
				last := pts[len(pts)-1]
				if last.ID != bad || last.Damaged == "" {
					t.Fatalf("the damaged point is not listed last, marked: %+v", last)
				}
				if last.Source != "" || !last.Time.IsZero() || !last.Tree.IsZero() || last.Stats != (Stats{}) {
					t.Errorf("a damaged point carries fields it cannot know: %+v", last)
				}
				for i, p := range healthy {
					if pts[i].ID != p.ID || pts[i].Damaged != "" {
						t.Errorf("healthy point %s listed as %+v", pointShort(p.ID), pts[i])
					}
				}
				first := healthy[len(healthy)-1]

				latest, err := ts.r.FindPoint("latest", "s")
				if err != nil || latest.ID != first.ID {
					t.Fatalf("latest: %v, %v; want the healthy point %s", latest, err, pointShort(first.ID))
				}
				if _, err := ts.r.FindPoint("latest", ""); err != nil {
					t.Errorf("latest of all sources: %v", err)
				}
				_, err = ts.r.FindPoint(bad.String()[:10], "s")
				var dp *DamagedPointError
				if damage == "newer format" {
					if !errors.Is(err, ErrNewerPoint) || errors.Is(err, ErrDamaged) {
						t.Errorf("finding the newer point by prefix: %v", err)
					}
				} else if !errors.As(err, &dp) || dp.ID != bad || !errors.Is(err, ErrDamaged) {
					t.Errorf("finding the damaged point by prefix: %v", err)
				}
				if _, err := ts.r.LoadPoint(bad); errors.Is(err, ErrDamaged) != (damage != "newer format") {
					t.Errorf("LoadPoint of the unreadable point: %v", err)
				}
				sameFiles(t, "restore of the healthy point", files, readBack(t, ts, latest))

				// repair removes a damaged manifest, and only that.
				if _, err := repairPoints(t, ts, RepairPointsOptions{ForgetDamaged: true}); err != nil {
					t.Fatalf("repair: %v", err)
				}
				_, err = os.Stat(filepath.Join(dir, "points", bad.String()))
				if gone := os.IsNotExist(err); gone != (damage != "newer format") {
					t.Errorf("after repair points --forget-damaged, the manifest is gone: %v", gone)
				}
			})
		}
	}
}

// storeFiles lists every file of a store with its size, leaving out the
// lock, which taking it rewrites.
func storeFiles(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || strings.Contains(p, "/locks/") {
			return err
		}
		lines = append(lines, p+" "+strconv.FormatInt(info.Size(), 10))
		return nil
	})
	return strings.Join(lines, "\n")
}

func repairPoints(t *testing.T, ts *testStore, opts RepairPointsOptions) (*RepairReport, error) {
	t.Helper()
	s := openSession(t, ts.st, SessionOptions{Purpose: "test", Exclusive: true})
	defer s.Close()
	return RepairPoints(context.Background(), s, opts)
}

// blobOf returns the id of what a path names in p: a file's first chunk,
// a directory's tree ("" for the root tree).
func blobOf(t *testing.T, ts *testStore, p *Point, path string) chunkstore.ID {
	t.Helper()
	id := p.Tree
	for _, part := range strings.Split(path, "/") {
		if part == "" {
			break
		}
		tree, err := ts.r.LoadTree(id)
		if err != nil {
			t.Fatal(err)
		}
		n := tree.Find(part)
		if n == nil {
			t.Fatalf("%s not in point", path)
		}
		if id = n.Subtree; n.Type != TypeDir {
			id = n.Extents[0].ID
		}
	}
	return id
}

func TestRepairPoints(t *testing.T) {
	old := chunkstore.PackTargetSize
	chunkstore.PackTargetSize = 1 // a pack per blob: deleting one loses one blob
	t.Cleanup(func() { chunkstore.PackTargetSize = old })

	cases := []struct {
		name     string
		lose     string // what in the first point loses its blob
		lostPath string // the path the repaired points list as lost
		rootLost bool   // the first point cannot be repaired
	}{
		{name: "file", lose: "sub/c", lostPath: "sub/c"},
		{name: "directory", lose: "sub", lostPath: "sub/"},
		{name: "root", lose: "", rootLost: true},
	}
	modes := []struct {
		name string
		opts RepairPointsOptions
	}{
		{"dry-run", RepairPointsOptions{RepairOptions: RepairOptions{DryRun: true}, ForgetDamaged: true}},
		{"keep", RepairPointsOptions{}},
		{"forget-damaged", RepairPointsOptions{ForgetDamaged: true}},
	}
	for _, enc := range []bool{false, true} {
		for _, tc := range cases {
			if enc && tc.name != "file" {
				continue // encryption changes nothing in the tree walk
			}
			for _, mode := range modes {
				t.Run(map[bool]string{false: "plain", true: "encrypted"}[enc]+"/"+tc.name+"/"+mode.name, func(t *testing.T) {
					ts, dir := openTestStore(t, enc)
					src := t.TempDir()
					files := map[string][]byte{"a": randomBytes(1, 3000), "b": randomBytes(2, 4000),
						"sub/c": randomBytes(3, 5000), "sub/d": randomBytes(4, 6000), "sub/deeper/f": randomBytes(5, 7000)}
					writeFiles(t, src, files)
					p1, err := ts.backup(BackupOptions{Path: src, Source: "s"})
					if err != nil {
						t.Fatal(err)
					}
					files2 := map[string][]byte{"e": randomBytes(6, 2000)}
					writeFiles(t, src, files2)
					for k, v := range files {
						files2[k] = v
					}
					p2, err := ts.backup(BackupOptions{Path: src, Source: "s"})
					if err != nil {
						t.Fatal(err)
					}
					// The second point loses what the first loses when it
					// shares the blob: always a file's chunk, a directory's
					// tree only when nothing in it changed (atimes do).
					lost := blobOf(t, ts, p1, tc.lose)
					type expect struct {
						old   *Point
						files map[string][]byte
					}
					damaged := []expect{{p1, files}}
					if blobOf(t, ts, p2, tc.lose) == lost {
						damaged = append(damaged, expect{p2, files2})
					}
					pack, ok := ts.st.PackOf(lost)
					if !ok {
						t.Fatal("blob not indexed")
					}
					h := pack.String()
					if err := os.Remove(filepath.Join(dir, "packs", h[:2], h)); err != nil {
						t.Fatal(err)
					}
					ts = reopen(t, dir)
					before := storeFiles(t, dir)

					rep, err := repairPoints(t, ts, mode.opts)
					t.Logf("report: %s (error %v)", strings.Join(rep.Actions, "\n"), err)
					keep := !mode.opts.ForgetDamaged
					if keep != errors.Is(err, ErrDamaged) || (!keep && err != nil) {
						t.Fatalf("RepairPoints: %v", err)
					}
					if len(rep.Actions) == 0 || rep.DryRun != mode.opts.DryRun {
						t.Fatalf("report: %+v", rep)
					}
					if tc.lostPath != "" && !strings.Contains(strings.Join(rep.Actions, "\n"), tc.lostPath) {
						t.Errorf("the report does not name %s", tc.lostPath)
					}
					if mode.opts.DryRun {
						if after := storeFiles(t, dir); after != before {
							t.Errorf("a dry run changed the store:\nbefore %s\nafter  %s", before, after)
						}
						return
					}

					ts = reopen(t, dir)
					pts, err := ts.r.Points()
					if err != nil {
						t.Fatal(err)
					}
					byID := map[chunkstore.ID]*Point{}
					for _, p := range pts {
						byID[p.ID] = p
					}
					for _, p := range []*Point{p1, p2} {
						isDamaged := p == p1 || len(damaged) == 2
						if stays := byID[p.ID] != nil; stays != (keep || !isDamaged) {
							t.Errorf("point %s (damaged %v) kept: %v", pointShort(p.ID), isDamaged, stays)
						}
						delete(byID, p.ID)
					}
					if tc.rootLost {
						damaged = nil // nothing to repair it with
					}
					if len(byID) != len(damaged) {
						t.Fatalf("%d repaired points, want %d", len(byID), len(damaged))
					}
					for _, w := range damaged {
						var np *Point
						for _, p := range byID {
							if p.Time.Equal(w.old.Time) {
								np = p
							}
						}
						if np == nil {
							t.Fatalf("no repaired point for %s", pointShort(w.old.ID))
						}
						if np.Source != w.old.Source || np.Path != w.old.Path || np.Kind != w.old.Kind || np.Host != w.old.Host ||
							np.Stats.NewBlobs != w.old.Stats.NewBlobs || np.Stats.DurationNano != w.old.Stats.DurationNano {
							t.Errorf("repaired point differs from the original beyond its tree: %+v vs %+v", np, w.old)
						}
						if len(np.Errors) != 1 || np.Errors[0].Path != tc.lostPath || !strings.HasPrefix(np.Errors[0].Error, "lost in repair: ") {
							t.Errorf("repaired point's errors: %+v, want only %s", np.Errors, tc.lostPath)
						}
						wantFiles := map[string][]byte{}
						for k, v := range w.files {
							if !strings.HasPrefix(k, tc.lostPath) {
								wantFiles[k] = v
							}
						}
						if np.Stats.Files != int64(len(wantFiles)) {
							t.Errorf("repaired point counts %d files, holds %d", np.Stats.Files, len(wantFiles))
						}
						sameFiles(t, "restore of the repaired point", wantFiles, readBack(t, ts, np))
					}

					// A second run changes nothing more.
					before = storeFiles(t, dir)
					if _, err := repairPoints(t, ts, mode.opts); keep != errors.Is(err, ErrDamaged) {
						t.Errorf("second repair: %v", err)
					}
					if after := storeFiles(t, dir); after != before {
						t.Errorf("a second repair changed the store:\nbefore %s\nafter  %s", before, after)
					}
				})
			}
		}
	}
}

// A repaired point counts what its new trees hold, as a restore of it
// does, not what the backup saw: the files and directories it left out
// are gone from its stats. Hard links, symlinks and a FIFO are counted
// as a restore counts them; the stats of the backup's work stay.
func TestRepairPointsRecountsStats(t *testing.T) {
	old := chunkstore.PackTargetSize
	chunkstore.PackTargetSize = 1 // a pack per blob: deleting one loses one blob
	t.Cleanup(func() { chunkstore.PackTargetSize = old })
	ts, dir := openTestStore(t, false)
	src := t.TempDir()
	writeFiles(t, src, map[string][]byte{"a": randomBytes(1, 3000), "sub/c": randomBytes(3, 5000),
		"sub/d": randomBytes(4, 6000), "gone/e": randomBytes(5, 7000), "gone/deeper/f": randomBytes(6, 8000),
		"linked": randomBytes(7, 9000)})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Link(filepath.Join(src, "linked"), filepath.Join(src, "sub/link")))
	must(os.Symlink("a", filepath.Join(src, "sub/symlink")))
	must(unix.Mkfifo(filepath.Join(src, "fifo"), 0o644))
	p, err := ts.backup(BackupOptions{Path: src, Source: "s"})
	must(err)
	for _, lose := range []string{"sub/c", "gone"} {
		pack, ok := ts.st.PackOf(blobOf(t, ts, p, lose))
		if !ok {
			t.Fatalf("%s: blob not indexed", lose)
		}
		h := pack.String()
		must(os.Remove(filepath.Join(dir, "packs", h[:2], h)))
	}
	ts = reopen(t, dir)
	if _, err := repairPoints(t, ts, RepairPointsOptions{ForgetDamaged: true}); err != nil {
		t.Fatalf("RepairPoints: %v", err)
	}
	pts, err := ts.r.Points()
	must(err)
	if len(pts) != 1 || !pts[0].Time.Equal(p.Time) {
		t.Fatalf("points after the repair: %+v, want the repaired one only", pts)
	}
	np := pts[0]
	res, err := Restore(context.Background(), ts.r, np, RestoreOptions{Target: filepath.Join(t.TempDir(), "out")})
	must(err)
	got := np.Stats
	want := Stats{Files: res.Files, Dirs: res.Dirs, Others: res.Others, Bytes: res.Bytes}
	if got.Files != want.Files || got.Dirs != want.Dirs || got.Others != want.Others || got.Bytes != want.Bytes {
		t.Errorf("repaired point counts %d files, %d dirs, %d others, %d bytes; a restore of it %d, %d, %d, %d",
			got.Files, got.Dirs, got.Others, got.Bytes, want.Files, want.Dirs, want.Others, want.Bytes)
	}
	// a, sub/d, linked, sub/link; sub; sub/symlink, fifo; a linked file's bytes once.
	if want := (Stats{Files: 4, Dirs: 1, Others: 2, Bytes: 3000 + 6000 + 9000}); got.Files != want.Files ||
		got.Dirs != want.Dirs || got.Others != want.Others || got.Bytes != want.Bytes {
		t.Errorf("repaired point's stats %+v, want %+v", got, want)
	}
	if got.NewBlobs != p.Stats.NewBlobs || got.StoredBytes != p.Stats.StoredBytes || got.DurationNano != p.Stats.DurationNano {
		t.Errorf("the backup's work in the stats changed: %+v, was %+v", got, p.Stats)
	}
}
