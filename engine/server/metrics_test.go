package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
)

// scrape returns the exposition at url.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}

// TestMetricsAfterJobs: a server's jobs show on the endpoint and in the
// textfile: the sources' last success, bytes and errors, the jobs by
// result, the store's size and dedup ratio, and an empty queue once idle.
func TestMetricsAfterJobs(t *testing.T) {
	f := newFixture(t)
	must(t, os.RemoveAll(f.memB)) // group b's backup fails
	st, err := engine.Open(engine.StoreDir(f.home), chunkstore.OpenOptions{})
	must(t, err)
	defer st.Close()
	textfile := filepath.Join(t.TempDir(), "recall.prom")
	m := NewMetrics(MetricsOptions{Store: st, Textfile: textfile, Log: testLog(t)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := m.Serve(ctx, "127.0.0.1:0")
	must(t, err)

	clock := NewFakeClock(week0.Add(10 * time.Hour))
	r := start(t, f.home, clock, m.Observe)
	r.srv.WaitIdle()
	r.stop()

	pts, err := st.Reader().Points()
	must(t, err)
	if len(pts) != 1 {
		t.Fatalf("%d points, want group a's one", len(pts))
	}
	bytesA := fmt.Sprintf(" %d", pts[0].Stats.Bytes)
	got := scrape(t, "http://"+addr.String()+"/metrics")
	file, err := os.ReadFile(textfile)
	must(t, err)
	for _, text := range []struct{ where, text string }{{"endpoint", got}, {"textfile", string(file)}} {
		for _, want := range []string{
			`recall_jobs_total{job="backup",result="ok"} 1`,
			`recall_jobs_total{job="backup",result="failed"} 1`,
			`recall_source_backup_errors_total{group="a",source=`,
			`recall_source_backup_errors_total{group="b",source=`,
			`recall_source_last_success_timestamp_seconds{group="a",source=`,
			`recall_source_backup_bytes{group="a",source=`,
			"recall_queue_length 0",
			"recall_jobs_running 0",
		} {
			if !strings.Contains(text.text, want) {
				t.Errorf("%s lacks %q:\n%s", text.where, want, text.text)
			}
		}
		for _, l := range strings.Split(text.text, "\n") {
			switch {
			case strings.HasPrefix(l, `recall_source_backup_errors_total{group="a"`) && !strings.HasSuffix(l, " 0"),
				strings.HasPrefix(l, `recall_source_backup_errors_total{group="b"`) && !strings.HasSuffix(l, " 1"),
				strings.HasPrefix(l, `recall_source_backup_bytes{group="a"`) && !strings.HasSuffix(l, bytesA),
				strings.HasPrefix(l, "recall_store_size_bytes ") && strings.HasSuffix(l, " 0"),
				strings.HasPrefix(l, "recall_store_dedup_ratio ") && strings.HasSuffix(l, " 0"):
				t.Errorf("%s: wrong value: %s", text.where, l)
			}
		}
	}
	if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(textfile), "*")); len(matches) != 1 {
		t.Errorf("textfile directory holds %q: a temporary file was left", matches)
	}
}
