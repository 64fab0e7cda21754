package wsbgen

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf16"
)

// Options say what backup to generate.
type Options struct {
	// Computer is the computer's name; "SRV01" when empty, or with Names
	// "SRV Ü{01}" (a space, braces and non-ASCII, which Windows allows).
	Computer string
	// Seed makes everything: two seeds are two unrelated computers.
	Seed uint64
	// Image, when not zero, is the installation image the computer was
	// deployed from: computers of one Image share the layout and most of
	// the content of their volumes at generation 0 (each keeps 80% of
	// the image, 20% is its own since installation: two such computers
	// share about 64%), as servers installed from one template do, which
	// is what deduplication across computers finds.
	Image uint64
	// Generation is the backup's number in the computer's daily series:
	// generation n+1 is the next day's backup of the same volumes.
	Generation int
	// ChangeRate is the share of each volume's allocated bytes a day
	// changes (0.04 when zero).
	ChangeRate float64
	// Start is the time of generation 0 (2026-11-02 21:00 UTC when zero);
	// generation n is n days later, a few minutes either way.
	Start time.Time
	// Volumes are the volumes imaged; DefaultVolumes when empty.
	Volumes []VolumeSpec
	// Target is the share written to, as the XML records it
	// (\\recall\<Computer> when empty).
	Target string

	// Truncate stops the transfer in the middle: the largest VHDX is cut
	// to half its size, BackupSpecs.xml and the catalog are not written.
	Truncate bool
	// CorruptVHDX breaks both headers of the largest VHDX.
	CorruptVHDX bool
	// Names uses a computer name and an extra file name with spaces,
	// braces and non-ASCII characters.
	Names bool
}

// VolumeSpec is one volume of the computer.
type VolumeSpec struct {
	Letter    string // "C:", or "" for a volume without one
	Label     string
	FS        string // "NTFS" or "FAT32"
	Size      int64  // virtual size, a multiple of 1 MiB
	Allocated int64  // bytes in use at generation 0
	Critical  bool   // needed to boot: part of bare metal recovery
}

// DefaultVolumes is a UEFI Windows Server's disk: the EFI system
// partition, the recovery partition and C: of 8 GiB with 1.5 GiB used.
var DefaultVolumes = []VolumeSpec{
	{Label: "", FS: "FAT32", Size: 100 << 20, Allocated: 24 << 20, Critical: true},
	{Label: "Recovery", FS: "NTFS", Size: 512 << 20, Allocated: 96 << 20, Critical: true},
	{Letter: "C:", Label: "", FS: "NTFS", Size: 8 << 30, Allocated: 1536 << 20, Critical: true},
}

// Backup is what Generate wrote.
type Backup struct {
	Root     string // <dir>/WindowsImageBackup/<Computer>
	Dir      string // Root/Backup YYYY-MM-DD HHMMSS
	Computer string
	Time     time.Time // UTC
	// VersionID is the version identifier as wbadmin get versions shows
	// it: the backup time in UTC as MM/DD/YYYY-HH:MM.
	VersionID string
	// SnapshotID is the VSS snapshot set of the backup: new every backup,
	// the prefix of its XML files' names.
	SnapshotID GUID
	Volumes    []Volume
	// CanRecover is wbadmin's "Can recover" list, as BackupSpecs.xml
	// records it.
	CanRecover []string
	// Missing lists what a complete backup has and this one lacks
	// (relative to Root); empty unless Truncate.
	Missing []string
	// Files lists every file written, relative to Root.
	Files []string
}

// Volume is one imaged volume.
type Volume struct {
	GUID        GUID // the volume's id (\\?\Volume{GUID}\): kept across backups
	Letter      string
	Label       string
	FS          string
	VirtualSize int64
	Allocated   int64  // bytes of data in the image
	Path        string // the .vhdx file
	DiskID      GUID   // the VHDX's Page 83 id: new with each file
	plan        *plan
}

// Reader reads the volume the VHDX holds.
func (v *Volume) Reader() *VolumeReader { return &VolumeReader{p: v.plan} }

// CatalogVersion is the version of the GlobalCatalog layout written.
const CatalogVersion = 1

