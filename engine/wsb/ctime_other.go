//go:build !linux

package wsb

import (
	"io/fs"
	"time"
)

// changeTime is fi's write time: where the change time is not read, the
// print and LastWrite rest on write times alone.
func changeTime(fi fs.FileInfo) time.Time { return fi.ModTime() }
