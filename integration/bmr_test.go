package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/internal/wsbgen"
	"github.com/zeebo/blake3"
)

// The tests of issue 16: a Windows computer's WSB writes its system image
// into a bmr-target share (smbclient plays WSB over the network), recall
// ingests it, and Windows RE reads it back through a bmr-recovery share.

// smallVolumes keep the fault tests fast; the growth test uses a C: of
// 1 GiB.
var smallVolumes = []wsbgen.VolumeSpec{
	{FS: "FAT32", Size: 16 << 20, Allocated: 2 << 20, Critical: true},
	{Letter: "C:", FS: "NTFS", Size: 64 << 20, Allocated: 16 << 20, Critical: true},
}

// bmrHost is one registered bmr source with its bmr-target share
// installed by `share bmr-target --apply` into a private smbd.
type bmrHost struct {
	t        *testing.T
	e        *env
	s        *smbd
	name     string // the source, and the share WSB writes to
	computer string
	user     string
	password string
	staging  string
	conf     string // the smbd's smb.conf
	gen      string // the Windows side: where images are generated before upload
	prev     *wsbgen.Backup
}

var bmrSeq atomic.Int32

// newBMRHost registers computer as a bmr source of e and installs its
// share. With password "" the command makes one and prints it.
func newBMRHost(t *testing.T, e *env, computer, password string) *bmrHost {
	t.Helper()
	requireRoot(t)
	for _, tool := range []string{"useradd", "userdel", "smbpasswd", "pdbedit", "smbcontrol", "testparm"} {
		if _, err := exec.LookPath(tool); err != nil {
			skip(t, "%s not installed (Debian packages passwd, samba, samba-common-bin; `make deps` installs them)", tool)
		}
	}
	// Unique across test runs on one machine: the Unix user is real.
	name := fmt.Sprintf("bmr%d-%d", os.Getpid()%100000, bmrSeq.Add(1))
	h := &bmrHost{t: t, e: e, name: name, computer: computer, user: "wsb-" + name, gen: t.TempDir()}
	base := t.TempDir()
	openUp(t, base) // smbd serves the share as the Samba user
	h.staging = filepath.Join(base, "staging")
	e.ok("source", "add", name, "--kind", "bmr", "--computer", computer, "--staging", h.staging)
	// Removed after smbd (cleanups run last first): its processes run as
	// the user until then.
	t.Cleanup(func() { exec.Command("userdel", "--force", h.user).Run() })
	h.s = startSmbd(t, t.TempDir(), "")
	h.conf = filepath.Join(h.s.dir, "smb.conf")
	args := []string{"share", "bmr-target", "--source", name, "--apply", "--smb-conf", h.conf}
	if password != "" {
		pw := filepath.Join(t.TempDir(), "password")
		check(t, os.WriteFile(pw, []byte(password+"\n"), 0o600))
		args = append(args, "--password-file", pw)
	}
	r := e.run(args...)
	if r.code != 0 {
		t.Fatalf("share bmr-target: exit %d\n%s%s\nsmbd:\n%s", r.code, r.stdout, r.stderr, h.s.out.String())
	}
	for _, want := range []string{"[" + name + "]", "path = " + h.staging, "valid users = " + h.user, "read only = no", "guest ok = no"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("bmr-target share lacks %q:\n%s", want, r.stdout)
		}
	}
	h.password = password
	if password == "" {
		m := regexp.MustCompile(`(?m)^Samba password of ` + regexp.QuoteMeta(h.user) + ` .*: (\S+)$`).FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("no password printed:\n%s", r.stdout)
		}
		h.password = m[1]
	}
	conf, err := os.ReadFile(h.conf)
	check(t, err)
	if c := strings.Count(string(conf), "include = "+filepath.Join(h.s.dir, "recall-shares.conf")); c != 1 {
		t.Fatalf("smb.conf has %d include lines for recall's shares:\n%s", c, conf)
	}
	return h
}

