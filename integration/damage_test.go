package integration

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
)

// The damage matrix: for a plaintext and an encrypted store, each kind of
// damage a disk or a careless hand can do. For each it checks that
//   - no command panics;
//   - the files verify --read-data --json reports damaged are exactly the
//     files restore then fails on, point by point (no false alarm, nothing
//     lost silently), and every file it does not report comes back exact;
//   - after the repair commands and one new backup of the intact sources,
//     verify --read-data is clean and the latest points restore exactly.
//
// The store is built once per kind and copied for each case.

// damageCase damages a copy of the store; it gets the targets the
// fixture chose.
type damageCase struct {
	name   string
	damage func(t *testing.T, home string, tg *damageTargets)
}

// damageTargets locates what the cases damage: chosen through the
// store's own reader, so a case hits a known file's chunk or directory.
type damageTargets struct {
	dataPack, treePack string // pack file paths
	dataOff            int64  // offset of a data blob of big/a (a hard-linked file) in dataPack
	dataLen            int64
	treeOff, treeLen   int64 // the tree blob of directory "sub" (not a root) in treePack
	manifest           string
	config             string
	index              string // one index file
}

var damageCases = []damageCase{
	{"data-blob-flip", func(t *testing.T, home string, tg *damageTargets) {
		flipByte(t, tg.dataPack, tg.dataOff+tg.dataLen/2)
	}},
	{"tree-blob-flip", func(t *testing.T, home string, tg *damageTargets) {
		flipByte(t, tg.treePack, tg.treeOff+tg.treeLen/2)
	}},
	{"pack-header-flip", func(t *testing.T, home string, tg *damageTargets) {
		hl := packHeaderLen(t, tg.dataPack)
		st, _ := os.Stat(tg.dataPack)
		flipByte(t, tg.dataPack, st.Size()-12-int64(hl)/2)
	}},
	{"data-pack-truncated", func(t *testing.T, home string, tg *damageTargets) {
		st, _ := os.Stat(tg.dataPack)
		must(t, os.Truncate(tg.dataPack, st.Size()/2))
	}},
	{"tree-pack-truncated", func(t *testing.T, home string, tg *damageTargets) {
		st, _ := os.Stat(tg.treePack)
		must(t, os.Truncate(tg.treePack, st.Size()/2))
	}},
	{"pack-deleted", func(t *testing.T, home string, tg *damageTargets) {
		must(t, os.Remove(tg.dataPack))
	}},
	{"index-corrupt", func(t *testing.T, home string, tg *damageTargets) {
		st, _ := os.Stat(tg.index)
		flipByte(t, tg.index, st.Size()/2)
	}},
	{"manifest-corrupt", func(t *testing.T, home string, tg *damageTargets) {
		st, _ := os.Stat(tg.manifest)
		flipByte(t, tg.manifest, st.Size()/2)
	}},
	{"config-corrupt", func(t *testing.T, home string, tg *damageTargets) {
		st, _ := os.Stat(tg.config)
		flipByte(t, tg.config, st.Size()/2)
	}},
	{"catalog-corrupt", func(t *testing.T, home string, tg *damageTargets) {
		p := filepath.Join(home, "catalog.db")
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		must(t, err)
		junk := make([]byte, 24<<10)
		rand.Read(junk)
		_, err = f.WriteAt(junk, 8192)
		must(t, err)
		must(t, f.Close())
	}},
}

func TestDamageMatrix(t *testing.T) {
	for _, encrypted := range []bool{false, true} {
		kind := "plain"
		if encrypted {
			kind = "encrypted"
		}
		t.Run(kind, func(t *testing.T) {
			fx := newDamageFixture(t, encrypted)
			for _, c := range damageCases {
				t.Run(c.name, func(t *testing.T) { fx.runCase(t, c) })
			}
		})
	}
}

// damageFixture is a store with three points of two sources, their
// reference trees, and the damage targets.
type damageFixture struct {
	home    string // pristine home, copied per case
	vars    []string
	srcS    string // source "s" as it is now (after its second point)
	srcT    string
	refs    map[string]string // point id -> reference tree of that point
	sources map[string]string // point id -> source
	targets damageTargets
}

