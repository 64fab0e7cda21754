package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
)

// Options configure a Server.
type Options struct {
	Home  string
	Store *engine.Store
	// Concurrency is how many jobs run at once (0: one per core).
	Concurrency int
	Clock       Clock        // nil: WallClock
	Log         *slog.Logger // nil: discard
	// SmbConf is the Samba configuration beside which recall keeps its
	// shares ("": not looked at): a retention prune warns of each
	// recovery share that served a point it forgot.
	SmbConf string
	// Observe, if set, is told what happens to jobs, from the goroutine
	// doing the work; it must not block for long. It is the seam for the
	// socket API, alerts, notifications and metrics.
	Observe func(Event)
	// Backoff are the delays before each retry of a job that failed for a
	// transient reason (nil: DefaultBackoff; empty: no retries).
	Backoff []time.Duration
	// StopGrace is how long Run lets running jobs finish once its context
	// is cancelled before it cancels them (0: DefaultStopGrace).
	StopGrace time.Duration
	// MaxWait bounds each sleep of the scheduler, so that a wall clock
	// that jumps is noticed (0: one minute).
	MaxWait time.Duration
	// LockWait is how long a job waits for the store lock held by
	// another process (0: DefaultLockWait).
	LockWait time.Duration

	// The socket API and alerts (api.go, alerts.go).
	//
	// Socket is the unix socket the API listens on while Run runs (""
	// none). OnAlert, if set, hears each alert opened, cleared or acked,
	// from the goroutine that decided it; it must not block for long.
	Socket  string
	OnAlert func(AlertEvent)
}

// Defaults of Options.
var (
	DefaultBackoff   = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute}
	DefaultStopGrace = 30 * time.Second
	DefaultLockWait  = 10 * time.Minute
)

// gcInterval is the longest the server goes without garbage collection;
// a prune that dropped points asks for one sooner.
const gcInterval = 24 * time.Hour

// Event is one step of a job, as Options.Observe hears of it.
type Event struct {
	Kind   string // queued, started, waiting (for the store lock), member (a member's backup has its session), finished
	Job    string // backup, prune, gc, check
	Group  string // "" for gc
	Member string // for member
	// Retry counts the retries of this job (0: the scheduled run).
	Retry int
	Err   error // for finished
	// Progress counts a member's backup as it runs (member events).
	Progress *engine.Progress
	// Results are how each member of a backup went (finished backups).
	Results []engine.MemberResult
	// Waiting names the holder of the store lock a running job waits
	// for (waiting events).
	Waiting string
}

// ErrShutdown is the cause of the cancellation of jobs still running
// when the server stops.
var ErrShutdown = errors.New("recall serve stopped")

// Server runs the schedules of a home's protection groups.
type Server struct {
	o     Options
	lock  *homeLock
	state *state

	mu         sync.Mutex
	cond       *sync.Cond
	queue      []*task
	active     int
	busy       map[string]bool // exclusivity keys of running tasks
	sleeping   bool            // the scheduler waits on the clock
	sleepUntil time.Time       // until then
	pending    bool            // a task ended since the scheduler last looked
	retries    map[string]*retry
	watches    map[string]*sourceWatch // registered sources, by group and name (ingest.go)
	wantGC     bool
	interrupts []uint64 // catalog jobs cancelled by a shutdown
	wake       chan struct{}
	wg         sync.WaitGroup

	hooks  // the socket API and alerts
	checks // consistency checks (check.go)
}

// task is one queued job.
type task struct {
	kind  string // backup, prune, gc, check, tape
	group engine.Group
	// covers is the scheduled run time a backup stands for (zero for a
	// retry): the latest one due when it was queued.
	covers time.Time
	// planned: slot, not the clock at each member's start, says which
	// recovery point the backup makes (engine.GroupBackupOptions.Planned).
	// slot is the latest recovery point time among the run times a
	// scheduled run covers (zero: none, a sync): a run made late, after
	// downtime or behind a long job of the group, still makes it.
	planned bool
	slot    time.Time
	// request is when a backup of the whole group was asked for through
	// the API (zero: a run of the schedule, a retry, an ingestion).
	request time.Time
	retry   int
	// settle overrides the settle time of the registered sources among
	// a backup's members (0: their own).
	settle time.Duration
	res    []engine.MemberResult // a backup's, once it ran
}

