//go:build linux && (386 || amd64 || arm || arm64 || loong64 || riscv64 || s390x)

package tapefs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The magnetic tape ioctls, declared by hand: x/sys/unix has none. These
// architectures share the generic ioctl encoding (asm-generic/ioctl.h):
// direction in bits 30-31 (1 write, 2 read), argument size in bits 16-29,
// type in 8-15, number in 0-7. The sizes come from the structs below, so the
// numbers follow the architecture's C long.
const (
	iocWrite = 1
	iocRead  = 2

	mtiocTop = iocWrite<<30 | uintptr(unsafe.Sizeof(mtop{}))<<16 | 'm'<<8 | 1
	mtiocGet = iocRead<<30 | uintptr(unsafe.Sizeof(mtget{}))<<16 | 'm'<<8 | 2
	mtiocPos = iocRead<<30 | uintptr(unsafe.Sizeof(mtpos{}))<<16 | 'm'<<8 | 3
)

// mtop is struct mtop {short mt_op; int mt_count;}: Go pads Count to offset
// 4 as C does.
type mtop struct {
	Op    int16
	Count int32
}

// mtpos is struct mtpos {long mt_blkno;}.
type mtpos struct {
	Blkno int
}

// scsiTapeMajor is the character major of st devices; bit 7 of the minor
// is set on the non-rewinding ones (st.rst, "Minor Numbers").
const (
	scsiTapeMajor = 9
	stNoRewindBit = 0x80
)

// OpenST opens the st drive at path, a non-rewinding device (/dev/nstN, or
// a /dev/tape/by-id/...-nst link), in variable-block mode. The device opens
// whether or not a cartridge is loaded (O_NONBLOCK), so that a changer can
// load one afterwards; Load waits for it.
func OpenST(path string) (Drive, error) {
	d, err := openST(path)
	if err != nil {
		return nil, err
	}
	return d, nil
}

func openST(path string) (*stDrive, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &DeviceError{Device: path, Op: "open", Err: translate(stOpen, err)}
	}
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil {
		unix.Close(fd)
		return nil, &DeviceError{Device: path, Op: "stat", Err: err}
	}
	if err := checkNonRewinding(fst.Mode, fst.Rdev); err != nil {
		unix.Close(fd)
		return nil, &DeviceError{Device: path, Op: "open", Err: err}
	}
	d := newSTDrive(path, &stFile{fd: fd})
	if _, err := d.dev.status(); err != nil {
		unix.Close(fd)
		return nil, &DeviceError{Device: path, Op: "status", Err: translate(stOpen, err)}
	}
	// The driver options recall relies on (see stOptionProblem). Only
	// root may set them; st keeps them per drive until the module is
	// reloaded, and shows them in sysfs.
	if unix.Geteuid() == 0 {
		_ = d.dev.op(mtSETDRVBUFFER, mtSTSetBooleans|mtSTSCSI2Logical)
		_ = d.dev.op(mtSETDRVBUFFER, mtSTClearBooleans|mtSTAsyncWrites|mtSTNowait|mtSTNowaitEOF)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/sys/dev/char/%d:%d/options", unix.Major(fst.Rdev), unix.Minor(fst.Rdev))); err == nil {
		if opts, err := parseSTOptions(string(b)); err == nil {
			if problem := stOptionProblem(opts, path); problem != "" {
				unix.Close(fd)
				return nil, &DeviceError{Device: path, Op: "open", Err: errors.New(problem)}
			}
		}
	}
	if err := d.ensureVariable(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return d, nil
}

// parseSTOptions reads a drive's sysfs options file, which st writes as
// "0x%08x" with the MTSETDRVBUFFER option bits.
func parseSTOptions(s string) (uint64, error) {
	return strconv.ParseUint(strings.TrimSpace(s), 0, 32)
}

// checkNonRewinding refuses anything but a non-rewinding st device: the
// rewinding one rewinds at every close, and the next job would overwrite
// the cartridge from its beginning.
func checkNonRewinding(mode uint32, rdev uint64) error {
	if mode&unix.S_IFMT != unix.S_IFCHR {
		return errors.New("not a character device: give the drive's non-rewinding st device, /dev/nstN (lsscsi -g lists it)")
	}
	if unix.Major(rdev) != scsiTapeMajor {
		return fmt.Errorf("character device %d:%d is not an st tape device: give the drive's /dev/nstN, not its /dev/sgN", unix.Major(rdev), unix.Minor(rdev))
	}
	if unix.Minor(rdev)&stNoRewindBit == 0 {
		return errors.New("this is the rewinding device (/dev/stN), which rewinds at every close: use the non-rewinding /dev/nstN")
	}
	return nil
}

// stFile is an open st device.
type stFile struct{ fd int }

func (f *stFile) read(p []byte) (int, error) {
	for {
		n, err := unix.Read(f.fd, p)
		if err == unix.EINTR {
			continue // st was interrupted before it touched the tape
		}
		if err != nil {
			return 0, err
		}
		return n, nil
	}
}

func (f *stFile) write(p []byte) (int, error) {
	for {
		n, err := unix.Write(f.fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		return n, nil
	}
}

func (f *stFile) ioctl(req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(f.fd), req, uintptr(arg))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return syscall.Errno(e)
		}
		return nil
	}
}

func (f *stFile) op(op int16, count int32) error {
	m := mtop{Op: op, Count: count}
	return f.ioctl(mtiocTop, unsafe.Pointer(&m))
}

func (f *stFile) status() (mtget, error) {
	var g mtget
	err := f.ioctl(mtiocGet, unsafe.Pointer(&g))
	return g, err
}

func (f *stFile) position() (uint64, error) {
	var p mtpos
	if err := f.ioctl(mtiocPos, unsafe.Pointer(&p)); err != nil {
		return 0, err
	}
	// st fills mt_blkno from the 32-bit READ POSITION field.
	return uint64(uint32(p.Blkno)), nil
}

func (f *stFile) close() error { return unix.Close(f.fd) }
