package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=..."; else
// the module version or "dev".
var version = ""

func init() {
	register(&cli.Command{
		Name:  "version",
		Usage: "print the version of recall and of the store format it writes",
		Action: func(c *cli.Context) error {
			v := version
			if v == "" {
				v = "dev"
				if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
					v = bi.Main.Version
				}
			}
			fmt.Fprintf(c.App.Writer, "recall %s (%s, %s/%s); store format %d\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH, chunkstore.ConfigVersion)
			return nil
		},
	})
}