func (t *task) key() string {
	if t.kind == "gc" || t.kind == "check" || t.kind == "tape" {
		// A check lists the packs that a collection may remove.
		return "gc"
	}
	// A group's backups and prunes never overlap: each member source is
	// written by one session at a time.
	return "group:" + t.group.Name
}

type retry struct {
	at      time.Time
	members []string
	n       int
	// planned and slot are the failed run's: a retry makes the recovery
	// point its run was for, however late the back-off brings it.
	planned bool
	slot    time.Time
}

// New takes the home (a second server on it fails, wrapping ErrHomeBusy
// and naming the first's pid), reads the schedule's state and takes the
// API's socket (one another server answers on fails, wrapping
// ErrSocketBusy, itself an ErrHomeBusy, and naming that server).
func New(o Options) (*Server, error) {
	if o.Clock == nil {
		o.Clock = WallClock{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = runtime.NumCPU()
	}
	if o.Backoff == nil {
		o.Backoff = DefaultBackoff
	}
	if o.StopGrace <= 0 {
		o.StopGrace = DefaultStopGrace
	}
	if o.MaxWait <= 0 {
		o.MaxWait = time.Minute
	}
	if o.LockWait <= 0 {
		o.LockWait = DefaultLockWait
	}
	if err := engine.RequireStore(o.Home); err != nil {
		return nil, err
	}
	l, err := lockHome(o.Home)
	if err != nil {
		return nil, err
	}
	st, err := loadState(o.Home)
	if err != nil {
		l.release()
		return nil, err
	}
	s := &Server{o: o, lock: l, state: st, busy: map[string]bool{}, retries: map[string]*retry{}, watches: map[string]*sourceWatch{}, wake: make(chan struct{}, 1)}
	s.cond = sync.NewCond(&s.mu)
	if err := s.initHooks(); err != nil {
		l.release()
		return nil, err
	}
	if err := s.initChecks(); err != nil {
		l.release()
		return nil, err
	}
	// Here, not in Run: the caller starts mounts (which may open alerts
	// and send notifications) between New and Run, and a server whose
	// socket another one answers on must stop before any of that.
	if err := s.claimSocket(); err != nil {
		l.release()
		return nil, err
	}
	return s, nil
}

// Close gives up the home and the API's socket. Run must have returned.
func (s *Server) Close() {
	s.releaseSocket()
	s.lock.release()
}

// Run records the jobs a dead process left running as interrupted, then
// runs the schedule until ctx is cancelled. Then it lets running jobs
// finish for up to StopGrace, cancels the rest with cause ErrShutdown and
// records them as interrupted; their runs are made at the next start.
func (s *Server) Run(ctx context.Context) error {
	if err := s.recordInterrupted(nil); err != nil {
		return err
	}
	stopAPI, err := s.startAPI()
	if err != nil {
		return err
	}
	defer stopAPI()
	jobCtx, cancelJobs := context.WithCancelCause(context.Background())
	defer cancelJobs(nil)
	for {
		// Whatever ends from here on, this tick or the wake it sends
		// sees.
		s.mu.Lock()
		s.pending = false
		s.mu.Unlock()
		next := s.tick(jobCtx)
		wait := min(next.Sub(s.o.Clock.Now()), s.o.MaxWait)
		timer := s.o.Clock.After(wait)
		s.mu.Lock()
		s.sleepUntil = s.o.Clock.Now().Add(wait)
		s.mu.Unlock()
		s.setSleeping(true)
		select {
		case <-ctx.Done():
			s.setSleeping(false)
			return s.shutdown(cancelJobs)
		case <-timer:
		case <-s.wake:
		}
		s.setSleeping(false)
	}
}

func (s *Server) setSleeping(v bool) {
	s.mu.Lock()
	s.sleeping = v
	s.cond.Broadcast()
	s.mu.Unlock()
}

// WaitIdle returns when no job is queued or running and the scheduler
// waits on its clock: with a FakeClock, the moment to move the clock on.
func (s *Server) WaitIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A clock moved to or past sleepUntil has woken the scheduler, even
	// if its goroutine has not run yet.
	for !(s.sleeping && !s.pending && s.active == 0 && len(s.queue) == 0 && s.o.Clock.Now().Before(s.sleepUntil)) {
		s.cond.Wait()
	}
}

