package wsb

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxSpecsSize bounds what ReadVersion reads of BackupSpecs.xml: WSB's
// are a few KiB; a larger file is not one.
const MaxSpecsSize = 4 << 20

// versionLayout is wbadmin's version identifier: the backup time in UTC.
const versionLayout = "01/02/2006-15:04"

// Version is one backup as wbadmin get versions reports it, read from
// BackupSpecs.xml.
type Version struct {
	Computer   string
	Backup     string    // the folder name
	Time       time.Time // backup time (UTC)
	VersionID  string    // MM/DD/YYYY-HH:MM, UTC, as wbadmin shows
	Target     string    // the share WSB wrote to, as recorded
	SnapshotID string
	// CanRecover is wbadmin's "Can recover": "Volume(s)", "File(s)",
	// "Application(s)", "Bare Metal Recovery", "System State".
	CanRecover []string
	Volumes    []Volume
}

// Volume is one volume imaged.
type Volume struct {
	Name, AccessPath, Label, FileSystem, ImageFile string
	TotalSize, UsedSize                            int64
	Critical                                       bool
}

// ReadVersion reads the newest backup of computer in fsys (rooted where
// WindowsImageBackup is) from its BackupSpecs.xml. It needs only that
// file: whether the rest of the backup is there is Inspect's question.
func ReadVersion(fsys fs.FS, computer string) (*Version, error) {
	ents, err := fs.ReadDir(fsys, Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w of %s: no folder %s", ErrNoImage, computer, Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", Dir, err)
	}
	name, ok := pickComputer(ents, computer)
	if !ok {
		return nil, fmt.Errorf("%w of %s: no folder %s/%s", ErrNoImage, computer, Dir, computer)
	}
	root := path.Join(Dir, name)
	if ents, err = fs.ReadDir(fsys, root); err != nil {
		return nil, fmt.Errorf("read %s: %w", root, err)
	}
	backup, _ := newestBackup(ents)
	if backup == "" {
		return nil, fmt.Errorf("%w of %s: no \"Backup YYYY-MM-DD HHMMSS\" folder in %s", ErrNoImage, computer, root)
	}
	// Windows names compare without case, as Inspect finds the file.
	specs := "BackupSpecs.xml"
	if ents, err := fs.ReadDir(fsys, path.Join(root, backup)); err == nil {
		for _, e := range ents {
			if strings.EqualFold(e.Name(), specs) {
				specs = e.Name()
				break
			}
		}
	}
	p := path.Join(root, backup, specs)
	b, err := readLimited(fsys, p, MaxSpecsSize)
	if err != nil {
		return nil, err
	}
	v, err := decodeSpecs(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	v.Backup = backup
	return v, nil
}

// errTooLarge: a file is larger than what it can be.
var errTooLarge = errors.New("too large")

// readLimited reads a file of at most limit bytes.
func readLimited(fsys fs.FS, p string, limit int64) ([]byte, error) {
	f, err := fsys.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no %s", ErrIncomplete, p)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes: not a BackupSpecs.xml of Windows Server Backup", p, errTooLarge, limit)
	}
	return b, nil
}

// specsDoc is what ReadVersion reads of BackupSpecs.xml; other elements
// are skipped.
type specsDoc struct {
	XMLName      xml.Name `xml:"BackupSpecs"`
	ComputerName string   `xml:"ComputerName"`
	BackupTime   string   `xml:"BackupTime"`
	FileTime     string   `xml:"BackupTimeFileTime"`
	VersionID    string   `xml:"VersionIdentifier"`
	SnapshotID   string   `xml:"SnapshotSetId"`
	Target       struct {
		Path string `xml:"Path,attr"`
	} `xml:"BackupTarget"`
	CanRecover []string `xml:"CanRecover>Item"`
	Volumes    []struct {
		Name       string `xml:"Name,attr"`
		AccessPath string `xml:"AccessPath,attr"`
		Label      string `xml:"Label,attr"`
		FileSystem string `xml:"FileSystem,attr"`
		TotalSize  string `xml:"TotalSize,attr"`
		UsedSize   string `xml:"UsedSize,attr"`
		Critical   string `xml:"IsCritical,attr"`
		ImageFile  string `xml:"ImageFile,attr"`
	} `xml:"FileSpecs>Volume"`
}