// smb runs smbclient as the source's Samba user on share.
func (h *bmrHost) smb(share, command string) (string, error) {
	h.t.Helper()
	cmd := exec.Command("smbclient", "//127.0.0.1/"+share, "-p", fmt.Sprint(h.s.port), "-U", h.user+"%"+h.password, "-m", "SMB3", "-c", command)
	cmd.Dir = h.t.TempDir()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// smbOK is smb that fails the test on any error smbclient reports: it
// exits 0 after many of them.
func (h *bmrHost) smbOK(share, command string) string {
	h.t.Helper()
	out, err := h.smb(share, command)
	if err != nil || strings.Contains(out, "NT_STATUS_") {
		h.t.Fatalf("smbclient //127.0.0.1/%s -c %q: %v\n%s\nsmbd:\n%s", share, command, err, out, h.s.out.String())
	}
	return out
}

// backup generates the computer's next backup on the Windows side and
// writes it into the share as WSB does: the previous Backup folder
// removed, then everything copied over.
func (h *bmrHost) backup(o wsbgen.Options) *wsbgen.Backup {
	h.t.Helper()
	o.Computer = h.computer
	b, err := wsbgen.Generate(h.gen, o)
	check(h.t, err)
	if h.prev != nil {
		h.smbOK(h.name, fmt.Sprintf(`deltree "%s\%s\%s"`, wsbDir, h.computer, filepath.Base(h.prev.Dir)))
	}
	h.smbOK(h.name, fmt.Sprintf(`prompt OFF; recurse ON; lcd "%s"; mput %s`, h.gen, wsbDir))
	h.prev = b
	return b
}

const wsbDir = "WindowsImageBackup"

// ingest runs `recall backup --source` on the staging tree now.
func (h *bmrHost) ingest() result {
	h.t.Helper()
	return h.e.run("backup", "--source", h.name, "--settle", "0s")
}

type bmrPoint struct {
	ID   string `json:"id"`
	Time string `json:"time"`
}

func (h *bmrHost) points() []bmrPoint {
	h.t.Helper()
	var pts []bmrPoint
	check(h.t, json.Unmarshal([]byte(h.e.ok("points", "--json", "--source", h.name)), &pts))
	return pts
}

// recoveryShare installs the bmr-recovery share of point id and returns
// its name.
func (h *bmrHost) recoveryShare(id, mnt string, args ...string) (string, string) {
	h.t.Helper()
	out := h.e.ok(append([]string{"share", "bmr-recovery", id, "--mountpoint", mnt, "--apply", "--smb-conf", h.conf}, args...)...)
	m := regexp.MustCompile(`(?m)^\[(.+)\]$`).FindStringSubmatch(out)
	if m == nil {
		h.t.Fatalf("bmr-recovery printed no share:\n%s", out)
	}
	for _, want := range []string{"read only = yes", "valid users = " + h.user} {
		if !strings.Contains(out, want) {
			h.t.Fatalf("bmr-recovery share lacks %q:\n%s", want, out)
		}
	}
	// By the point's id (a link to its @GMT directory), which stays
	// that point's after a forget and a remount, as its name may not.
	if !regexp.MustCompile(`(?m)^\s*path = ` + regexp.QuoteMeta(filepath.Join(mnt, h.name)) + `/[0-9a-f]{64}$`).MatchString(out) {
		h.t.Fatalf("bmr-recovery share's path is not the point's id link:\n%s", out)
	}
	return m[1], out
}

// fetch copies WindowsImageBackup from share into a new directory, as
// Windows RE reads it, and returns the copy's WindowsImageBackup.
func (h *bmrHost) fetch(share string) string {
	h.t.Helper()
	dst := h.t.TempDir()
	h.smbOK(share, fmt.Sprintf(`prompt OFF; recurse ON; lcd "%s"; mget %s`, dst, wsbDir))
	return filepath.Join(dst, wsbDir)
}

// hashTree returns the BLAKE3 of every file under dir, by slash path
// relative to dir.
func hashTree(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	check(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		hs := blake3.New()
		if _, err := io.Copy(hs, f); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var sum [32]byte
		copy(sum[:], hs.Sum(nil))
		out[filepath.ToSlash(rel)] = sum
		return nil
	}))
	return out
}