func (s *Server) shutdown(cancelJobs context.CancelCauseFunc) error {
	s.mu.Lock()
	s.queue = nil
	n := s.active
	s.mu.Unlock()
	if n > 0 {
		s.o.Log.Info("stopping: waiting for running jobs", "jobs", n, "grace", s.o.StopGrace)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.o.StopGrace):
		// The bound is the service manager's patience, so it is wall time.
		// Cancelled first, then logged: whoever reads the line knows the
		// jobs' contexts are done.
		cancelJobs(ErrShutdown)
		s.o.Log.Warn("stopping: cancelled running jobs", "grace", s.o.StopGrace)
		<-done
	}
	s.mu.Lock()
	nums := s.interrupts
	s.mu.Unlock()
	if len(nums) > 0 {
		if err := s.recordInterrupted(nums); err != nil {
			s.o.Log.Error("jobs cancelled by the stop not recorded as interrupted", "err", err)
		}
	}
	s.o.Log.Info("jobs stopped")
	return nil
}

// recordInterrupted stores as interrupted, in the catalog, the jobs
// numbered nums, or (nums nil) every job left running by a process that
// is gone, this one's pid included: at start nothing of this server runs,
// so a job under its pid is a dead process's whose pid was reused.
func (s *Server) recordInterrupted(nums []uint64) error {
	host, _ := os.Hostname()
	now := time.Now().UTC()
	return engine.WithCatalog(s.o.Home, time.Minute, s.warn, func(cat *engine.Catalog) error {
		jobs, err := cat.Jobs(0)
		if err != nil {
			return err
		}
		for _, j := range jobs {
			var hit bool
			if nums == nil {
				// A job shows as interrupted when the process that ran it
				// is gone; recorded as such (FoundInterrupted set, or
				// Finished by a stop), it is history and keeps what it
				// says.
				hit = (j.Status == "interrupted" && j.Finished.IsZero() && j.FoundInterrupted.IsZero()) || (j.Status == "running" && j.PID == os.Getpid() && j.Host == host)
			} else {
				hit = slices.Contains(nums, j.Number)
			}
			if !hit {
				continue
			}
			why := "the process running it ended before the job did (killed or crashed); recall serve makes the missed run"
			if nums != nil {
				why = "cancelled: recall serve stopped; the run is made at its next start"
			}
			j.Status, j.Error = "interrupted", why
			// A job this server cancelled ended now; one whose process
			// died ended some time before, when is not known: its
			// duration is not the time up to this start.
			switch {
			case nums != nil && j.Finished.IsZero():
				j.Finished = now
			case nums == nil:
				j.FoundInterrupted = now
			}
			if err := cat.FinishJob(&j); err != nil {
				return err
			}
			s.o.Log.Warn("job interrupted", "job", j.Kind, "catalog_job", j.Number, "group", j.Group, "source", j.Source, "pid", j.PID)
		}
		return nil
	})
}

// warn logs what a job or the catalog says on its own. A catalog moved
// aside as damaged also opens an alert (job "catalog"): the groups and
// registered sources it held are gone, so the server protects nothing
// until they are back, which a line in its log would not tell anyone.
func (s *Server) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.o.Log.Warn(msg)
	if strings.Contains(msg, engine.CatalogReplaced) && s.alerts != nil {
		s.sendAlertEvent(s.alerts.fail(Alert{Job: "catalog"}, errors.New(msg), s.o.Clock.Now()))
	}
}