func newDamageFixture(t *testing.T, encrypted bool) *damageFixture {
	base := t.TempDir()
	e := &env{t: t, home: filepath.Join(base, "home")}
	fx := &damageFixture{home: e.home, refs: map[string]string{}, sources: map[string]string{},
		srcS: filepath.Join(base, "src-s"), srcT: filepath.Join(base, "src-t")}
	if encrypted {
		fx.vars = []string{"RECALL_PASSWORD=matrix"}
		e.vars = fx.vars
		// Made as init --encrypt makes it, with 1 MiB for argon2 instead
		// of 64: the matrix runs some 200 commands, each of which derives
		// the key (0.2 s apiece at 64 MiB; init --encrypt itself is
		// tested in the password and key tests).
		if _, err := chunkstore.Init(filepath.Join(e.home, "store"), chunkstore.InitOptions{Encrypt: true, Password: "matrix", KDFMemoryKB: 1024}); err != nil {
			t.Fatal(err)
		}
	} else {
		e.ok("init")
	}

	// Source s: three 6 MiB files (one hard-linked from another
	// directory) so the data spans two packs, small text and random files
	// at three levels, a symlink and an empty file.
	s := fx.srcS
	for _, d := range []string{"big", "sub/deeper", "other", "links"} {
		must(t, os.MkdirAll(filepath.Join(s, d), 0o755))
	}
	writeRandom(t, filepath.Join(s, "big/a"), 1, 6<<20)
	writeRandom(t, filepath.Join(s, "big/b"), 2, 6<<20)
	writeRandom(t, filepath.Join(s, "other/c"), 3, 6<<20)
	must(t, os.Link(filepath.Join(s, "big/a"), filepath.Join(s, "links/a-link")))
	for i := 0; i < 12; i++ {
		dir := []string{"sub", "sub/deeper", "other", ""}[i%4]
		writeRandom(t, filepath.Join(s, dir, fmt.Sprintf("r%02d", i)), int64(100+i), 1000+i*7919)
		text := strings.Repeat(fmt.Sprintf("line %d of a text file that compresses\n", i), 200+i*30)
		must(t, os.WriteFile(filepath.Join(s, dir, fmt.Sprintf("t%02d.txt", i)), []byte(text), 0o644))
	}
	must(t, os.Symlink("big/a", filepath.Join(s, "to-a")))
	must(t, os.WriteFile(filepath.Join(s, "empty"), nil, 0o644))

	snap := func(src, name string) string {
		ref := filepath.Join(base, "ref-"+name)
		if out, err := exec.Command("cp", "-a", src, ref).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		return ref
	}
	backup := func(src, source, name string) {
		var p struct{ ID string }
		must(t, json.Unmarshal([]byte(e.ok("backup", "--json", "--source", source, src)), &p))
		fx.refs[p.ID] = snap(src, name)
		fx.sources[p.ID] = source
	}
	backup(s, "s", "s1")
	// The second point changes one file, adds one, removes one.
	writeRandom(t, filepath.Join(s, "sub/r01"), 999, 5000)
	writeRandom(t, filepath.Join(s, "sub/new"), 998, 7000)
	must(t, os.Remove(filepath.Join(s, "other/t02.txt")))
	backup(s, "s", "s2")
	// Source t shares nothing with s.
	must(t, os.MkdirAll(filepath.Join(fx.srcT, "d"), 0o755))
	writeRandom(t, filepath.Join(fx.srcT, "d/x"), 50, 3<<20)
	writeRandom(t, filepath.Join(fx.srcT, "y"), 51, 20000)
	backup(fx.srcT, "t", "t1")

	fx.targets = findTargets(t, e.home, fx.vars)
	return fx
}

