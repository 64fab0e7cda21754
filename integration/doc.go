// Package integration holds end-to-end tests: they build the recall
// binary, drive it like an administrator would, mount real FUSE file
// systems, start a real smbd on loopback and kill backups with SIGKILL.
package integration