// tick queues what is due, starts what may run, and returns when it wants
// to be woken next.
func (s *Server) tick(ctx context.Context) time.Time {
	now := s.o.Clock.Now()
	next := now.Add(s.o.MaxWait)
	wakeAt := func(t time.Time) {
		if t.Before(next) {
			next = t
		}
	}
	var groups []engine.Group
	var sources []engine.Source
	err := engine.WithCatalog(s.o.Home, time.Minute, s.warn, func(cat *engine.Catalog) error {
		var err error
		if groups, err = cat.Groups(); err != nil {
			return err
		}
		sources, err = cat.Sources()
		return err
	})
	if err != nil {
		s.o.Log.Error("protection groups not read; retrying", "err", err)
	} else {
		s.closeAlertsGone(groups)
	}
	dirty := false
	for _, g := range groups {
		if len(g.Members) == 0 {
			continue
		}
		s.mu.Lock()
		gs := s.state.Groups[g.Name]
		switch {
		case gs == nil, !gs.Created.IsZero() && !gs.Created.Equal(g.Created):
			// New, or deleted and made again under the same name: the
			// old group's runs are no runs of this one, which is backed
			// up at once as any new group. (Its state was kept, and the
			// new group waited for the old one's next run.)
			gs = &groupState{Created: g.Created}
			s.state.Groups[g.Name] = gs
			dirty = true
		case gs.Created.IsZero() && !g.Created.IsZero():
			gs.Created, dirty = g.Created, true // a state from before the field
		}
		covered := gs.Covered
		s.mu.Unlock()
		if aheadOf(covered, now) {
			// Else nothing would be due until the clock passed covered
			// again: months, after a boot with the clock far ahead.
			covered = s.clockWentBack(g, covered, now)
		}
		if covered.IsZero() {
			// A group never backed up by the server (new, or its first
			// backup cut short) is backed up at once, DPM's initial
			// replica, standing for its latest run time; the runs before
			// that are not missed, they never were.
			covers, _, err := latestRun(g.Policy, now.Add(-8*24*time.Hour), now)
			if err != nil {
				s.o.Log.Error("group not scheduled: its policy is invalid", "group", g.Name, "err", err)
				continue
			}
			// Only a recovery point time within the tolerance (as for a
			// backup by hand): the ones before were never missed.
			slot, _ := g.Policy.ScheduledSlot(now)
			s.enqueue(&task{kind: "backup", group: g, covers: covers, planned: true, slot: slot})
			continue
		}
		due, err := g.Policy.NextRun(covered)
		if err != nil {
			s.o.Log.Error("group not scheduled: its policy is invalid", "group", g.Name, "err", err)
			continue
		}
		if !due.After(now) {
			covers, slot, _ := latestRun(g.Policy, covered, now)
			if s.enqueue(&task{kind: "backup", group: g, covers: covers, planned: true, slot: slot}) && covers.After(due) {
				s.o.Log.Warn("runs missed (server down, clock jump or a long job): making the latest one", "group", g.Name, "missed_from", due, "run", covers, "recovery_point", slot)
			}
		} else {
			wakeAt(due)
		}
		s.mu.Lock()
		requested := gs.Requested
		s.mu.Unlock()
		if !requested.IsZero() && s.enqueue(&task{kind: "backup", group: g, request: requested}) {
			// While the backup asked for is queued or running, enqueue
			// refuses it; taken, it was cut short by a stop or a crash
			// (or still queued then), as a scheduled run can be.
			s.o.Log.Warn("backup asked for before the server stopped was not made: making it now", "group", g.Name, "asked", requested)
		}
		if r := s.retryOf(g.Name); r != nil {
			if !r.at.After(now) {
				rg := g
				rg.Members = slices.DeleteFunc(slices.Clone(r.members), func(m string) bool { return !slices.Contains(g.Members, m) })
				if len(rg.Members) > 0 && s.enqueue(&task{kind: "backup", group: rg, retry: r.n, planned: r.planned, slot: r.slot}) {
					s.mu.Lock()
					delete(s.retries, g.Name)
					s.mu.Unlock()
				}
			} else {
				wakeAt(r.at)
			}
		}
	}
	s.tickSources(now, groups, sources, wakeAt)
	s.tickTape(now, groups, wakeAt)
	s.tickChecks(now, groups, wakeAt)
	s.mu.Lock()
	if s.state.GC.IsZero() {
		s.state.GC, dirty = now, true
	}
	dirty = s.gcClockBack(now) || dirty
	want, lastGC := s.wantGC, s.state.GC
	s.mu.Unlock()
	if gcDue := lastGC.Add(gcInterval); want || !gcDue.After(now) {
		if s.enqueue(&task{kind: "gc"}) {
			s.mu.Lock()
			s.wantGC = false
			s.mu.Unlock()
		}
	} else {
		wakeAt(gcDue)
	}
	if dirty {
		s.saveState()
	}
	s.dispatch(ctx)
	return next
}

