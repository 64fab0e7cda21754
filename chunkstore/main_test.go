package chunkstore

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/recall-backup/recall/internal/holder"
)

// TestMain gives the tests, and the holder processes they start (which
// inherit the environment), a holder directory of their own: they must
// neither judge the machine's holders nor leave files among them.
func TestMain(m *testing.M) {
	if os.Getenv(holder.DirEnv) != "" {
		// A holder process a test started (its parent's directory), or a
		// run told which to use.
		os.Exit(m.Run())
	}
	tmp, err := os.MkdirTemp("", "recall-chunkstore-test-")
	if err != nil {
		panic(err)
	}
	os.Setenv(holder.DirEnv, filepath.Join(tmp, "holders"))
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}
