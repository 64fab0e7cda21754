// Package fs presents recovery points as one read-only file tree, and
// serves that tree through FUSE.
//
// The tree (Tree, Source, Point, Entry, Handle) knows nothing of FUSE and
// nothing of pack layout: it reads points, directory trees and chunks
// through the small Backend interface, which engine.Reader satisfies
// (NewEngineBackend). The go-fuse adapter (fuse.go) turns it into kernel
// answers; mount helpers (mountutil_linux.go) find, clean and unmount
// mounts for the command line.
//
// # Layout
//
//	<mnt>/<source>/@GMT-YYYY.MM.DD-HH.MM.SS/...   one directory per recovery point
//	<mnt>/<source>/latest -> @GMT-...              the newest point of the source
//
// A point's name is its start time in UTC, to the second, in the token
// format of Samba's vfs_shadow_copy2 (shadow:format =
// @GMT-%Y.%m.%d-%H.%M.%S), so `shadow:snapdir = <mnt>/<source>` gives
// Windows users the Previous Versions tab. No name holds a ':'.
//
// Two points of one source that started in the same second: the older one
// gets its own second, the younger the next second that no point of the
// source uses. We chose this over a suffix ("@GMT-...-2") because
// shadow_copy2 parses names with strptime and turns a token back into a
// path by formatting the time, so a suffixed directory would be listed as
// a duplicate of the first and could never be opened from Windows; with
// the next free second every point stays reachable from Samba and from
// scripts, at the cost of a name later than the real start time
// (`recall points` shows the exact time): a second or two for points of
// a schedule, but a burst of points in a few seconds (a script backing
// up in a loop, ten a second) pushes the names ahead by one second a
// point, and the names after it too, until the points fall behind real
// time again. The backup records the name it gave in the point
// (engine.Point.Name), and every tree shows the point under it: a point
// keeps its name for its life, whatever points come or go, in every
// mount. Points from before names were recorded are named by each tree,
// oldest first, after the recorded names (engine.PointNames): the same
// names unless a point that shared a second with one of them was
// forgotten.
// What must name one point whatever happens (a bare-metal recovery share)
// uses <source>/<point id>: a symlink to the point's directory that
// lookups find and listings never show, gone with the point.
//
// # Live changes
//
// Tree.Update re-reads the store's list of points and publishes a new,
// immutable view (sources, points, names) with one atomic swap, so lookups
// and reads never wait for it. New points appear, "latest" moves and
// forgotten points disappear; a file that is open in a forgotten point
// keeps reading (its chunks stay until garbage collection) and never
// returns bytes other than the ones backed up: every chunk is verified
// against its id on read. The adapter polls (Server.Watch, every second)
// and also checks a cheap stamp of the points directory whenever a source
// directory is listed or looked in.
//
// The kernel caches symlink targets, latest's too, so a path through
// latest costs no READLINK (before, `ls -l` of a directory through latest
// made three per entry). When the newest point changes, the server drops
// latest's cached target: from Watch, or at once in the request on the
// source directory that notices. `recall backup` and `recall forget` make
// such a request on every mount of their store (Refresh: a lookup of a
// point name no store has) before they return, so
// `recall backup ... && ls <mnt>/<src>/latest/` sees the new point. A mount
// they cannot enter (another mount namespace, another user without
// allow_other) catches up within a second.
//
// # Sources left out
//
// Options.Withheld names sources the tree leaves out (the command line
// passes those whose protection group has end-user recovery off). The
// tree asks for the set on every Update and Sync; a changed set changes
// the view like points coming and going (the source appears with its
// points, or disappears), with no remount. Manifests of withheld points
// are kept, so showing a source again reads nothing. A withheld point is
// not forgotten: a file open in it keeps reading its backed-up bytes
// until it is closed, as in a forgotten point. A set that cannot be read
// leaves the last one in place (logged once per distinct error): a
// catalog busy for a moment must not make sources flicker. The tree makes
// no decision about who asked: a mount of one point (MountOptions.Point)
// is given no Withheld by the command line, which decides that.
//
// # Names that cannot be shown
//
// Backups write none of these; a crafted or damaged manifest or tree can.
// A source or an entry whose name cannot be a directory entry (empty, "."
// or "..", holding '/' or NUL, or longer than 1024 bytes) is left out of
// listings and lookups and logged, once per point or tree: the kernel
// fails a whole listing over one such name (and go-fuse panics over ""),
// so one bad point made every source unbrowsable, and one bad entry its
// whole directory. Restore skips the same entries. A tree whose entries
// are out of order is sorted when it is loaded (lookups bisect it;
// before, ls listed names whose lookup failed), and of a name held twice
// the first entry in the tree is shown.
//
// # Metadata
//
// Owners, permission bits, times (ns), sizes, symlink targets, device
// numbers and xattrs are served as they were backed up. Hard links inside
// a point share one inode number and report the link count recorded at
// backup time. Inode numbers are a hash of (point id, path) — of (point
// id, link group) for hard links — with bit 62 set, so they are stable
// across remounts and never equal to the numbers of the live files (the
// problem Samba's shadow:fixinodes works around). The root directory of a
// point reports nlink 1 ("unknown", as btrfs does), because the manifest
// does not record it and counting would load every point's root tree for a
// plain `ls -l` of a source.
//
// One answer differs from the backed-up file system's: a missing SELinux
// label (security.selinux) is "not supported" (EOPNOTSUPP), not "no such
// attribute", when neither the point's root nor any entry of the
// directory has one. ls -l asks for the label and the access ACL of every
// entry, and on a host without SELinux each question is a request to the
// server (the kernel caches ACLs, not other attributes); on this answer
// ls stops asking for labels on the mount for the rest of its run, so
// ls -l of a directory makes one request per entry instead of two, and a
// second ls -l, whose ACLs the kernel holds, none. A point with a labeled
// root (any backup of a labeled file system) answers every entry
// exactly. The limit: a point with an unlabeled root and labels in some
// directories only; `ls -Z` of such a directory given by name asks for
// the directory's own label first and then shows none inside it
// (getxattr and listxattr still return them).
//
// # Reads
//
// Opening a file is O(1) (its node carries the chunk list); a read finds
// its first chunk by binary search over the cumulative offsets. Decoded
// chunks are kept in a byte-sized, sharded LRU cache (Options.CacheBytes),
// decoded trees in a second one (64 MiB, which also keeps the latest
// directory heavier than all of it: a listing looks up every entry, and a
// directory of 300,000 entries decoded again for each one made the mount
// run out of memory); concurrent loads of one chunk are merged.
// A handle that reads sequentially starts loads of the next chunks in
// parallel (Options.Prefetch) and takes the chunks it has left 4 MiB behind
// out of the cache again: the kernel's page cache holds those bytes, and
// one large file read through must not push everything else out. Chunk
// buffers are reference-counted (the cache holds one reference, every
// read until the kernel has its reply another) and reused once free, so
// a read does not allocate and zero a fresh buffer per chunk.
// There is no global or per-handle lock on
// the read path: handles keep their state in atomics and the caches lock
// one shard for a map lookup only, never across I/O.
//
// The kernel opens files without asking (FUSE_NO_OPEN_SUPPORT, where it
// has it) and sends no FLUSH, so reading a small file is one READ. A tree
// walk (tar, cp -r, rsync, diff -r reads a directory's files in listing
// order) is served ahead: when the kernel reads a file whose previous
// file in the directory it read too, the next files, up to 4 MiB, are
// loaded on all CPUs and stored in the kernel's page cache
// (FUSE_NOTIFY_STORE), and the walker reads them without a request.
// Their chunks then leave the chunk cache, since the kernel holds the
// bytes: a walk through 300 MiB of small files peaks at ~100 MiB of
// server memory instead of filling the cache.
//
// SEEK_DATA and SEEK_HOLE report the holes the point recorded: those of
// sparse files, and chunks that were all zeroes (not stored), so
// cp --sparse, tar -S and qemu-img skip them instead of reading zeroes.
//
// A chunk that is missing or fails verification fails that read with an
// error (EIO through FUSE) and a log line naming the source, the point and
// the path; other files keep reading. A directory whose tree cannot be
// read fails with an error too, never as an empty directory.
package fs
