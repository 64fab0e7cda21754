package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/internal/golden"
)

var notifyTime = time.Date(2026, 11, 2, 21, 0, 5, 0, time.UTC)

// hook is a webhook receiver that records the bodies posted to it and
// answers the first fail requests with 503.
type hook struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	tries  int
	fail   int
}

func newHook(t *testing.T, fail int) *hook {
	h := &hook{fail: fail}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.tries++
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		if h.tries <= h.fail {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		h.bodies = append(h.bodies, body)
	}))
	t.Cleanup(h.Close)
	return h
}

// events are the "event" and "summary" of each body received, sorted.
// taken returns the bodies taken and the requests made.
func (h *hook) taken() ([][]byte, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.bodies), h.tries
}

func (h *hook) events(t *testing.T) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, b := range h.bodies {
		var n Notification
		if err := json.Unmarshal(b, &n); err != nil {
			t.Fatalf("webhook body %s: %v", b, err)
		}
		out = append(out, n.Event+": "+n.Summary)
	}
	slices.Sort(out)
	return out
}

func fixedNotifier(cfg *Config, log *slog.Logger) *Notifier {
	return NewNotifier(cfg, NotifierOptions{Log: log, Backoff: []time.Duration{time.Millisecond, time.Millisecond},
		Now: func() time.Time { return notifyTime }, Host: "backup1", Timeout: 5 * time.Second})
}

func webhookConfig(targets ...WebhookTarget) *Config {
	c := DefaultConfig()
	c.Notify.Webhook = targets
	return c
}

var failedBackup = Event{Kind: "finished", Job: "backup", Group: "g", Retry: 1,
	Err: fmt.Errorf("%w: /srv/b: no such file or directory", engine.ErrMembersFailed),
	Results: []engine.MemberResult{
		{Member: "/srv/a", Source: "backup1:/srv/a", Job: 12, Point: &engine.Point{}},
		{Member: "/srv/b", Source: "backup1:/srv/b", Job: 13, Err: errors.New("lstat /srv/b: no such file or directory")},
	}}

// TestWebhookBody pins the JSON a webhook receives for a failed backup:
// receivers parse it, so it changes only by a new version.
func TestWebhookBody(t *testing.T) {
	h := newHook(t, 0)
	n := fixedNotifier(webhookConfig(WebhookTarget{URL: h.URL}), nil)
	n.JobEnded(failedBackup)
	n.Close(context.Background())
	bodies, _ := h.taken()
	if len(bodies) != 1 {
		t.Fatalf("webhook got %d posts, want 1", len(bodies))
	}
	var out bytes.Buffer
	must(t, json.Indent(&out, bodies[0], "", "  "))
	golden.Check(t, "webhook-v1.json", out.Bytes())
	for _, field := range []string{`"version": 1`, `"event": "failure"`, `"group": "g"`, `"retry": 1`, `"error": "lstat /srv/b`, `"host": "backup1"`} {
		if !strings.Contains(out.String(), field) {
			t.Errorf("webhook body lacks %s:\n%s", field, out.String())
		}
	}
}

// TestNotifyOn: each target hears the events its "on" lists (absent:
// failure and alerts), and nothing else.
func TestNotifyOn(t *testing.T) {
	okBackup := Event{Kind: "finished", Job: "backup", Group: "g"}
	warned := Event{Kind: "finished", Job: "backup", Group: "g", Err: fmt.Errorf("%w: 1 entry skipped", engine.ErrWarnings)}
	gcFailed := Event{Kind: "finished", Job: "gc", Err: errors.New("disk on fire")}
	stopped := Event{Kind: "finished", Job: "backup", Group: "g", Err: fmt.Errorf("backup: %w", context.Canceled)}
	for _, c := range []struct {
		name string
		on   []string
		want []string
	}{
		{"default", nil, []string{"alert-cleared: store full", "alert: store full", "failure: backup of group g failed", "failure: garbage collection failed"}},
		{"failure", []string{"failure"}, []string{"failure: backup of group g failed", "failure: garbage collection failed"}},
		{"success", []string{"success"}, []string{"success: backup of group g succeeded", "success: backup of group g succeeded with warnings"}},
		{"alerts opened", []string{"alert"}, []string{"alert: store full"}},
		{"alerts cleared", []string{"alert-cleared"}, []string{"alert-cleared: store full"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHook(t, 0)
			n := fixedNotifier(webhookConfig(WebhookTarget{URL: h.URL, On: c.on}), nil)
			for _, e := range []Event{{Kind: "started", Job: "backup", Group: "g"}, okBackup, warned, failedBackup, gcFailed, stopped} {
				n.Observe(e)
			}
			n.Alert("opened", "store full", "free space")
			n.Alert("acked", "store full", "")
			n.Alert("cleared", "store full", "")
			n.Close(context.Background())
			if got := h.events(t); !slices.Equal(got, c.want) {
				t.Errorf("on %q: got %q, want %q", c.on, got, c.want)
			}
		})
	}
}

