package main

import (
	"errors"
	"fmt"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:  "init",
		Usage: "create an empty store in --home",
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
			if o.Encrypt {
				pw, err := password(c)
				if err != nil {
					return err
				}
				o.Password, err = newPassword(c, pw, "passphrase for the new store "+storeDir(c))
				if errors.Is(err, errNoTerminal) {
					return chunkstore.ErrNoPassword
				}
				if err != nil {
					return err
				}
			}
			cfg, err := chunkstore.Init(storeDir(c), o)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, initJSON{ID: cfg.ID, Store: storeDir(c), Version: cfg.Version, Compression: string(cfg.Compression), Encryption: encryptionOf(cfg)})
			}
			enc := "unencrypted"
			if cfg.Encryption != nil {
				enc = "encrypted (" + cfg.Encryption.Cipher + ", key from " + cfg.Encryption.KDF + ")"
			}
			fmt.Fprintf(c.App.Writer, "created %s store %s in %s\n", enc, cfg.ID, storeDir(c))
			return nil
		},
	})
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
