package server

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/engine"
)

// TestPruneNamesRecoveryShares: a retention prune that forgets a point a
// bmr-recovery share serves says so in the server's log, naming the share
// and its file, and leaves the share as it is; a share of a point kept is
// not named.
func TestPruneNamesRecoveryShares(t *testing.T) {
	f := soloFixture(t, "g", engine.Policy{Sync: engine.SyncBeforePoint, At: []string{"21:00"}, Retention: "1d"}, week0,
		func(f *fixture) []string { return []string{f.memA} })
	home, dir := f.home, filepath.Dir(f.home)
	clock := NewFakeClock(week0)
	r := start(t, home, clock, nil)
	r.until(week0.Add(22 * time.Hour)) // the first day's points
	r.stop()
	first := pointsMade(t, home, "")
	if len(first) == 0 {
		t.Fatal("no point after the first day")
	}
	p := first[0]

	conf := filepath.Join(dir, "smb.conf")
	must(t, os.WriteFile(conf, []byte("[global]\n"), 0o644))
	share := func(name, id string) engine.SambaShare {
		return engine.SambaShare{Name: name, Source: p.Source, Kind: engine.ShareKindRecovery,
			Params: []engine.SambaParam{{Key: "path", Value: filepath.Join("/srv/recall", p.Source, id)}, {Key: "read only", Value: "yes"}}}
	}
	_, err := engine.InstallSambaShare(conf, share("first", p.ID.String()))
	must(t, err)
	_, err = engine.InstallSambaShare(conf, share("other", strings.Repeat("0", 64)))
	must(t, err)
	include := filepath.Join(dir, engine.SambaIncludeName)
	before, err := os.ReadFile(include)
	must(t, err)

	var logBuf syncBuffer
	r = startOptions(t, clock, Options{Home: home, Concurrency: 2, MaxWait: 48 * time.Hour, SmbConf: conf,
		Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
	r.until(week0.Add(4 * 24 * time.Hour))
	r.stop()
	for _, q := range pointsMade(t, home, "") {
		if q.ID == p.ID {
			t.Fatalf("the first point outlived its retention of a day")
		}
	}
	var named []string
	for _, l := range strings.Split(logBuf.String(), "\n") {
		if strings.Contains(l, "recovery share served a point retention forgot") {
			named = append(named, l)
		}
	}
	if len(named) != 1 || !strings.Contains(named[0], "share=first") || !strings.Contains(named[0], "file="+include) ||
		!strings.Contains(named[0], "point="+p.ID.String()[:12]) {
		t.Fatalf("log lines naming shares: %q, want the one of share first", named)
	}
	if after, err := os.ReadFile(include); err != nil || string(after) != string(before) {
		t.Fatalf("the prune changed %s: %v\n%s", include, err, after)
	}
}
