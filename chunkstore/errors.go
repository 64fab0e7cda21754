package chunkstore

import (
	"errors"
	"syscall"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrWrongPassword: the passphrase does not open the store's key.
	ErrWrongPassword = errors.New("wrong passphrase")
	// ErrNoPassword: the store is encrypted and no passphrase was given.
	ErrNoPassword = errors.New("store is encrypted and no passphrase was given: set RECALL_PASSWORD, " +
		"use --password-file FILE (RECALL_PASSWORD_FILE) or --password-command CMD (RECALL_PASSWORD_COMMAND), " +
		"or run the command on a terminal to be asked")
	// ErrConfigDamaged: the store's config and its copy are both
	// damaged (or one is and the other missing): damaged data, exit 4.
	ErrConfigDamaged = errors.New("damaged")
	// ErrKeyMismatch: the store's files are whole but were not written
	// with the key its config holds (or with no key, as it says): the
	// config is another store's. Nothing may be judged damaged then.
	ErrKeyMismatch = errors.New("the store's config does not match its data")
	// ErrNotFound: a blob, pack or point does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt: stored bytes fail their checksum, authentication or hash.
	ErrCorrupt = errors.New("corrupt data")
	// ErrLocked: another process holds the store's writer lock.
	ErrLocked = errors.New("store is locked")
	// ErrNoStore: the directory holds no store.
	ErrNoStore = errors.New("no store here")
	// ErrConfigMissing: the directory holds a store's data but neither
	// its config nor the config's copy.
	ErrConfigMissing = errors.New("the store's config is missing")
	// ErrExists: init on a directory that already holds a store.
	ErrExists = errors.New("store already exists")
)

// IOError reports whether err is an error of the device or the file
// system a file is on (EIO and its kind: a failing disk, a network file
// system gone), not of the file's bytes: nothing was read, so nothing is
// known of them. Such a pack is neither damaged nor to be repaired: a
// repair of packs rewrites what it can read and deletes the rest.
func IOError(err error) bool {
	for _, e := range []syscall.Errno{syscall.EIO, syscall.ENXIO, syscall.ENODEV, syscall.ESTALE, syscall.ENOTCONN, syscall.EREMOTEIO, syscall.ENOLINK} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
