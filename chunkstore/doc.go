// Package chunkstore stores deduplicated, compressed and optionally
// encrypted blobs in immutable pack files, and indexes them.
//
// # Storage
//
// Every byte of the store goes through a backend (package backend, whose
// comment is the contract); Open uses the local directory backend
// (backend/local), OpenBackend any other. Optional capabilities are
// detected, never assumed: O_DIRECT reads with piecewise hashing
// (backend.DirectReader), packs streamed as they are built
// (backend.Creator; otherwise a pack is buffered and saved whole), temp
// areas per write session (backend.Tagger, backend.TempCleaner).
//
// # Layout (local directory)
//
//	<store>/config           JSON: format version, store id, chunker parameters, default compression, sealed key, checksum
//	<store>/config.copy      the same bytes again (configfile.go says why)
//	<store>/packs/xx/<id>    packs, named by the BLAKE3-256 of their header and trailer (pack.go)
//	<store>/index/<id>       index files (caches of pack headers)
//	<store>/damaged/<id>     damage records: blobs found bad, per pack
//	<store>/journal/<tag>.<id> a write session's packs not yet indexed (journal.go)
//	<store>/points/<id>      recovery point manifests (written by engine)
//	<store>/locks/writer     the store lock: shared by write sessions, or exclusive (lock.go)
//	<store>/locks/source-<h> the lock of one source's write session
//	<store>/locks/session-<r> a running write session's registration (sessions.go)
//	<store>/locks/gc         held by the garbage collection running
//	<store>/gc/plan          garbage collection's plan in progress (gc.go)
//	<store>/gc/retire-<id>   index files superseded by <id>, removed after a grace period
//	<store>/gc/leftovers     when garbage collection first found each journal entry of a session not running (gc_leftovers.go)
//	<store>/tmp/[source-<h>/] packs being written (by a session of a source)
//
// # Write order
//
// A pack is written to tmp/ and fsynced there; its id is recorded in the
// writing session's journal (an empty file, journal/<tag>.<pack id>, saved
// durably); the pack is renamed into packs/ and its directory fsynced;
// only then is
// it listed in an index file (written the same way, every 256 packs and at
// Flush), after which its journal entry is removed; and only after that is
// a point manifest that refers to its blobs written. A crash at any moment
// leaves at worst packs no index file covers, each named in a journal; the
// next session of the same source reads its journal (not a listing of
// every pack), reads those packs' headers, indexes them and reuses their
// blobs; the exclusive lock's pack walk finds every session's, and its
// first writer indexes them. A pack whole in tmp/ but not yet renamed is
// adopted by the next session of the source (or the exclusive lock) when
// its blobs verify, instead of being removed with the temp area.
// journal.go says why one file per pack and what each crash leaves;
// journal_temp.go how a finished temp pack is told from a torn one.
//
// # Writing without a pack walk
//
// A write session lists no pack, so what the walk told it (which packs are
// missing or truncated, whose blobs must not be deduplicated against) is
// learned per pack: Has stats a pack of unknown size the first time it
// would answer from it, and the sizes learned are forgotten when the next
// session begins. The cost grows with the packs a session deduplicates
// against, not with the packs stored.
//
// # Compression
//
// Each blob is compressed on its own, with zstd (the default: its fastest
// level) or S2 (faster, a few percent larger), or stored as it is (off);
// its pack entry records which (pack.go). The store config names the
// codec of new blobs and a writer may use another for one session, so a
// store mixes codecs freely and every reader reads them all. A blob that
// compression does not shrink by at least 1/32 is stored as it is; large
// blobs are first judged on a sample (writer.go), so incompressible data
// costs little with either codec. zstd frames are written with a 2 MiB
// window (before, 4 MiB) and without a content checksum (before, with
// one, which readers never checked: a blob is checked against its id);
// readers take any window up to the largest blob, with or without a
// checksum, so stores of either read alike. Decoders check a blob's
// declared size against what its bytes can produce before they allocate
// (zstdsize.go, s2size.go).
//
// # Ids and encryption
//
// Blob ids are BLAKE3-256 of the plaintext; in an encrypted store the hash is
// keyed with a secret id key, so ids reveal nothing about content. Encryption
// is AES-256-GCM per blob (random 96-bit nonce, blob id as additional data);
// the master key (encryption key, id key, chunker polynomial) is sealed with
// a key derived from the passphrase by argon2id.
//
// # Damage and repair
//
// A blob whose bytes fail their check is recorded (damage.go) by the read
// that found it. The index keeps every place of a blob and uses only usable
// ones: pack present, blob inside the pack's size, place not recorded
// damaged; Has, which deduplication asks, is true only for those, so the
// next backup of a source that still has the data stores it again. Repair
// (repair.go) rebuilds index files from pack headers and salvages the good
// blobs of damaged packs into new ones, new files durable before old ones
// are removed.
//
// # The index
//
// Index files are caches of pack headers. Version 1 files (index.go) are
// what a writer flushes; a consolidated version 2 file (index2.go, whose
// comment gives the format and why it was chosen) holds every place in
// sorted blocks read in place, with only a fanout and a 16-bit
// fingerprint per chunk in memory, and names the files it supersedes. An
// exclusive lock consolidates when the part held in memory has grown;
// superseded files stay until garbage collection removes them.
//
// # Garbage collection
//
// Garbage collection (gc.go, whose comment gives the steps and the
// invariant that makes them safe) runs beside write sessions: it hides
// the packs it means to delete in a consolidated index file that lists
// them with no places (still read, never deduplicated against), and
// deletes them once every write session registered before the hide
// (sessions.go) has ended and the points committed meanwhile are marked.
//
// # Reading by pack
//
// LoadPackBlobs (packread.go) reads the blobs one reader needs from one
// pack in a single pass, in offset order, checking each as LoadBlob does;
// restore plans its reads with it (engine/plan.go), and a cold backend is
// asked for the packs first (WarmPacks).
//
// The pack, index, damage record and journal formats are documented in
// pack.go, index.go, index2.go, damage.go and journal.go.
package chunkstore
