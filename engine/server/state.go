package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/recall-backup/recall/internal/atomicfile"
)

// StateFile is where the server keeps, in its home, how far its schedule
// has run (format in the package comment).
const StateFile = "serve-state.json"

const stateVersion = 1

// state is the scheduler's memory across restarts.
type state struct {
	Version int                    `json:"version"`
	Groups  map[string]*groupState `json:"groups"`
	// GC is when garbage collection last finished.
	GC time.Time `json:"gc,omitzero"`
}

type groupState struct {
	// Created is the Created time of the group this state is of: a group
	// deleted and made again under its name starts afresh.
	Created time.Time `json:"group_created,omitzero"`
	// Covered is the latest scheduled run time whose backup finished,
	// whatever its outcome; the next due run is the first after it.
	Covered time.Time `json:"covered"`
	// Tape is the latest tape-goal run time whose write finished well
	// (zero: the goal has not run; its first run is the next one due).
	Tape time.Time `json:"tape,omitzero"`
	// TapeRetry is when a failed tape write is tried again.
	TapeRetry time.Time `json:"tape_retry,omitzero"`
	// Requested is when a backup of the whole group was asked for
	// through the API (Server.Backup) and not made yet: a server that
	// stops or dies before it finishes makes it at its next start, as it
	// makes a scheduled run it missed. Zero: none asked for.
	Requested time.Time `json:"requested,omitzero"`
}

func loadState(home string) (*state, error) {
	p := filepath.Join(home, StateFile)
	st := &state{Version: stateVersion, Groups: map[string]*groupState{}}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read server state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("server state %s: %w (remove it: the schedule then starts from now, and missed runs since the last one are not made up)", p, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("server state %s has version %d; this recall knows %d (run the recall that wrote it, or remove the file)", p, st.Version, stateVersion)
	}
	if st.Groups == nil {
		st.Groups = map[string]*groupState{}
	}
	return st, nil
}

// encode is the file's bytes: stable (map keys sorted by encoding/json).
func (st *state) encode() []byte {
	b, _ := json.MarshalIndent(st, "", "  ")
	return append(b, '\n')
}

// save replaces the file atomically: a crash leaves the old or the new.
func (st *state) save(home string) error {
	return atomicfile.Write(filepath.Join(home, StateFile), st.encode(), 0o644)
}
