package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:  "key",
		Usage: "manage the passphrase of an encrypted store",
		Subcommands: []*cli.Command{{
			Name:  "passwd",
			Usage: "change the store's passphrase",
			Description: `The store's master key is sealed again with a key derived from the new passphrase;
nothing else in the store is rewritten, and everything backed up stays readable. The
old passphrase stops working at once: change it wherever it is kept (RECALL_PASSWORD,
the password file, what --password-command reads, cron jobs, fstab's password_file=).
The new passphrase comes from --new-password-file, else it is asked twice on the terminal.
A new passphrase that is the store's passphrase already changes nothing, and says so
(with --json, "unchanged": true).`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "new-password-file", Usage: "read the new passphrase from `FILE` (else it is asked on the terminal)"},
				&cli.DurationFlag{Name: "lock-wait", Value: time.Minute, Usage: "how long to wait for a running backup to finish"},
				&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
			},
			Action: keyPasswd,
		}},
	})
}

func keyPasswd(c *cli.Context) error {
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	if !st.Encrypted() {
		return fmt.Errorf("store %s: %w: it has no passphrase to change (a store is encrypted when it is made, with 'recall init --encrypt')", st.Dir(), chunkstore.ErrNotEncrypted)
	}
	old := resolved
	var given string
	if f := c.String("new-password-file"); f != "" {
		// A value of the flag that gives no passphrase is a usage error
		// (exit 2), as giving none at all is.
		b, err := os.ReadFile(f)
		if err != nil {
			return usagef("--new-password-file: %v; give a file that holds the new passphrase; nothing was changed", err)
		}
		if given = strings.TrimRight(string(b), "\r\n"); given == "" {
			return usagef("--new-password-file %s is empty: an empty passphrase protects nothing; nothing was changed", f)
		}
	}
	pw, err := newPassword(c, given, "new passphrase for store "+st.Dir())
	if errors.Is(err, errNoTerminal) {
		return usagef("no new passphrase: give --new-password-file FILE, or run 'recall key passwd' on a terminal to be asked")
	}
	if err != nil {
		return err
	}
	if old != "" && pw == old && st.ConfigProblem() == "" {
		// Not an error: the store is as asked, and a script that sets
		// the passphrase it keeps may run again. Nothing is sealed
		// again, and no backup is waited for.
		return keyUnchanged(c, st)
	}
	// With the config files at odds (a change stopped half way: one
	// sealed with another passphrase), the same passphrase seals both
	// again, as the message that sent the user here promised: the other
	// passphrase stops opening the store.
	s, err := st.Session(c.Context, engine.SessionOptions{Purpose: "change passphrase", Exclusive: true, LockOptions: lockWait(c)})
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.ChangePassword(old, pw); err != nil {
		return err
	}
	cfg := st.Config()
	if c.Bool("json") {
		return printJSON(c, keyJSON{ID: cfg.ID, Store: st.Dir(), Encryption: encryptionOf(cfg)})
	}
	fmt.Fprintf(report(c), "changed the passphrase of store %s in %s; the old passphrase no longer opens it\n", cfg.ID, st.Dir())
	fmt.Fprintf(report(c), "put the new one where scripts and a running 'recall serve' get it (its --password-file or --password-command; a server given RECALL_PASSWORD needs a restart)\n")
	return nil
}

// keyUnchanged reports a new passphrase that is the store's passphrase
// already: the old one still opens the store, since it is the same.
func keyUnchanged(c *cli.Context, st *engine.Store) error {
	cfg := st.Config()
	if c.Bool("json") {
		return printJSON(c, keyJSON{ID: cfg.ID, Store: st.Dir(), Encryption: encryptionOf(cfg), Unchanged: true})
	}
	fmt.Fprintf(report(c), "the new passphrase of store %s in %s is the one it has: the passphrase is unchanged, and nothing was written\n", cfg.ID, st.Dir())
	return nil
}

// keyJSON is what key passwd --json prints; scripts rely on these fields.
type keyJSON struct {
	ID         string          `json:"id"`
	Store      string          `json:"store"`
	Encryption *encryptionJSON `json:"encryption"`
	Unchanged  bool            `json:"unchanged,omitempty"` // the new passphrase was the old one
}

// encryptionJSON is how the store's key is sealed, for --json: never the
// salt or the sealed key.
type encryptionJSON struct {
	Cipher   string `json:"cipher"`
	KDF      string `json:"kdf"`
	Time     uint32 `json:"kdf_time"`
	MemoryKB uint32 `json:"kdf_memory_kib"`
	Threads  uint8  `json:"kdf_threads"`
}

func encryptionOf(cfg *chunkstore.Config) *encryptionJSON {
	e := cfg.Encryption
	if e == nil {
		return nil
	}
	return &encryptionJSON{Cipher: e.Cipher, KDF: e.KDF, Time: e.Time, MemoryKB: e.MemoryKB, Threads: e.Threads}
}
