// Package engine backs up directory trees, files and block devices into a
// chunkstore as recovery points, restores them, and verifies them.
//
// A point is a manifest (point.go) naming a root tree blob; each directory
// is one tree blob (tree.go) whose file entries list their chunks with
// cumulative offsets. Readers (restore, verify, the recovery tree) get a
// Reader, which cannot write.
package engine
