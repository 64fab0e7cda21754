package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"strings"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/engine/wsb"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:  "bmr",
		Usage: "Windows system images (bare metal recovery, system state) kept as recovery points",
		Subcommands: []*cli.Command{{
			Name:  "versions",
			Usage: "list the Windows Server Backup versions of a source, one per recovery point, oldest first, as wbadmin get versions reports them",
			Description: `Reads WindowsImageBackup/<Computer>/Backup .../BackupSpecs.xml in each recovery point of
the source (from the store: nothing is restored or mounted). A point whose image cannot be read
is listed with the reason, and the command goes on.

--json prints an array, one object per point, oldest first:
  point               the recovery point's id (what restore, mount and share bmr-recovery take)
  point_time          when the point was made (RFC 3339, UTC)
  backup_time         when Windows Server Backup made the backup (RFC 3339, UTC)
  version_identifier  wbadmin's version identifier, MM/DD/YYYY-HH:MM in UTC
                      (wbadmin get items -version:<it>)
  computer            the computer's name, as the backup records it
  backup_folder       the "Backup YYYY-MM-DD HHMMSS" folder the backup is in
  target              the share the backup was written to, as recorded
  snapshot_id         the VSS snapshot set of the backup
  can_recover         what the backup can recover: "Volume(s)", "File(s)", "Application(s)",
                      "Bare Metal Recovery", "System State"
  volumes             the volumes imaged: name, access_path (drive letter, "" for none), label,
                      file_system, image_file (the .vhdx in backup_folder), total_size and
                      used_size (bytes), critical (needed to boot: part of bare metal recovery)
  error               why the point's image could not be read; only point and point_time
                      are set beside it`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "source", Required: true, Usage: "the bmr or systemstate data source `NAME`"},
				&cli.BoolFlag{Name: "json", Usage: "print a JSON array (fields above)"},
			},
			Action: bmrVersions,
		}},
	})
}

// bmrVersionJSON is the --json form of one version; scripts rely on these
// fields (documented in the command's description).
type bmrVersionJSON struct {
	Point             string          `json:"point"`
	PointTime         time.Time       `json:"point_time"`
	BackupTime        string          `json:"backup_time,omitempty"`
	VersionIdentifier string          `json:"version_identifier,omitempty"`
	Computer          string          `json:"computer,omitempty"`
	BackupFolder      string          `json:"backup_folder,omitempty"`
	Target            string          `json:"target,omitempty"`
	SnapshotID        string          `json:"snapshot_id,omitempty"`
	CanRecover        []string        `json:"can_recover,omitempty"`
	Volumes           []bmrVolumeJSON `json:"volumes,omitempty"`
	Error             string          `json:"error,omitempty"`
}

type bmrVolumeJSON struct {
	Name       string `json:"name"`
	AccessPath string `json:"access_path"`
	Label      string `json:"label"`
	FileSystem string `json:"file_system"`
	ImageFile  string `json:"image_file"`
	TotalSize  int64  `json:"total_size"`
	UsedSize   int64  `json:"used_size"`
	Critical   bool   `json:"critical"`
}

func bmrVersions(c *cli.Context) error {
	source := c.String("source")
	if err := engine.ValidSourceName(source); err != nil {
		return usageError{err.Error()}
	}
	computer, err := bmrComputer(c, source)
	if err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	r := st.Reader()
	pts, err := r.Points()
	if err != nil {
		return err
	}
	out := []bmrVersionJSON{}
	for _, p := range pts {
		if p.Damaged != "" || p.Source != source {
			continue
		}
		v := bmrVersionJSON{Point: p.ID.String(), PointTime: p.Time.UTC()}
		ver, err := readPointVersion(r.PointFS(p), computer)
		if err != nil {
			v.Error = err.Error()
			out = append(out, v)
			continue
		}
		v.BackupTime = ver.Time.Format(time.RFC3339)
		v.VersionIdentifier, v.Computer, v.BackupFolder = ver.VersionID, ver.Computer, ver.Backup
		v.Target, v.SnapshotID, v.CanRecover = ver.Target, ver.SnapshotID, ver.CanRecover
		v.Volumes = []bmrVolumeJSON{}
		for _, x := range ver.Volumes {
			v.Volumes = append(v.Volumes, bmrVolumeJSON{Name: x.Name, AccessPath: x.AccessPath, Label: x.Label, FileSystem: x.FileSystem,
				ImageFile: x.ImageFile, TotalSize: x.TotalSize, UsedSize: x.UsedSize, Critical: x.Critical})
		}
		out = append(out, v)
	}
	if c.Bool("json") {
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintln(c.App.Writer, string(b))
		return nil
	}
	if len(out) == 0 {
		fmt.Fprintf(c.App.Writer, "No recovery points of source %q (list the sources' points with 'recall points').\n", source)
		return nil
	}
	printVersions(c.App.Writer, out)
	return nil
}

// printVersions prints versions the way wbadmin get versions does, each
// after the recovery point that holds it.
func printVersions(w io.Writer, vs []bmrVersionJSON) {
	for i, v := range vs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "Recovery point: %s (%s UTC)\n", v.Point[:12], v.PointTime.Format(time.DateTime))
		if v.Error != "" {
			fmt.Fprintf(w, "Cannot read the image: %s\n", v.Error)
			continue
		}
		t, _ := time.Parse(time.RFC3339, v.BackupTime)
		fmt.Fprintf(w, "Backup time: %s UTC\n", t.Format("1/2/2006 3:04 PM"))
		fmt.Fprintf(w, "Backup target: Network Share labeled %s\n", v.Target)
		fmt.Fprintf(w, "Version identifier: %s\n", v.VersionIdentifier)
		fmt.Fprintf(w, "Can recover: %s\n", strings.Join(v.CanRecover, ", "))
	}
}

// readPointVersion reads the version a point holds, of computer, or when
// computer is "" of the one computer whose folder the point holds.
func readPointVersion(fsys iofs.FS, computer string) (*wsb.Version, error) {
	if computer == "" {
		cs, err := wsb.Computers(fsys)
		if err != nil {
			return nil, err
		}
		switch len(cs) {
		case 0:
			return nil, fmt.Errorf("%w: no folder %s in the point (was it made of a bmr-target share?)", wsb.ErrNoImage, wsb.Dir)
		case 1:
			computer = cs[0]
		default:
			return nil, fmt.Errorf("%s holds the folders of %d computers (%s): a share is for one computer; restore the point to pick one", wsb.Dir, len(cs), strings.Join(cs, ", "))
		}
	}
	v, err := wsb.ReadVersion(fsys, computer)
	if errors.Is(err, wsb.ErrIncomplete) {
		// Name everything that is missing, not only the first file.
		if im, ierr := wsb.Inspect(fsys, computer); ierr == nil && im.Err() != nil {
			err = im.Err()
		}
		return nil, fmt.Errorf("%w (the point was made before WSB had finished writing, or its transfer broke off: use another point)", err)
	}
	return v, err
}

// bmrComputer is the computer whose images the source holds, "" when
// recall does not know it and it is read from each point: the one folder
// under WindowsImageBackup. The source registry (the catalog's sources)
// knows it: this is where its Computer is looked up.
func bmrComputer(c *cli.Context, source string) (string, error) {
	return "", nil
}
