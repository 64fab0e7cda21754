package local

import (
	"sync/atomic"
)

// Fault hook: a test's view of every step that makes the store durable.
//
// The crash-consistency claim of the chunk store ("a crash at any moment
// leaves the store consistent") is about moments between durable steps, and a random
// kill almost never lands in the narrow windows that matter (a manifest
// written before the packs it refers to are synced). A test sets a hook
// with SetFaultHook; the store calls it for every step below, in the order
// the steps happen, from whichever goroutine does them, and does not do a
// step whose hook returned an error (the error is the step's error). A
// test can then count a backup's steps, stop it at any one of them, and
// model a power cut by undoing what the steps since their last fsync did
// (engine's crash test does that).
//
// The steps, and when the hook is called:
//
//	StepCreate   after a file is created (its name is not known before): a
//	             new pack in tmp/, the temp file of an index file, point
//	             manifest, damage record or config; when the hook fails,
//	             the file is removed again
//	StepWrite    before bytes go to a file being built: each write of a
//	             pack (with O_DIRECT, each 4 MiB staged and the pack's end),
//	             the body of the other files; the file only grows
//	StepSync     before a file is fsynced
//	StepRename   before Path is renamed to To
//	StepSyncDir  before a directory (Path) is fsynced
//
// Index files and point manifests are written as create, write, fsync,
// rename, directory fsync under index/ and points/; a pack as create,
// writes, fsync, rename into packs/xx/, directory fsync. Not reported:
// removals (temp files, repair, forget), the lock file, and directories
// created (packs/xx: its entry in packs/ is not fsynced, so a test cannot
// drop it; ext4's journal makes it durable with the fsync of packs/xx that
// follows, strict POSIX does not promise that).
//
// The hook sits here, in the local backend, because the steps are this
// backend's system calls: the paths are real, so a test can stat and
// truncate them. The chunk store re-exports it (chunkstore.SetFaultHook).
// Faults that do not depend on the file system (errors, short reads, a full
// disk at the Nth write) are the faulty backend wrapper's job. This is test
// machinery, not an API. With no hook set, a step costs one atomic load.

// StepKind names a durable step.
type StepKind string

// The durable steps.
const (
	StepCreate  StepKind = "create"
	StepWrite   StepKind = "write"
	StepSync    StepKind = "fsync"
	StepRename  StepKind = "rename"
	StepSyncDir StepKind = "dirsync"
)

// Step is one durable step of the store.
type Step struct {
	Kind StepKind
	Path string // the file or directory
	To   string // StepRename: the new name
}

var faultHook atomic.Pointer[func(Step) error]

// SetFaultHook makes the store call fn at every durable step (see the
// first comment of this file); nil removes the hook. It is for tests, applies to
// every store of the process, and returns a function that restores the
// previous hook.
func SetFaultHook(fn func(Step) error) (restore func()) {
	var p *func(Step) error
	if fn != nil {
		p = &fn
	}
	old := faultHook.Swap(p)
	return func() { faultHook.Store(old) }
}

// fault reports a durable step to the hook, if one is set.
func fault(kind StepKind, path, to string) error {
	if h := faultHook.Load(); h != nil {
		return (*h)(Step{Kind: kind, Path: path, To: to})
	}
	return nil
}
