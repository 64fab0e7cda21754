package engine

import (
	"errors"
	"fmt"

	"github.com/recall-backup/recall/chunkstore"
)

// setCompression makes c the codec of w's new blobs; "" keeps the store's
// default. A name that is no codec is ErrBadOption.
func setCompression(w *chunkstore.Writer, c chunkstore.Compression) error {
	if c == "" {
		return nil
	}
	err := w.SetCompression(c)
	if errors.Is(err, chunkstore.ErrCompression) {
		return fmt.Errorf("%w: %v", ErrBadOption, err)
	}
	return err
}
