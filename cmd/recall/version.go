package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=..."; else
// the module version from the build info, or "dev".
var version = ""

func init() {
	register(&cli.Command{
		Name:  "version",
		Usage: "print the version of recall, the commit it was built from, and the store format it writes",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the version as JSON"},
		},
		Action: func(c *cli.Context) error {
			bi, _ := debug.ReadBuildInfo()
			v := versionOf(bi)
			if c.Bool("json") {
				return printJSON(c, v)
			}
			fmt.Fprintln(c.App.Writer, v)
			return nil
		},
	})
}

// versionJSON is what version prints; scripts rely on the --json fields.
type versionJSON struct {
	Version string `json:"version"`
	// The commit the binary was built from, when go build could tell
	// (a build in a git checkout): revision, commit time (RFC 3339, UTC)
	// and whether the tree had changes not committed.
	Revision    string `json:"vcs_revision,omitempty"`
	Time        string `json:"vcs_time,omitempty"`
	Modified    *bool  `json:"vcs_modified,omitempty"`
	GoVersion   string `json:"go_version"`
	Platform    string `json:"platform"`
	StoreFormat int    `json:"store_format"`
}

// versionOf reads the version from the build info (nil when the binary
// has none).
func versionOf(bi *debug.BuildInfo) versionJSON {
	v := versionJSON{Version: version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH, StoreFormat: chunkstore.ConfigVersion}
	if bi != nil {
		if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				m := s.Value == "true"
				v.Modified = &m
			}
		}
		if bi.GoVersion != "" {
			v.GoVersion = bi.GoVersion
		}
	}
	if v.Version == "" {
		v.Version = "dev"
	}
	return v
}

// String is the one line version prints.
func (v versionJSON) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "recall %s", v.Version)
	if v.Revision != "" {
		rev := v.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		fmt.Fprintf(&b, " (commit %s", rev)
		if v.Time != "" {
			fmt.Fprintf(&b, " of %s", v.Time)
		}
		if v.Modified != nil && *v.Modified {
			b.WriteString(", with changes not committed")
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, "; %s %s; store format %d", v.GoVersion, v.Platform, v.StoreFormat)
	return b.String()
}
