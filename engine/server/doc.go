// Package server is recall serve: it owns a home while it runs and runs
// its protection groups' policies by themselves, on an injected clock.
//
// # Schedule
//
// A group's backups are due at its run times (engine.Policy.NextRun):
// every --sync from local midnight, and at each recovery point time (--at
// on --days). A run makes the recovery point of the latest recovery
// point time among the run times it stands for, however late it starts
// (after downtime, or behind a long job of the group): the server plans
// it when it queues the run and hands it to every member's backup
// (engine.GroupBackupOptions.Planned), so that the clock at each member's
// start, judged by the policy version the run was planned with, has no
// say. A group the server has never finished a backup of (new,
// or its first backup cut short) is backed up at once, as DPM makes an
// initial replica, standing for its latest run time. After a run that
// covers a recovery point time the
// group is pruned (engine.Store.Prune, as of the clock). Garbage
// collection runs after a prune that forgot points, and at least once a
// day. Consistency checks (--check) run as check.go describes.
//
// For each group the server remembers the latest run time whose backup
// finished, whatever its outcome ("covered"); the next due run is the
// first run time after it. So a clock that jumps backwards a little makes no run
// twice (nothing is due until the clock passes covered again), and a
// clock that jumps forwards, or a server that was down, makes the missed
// runs once, as one backup standing for the latest of them (and making
// the latest recovery point among them). A covered time more than
// clockBackMargin (an hour) ahead of the clock, at the start or later,
// is a clock set back far (a boot with the clock months ahead, then
// NTP), not a correction: waiting for the clock would be a silence of
// months, so the schedule resumes from the clock, logged and with an
// alert (job "clock") naming the group, the recorded time and the clock
// (clockback.go); garbage collection, tape goals and checks resume too. A backup cut
// short (a crash, a stop) does not advance covered, so its run is made at
// the next start; the catalog's record of the cut-short job is set to
// "interrupted" at that start (or at the stop). A backup of a group asked
// for through the API (Server.Backup) is remembered the same way
// ("requested") until a backup of the whole group ends, so one that a
// crash or a stop cut short, or that was still queued, is made at the
// next start too.
//
// # Windows images
//
// A group member that is a registered source (engine.Source: a Windows
// computer's bmr or systemstate image, which WSB writes into a staging
// share) is ingested instead of backed up (engine.Store.Ingest). Besides
// its group's run times, the server looks into each such staging tree
// every SourceCheckInterval (ingest.go): a complete image, settled and
// not yet ingested, runs the member's backup job at once; a settled
// incomplete one runs it once per state of the tree (its newest Backup
// folder and last write), failing and so opening an alert that names
// what is missing; an image still being written waits. A run that finds
// nothing new makes no job and no failure.
//
// # Tape goals
//
// A group with a long-term goal (--tape-frequency, --tape-pool) has the
// latest point of each member written to the pool at each start of the
// goal's period (engine.Policy.NextTapeRun), after the group's backups of
// that moment. The first period starts when the server first sees the
// goal; a write that fails (no cartridge to write on, most often) is
// tried again an hour later until it succeeds, and its job record says
// why. Tape writes run one at a time, never beside garbage collection or
// a check (which could remove or rewrite a pack being read). Cartridges
// of sets whose expiry passed are marked expired at every tick.
//
// # Jobs
//
// Jobs (a group's backup, a group's prune, a garbage collection) wait in
// one queue and run up to Options.Concurrency at once (default one per
// core). Different groups back up at once, each member in its own write
// session; a group's backups and prunes never overlap, so no source is
// written by two of its jobs at once. A member that failed for a
// transient reason (Transient) is retried after each delay of
// Options.Backoff; others wait for the next run time.
//
// On stop (the context of Run cancelled) running jobs get
// Options.StopGrace to finish; those still running (backups, prunes,
// collections) are then cancelled and recorded as interrupted, and the
// backups' runs are made at the next start.
//
// # Ownership
//
// A server holds <home>/serve.lock flocked and writes its pid in it; a
// second server on the same home fails naming that pid (ErrHomeBusy). The
// kernel drops the flock when the process dies, so kill -9 leaves no lock.
// New also takes the API's socket, so that a second server on another
// home with the same socket fails (ErrSocketBusy, which is an ErrHomeBusy
// for the exit code, naming the socket and the other server's pid and
// home) before its caller starts mounts, alerts or notifications.
//
// # State file, version 1
//
// <home>/serve-state.json, replaced atomically (temp file, fsync, rename):
//
//	{
//	  "version": 1,                 format version; another one is refused
//	  "groups": {
//	    "<group>": {
//	      "group_created": "<RFC 3339>" the group's created time: a group made
//	                                 again under the name starts afresh (absent
//	                                 in files of earlier servers: taken as the group's)
//	      "covered": "<RFC 3339>"   latest run time whose backup finished
//	      "tape": "<RFC 3339>"      latest tape-goal run time written (absent: none yet)
//	      "tape_retry": "<RFC 3339>" when a failed tape write is tried again (absent: none)
//	      "requested": "<RFC 3339>"  when a backup asked for through the API, not made
//	                                 yet, was asked for (absent: none)
//	    }
//	  },
//	  "gc": "<RFC 3339>"            when garbage collection last finished (absent: never)
//	}
//
// Losing the file costs only the missed runs of the downtime: the
// schedule starts again from the next run time.
//
// # Configuration
//
// recall.toml (LoadConfig) holds home, socket, concurrency, [metrics]
// (listen, textfile), [[notify.webhook]] (url, on), [[notify.mail]] (to,
// smtp, from, on) and [[mount]] (path, allow_other). All are read and
// checked. Notifier and Metrics act on the job events (Options.Observe):
// notifications to the targets, Prometheus metrics on listen and in the
// textfile (their formats are documented on Notification and Metrics).
//
// # API and alerts
//
// While Run runs, the server answers HTTP+JSON on the unix socket
// Options.Socket (api.go; endpoints in the README): reads for whoever can
// connect (mode 0660, group SocketGroup), writes for uid 0 by the peer's
// credentials (MayWrite). It follows its jobs through Options.Observe
// like any observer. A failed job opens an alert (alerts.go; kept in
// AlertsFile, whose format is beside it), a later good job of the same
// kind, group and source clears it, an ack closes it; an alert whose
// subject is gone (its group deleted, its member taken out of the group,
// its mount no longer configured) is cleared with the reason
// (AlertEvent.Reason), as nothing could clear it otherwise;
// Options.OnAlert hears each.
package server
