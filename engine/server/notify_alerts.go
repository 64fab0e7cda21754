package server

import (
	"fmt"
	"time"
)

// AlertEvent sends an alert's opening or clearing to the targets whose
// "on" lists it (Options.OnAlert); an ack sends nothing.
func (n *Notifier) AlertEvent(e AlertEvent) {
	a := e.Alert
	what := a.Job
	switch {
	case a.Member != "":
		what = fmt.Sprintf("%s of %s", a.Job, a.Member)
	case a.Group != "":
		what = fmt.Sprintf("%s of group %s", a.Job, a.Group)
	}
	var summary, detail string
	switch e.Kind {
	case "opened":
		summary = fmt.Sprintf("alert %d: %s failed", a.ID, what)
		detail = a.Error
		if a.Action != "" {
			detail += "\nWhat to do: " + a.Action
		}
	case "cleared":
		summary = fmt.Sprintf("alert %d cleared: %s works again", a.ID, what)
		if e.Reason != "" {
			summary = fmt.Sprintf("alert %d cleared: %s", a.ID, e.Reason)
		}
		detail = fmt.Sprintf("%d failure(s) from %s to %s", a.Count, a.Since.Format(time.RFC3339), a.Last.Format(time.RFC3339))
	}
	if a.Group != "" && a.Member != "" {
		detail += fmt.Sprintf("\nGroup: %s", a.Group)
	}
	n.Alert(e.Kind, summary, detail)
}