func (s *Server) retryOf(group string) *retry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retries[group]
}

// latestRun returns the latest scheduled run time after covered and at or
// before now, and the latest of those run times that is a recovery point
// time (zero: none): after downtime, a clock jump forwards or a long job
// the missed runs are made once, as one, which makes the latest recovery
// point missed.
func latestRun(p engine.Policy, covered, now time.Time) (time.Time, time.Time, error) {
	last, point := covered, time.Time{}
	for {
		t, err := p.NextRun(last)
		if err != nil || t.After(now) {
			return last, point, err
		}
		if slot, ok := p.ScheduledSlot(t); ok && slot.Equal(t) {
			point = t
		}
		last = t
	}
}

// enqueue adds t unless the same job (kind and group) is queued or
// running already; it reports whether it did.
func (s *Server) enqueue(t *task) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.kind == "backup" {
		if s.busy[t.key()] {
			// A run of this group is under way: the next tick, after it
			// ends, queues what is then due.
			return false
		}
		if gs := s.state.Groups[t.group.Name]; gs != nil && !t.covers.IsZero() && !t.covers.After(gs.Covered) {
			// A run that ended since the caller looked covered it.
			return false
		}
	}
	for _, q := range s.queue {
		if q.kind == t.kind && q.group.Name == t.group.Name {
			return false
		}
	}
	if !t.request.IsZero() {
		// Remembered under the same lock as the queue: the task cannot
		// end before the request is recorded.
		gs := s.state.Groups[t.group.Name]
		if gs == nil {
			gs = &groupState{}
			s.state.Groups[t.group.Name] = gs
		}
		gs.Requested = t.request
	}
	s.queue = append(s.queue, t)
	s.o.observe(Event{Kind: "queued", Job: t.kind, Group: t.group.Name, Retry: t.retry})
	return true
}

func (o *Options) observe(e Event) {
	if o.Observe != nil {
		o.Observe(e)
	}
}

// dispatch starts queued tasks, in order, while there are free slots and
// their keys are free.
func (s *Server) dispatch(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < len(s.queue) && s.active < s.o.Concurrency; {
		t := s.queue[i]
		if s.busy[t.key()] {
			i++
			continue
		}
		s.queue = slices.Delete(s.queue, i, i+1)
		s.busy[t.key()] = true
		s.active++
		s.wg.Add(1)
		go s.run(ctx, t)
	}
}