// decodeSpecs decodes BackupSpecs.xml's bytes as found on disk.
func decodeSpecs(raw []byte) (*Version, error) {
	doc, err := DecodeXML(raw)
	if err != nil {
		return nil, err
	}
	if err := checkDepth(doc); err != nil {
		return nil, err
	}
	var s specsDoc
	if err := xml.Unmarshal(doc, &s); err != nil {
		return nil, fmt.Errorf("not a BackupSpecs document: %w", err)
	}
	v := &Version{
		Computer:   strings.TrimSpace(s.ComputerName),
		Target:     s.Target.Path,
		SnapshotID: strings.TrimSpace(s.SnapshotID),
		CanRecover: []string{},
		Volumes:    []Volume{},
	}
	if v.Computer == "" {
		return nil, errors.New("no ComputerName")
	}
	switch {
	case strings.TrimSpace(s.BackupTime) != "":
		t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s.BackupTime))
		if err != nil {
			return nil, fmt.Errorf("BackupTime %q: want RFC 3339", s.BackupTime)
		}
		v.Time = t.UTC()
	case strings.TrimSpace(s.FileTime) != "":
		ft, err := strconv.ParseUint(strings.TrimSpace(s.FileTime), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("BackupTimeFileTime %q: want a FILETIME (100 ns ticks since 1601)", s.FileTime)
		}
		v.Time = fromFiletime(ft)
		if v.Time.Year() > 9999 {
			return nil, fmt.Errorf("BackupTimeFileTime %d: past the year 9999", ft)
		}
	default:
		return nil, errors.New("no BackupTime or BackupTimeFileTime")
	}
	v.VersionID = v.Time.Format(versionLayout)
	if id := strings.TrimSpace(s.VersionID); id != "" && id != v.VersionID {
		return nil, fmt.Errorf("VersionIdentifier %q disagrees with the backup time %s (want %s)", id, v.Time.Format(time.RFC3339), v.VersionID)
	}
	for _, c := range s.CanRecover {
		if c = strings.TrimSpace(c); c != "" {
			v.CanRecover = append(v.CanRecover, c)
		}
	}
	for i, x := range s.Volumes {
		vol := Volume{Name: x.Name, AccessPath: x.AccessPath, Label: x.Label, FileSystem: x.FileSystem, ImageFile: x.ImageFile}
		for _, n := range []struct {
			attr, s string
			dst     *int64
		}{{"TotalSize", x.TotalSize, &vol.TotalSize}, {"UsedSize", x.UsedSize, &vol.UsedSize}} {
			if n.s == "" {
				continue
			}
			if *n.dst, err = strconv.ParseInt(n.s, 10, 64); err != nil || *n.dst < 0 {
				return nil, fmt.Errorf("volume %d (%s): %s %q: want a count of bytes", i+1, x.Name, n.attr, n.s)
			}
		}
		if x.Critical != "" {
			if vol.Critical, err = strconv.ParseBool(x.Critical); err != nil {
				return nil, fmt.Errorf("volume %d (%s): IsCritical %q: want true or false", i+1, x.Name, x.Critical)
			}
		}
		v.Volumes = append(v.Volumes, vol)
	}
	return v, nil
}

// maxDepth is how deep BackupSpecs.xml may nest: WSB's nests four
// levels; a document a thousand deep is not one of them.
const maxDepth = 64

// checkDepth refuses documents nested deeper than maxDepth before they
// are decoded.
func checkDepth(doc []byte) error {
	d := xml.NewDecoder(bytes.NewReader(doc))
	depth := 0
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("not a BackupSpecs document: %w", err)
		}
		switch tok.(type) {
		case xml.StartElement:
			if depth++; depth > maxDepth {
				return fmt.Errorf("not a BackupSpecs document: elements nested more than %d deep", maxDepth)
			}
		case xml.EndElement:
			depth--
		}
	}
}

// fromFiletime converts a Windows FILETIME (100 ns ticks since 1601) to
// UTC; values past what time.Time can hold saturate at the year 30828,
// which is what a FILETIME can hold.
func fromFiletime(ft uint64) time.Time {
	const unixEpoch = 11644473600 // seconds from 1601 to 1970
	sec := int64(ft / 10_000_000)
	return time.Unix(sec-unixEpoch, int64(ft%10_000_000)*100).UTC()
}

// DecodeXML turns an XML file as Windows writes it into UTF-8 for
// encoding/xml: UTF-16LE or UTF-16BE with a byte order mark, or UTF-8
// (with or without one). The XML declaration is dropped, since it names
// the encoding the bytes no longer have.
func DecodeXML(b []byte) ([]byte, error) {
	var s []byte
	switch {
	case bytes.HasPrefix(b, []byte{0xff, 0xfe}), bytes.HasPrefix(b, []byte{0xfe, 0xff}):
		if len(b)%2 != 0 {
			return nil, fmt.Errorf("UTF-16 XML of %d bytes: an odd length, so cut short", len(b))
		}
		var order binary.ByteOrder = binary.LittleEndian
		if b[0] == 0xfe {
			order = binary.BigEndian
		}
		us := make([]uint16, 0, len(b)/2-1)
		for i := 2; i < len(b); i += 2 {
			us = append(us, order.Uint16(b[i:]))
		}
		s = make([]byte, 0, len(b))
		for _, r := range utf16.Decode(us) {
			s = utf8.AppendRune(s, r)
		}
	case bytes.HasPrefix(b, []byte{0xef, 0xbb, 0xbf}):
		s = b[3:]
	default:
		s = b
	}
	if !utf8.Valid(s) {
		return nil, errors.New("XML neither UTF-16 with a byte order mark nor UTF-8")
	}
	s = bytes.TrimLeft(s, " \t\r\n")
	if bytes.HasPrefix(s, []byte("<?xml")) {
		i := bytes.Index(s, []byte("?>"))
		if i < 0 {
			return nil, errors.New("XML declaration not closed")
		}
		s = s[i+2:]
	}
	return s, nil
}
