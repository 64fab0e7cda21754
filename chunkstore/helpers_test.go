package chunkstore

import (
	"github.com/recall-backup/recall/chunkstore/backend/local"
)

// packPath is the file of a pack in a local store, for tests that damage it.
func (s *Store) packPath(id ID) string {
	return s.be.(*local.Backend).Path(packHandle(id))
}
