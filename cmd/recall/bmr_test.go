package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/internal/wsbgen"
)

// runRecall runs the app on args after "recall" and returns what it
// printed.
func runRecall(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Writer = &out
	err := app.Run(interspersed(app, append([]string{"recall"}, args...)))
	return out.String(), err
}

// cliHome makes a home path and an empty source directory in a fresh
// temp directory, and returns them with a runner of recall on that home
// that fails the test on an error.
func cliHome(t *testing.T) (home, src string, run func(args ...string) string) {
	t.Helper()
	dir := t.TempDir()
	home, src = filepath.Join(dir, "home"), filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	run = func(args ...string) string {
		t.Helper()
		out, err := runRecall(t, append([]string{"--home", home}, args...)...)
		if err != nil {
			t.Fatalf("recall %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	return home, src, run
}

// TestBMRVersions backs up two generations of a staging share and a cut
// transfer, and reads the versions back from the points.
func TestBMRVersions(t *testing.T) {
	home, staging := t.TempDir(), t.TempDir()
	if _, err := runRecall(t, "--home", home, "init"); err != nil {
		t.Fatal(err)
	}
	vols := []wsbgen.VolumeSpec{
		{FS: "FAT32", Size: 16 << 20, Allocated: 2 << 20, Critical: true},
		{Letter: "C:", FS: "NTFS", Size: 64 << 20, Allocated: 8 << 20, Critical: true},
	}
	var gens []*wsbgen.Backup
	for g, truncate := range []bool{false, false, true} {
		b, err := wsbgen.Generate(staging, wsbgen.Options{Seed: 3, Names: true, Generation: g, Volumes: vols, Truncate: truncate})
		if err != nil {
			t.Fatal(err)
		}
		gens = append(gens, b)
		if _, err := runRecall(t, "--home", home, "-q", "backup", staging, "--source", "srv"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := runRecall(t, "--home", home, "-q", "backup", t.TempDir(), "--source", "other"); err != nil {
		t.Fatal(err)
	}

	out, err := runRecall(t, "--home", home, "bmr", "versions", "--source", "srv", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []bmrVersionJSON
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(vs) != 3 {
		t.Fatalf("%d versions, want 3 (two backups and a cut one): %s", len(vs), out)
	}
	for i, b := range gens[:2] {
		v := vs[i]
		if v.Error != "" || v.BackupTime != b.Time.Format(time.RFC3339) || v.VersionIdentifier != b.VersionID || v.Computer != "SRV Ü{01}" ||
			v.BackupFolder != filepath.Base(b.Dir) || v.SnapshotID != b.SnapshotID.Braced() || v.Target != `\\recall\SRV Ü{01}` {
			t.Errorf("version %d: %+v, want time %s, id %s, folder %s", i, v, b.Time.Format(time.RFC3339), b.VersionID, filepath.Base(b.Dir))
		}
		if strings.Join(v.CanRecover, ", ") != "Volume(s), File(s), Application(s), Bare Metal Recovery, System State" {
			t.Errorf("version %d can recover %q", i, v.CanRecover)
		}
		if len(v.Volumes) != 2 || v.Volumes[1].AccessPath != "C:" || v.Volumes[1].TotalSize != 64<<20 || v.Volumes[1].UsedSize != b.Volumes[1].Allocated ||
			v.Volumes[1].ImageFile != filepath.Base(b.Volumes[1].Path) || !v.Volumes[1].Critical {
			t.Errorf("version %d volumes %+v", i, v.Volumes)
		}
		if len(v.Point) != 64 || v.PointTime.IsZero() || (i > 0 && !vs[i-1].PointTime.Before(v.PointTime)) {
			t.Errorf("version %d: point %q at %v", i, v.Point, v.PointTime)
		}
	}
	if cut := vs[2]; !strings.Contains(cut.Error, "BackupSpecs.xml") || !strings.Contains(cut.Error, "incomplete") || cut.VersionIdentifier != "" || cut.Point == "" {
		t.Errorf("cut transfer: %+v", cut)
	}

	out, err = runRecall(t, "--home", home, "bmr", "versions", "--source", "srv")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Recovery point: " + vs[0].Point[:12],
		"Backup time: " + gens[0].Time.Format("1/2/2006 3:04 PM") + " UTC",
		`Backup target: Network Share labeled \\recall\SRV Ü{01}`,
		"Version identifier: " + gens[1].VersionID,
		"Can recover: Volume(s), File(s), Application(s), Bare Metal Recovery, System State",
		"Recovery point: " + vs[2].Point[:12],
		"Cannot read the image: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}

	// A source of ordinary files holds no image: said per point.
	out, err = runRecall(t, "--home", home, "bmr", "versions", "--source", "other", "--json")
	if err != nil || !strings.Contains(out, "no Windows Server Backup image") {
		t.Errorf("other source: %v: %s", err, out)
	}
	if _, err := runRecall(t, "--home", home, "bmr", "versions"); exitCode(err) != exitUsage {
		t.Errorf("without --source: %v (exit %d), want a usage error", err, exitCode(err))
	}
}
