package chunkstore

import (
	"testing"

	"github.com/recall-backup/recall/chunkstore/backend/faulty"
	"github.com/recall-backup/recall/chunkstore/backend/local"
)

// localOf returns the local backend under s (through the fault wrapper).
func localOf(s *Store) *local.Backend {
	be := s.be
	if f, ok := be.(*faulty.Backend); ok {
		be = f.Inner()
	}
	return be.(*local.Backend)
}

// faultsOf returns the fault wrapper of a store made by newStore.
func faultsOf(t testing.TB, s *Store) *faulty.Backend {
	t.Helper()
	f, ok := s.be.(*faulty.Backend)
	if !ok {
		t.Fatal("the store is not over the fault wrapper")
	}
	return f
}

// packPath is the file of a pack in a local store, for tests that damage it.
func (s *Store) packPath(id ID) string { return localOf(s).Path(packHandle(id)) }
