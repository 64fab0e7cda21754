package engine

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
)

// simState writes the data state of day d into dir: a file that never
// changes, one rewritten each day, and a log that grows by a little each
// day. Its files get the day's midnight as mtime, so two backups of one
// state read the same metadata.
func simState(t testing.TB, dir string, d int, midnight time.Time) {
	t.Helper()
	rnd := func(seed int64, n int) []byte {
		b := make([]byte, n)
		rand.New(rand.NewSource(seed)).Read(b)
		return b
	}
	files := map[string][]byte{
		"static.bin": rnd(1, 48<<10),
		"daily.bin":  rnd(1000+int64(d), 12<<10),
	}
	var log []byte
	for i := 0; i <= d; i++ {
		log = append(log, fmt.Sprintf("day %d: %x\n", i, rnd(int64(i), 512))...)
	}
	files["sub/app.log"] = log
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, midnight, midnight); err != nil {
			t.Fatal(err)
		}
	}
}

// newHome makes a home with an initialized store and opens the store.
func newHome(t testing.TB) (string, *Store) {
	t.Helper()
	home := t.TempDir()
	if _, err := chunkstore.Init(StoreDir(home), chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := Open(StoreDir(home), chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return home, st
}

// freshStoreSize builds a fresh store holding one point for each of times,
// in order: a backup, made at that time, of the data state of its day
// (simState), as the points a retention kept were. It returns the store's size (packs,
// index files, manifests), the size a store that held only those points
// from the start would have; garbage collection is to bring a pruned store
// within 10% of it.
func freshStoreSize(t testing.TB, times []time.Time, start time.Time) int64 {
	t.Helper()
	_, st := newHome(t)
	src := filepath.Join(t.TempDir(), "data")
	last := -1
	for _, tm := range times {
		d := int(tm.Sub(start) / (24 * time.Hour))
		if d != last {
			simState(t, src, d, start.AddDate(0, 0, d))
			last = d
		}
		s, err := st.Session(context.Background(), SessionOptions{Purpose: "fresh", Source: "data", Blobs: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Backup(context.Background(), s, BackupOptions{Path: src, Source: "data", Now: func() time.Time { return tm }}); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	n, err := st.storedBytes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRetentionThirtyDays is the protection group of the issue run for 30
// days on an injected clock: a sync every 15 minutes, recovery points at
// 09:00, 12:00, 15:00, 18:00 and 21:00, 14 days of retention and a 48 h
// sync window, with real backups of a small tree that changes once a day
// into a real store, pruned after every scheduled point as a server would.
// At the end exactly the points the schedule implies are left: computed
// here from the schedule alone, not by Retention.
func TestRetentionThirtyDays(t *testing.T) {
	_, st := newHome(t)
	src := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	g := &Group{Name: "web", Members: []string{src}, PolicyVersion: 3, Policy: Policy{
		Retention: "14d", Sync: "15m", At: []string{"09:00", "12:00", "15:00", "18:00", "21:00"}, SyncWindow: "48h"}}
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	const days, perDay = 30, 24 * 4
	var now time.Time
	clock := func() time.Time { return now }
	ctx := context.Background()
	quiet := GroupBackupOptions{Now: clock, Warn: t.Logf}
	for k := 0; k < days*perDay; k++ {
		now = start.Add(time.Duration(k) * 15 * time.Minute)
		if k%perDay == 0 {
			simState(t, src, k/perDay, now)
		}
		res, err := st.BackupGroup(ctx, "", g, quiet)
		if err != nil {
			t.Fatalf("%s: backup: %v", now, err)
		}
		p := res[0].Point
		if p.Group != "web" || p.PolicyVersion != 3 {
			t.Fatalf("%s: point records group %q version %d", now, p.Group, p.PolicyVersion)
		}
		if !p.Scheduled.IsZero() {
			if _, err := st.Prune(ctx, []Group{*g}, PruneOptions{AsOf: now}); err != nil {
				t.Fatalf("%s: prune: %v", now, err)
			}
		}
	}
	end := now
	if _, err := st.Prune(ctx, []Group{*g}, PruneOptions{AsOf: end}); err != nil {
		t.Fatal(err)
	}

	// The expected set, from the schedule: the points at the five times
	// of each day no older than 14 days, every sync of the last 48 hours.
	type want struct {
		time      time.Time
		scheduled bool
	}
	var expect []want
	var keptTimes []time.Time
	for k := 0; k < days*perDay; k++ {
		tm := start.Add(time.Duration(k) * 15 * time.Minute)
		sched := tm.Minute() == 0 && slices.Contains([]int{9, 12, 15, 18, 21}, tm.Hour())
		age := end.Sub(tm)
		if (sched && age <= 14*24*time.Hour) || age <= 48*time.Hour {
			expect = append(expect, want{tm, sched})
			keptTimes = append(keptTimes, tm)
		}
	}
	pts, err := st.Reader().Points()
	if err != nil {
		t.Fatal(err)
	}
	var got []want
	for _, p := range pts {
		got = append(got, want{p.Time, !p.Scheduled.IsZero()})
		if !p.Scheduled.IsZero() && !p.Scheduled.Equal(p.Time) {
			t.Errorf("point of %s made for %s", p.Time, p.Scheduled)
		}
	}
	if !slices.Equal(got, expect) {
		t.Errorf("%d points left, want %d", len(got), len(expect))
		gs, ws := map[time.Time]bool{}, map[time.Time]bool{}
		for _, g := range got {
			gs[g.time] = g.scheduled
		}
		for _, w := range expect {
			ws[w.time] = w.scheduled
			if s, ok := gs[w.time]; !ok || s != w.scheduled {
				t.Errorf("missing or misclassified: %s scheduled=%v", w.time, w.scheduled)
			}
		}
		for _, g := range got {
			if _, ok := ws[g.time]; !ok {
				t.Errorf("unexpected: %s scheduled=%v", g.time, g.scheduled)
			}
		}
	}
	t.Logf("%d points kept of %d made", len(got), days*perDay)

	size, err := st.storedBytes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fresh := freshStoreSize(t, keptTimes, start)
	// Prune frees nothing by itself: garbage collection, with its
	// defaults, is what brings the size within 10% of fresh.
	rep, err := GC(ctx, st, GCOptions{IndexGrace: -1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pending {
		t.Fatalf("gc left its plan pending with no backup running: %+v", rep)
	}
	after, err := st.storedBytes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("store %d bytes after prune, %d after gc; a fresh store of the kept points %d bytes", size, after, fresh)
	if d := float64(after-fresh) / float64(fresh); d > 0.10 || d < -0.10 {
		t.Errorf("after gc the store holds %d bytes, %+.1f%% from the %d bytes of a fresh store of the kept points (at most 10%%)", after, 100*d, fresh)
	}
	if _, err := Verify(ctx, st.Reader(), VerifyOptions{ReadData: true}); err != nil {
		t.Errorf("verify after gc: %v", err)
	}
}

// groupPoints makes n points of the one member of a new group g (a
// retention of 2 days, a sync window of an hour), a directory named name
// whose file f changes each time.
func groupPoints(t *testing.T, st *Store, name string, n int) *Group {
	t.Helper()
	src := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	g := &Group{Name: "g", Members: []string{src}, Policy: Policy{Retention: "2d", SyncWindow: "1h"}}
	for i := range n {
		if err := os.WriteFile(filepath.Join(src, "f"), []byte(strings.Repeat("x", i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := st.BackupGroup(context.Background(), "", g, GroupBackupOptions{Warn: t.Logf}); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// A dry run decides exactly what the real run with the same as-of time
// removes, 72 hours after the points were made (the engine takes the
// caller's clock, as the server's; the command refuses a real prune as
// of a time to come: TestPruneAheadOnlyDry in ./integration).
func TestPruneDryRunIsReal(t *testing.T) {
	_, st := newHome(t)
	g := groupPoints(t, st, "data", 4)
	ctx := context.Background()
	asOf := time.Now().Add(72 * time.Hour)
	dry, err := st.Prune(ctx, []Group{*g}, PruneOptions{AsOf: asOf, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	real, err := st.Prune(ctx, []Group{*g}, PruneOptions{AsOf: asOf})
	if err != nil {
		t.Fatal(err)
	}
	var wouldDrop, removed []string
	for _, e := range dry {
		if e.Removed {
			t.Errorf("dry run removed %s", e.Point.ID.Short())
		}
		if !e.Keep {
			wouldDrop = append(wouldDrop, e.Point.ID.String())
		}
	}
	for _, e := range real {
		if e.Removed {
			removed = append(removed, e.Point.ID.String())
		}
	}
	if len(dry) != 4 || len(wouldDrop) != 3 || !slices.Equal(wouldDrop, removed) {
		t.Errorf("dry run (%d points) would drop %v; the real run removed %v", len(dry), wouldDrop, removed)
	}
	pts, err := st.Reader().Points()
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 1 {
		t.Errorf("%d points left, want the one kept", len(pts))
	}
}

// brokenNewest makes n points of one group member, oldest first, and
// removes the pack of the newest one's root tree: that point cannot be
// restored whole, the one before it can.
func brokenNewest(t *testing.T, n int) (st *Store, g *Group, newest, good *Point) {
	t.Helper()
	home, st := newHome(t)
	g = groupPoints(t, st, "data", n)
	pts, err := st.Reader().Points()
	if err != nil || len(pts) != n {
		t.Fatalf("%d points (%v)", len(pts), err)
	}
	slices.SortFunc(pts, func(a, b *Point) int { return a.Time.Compare(b.Time) })
	newest, good = pts[n-1], pts[n-2]
	pack, ok := st.Reader().st.PackOf(newest.Tree)
	if !ok {
		t.Fatal("the newest point's root tree is in no pack")
	}
	if other, _ := st.Reader().st.PackOf(good.Tree); other == pack {
		t.Fatal("test set-up: two points' root trees share a pack")
	}
	if err := os.Remove(filepath.Join(StoreDir(home), "packs", pack.String()[:2], pack.String())); err != nil {
		t.Fatal(err)
	}
	return st, g, newest, good
}

// A source whose newest point cannot be restored whole (its root tree's
// pack is gone) keeps, besides it, its newest point that can: prune must
// not forget the last good copy and keep only a broken one.
func TestPruneKeepsNewestWholePoint(t *testing.T) {
	st, g, newest, good := brokenNewest(t, 4)
	asOf := time.Now().Add(72 * time.Hour) // every point beyond the window: only "newest" keeps
	es, err := st.Prune(context.Background(), []Group{*g}, PruneOptions{AsOf: asOf})
	if err != nil {
		t.Fatal(err)
	}
	kept := map[chunkstore.ID]string{}
	for _, e := range es {
		if e.Keep {
			kept[e.Point.ID] = e.Rule + ": " + e.Why
		}
	}
	if _, ok := kept[good.ID]; !ok || len(kept) != 2 {
		t.Errorf("kept %v; want the newest point and %s, the newest that can be restored whole", kept, good.ID.Short())
	}
	if why := kept[good.ID]; !strings.Contains(why, newest.ID.Short()) {
		t.Errorf("the whole point is kept for %q, which does not name the broken newer one", why)
	}
	if _, ok := kept[newest.ID]; !ok {
		t.Error("the newest point was forgotten: its other files may still be read")
	}
}

// status's last good point of a source is the newest whose root directory
// can be read; a newer one that cannot is a warning naming it.
func TestStatusLastGoodSkipsUnreadablePoint(t *testing.T) {
	st, g, newest, good := brokenNewest(t, 2)
	ss, err := st.Status(context.Background(), []Group{*g}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(ss.Sources) != 1 || ss.Sources[0].LastGood != good.ID.String() || ss.Sources[0].Points != 2 {
		t.Fatalf("sources %+v; want the older point %s as the last good one, of 2", ss.Sources, good.ID.Short())
	}
	if w := strings.Join(ss.Warnings, "\n"); !strings.Contains(w, newest.ID.Short()) || !strings.Contains(w, "root directory cannot be read") {
		t.Errorf("warnings %q do not name the unreadable newest point", w)
	}
}

// A point a bare-metal recovery share serves is held by prune (rule
// recovery-share, naming the share and what the policy alone decided)
// while its neighbours go; once the share's block is gone, the next
// prune drops it by the policy. A staging share, or a recovery share of
// another source, holds nothing; an include file prune cannot read stops
// it before anything is forgotten.
func TestPruneHoldsSharedPoint(t *testing.T) {
	_, st := newHome(t)
	g := groupPoints(t, st, "srv01", 4)
	ctx := context.Background()
	pts, err := st.Reader().Points()
	if err != nil || len(pts) != 4 {
		t.Fatalf("%d points (%v)", len(pts), err)
	}
	slices.SortFunc(pts, func(a, b *Point) int { return a.Time.Compare(b.Time) })
	shared, other := pts[1], pts[2]

	dir := t.TempDir()
	conf := filepath.Join(dir, "smb.conf")
	inc := filepath.Join(dir, SambaIncludeName)
	name := shared.Source
	b := mustPut(t, nil, owned(testShare("srv01", "/srv/recall-bmr/srv01"), name, ShareKindTarget))
	b = mustPut(t, b, owned(testShare("srv01-old", "/srv/recall/"+name+"/"+shared.ID.String()), name, ShareKindRecovery))
	b = mustPut(t, b, owned(testShare("web-old", "/srv/recall/web/"+other.ID.String()), "web", ShareKindRecovery))
	if err := os.WriteFile(inc, b, 0o644); err != nil {
		t.Fatal(err)
	}
	held, err := ShareHolds(conf)
	if err != nil {
		t.Fatal(err)
	}
	asOf := time.Now().Add(72 * time.Hour) // all but the newest beyond range and window
	es, err := st.Prune(ctx, []Group{*g}, PruneOptions{AsOf: asOf, Held: held})
	if err != nil {
		t.Fatal(err)
	}
	kept := map[chunkstore.ID]PruneEntry{}
	for _, e := range es {
		if e.Keep {
			kept[e.Point.ID] = e
		}
	}
	e, ok := kept[shared.ID]
	if !ok || len(kept) != 2 || e.Rule != RuleHeld || e.Removed {
		t.Fatalf("kept %d points; the shared one: %+v", len(kept), e)
	}
	if !strings.Contains(e.Why, "[srv01-old]") || !strings.Contains(e.Why, inc) || !strings.Contains(e.Why, RuleSyncAged) {
		t.Errorf("held for %q: want the share, its file and the policy's own rule", e.Why)
	}
	left, err := st.Reader().Points()
	if err != nil || len(left) != 2 {
		t.Fatalf("%d points left (%v), want the newest and the shared one", len(left), err)
	}

	// The share's block removed: nothing holds it any more.
	if err := os.WriteFile(inc, mustPut(t, nil, owned(testShare("srv01", "/srv/recall-bmr/srv01"), name, ShareKindTarget)), 0o644); err != nil {
		t.Fatal(err)
	}
	if held, err = ShareHolds(conf); err != nil {
		t.Fatal(err)
	}
	if es, err = st.Prune(ctx, []Group{*g}, PruneOptions{AsOf: asOf, Held: held}); err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Point.ID == shared.ID && (e.Keep || !e.Removed || e.Rule != RuleSyncAged) {
			t.Errorf("the point, no longer shared: %+v", e)
		}
	}

	// An include file that cannot be read (a directory there) holds
	// everything back: prune is not run at all.
	if err := os.Remove(inc); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(inc, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ShareHolds(conf); err == nil || !strings.Contains(err.Error(), inc) || !strings.Contains(err.Error(), "--smb-conf") {
		t.Errorf("unreadable include file: %v", err)
	}
}

// Fix (the newest point's data pack gone): its trees load, and nothing
// had told the store the data pack was gone, so the newest point passed
// as whole and prune would keep it alone, forgetting the last point that
// restores whole. Prune walks the packs first: a pack gone is known.
func TestPruneKeepsNewestWholePointDataPackGone(t *testing.T) {
	home, st := newHome(t)
	g := groupPoints(t, st, "data", 3)
	pts, err := st.Reader().Points()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(pts, func(a, b *Point) int { return a.Time.Compare(b.Time) })
	newest, good := pts[2], pts[1]
	tree, err := st.Reader().LoadTree(newest.Tree)
	if err != nil {
		t.Fatal(err)
	}
	r := st.Reader()
	data, ok := r.st.PackOf(tree.Find("f").Extents[0].ID)
	treePack, _ := r.st.PackOf(newest.Tree)
	if !ok || data == treePack {
		t.Fatalf("test set-up: the newest point's data is not in a pack of its own (%v)", ok)
	}
	if err := os.Remove(filepath.Join(StoreDir(home), "packs", data.String()[:2], data.String())); err != nil {
		t.Fatal(err)
	}
	es, err := st.Prune(context.Background(), []Group{*g}, PruneOptions{AsOf: time.Now().Add(72 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	kept := map[chunkstore.ID]bool{}
	for _, e := range es {
		if e.Keep {
			kept[e.Point.ID] = true
		}
	}
	if !kept[good.ID] || !kept[newest.ID] {
		t.Errorf("kept %v; want the newest point and %s, the newest that restores whole", kept, good.ID.Short())
	}
}

// Fix (status over a damaged manifest): such a point was counted under
// no source and status said nothing of it (one point fewer, exit 0).
// Its warnings now name it and what to do.
func TestStatusNamesDamagedManifest(t *testing.T) {
	home, st := newHome(t)
	g := groupPoints(t, st, "data", 2)
	ids, err := st.Reader().ListPoints()
	if err != nil || len(ids) != 2 {
		t.Fatalf("%d points, %v", len(ids), err)
	}
	m := filepath.Join(StoreDir(home), "points", ids[0].String())
	b, err := os.ReadFile(m)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(m, b, 0o600); err != nil {
		t.Fatal(err)
	}
	st2, err := Open(StoreDir(home), chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	ss, err := st2.Status(context.Background(), []Group{*g}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(ss.Warnings, "\n"); !strings.Contains(w, ids[0].String()[:12]) || !strings.Contains(w, "manifest is damaged") || !strings.Contains(w, "recall forget") {
		t.Errorf("warnings %q do not name the point whose manifest is damaged", w)
	}
}
