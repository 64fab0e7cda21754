// Package tapefs is the tape tier: drives (Linux st and a file-backed
// emulator), changers, and the on-tape format that lets a cartridge be
// read decades later by a fresh server with only the cartridge and the
// key.
//
// The format is documented in full below as it is finished.
package tapefs
