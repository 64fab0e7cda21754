// Package tapefs is the tape tier: drives (the Linux st driver and a
// file-backed emulator), changers, and the on-tape format, which lets a
// cartridge be read decades later by a fresh server that has only the
// cartridge and, for an encrypted pool, the key file.
//
// # The on-tape format, version 1
//
// Everything below is format version 1 (FormatVersion). A reader refuses
// a newer version by name (ErrUnsupportedVersion) rather than guess; the
// magic and version bytes of a block, and the "label"/"version" fields of
// the labels, keep their place in every later version so that refusal
// stays possible. Integers are big-endian. Golden files under
// testdata/format pin each encoding.
//
// A cartridge is a sequence of tape files, each ended by a filemark:
//
//	file 0   volume label   (kind 16, plain)
//	file 1   set label      (kind 17, plain)
//	file 2.. packs files (kind 1), point files (kind 2), catalog files (kind 3)
//
// A job appends: packs files holding the packs a recovery point needs,
// then that point's point file, and at the end of the job (and before a
// cartridge is left full) a catalog file. A tape file's number is the
// number of filemarks before it; blocks carry it, so a block read from
// the wrong place is caught.
//
// # Blocks
//
// A tape file is a stream of blocks of at most BlockSize (1 MiB) bytes,
// header included. A writer fills every block: a tape sees 1 MiB blocks
// except a file's last one (and compressed ones, which carry 1 MiB of
// data in fewer bytes). The header:
//
//	offset size
//	 0      4   magic "RCTB"
//	 4      1   format version: 1
//	 5      1   flags: 0x01 encrypted, 0x02 compressed, 0x04 last block of the file;
//	            other bits zero
//	 6      1   file kind (KindPacks ...), the same in every block of a file
//	 7      1   header length: 32, or 44 when encrypted
//	 8      4   file number
//	12      4   block sequence in the file, from 0
//	16      4   payload length: the bytes after the header
//	20      4   data length: the bytes of the file's stream this block carries
//	            (at most 1048544 plain, 1048516 encrypted)
//	24      4   zero (reserved)
//	28      4   CRC32C (Castagnoli) of bytes 0-27 and of everything from 32 on
//	            (nonce and payload)
//	32     12   nonce, when encrypted: random per block
//	32|44   .   payload
//
// The payload is the block's data, compressed when flag 0x02 is set (one
// zstd frame per block, kept only when it saves at least 1/64; else the
// block is stored as is and the flag is clear), then, when flag 0x01 is
// set, sealed with AES-256-GCM under the set key with the nonce at 32 and
// bytes 0-27 of the header as additional data; the 16-byte tag ends the
// payload. The CRC covers the sealed bytes, so damage is told from a
// wrong key: a block whose CRC holds but which does not open was sealed
// under another key (ErrWrongKey for a file's first block).
//
// A reader checks, per block: magic, version, flags, header length, the
// lengths against the bytes read and the block size, the CRC, the
// authentication tag, the decompressed length, and that kind, file number
// and sequence follow on from the file's first block. A block failing any
// of them, or a medium error, is ErrBadBlock, and the rest of the file is
// skipped to its filemark; a damaged block followed by the end of data is
// a torn file (ErrTorn), which is what a power cut while writing leaves.
//
// # The stream inside a file
//
// The data of a file's blocks, concatenated, is a sequence of records;
// records span blocks freely:
//
//	entry:  'E' (0x45) | name length (2) | name (1 to 1024 bytes of UTF-8) | size (8) | size bytes
//	end:    'Z' (0x5A) | entry count (8) | sum of the entry sizes (8)
//
// The end record is whole in the block flagged last, and nothing follows
// it in the stream; the filemark follows that block. A file that ends
// before its end record (a power cut, the end of the medium mid-entry) is
// torn: the entry it cut is not an entry, the ones before it are whole.
// A file cut by the end of the medium is followed by a filemark, which
// the writer adds once the drive refuses its next block (writers before
// this rule added none): a scan takes a torn last file followed by a
// filemark, or ending in the drive's early-warning zone, as the set
// spanning onto its next cartridge, not as damage. A file whose end
// record is present but whose filemark is missing (the power failed
// between the two) is whole.
//
// Entries by file kind: a packs file holds one entry per pack, named by
// the pack's id in hex, with the pack's bytes exactly as the store holds
// them (a pack never straddles cartridges). A point file holds
// "manifest" (the point manifest as the store holds it) and "point.json"
// (the engine's record; a scan reads its fields "id", "source", "time"
// (RFC 3339) and "packs" (pack names)). A catalog file holds
// "catalog.json". A volume label holds "volume.json", a set label
// "set.json".
//
// # Labels
//
// Files 0 and 1 are never encrypted or compressed, so a server with no key
// and no catalog can say what a cartridge is and which key it needs. Each
// is one JSON object; the "label" and "version" fields come first in
// every version:
//
//	volume.json: {"label": "recall tape volume label", "version": 1,
//	              "volume_id": UUID (new at every labelling), "barcode": "RC0001L9",
//	              "block_size": 1048576, "created": RFC 3339 time}
//	set.json:    {"label": "recall tape set label", "version": 1,
//	              "pool": name, "set_id": UUID, "sequence": 1-based number in the set,
//	              "created", "expiry": RFC 3339 times,
//	              "key_fingerprint": "" when the pool does not encrypt, else KeyFingerprint,
//	              "compressed": bool, "store_id": the store's id,
//	              "store_config": {file name: base64 of the store's config file}}
//
// A blank cartridge (end of data at its start, or one filemark and then
// the end of data, which is what a quick erase leaves) is ErrNotLabelled;
// one whose first block is not a recall block, or holds no volume label,
// is ErrForeign.
//
// # Keys
//
// A pool that encrypts has one random 32-byte pool key. Each media set
// is sealed under its own set key, HKDF-SHA256(secret = pool key, no salt,
// info = "recall tape set key v1 " + set id, 32 bytes), so nonces are
// never shared across sets and a set's key opens no other set. Nonces are
// random; a set stays far below the 2^32 blocks (4 PiB) after which
// random 96-bit nonces under one key would risk a collision. The set
// label names the pool key by its fingerprint, the hex of
// HKDF-SHA256(pool key, no salt, info "recall tape key fingerprint v1",
// 16 bytes), which reveals nothing usable about the key; ScanTape
// compares it before reading any file, so a wrong key is refused before
// any data is returned (ErrWrongKey).
//
// A key file (ExportKey, ImportKey) carries a pool key to another server,
// sealed under a passphrase. It is JSON:
//
//	{"format": "recall tape pool key", "version": 1, "pool": name,
//	 "fingerprint": KeyFingerprint of the key,
//	 "kdf": {"name": "argon2id", "time": 3, "memory_kib": 65536, "threads": 4,
//	         "salt": base64 of 16 random bytes},
//	 "nonce": base64 of 12 random bytes,
//	 "sealed": base64 of AES-256-GCM(key = argon2id(passphrase, salt, time,
//	           memory, threads, 32 bytes), nonce, plaintext = the pool key,
//	           additional data = "recall tape pool key" 0x00 pool 0x00 fingerprint)}
//
// The costs are read from the file, within bounds (time at most 64,
// memory at most 4 GiB) so a damaged file cannot exhaust the machine. A
// wrong passphrase fails the tag: ErrWrongKey.
//
// # The media catalog
//
// A catalog file lists the whole set so far, so the last catalog file of
// any cartridge describes the set up to the moment it was written. Its
// "catalog.json" (EncodeCatalog) is:
//
//	{"format": "recall media catalog", "version": 1, "pool": name, "set_id": UUID,
//	 "written": RFC 3339 time,
//	 "tapes":  [{"sequence", "barcode", "volume_id", "full": bool}],
//	 "files":  [{"sequence" (the cartridge), "file" (file number),
//	             "start" (logical object number of its first block, for Locate),
//	             "kind", "entries": [{"name", "size"}]}],
//	 "points": [{"id", "source", "time", "packs": [pack names],
//	             "files": [indexes into "files" of the files holding the point]}]}
//
// It is sealed and compressed like the set's other files.
//
// # Reading a cartridge with no catalog
//
// ScanTape reads the labels (checking the key fingerprint), then goes to
// the end of data and spaces back over filemarks: if the last filemark
// is the last object on tape, the file before it is the last file, and if
// that is a whole catalog file of the set, it is the answer. Otherwise
// (a torn last file, a damaged or missing catalog) it reads every file
// from file 2 on: packs files give their whole entries, point files their
// point.json, catalog files what they say about the set's other
// cartridges. Damaged files are skipped to their filemark and named in
// ScanResult.Damaged with the entry the damage cut; a torn file sets
// ScanResult.Torn; everything before and around them is returned.
//
// By hand, with only mt and dd: `mt -f /dev/nst0 rewind; dd
// if=/dev/nst0 bs=1M count=1 | tail -c +33` shows a volume label's
// record; a plain file's entries are its blocks with the 32-byte headers
// cut off, records as above.
package tapefs
