// Package tapefs will hold the tape tier: drives (Linux st and a
// file-backed emulator), changers, the on-tape format and the media
// catalog. It is empty until its issue is taken.
package tapefs
