package local

import (
	"context"

	"github.com/recall-backup/recall/chunkstore/backend"
	"golang.org/x/sys/unix"
	"os"
)

// OpenFile opens a file for reads at random offsets (backend.FileOpener)
// and returns its size.
func (b *Backend) OpenFile(ctx context.Context, h backend.Handle) (backend.ReadAtCloser, int64, error) {
	if err := h.Valid(); err != nil {
		return nil, 0, err
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	f, err := os.Open(b.Path(h))
	if err != nil {
		return nil, 0, notExist(err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	// Its reads are single blocks at random: readahead would only fill
	// the page cache with blocks nobody asked for.
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)
	return f, st.Size(), nil
}
