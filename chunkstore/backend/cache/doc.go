// Package cache keeps verified local copies of a remote store's index
// files, point manifests and tree packs, in a directory bounded by bytes,
// so that opening a store, listing its points, browsing the mount and
// planning a restore download no pack data: data chunks are read from the
// remote as they are needed, through the store's own chunk cache.
//
// A Backend (New) wraps the remote backend and is a backend.Backend
// itself: the store runs over it unchanged.
//
// # What is kept
//
//   - Index files and point manifests: every one the store reads or
//     writes. They are small (a consolidated index file is the exception:
//     a file larger than an eighth of the bound is not kept) and every
//     open reads them all.
//   - Packs the store says hold tree blobs (Keep): packs are written per
//     blob type, and the store knows a pack's type from the index, so it
//     tells the cache when it writes a tree pack and when it reads a tree
//     blob. A kept pack is fetched whole at its next Load (one GET) and
//     saved locally as it is written (write-through). Deciding by the size
//     of the range asked for would not do: data chunks of a few KiB are
//     as small as tree blobs, and a restore would fill the cache with
//     data packs.
//   - Nothing else. The config files change in place (a new passphrase, a
//     format upgrade) and are not named by their content, so a local copy
//     could neither be checked nor trusted to be current; they are two
//     small reads per open. Damage records, journal entries, garbage
//     collection's records and locks are about the present, and pass
//     through.
//
// A file is kept only once the store has said how its bytes are checked
// against its name (CheckNamesWith: packs are named by the BLAKE3 of their
// header and trailer, index files and manifests by the BLAKE3 of all their
// bytes); until then, and for a consumer of the backend that is not a
// store, everything passes through.
//
// # Verified
//
// A file fetched from the remote is checked against its name before it is
// written locally; one that fails is served as the remote gave it (the
// store's own checks report the damage) and not kept. The local copy
// carries the BLAKE3 of all its bytes (below), which the first read of
// the copy in each process checks, so a copy damaged on the local disk is
// dropped and fetched again instead of reaching the store, which would
// record the remote's blobs as damaged. Pack names cover only the pack's
// header, hence the cache's own hash over every byte.
//
// # Format, version 1
//
//	<dir>/index/<name>, <dir>/points/<name>, <dir>/packs/<name>:
//	    file = content | [32]byte BLAKE3-256(content) | magic "RCLCACH1"
//	<dir>/<type>/.tmp-*: a copy being written (renamed into place when
//	    whole; one left by a killed process is removed after an hour)
//
// The content is the remote file's bytes, so a range of the remote file
// is the same range of the local one.
//
// # Bound
//
// The files of the directory are kept below Options.MaxBytes (default 2
// GiB); the least recently used go first. A file's modification time is
// its last use (set at most once a minute per file and process), so the
// order survives restarts and is shared between processes without a
// record of its own.
//
// # Consistency
//
// Save and Remove go to the remote first and then update the local copy
// (write-through); Stat and Lock always ask the remote. List passes
// through to the remote, and drops the local copies of files of that type
// the remote no longer has. Between a removal by another process and the
// next List, a Load may still be served from the local copy: the bytes are
// those the file had (its name is their hash), so a reader gets what it
// would have got a moment earlier.
//
// Two processes (the server and a command) may share a directory: a copy
// is written under a temporary name and renamed into place, every file is
// checked on its first read in each process, and there is no index or
// record of the cache's own for them to race on; a copy removed by one
// while the other reads it stays readable through the open file, and one
// found missing is fetched again. The directory serves one store: List
// drops what the remote does not list.
package cache
