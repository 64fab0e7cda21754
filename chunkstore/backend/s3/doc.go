// Package s3 is the chunk store's backend on an S3-compatible object store
// (Ceph's RADOS Gateway, MinIO, AWS S3, Backblaze, Wasabi): the way past
// one machine's disks, and the off-site copy of the 3-2-1 rule.
//
// # Client
//
// It speaks S3 through github.com/minio/minio-go/v7 rather than
// aws-sdk-go-v2: one module (with a handful of small dependencies) instead
// of a dozen service and middleware modules; a PUT of a body of known size
// in one request, signed with its SHA-256 so the server refuses damaged
// bytes; a ranged GET whose body is read straight into the caller's
// buffer; and it is what restic uses against the same servers. Only its
// low-level calls (minio.Core) are used: a file is one PUT, never a
// multipart upload.
//
// # Layout
//
// A store is the objects under a prefix of one bucket, located by a URL
// that ParseURL reads, s3:http://host:port/bucket/prefix:
//
//	<prefix>/config/config, config.copy   Config files
//	<prefix>/packs/<name>                 Packs
//	<prefix>/index/<name>                 Index files
//	<prefix>/points/<name>                Points
//	<prefix>/damaged/<name>               Damage records
//	<prefix>/journal/<name>               Journal entries (empty objects)
//	<prefix>/gc/<name>                    Garbage collection's plan and records
//	<prefix>/locks/<name>                 a lock's name (empty)
//	<prefix>/locks/<name>/<m>1-<token>-<ms>  a holder of lock <name> (lock.go)
//
// Packs are not fanned out into packs/xx/ as on a local disk: an object
// store has no directories to keep small, it spreads keys by their
// (random, hash) names itself, and one listing of packs/ is cheaper than
// 256.
//
// # How the contract is met
//
//   - Save is one PUT with the size known: S3 makes it atomic (readers see
//     the old object or the new, never part) and durable once answered. A
//     PUT cut by a failure leaves nothing, so a retry is safe. There is no
//     temp area, no Creator and no TempReader: a file being built is kept
//     in memory by backend.Create's buffering writer and saved at Commit.
//   - Load is one ranged GET (bytes=off-end) read with io.ReadFull into
//     the caller's buffer. A range past the end gives the bytes there are
//     and io.ErrUnexpectedEOF; a body shorter than its Content-Length is a
//     cut connection and is retried. NoSuchKey is backend.ErrNotExist.
//   - Remove is a HEAD, for the contract's ErrNotExist (S3's DELETE
//     succeeds for a missing object), then a DELETE.
//   - List is one listing of the type's prefix with "/" as delimiter,
//     with sizes; a listing cut by a transient error goes on after the
//     last key it gave, so no name comes twice.
//   - Read-after-write: S3 (since 2020) and Ceph's gateway are strongly
//     consistent for PUT, DELETE and listings of one bucket.
//   - ErrNoSpace: QuotaExceeded and EntityTooLarge.
//
// # Connections, retries, timeouts
//
// At most Config.Connections requests (default 8) are in flight, but for
// the pages of List, which calls back between them (a callback may make
// requests of its own, which would wait for List's slot). Each attempt has its
// own timeout (RequestTimeout). An attempt that fails with a transient
// error (5xx, 429 and SlowDown, timeouts, refused and reset connections,
// a body cut short) is sent again after a wait drawn at random below a
// bound that doubles from RetryBase to RetryMax ("full jitter"), up to
// Attempts in all; the error then says how many attempts were made and
// names the store's URL. A canceled context is never retried. minio-go's
// own retry loop is off (one attempt): it cannot see a GET's body cut
// after the headers, retries with its own fixed schedule, and would
// multiply with this loop.
//
// Before anything is written, Open lists one key: a wrong endpoint, a
// refused credential (AccessDenied, InvalidAccessKeyId,
// SignatureDoesNotMatch: ErrCredentials, naming the endpoint and where the
// credentials came from) or a missing bucket (ErrNoBucket, naming it)
// gives a clear error. Create, for recall init, makes a missing bucket.
//
// # Locks
//
// Ceph 16's gateway has no conditional PUT (If-None-Match), and S3 has no
// rename and no flock, so a lock is restic's protocol of lock objects
// (restic's internal/restic/lock.go), not a compare-and-swap. kopia's
// epochs (internal/epoch) avoid locks for index writes altogether by
// making every writer's files safe to list beside each other's, but still
// lean on a time-based safety margin. The store above takes locks that
// need mutual exclusion, which epochs do not give: the store lock (shared
// by backups, exclusive for repair), one per source's write sessions,
// garbage collection's, and the registration each write session holds so
// that garbage collection knows it runs. restic's protocol gives it.
//
// A holder of lock <name>:
//
//  1. lists locks/<name>/ first when it knows the server's clock (from an
//     earlier lock of this backend) and gives up at once, writing
//     nothing but the removal of holders that died on this host (when
//     the caller asks for it, below), when a living holder conflicts (so that a waiter trying again and again
//     does not disturb the holders' own checks);
//  2. writes its holder object, locks/<name>/<m>1-<token>, whose body is
//     its info (what others are shown) and whose modification time, set
//     by the server, is its last refresh;
//  3. lists the holders: its own object's time gives the server's clock;
//     a holder not refreshed for the longer of its own LockStale (in its
//     object's name: the stale time is each process's setting, not the
//     store's) and the contender's is dead and its object is removed;
//     so is a holder in a conflicting mode (either is exclusive) that
//     died on this host, when the caller asks for it (below), whose info
//     is read for the error anyway; a living holder in a conflicting
//     mode makes it remove its own object and return a
//     *backend.LockedError with the conflicting holders' info;
//  4. waits LockRecheck and lists again, as in 3;
//  5. writes locks/<name> (what Stat, List and Remove of backend.Locks
//     see) and returns; a goroutine rewrites its holder object every
//     LockRefresh until Unlock, which removes it.
//
// What is guaranteed: two holders in conflicting modes never both hold
// the lock, as long as (a) the gateway's listings show every object whose
// PUT was answered before the listing began, or at least before
// LockRecheck ran out (the first listing alone suffices on a strongly
// consistent store: of two contenders, the one that lists second sees the
// other's object), and (b) no holder goes LockStale without a refresh
// (frozen, suspended, cut off). A holder whose refreshes fail for
// LockStale less one LockRefresh, counted from the start of its last
// refresh that succeeded (a timer of its own, whatever an attempt in
// flight does; each attempt is cut off then, and one that succeeds after
// it does not count), or who finds its object removed, has lost the
// lock: its Lost channel closes (the returned Unlocker has a
// Lost() <-chan struct{} method), before any other may take the lock
// when it is refreshes that failed, and Unlock returns an error saying
// so. A holder that stops its work at Lost keeps the guarantee; one that
// goes on, or is frozen itself, does not, and what it does meanwhile may
// have run beside another holder. Staleness is judged on the server's
// clock alone (the modification times it gave, and its time learned from
// the contender's own object), so the clocks of the machines need not
// agree; the error of that estimate is one PUT's duration, on the safe
// side (a holder is judged stale late, never early; the early refusal of
// step 1 uses an earlier measure, and only ever refuses). A dead holder's lock
// goes LockStale after its last refresh (30 minutes by default), not at
// once as a flock does, but in the one case below.
//
// A holder that died on this host may free its lock at once, as restic
// frees a lock whose holder on the same host has no process any more, but
// only where its caller asks for it (backend.FreeDeadHere), and judged
// more carefully. The backend does not read infos; whoever opens it gives
// it a judge (SetHolderDead; the store's is chunkstore.HolderDead). Its
// rule: the holder's info names the same host name and the same boot
// (the kernel's boot id) as the judge's, and a holder token whose file is
// in the judge's own holder directory, where it exists and no process
// flocks it (internal/holder): the holder kept it flocked for as long as
// it lived, and the kernel dropped the flock when it died. That directory
// must be local to the machine (/run, or another local file system):
// flock on a network or user-space file system (NFS, SMB, FUSE, Ceph...)
// is emulated or seen by one client only, so the holder package refuses
// one there. Anything unread, unknown or unseen is alive: a holder of
// another host name or boot (a clone of the machine's disk, an image or
// a restore of it), one whose file is not in the judge's directory
// (another container's /run or /tmp, another user), or of an older
// version (no token) is judged by staleness alone. Without FreeDeadHere
// the judge is not asked at all.
//
// What nothing host-local can tell apart: a virtual machine cloned from
// a memory snapshot runs on with the same host name, boot, holder
// directory, processes and tokens as its original. When a holder dies in
// one copy, a judge there frees its lock, which the other copy's holder
// still holds (the same object, refreshed by both), and a second session
// of the same source may start beside it. The damage is bounded: that
// holder's next refresh, at most LockRefresh later, finds its object
// removed, and it stops with chunkstore.ErrLockLost.
//
// What freeing at once does to the guarantee above: the lock of a dead
// holder, which can send nothing more, is free without LockStale passing,
// and the guarantee holds with one narrowing: a request it sent before it
// died may still be carried out by the gateway afterwards. That window is
// not a matter of milliseconds: the kernel goes on draining a dead
// process's socket send buffers, and a proxy, or the gateway itself, may
// hold a whole PUT (a pack of tens of MiB) and complete it seconds later.
// LockStale would have covered it. So the fast way is taken only where
// such late requests are argued harmless, by one caller: the source's
// lock of a write session (chunkstore's LockSession, and the sealed
// copy's HoldSession), which a next backup of the same source takes
// right after a kill. A dead session's late index file covers packs that
// were durable before it was sent, and a late point manifest names only
// such packs; a late pack whose journal entry the next session already
// dropped (the pack was not there yet) is indexed by no one: a leak that
// the next exclusive pack walk adopts, never a loss. Everything else
// judges by staleness alone: garbage collection's lock and its probes of
// write sessions (a killed backup's manifest landing after the
// collection's last mark could need a pack it deletes; a killed
// collection's consolidated index file landing after the next collection
// dropped the plan as never written would hide packs with no plan), the
// store lock in either mode (a session meets there only exclusive
// holders, whose late removals could take what it deduplicates against),
// and any new caller that does not ask. Only the infos of holders that
// would refuse the lock are read (one GET each, at most 64 KiB, which a
// refusal reads anyway for its message), so taking a free lock costs no
// GET.
//
// What is not: contenders that write their objects at about the same time
// may all see each other and all back off; the caller waits and tries
// again, preferably after a random delay. A holder object written by a
// newer format (another name) is taken for an exclusive holder.
package s3