// additionalFilesID is the fixed suffix WSB gives its additional-files
// list.
const additionalFilesID = "c3b9f3c7-5e52-4d5e-8b20-19adc95a34c7"

// writers are the VSS writers of a system-state backup: ids as
// vssadmin list writers shows them.
var writers = []struct{ id, name, usage string }{
	{"e8132975-6f93-4464-a53e-1050253ae220", "System Writer", "BOOTABLE_SYSTEM_STATE"},
	{"afbab4a2-367d-4d15-a586-71dbb18f8485", "Registry Writer", "BOOTABLE_SYSTEM_STATE"},
	{"542da469-d3e1-473c-9f4f-7847f01fc64f", "COM+ REGDB Writer", "BOOTABLE_SYSTEM_STATE"},
	{"be000cbe-11fe-4426-9c58-531aa6355fc4", "ASR Writer", "BOOTABLE_SYSTEM_STATE"},
	{"a6ad56c2-b509-4e6c-bb19-49d8f43532f0", "WMI Writer", "SYSTEM_SERVICE"},
	{"4dc3bdd4-ab48-4d07-adb0-3bee2926fd7f", "Shadow Copy Optimization Writer", "SYSTEM_SERVICE"},
	{"0bada1de-01a9-4625-8278-69e735f39dd2", "Performance Counters Writer", "SYSTEM_SERVICE"},
	{"d61d61c8-d73a-4eee-8cdd-f6f9786b7124", "Task Scheduler Writer", "SYSTEM_SERVICE"},
	{"75dfb225-e2e4-4d39-9ac9-ffaff65ddf06", "VSS Metadata Store Writer", "SYSTEM_SERVICE"},
}

