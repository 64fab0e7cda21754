package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/fs"
	"github.com/urfave/cli/v2"
)

// defaultMountpoint is where `recall share` assumes the tree is mounted.
const defaultMountpoint = "/srv/recall"

func init() {
	register(&cli.Command{
		Name:  "share",
		Usage: "print configuration that shares recovery points with other systems",
		Subcommands: []*cli.Command{{
			Name:  "samba",
			Usage: "print an smb.conf share that shows a source's recovery points as Windows \"Previous Versions\"",
			Description: `The share serves the live directory (--share-path) and, through Samba's shadow_copy2
module, the source's recovery points in the mounted recovery tree as previous versions.
Mount the tree first with --allow-other (smbd reads it as the connected user; access
follows the backed-up owners and modes).

A source whose protection group has end-user recovery off is refused: the mounted
tree leaves it out, so the share would show no previous versions.`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "source", Usage: "data source `NAME`", Required: true},
				&cli.StringFlag{Name: "share-path", Usage: "live directory the share serves (`PATH`; default: the directory the source backs up)"},
				&cli.StringFlag{Name: "mountpoint", Value: defaultMountpoint, Usage: "where the recovery tree is mounted (`MNT`)"},
				&cli.StringFlag{Name: "name", Usage: "share `NAME` (default: the source name)"},
			},
			Action: shareSamba,
		}},
	})
}

func shareSamba(c *cli.Context) error {
	source := c.String("source")
	if err := engine.ValidSourceName(source); err != nil {
		return usagef("--source: %v", err)
	}
	mnt, err := filepath.Abs(c.String("mountpoint"))
	if err != nil {
		return err
	}
	off, err := engine.NoEndUserRecovery(c.String("home"), catalogWait)
	if err != nil {
		return fmt.Errorf("check the end-user recovery of source %q: %w", source, err)
	}
	if g, ok := off[source]; ok {
		return fmt.Errorf("source %q: protection group %q: %w, so the mounted tree leaves the source out and a share would show no previous versions; allow it with 'recall group edit %s --end-user-recovery on'",
			source, g, engine.ErrNoEndUserRecovery, g)
	}
	// What the source backs up, when the store knows it.
	var backedUp string
	if st, err := openStore(c); err == nil {
		if p, err := st.Reader().FindPoint("latest", source); err == nil {
			backedUp = p.Path
		} else {
			logf("warning: %v; the share shows no previous versions until it has a recovery point", err)
		}
		st.Close()
	} else {
		logf("warning: cannot read the store (%v); check --source yourself", err)
	}
	sharePath := c.String("share-path")
	if sharePath == "" {
		if backedUp == "" {
			return usagef("--share-path is needed: no recovery point of source %q tells which directory it backs up", source)
		}
		sharePath = backedUp
	}
	if sharePath, err = filepath.Abs(sharePath); err != nil {
		return err
	}
	// shadow:mountpoint is the directory the point roots correspond to; a
	// share of a subdirectory of the backed-up tree finds its files below.
	shadowMount := sharePath
	if backedUp != "" && (sharePath == backedUp || strings.HasPrefix(sharePath, strings.TrimSuffix(backedUp, "/")+"/")) {
		shadowMount = backedUp
	}
	name := c.String("name")
	if name == "" {
		name = source
	}
	w := c.App.Writer
	fmt.Fprintf(w, "# Previous Versions of %s from the recovery points of source %q.\n", sharePath, source)
	fmt.Fprintf(w, "# Needs the recovery tree mounted for other users first:\n")
	fmt.Fprintf(w, "#   recall --home %s mount --allow-other %s\n", homeForDocs(c), mnt)
	fmt.Fprintf(w, "# or in /etc/fstab:  %s  %s  recall  allow_other,nofail  0  0\n", homeForDocs(c), mnt)
	fmt.Fprintf(w, "# Other VFS modules you use go on the same 'vfs objects' line.\n")
	fmt.Fprintf(w, "[%s]\n", name)
	fmt.Fprintf(w, "\tpath = %s\n", sharePath)
	fmt.Fprintf(w, "\tvfs objects = shadow_copy2\n")
	fmt.Fprintf(w, "\tshadow:snapdir = %s\n", filepath.Join(mnt, source))
	fmt.Fprintf(w, "\tshadow:mountpoint = %s\n", shadowMount)
	fmt.Fprintf(w, "\tshadow:format = %s\n", fs.ShadowFormat)
	fmt.Fprintf(w, "\tshadow:localtime = no\n")
	fmt.Fprintf(w, "\tshadow:sort = desc\n")
	fmt.Fprintf(w, "\tshadow:snapdirseverywhere = no\n")
	fmt.Fprintf(w, "\tshadow:crossmountpoints = no\n")
	return nil
}

func homeForDocs(c *cli.Context) string {
	h, err := filepath.Abs(c.String("home"))
	if err != nil {
		return c.String("home")
	}
	return h
}
