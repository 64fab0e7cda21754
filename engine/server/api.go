package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/recall-backup/recall/engine"
	"golang.org/x/sys/unix"
)

// APIVersion is the path prefix of the socket API; a change that breaks
// clients gets a new one.
const APIVersion = "/v1"

// HomeHeader names, on every API response, the home the server owns, so
// a client given another home does not act on the wrong one.
const HomeHeader = "Recall-Home"

// SocketGroup is the group that may connect to the socket (read
// endpoints); write endpoints are for root.
const SocketGroup = "recall"

// keptJobs is how many ended jobs the server remembers for the API; the
// catalog keeps them all.
const keptJobs = 200

// followInterval is how often a followed job's progress is sent while
// nothing else changes.
const (
	followInterval    = time.Second
	minFollowInterval = 100 * time.Millisecond
)

// JobView is one job of the server's queue, as the API shows it.
type JobView struct {
	ID       uint64    `json:"id"`
	Kind     string    `json:"kind"` // backup, prune, gc
	Group    string    `json:"group,omitempty"`
	Retry    int       `json:"retry,omitempty"`
	State    string    `json:"state"` // queued, running, ok, warnings, interrupted, failed
	Queued   time.Time `json:"queued"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Error    string    `json:"error,omitempty"`
	// Waiting names the holder of the store lock a running job waits
	// for (pid, host, what it does), until it has the lock.
	Waiting string       `json:"waiting,omitempty"`
	Members []MemberView `json:"members,omitempty"`
}

// Done reports whether the job has ended.
func (j *JobView) Done() bool { return !j.Finished.IsZero() }

// MemberView is one member of a backup job.
type MemberView struct {
	Member     string    `json:"member"`
	Source     string    `json:"source,omitempty"`
	State      string    `json:"state"` // running, ok, warnings, interrupted, failed
	CatalogJob uint64    `json:"catalog_job,omitempty"`
	Point      string    `json:"point,omitempty"`
	Error      string    `json:"error,omitempty"`
	Progress   *Progress `json:"progress,omitempty"`
}

// Progress is a member backup's progress (engine.Status) in the API.
type Progress struct {
	FilesDone  int64 `json:"files_done"`
	FilesTotal int64 `json:"files_total"`
	BytesDone  int64 `json:"bytes_done"`
	BytesTotal int64 `json:"bytes_total"`
	Errors     int64 `json:"errors"` // entries skipped or flagged so far
	// TotalsFinal: the scan ended, so the totals are complete.
	TotalsFinal bool     `json:"totals_final"`
	Current     []string `json:"current,omitempty"` // paths in work, oldest first
}

func progressOf(p *engine.Progress) *Progress {
	st := p.Status()
	return &Progress{FilesDone: st.FilesDone, FilesTotal: st.FilesTotal, BytesDone: st.BytesDone, BytesTotal: st.BytesTotal,
		Errors: st.Errors, TotalsFinal: st.TotalsFinal, Current: st.Current}
}

// ServerInfo is GET /v1/ping, and the server part of GET /v1/status.
type ServerInfo struct {
	PID         int       `json:"pid"`
	Home        string    `json:"home"`
	Socket      string    `json:"socket"`
	Started     time.Time `json:"started"`
	Concurrency int       `json:"concurrency"`
}

// GroupRun is when a group runs next, in GET /v1/status.
type GroupRun struct {
	Group   string    `json:"group"`
	Covered time.Time `json:"covered,omitzero"` // latest run time made
	NextRun time.Time `json:"next_run,omitzero"`
	RetryAt time.Time `json:"retry_at,omitzero"`
	// NextTape is when the group's tape goal writes next (a retry after a
	// failed write included); zero with no goal.
	NextTape time.Time `json:"next_tape,omitzero"`
	// Running is the server job of the group's backup queued or running
	// now (0: none).
	Running uint64 `json:"running,omitempty"`
	Error   string `json:"error,omitempty"`
}

// StatusView is GET /v1/status: the store's status (the fields of
// 'recall status --json' without a server) and the server's.
type StatusView struct {
	*engine.StoreStatus
	StoreError string     `json:"store_error,omitempty"`
	Server     ServerInfo `json:"server"`
	Schedule   []GroupRun `json:"schedule"`
	Jobs       []JobView  `json:"jobs"` // queued and running
	Alerts     int        `json:"alerts"`
}

// hooks is the server's side of the socket API and alerts: it follows
// jobs through Observe.
type hooks struct {
	alerts  *alerts
	started time.Time
	// listener is the API's socket, taken by New (claimSocket) and
	// served by Run; socketGroup is the group it was given.
	listener    *net.UnixListener
	socketGroup string

	jobsMu  sync.Mutex
	jobs    []*liveJob // oldest first
	nextJob uint64
}

type liveJob struct {
	view     JobView
	progress map[string]*engine.Progress // of running members
	changed  chan struct{}               // closed and replaced at each event
}

func (s *Server) initHooks() error {
	a, err := loadAlerts(s.o.Home)
	if err != nil {
		return err
	}
	s.alerts, s.started, s.nextJob = a, time.Now(), 1
	user := s.o.Observe
	s.o.Observe = func(e Event) {
		s.track(e)
		if user != nil {
			user(e)
		}
	}
	return nil
}

// track follows e in the live job list and the alerts. It is called with
// s.mu held (enqueue), so it takes no lock of the scheduler.
func (s *Server) track(e Event) {
	now := s.o.Clock.Now()
	var evs []AlertEvent
	if e.Kind == "finished" {
		// The alerts first: a follower woken by the job's end (below)
		// may ask for them at once.
		var err error
		if evs, err = s.alerts.noteJob(e, now); err != nil {
			s.o.Log.Error("alerts not saved; they are kept in memory until the next save", "err", err)
		}
	}
	s.jobsMu.Lock()
	var j *liveJob
	for i := len(s.jobs) - 1; i >= 0; i-- {
		if x := s.jobs[i]; x.view.Kind == e.Job && x.view.Group == e.Group && !x.view.Done() {
			j = x
			break
		}
	}
	if e.Kind == "queued" || j == nil {
		j = &liveJob{view: JobView{ID: s.nextJob, Kind: e.Job, Group: e.Group, Retry: e.Retry, State: "queued", Queued: now}, progress: map[string]*engine.Progress{}, changed: make(chan struct{})}
		s.nextJob++
		s.jobs = append(s.jobs, j)
		s.trimJobs()
	}
	switch e.Kind {
	case "started":
		j.view.State, j.view.Started = "running", now
	case "waiting":
		j.view.Waiting = e.Waiting
	case "member":
		j.view.Waiting = "" // it has the lock
		j.view.Members = append(j.view.Members, MemberView{Member: e.Member, State: "running"})
		if e.Progress != nil {
			j.progress[e.Member] = e.Progress
		}
	case "finished":
		j.view.Waiting = ""
		j.view.Finished, j.view.State = now, result(e.Err)
		if e.Err != nil {
			j.view.Error = e.Err.Error()
		}
		for _, r := range e.Results {
			m := MemberView{Member: r.Member, Source: r.Source, CatalogJob: r.Job, State: result(r.Err)}
			if r.Point != nil {
				m.Point = r.Point.ID.String()
				if r.Err != nil {
					m.State = "warnings"
				}
			}
			if r.Err != nil {
				m.Error = r.Err.Error()
			}
			if p := j.progress[r.Member]; p != nil {
				m.Progress = progressOf(p)
				m.Progress.Current = nil
			}
			if i := slices.IndexFunc(j.view.Members, func(v MemberView) bool { return v.Member == r.Member }); i >= 0 {
				j.view.Members[i] = m
			} else {
				j.view.Members = append(j.view.Members, m)
			}
		}
		clear(j.progress)
	}
	close(j.changed)
	j.changed = make(chan struct{})
	s.jobsMu.Unlock()
	for _, ev := range evs {
		s.o.Log.Warn("alert "+ev.Kind, "alert", ev.Alert.ID, "job", ev.Alert.Job, "group", ev.Alert.Group, "source", ev.Alert.Source, "action", ev.Alert.Action)
		if s.o.OnAlert != nil {
			s.o.OnAlert(ev)
		}
	}
}

// trimJobs forgets the oldest ended jobs past keptJobs; s.jobsMu is held.
func (s *Server) trimJobs() {
	for n := len(s.jobs); n > keptJobs; n-- {
		i := slices.IndexFunc(s.jobs, func(j *liveJob) bool { return j.view.Done() })
		if i < 0 {
			return
		}
		s.jobs = slices.Delete(s.jobs, i, i+1)
	}
}

// snapshot copies j's view with its members' progress now; s.jobsMu is
// held.
func (j *liveJob) snapshot() JobView {
	v := j.view
	v.Members = slices.Clone(v.Members)
	for i := range v.Members {
		if p := j.progress[v.Members[i].Member]; p != nil {
			v.Members[i].Progress = progressOf(p)
		}
	}
	return v
}

// Jobs returns the jobs the server queued since it started (up to the
// last keptJobs ended ones), newest first.
func (s *Server) Jobs() []JobView {
	s.jobsMu.Lock()
	defer s.jobsMu.Unlock()
	out := make([]JobView, 0, len(s.jobs))
	for i := len(s.jobs) - 1; i >= 0; i-- {
		out = append(out, s.jobs[i].snapshot())
	}
	return out
}

// job returns job id's view and a channel closed at its next change.
func (s *Server) job(id uint64) (JobView, <-chan struct{}, bool) {
	s.jobsMu.Lock()
	defer s.jobsMu.Unlock()
	for _, j := range s.jobs {
		if j.view.ID == id {
			return j.snapshot(), j.changed, true
		}
	}
	return JobView{}, nil, false
}

// Alerts returns the active alerts, oldest first.
func (s *Server) Alerts() []Alert { return s.alerts.list() }

// Ack closes alert id (ErrNoAlert if none is active).
func (s *Server) Ack(id uint64) (Alert, error) {
	ev, err := s.alerts.ack(id)
	if ev == nil {
		return Alert{}, err
	}
	if err != nil {
		s.o.Log.Error("alerts not saved", "err", err)
	}
	s.o.Log.Info("alert acked", "alert", id)
	if s.o.OnAlert != nil {
		s.o.OnAlert(*ev)
	}
	return ev.Alert, nil
}

// ErrJobBusy: a backup of the group is queued or running already; the
// error of Backup names its job.
var ErrJobBusy = errors.New("a backup of the group is queued or running")

// Backup queues a backup of every member of group now, outside its
// schedule, and returns its job's id. When one is queued or running
// already it returns that job's id and an error wrapping ErrJobBusy.
func (s *Server) Backup(group string) (uint64, error) {
	var g engine.Group
	err := engine.WithCatalog(s.o.Home, time.Minute, s.warn, func(cat *engine.Catalog) error {
		var err error
		g, err = cat.Group(group)
		return err
	})
	if err != nil {
		return 0, err
	}
	if len(g.Members) == 0 {
		return 0, fmt.Errorf("group %s has no members: add one with 'recall group add %s --member PATH'", g.Name, g.Name)
	}
	// Remembered in the state until made: a stop or a crash before it
	// ends leaves it to the next start, as a scheduled run.
	queued := s.enqueue(&task{kind: "backup", group: g, request: s.o.Clock.Now()})
	id := s.activeBackup(g.Name)
	if !queued {
		return id, fmt.Errorf("group %s: %w as job %d (follow it with 'recall jobs --follow %d')", g.Name, ErrJobBusy, id, id)
	}
	s.saveState()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return id, nil
}

// activeBackup is the id of the backup of group queued or running (0:
// none).
func (s *Server) activeBackup(group string) uint64 {
	s.jobsMu.Lock()
	defer s.jobsMu.Unlock()
	for i := len(s.jobs) - 1; i >= 0; i-- {
		if j := s.jobs[i]; j.view.Kind == "backup" && j.view.Group == group && !j.view.Done() {
			return j.view.ID
		}
	}
	return 0
}

// Status is GET /v1/status.
func (s *Server) Status(ctx context.Context) StatusView {
	v := StatusView{Server: s.info(), Schedule: []GroupRun{}, Jobs: []JobView{}, Alerts: len(s.alerts.list())}
	var groups []engine.Group
	var sources []engine.Source
	var tape *engine.TapeState
	var jobs []engine.Job
	err := engine.WithCatalog(s.o.Home, time.Minute, s.warn, func(cat *engine.Catalog) error {
		var err error
		if groups, err = cat.Groups(); err != nil {
			return err
		}
		if sources, err = cat.Sources(); err != nil {
			return err
		}
		if tape, err = cat.TapeState(); err != nil {
			return err
		}
		jobs, err = cat.Jobs(200)
		return err
	})
	if err == nil {
		v.StoreStatus, err = s.o.Store.Status(ctx, groups, s.o.Clock.Now())
	}
	running := map[string]uint64{}
	for _, g := range groups {
		if id := s.activeBackup(g.Name); id != 0 {
			running[g.Name] = id
		}
	}
	if err == nil {
		v.StoreStatus.AddSources(sources)
		v.StoreStatus.AddImageWarnings(sources, groups)
		v.StoreStatus.AddTape(tape, groups)
		v.StoreStatus.AddJobs(jobs) // as the status without a server says it
		v.StoreStatus.AddRunning(running)
	}
	if err != nil {
		v.StoreError = err.Error()
	}
	if v.StoreStatus != nil && v.Sources == nil {
		v.Sources = []engine.SourceStatus{}
	}
	s.mu.Lock()
	for _, g := range groups {
		r := GroupRun{Group: g.Name}
		if gs := s.state.Groups[g.Name]; gs != nil {
			r.Covered = gs.Covered
			if !gs.Tape.IsZero() {
				r.NextTape, _ = g.Policy.NextTapeRun(gs.Tape)
			}
			if !gs.TapeRetry.IsZero() {
				r.NextTape = gs.TapeRetry
			}
		}
		if rt := s.retries[g.Name]; rt != nil {
			r.RetryAt = rt.at
		}
		r.Running = running[g.Name]
		switch {
		case len(g.Members) == 0:
			r.Error = "no members"
		case r.Covered.IsZero() && r.Running != 0:
			// Its first backup is the one running: no next run to
			// name until it ends (it was named as "now", whenever
			// asked).
		case r.Covered.IsZero():
			r.NextRun = s.o.Clock.Now() // a new group is backed up at once
		default:
			if r.NextRun, err = g.Policy.NextRun(r.Covered); err != nil {
				r.Error = err.Error()
			}
		}
		v.Schedule = append(v.Schedule, r)
	}
	s.mu.Unlock()
	for _, j := range s.Jobs() {
		if !j.Done() {
			v.Jobs = append(v.Jobs, j)
		}
	}
	return v
}

func (s *Server) info() ServerInfo {
	return ServerInfo{PID: os.Getpid(), Home: s.o.Home, Socket: s.o.Socket, Started: s.started, Concurrency: s.o.Concurrency}
}

// peerKey is the context key of a connection's peer uid.
type peerKey struct{}

// peerUID returns the uid of the process at the other end of c
// (SO_PEERCRED: the kernel's word, not the client's).
func peerUID(c net.Conn) (uint32, error) {
	if lc, ok := c.(*limitedConn); ok {
		c = lc.Conn
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("not a unix socket connection: %T", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return cred.Uid, nil
}

// MayWrite decides, from the peer's uid, whether a caller may use the
// write endpoints: root only. Reading needs only the right to connect,
// which the socket's mode and group give.
func MayWrite(uid uint32) bool { return uid == 0 }

// Handler is the API's HTTP handler; each request's context must carry
// the peer's uid (Serve's connections do), else writes are refused.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+APIVersion+"/ping", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.info())
	})
	mux.HandleFunc("GET "+APIVersion+"/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Status(r.Context()))
	})
	mux.HandleFunc("GET "+APIVersion+"/jobs", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"jobs": s.Jobs()})
	})
	mux.HandleFunc("GET "+APIVersion+"/jobs/{id}", s.getJob)
	// A group created or changed on the home (group create, edit, apply
	// write the catalog themselves): the scheduler looks now, not at its
	// next minute, so a new group is backed up at once, as status says.
	mux.HandleFunc("POST "+APIVersion+"/wake", s.write(func(w http.ResponseWriter, r *http.Request) {
		s.Wake()
		writeJSON(w, http.StatusOK, map[string]any{})
	}))
	mux.HandleFunc("POST "+APIVersion+"/backup", s.write(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Group string `json:"group"`
			// Source is a registered source to ingest now, with Settle
			// (a Go duration, "" for the source's, "0s" for none) for
			// this run.
			Source string `json:"source"`
			Settle string `json:"settle"`
		}
		err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req)
		var settle time.Duration
		if err == nil && req.Settle != "" {
			settle, err = time.ParseDuration(req.Settle)
		}
		if err != nil || (req.Group == "") == (req.Source == "") || settle < 0 {
			why := ""
			var tooBig *http.MaxBytesError
			switch {
			case errors.As(err, &tooBig):
				why = " (the body is over 64 KiB)"
			case err != nil:
				why = fmt.Sprintf(" (%v)", err)
			case settle < 0:
				why = " (settle is negative)"
			}
			writeError(w, http.StatusBadRequest, fmt.Errorf(`body: give {"group": "NAME"} or {"source": "NAME", "settle": "2m"}%s`, why))
			return
		}
		if req.Settle != "" && settle == 0 {
			settle = engine.NoSettle
		}
		var id uint64
		if req.Group != "" {
			id, err = s.Backup(req.Group)
		} else {
			id, err = s.BackupSource(req.Source, settle)
		}
		switch {
		case errors.Is(err, ErrJobBusy):
			writeJSON(w, http.StatusConflict, map[string]any{"jobs": []uint64{id}, "error": err.Error()})
		case errors.Is(err, engine.ErrNoGroup), errors.Is(err, engine.ErrNoSource):
			writeError(w, http.StatusNotFound, err)
		case err != nil:
			writeError(w, http.StatusUnprocessableEntity, err)
		default:
			writeJSON(w, http.StatusAccepted, map[string]any{"jobs": []uint64{id}})
		}
	}))
	mux.HandleFunc("GET "+APIVersion+"/alerts", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"alerts": s.Alerts()})
	})
	mux.HandleFunc("POST "+APIVersion+"/alerts/{id}/ack", s.write(func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("alert id %q: give the number 'recall alerts' shows", r.PathValue("id")))
			return
		}
		a, err := s.Ack(id)
		if errors.Is(err, ErrNoAlert) {
			writeError(w, http.StatusNotFound, err)
			return
		}
		writeJSON(w, http.StatusOK, a)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HomeHeader, s.o.Home)
		if _, pattern := mux.Handler(r); pattern == "" {
			// No call matches: net/http answers 404 or 405 in plain
			// text; the API's errors are JSON.
			var rec discardWriter
			rec.header = http.Header{}
			mux.ServeHTTP(&rec, r)
			why := "no such call"
			if allow := rec.header.Get("Allow"); rec.code == http.StatusMethodNotAllowed {
				w.Header().Set("Allow", allow)
				why = "not allowed with this method; allowed: " + allow
			}
			writeError(w, rec.code, fmt.Errorf("%s %s: %s (the API calls are listed in the README)", r.Method, r.URL.Path, why))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// discardWriter keeps the status and header of an answer and drops its
// body.
type discardWriter struct {
	header http.Header
	code   int
}

func (d *discardWriter) Header() http.Header { return d.header }
func (d *discardWriter) Write(b []byte) (int, error) {
	if d.code == 0 {
		d.code = http.StatusOK
	}
	return len(b), nil
}
func (d *discardWriter) WriteHeader(code int) { d.code = code }

// write wraps a write endpoint: root only.
func (s *Server) write(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		uid, ok := r.Context().Value(peerKey{}).(uint32)
		switch {
		case !ok:
			writeError(w, http.StatusForbidden, fmt.Errorf("%s %s is for root (uid 0), and the kernel did not say who you are", r.Method, r.URL.Path))
			return
		case !MayWrite(uid):
			writeError(w, http.StatusForbidden, fmt.Errorf("%s %s is for root (uid 0); you are uid %d: run it with sudo", r.Method, r.URL.Path, uid))
			return
		}
		h(w, r)
	}
}

// getJob is GET /v1/jobs/{id}; with ?follow=1 it streams the job as
// NDJSON, a line at each change and every followInterval (or
// ?interval=DURATION, at least minFollowInterval), until it ends.
func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("job id %q: give the number 'recall jobs' shows", r.PathValue("id")))
		return
	}
	v, changed, ok := s.job(id)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("job %d: not among the server's jobs (it may be older than the last %d; 'recall jobs' lists the catalog's)", id, keptJobs))
		return
	}
	if f := r.URL.Query().Get("follow"); f == "" || f == "0" || f == "false" {
		writeJSON(w, http.StatusOK, v)
		return
	}
	every := followInterval
	if q := r.URL.Query().Get("interval"); q != "" {
		d, err := time.ParseDuration(q)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("interval %q: give a duration like 500ms or 2s", q))
			return
		}
		every = max(d, minFollowInterval)
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if err := enc.Encode(v); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		if v.Done() {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-tick.C:
		}
		v, changed, _ = s.job(id)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b, _ := json.MarshalIndent(v, "", "  ")
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// ErrSocketBusy: another recall serve (or something else) answers on
// the API's socket. It is an ErrHomeBusy too (errors.Is), so that the
// command line exits 6 for it as for a home held by another server,
// while its message says what is taken: the socket, not the home.
var ErrSocketBusy error = socketBusy{}

type socketBusy struct{}

func (socketBusy) Error() string        { return "another recall serve answers on the socket" }
func (socketBusy) Is(target error) bool { return target == ErrHomeBusy }

// socketTaken says who answers on the socket at path, as an error
// wrapping ErrSocketBusy, or returns nil when nothing does (no socket, or
// a stale one).
func socketTaken(path string) error {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil
	}
	c.Close()
	fix := "stop it, or give this server another socket with socket = in its configuration"
	who, err := pingSocket(path)
	if err != nil {
		return fmt.Errorf("socket %s: %w, and does not say which (%v): %s", path, ErrSocketBusy, err, fix)
	}
	return fmt.Errorf("socket %s: %w: pid %d, home %s, started %s: %s", path, ErrSocketBusy, who.PID, who.Home,
		who.Started.Format(time.RFC3339), fix)
}

// pingSocket asks the server at the socket path who it is (GET /v1/ping).
func pingSocket(path string) (ServerInfo, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
	defer c.CloseIdleConnections()
	var info ServerInfo
	resp, err := c.Get("http://recall" + APIVersion + "/ping")
	if err != nil {
		return info, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return info, fmt.Errorf("ping answered %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || info.PID == 0 {
		return info, fmt.Errorf("ping answered no recall serve's ServerInfo (%v)", err)
	}
	return info, nil
}

// Listen makes the API's socket at path: its directory is created, a
// stale socket (nothing answers on it) replaced, and the socket made mode
// 0660 with group SocketGroup when it exists, else root's group (then
// only root can connect); the group's name is returned. A socket that
// something answers on is refused (ErrSocketBusy), naming the server's
// pid and home when it says them.
func Listen(path string) (*net.UnixListener, string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, "", fmt.Errorf("socket directory: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		if err := socketTaken(path); err != nil {
			return nil, "", err
		}
		if err := os.Remove(path); err != nil {
			return nil, "", fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	// The mode is right from the start: a chmod after the bind would
	// leave a moment in which anyone could connect.
	old := syscall.Umask(0o117)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, "", fmt.Errorf("listen on socket %s: %w (give another path with socket = in the configuration)", path, err)
	}
	group, gid := "root", 0
	if g, err := user.LookupGroup(SocketGroup); err == nil {
		if n, err := strconv.Atoi(g.Gid); err == nil {
			group, gid = SocketGroup, n
		}
	}
	if err := os.Chown(path, -1, gid); err != nil {
		l.Close()
		return nil, "", fmt.Errorf("socket %s: give it group %s: %w", path, group, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, "", fmt.Errorf("socket %s: %w", path, err)
	}
	return l, group, nil
}

// httpServer answers the API with each connection's peer credentials.
func (s *Server) httpServer() *http.Server {
	h := s.Handler()
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength != 0 {
				// A body that never ends must not hold the connection
				// (nor one a refusal leaves unread, which the server
				// reads on to keep the connection). Not a ReadTimeout:
				// that would end the followers' long responses too.
				_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyTimeout))
			}
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		// Idle keep-alive connections go; a request's body has
		// bodyTimeout (set above). Together with apiMaxConns,
		// a client holding connections open cannot use up the
		// server's descriptors and lock everyone else out.
		IdleTimeout: time.Minute,
		// net/http's own complaints (an accept error, a bad TLS-less
		// request) go to the server's log, in its format.
		ErrorLog: slog.NewLogLogger(s.o.Log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			uid, err := peerUID(c)
			if err != nil {
				s.o.Log.Warn("API connection without peer credentials: read only", "err", err)
				return ctx
			}
			return context.WithValue(ctx, peerKey{}, uid)
		},
	}
}

// apiMaxConns bounds the API's open connections: more wait to be
// accepted. Far above what the command line and a few followers use.
const apiMaxConns = 256

// limitConns is l accepting at most n connections at once; more wait
// in the socket's backlog until one closes. Its connections are
// *limitedConn, which peerUID unwraps (golang.org/x/net's LimitListener
// hides the unix connection whose peer credentials the API needs).
func limitConns(l net.Listener, n int) net.Listener {
	return &connLimit{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type connLimit struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *connLimit) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *connLimit) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// bodyTimeout is how long a request body may take to arrive.
var bodyTimeout = 30 * time.Second

// claimSocket listens on Options.Socket, if set (New): a socket another
// server answers on fails the start before anything with side effects
// (mounts, alerts, notifications, jobs) has begun.
func (s *Server) claimSocket() error {
	if s.o.Socket == "" {
		return nil
	}
	l, group, err := Listen(s.o.Socket)
	if err != nil {
		return err
	}
	s.listener, s.socketGroup = l, group
	return nil
}

// releaseSocket closes the socket claimSocket took if Run did not serve
// it (Close after a New whose Run never ran).
func (s *Server) releaseSocket() {
	s.jobsMu.Lock()
	l := s.listener
	s.listener = nil
	s.jobsMu.Unlock()
	if l != nil {
		l.Close()
	}
}

// startAPI serves the API on the socket claimSocket took, if any, and
// returns what stops it.
func (s *Server) startAPI() (func(), error) {
	s.jobsMu.Lock()
	l, group := s.listener, s.socketGroup
	s.listener = nil
	s.jobsMu.Unlock()
	if l == nil {
		return func() {}, nil
	}
	if group != SocketGroup {
		s.o.Log.Warn("group "+SocketGroup+" does not exist: the socket's group is root, so only root can use the API (create the group to let its members read)", "socket", s.o.Socket)
	}
	s.o.Log.Info("API listening", "socket", s.o.Socket, "group", group, "mode", "0660")
	srv := s.httpServer()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(limitConns(l, apiMaxConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.o.Log.Error("API stopped", "err", err)
		}
	}()
	// Close, not Shutdown: followers of running jobs would hold a
	// graceful stop for as long as their jobs run.
	return func() { srv.Close(); <-done }, nil
}