// findTargets opens the store read-only and locates the damage targets.
func findTargets(t *testing.T, home string, vars []string) damageTargets {
	pw := ""
	for _, v := range vars {
		if p, ok := strings.CutPrefix(v, "RECALL_PASSWORD="); ok {
			pw = p
		}
	}
	dir := filepath.Join(home, "store")
	st, err := chunkstore.Open(dir, chunkstore.OpenOptions{Password: pw})
	must(t, err)
	defer st.Close()
	r := engine.NewReader(st)
	pts, err := r.Points()
	must(t, err)
	var first *engine.Point
	for _, p := range pts {
		if p.Source == "s" {
			first = p
			break
		}
	}
	if first == nil {
		t.Fatal("no point of source s")
	}
	root, err := r.LoadTree(first.Tree)
	must(t, err)
	big, err := r.LoadTree(root.Find("big").Subtree)
	must(t, err)
	a := big.Find("a")
	if len(a.Extents) < 2 {
		t.Fatalf("big/a has %d chunks, want several", len(a.Extents))
	}
	dataID := a.Extents[1].ID
	subID := root.Find("sub").Subtree

	var tg damageTargets
	locate := func(id chunkstore.ID) (string, int64, int64) {
		pack, ok := st.PackOf(id)
		if !ok {
			t.Fatalf("blob %s not indexed", id.Short())
		}
		ents, err := st.ReadPackHeader(pack)
		must(t, err)
		for _, en := range ents {
			if en.ID == id {
				h := pack.String()
				return filepath.Join(dir, "packs", h[:2], h), int64(en.Offset), int64(en.Length)
			}
		}
		t.Fatalf("blob %s not in its pack's header", id.Short())
		return "", 0, 0
	}
	tg.dataPack, tg.dataOff, tg.dataLen = locate(dataID)
	tg.treePack, tg.treeOff, tg.treeLen = locate(subID)
	tg.manifest = filepath.Join(dir, "points", first.ID.String())
	tg.config = filepath.Join(dir, "config")
	ents, err := os.ReadDir(filepath.Join(dir, "index"))
	must(t, err)
	for _, en := range ents {
		if !strings.HasPrefix(en.Name(), ".") {
			tg.index = filepath.Join(dir, "index", en.Name())
			break
		}
	}
	if tg.index == "" {
		t.Fatal("no index file")
	}
	// The data must span two packs, or "pack deleted" loses everything.
	packs := 0
	must(t, st.ListPacks(func(chunkstore.ID, int64) error { packs++; return nil }))
	if packs < 3 {
		t.Fatalf("store has %d packs, want two data packs and a tree pack", packs)
	}
	return tg
}

