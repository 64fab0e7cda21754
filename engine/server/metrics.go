package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/recall-backup/recall/engine"
)

// Metrics are the server's Prometheus metrics, fed by the job events
// (Observe). They are served on metrics.listen and/or written to a
// node_exporter textfile after each job. Names:
//
//	recall_source_last_success_timestamp_seconds{group,source}  newest point the server made
//	recall_source_backup_duration_seconds{group,source}         of the last backup that made a point
//	recall_source_backup_bytes{group,source}                    files' bytes of that point
//	recall_source_backup_stored_bytes{group,source}             bytes it added to the store
//	recall_source_backup_errors_total{group,source}             member backups that failed
//	recall_jobs_total{job,result}                               finished jobs: result ok or failed
//	recall_store_size_bytes                                     the store's files on disk
//	recall_store_dedup_ratio                                    points' bytes over the store's size
//	recall_queue_length                                         jobs waiting for a slot
//	recall_jobs_running                                         jobs running
type Metrics struct {
	o   MetricsOptions
	reg *prometheus.Registry

	lastSuccess *prometheus.GaugeVec
	duration    *prometheus.GaugeVec
	bytes       *prometheus.GaugeVec
	stored      *prometheus.GaugeVec
	errors      *prometheus.CounterVec
	jobs        *prometheus.CounterVec
	storeSize   prometheus.Gauge
	dedup       prometheus.Gauge
	queue       prometheus.Gauge
	running     prometheus.Gauge

	mu sync.Mutex // serialises the store refresh and the textfile
}

// MetricsOptions configure Metrics.
type MetricsOptions struct {
	// Store, if set, is asked for its size and dedup ratio after each
	// job.
	Store *engine.Store
	// Textfile, if set, is rewritten atomically after each job: a
	// node_exporter textfile collector file (*.prom).
	Textfile string
	Log      *slog.Logger // nil: discard
}

// NewMetrics registers the metrics in a registry of their own.
func NewMetrics(o MetricsOptions) *Metrics {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	src := []string{"group", "source"}
	m := &Metrics{
		o:   o,
		reg: prometheus.NewRegistry(),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "recall_source_last_success_timestamp_seconds",
			Help: "Time of the newest point the server made of the source."}, src),
		duration: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "recall_source_backup_duration_seconds",
			Help: "Duration of the source's last backup that made a point."}, src),
		bytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "recall_source_backup_bytes",
			Help: "Bytes of the files of the source's last point."}, src),
		stored: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "recall_source_backup_stored_bytes",
			Help: "Bytes the source's last backup added to the store (compressed)."}, src),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recall_source_backup_errors_total",
			Help: "Backups of the source that failed."}, src),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recall_jobs_total",
			Help: "Jobs finished, by kind (backup, prune, gc) and result (ok, failed)."}, []string{"job", "result"}),
		storeSize: prometheus.NewGauge(prometheus.GaugeOpts{Name: "recall_store_size_bytes",
			Help: "Size of the store's files on disk."}),
		dedup: prometheus.NewGauge(prometheus.GaugeOpts{Name: "recall_store_dedup_ratio",
			Help: "Bytes the store's points hold over the store's size (0: empty)."}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{Name: "recall_queue_length",
			Help: "Jobs waiting for a slot."}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{Name: "recall_jobs_running",
			Help: "Jobs running."}),
	}
	m.reg.MustRegister(m.lastSuccess, m.duration, m.bytes, m.stored, m.errors, m.jobs, m.storeSize, m.dedup, m.queue, m.running)
	return m
}

// Registry is where the metrics are, for a handler or a test.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(m.o.Log.Handler(), slog.LevelError)})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The store's figures are read when they are asked for, not
		// after every job.
		m.mu.Lock()
		m.refreshStoreLocked()
		m.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// Observe is an Options.Observe. With a textfile, a finished job also
// refreshes the store figures and rewrites it, from the job's goroutine;
// the endpoint refreshes them at each scrape.
func (m *Metrics) Observe(e Event) {
	switch e.Kind {
	case "queued":
		m.queue.Inc()
	case "started":
		m.queue.Dec()
		m.running.Inc()
	case "finished":
		m.running.Dec()
		m.finished(e)
	}
}

func (m *Metrics) finished(e Event) {
	res := result(e.Err)
	if res == "warnings" {
		res = "ok" // the label's values are ok, failed, interrupted: a point was made
	}
	m.jobs.WithLabelValues(e.Job, res).Inc()
	for _, r := range e.Results {
		l := prometheus.Labels{"group": e.Group, "source": r.Source}
		if r.Source == "" {
			l["source"] = r.Member
		}
		if r.Point == nil {
			if res != "interrupted" {
				m.errors.With(l).Inc()
			}
			continue
		}
		st := r.Point.Stats
		m.lastSuccess.With(l).Set(float64(r.Point.Time.UnixNano()) / 1e9)
		m.duration.With(l).Set(time.Duration(st.DurationNano).Seconds())
		m.bytes.With(l).Set(float64(st.Bytes))
		m.stored.With(l).Set(float64(st.StoredBytes))
		// A source seen failing only later still has its series at 0.
		m.errors.With(l).Add(0)
	}
	if m.o.Textfile == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refreshStoreLocked()
	if err := m.WriteTextfile(); err != nil {
		m.o.Log.Error("metrics textfile not written", "file", m.o.Textfile, "err", err)
	}
}

// refreshStoreLocked reads the store's size and ratio into their gauges
// (m.mu held).
func (m *Metrics) refreshStoreLocked() {
	if m.o.Store == nil {
		return
	}
	if err := m.refreshStore(); err != nil {
		m.o.Log.Warn("metrics: store size not read", "err", err)
	}
}

func (m *Metrics) refreshStore() error {
	st, err := m.o.Store.Status(context.Background(), nil, time.Now())
	if err != nil {
		return err
	}
	m.storeSize.Set(float64(st.Stored))
	// Each source's ratio is its points' bytes over its stored bytes;
	// their sum over the store's real size is the store's.
	var held float64
	for _, s := range st.Sources {
		held += s.DedupRatio * float64(s.Stored)
	}
	ratio := 0.0
	if st.Stored > 0 {
		ratio = held / float64(st.Stored)
	}
	m.dedup.Set(ratio)
	return nil
}

// WriteTextfile writes the metrics to MetricsOptions.Textfile atomically
// (a temporary file beside it, whose name does not end in .prom, renamed
// over it): node_exporter reads the file at any time.
func (m *Metrics) WriteTextfile() error {
	if err := prometheus.WriteToTextfile(m.o.Textfile, m.reg); err != nil {
		return fmt.Errorf("metrics textfile %s: %w (create its directory or change metrics.textfile)", m.o.Textfile, err)
	}
	return nil
}

// Serve serves the metrics at /metrics on listen until ctx ends; it
// returns the address it listens on once it does.
func (m *Metrics) Serve(ctx context.Context, listen string) (net.Addr, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("metrics endpoint: %w (change metrics.listen)", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.o.Log.Error("metrics endpoint stopped", "listen", listen, "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	return ln.Addr(), nil
}