// sameTree fails unless got has exactly the files of want with the same
// hashes.
func sameTree(t *testing.T, what string, got, want map[string][32]byte) {
	t.Helper()
	var diff []string
	for n, w := range want {
		g, ok := got[n]
		switch {
		case !ok:
			diff = append(diff, "missing "+n)
		case g != w:
			diff = append(diff, "different "+n)
		}
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			diff = append(diff, "extra "+n)
		}
	}
	if len(diff) > 0 {
		sort.Strings(diff)
		t.Fatalf("%s: %d of %d files differ from the originals: %s", what, len(diff), len(want), strings.Join(diff, "; "))
	}
}

// dirSize is the bytes of the files under dir.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	check(t, filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	}))
	return n
}

// recoveryMount mounts the store's tree for other users (smbd reads it as
// the Samba user).
func recoveryMount(t *testing.T, e *env) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	check(t, os.Mkdir(mnt, 0o755))
	openUp(t, mnt)
	e.mount(mnt, "--allow-other")
	return mnt
}

func requireQemuImg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		skip(t, "qemu-img not installed (Debian package qemu-utils; `make deps` installs it)")
	}
}

// TestBMRDoneWhen is the "Done when": two daily images written
// through the share, ingested, the second small in the store, both served
// back intact through their recovery shares and listed as wbadmin would.
func TestBMRDoneWhen(t *testing.T) {
	requireFUSE(t)
	requireQemuImg(t)
	e := newEnv(t)
	e.ok("init")
	h := newBMRHost(t, e, "SRV01", "Wsb-Pass-1")
	vols := []wsbgen.VolumeSpec{
		{FS: "FAT32", Size: 32 << 20, Allocated: 8 << 20, Critical: true},
		{Letter: "C:", FS: "NTFS", Size: 1 << 30, Allocated: 256 << 20, Critical: true},
	}
	store := filepath.Join(e.home, "store")
	var backups []*wsbgen.Backup
	var sums []map[string][32]byte
	var grew []int64
	for gen := 0; gen < 2; gen++ {
		b := h.backup(wsbgen.Options{Seed: 16, Generation: gen, ChangeRate: 0.05, Volumes: vols})
		backups = append(backups, b)
		sums = append(sums, hashTree(t, filepath.Join(h.gen, wsbDir)))
		before := dirSize(t, store)
		if r := h.ingest(); r.code != 0 {
			t.Fatalf("ingest generation %d: exit %d\n%s%s", gen, r.code, r.stdout, r.stderr)
		}
		grew = append(grew, dirSize(t, store)-before)
	}
	var image, allocated int64
	for _, v := range backups[1].Volumes {
		fi, err := os.Stat(v.Path)
		check(t, err)
		image += fi.Size()
		allocated += v.Allocated
	}
	t.Logf("image %d MiB (%d MiB of data); the store grew %d MiB for the first point, %d MiB (%.1f%% of the image, %.1f%% of its data) for the second",
		image>>20, allocated>>20, grew[0]>>20, grew[1]>>20, 100*float64(grew[1])/float64(image), 100*float64(grew[1])/float64(allocated))
	if grew[1] > image*15/100 {
		t.Errorf("the second point added %d bytes to the store, more than 15%% of the image's %d", grew[1], image)
	}
	// The image's size counts its unallocated blocks, which a sparse
	// VHDX holds no bytes for and cost the store nothing: the bound that
	// says the changed blocks alone were stored is on the data.
	if grew[1] > allocated*15/100 {
		t.Errorf("the second point added %d bytes to the store, more than 15%% of the image's %d bytes of data", grew[1], allocated)
	}
	pts := h.points()
	if len(pts) != 2 {
		t.Fatalf("points of %s: %+v", h.name, pts)
	}

	mnt := recoveryMount(t, e)
	var shares []string
	for i, p := range pts {
		// Both points were made within a minute: their default names
		// (<source>-YYYYMMDD-HHMMSS) are to the second, as the
		// points' names in the tree, so they differ.
		share, _ := h.recoveryShare(p.ID, mnt)
		if !regexp.MustCompile(`^`+regexp.QuoteMeta(h.name)+`-\d{8}-\d{6}$`).MatchString(share) || slices.Contains(shares, share) {
			t.Errorf("default recovery share name %q (before: %v): want %s-YYYYMMDD-HHMMSS, its own", share, shares, h.name)
		}
		shares = append(shares, share)
		out := h.smbOK(share, fmt.Sprintf(`ls %s\%s\*`, wsbDir, h.computer))
		if want := filepath.Base(backups[i].Dir); !strings.Contains(out, want) {
			t.Fatalf("point %d: the recovery share does not list %q:\n%s", i, want, out)
		}
		got := h.fetch(share)
		sameTree(t, fmt.Sprintf("point %d through share %s", i, share), hashTree(t, got), sums[i])
		for _, v := range backups[i].Volumes {
			rel, _ := filepath.Rel(filepath.Join(h.gen, wsbDir), v.Path)
			if out, err := exec.Command("qemu-img", "check", "-f", "vhdx", filepath.Join(got, rel)).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img check of %s fetched from point %d: %v\n%s", rel, i, err, out)
			}
		}
	}

	var versions []struct {
		Point      string   `json:"point"`
		Computer   string   `json:"computer"`
		Backup     string   `json:"backup_folder"`
		BackupTime string   `json:"backup_time"`
		VersionID  string   `json:"version_identifier"`
		CanRecover []string `json:"can_recover"`
		Volumes    []struct {
			ImageFile string `json:"image_file"`
		} `json:"volumes"`
	}
	out := e.ok("bmr", "versions", "--source", h.name, "--json")
	check(t, json.Unmarshal([]byte(out), &versions))
	if len(versions) != 2 {
		t.Fatalf("bmr versions lists %d entries, want 2:\n%s", len(versions), out)
	}
	for i, v := range versions {
		b := backups[i]
		if v.Point != pts[i].ID || v.VersionID != b.VersionID || v.BackupTime != b.Time.Format(time.RFC3339) ||
			v.Backup != filepath.Base(b.Dir) || !strings.EqualFold(v.Computer, b.Computer) ||
			strings.Join(v.CanRecover, ",") != strings.Join(b.CanRecover, ",") || len(v.Volumes) != len(b.Volumes) {
			t.Errorf("version %d: %+v, want point %s, %s (%s) in %q, can recover %v, %d volumes",
				i, v, pts[i].ID, b.VersionID, b.Time.Format(time.RFC3339), filepath.Base(b.Dir), b.CanRecover, len(b.Volumes))
		}
		var got, want []string
		for j := range v.Volumes {
			got = append(got, v.Volumes[j].ImageFile)
		}
		for _, vol := range b.Volumes {
			want = append(want, filepath.Base(vol.Path))
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("version %d: image files %q, want %q", i, got, want)
		}
	}
}