// syncBuffer is a log destination several goroutines write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWebhookRetried: a receiver that fails twice gets the notification
// at the third attempt; each failure is logged.
func TestWebhookRetried(t *testing.T) {
	h := newHook(t, 2)
	var logBuf syncBuffer
	n := fixedNotifier(webhookConfig(WebhookTarget{URL: h.URL}), slog.New(slog.NewTextHandler(&logBuf, nil)))
	n.JobEnded(failedBackup)
	n.Close(context.Background())
	if bodies, tries := h.taken(); tries != 3 || len(bodies) != 1 {
		t.Errorf("receiver: %d tries, %d taken; want 3 tries, the last taken", tries, len(bodies))
	}
	log := logBuf.String()
	if c := strings.Count(log, "notification not sent; retrying"); c != 2 || !strings.Contains(log, "503") || !strings.Contains(log, "notification sent") {
		t.Errorf("log has %d retry lines (want 2, naming the 503), then the success:\n%s", c, log)
	}
}

// downURL is a webhook URL where nothing listens.
func downURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	u := "http://" + ln.Addr().String() + "/hook"
	ln.Close()
	return u
}

// TestNotifyTargetDown: a server whose webhook target is down runs its
// jobs as without it: the backups' results and the catalog's jobs are
// the same, the other target hears of both jobs, and the failed
// deliveries are logged and retried until given up.
func TestNotifyTargetDown(t *testing.T) {
	f := newFixture(t)
	must(t, os.RemoveAll(f.memB)) // group b's backup fails
	up := newHook(t, 0)
	down := downURL(t)
	var logBuf syncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	n := fixedNotifier(webhookConfig(WebhookTarget{URL: down, On: []string{"failure", "success"}}, WebhookTarget{URL: up.URL, On: []string{"failure", "success"}}), log)
	var mu sync.Mutex
	results := map[string]error{}
	record := func(e Event) {
		if e.Kind == "finished" && e.Job == "backup" {
			mu.Lock()
			results[e.Group] = e.Err
			mu.Unlock()
		}
	}
	r := startLogged(t, f.home, NewFakeClock(week0.Add(10*time.Hour)), Observers(record, n.Observe), log)
	r.srv.WaitIdle()
	r.stop()
	n.Close(context.Background())

	if results["a"] != nil || !errors.Is(results["b"], engine.ErrMembersFailed) {
		t.Errorf("backups: a %v, b %v; want a ok, b failed as its member is gone", results["a"], results["b"])
	}
	jobs := jobsOf(t, f.home)
	if count(jobs, "backup", "a", "ok") != 1 || count(jobs, "backup", "b", "failed") != 1 {
		t.Errorf("catalog jobs %+v: want a's backup ok, b's failed", jobs)
	}
	want := []string{"failure: backup of group b failed", "success: backup of group a succeeded"}
	if got := up.events(t); !slices.Equal(got, want) {
		t.Errorf("the target that is up got %q, want %q", got, want)
	}
	l := logBuf.String()
	if c := strings.Count(l, "notification not sent; retrying"); c != 4 || strings.Count(l, "notification not sent; giving up") != 2 || !strings.Contains(l, down) {
		t.Errorf("log: %d retry lines, want 2 per job for %s, then giving up:\n%s", c, down, l)
	}
}

// smtpServer is just enough of an SMTP server (no STARTTLS) to take
// messages: it records the envelope and the data of each.
type smtpServer struct {
	addr string
	mu   sync.Mutex
	msgs []string // "MAIL FROM:<..>|RCPT TO:<..>|data"
}

