// Package engine backs up directory trees, files and block devices into a
// chunkstore as recovery points, restores them, and verifies them.
//
// A point is a manifest (point.go) naming a root tree blob; each directory
// is one tree blob (tree.go) whose file entries list their chunks with
// cumulative offsets.
//
// Reading and writing are types. A Store is opened once (Open); anyone
// gets its Reader, which reads through StoreReader, the store's read half,
// and so cannot write: that is all restore, verify and the recovery tree
// get. Writing needs a Session, which only Store.Session hands out, by
// taking the store's lock: it saves blobs, flushes them, commits and
// removes points, and (exclusive sessions) repairs. Backup, the repairs,
// Forget and job recording (RunJob) are the engine's, so the command line
// and a server call the same functions.
//
// Restore plans its reads by pack (plan.go): the walk creates the files
// and notes each chunk's places under its pack; each pack is then read
// once, in one pass, and every chunk written to each place that needs it.
// Verify walks each tree once across all points, reporting what a shared
// tree holds damaged under every path where it appears, and reads each
// pack once, whole.
//
// Data sources are paths (a source's name derived from its path) or
// registered in the catalog (source.go): a Windows computer's bmr or
// systemstate image, which WSB writes into a staging directory and Ingest
// (ingest.go) turns into an ordinary point of that directory once the
// image is complete and settled.
package engine
