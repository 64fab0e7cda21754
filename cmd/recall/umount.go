package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/recall-backup/recall/fs"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "umount",
		Aliases:   []string{"unmount"},
		Usage:     "unmount a recovery tree mounted with 'recall mount'",
		ArgsUsage: "MOUNTPOINT",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "lazy", Usage: "detach now even while files are open; the server stops when the last one is closed"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("umount needs exactly one MOUNTPOINT")
			}
			mnt, err := fs.MountPath(c.Args().First())
			if err != nil {
				return err
			}
			err = fs.Unmount(mnt, c.Bool("lazy"))
			switch {
			case errors.Is(err, fs.ErrBusy):
				if inner, _ := fs.MountsUnder(mnt); len(inner) > 0 {
					// The kernel says EBUSY for these too; the open
					// files advice sent the administrator looking for
					// processes that were not there.
					return fmt.Errorf("%s: %w: %s is mounted inside it; unmount that first (umount %s), or run 'recall umount --lazy %s' to detach both now",
						mnt, fs.ErrBusy, strings.Join(inner, ", "), inner[len(inner)-1], mnt)
				}
				return fmt.Errorf("%s: %w: a process has a file open or its working directory in it (see 'fuser -vm %s'); "+
					"close those, or run 'recall umount --lazy %s' to detach it now (the server stops when the last file is closed)", mnt, fs.ErrBusy, mnt, mnt)
			case errors.Is(err, fs.ErrNotMounted):
				return fmt.Errorf("nothing is mounted at %s: %w", mnt, fs.ErrNotMounted)
			}
			return err
		},
	})
}
