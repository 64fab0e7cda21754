package engine

import (
	"context"
	"errors"

	"github.com/recall-backup/recall/chunkstore"
)

// RepairOptions configure RepairIndex and RepairPacks.
type RepairOptions struct {
	DryRun bool // report what would change, change nothing
	Log    func(format string, args ...any)
}

// RepairReport says what a repair changed, or with DryRun would change.
type RepairReport struct {
	DryRun  bool     `json:"dry_run"`
	Actions []string `json:"actions"` // one line per change
}

var errRepairPending = errors.New("repair: not built yet")

// RepairIndex rebuilds the index files from pack headers.
func RepairIndex(ctx context.Context, lock *chunkstore.Lock, opts RepairOptions) (*RepairReport, error) {
	return nil, errRepairPending
}

// RepairPacks salvages the readable blobs of damaged packs.
func RepairPacks(ctx context.Context, lock *chunkstore.Lock, opts RepairOptions) (*RepairReport, error) {
	return nil, errRepairPending
}
