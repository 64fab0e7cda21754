package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:  "init",
		Usage: "create an empty store in --home, or at --store (a directory, or s3:http(s)://host[:port]/bucket[/prefix]: the bucket is made when missing)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the new store as JSON"},
			&cli.BoolFlag{Name: "encrypt", Usage: "encrypt everything at rest with a key sealed by the passphrase (RECALL_PASSWORD or --password-file)"},
			&cli.StringFlag{Name: "compression", Value: "zstd", Usage: "codec of new data: zstd, s2 (faster, a few percent larger) or off; a backup may override it"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("init takes no arguments")
			}
			comp, err := compressionFlag(c)
			if err != nil {
				return err
			}
			o := chunkstore.InitOptions{Encrypt: c.Bool("encrypt"), Compression: comp}
			if given := c.String("store"); o.Encrypt && given == "" && os.Getenv("RECALL_STORE") == "" {
				// A home that has its store is refused before a
				// passphrase is asked for: "no passphrase" would hide
				// that there is nothing to make.
				if dir := engine.StoreDir(c.String("home")); chunkstore.CheckLocal(dir) == nil {
					return fmt.Errorf("init %s: %w", dir, chunkstore.ErrExists)
				}
			}
			if o.Encrypt {
				pw, err := password(c)
				if err != nil {
					return err
				}
				o.Password, err = newPassword(c, pw, "passphrase for the new store "+storeDir(c))
				if errors.Is(err, errNoTerminal) {
					return errInitNoPassword{}
				}
				if err != nil {
					return err
				}
			}
			cfg, where, err := initStore(c, o)
			if err != nil {
				return err
			}
			if given := passphraseGiven(c); !o.Encrypt && given != "" {
				// restic and borg encrypt unless told not to: a passphrase
				// set up for the new store most likely meant one.
				warnf("a passphrase was given (%s) but not --encrypt: store %s is NOT encrypted and the passphrase is not used; "+
					"for an encrypted store, remove %s while it is empty and run 'recall init --encrypt'", given, where, where)
			}
			if c.Bool("json") {
				return printJSON(c, initJSON{ID: cfg.ID, Store: where, Version: cfg.Version, Compression: string(cfg.Compression), Encryption: encryptionOf(cfg)})
			}
			if c.Bool("quiet") {
				return nil
			}
			enc := "unencrypted"
			if cfg.Encryption != nil {
				enc = "encrypted (" + cfg.Encryption.Cipher + ", key from " + cfg.Encryption.KDF + ")"
			}
			fmt.Fprintf(c.App.Writer, "created %s store %s in %s\n", enc, cfg.ID, where)
			return nil
		},
	})
}

// passphraseGiven names where a passphrase was given from, if one was.
func passphraseGiven(c *cli.Context) string {
	switch {
	case c.IsSet("password-file"):
		return "--password-file or RECALL_PASSWORD_FILE"
	case c.IsSet("password-command"):
		return "--password-command or RECALL_PASSWORD_COMMAND"
	case os.Getenv("RECALL_PASSWORD") != "":
		return "RECALL_PASSWORD"
	}
	return ""
}

// errInitNoPassword is init --encrypt without a passphrase: the exit
// code of ErrNoPassword, in words that fit a store not made yet.
type errInitNoPassword struct{}

func (errInitNoPassword) Error() string {
	return "init --encrypt needs the new store's passphrase: set RECALL_PASSWORD, " +
		"use --password-file FILE (RECALL_PASSWORD_FILE) or --password-command CMD (RECALL_PASSWORD_COMMAND), " +
		"or run the command on a terminal to be asked"
}

func (errInitNoPassword) Is(target error) bool { return target == chunkstore.ErrNoPassword }

// initStore makes the store: in the home's store/, or at --store (or
// RECALL_STORE), which the home then records, so that later commands
// need only --home. A home that has a store already, or a place that
// holds one, is refused before anything is written.
func initStore(c *cli.Context, o chunkstore.InitOptions) (*chunkstore.Config, string, error) {
	home := c.String("home")
	given := c.String("store")
	if !c.IsSet("store") {
		given = os.Getenv("RECALL_STORE")
	}
	if given == "" {
		cfg, err := chunkstore.Init(engine.StoreDir(home), o)
		return cfg, engine.StoreDir(home), err
	}
	if err := engine.RequireStore(home); err == nil {
		own, _, _ := engine.HomeStore(home, "", false)
		return nil, "", fmt.Errorf("init %s: %w: home %s has store %s; give another --home for the new store", given, chunkstore.ErrExists, home, own)
	}
	loc := given
	if !engine.IsRemote(loc) {
		abs, err := filepath.Abs(loc)
		if err != nil {
			return nil, "", err
		}
		loc = abs
	}
	var cfg *chunkstore.Config
	var where string
	var err error
	if !engine.IsRemote(loc) && missingOrEmpty(loc) && !overlaps(home, loc) {
		// The store is at --store, as its help says. A new or empty
		// directory was taken for a home and got the store in its
		// store/, where an administrator looking for it did not.
		// A directory holding other things (a disk's lost+found) still
		// gets it in store/.
		cfg, err = chunkstore.Init(loc, o)
		where = loc
	} else {
		cfg, where, err = engine.InitLocation(c.Context, loc, remoteOptions(c), o)
	}
	if err != nil {
		return nil, "", err
	}
	if err := engine.RecordStore(home, loc); err != nil {
		return nil, "", fmt.Errorf("%w; the store was made at %s: give --store %s with every command", err, where, loc)
	}
	return cfg, where, nil
}

// compressionFlag returns --compression, checked ("" when not given).
func compressionFlag(c *cli.Context) (chunkstore.Compression, error) {
	if !c.IsSet("compression") {
		return "", nil
	}
	comp, err := chunkstore.ParseCompression(c.String("compression"))
	if err != nil {
		return "", usagef("--compression: %v", err)
	}
	return comp, nil
}

// initJSON is what init --json prints; scripts rely on these fields.
type initJSON struct {
	ID      string `json:"id"`
	Store   string `json:"store"`
	Version int    `json:"version"`
	// Compression is the codec of new data.
	Compression string `json:"compression"`
	// Encryption is absent for an unencrypted store.
	Encryption *encryptionJSON `json:"encryption,omitempty"`
}

// missingOrEmpty reports whether dir does not exist or is an empty
// directory.
func missingOrEmpty(dir string) bool {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	return err == nil && len(ents) == 0
}

// overlaps reports whether a and b are the same directory or one holds
// the other (a home and a store directory that must stay apart: the
// home's store.json would lie in the store).
func overlaps(a, b string) bool {
	a, _ = filepath.Abs(a)
	b, _ = filepath.Abs(b)
	return within(a, b) || within(b, a)
}
