package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Notification is what a target is told: a job that failed or succeeded,
// an alert that opened or cleared, or a test. The webhook posts it as
// JSON, version 1:
//
//	{
//	  "version": 1,
//	  "event": "failure",           failure, success, alert, alert-cleared or test
//	  "time": "<RFC 3339>",         when the server noticed
//	  "host": "backup1",            the server's host name
//	  "summary": "backup of group g failed",
//	  "detail": "...",              the error, or the alert's suggested action (may be absent)
//	  "job": "backup",              backup, prune or gc (absent for alerts and tests)
//	  "group": "g",                 (absent for gc, alerts and tests)
//	  "retry": 1,                   retries of the job before this run (absent: 0)
//	  "members": [                  a backup's members (absent for other jobs)
//	    {"member": "/srv/a", "source": "host:/srv/a", "job": 12,
//	     "point": "<point id>", "error": "..."}   point or error, each may be absent
//	  ]
//	}
//
// Fields are only ever added; a consumer ignores those it does not know.
type Notification struct {
	Version int          `json:"version"`
	Event   string       `json:"event"`
	Time    time.Time    `json:"time"`
	Host    string       `json:"host"`
	Summary string       `json:"summary"`
	Detail  string       `json:"detail,omitempty"`
	Job     string       `json:"job,omitempty"`
	Group   string       `json:"group,omitempty"`
	Retry   int          `json:"retry,omitempty"`
	Members []MemberNote `json:"members,omitempty"`
}

// MemberNote is one member of a backup in a Notification.
type MemberNote struct {
	Member string `json:"member"`
	Source string `json:"source,omitempty"`
	Job    uint64 `json:"job,omitempty"`
	Point  string `json:"point,omitempty"`
	Error  string `json:"error,omitempty"`
}

// NotificationVersion is the version of Notification's JSON.
const NotificationVersion = 1

// DefaultNotifyOn is the events of a target whose "on" is absent.
var DefaultNotifyOn = []string{"failure", "alert", "alert-cleared"}

// Defaults of NotifierOptions.
var (
	DefaultNotifyBackoff = []time.Duration{10 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute}
	DefaultNotifyTimeout = 30 * time.Second
)

// DefaultSendmail is the local mail program used for a mail target with no
// smtp.
const DefaultSendmail = "/usr/sbin/sendmail"

// NotifierOptions configure a Notifier.
type NotifierOptions struct {
	Log *slog.Logger // nil: discard
	// Backoff are the delays before each new attempt at a delivery that
	// failed (nil: DefaultNotifyBackoff; empty: one attempt).
	Backoff []time.Duration
	// Timeout bounds each attempt (0: DefaultNotifyTimeout).
	Timeout time.Duration
	// Sendmail is the program for mail targets with no smtp ("":
	// DefaultSendmail).
	Sendmail string
	Now      func() time.Time // nil: time.Now
	Host     string           // "": os.Hostname
}

// target is one place notifications go.
type target interface {
	// String names the target in logs and in recall notify test.
	String() string
	// send delivers n once; ctx bounds the attempt.
	send(ctx context.Context, n *Notification) error
}

type notifyTarget struct {
	target
	on []string
}

