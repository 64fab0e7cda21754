//go:build !linux || !(386 || amd64 || arm || arm64 || loong64 || riscv64 || s390x)

package tapefs

import (
	"errors"
	"runtime"
)

// OpenST opens an st tape drive. The st driver and its ioctls exist on
// Linux only, and their encoding is declared for the architectures that
// share the generic ioctl layout; elsewhere real drives are not supported
// (the emulator is).
func OpenST(path string) (Drive, error) {
	return nil, &DeviceError{Device: path, Op: "open", Err: errors.New("tape drives through the st driver need Linux on " +
		"386, amd64, arm, arm64, loong64, riscv64 or s390x; this is " + runtime.GOOS + "/" + runtime.GOARCH)}
}