func (fx *damageFixture) runCase(t *testing.T, c damageCase) {
	base := t.TempDir()
	home := filepath.Join(base, "home")
	if out, err := exec.Command("cp", "-a", fx.home, home).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	e := &env{t: t, home: home, vars: fx.vars}
	tg := fx.targets
	rebase := func(p string) string { return filepath.Join(home, strings.TrimPrefix(p, fx.home)) }
	tg.dataPack, tg.treePack, tg.manifest, tg.config, tg.index = rebase(tg.dataPack), rebase(tg.treePack), rebase(tg.manifest), rebase(tg.config), rebase(tg.index)
	c.damage(t, home, &tg)

	// run never accepts a panic or a usage error from these commands.
	run := func(args ...string) result {
		t.Helper()
		r := e.run(args...)
		if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") || r.code == 2 {
			t.Fatalf("recall %s: exit %d (panic or usage)\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
		return r
	}

	// What verify reports, per point.
	r := run("verify", "--read-data", "--json")
	if r.code != 0 && r.code != 4 {
		t.Fatalf("verify --read-data: exit %d, want 0 or 4\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var rep struct {
		Damage []struct {
			Point, Path string
		} `json:"damage"`
		DamagedPoints []struct {
			Point string
		} `json:"damaged_points"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, r.stdout)
	}
	reported := map[string]map[string]bool{}
	for id := range fx.refs {
		reported[id] = map[string]bool{}
	}
	for _, d := range rep.Damage {
		if reported[d.Point] == nil {
			t.Fatalf("verify reports damage in unknown point %s", d.Point)
		}
		reported[d.Point][d.Path] = true
	}
	for _, d := range rep.DamagedPoints {
		if reported[d.Point] == nil {
			t.Fatalf("verify reports unknown damaged point %s", d.Point)
		}
		reported[d.Point]["/"] = true
	}
	t.Logf("verify: exit %d, %d damaged files, %d damaged points", r.code, len(rep.Damage), len(rep.DamagedPoints))

	// What restore cannot restore, per point, and everything else exact.
	for id, ref := range fx.refs {
		dst := filepath.Join(base, "restore-"+id[:12])
		r := run("restore", "--source", fx.sources[id], id, "--target", dst)
		failed := map[string]bool{}
		switch {
		case r.code == 0:
		case r.code == 4:
			for _, line := range strings.Split(r.stderr, "\n") {
				if rest, ok := strings.CutPrefix(line, "recall: damaged: "); ok {
					path, _, _ := strings.Cut(rest, ": ")
					failed[path] = true
				}
			}
			if len(failed) == 0 {
				failed["/"] = true // nothing of the point could be restored
			} else if want := fmt.Sprintf("; %d file(s) damaged, named below", len(failed)); !strings.Contains(r.stdout, "partly restored point") || !strings.Contains(r.stdout, want) {
				// Not a plain "restored point" line above the damage.
				t.Errorf("restore of point %s with damage: summary %q, want it partly restored, %q", id[:12], r.stdout, want)
			}
		default:
			t.Errorf("restore of point %s: exit %d, want 0 or 4\n%s", id[:12], r.code, r.stderr)
			continue
		}
		if !maps.Equal(reported[id], failed) {
			t.Errorf("point %s (%s): verify reports %v damaged, restore failed on %v", id[:12], fx.sources[id], keys(reported[id]), keys(failed))
		}
		if !failed["/"] {
			compareExceptDamaged(t, id[:12], snapshot(t, ref), snapshot(t, dst), failed)
		}
	}

	// Repair, back up the intact sources again, and the store is whole.
	for _, args := range [][]string{{"repair", "index"}, {"repair", "packs"}} {
		if r := run(args...); r.code != 0 && r.code != 4 {
			t.Fatalf("recall %v: exit %d\n%s\n%s", args, r.code, r.stdout, r.stderr)
		}
	}
	run("backup", "--source", "s", fx.srcS)
	run("backup", "--source", "t", fx.srcT)
	if r := run("repair", "points", "--forget-damaged"); r.code != 0 && r.code != 4 {
		t.Fatalf("repair points: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := run("verify", "--read-data"); r.code != 0 {
		t.Fatalf("after repair and a new backup: verify --read-data exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for src, dir := range map[string]string{"s": fx.srcS, "t": fx.srcT} {
		dst := filepath.Join(base, "latest-"+src)
		if r := run("restore", "--source", src, "latest", "--target", dst); r.code != 0 {
			t.Fatalf("restore latest of %s after repair: exit %d\n%s", src, r.code, r.stderr)
		}
		compareExceptDamaged(t, "latest of "+src, snapshot(t, dir), snapshot(t, dst), nil)
	}
}

// compareExceptDamaged checks that every path of want outside the damaged
// set was restored with the same type, content and link target.
func compareExceptDamaged(t *testing.T, what string, want, got map[string]entry, damaged map[string]bool) {
	t.Helper()
	lost := func(p string) bool {
		if damaged[p] {
			return true
		}
		for d := range damaged {
			if strings.HasSuffix(d, "/") && strings.HasPrefix(p+"/", d) {
				return true
			}
		}
		return false
	}
	for p, w := range want {
		if p == "." || lost(p) {
			continue
		}
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: %q not restored and not reported damaged", what, p)
			continue
		}
		if g.Type != w.Type || g.Content != w.Content || g.Target != w.Target || g.Size != w.Size {
			t.Errorf("%s: %q restored wrong and not reported damaged: want %+v, got %+v", what, p, w, g)
		}
	}
}

func keys(m map[string]bool) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	must(t, err)
	b[0] ^= 0x20
	_, err = f.WriteAt(b, off)
	must(t, err)
}

// packHeaderLen reads a pack's trailer: u32le header length | magic.
func packHeaderLen(t *testing.T, path string) int {
	b := mustRead(t, path)
	return int(binary.LittleEndian.Uint32(b[len(b)-12:]))
}