// Notifier sends notifications to the configured targets. A delivery runs
// in its own goroutine and is retried with back-off, so a target that is
// down delays nothing and never changes a job's result: each failed
// attempt is logged.
type Notifier struct {
	o       NotifierOptions
	targets []notifyTarget

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewNotifier makes the notifier of cfg's [[notify.webhook]] and
// [[notify.mail]] targets.
func NewNotifier(cfg *Config, o NotifierOptions) *Notifier {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Backoff == nil {
		o.Backoff = DefaultNotifyBackoff
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultNotifyTimeout
	}
	if o.Sendmail == "" {
		o.Sendmail = DefaultSendmail
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	n := &Notifier{o: o}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	on := func(l []string) []string {
		if len(l) == 0 {
			return DefaultNotifyOn
		}
		return l
	}
	for _, w := range cfg.Notify.Webhook {
		n.targets = append(n.targets, notifyTarget{&webhook{url: w.URL}, on(w.On)})
	}
	for _, m := range cfg.Notify.Mail {
		from := m.From
		if from == "" {
			from = "recall@" + o.Host
		}
		n.targets = append(n.targets, notifyTarget{&mailer{to: m.To, from: from, smtp: m.SMTP, sendmail: o.Sendmail}, on(m.On)})
	}
	return n
}

// Targets reports how many targets there are.
func (n *Notifier) Targets() int { return len(n.targets) }

// Observe is an Options.Observe: it hands finished jobs to JobEnded.
func (n *Notifier) Observe(e Event) {
	if e.Kind == "finished" {
		n.JobEnded(e)
	}
}

// JobEnded notifies the targets that want it of a finished job: "failure"
// when it failed, "success" when it did not (a backup whose points all
// exist but skipped entries is a success; the detail says so). A job
// cancelled by the server's stop is neither: it is made again.
func (n *Notifier) JobEnded(e Event) {
	if errors.Is(e.Err, ErrShutdown) || errors.Is(e.Err, context.Canceled) {
		return
	}
	what := e.Job
	switch e.Job {
	case "backup", "prune", "check":
		what = fmt.Sprintf("%s of group %s", e.Job, e.Group)
	case "gc":
		what = "garbage collection"
	}
	msg := &Notification{Job: e.Job, Group: e.Group, Retry: e.Retry}
	switch result(e.Err) {
	case "ok":
		msg.Event, msg.Summary = "success", what+" succeeded"
	case "warnings":
		msg.Event, msg.Summary, msg.Detail = "success", what+" succeeded with warnings", e.Err.Error()
	default:
		msg.Event, msg.Summary, msg.Detail = "failure", what+" failed", e.Err.Error()
	}
	for _, r := range e.Results {
		m := MemberNote{Member: r.Member, Source: r.Source, Job: r.Job}
		if r.Point != nil {
			m.Point = r.Point.ID.String()
		}
		if r.Err != nil {
			m.Error = r.Err.Error()
		}
		msg.Members = append(msg.Members, m)
	}
	n.post(msg)
}

// Alert notifies the targets that want it of an alert: kind "opened" is the
// event "alert", "cleared" is "alert-cleared"; other kinds ("acked": a
// person has seen it already) send nothing.
func (n *Notifier) Alert(kind, summary, detail string) {
	ev := map[string]string{"opened": "alert", "cleared": "alert-cleared"}[kind]
	if ev == "" {
		return
	}
	n.post(&Notification{Event: ev, Summary: summary, Detail: detail})
}

func (n *Notifier) stamp(msg *Notification) {
	msg.Version, msg.Time, msg.Host = NotificationVersion, n.o.Now().UTC(), n.o.Host
}

// post delivers msg in the background to each target whose "on" has its
// event.
func (n *Notifier) post(msg *Notification) {
	n.stamp(msg)
	for _, t := range n.targets {
		if !slices.Contains(t.on, msg.Event) {
			continue
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.deliver(t, msg)
		}()
	}
}

// deliver tries t until it takes msg, the back-off is spent or Close.
func (n *Notifier) deliver(t notifyTarget, msg *Notification) {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(n.ctx, n.o.Timeout)
		err := t.send(ctx, msg)
		cancel()
		if err == nil {
			n.o.Log.Info("notification sent", "target", t.String(), "event", msg.Event, "summary", msg.Summary, "attempt", attempt+1)
			return
		}
		if attempt >= len(n.o.Backoff) || n.ctx.Err() != nil {
			n.o.Log.Error("notification not sent; giving up", "target", t.String(), "event", msg.Event, "summary", msg.Summary, "attempts", attempt+1, "err", err)
			return
		}
		wait := n.o.Backoff[attempt]
		n.o.Log.Warn("notification not sent; retrying", "target", t.String(), "event", msg.Event, "summary", msg.Summary, "attempt", attempt+1, "retry_in", wait, "err", err)
		// Retries are paced in wall time: the target's recovery is.
		select {
		case <-time.After(wait):
		case <-n.ctx.Done():
			n.o.Log.Error("notification not sent: the server stopped", "target", t.String(), "event", msg.Event, "summary", msg.Summary, "err", err)
			return
		}
	}
}

// Close gives deliveries still under way until ctx ends, then cancels
// them (each is logged as not sent) and returns when they have stopped.
func (n *Notifier) Close(ctx context.Context) {
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	n.cancel()
	<-done
}

// TestResult is how the test message to one target went.
type TestResult struct {
	Target string
	Err    error
}

// Test sends a test message to every target, whatever its "on", once and
// at once, and reports each result: recall notify test.
func (n *Notifier) Test(ctx context.Context) []TestResult {
	msg := &Notification{Event: "test", Summary: "test notification from recall", Detail: "recall notify test: this target is reachable."}
	n.stamp(msg)
	out := make([]TestResult, len(n.targets))
	var wg sync.WaitGroup
	for i, t := range n.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, n.o.Timeout)
			defer cancel()
			out[i] = TestResult{Target: t.String(), Err: t.send(c, msg)}
		}()
	}
	wg.Wait()
	return out
}

// text is msg as a person reads it in a mail.
func (msg *Notification) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", msg.Summary)
	if msg.Detail != "" {
		fmt.Fprintf(&b, "%s\n\n", msg.Detail)
	}
	for _, m := range msg.Members {
		switch {
		case m.Error != "":
			fmt.Fprintf(&b, "  %s: failed (job %d): %s\n", m.Member, m.Job, m.Error)
		default:
			fmt.Fprintf(&b, "  %s: point %s (job %d)\n", m.Member, m.Point, m.Job)
		}
	}
	if len(msg.Members) > 0 {
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "host: %s\ntime: %s\nevent: %s\n", msg.Host, msg.Time.Format(time.RFC3339), msg.Event)
	if msg.Event == "failure" || msg.Event == "alert" {
		b.WriteString("\nSee recall status and recall jobs on the host for what to do next.\n")
	}
	return b.String()
}
