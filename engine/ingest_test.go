package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine/wsb"
	"github.com/recall-backup/recall/internal/wsbgen"
	bolt "go.etcd.io/bbolt"
)

// smallVolumes keep the ingestion tests' images at a few MiB.
var smallVolumes = []wsbgen.VolumeSpec{
	{FS: "FAT32", Size: 8 << 20, Allocated: 1 << 20, Critical: true},
	{Letter: "C:", FS: "NTFS", Size: 64 << 20, Allocated: 12 << 20, Critical: true},
}

// ingestFixture is a home with a store and one registered bmr source.
type ingestFixture struct {
	home string
	st   *Store
	src  Source
}

func newIngestFixture(t *testing.T) *ingestFixture {
	t.Helper()
	dir := t.TempDir()
	f := &ingestFixture{home: filepath.Join(dir, "home")}
	if _, err := chunkstore.Init(StoreDir(f.home), chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := Open(StoreDir(f.home), chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.st = st
	staging := filepath.Join(dir, "staging", "srv01")
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	err = WithCatalog(f.home, time.Second, t.Logf, func(cat *Catalog) error {
		f.src, err = cat.AddSource(Source{Name: "srv01", Kind: KindBMR, Computer: "SRV01", Staging: staging}, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// generate writes generation gen of SRV01's backup into the staging
// directory.
func (f *ingestFixture) generate(t *testing.T, o wsbgen.Options) *wsbgen.Backup {
	t.Helper()
	o.Seed = 16
	if o.Volumes == nil {
		o.Volumes = smallVolumes
	}
	b, err := wsbgen.Generate(f.src.Staging, o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ingest runs Ingest as of an hour from now (so the tree is settled) with
// the source as the catalog has it.
func (f *ingestFixture) ingest(t *testing.T, settle time.Duration, at time.Time) (*Point, *wsb.Image, error) {
	t.Helper()
	src := f.source(t)
	return f.st.Ingest(context.Background(), src, IngestOptions{Home: f.home, Settle: settle, Backup: BackupOptions{Now: func() time.Time { return at }}})
}

func (f *ingestFixture) source(t *testing.T) Source {
	t.Helper()
	var src Source
	err := WithCatalog(f.home, time.Second, t.Logf, func(cat *Catalog) (err error) {
		src, err = cat.Source("srv01")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func (f *ingestFixture) points(t *testing.T) []*Point {
	t.Helper()
	pts, err := f.st.Reader().Points()
	if err != nil {
		t.Fatal(err)
	}
	return pts
}

func later() time.Time { return time.Now().Add(time.Hour) }

func TestIngestComplete(t *testing.T) {
	f := newIngestFixture(t)
	b := f.generate(t, wsbgen.Options{})
	p, im, err := f.ingest(t, 0, later())
	if err != nil {
		t.Fatal(err)
	}
	if p.Source != "srv01" || p.Path != f.src.Staging || im.Backup != filepath.Base(b.Dir) {
		t.Errorf("point %+v of image %+v", p, im)
	}
	tree, err := f.st.Reader().LoadTree(p.Tree)
	if err != nil {
		t.Fatal(err)
	}
	if tree.Find(wsb.Dir) == nil {
		t.Errorf("the point's root lacks %s", wsb.Dir)
	}
	src := f.source(t)
	if src.Ingested != filepath.Base(b.Dir) || src.ImageSize != im.Size || im.Size == 0 {
		t.Errorf("source after ingestion: %+v, image size %d", src, im.Size)
	}
	// The staging tree stays for WSB's next run.
	for _, rel := range b.Files {
		if _, err := os.Stat(filepath.Join(b.Root, rel)); err != nil {
			t.Errorf("staging tree changed: %v", err)
		}
	}
	_, _, err = f.ingest(t, 0, later())
	if !errors.Is(err, ErrNothingNew) || !strings.Contains(err.Error(), filepath.Base(b.Dir)) {
		t.Errorf("second ingestion of the same backup: %v, want ErrNothingNew naming %s", err, filepath.Base(b.Dir))
	}
	if n := len(f.points(t)); n != 1 {
		t.Errorf("%d points, want 1", n)
	}
}

// TestIngestRefused: an image cut short, another computer's folder and
// one still being written make no point and write nothing to the store;
// the previous point stays as it was.
func TestIngestRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, f *ingestFixture) []string // returns what the error names
		at     func() time.Time
		settle time.Duration
		is     error
	}{
		{"truncated", func(t *testing.T, f *ingestFixture) []string {
			b := f.generate(t, wsbgen.Options{Generation: 1, Truncate: true})
			return append([]string{"SRV01", "incomplete"}, b.Missing...)
		}, later, 0, wsb.ErrIncomplete},
		// Every file there, but the largest image cut short: a transfer
		// that broke off with the XML written, or a share that filled.
		{"image cut short, all files there", func(t *testing.T, f *ingestFixture) []string {
			b := f.generate(t, wsbgen.Options{Generation: 1})
			vhdxs, _ := filepath.Glob(filepath.Join(f.src.Staging, "WindowsImageBackup", "SRV01", filepath.Base(b.Dir), "*.vhdx"))
			if len(vhdxs) == 0 {
				t.Fatalf("no image in %s", b.Dir)
			}
			big, size := "", int64(0)
			for _, v := range vhdxs {
				if fi, err := os.Stat(v); err == nil && fi.Size() > size {
					big, size = v, fi.Size()
				}
			}
			if err := os.Truncate(big, size/2); err != nil {
				t.Fatal(err)
			}
			return []string{"cut short", filepath.Base(big), "no point is made", "SRV01"}
		}, later, 0, wsb.ErrIncomplete},
		{"another computer", func(t *testing.T, f *ingestFixture) []string {
			f.generate(t, wsbgen.Options{Generation: 1})
			if _, err := wsbgen.Generate(f.src.Staging, wsbgen.Options{Seed: 9, Computer: "WEB02", Volumes: smallVolumes}); err != nil {
				t.Fatal(err)
			}
			return []string{"WindowsImageBackup/WEB02", "source srv01 (computer SRV01)", "recall source add NAME --kind bmr --computer WEB02", "move its folder away"}
		}, later, 0, ErrOtherComputer},
		{"not settled", func(t *testing.T, f *ingestFixture) []string {
			f.generate(t, wsbgen.Options{Generation: 1})
			return []string{"last write 20s ago; WSB may still be writing; settle time 2m "}
		}, func() time.Time { return time.Now().Add(20 * time.Second) }, 0, ErrNotSettled},
		{"not settled, settle given", func(t *testing.T, f *ingestFixture) []string {
			f.generate(t, wsbgen.Options{Generation: 1})
			return []string{"settle time 2h "}
		}, later, 2 * time.Hour, ErrNotSettled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newIngestFixture(t)
			f.generate(t, wsbgen.Options{})
			first, firstImage, err := f.ingest(t, 0, later())
			if err != nil {
				t.Fatal(err)
			}
			before, err := f.st.storedBytes(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := tc.setup(t, f)
			p, _, ierr := f.ingest(t, tc.settle, tc.at())
			if p != nil || !errors.Is(ierr, tc.is) {
				t.Fatalf("ingest: point %v, %v; want no point and %v", p, ierr, tc.is)
			}
			for _, w := range want {
				if !strings.Contains(ierr.Error(), w) {
					t.Errorf("error %q does not name %q", ierr, w)
				}
			}
			after, err := f.st.storedBytes(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			pts := f.points(t)
			if after != before || len(pts) != 1 || pts[0].ID != first.ID {
				t.Errorf("store %d -> %d bytes, points %v; want it untouched with point %s", before, after, pts, first.ID)
			}
			if src := f.source(t); src.Ingested != firstImage.Backup || src.ImageSize != firstImage.Size {
				t.Errorf("source after the refusal: %+v, want it to name the first image, %s", src, firstImage.Backup)
			}
			t.Log(ierr)
		})
	}
}

// TestIngestCorruptVHDX: an image that is not a valid VHDX is ingested
// as bytes, with a warning naming it.
func TestIngestCorruptVHDX(t *testing.T) {
	f := newIngestFixture(t)
	b := f.generate(t, wsbgen.Options{CorruptVHDX: true})
	p, _, err := f.ingest(t, 0, later())
	if p == nil || !errors.Is(err, ErrWarnings) {
		t.Fatalf("ingest: point %v, %v; want a point with warnings", p, err)
	}
	big := b.Volumes[1].Path
	rel, _ := filepath.Rel(f.src.Staging, big)
	if len(p.Errors) != 1 || p.Errors[0].Path != rel || !strings.Contains(p.Errors[0].Error, "not a valid VHDX") {
		t.Errorf("point errors %+v, want one naming %s", p.Errors, rel)
	}
	got := readPointFile(t, f.st.Reader(), p, rel)
	want, _ := os.ReadFile(big)
	if string(got) != string(want) {
		t.Errorf("%s: %d bytes ingested, want the file's %d bytes", rel, len(got), len(want))
	}
	if src := f.source(t); src.Ingested != filepath.Base(b.Dir) {
		t.Errorf("source after ingestion with warnings: %+v", src)
	}
}

// readPointFile reads the file rel (a slash path) of point p.
func readPointFile(t *testing.T, r *Reader, p *Point, rel string) []byte {
	t.Helper()
	tree, err := r.LoadTree(p.Tree)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(filepath.ToSlash(rel), "/")
	for _, d := range parts[:len(parts)-1] {
		n := tree.Find(d)
		if n == nil {
			t.Fatalf("%s: no %s", rel, d)
		}
		if tree, err = r.LoadTree(n.Subtree); err != nil {
			t.Fatal(err)
		}
	}
	n := tree.Find(parts[len(parts)-1])
	if n == nil {
		t.Fatalf("no %s in the point", rel)
	}
	var out []byte
	for i, e := range n.Extents {
		if e.Hole {
			out = append(out, make([]byte, e.End-n.ExtentStart(i))...)
			continue
		}
		b, err := r.ReadChunk(e.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

// TestIngestGrowth is the issue's "the second point of a 5%-changed image
// adds at most 15% of the image's size to the store", measured on a C:
// volume of 1 GiB with 512 MiB allocated: ingested twice, the store's
// growth (packs, indexes, manifests on disk) over the sum of the second
// image's .vhdx sizes.
func TestIngestGrowth(t *testing.T) {
	f := newIngestFixture(t)
	vols := []wsbgen.VolumeSpec{{Letter: "C:", FS: "NTFS", Size: 1 << 30, Allocated: 512 << 20, Critical: true}}
	var stored []int64
	var img int64
	for gen := 0; gen < 2; gen++ {
		f.generate(t, wsbgen.Options{Generation: gen, ChangeRate: 0.05, Volumes: vols})
		p, im, err := f.ingest(t, 0, later())
		if err != nil {
			t.Fatal(err)
		}
		n, err := f.st.storedBytes(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		stored, img = append(stored, n), im.Size
		t.Logf("generation %d: images %d bytes, %d read as new, %d stored; store %d bytes", gen, im.Size, p.Stats.NewBytes, p.Stats.StoredBytes, n)
	}
	growth := float64(stored[1]-stored[0]) / float64(img)
	t.Logf("the second point added %.1f%% of the image's size", 100*growth)
	if growth > 0.15 {
		t.Errorf("the second point added %.1f%% of the image's size (%d of %d bytes), want at most 15%%", 100*growth, stored[1]-stored[0], img)
	}
}

// TestGroupIngests: a group's backup ingests its registered member
// instead of reading it as a path, leaves it alone (no job, no failure)
// when there is nothing new, and fails its job, naming what is missing,
// when the image is incomplete.
func TestGroupIngests(t *testing.T) {
	f := newIngestFixture(t)
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var g Group
	err := WithCatalog(f.home, time.Second, t.Logf, func(cat *Catalog) (err error) {
		g, err = cat.CreateGroup(Group{Name: "servers", Members: []string{f.src.Staging, other}, Policy: Policy{Exclude: []string{"*.vhdx"}}}, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f.generate(t, wsbgen.Options{})
	var skipped []error
	run := func() ([]MemberResult, error) {
		skipped = nil
		return f.st.BackupGroup(context.Background(), f.home, &g, GroupBackupOptions{Now: later,
			Skipped: func(member string, err error) { skipped = append(skipped, err) }})
	}
	res, err := run()
	if err != nil || len(res) != 2 {
		t.Fatalf("first run: %+v %v", res, err)
	}
	for _, r := range res {
		// The group's exclusions are for its paths: an image is whole.
		if r.Member == f.src.Staging && (r.Source != "srv01" || r.Point.Path != f.src.Staging || r.Point.Group != "servers" || r.Point.Stats.Bytes < 8<<20) {
			t.Errorf("registered member: %+v, point %+v", r, r.Point)
		}
	}
	// The image is the recovery point of the latest point time before it
	// (the default policy's 20:00), whenever WSB made it.
	for _, r := range res {
		if r.Member != f.src.Staging {
			continue
		}
		at := r.Point.Scheduled.Local()
		if at.IsZero() || at.Hour() != 20 || at.Minute() != 0 || at.After(r.Point.Time) || r.Point.Time.Sub(at) > 24*time.Hour {
			t.Errorf("ingested point made at %s is the recovery point of %s, want the latest 20:00 before it", r.Point.Time, r.Point.Scheduled)
		}
	}
	res, err = run()
	if err != nil || len(res) != 1 || res[0].Member != other || len(skipped) != 1 || !errors.Is(skipped[0], ErrNothingNew) {
		t.Errorf("second run: %+v %v, skipped %v; want the path member only, the source skipped as nothing new", res, err, skipped)
	}
	f.generate(t, wsbgen.Options{Generation: 1, Truncate: true})
	_, err = run()
	if !errors.Is(err, ErrMembersFailed) || !errors.Is(err, wsb.ErrIncomplete) || !strings.Contains(err.Error(), "BackupSpecs.xml") {
		t.Errorf("run on an incomplete image: %v", err)
	}
	var jobs []Job
	WithCatalog(f.home, time.Second, t.Logf, func(cat *Catalog) (err error) { jobs, err = cat.Jobs(0); return err })
	last := jobs[len(jobs)-2]
	if len(jobs) != 5 || last.Source != "srv01" || last.Status != "failed" || !strings.Contains(last.Error, "BackupSpecs.xml") {
		t.Errorf("jobs %+v; want 5, the fourth srv01's, failed naming BackupSpecs.xml", jobs)
	}
}

// TestIngestRace: WSB's next run may write while an ingestion waits for
// the store lock or reads the tree. The image ingested is the one looked
// at: a tree that changed in between makes no point, records nothing as
// ingested, and says to try again; the next ingestion takes the new image
// once it is complete.
func TestIngestRace(t *testing.T) {
	for _, tc := range []struct {
		name string
		// during changes the tree: while the ingestion waits for the
		// lock (wait), or after it read the first directory.
		wait bool
		do   func(t *testing.T, f *ingestFixture)
		is   error
	}{
		{"cut-short backup written while waiting", true, func(t *testing.T, f *ingestFixture) {
			f.generate(t, wsbgen.Options{Generation: 1, Truncate: true})
		}, wsb.ErrIncomplete},
		{"complete backup written while waiting", true, func(t *testing.T, f *ingestFixture) {
			f.generate(t, wsbgen.Options{Generation: 1})
		}, ErrNotSettled},
		{"image rewritten during the backup", false, func(t *testing.T, f *ingestFixture) {
			f.generate(t, wsbgen.Options{Generation: 1})
		}, ErrNotSettled},
		{"catalog written during the backup", false, func(t *testing.T, f *ingestFixture) {
			cat := filepath.Join(f.src.Staging, wsb.Dir, "SRV01", "Catalog", "GlobalCatalog")
			if err := os.WriteFile(cat, []byte("the next run's catalog"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, ErrNotSettled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newIngestFixture(t)
			f.generate(t, wsbgen.Options{})
			o := IngestOptions{Home: f.home, Backup: BackupOptions{Now: later}}
			if tc.wait {
				holder, err := f.st.Session(context.Background(), SessionOptions{Purpose: "test", Exclusive: true})
				if err != nil {
					t.Fatal(err)
				}
				o.Lock = LockOptions{Wait: time.Minute, OnWait: func(chunkstore.LockInfo) {
					tc.do(t, f)
					go holder.Close()
				}}
			} else {
				done := false
				o.Backup.hooks = &backupHooks{afterReadDir: func(string) {
					if !done {
						done = true
						tc.do(t, f)
					}
				}}
			}
			p, _, err := f.st.Ingest(context.Background(), f.source(t), o)
			if p != nil || !errors.Is(err, tc.is) {
				t.Fatalf("ingest: point %v, %v; want no point and %v", p, err, tc.is)
			}
			if tc.is == ErrNotSettled && !strings.Contains(err.Error(), "wrote into the share during the ingestion") {
				t.Errorf("error %q does not say the tree was written during the ingestion", err)
			}
			if pts := f.points(t); len(pts) != 0 {
				t.Errorf("points %v, want none", pts)
			}
			if src := f.source(t); src.Ingested != "" || src.IngestedPrint != "" {
				t.Errorf("source after the ingestion: %+v, want nothing recorded as ingested", src)
			}
			if tc.is == wsb.ErrIncomplete {
				return
			}
			p, im, err := f.ingest(t, 0, later())
			if src := f.source(t); err != nil || src.Ingested != im.Backup || src.IngestedPrint != im.Print {
				t.Fatalf("next ingestion: point %v of %+v, %v; source %+v", p, im, err, src)
			}
		})
	}
}

// TestIngestAgain: an image taken while a volume's file was missing is
// refused, naming the file; the same Backup folder, once whole, is taken;
// and a file of it written again later is a new image, not "nothing new".
func TestIngestAgain(t *testing.T) {
	f := newIngestFixture(t)
	b := f.generate(t, wsbgen.Options{})
	big := b.Volumes[1].Path
	hidden := filepath.Join(t.TempDir(), "hidden")
	if err := os.Rename(big, hidden); err != nil {
		t.Fatal(err)
	}
	p, _, err := f.ingest(t, 0, later())
	if p != nil || !errors.Is(err, wsb.ErrIncomplete) || !strings.Contains(err.Error(), filepath.Base(big)) {
		t.Fatalf("ingest with %s missing: point %v, %v; want no point and ErrIncomplete naming it", filepath.Base(big), p, err)
	}
	if err := os.Rename(hidden, big); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := os.Chtimes(big, now, now); err != nil {
		t.Fatal(err)
	}
	first, im, err := f.ingest(t, 0, later())
	if err != nil || len(im.Images) != 2 {
		t.Fatalf("ingest once whole: point %v of %+v, %v", first, im, err)
	}
	src := f.source(t)
	if src.Ingested != filepath.Base(b.Dir) || src.IngestedPrint != im.Print || im.Print == "" {
		t.Errorf("source %+v, want %s and print %s recorded", src, filepath.Base(b.Dir), im.Print)
	}
	if _, _, err := f.ingest(t, 0, later()); !errors.Is(err, ErrNothingNew) {
		t.Errorf("ingest of the same tree: %v, want ErrNothingNew", err)
	}
	// The same folder written again (WSB's folder name is to the second;
	// someone's copy) is another image.
	again := now.Add(-time.Minute)
	if err := os.Chtimes(big, again, again); err != nil {
		t.Fatal(err)
	}
	second, _, err := f.ingest(t, 0, later())
	if err != nil || second.ID == first.ID {
		t.Fatalf("ingest of the folder written again: point %v, %v; want a new point", second, err)
	}
}

// TestIngestFutureWrite: a write time after now (the writer's clock
// ahead) counts as now, by the server's clock, from the first look that
// saw it: the image settles one settle time after that look, and no age
// is negative.
func TestIngestFutureWrite(t *testing.T) {
	f := newIngestFixture(t)
	b := f.generate(t, wsbgen.Options{})
	t0 := time.Now()
	ahead := t0.Add(5 * time.Hour)
	if err := os.Chtimes(b.Volumes[0].Path, ahead, ahead); err != nil {
		t.Fatal(err)
	}
	src := f.source(t)
	for _, step := range []struct {
		at     time.Duration // after t0
		settle bool
	}{{0, false}, {time.Minute, false}, {DefaultSettle - time.Second, false}, {DefaultSettle, true}} {
		_, err := InspectSource(src, 0, t0.Add(step.at))
		if step.settle {
			if err != nil {
				t.Errorf("look at +%s: %v, want the image settled", step.at, err)
			}
			continue
		}
		if !errors.Is(err, ErrNotSettled) || strings.Contains(err.Error(), "write -") ||
			!strings.Contains(err.Error(), "ahead of this server's clock") {
			t.Errorf("look at +%s: %v; want not settled, no negative age, the clock named", step.at, err)
		}
		if want := "last write " + shortSpan(step.at.Round(time.Second)) + " ago"; err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("look at +%s: %v; want %q", step.at, err, want)
		}
	}
	// Another write (the print changes) starts the count again.
	if err := os.Chtimes(b.Volumes[0].Path, ahead.Add(time.Second), ahead.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := InspectSource(src, 0, t0.Add(3*time.Minute)); !errors.Is(err, ErrNotSettled) {
		t.Errorf("look after another write: %v, want not settled", err)
	}
	if _, err := InspectSource(src, 0, t0.Add(5*time.Minute+time.Second)); err != nil {
		t.Errorf("look a settle time after it: %v", err)
	}
}

// TestInspectSettleFirst: a foreign folder next to an image still being
// written says "not settled", not "another computer", so the server does
// not fail a job at each look while WSB writes; once settled, the foreign
// folder is refused.
func TestInspectSettleFirst(t *testing.T) {
	f := newIngestFixture(t)
	f.generate(t, wsbgen.Options{})
	if err := os.MkdirAll(filepath.Join(f.src.Staging, wsb.Dir, "OLDNAME"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := f.source(t)
	if _, err := InspectSource(src, 0, time.Now()); !errors.Is(err, ErrNotSettled) || errors.Is(err, ErrOtherComputer) {
		t.Errorf("while written: %v, want not settled only", err)
	}
	if _, err := InspectSource(src, 0, later()); !errors.Is(err, ErrOtherComputer) {
		t.Errorf("settled: %v, want ErrOtherComputer", err)
	}
}

// TestGroupIngestChanged: a group's member whose tree WSB wrote into
// during its ingestion made no point, and that is no failure of the
// group: the job says so, and the next run ingests.
func TestGroupIngestChanged(t *testing.T) {
	f := newIngestFixture(t)
	var g Group
	err := WithCatalog(f.home, time.Second, t.Logf, func(cat *Catalog) (err error) {
		g, err = cat.CreateGroup(Group{Name: "servers", Members: []string{f.src.Staging}}, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f.generate(t, wsbgen.Options{})
	holder, err := f.st.Session(context.Background(), SessionOptions{Purpose: "test", Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	var skipped []error
	res, err := f.st.BackupGroup(context.Background(), f.home, &g, GroupBackupOptions{Now: later,
		Lock: LockOptions{Wait: time.Minute, OnWait: func(chunkstore.LockInfo) {
			f.generate(t, wsbgen.Options{Generation: 1})
			go holder.Close()
		}},
		Skipped: func(member string, err error) { skipped = append(skipped, err) }})
	if err != nil || len(res) != 0 || len(skipped) != 1 || !errors.Is(skipped[0], ErrChanged) {
		t.Fatalf("run while WSB writes: %+v, %v, skipped %v; want no result and no failure, the member's change told", res, err, skipped)
	}
	var jobs []Job
	if err := WithCatalog(f.home, time.Second, t.Logf, func(cat *Catalog) (err error) { jobs, err = cat.Jobs(0); return err }); err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].Status != "skipped" || !strings.Contains(jobs[0].Error, ErrChanged.Error()) {
		t.Fatalf("jobs recorded: %+v; want one, skipped, saying WSB wrote", jobs)
	}
	res, err = f.st.BackupGroup(context.Background(), f.home, &g, GroupBackupOptions{Now: later})
	if err != nil || len(res) != 1 || res[0].Point == nil {
		t.Fatalf("next run: %+v, %v; want the new image ingested", res, err)
	}
}

// TestIngestStrayBackup: a Backup folder left beside the newest (a run
// that broke off while replacing it) is not ingested: the point holds the
// newest backup and the computer folder's other files, as a recovery
// share must show them.
func TestIngestStrayBackup(t *testing.T) {
	f := newIngestFixture(t)
	old, err := wsbgen.Generate(t.TempDir(), wsbgen.Options{Seed: 16, Volumes: smallVolumes[:1]})
	if err != nil {
		t.Fatal(err)
	}
	b := f.generate(t, wsbgen.Options{Generation: 1})
	stray := filepath.Join(b.Root, filepath.Base(old.Dir))
	if err := os.Rename(old.Dir, stray); err != nil {
		t.Fatal(err)
	}
	p, im, err := f.ingest(t, 0, later())
	if err != nil || im.Backup != filepath.Base(b.Dir) {
		t.Fatalf("ingest: %v of %+v, %v", p, im, err)
	}
	tree, err := f.st.Reader().LoadTree(p.Tree)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{wsb.Dir, "SRV01"} {
		n := tree.Find(d)
		if n == nil {
			t.Fatalf("no %s in the point", d)
		}
		if tree, err = f.st.Reader().LoadTree(n.Subtree); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for _, n := range tree.Nodes {
		names = append(names, n.Name)
	}
	want := []string{filepath.Base(b.Dir), "Catalog", "MediaId", "SPPMetadataCache"}
	if !slices.Equal(names, want) {
		t.Errorf("the point's computer folder holds %q, want %q", names, want)
	}
	if err := os.RemoveAll(stray); err != nil {
		t.Fatal(err)
	}
	if p, _, err := f.ingest(t, 0, later()); !errors.Is(err, ErrNothingNew) {
		t.Errorf("after the stray folder was removed: %v, %v; want nothing new (the point never held it)", p, err)
	}
}

// TestGlobQuote: a stray backup's pattern matches that folder only,
// whatever the computer's name holds.
func TestGlobQuote(t *testing.T) {
	for _, computer := range []string{"SRV01", "SRV Ü{01}", "a*b?[c]\\d!"} {
		rel := wsb.Dir + "/" + computer + "/Backup 2026-11-02 210312"
		p, err := compilePattern("/" + globQuote(wsb.Dir) + "/" + globQuote(computer) + "/" + globQuote("Backup 2026-11-02 210312") + "/")
		if err != nil {
			t.Fatalf("%s: %v", computer, err)
		}
		if !p.match(rel, "Backup 2026-11-02 210312", true) {
			t.Errorf("%s: the pattern %q does not match %s", computer, p.glob, rel)
		}
		if p.match(wsb.Dir+"/"+computer+"X/Backup 2026-11-02 210312", "Backup 2026-11-02 210312", true) ||
			p.match(wsb.Dir+"/"+computer+"/Backup 2026-11-03 210312", "Backup 2026-11-03 210312", true) {
			t.Errorf("%s: the pattern %q matches another folder", computer, p.glob)
		}
	}
}

// TestIngestCaseOnlyPair: a catalog that already holds two registered
// sources whose names differ only in case, each in a group (allowed
// before such names were refused), ingests each image once, records it,
// lets either source be edited, and status warns about the pair.
func TestIngestCaseOnlyPair(t *testing.T) {
	f := newIngestFixture(t)
	other := Source{Name: "SRV01", Kind: KindBMR, Computer: "SRV02", Staging: filepath.Join(filepath.Dir(f.src.Staging), "SRV01"),
		Reservation: DefaultReservation, Settle: DefaultSettle, Created: time.Now().UTC()}
	var groups []Group
	err := WithCatalog(f.home, time.Second, t.Logf, func(cat *Catalog) error {
		if err := cat.db.Update(func(tx *bolt.Tx) error { return putSource(tx, &other) }); err != nil {
			return err
		}
		for _, g := range []Group{{Name: "a", Members: []string{f.src.Staging}}, {Name: "b", Members: []string{other.Staging}}} {
			g, err := cat.CreateGroup(g, time.Now())
			if err != nil {
				return err
			}
			groups = append(groups, g)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.generate(t, wsbgen.Options{})
	var warned []string
	for i := range 3 {
		p, _, err := f.st.Ingest(context.Background(), f.source(t), IngestOptions{Home: f.home, Backup: BackupOptions{Now: later},
			Warn: func(format string, args ...any) { warned = append(warned, fmt.Sprintf(format, args...)) }})
		switch {
		case i == 0 && (err != nil || p == nil):
			t.Fatalf("first ingestion: %v, %v", p, err)
		case i > 0 && !errors.Is(err, ErrNothingNew):
			t.Errorf("ingestion %d of the same image: %v, %v; want nothing new", i+1, p, err)
		}
	}
	if len(warned) > 0 {
		t.Errorf("warnings: %q", warned)
	}
	if n := len(f.points(t)); n != 1 {
		t.Errorf("%d points of one image, want 1", n)
	}
	var srcs []Source
	err = WithCatalog(f.home, time.Second, t.Logf, func(cat *Catalog) error {
		for _, name := range []string{"srv01", "SRV01"} {
			if _, err := cat.EditSource(name, func(s *Source) error { s.Reservation = 40 << 30; return nil }); err != nil {
				return err
			}
		}
		srcs, err = cat.Sources()
		return err
	})
	if err != nil {
		t.Errorf("edit of a source of the pair: %v", err)
	}
	st := &StoreStatus{Time: time.Now()}
	st.AddImageWarnings(srcs, groups)
	pairs := slices.DeleteFunc(slices.Clone(st.Warnings), func(w string) bool { return !strings.Contains(w, "differ only in case") })
	if len(pairs) != 1 || !strings.Contains(pairs[0], "sources SRV01 and srv01 differ only in case") {
		t.Errorf("status warnings %q, want one about the pair", st.Warnings)
	}
}
