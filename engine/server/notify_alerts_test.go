package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestAlertEventNotifies: an alert the server opens and clears reaches the
// webhook as "alert" and "alert-cleared", naming the member and what to
// do; an ack sends nothing.
func TestAlertEventNotifies(t *testing.T) {
	h := newHook(t, 0)
	n := fixedNotifier(webhookConfig(WebhookTarget{URL: h.URL}), nil)
	a := Alert{ID: 7, Job: "backup", Group: "g", Source: "backup1:/srv/b", Member: "/srv/b",
		Error: "lstat /srv/b: no such file or directory", Action: "bring /srv/b back or remove it from the group",
		Since: notifyTime, Last: notifyTime.Add(time.Hour), Count: 2}
	n.AlertEvent(AlertEvent{Kind: "opened", Alert: a})
	n.AlertEvent(AlertEvent{Kind: "acked", Alert: a})
	n.AlertEvent(AlertEvent{Kind: "cleared", Alert: a})
	n.Close(context.Background())
	bodies, _ := h.taken()
	if len(bodies) != 2 {
		t.Fatalf("webhook got %d posts, want 2 (opened, cleared; no ack)", len(bodies))
	}
	got := map[string]Notification{}
	for _, b := range bodies {
		var m Notification
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		got[m.Event] = m
	}
	op, cl := got["alert"], got["alert-cleared"]
	if !strings.Contains(op.Summary, "/srv/b") || !strings.Contains(op.Detail, a.Error) || !strings.Contains(op.Detail, a.Action) {
		t.Errorf("opened alert: %+v; want the member, the error and what to do", op)
	}
	if !strings.Contains(cl.Summary, "cleared") || !strings.Contains(cl.Detail, "2 failure(s)") {
		t.Errorf("cleared alert: %+v", cl)
	}
}

// TestAlertClosedAsGoneNotifies: an alert cleared because its subject is
// gone says so in the notification, not that the job works again.
func TestAlertClosedAsGoneNotifies(t *testing.T) {
	h := newHook(t, 0)
	n := fixedNotifier(webhookConfig(WebhookTarget{URL: h.URL}), nil)
	a := Alert{ID: 3, Job: "backup", Group: "web", Source: "srv-www", Member: "/srv/www", Error: "pre-script failed",
		Since: notifyTime, Last: notifyTime, Count: 1}
	n.AlertEvent(AlertEvent{Kind: "cleared", Alert: a, Reason: "group web was deleted"})
	n.Close(context.Background())
	bodies, _ := h.taken()
	if len(bodies) != 1 {
		t.Fatalf("webhook got %d posts, want 1", len(bodies))
	}
	var m Notification
	must(t, json.Unmarshal(bodies[0], &m))
	if m.Event != "alert-cleared" || !strings.Contains(m.Summary, "group web was deleted") || strings.Contains(m.Summary, "works again") {
		t.Errorf("notification %+v: want alert-cleared saying the group was deleted", m)
	}
}