func (s *Server) run(ctx context.Context, t *task) {
	defer s.wg.Done()
	s.o.observe(Event{Kind: "started", Job: t.kind, Group: t.group.Name, Retry: t.retry})
	var err error
	var res []engine.MemberResult
	switch t.kind {
	case "backup":
		res, err = s.backup(ctx, t)
	case "prune":
		err = s.prune(ctx, t)
	case "gc":
		err = s.gc(ctx)
	case "check":
		err = s.check(ctx, t)
	case "tape":
		err = s.tape(ctx, t)
	}
	s.jobEnded(t, err)
	s.o.observe(Event{Kind: "finished", Job: t.kind, Group: t.group.Name, Retry: t.retry, Err: err, Results: res})
	s.mu.Lock()
	delete(s.busy, t.key())
	s.active--
	s.pending = true
	s.cond.Broadcast()
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Wake makes the scheduler look at the groups now (they changed).
func (s *Server) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// lockOptions are the store lock's options of job (backup, prune, gc) of
// group: a wait is logged and shown in the job's view (JobView.Waiting)
// until the job starts its work or ends.
func (s *Server) lockOptions(job, group, what string) engine.LockOptions {
	return engine.LockOptions{Wait: s.o.LockWait, OnWait: func(h chunkstore.LockInfo) {
		s.o.Log.Info("store busy: waiting", "job", what, "holder", h.String())
		s.o.observe(Event{Kind: "waiting", Job: job, Group: group, Waiting: h.String()})
	}}
}

func (s *Server) backup(ctx context.Context, t *task) ([]engine.MemberResult, error) {
	g := t.group
	log := s.o.Log.With("job", "backup", "group", g.Name)
	log.Info("backup started", append([]any{"members", len(g.Members)}, append(timeAttrs("run", t.covers, "recovery_point", t.slot), "retry", t.retry)...)...)
	res, err := s.o.Store.BackupGroup(ctx, s.o.Home, &g, engine.GroupBackupOptions{
		Now:     s.o.Clock.Now,
		Log:     func(f string, a ...any) { log.Info(fmt.Sprintf(f, a...)) },
		Warn:    func(f string, a ...any) { log.Warn(fmt.Sprintf(f, a...)) },
		Lock:    s.lockOptions("backup", g.Name, "backup of group "+g.Name),
		Settle:  t.settle,
		Planned: t.planned,
		Slot:    t.slot,
		Skipped: func(member string, err error) {
			log.Info("member has nothing to ingest", "member", member, "why", err)
		},
		Progress: func(member string) *engine.Progress {
			log.Info("member backup running", "member", member)
			p := new(engine.Progress)
			s.o.observe(Event{Kind: "member", Job: "backup", Group: g.Name, Member: member, Retry: t.retry, Progress: p})
			return p
		},
	})
	t.res = res
	if ctx.Err() != nil {
		// Stopped: the run is not covered; the next start makes it.
		s.mu.Lock()
		for _, r := range res {
			if r.Err != nil && r.Job != 0 {
				s.interrupts = append(s.interrupts, r.Job)
			}
		}
		s.mu.Unlock()
		return res, err
	}
	var again []string
	for _, r := range res {
		switch {
		case r.Err == nil:
			log.Info("member backed up", append([]any{"member", r.Member, "point", r.Point.ID.Short(), "catalog_job", r.Job, "scheduled", !r.Point.Scheduled.IsZero()}, timeAttrs("recovery_point", r.Point.Scheduled)...)...)
		case r.Point != nil:
			log.Warn("member backed up with warnings", "member", r.Member, "point", r.Point.ID.Short(), "catalog_job", r.Job, "err", r.Err)
		default:
			log.Error("member backup failed", "member", r.Member, "catalog_job", r.Job, "err", r.Err, "transient", Transient(r.Err))
			if Transient(r.Err) {
				again = append(again, r.Member)
			}
		}
	}
	if len(again) > 0 && t.retry < len(s.o.Backoff) {
		at := s.o.Clock.Now().Add(s.o.Backoff[t.retry])
		log.Info("retry planned", "members", again, "at", at, "retry", t.retry+1)
		s.mu.Lock()
		s.retries[g.Name] = &retry{at: at, members: again, n: t.retry + 1, planned: t.planned, slot: t.slot}
		s.mu.Unlock()
	}
	if !t.covers.IsZero() || !t.request.IsZero() {
		// A backup of the whole group, run or asked for, ended: whatever
		// its outcome, it made the run it stands for and any backup
		// asked for before it started.
		s.mu.Lock()
		if gs := s.state.Groups[g.Name]; gs != nil {
			// A run planned before the clock was set back far stands for
			// times that have not come: the schedule resumed from the
			// clock meanwhile (clockWentBack).
			if t.covers.After(gs.Covered) && !aheadOf(t.covers, s.o.Clock.Now()) {
				gs.Covered = t.covers
			}
			gs.Requested = time.Time{}
		}
		s.mu.Unlock()
		s.saveState()
	}
	if t.retry == 0 && !t.covers.IsZero() && !t.slot.IsZero() {
		s.enqueue(&task{kind: "prune", group: t.group})
	}
	return res, err
}

func (s *Server) prune(ctx context.Context, t *task) error {
	g := t.group
	removed := 0
	j := &engine.Job{Kind: "prune", Group: g.Name}
	defer s.noteCancelled(ctx, j)
	_, err := engine.RunJob(s.o.Home, j, s.warn, func() (*engine.Point, error) {
		// A point a bare-metal recovery share serves is held (a machine
		// may be restoring from it): said at each prune, since only the
		// share's going ends it.
		var held func(*engine.Point) string
		if s.o.SmbConf != "" {
			var err error
			if held, err = engine.ShareHolds(s.o.SmbConf); err != nil {
				return nil, err
			}
		}
		entries, err := s.o.Store.Prune(ctx, []engine.Group{g}, engine.PruneOptions{AsOf: s.o.Clock.Now(), Lock: s.lockOptions("prune", g.Name, "prune of group "+g.Name), Held: held,
			Removed: func(e engine.PruneEntry) {
				s.o.Log.Info("point forgotten", "group", g.Name, "source", e.Point.Source, "point", e.Point.ID.String()[:12], "time", e.Point.Time, "rule", e.Rule)
			}})
		for _, e := range entries {
			if e.Rule == engine.RuleHeld {
				s.o.Log.Info("point held", "group", g.Name, "source", e.Point.Source, "point", e.Point.ID.String()[:12], "time", e.Point.Time, "rule", e.Rule, "why", e.Why)
			}
			if e.Removed {
				removed++
			}
		}
		return nil, err
	})
	attrs := []any{"group", g.Name, "removed", removed}
	if err != nil {
		attrs = append(attrs, "err", err) // not "err=<nil>" when it went well
	}
	s.o.Log.Info("prune done", attrs...)
	if removed > 0 {
		s.mu.Lock()
		s.wantGC = true
		s.mu.Unlock()
	}
	return err
}

func (s *Server) gc(ctx context.Context) error {
	var rep *engine.GCReport
	j := &engine.Job{Kind: "gc"}
	defer s.noteCancelled(ctx, j)
	_, err := engine.RunJob(s.o.Home, j, s.warn, func() (*engine.Point, error) {
		var err error
		rep, err = engine.GC(ctx, s.o.Store, engine.GCOptions{
			Log:         func(f string, a ...any) { s.o.Log.Info(fmt.Sprintf(f, a...), "job", "gc") },
			LockOptions: s.lockOptions("gc", "", "garbage collection"),
		})
		return nil, err
	})
	if err != nil {
		s.o.Log.Error("garbage collection failed", "err", err)
		return err
	}
	s.o.Log.Info("garbage collection done", "report", fmt.Sprintf("%+v", *rep))
	s.mu.Lock()
	s.state.GC = s.o.Clock.Now()
	s.mu.Unlock()
	s.saveState()
	return nil
}

// noteCancelled remembers j, if the stop cancelled it, to be recorded as
// interrupted.
func (s *Server) noteCancelled(ctx context.Context, j *engine.Job) {
	if ctx.Err() != nil && j.Number != 0 {
		s.mu.Lock()
		s.interrupts = append(s.interrupts, j.Number)
		s.mu.Unlock()
	}
}

func (s *Server) saveState() {
	s.mu.Lock()
	err := s.state.save(s.o.Home)
	s.mu.Unlock()
	if err != nil {
		s.o.Log.Error("schedule state not saved; after a restart some runs may be made again", "err", err)
	}
}

// Transient reports whether err is worth retrying after a while: the
// store lock held past the wait, the catalog busy, a full file system
// (the prune and garbage collection that follow may free space) and the
// kernel's try-again errors. Everything else (a member gone, a script
// that failed, damage, a wrong passphrase) fails the same way again
// until someone acts, so it waits for the next scheduled run.
func Transient(err error) bool {
	return errors.Is(err, chunkstore.ErrLocked) || errors.Is(err, engine.ErrCatalogBusy) ||
		errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EBUSY)
}

// timeAttrs are log attributes of the times given as key, value pairs,
// leaving out the zero ones: a backup no schedule asked for has no run or
// recovery point time, and "0001-01-01T00:00:00Z" in the log read as one.
func timeAttrs(kv ...any) []any {
	var out []any
	for i := 0; i+1 < len(kv); i += 2 {
		if t, ok := kv[i+1].(time.Time); ok && t.IsZero() {
			continue
		}
		out = append(out, kv[i], kv[i+1])
	}
	return out
}
