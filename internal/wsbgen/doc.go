// Package wsbgen generates what Windows Server Backup (WSB) writes to a
// network share for one system-image backup, so the BMR and system-state
// code can be tested and benchmarked with no Windows machine:
//
//	WindowsImageBackup\<Computer>\
//	    Backup YYYY-MM-DD HHMMSS\
//	        <volume GUID>.vhdx                    one per volume (EFI, recovery, C:)
//	        BackupSpecs.xml
//	        <set>_AdditionalFilesc3b9f3c7-5e52-4d5e-8b20-19adc95a34c7.xml
//	        <set>_Components.xml
//	        <set>_RegistryExcludes.xml
//	        <set>_Writer<writer id>.xml          one per VSS writer
//	    Catalog\GlobalCatalog, Catalog\BackupGlobalCatalog
//	    MediaId
//	    SPPMetadataCache\{<volume GUID>}
//
// Generate writes one backup; Options.Generation n+1 of the same Seed is
// the next day's backup of the same computer.
//
// # What is published and what is invented
//
// From published sources:
//   - The VHDX files follow [MS-VHDX]: the file type identifier, two
//     headers with CRC-32C checksums and sequence numbers, two copies of
//     the region table (BAT and metadata regions), the metadata items
//     (File Parameters, Virtual Disk Size, Logical and Physical Sector
//     Size, Page 83 Data) and a BAT with a sector bitmap entry after every
//     chunk ratio payload entries (vhdx.go draws the layout). qemu-img
//     check, info and convert read them (the tests).
//   - The folder layout (the computer's folder, "Backup <date> <time>",
//     Catalog with GlobalCatalog and BackupGlobalCatalog, MediaId, XML
//     files beside the images) as published descriptions of system image
//     backups give it.
//   - The VSS writer ids and names, as vssadmin list writers prints them,
//     and the element names of the writer metadata documents (the VSS
//     writer metadata schema: WRITER_METADATA, IDENTIFICATION, ...).
//   - What wbadmin get versions reports: the backup time, the version
//     identifier (the time in UTC as MM/DD/YYYY-HH:MM), "Can recover":
//     Volume(s), File(s), Application(s), Bare Metal Recovery, System
//     State.
//
// As public listings of such folders show them, not verified against a
// specification: image files named by the volume's GUID without braces
// (mount-manager GUIDs ending in 806e6f6e6963), the XML files prefixed by
// a GUID of the backup (here the snapshot set id), the AdditionalFiles
// suffix, the XML encoded as UTF-16LE with a byte order mark (DecodeXML
// reads it back).
//
// Invented, because no public description exists: the element structure
// of BackupSpecs.xml, _Components.xml, _RegistryExcludes.xml and
// _AdditionalFiles*.xml (they carry the fields wbadmin reports: computer,
// time, version identifier, snapshot set, volumes with GUID, drive letter,
// label, sizes and image file, the writers, and what can be recovered);
// the binary GlobalCatalog (layout in globalCatalog's comment, version
// CatalogVersion; BackupGlobalCatalog is its copy); MediaId (the 16 bytes
// of a GUID); the SPPMetadataCache file (a small record); the VHDX creator
// string; and the volumes' content.
//
// # The images
//
// Dynamic VHDX with 32 MiB blocks: WSB's block size is not published; 32
// MiB is the VHDX default for dynamic disks, which a disk Windows creates
// without a block size gets. Logical sectors of 512 bytes, physical of
// 4096. Only blocks the volume has data in are present, and inside them
// only the allocated clusters are written: the files are sparse, their
// allocated size is the data plus about 300 KiB of structures.
//
// A volume is a function of the seed: a boot sector at 0 (NTFS or FAT32
// fields; NTFS's copy in the last sector), runs of 64 KiB..64 MiB of data
// separated by gaps that leave large stretches free, the content chosen
// per 64 KiB among incompressible, text-like, structured and zero data.
// Computers deployed from one Options.Image share their volumes' layout
// and, but for 20% each made its own, their content at generation 0.
// VolumeReader reads a volume as the image holds it, generated again, so
// tests compare without keeping a copy; writing streams cluster by
// cluster and never holds a volume in memory.
//
// # Successive backups
//
// Generation n+1 rewrites about ChangeRate (default 4% a day, what DPM's
// sizing implies) of each volume's allocated bytes: 85% as 4..64 KiB
// writes in bursts of 1..8 MiB over the allocated clusters, 15% as one to
// three newly allocated runs. Measured on a 256 MiB volume, 4% changed
// clusters touch 8-12% of its 1 MiB pieces. Kept across backups: the
// computer, the volumes' GUIDs (so the image file names), the MediaId.
// New with each backup: the time (a day later, give or take minutes) and
// so the folder name and version identifier, the snapshot set id (the
// XML files' prefix), each VHDX's disk id and write GUIDs. A share holds
// one backup (WSB keeps only the latest on a network share): Generate
// removes the previous Backup folder.
//
// # Faults
//
// Options.Truncate cuts the largest image at half its size and writes
// neither BackupSpecs.xml nor the catalog (Backup.Missing names them);
// Options.CorruptVHDX breaks both headers' checksums of the largest image;
// Options.Names gives the computer and one extra file names with spaces,
// braces and non-ASCII letters.
package wsbgen
