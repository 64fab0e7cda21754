package wsb

import (
	"io/fs"
	"syscall"
	"time"
)

// changeTime is fi's change time (st_ctime), which no client of a share
// can set; its write time when fi does not come from stat(2).
func changeTime(fi fs.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	}
	return fi.ModTime()
}