// TestBMRTruncatedTransfer: the transfer broke in the middle (half a
// VHDX, no BackupSpecs.xml): no point, a message naming what is missing,
// and the previous point as it was.
func TestBMRTruncatedTransfer(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.ok("init")
	h := newBMRHost(t, e, "SRV02", "Wsb-Pass-2")
	h.backup(wsbgen.Options{Seed: 2, Volumes: smallVolumes})
	first := hashTree(t, filepath.Join(h.gen, wsbDir))
	if r := h.ingest(); r.code != 0 {
		t.Fatalf("ingest: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	before := h.points()
	b := h.backup(wsbgen.Options{Seed: 2, Generation: 1, Volumes: smallVolumes, Truncate: true})
	if len(b.Missing) == 0 {
		t.Fatal("the generator reports nothing missing from a cut transfer")
	}
	r := h.ingest()
	if r.code == 0 {
		t.Fatalf("an incomplete image was ingested:\n%s%s", r.stdout, r.stderr)
	}
	for _, m := range b.Missing {
		if !strings.Contains(r.stderr, filepath.ToSlash(m)) {
			t.Errorf("the error does not name the missing %s:\n%s", m, r.stderr)
		}
	}
	after := h.points()
	if len(after) != len(before) || after[0] != before[0] {
		t.Fatalf("points changed: %+v, were %+v", after, before)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	e.ok("restore", before[0].ID, "--target", dst)
	sameTree(t, "the previous point after the failed ingestion", hashTree(t, filepath.Join(dst, wsbDir)), first)
}

// TestBMRSecondComputer: a second computer pointed at one source's share
// cannot create its folder through Samba, and a folder planted behind
// Samba's back stops ingestion by name.
func TestBMRSecondComputer(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.ok("init")
	h := newBMRHost(t, e, "SRV03", "Wsb-Pass-3")
	out, _ := h.smb(h.name, fmt.Sprintf(`mkdir %s\OTHER`, wsbDir))
	if !strings.Contains(out, "NT_STATUS_ACCESS_DENIED") {
		t.Fatalf("a second computer's folder was not refused:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(h.staging, wsbDir, "OTHER")); !os.IsNotExist(err) {
		t.Fatalf("the second computer's folder exists: %v", err)
	}
	out, _ = h.smb(h.name, fmt.Sprintf(`put "%s" stray.txt`, filepath.Join(h.s.dir, "smb.conf")))
	if !strings.Contains(out, "NT_STATUS_ACCESS_DENIED") {
		t.Fatalf("a file was written at the share's root:\n%s", out)
	}
	h.backup(wsbgen.Options{Seed: 3, Volumes: smallVolumes})
	_, err := wsbgen.Generate(h.staging, wsbgen.Options{Seed: 4, Computer: "OTHER", Volumes: smallVolumes})
	check(t, err)
	r := h.ingest()
	if r.code == 0 || !strings.Contains(r.stderr, "OTHER") {
		t.Fatalf("ingestion with a second computer's folder: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if pts := h.points(); len(pts) != 0 {
		t.Fatalf("points made: %+v", pts)
	}
}

// TestBMRInvalidVHDX: an image whose VHDX headers are broken is ingested
// byte for byte, with a warning naming it.
func TestBMRInvalidVHDX(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.ok("init")
	h := newBMRHost(t, e, "SRV04", "Wsb-Pass-4")
	b := h.backup(wsbgen.Options{Seed: 5, Volumes: smallVolumes, CorruptVHDX: true})
	sums := hashTree(t, filepath.Join(h.gen, wsbDir))
	r := h.ingest()
	if r.code != 0 && r.code != 3 {
		t.Fatalf("ingest of an invalid VHDX: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	largest := b.Volumes[0]
	for _, v := range b.Volumes {
		if v.Allocated > largest.Allocated {
			largest = v
		}
	}
	if !strings.Contains(r.stderr, "warning") || !strings.Contains(r.stderr, filepath.Base(largest.Path)) {
		t.Fatalf("no warning naming %s:\n%s", filepath.Base(largest.Path), r.stderr)
	}
	pts := h.points()
	if len(pts) != 1 {
		t.Fatalf("points: %+v", pts)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	e.ok("restore", pts[0].ID, "--target", dst)
	sameTree(t, "the invalid image restored", hashTree(t, filepath.Join(dst, wsbDir)), sums)
}

// TestBMRNames: names Windows allows and Linux keeps (spaces, braces,
// non-ASCII) come through the share, the store and the recovery share.
// The Samba password is the one the command made and printed.
func TestBMRNames(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	e.ok("init")
	const computer = "SRV Ü{01}"
	h := newBMRHost(t, e, computer, "")
	b := h.backup(wsbgen.Options{Seed: 6, Volumes: smallVolumes, Names: true})
	if b.Computer != computer {
		t.Fatalf("generated computer %q", b.Computer)
	}
	sums := hashTree(t, filepath.Join(h.gen, wsbDir))
	notes := ""
	for n := range sums {
		if strings.Contains(n, "{") && strings.Contains(n, "é") && strings.Contains(n, " ") {
			notes = n
		}
	}
	if notes == "" {
		t.Fatalf("no file with spaces, braces and non-ASCII letters generated: %v", sums)
	}
	if r := h.ingest(); r.code != 0 {
		t.Fatalf("ingest: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	pts := h.points()
	if len(pts) != 1 {
		t.Fatalf("points: %+v", pts)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	e.ok("restore", pts[0].ID, "--target", dst)
	sameTree(t, "the store", hashTree(t, filepath.Join(dst, wsbDir)), sums)

	mnt := recoveryMount(t, e)
	share, _ := h.recoveryShare("latest", mnt, "--source", h.name)
	out := h.smbOK(share, fmt.Sprintf(`ls "%s\%s\*"`, wsbDir, computer))
	for _, want := range []string{filepath.Base(b.Dir), filepath.Base(notes)} {
		if !strings.Contains(out, want) {
			t.Fatalf("the recovery share does not list %q:\n%s", want, out)
		}
	}
	sameTree(t, "the recovery share", hashTree(t, h.fetch(share)), sums)

	// Forgetting the point names the share that served it, and leaves
	// the share's block as it is: recall removes nothing it was not asked
	// to.
	inc := filepath.Join(filepath.Dir(h.conf), engine.SambaIncludeName)
	before, err := os.ReadFile(inc)
	must(t, err)
	r := e.run("forget", "--json", "--smb-conf", h.conf, pts[0].ID)
	var forgot struct {
		Shares []string `json:"shares"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &forgot) != nil || !slices.Equal(forgot.Shares, []string{share}) ||
		!strings.Contains(r.stderr, "share ["+share+"] ("+inc+") served point "+pts[0].ID[:12]) {
		t.Fatalf("forget of the shared point: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if after, err := os.ReadFile(inc); err != nil || string(after) != string(before) {
		t.Fatalf("forget changed %s: %v\n%s", inc, err, after)
	}
}

// TestBMRShareCommands: what the share commands refuse, what they leave
// alone, and that running --apply again changes nothing.
func TestBMRShareCommands(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.ok("init")
	h := newBMRHost(t, e, "SRV05", "Wsb-Pass-5")
	include := filepath.Join(h.s.dir, "recall-shares.conf")
	read := func(p string) string {
		b, err := os.ReadFile(p)
		check(t, err)
		return string(b)
	}

	// Again: the same share, one include line, the password kept (the
	// scheduled wbadmin line on the Windows side still logs on).
	conf, inc := read(h.conf), read(include)
	r := e.run("share", "bmr-target", "--source", h.name, "--apply", "--smb-conf", h.conf)
	if r.code != 0 || !strings.Contains(r.stderr, "keeps its password") || strings.Contains(r.stdout, "Samba password of") {
		t.Fatalf("bmr-target --apply again: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if read(h.conf) != conf || read(include) != inc {
		t.Fatalf("a second --apply changed the configuration:\n%s\n%s", read(h.conf), read(include))
	}
	h.smbOK(h.name, `ls WindowsImageBackup\*`)
	// A password from the environment replaces the old one.
	e.vars = []string{"RECALL_SMB_PASSWORD=Wsb-Pass-5b"}
	e.ok("share", "bmr-target", "--source", h.name, "--apply", "--smb-conf", h.conf)
	e.vars = nil
	if out, _ := h.smb(h.name, "ls"); !strings.Contains(out, "NT_STATUS_LOGON_FAILURE") {
		t.Fatalf("the old password still logs on:\n%s", out)
	}
	h.password = "Wsb-Pass-5b"
	h.smbOK(h.name, `ls WindowsImageBackup\*`)

	// Printing alone touches nothing: no user, no folders, no share.
	other := "print" + h.name
	staging := filepath.Join(t.TempDir(), "staging")
	e.ok("source", "add", other, "--kind", "systemstate", "--computer", "SRV06", "--staging", staging)
	out := e.ok("share", "bmr-target", "--source", other, "--smb-conf", h.conf)
	if !strings.Contains(out, "-systemState -quiet") || strings.Contains(out, "-allCritical") {
		t.Fatalf("the wbadmin line of a systemstate source:\n%s", out)
	}
	if err := exec.Command("id", "wsb-"+other).Run(); err == nil {
		exec.Command("userdel", "--force", "wsb-"+other).Run()
		t.Fatal("printing the share created its user")
	}
	if _, err := os.Stat(filepath.Join(staging, wsbDir)); !os.IsNotExist(err) {
		t.Fatalf("printing the share made the staging folders: %v", err)
	}
	if read(h.conf) != conf || read(include) != inc {
		t.Fatal("printing the share changed the configuration")
	}

	// Refused: an unregistered source; a share smb.conf defines itself.
	r = e.run("share", "bmr-target", "--source", "nosuch", "--smb-conf", h.conf)
	if r.code == 0 || !strings.Contains(r.stderr, "recall source add") {
		t.Fatalf("bmr-target of an unregistered source: exit %d\n%s", r.code, r.stderr)
	}
	r = e.run("share", "bmr-target", "--source", h.name, "--name", "global", "--smb-conf", h.conf)
	if r.code != 2 {
		t.Fatalf("share named global: exit %d\n%s", r.code, r.stderr)
	}
	f, err := os.OpenFile(h.conf, os.O_APPEND|os.O_WRONLY, 0)
	check(t, err)
	_, err = f.WriteString("[Admins-Own]\n\tpath = /nonexistent\n")
	check(t, err)
	check(t, f.Close())
	r = e.run("share", "bmr-target", "--source", h.name, "--name", "admins-own", "--apply", "--smb-conf", h.conf)
	if r.code == 0 || !strings.Contains(r.stderr, "Admins-Own") && !strings.Contains(r.stderr, "admins-own") {
		t.Fatalf("a share of the admin's name: exit %d\n%s", r.code, r.stderr)
	}
	if read(include) != inc {
		t.Fatal("a refused share was written")
	}

	// A point with no WindowsImageBackup at its root is refused; one
	// whose tree is not mounted gets a warning; an smbd that does not
	// answer a reload leaves the share written, with a warning.
	live := t.TempDir()
	mustWrite(t, filepath.Join(live, "f"), []byte("x"), 0o644)
	e.ok("backup", "--source", "plain", live)
	r = e.run("share", "bmr-recovery", "latest", "--source", "plain", "--user", h.user, "--smb-conf", h.conf)
	if r.code == 0 || !strings.Contains(r.stderr, wsbDir) {
		t.Fatalf("bmr-recovery of a point without an image: exit %d\n%s", r.code, r.stderr)
	}
	h.backup(wsbgen.Options{Seed: 7, Volumes: smallVolumes})
	if r := h.ingest(); r.code != 0 {
		t.Fatalf("ingest: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	lone := filepath.Join(t.TempDir(), "smb.conf")
	check(t, os.WriteFile(lone, []byte("[global]\n\tpid directory = "+t.TempDir()+"\n"), 0o644))
	mnt := filepath.Join(t.TempDir(), "mnt")
	r = e.run("share", "bmr-recovery", "latest", "--source", h.name, "--mountpoint", mnt, "--apply", "--smb-conf", lone)
	if r.code != 0 || !strings.Contains(r.stderr, "not mounted") || !strings.Contains(r.stderr, "did not reload") {
		t.Fatalf("bmr-recovery with no mount and no smbd: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := read(filepath.Join(filepath.Dir(lone), "recall-shares.conf")); !strings.Contains(got, "valid users = "+h.user) {
		t.Fatalf("the share was not written:\n%s", got)
	}
}