// Generate writes one backup of the computer under dir as WSB writes it
// to a network share, replacing the previous backup folder as WSB does
// (a share holds one version), and returns what it wrote.
func Generate(dir string, o Options) (*Backup, error) {
	if o.ChangeRate == 0 {
		o.ChangeRate = 0.04
	}
	if o.ChangeRate < 0 || o.ChangeRate > 0.5 {
		return nil, fmt.Errorf("wsbgen: change rate %g: want 0 < rate <= 0.5", o.ChangeRate)
	}
	if o.Generation < 0 {
		return nil, fmt.Errorf("wsbgen: generation %d: want 0 or more", o.Generation)
	}
	if o.Start.IsZero() {
		o.Start = time.Date(2026, 11, 2, 21, 0, 0, 0, time.UTC)
	}
	if o.Computer == "" {
		o.Computer = "SRV01"
		if o.Names {
			o.Computer = "SRV Ü{01}"
		}
	}
	if len(o.Volumes) == 0 {
		o.Volumes = DefaultVolumes
	}
	for i, v := range o.Volumes {
		if v.Size%(1<<20) != 0 || v.Size < 8<<20 || v.Size > 64<<40 || v.Allocated < 128<<10 || v.Allocated > v.Size/10*9-(2<<20) {
			return nil, fmt.Errorf("wsbgen: volume %d: size %d, allocated %d: want a size of whole MiB from 8 MiB to 64 TiB (the VHDX limit) and at most 90%% of it allocated", i, v.Size, v.Allocated)
		}
		if v.FS != "NTFS" && v.FS != "FAT32" {
			return nil, fmt.Errorf("wsbgen: volume %d: file system %q: want NTFS or FAT32", i, v.FS)
		}
	}
	computerKey := mixString(o.Seed, o.Computer)
	genKey := mix(computerKey, 0x9e, uint64(o.Generation))
	// A daily backup drifts by a few minutes; seconds are whatever they are.
	drift := time.Duration(mix(genKey, 1)%600) * time.Second
	t := o.Start.UTC().Add(time.Duration(o.Generation)*24*time.Hour + drift)
	if o.Target == "" {
		o.Target = `\\recall\` + o.Computer
	}

	b := &Backup{
		Computer:   o.Computer,
		Root:       filepath.Join(dir, "WindowsImageBackup", o.Computer),
		Time:       t,
		VersionID:  t.Format("01/02/2006-15:04"),
		SnapshotID: randomGUID(mix(genKey, 2)),
		CanRecover: []string{"Volume(s)", "File(s)", "Application(s)", "Bare Metal Recovery", "System State"},
	}
	b.Dir = filepath.Join(b.Root, "Backup "+t.Format("2006-01-02 150405"))
	if err := clearOldBackups(b.Root); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("wsbgen: create %s: %w", b.Dir, err)
	}
	largest := 0
	for i, spec := range o.Volumes {
		volKey := mix(computerKey, 0x70, uint64(i))
		base := volKey
		if o.Image != 0 {
			base = mix(o.Image, 0x1b, uint64(i))
		}
		p := newPlan(base, volKey, spec.FS, spec.Size, spec.Allocated, o.Generation, o.ChangeRate)
		v := Volume{
			GUID:        volumeGUID(volKey),
			Letter:      spec.Letter,
			Label:       spec.Label,
			FS:          spec.FS,
			VirtualSize: spec.Size,
			Allocated:   p.allocated(),
			DiskID:      randomGUID(mix(genKey, 3, uint64(i))),
			plan:        p,
		}
		v.Path = filepath.Join(b.Dir, v.GUID.String()+".vhdx")
		ids := vhdxIDs{
			fileWrite: randomGUID(mix(genKey, 4, uint64(i))),
			dataWrite: randomGUID(mix(genKey, 5, uint64(i))),
			disk:      v.DiskID,
			sequence:  uint64(2*o.Generation + 1),
		}
		if err := writeVHDX(v.Path, p, ids); err != nil {
			return nil, fmt.Errorf("wsbgen: %w", err)
		}
		b.Volumes = append(b.Volumes, v)
		if v.Allocated > b.Volumes[largest].Allocated {
			largest = i
		}
	}
	big := b.Volumes[largest].Path
	if o.CorruptVHDX {
		if err := corruptVHDX(big); err != nil {
			return nil, fmt.Errorf("wsbgen: %w", err)
		}
	}

	files := map[string][]byte{}
	prefix := b.SnapshotID.String()
	files[prefix+"_AdditionalFiles"+additionalFilesID+".xml"] = additionalFilesXML()
	files[prefix+"_Components.xml"] = componentsXML(b)
	files[prefix+"_RegistryExcludes.xml"] = registryExcludesXML()
	for i, w := range writers {
		files[prefix+"_Writer"+w.id+".xml"] = writerXML(b, i)
	}
	for name, data := range files {
		if err := writeFile(filepath.Join(b.Dir, name), data); err != nil {
			return nil, err
		}
	}
	media := randomGUID(mix(computerKey, 0x3d)) // one target, one media id: kept across backups
	if err := writeFile(filepath.Join(b.Root, "MediaId"), media[:]); err != nil {
		return nil, err
	}
	for _, v := range b.Volumes {
		if v.FS != "NTFS" || v.Letter == "" {
			continue
		}
		if err := writeFile(filepath.Join(b.Root, "SPPMetadataCache", v.GUID.Braced()), sppMetadata(b, v)); err != nil {
			return nil, err
		}
	}
	if o.Names {
		if err := writeFile(filepath.Join(b.Root, "Notes {Sicherung} – été.txt"), []byte("Backups of "+o.Computer+" go to "+o.Target+".\r\n")); err != nil {
			return nil, err
		}
	}
	if o.Truncate {
		// The transfer broke in the middle of the largest image: what
		// WSB writes after the images never came.
		fi, err := os.Stat(big)
		if err != nil {
			return nil, fmt.Errorf("wsbgen: %w", err)
		}
		if err := os.Truncate(big, fi.Size()/2/(1<<20)*(1<<20)); err != nil {
			return nil, fmt.Errorf("wsbgen: truncate %s: %w", big, err)
		}
		rel, _ := filepath.Rel(b.Root, filepath.Join(b.Dir, "BackupSpecs.xml"))
		b.Missing = append(b.Missing, rel)
		for _, c := range []string{"GlobalCatalog", "BackupGlobalCatalog"} {
			if _, err := os.Stat(filepath.Join(b.Root, "Catalog", c)); err != nil {
				b.Missing = append(b.Missing, filepath.Join("Catalog", c))
			}
		}
	} else {
		if err := writeFile(filepath.Join(b.Dir, "BackupSpecs.xml"), backupSpecsXML(b, o)); err != nil {
			return nil, err
		}
		cat := globalCatalog(b, media)
		for _, c := range []string{"GlobalCatalog", "BackupGlobalCatalog"} {
			if err := writeFile(filepath.Join(b.Root, "Catalog", c), cat); err != nil {
				return nil, err
			}
		}
	}
	err := filepath.WalkDir(b.Root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(b.Root, p)
		b.Files = append(b.Files, rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("wsbgen: list %s: %w", b.Root, err)
	}
	return b, nil
}

// clearOldBackups removes the previous "Backup ..." folders: a network
// share target keeps only the newest backup.
func clearOldBackups(root string) error {
	old, err := filepath.Glob(filepath.Join(root, "Backup *"))
	if err != nil {
		return fmt.Errorf("wsbgen: list %s: %w", root, err)
	}
	for _, d := range old {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("wsbgen: remove the previous backup %s: %w", d, err)
		}
	}
	return nil
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("wsbgen: create %s: %w", filepath.Dir(path), err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("wsbgen: write %s: %w", path, err)
	}
	return nil
}

// utf16XML encodes an XML document as Windows components write theirs:
// UTF-16LE with a byte order mark, CRLF line ends.
func utf16XML(doc string) []byte {
	doc = `<?xml version="1.0" encoding="UTF-16"?>` + "\n" + doc
	doc = strings.ReplaceAll(doc, "\n", "\r\n")
	out := []byte{0xff, 0xfe}
	for _, u := range utf16.Encode([]rune(doc)) {
		out = binary.LittleEndian.AppendUint16(out, u)
	}
	return out
}

// DecodeXML turns a UTF-16LE XML file (with its byte order mark) into
// UTF-8 with the encoding declaration dropped, ready for encoding/xml.
func DecodeXML(b []byte) ([]byte, error) {
	if len(b) < 2 || b[0] != 0xff || b[1] != 0xfe || len(b)%2 != 0 {
		return nil, errors.New("wsbgen: not UTF-16LE with a byte order mark")
	}
	us := make([]uint16, 0, len(b)/2-1)
	for i := 2; i < len(b); i += 2 {
		us = append(us, binary.LittleEndian.Uint16(b[i:]))
	}
	s := string(utf16.Decode(us))
	if strings.HasPrefix(s, "<?xml") {
		if i := strings.Index(s, "?>"); i >= 0 {
			s = s[i+2:]
		}
	}
	return []byte(strings.TrimLeft(s, "\r\n")), nil
}

func xmlEscape(s string) string {
	var w bytes.Buffer
	for _, r := range s {
		switch r {
		case '&':
			w.WriteString("&amp;")
		case '<':
			w.WriteString("&lt;")
		case '>':
			w.WriteString("&gt;")
		case '"':
			w.WriteString("&quot;")
		default:
			w.WriteRune(r)
		}
	}
	return w.String()
}

// filetime is t as a Windows FILETIME: 100 ns ticks since 1601.
func filetime(t time.Time) uint64 {
	// Not t.Sub(1601): a Duration saturates at 292 years.
	const unixEpoch = 11644473600 // seconds from 1601 to 1970
	return uint64(t.Unix()+unixEpoch)*10_000_000 + uint64(t.Nanosecond()/100)
}

func volumeName(v Volume) string { return `\\?\Volume` + v.GUID.Braced() + `\` }

func backupSpecsXML(b *Backup, o Options) []byte {
	var w strings.Builder
	fmt.Fprintf(&w, "<BackupSpecs Version=\"1\">\n")
	fmt.Fprintf(&w, "  <ComputerName>%s</ComputerName>\n", xmlEscape(b.Computer))
	fmt.Fprintf(&w, "  <BackupTime>%s</BackupTime>\n", b.Time.Format(time.RFC3339))
	fmt.Fprintf(&w, "  <BackupTimeFileTime>%d</BackupTimeFileTime>\n", filetime(b.Time))
	fmt.Fprintf(&w, "  <VersionIdentifier>%s</VersionIdentifier>\n", b.VersionID)
	fmt.Fprintf(&w, "  <SnapshotSetId>%s</SnapshotSetId>\n", b.SnapshotID.Braced())
	fmt.Fprintf(&w, "  <BackupTarget Type=\"NetworkShare\" Path=\"%s\"/>\n", xmlEscape(o.Target))
	fmt.Fprintf(&w, "  <BackupType>Full</BackupType>\n")
	fmt.Fprintf(&w, "  <AllCritical>true</AllCritical>\n")
	fmt.Fprintf(&w, "  <SystemState>true</SystemState>\n")
	fmt.Fprintf(&w, "  <CanRecover>\n")
	for _, c := range b.CanRecover {
		fmt.Fprintf(&w, "    <Item>%s</Item>\n", c)
	}
	fmt.Fprintf(&w, "  </CanRecover>\n")
	fmt.Fprintf(&w, "  <FileSpecs>\n")
	for _, v := range b.Volumes {
		fmt.Fprintf(&w, "    <Volume Name=\"%s\" AccessPath=\"%s\" Label=\"%s\" FileSystem=\"%s\" TotalSize=\"%d\" UsedSize=\"%d\" IsCritical=\"true\" ImageFile=\"%s\">\n",
			xmlEscape(volumeName(v)), v.Letter, xmlEscape(v.Label), v.FS, v.VirtualSize, v.Allocated, filepath.Base(v.Path))
		root := v.Letter + `\`
		if v.Letter == "" {
			root = volumeName(v)
		}
		fmt.Fprintf(&w, "      <FileSpec FilePath=\"%s\" FileName=\"*\" IsRecursive=\"true\" IsInclude=\"true\"/>\n", xmlEscape(root))
		fmt.Fprintf(&w, "    </Volume>\n")
	}
	fmt.Fprintf(&w, "  </FileSpecs>\n")
	fmt.Fprintf(&w, "  <ComponentSpecs>\n")
	for _, wr := range writers {
		fmt.Fprintf(&w, "    <Component WriterId=\"%s\" WriterName=\"%s\"/>\n", wr.id, wr.name)
	}
	fmt.Fprintf(&w, "  </ComponentSpecs>\n")
	fmt.Fprintf(&w, "</BackupSpecs>\n")
	return utf16XML(w.String())
}

func componentsXML(b *Backup) []byte {
	var w strings.Builder
	fmt.Fprintf(&w, "<Components SnapshotSetId=\"%s\">\n", b.SnapshotID.Braced())
	for _, wr := range writers {
		fmt.Fprintf(&w, "  <Writer Id=\"{%s}\" Name=\"%s\" Usage=\"%s\">\n", wr.id, wr.name, wr.usage)
		fmt.Fprintf(&w, "    <Component LogicalPath=\"\" Name=\"%s\" Selected=\"true\"/>\n", strings.TrimSuffix(wr.name, " Writer"))
		fmt.Fprintf(&w, "  </Writer>\n")
	}
	fmt.Fprintf(&w, "</Components>\n")
	return utf16XML(w.String())
}

func registryExcludesXML() []byte {
	var w strings.Builder
	fmt.Fprintf(&w, "<RegistryExcludes>\n")
	for _, p := range []string{
		`%SystemRoot%\System32\LogFiles\* /s`,
		`%SystemDrive%\pagefile.sys`,
		`%SystemDrive%\hiberfil.sys`,
		`%SystemDrive%\swapfile.sys`,
		`%SystemRoot%\memory.dmp`,
		`%SystemDrive%\System Volume Information\*{3808876B-C176-4e48-B7AE-04046E6CC752} /s`,
	} {
		fmt.Fprintf(&w, "  <Exclude Key=\"FilesNotToBackup\" Path=\"%s\"/>\n", xmlEscape(p))
	}
	fmt.Fprintf(&w, "</RegistryExcludes>\n")
	return utf16XML(w.String())
}

func additionalFilesXML() []byte {
	var w strings.Builder
	fmt.Fprintf(&w, "<AdditionalFiles>\n")
	for _, p := range []string{`%SystemRoot%\System32\config\BCD-Template`, `%SystemRoot%\Boot\EFI\bootmgfw.efi`} {
		fmt.Fprintf(&w, "  <File Path=\"%s\"/>\n", xmlEscape(p))
	}
	fmt.Fprintf(&w, "</AdditionalFiles>\n")
	return utf16XML(w.String())
}

// writerXML is a VSS writer metadata document, in the element names of
// the VSS writer metadata schema (IDENTIFICATION, BACKUP_LOCATIONS).
func writerXML(b *Backup, i int) []byte {
	wr := writers[i]
	inst := randomGUID(mix(uint64(filetime(b.Time)), uint64(i)))
	var w strings.Builder
	fmt.Fprintf(&w, "<WRITER_METADATA xmlns=\"x-schema:#VssWriterMetadataInfo\" version=\"1.1\">\n")
	fmt.Fprintf(&w, "  <IDENTIFICATION writerId=\"%s\" instanceId=\"%s\" friendlyName=\"%s\" usage=\"%s\" dataSource=\"OTHER\"/>\n", wr.id, inst, wr.name, wr.usage)
	fmt.Fprintf(&w, "  <RESTORE_METHOD method=\"RESTORE_IF_CAN_BE_REPLACED\" writerRestore=\"never\" rebootRequired=\"yes\"/>\n")
	fmt.Fprintf(&w, "  <BACKUP_LOCATIONS>\n")
	fmt.Fprintf(&w, "    <FILE_GROUP logicalPath=\"\" componentName=\"%s\" caption=\"%s\" restoreMetadata=\"no\" notifyOnBackupComplete=\"no\" selectable=\"yes\">\n", strings.TrimSuffix(wr.name, " Writer"), wr.name)
	fmt.Fprintf(&w, "      <FILE_LIST path=\"%%SystemRoot%%\\System32\" filespec=\"*\" recursive=\"no\"/>\n")
	fmt.Fprintf(&w, "    </FILE_GROUP>\n")
	fmt.Fprintf(&w, "  </BACKUP_LOCATIONS>\n")
	fmt.Fprintf(&w, "</WRITER_METADATA>\n")
	return utf16XML(w.String())
}

// sppMetadata is the shadow copy optimization cache of a volume: its
// layout is not published, so this is a small record naming the volume
// and the backup, enough to be a file WSB leaves there.
func sppMetadata(b *Backup, v Volume) []byte {
	out := []byte("WSBGSPP\x00")
	out = binary.LittleEndian.AppendUint32(out, 1)
	out = append(out, v.GUID[:]...)
	out = append(out, b.SnapshotID[:]...)
	return binary.LittleEndian.AppendUint64(out, filetime(b.Time))
}

// globalCatalog is the catalog WSB keeps of the backups on a target. Its
// layout is not published: this package writes its own (CatalogVersion 1),
// all integers little-endian:
//
//	magic    "WSBGCAT\x00"
//	version  u32 = 1
//	media    16 B, the MediaId's GUID
//	count    u32, backups listed (1: a share keeps one)
//	backup   count times:
//	  time       u64 FILETIME (UTC)
//	  snapshot   16 B GUID
//	  volumes    u32, then per volume: GUID 16 B, virtual size u64,
//	             name length u16 + UTF-16LE name of the image file
func globalCatalog(b *Backup, media GUID) []byte {
	le := binary.LittleEndian
	out := []byte("WSBGCAT\x00")
	out = le.AppendUint32(out, CatalogVersion)
	out = append(out, media[:]...)
	out = le.AppendUint32(out, 1)
	out = le.AppendUint64(out, filetime(b.Time))
	out = append(out, b.SnapshotID[:]...)
	out = le.AppendUint32(out, uint32(len(b.Volumes)))
	for _, v := range b.Volumes {
		out = append(out, v.GUID[:]...)
		out = le.AppendUint64(out, uint64(v.VirtualSize))
		name := utf16.Encode([]rune(filepath.Base(v.Path)))
		out = le.AppendUint16(out, uint16(len(name)))
		for _, u := range name {
			out = le.AppendUint16(out, u)
		}
	}
	return out
}