func newSMTP(t *testing.T) *smtpServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	s := &smtpServer{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpServer) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(l string) { io.WriteString(c, l+"\r\n") }
	say("220 fake ESMTP")
	var env []string
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return
		}
		l = strings.TrimRight(l, "\r\n")
		switch cmd := strings.ToUpper(strings.SplitN(l, " ", 2)[0]); cmd {
		case "EHLO", "HELO":
			say("250-fake\r\n250 8BITMIME")
		case "MAIL", "RCPT":
			env = append(env, l)
			say("250 ok")
		case "DATA":
			say("354 go on")
			var data strings.Builder
			for {
				dl, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if dl == ".\r\n" {
					break
				}
				data.WriteString(dl)
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, strings.Join(append(env, data.String()), "|"))
			s.mu.Unlock()
			env = nil
			say("250 queued")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("502 not here")
		}
	}
}

// TestMail: a mail target sends by SMTP when smtp is set and by the
// local sendmail otherwise; both carry the summary in the subject and
// the members in the body; recall notify test reports each target.
func TestMail(t *testing.T) {
	srv := newSMTP(t)
	dir := t.TempDir()
	sendmail := filepath.Join(dir, "sendmail")
	must(t, os.WriteFile(sendmail, []byte("#!/bin/sh\necho \"$@\" >\""+dir+"/args\"\ncat >\""+dir+"/msg\"\n"), 0o755))
	cfg := DefaultConfig()
	cfg.Notify.Mail = []MailTarget{
		{To: "admins@example.org", SMTP: srv.addr, From: "recall@backup1.example.org"},
		{To: "ops@example.org"},
	}
	n := NewNotifier(cfg, NotifierOptions{Sendmail: sendmail, Backoff: []time.Duration{}, Now: func() time.Time { return notifyTime }, Host: "backup1"})
	n.JobEnded(failedBackup)
	n.Close(context.Background())

	msgs := srv.messages()
	if len(msgs) != 1 {
		t.Fatalf("SMTP server got %d messages, want 1", len(msgs))
	}
	parts := strings.Split(msgs[0], "|")
	if parts[0] != "MAIL FROM:<recall@backup1.example.org> BODY=8BITMIME" && parts[0] != "MAIL FROM:<recall@backup1.example.org>" {
		t.Errorf("envelope sender %q", parts[0])
	}
	if parts[1] != "RCPT TO:<admins@example.org>" {
		t.Errorf("envelope recipient %q", parts[1])
	}
	args, err := os.ReadFile(filepath.Join(dir, "args"))
	must(t, err)
	if got := strings.TrimSpace(string(args)); got != "-i -f recall@backup1 -- ops@example.org" {
		t.Errorf("sendmail arguments %q", got)
	}
	local, err := os.ReadFile(filepath.Join(dir, "msg"))
	must(t, err)
	for _, c := range []struct{ how, msg, to string }{{"smtp", parts[2], "admins@example.org"}, {"sendmail", string(local), "ops@example.org"}} {
		for _, want := range []string{
			"To: " + c.to + "\n",
			"Subject: [recall] backup1: backup of group g failed",
			"X-Recall-Event: failure",
			"/srv/b: failed (job 13): lstat /srv/b: no such file or directory",
			"See recall status",
		} {
			if !strings.Contains(strings.ReplaceAll(c.msg, "\r\n", "\n"), want) {
				t.Errorf("mail by %s lacks %q:\n%s", c.how, want, c.msg)
			}
		}
	}

	// recall notify test: every target, one result each.
	cfg.Notify.Webhook = []WebhookTarget{{URL: downURL(t), On: []string{"success"}}}
	n = NewNotifier(cfg, NotifierOptions{Sendmail: sendmail, Host: "backup1"})
	res := n.Test(context.Background())
	if len(res) != 3 || res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "connection refused") || res[1].Err != nil || res[2].Err != nil {
		t.Errorf("test results %+v: want the webhook down, both mails sent", res)
	}
	if msgs := srv.messages(); len(msgs) != 2 || !strings.Contains(msgs[1], "test notification from recall") {
		t.Errorf("SMTP server did not get the test message: %q", msgs)
	}
}
