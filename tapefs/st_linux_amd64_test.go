package tapefs

import (
	"testing"
	"unsafe"
)

// TestSTIoctlEncoding pins the hand-declared tape ioctls to the values of
// linux/mtio.h on amd64: the request numbers, which encode the argument
// sizes, and the byte layout of each argument as the kernel reads it.
func TestSTIoctlEncoding(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"MTIOCTOP", mtiocTop, 0x40086d01},
		{"MTIOCGET", mtiocGet, 0x80306d02},
		{"MTIOCPOS", mtiocPos, 0x80086d03},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}

	var op mtop
	var g mtget
	var p mtpos
	for _, f := range []struct {
		name        string
		off, size   uintptr
		wOff, wSize uintptr
	}{
		{"mtop.mt_op", unsafe.Offsetof(op.Op), unsafe.Sizeof(op.Op), 0, 2},
		{"mtop.mt_count", unsafe.Offsetof(op.Count), unsafe.Sizeof(op.Count), 4, 4},
		{"mtget.mt_type", unsafe.Offsetof(g.Type), unsafe.Sizeof(g.Type), 0, 8},
		{"mtget.mt_resid", unsafe.Offsetof(g.Resid), unsafe.Sizeof(g.Resid), 8, 8},
		{"mtget.mt_dsreg", unsafe.Offsetof(g.Dsreg), unsafe.Sizeof(g.Dsreg), 16, 8},
		{"mtget.mt_gstat", unsafe.Offsetof(g.Gstat), unsafe.Sizeof(g.Gstat), 24, 8},
		{"mtget.mt_erreg", unsafe.Offsetof(g.Erreg), unsafe.Sizeof(g.Erreg), 32, 8},
		{"mtget.mt_fileno", unsafe.Offsetof(g.Fileno), unsafe.Sizeof(g.Fileno), 40, 4},
		{"mtget.mt_blkno", unsafe.Offsetof(g.Blkno), unsafe.Sizeof(g.Blkno), 44, 4},
		{"mtpos.mt_blkno", unsafe.Offsetof(p.Blkno), unsafe.Sizeof(p.Blkno), 0, 8},
	} {
		if f.off != f.wOff || f.size != f.wSize {
			t.Errorf("%s at offset %d size %d, want offset %d size %d", f.name, f.off, f.size, f.wOff, f.wSize)
		}
	}
	for _, s := range []struct {
		name      string
		got, want uintptr
	}{
		{"struct mtop", unsafe.Sizeof(op), 8},
		{"struct mtget", unsafe.Sizeof(g), 48},
		{"struct mtpos", unsafe.Sizeof(p), 8},
	} {
		if s.got != s.want {
			t.Errorf("sizeof(%s) = %d, want %d", s.name, s.got, s.want)
		}
	}
}

// TestSTOpCodes pins the MTIOCTOP operation codes and option bits to
// linux/mtio.h.
func TestSTOpCodes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want int
	}{
		{"MTFSF", mtFSF, 1}, {"MTBSF", mtBSF, 2}, {"MTWEOF", mtWEOF, 5}, {"MTREW", mtREW, 6},
		{"MTOFFL", mtOFFL, 7}, {"MTEOM", mtEOM, 12}, {"MTSETBLK", mtSETBLK, 20}, {"MTSEEK", mtSEEK, 22},
		{"MTSETDRVBUFFER", mtSETDRVBUFFER, 24}, {"MTLOAD", mtLOAD, 30}, {"MTWEOFI", mtWEOFI, 35},
		{"MT_ST_SETBOOLEANS", mtSTSetBooleans, 0x30000000}, {"MT_ST_CLEARBOOLEANS", mtSTClearBooleans, 0x40000000},
		{"MT_ST_ASYNC_WRITES", mtSTAsyncWrites, 0x2}, {"MT_ST_SCSI2LOGICAL", mtSTSCSI2Logical, 0x800},
		{"MT_ST_NOWAIT", mtSTNowait, 0x2000}, {"MT_ST_NOWAIT_EOF", mtSTNowaitEOF, 0x8000},
		{"GMT_EOF", int(gmtEOF), 0x80000000}, {"GMT_BOT", int(gmtBOT), 0x40000000}, {"GMT_EOT", int(gmtEOT), 0x20000000},
		{"GMT_EOD", int(gmtEOD), 0x08000000}, {"GMT_WR_PROT", int(gmtWrProt), 0x04000000}, {"GMT_ONLINE", int(gmtOnline), 0x01000000},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}
