package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/internal/wsbgen"
)

// TestSourceCommands: the source commands and backup --source, step by
// step on one home: each step's exit code and what it prints.
func TestSourceCommands(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if _, err := chunkstore.Init(engine.StoreDir(home), chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(dir, "stage", "srv01")
	settled := func() {
		old := time.Now().Add(-time.Hour)
		filepath.Walk(filepath.Join(staging, "WindowsImageBackup"), func(p string, _ os.FileInfo, err error) error {
			if err == nil {
				err = os.Chtimes(p, old, old)
			}
			return err
		})
	}
	generate := func(gen int) func() {
		return func() {
			if _, err := wsbgen.Generate(staging, wsbgen.Options{Seed: 4, Generation: gen,
				Volumes: []wsbgen.VolumeSpec{{Letter: "C:", FS: "NTFS", Size: 16 << 20, Allocated: 2 << 20}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, step := range []struct {
		before func()
		args   string
		code   int
		out    string // in the output, or in the error
	}{
		{nil, "source add srv01 --kind bmr --computer SRV01 --staging " + staging, exitOK, "WSB writes to " + staging},
		{nil, "source add srv01 --kind bmr --computer SRV09 --staging " + staging + "x", exitError, "data source exists"},
		{nil, "source add state01 --kind systemstate --computer srv01 --staging " + staging + "x", exitError, "BMR includes system state; protect srv01 by one source"},
		{nil, "source add big --kind bmr --computer BIG --staging " + staging + "x --reservation 16GB", exitUsage, "under the minimum of 15 GiB"},
		{nil, "source add big --kind bmr --computer BIG --staging " + staging + "x --reservation 15GiB", exitOK, "reservation 15 GiB"},
		{nil, "source add vm --kind vm --computer VM --staging " + staging + "y", exitUsage, `kind "vm"`},
		{nil, "source add SRV01 --kind bmr --computer SRV09 --staging " + staging + "z", exitError, "source srv01 has that name ignoring case"},
		{nil, "backup " + dir + " --source Srv01", exitError, "ignoring case, the registered bmr source srv01"},
		{nil, "backup --source nosuch", exitError, "no such data source"},
		{nil, "backup " + dir + " --source srv01", exitError, "ingest its staging tree with 'recall backup --source srv01' (no PATH)"},
		{nil, "backup --source srv01", exitError, "missing Backup YYYY-MM-DD HHMMSS, Catalog/GlobalCatalog, MediaId; no point was made: share the directory with 'recall share bmr-target --source srv01'"},
		{generate(0), "backup --source srv01", exitError, "WSB may still be writing; settle time 2m"},
		{settled, "backup --source srv01", exitOK, "point "},
		{nil, "backup --source srv01", exitOK, "nothing new to ingest"},
		{generate(1), "backup --source srv01 --settle 1h", exitError, "settle time 1h"},
		{settled, "backup --source srv01 --settle 1m", exitOK, "point "},
		// The image ingested last, its point forgotten, is new again.
		{nil, "forget --source srv01 latest", exitOK, "srv01"},
		{nil, "backup --source srv01 --settle 1m", exitOK, "point "},
		{nil, "backup --source srv01", exitOK, "nothing new to ingest"},
		{nil, "group create servers --source srv01", exitOK, "1 member(s)"},
		{nil, "group create others --source big --source srv01", exitError, "recall group remove servers --source srv01"},
		{nil, "source remove srv01", exitError, "recall group remove servers --source srv01"},
		{nil, "source list", exitOK, " servers "},
		{nil, "source edit big --reservation 1GiB", exitUsage, "under the minimum of 15 GiB"},
		{nil, "group remove servers --source srv01", exitOK, "0 member(s)"},
		{nil, "source remove srv01", exitOK, "its points and its staging directory " + staging + " stay"},
		{nil, "source list --json", exitOK, `"name":"srv01","kind":"path"`},
	} {
		if step.before != nil {
			step.before()
		}
		app := newApp()
		var out bytes.Buffer
		app.Writer = &out
		err := app.Run(interspersed(app, append([]string{"recall", "--home", home}, strings.Fields(step.args)...)))
		text := out.String()
		if err != nil {
			text += err.Error()
		}
		if code := exitCode(err); code != step.code || !strings.Contains(text, step.out) {
			t.Errorf("recall %s: exit %d, %q; want exit %d and %q", step.args, code, text, step.code, step.out)
		}
	}
	if fi, err := os.Stat(staging + "x"); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Errorf("staging directory of source big: %v %v, want a directory of mode 0755", fi, err)
	}
}
