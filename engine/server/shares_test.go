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

// TestPruneHoldsRecoveryShares: retention does not forget a point a
// bmr-recovery share serves (a machine may be restoring from it): each
// prune logs it held, naming the share and its file, and leaves the share
// as it is; a share of another point holds nothing. Once the share's
// block is gone, the next prune forgets the point by the policy.
func TestPruneHoldsRecoveryShares(t *testing.T) {
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
	kept := false
	for _, q := range pointsMade(t, home, "") {
		kept = kept || q.ID == p.ID
	}
	if !kept {
		t.Fatalf("retention forgot the point a recovery share serves")
	}
	var held []string
	for _, l := range strings.Split(logBuf.String(), "\n") {
		if strings.Contains(l, "point held") {
			held = append(held, l)
		}
	}
	if len(held) == 0 || !strings.Contains(held[0], "[first]") || !strings.Contains(held[0], include) ||
		!strings.Contains(held[0], "point="+p.ID.String()[:12]) || strings.Contains(logBuf.String(), "[other]") {
		t.Fatalf("log lines of held points: %q, want the one of share first", held)
	}
	if after, err := os.ReadFile(include); err != nil || string(after) != string(before) {
		t.Fatalf("the prune changed %s: %v\n%s", include, err, after)
	}

	// The share removed (only "other" left): the next prune forgets it.
	must(t, os.Remove(include))
	_, err = engine.InstallSambaShare(conf, share("other", strings.Repeat("0", 64)))
	must(t, err)
	r = startOptions(t, clock, Options{Home: home, Concurrency: 2, MaxWait: 48 * time.Hour, SmbConf: conf})
	r.until(week0.Add(6 * 24 * time.Hour))
	r.stop()
	for _, q := range pointsMade(t, home, "") {
		if q.ID == p.ID {
			t.Fatalf("the point outlived its retention once no share served it")
		}
	}
}
