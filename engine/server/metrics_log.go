package server

import (
	"context"
	"log/slog"
)

// JobLog is an Options.Observe that logs each job's start and end as one
// line with fields (job, group, retry; at the end result, members_failed
// and err), so that a journal read as JSON answers "which jobs failed"
// without parsing messages. The lines the jobs log themselves carry the
// same job and group fields.
func JobLog(log *slog.Logger) func(Event) {
	return func(e Event) {
		switch e.Kind {
		case "started":
			log.Info("job started", "job", e.Job, "group", e.Group, "retry", e.Retry)
		case "finished":
			failed := 0
			for _, r := range e.Results {
				if r.Point == nil {
					failed++
				}
			}
			res, level := result(e.Err), slog.LevelWarn
			switch res {
			case "ok":
				level = slog.LevelInfo
			case "failed":
				level = slog.LevelError
			}
			attrs := []any{"job", e.Job, "group", e.Group, "retry", e.Retry, "result", res, "members", len(e.Results), "members_failed", failed}
			if e.Err != nil {
				attrs = append(attrs, "err", e.Err)
			}
			log.Log(context.Background(), level, "job finished", attrs...)
		}
	}
}

// Observers is an Options.Observe telling each of fs, in order.
func Observers(fs ...func(Event)) func(Event) {
	return func(e Event) {
		for _, f := range fs {
			f(e)
		}
	}
}
