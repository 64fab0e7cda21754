package chunkstore

import "github.com/recall-backup/recall/chunkstore/backend/local"

// The fault hook of the local backend (backend/local/fault.go), under the
// names engine's power-cut test knows: it sees every durable step of a
// store in a local directory, with the real paths.

// StepKind names a durable step.
type StepKind = local.StepKind

// Step is one durable step of the store.
type Step = local.Step

// The durable steps.
const (
	StepCreate  = local.StepCreate
	StepWrite   = local.StepWrite
	StepSync    = local.StepSync
	StepRename  = local.StepRename
	StepSyncDir = local.StepSyncDir
)

// SetFaultHook makes every local store call fn at each durable step; nil
// removes the hook. It returns a function that restores the previous hook.
func SetFaultHook(fn func(Step) error) (restore func()) { return local.SetFaultHook(fn) }
