// Package wsb reads the trees Windows Server Backup (WSB) leaves on a
// network share: it says whether a system-image backup is complete, reads
// the version it holds the way wbadmin get versions reports it, and checks
// that an image file is a VHDX. It reads through io/fs, so the same code
// looks at a staging share on disk (os.DirFS) and at a recovery point in
// the store (engine's PointFS).
//
// # The tree
//
// wbadmin start backup -backupTarget:\\server\share (Microsoft's wbadmin
// documentation) writes, relative to the share's root:
//
//	WindowsImageBackup/<Computer>/
//	    Backup YYYY-MM-DD HHMMSS/      the backup; a share keeps one, WSB replaces it
//	        BackupSpecs.xml            what was backed up: time, volumes, what can be recovered
//	        <snapshot>_Components.xml  the VSS components
//	        <snapshot>_Writer<id>.xml  one per VSS writer
//	        <snapshot>_RegistryExcludes.xml, <snapshot>_AdditionalFiles<id>.xml
//	        <volume GUID>.vhdx         one image per volume (.vhd before Windows Server 2012)
//	    Catalog/GlobalCatalog          WSB's catalog of the backups on the target
//	    Catalog/BackupGlobalCatalog    its copy
//	    MediaId                        the target's identity
//	    SPPMetadataCache/{GUID}
//
// Computer names compare case-insensitively, as Windows compares them;
// the folder's name is kept as found.
//
// # What complete means
//
// WSB writes the images first and the XML describing them, the catalog
// and the media id around them; a transfer cut in the middle (the network
// went down, the server rebooted) leaves images without the files that
// make them a backup, and wbadmin get versions and Windows RE's "Search
// for a system image on the network" do not list it. So a backup is
// complete when the newest "Backup ..." folder (by the time in its name)
// holds BackupSpecs.xml, a *_Components.xml, at least one *_Writer*.xml
// and at least one .vhdx or .vhd, every image file its BackupSpecs.xml
// names (a volume's ImageFile; one image is there before the others), and
// the computer's folder holds Catalog/GlobalCatalog and MediaId.
// Image.Missing names what is not there, in that order, as slash paths
// relative to the computer's folder ("Backup 2026-11-02 210312/*.vhdx"
// when no image is there, "Backup 2026-11-02 210312/<GUID>.vhdx" for one
// BackupSpecs.xml names, "Backup 2026-11-02 210312/BackupSpecs.xml
// (unreadable)" when it does not decode, "Backup YYYY-MM-DD HHMMSS" when
// there is no backup folder at all: then Image.Err wraps ErrNoImage as
// well as ErrIncomplete).
// BackupGlobalCatalog is a copy of GlobalCatalog and not required. Whether
// WSB has finished writing is not in the tree: Image.LastWrite is the
// newest modification time under WindowsImageBackup, for a caller that
// waits for writes to settle, and Image.Print a hash of what a point of the image
// holds (the computer's folder but for Backup folders other than the
// newest: names, sizes, write and change times) for one that compares
// two looks.
//
// # BackupSpecs.xml
//
// The XML files are UTF-16 with a byte order mark, as Windows components
// write theirs; DecodeXML turns UTF-16LE, UTF-16BE or UTF-8 into UTF-8 for
// encoding/xml. ReadVersion needs from BackupSpecs.xml the computer's
// name and the backup time (BackupTime, RFC 3339, or BackupTimeFileTime, a
// FILETIME), and reads, when present, VersionIdentifier (wbadmin's version
// identifier: the time in UTC as MM/DD/YYYY-HH:MM; it must agree with the
// time), SnapshotSetId, BackupTarget's Path, the CanRecover items and the
// FileSpecs volumes. Elements it does not know are ignored. The file's
// element structure is not published; this package reads the one the test
// data generator (internal/wsbgen) writes, which carries the fields
// wbadmin reports. A file larger than MaxSpecsSize, not in one of those
// encodings, truncated or nested past encoding/xml's limit is an error
// naming the file, never a panic (FuzzDecodeBackupSpecs).
//
// # VHDX
//
// CheckVHDX follows [MS-VHDX] (Microsoft's Virtual Hard Disk v2 format
// specification): the file type identifier "vhdxfile" at 0; two headers at
// 64 and 128 KiB ("head", CRC-32C over 4 KiB, version 1), at least one of
// them valid; two region tables at 192 and 256 KiB ("regi", CRC-32C over
// 64 KiB), at least one valid, with the BAT and metadata regions inside
// the file, 1 MiB aligned and not overlapping; the metadata table
// ("metadata") with the block size, virtual disk size and logical sector
// size; and every present payload block the BAT points to inside the
// file, which is what a transfer cut in the middle breaks. It reads the
// structures only, never the payload. Ingestion warns about an image that
// fails it and keeps the bytes as they are: a backup server never refuses
// data for its content.
package wsb
