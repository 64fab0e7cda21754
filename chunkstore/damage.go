package chunkstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/zeebo/blake3"
)

// Damage record format, version 1 (<store>/damaged/<hex of hash of file>):
//
//	record  = magic "RCALLDM1" | payload
//	payload = plaintext store: body | u32le crc32c(body)
//	          encrypted store: nonce(12) | AES-256-GCM(body) | tag(16), AD = magic
//	body    = u8 version (1) | u32le count | entry*count
//	entry   = [32]byte blob id | [32]byte pack id | u16le reason length
//	          | reason (UTF-8, at most 1024 bytes)
//
// Damage is data: a blob whose stored bytes fail their check at one place
// (blob id, pack id) is recorded in a damage record, by whatever read found
// it (verify --read-data, a restore, a mount). A recorded place is never
// read again while another place of the blob is usable, and never counts
// for deduplication, so the next backup of a source that still has the
// data stores it anew. Records are only added (one small file per batch,
// written like index files) by readers without the writer lock, and by a
// salvage for the blobs it loses, before it removes their pack; repair,
// under the lock, drops the entries of packs it removed by writing one
// file of what remains before it removes the files it replaces (and
// reports the blobs of those entries no pack holds a good copy of).

const (
	damageMagic     = "RCALLDM1"
	damageVersion   = 1
	damageEntryMin  = 32 + 32 + 2
	maxDamageReason = 1024
)

// DamagedBlob is one place of a blob whose stored bytes are bad.
type DamagedBlob struct {
	Blob   ID     `json:"blob"`
	Pack   ID     `json:"pack"`
	Reason string `json:"reason"`
}

func encodeDamage(ents []DamagedBlob, k *keys) []byte {
	body := []byte{damageVersion}
	body = binary.LittleEndian.AppendUint32(body, uint32(len(ents)))
	for _, e := range ents {
		r := clipReason(e.Reason)
		body = append(body, e.Blob[:]...)
		body = append(body, e.Pack[:]...)
		body = binary.LittleEndian.AppendUint16(body, uint16(len(r)))
		body = append(body, r...)
	}
	out := []byte(damageMagic)
	if k.aead != nil {
		return seal(k.aead, out, body, []byte(damageMagic))
	}
	out = append(out, body...)
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(body, crcTable))
}

// clipReason keeps a reason within the format's bound, on a rune boundary.
func clipReason(r string) string {
	if len(r) <= maxDamageReason {
		return r
	}
	r = r[:maxDamageReason]
	for !utf8.ValidString(r) {
		r = r[:len(r)-1]
	}
	return r
}

func decodeDamage(b []byte, k *keys) ([]DamagedBlob, error) {
	if len(b) < len(damageMagic) || string(b[:len(damageMagic)]) != damageMagic {
		return nil, fmt.Errorf("%w: damage record magic", ErrCorrupt)
	}
	b = b[len(damageMagic):]
	var body []byte
	if k.aead != nil {
		var err error
		if body, err = open(k.aead, nil, b, []byte(damageMagic)); err != nil {
			return nil, fmt.Errorf("%w: damage record fails authentication", ErrCorrupt)
		}
	} else {
		if len(b) < 4 || crc32.Checksum(b[:len(b)-4], crcTable) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
			return nil, fmt.Errorf("%w: damage record checksum", ErrCorrupt)
		}
		body = b[:len(b)-4]
	}
	if len(body) < 5 || body[0] != damageVersion {
		return nil, fmt.Errorf("%w: damage record version", ErrCorrupt)
	}
	n := int(binary.LittleEndian.Uint32(body[1:]))
	rest := body[5:]
	if n > len(rest)/damageEntryMin {
		return nil, fmt.Errorf("%w: damage record count %d", ErrCorrupt, n)
	}
	out := make([]DamagedBlob, n)
	for i := range out {
		if len(rest) < damageEntryMin {
			return nil, fmt.Errorf("%w: damage record truncated", ErrCorrupt)
		}
		e := &out[i]
		copy(e.Blob[:], rest)
		copy(e.Pack[:], rest[32:])
		rl := int(binary.LittleEndian.Uint16(rest[64:]))
		rest = rest[damageEntryMin:]
		if rl > maxDamageReason || rl > len(rest) || !utf8.Valid(rest[:rl]) {
			return nil, fmt.Errorf("%w: damage record reason", ErrCorrupt)
		}
		e.Reason = string(rest[:rl])
		rest = rest[rl:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: damage record length", ErrCorrupt)
	}
	return out, nil
}

func (s *Store) damageDir() string { return configPath(s.be, "damaged") }

func damageHandle(name string) backend.Handle {
	return backend.Handle{Type: backend.Damaged, Name: name}
}

// damageNames lists the damage record files: only names recall writes (a
// record is named by the hash of its bytes; its temporary file, which the
// backend does not list, never has such a name). Anything else in the
// directory, a note an administrator left there, is not a record: it is
// named once (foreignDamageFile) and left alone.
func (s *Store) damageNames() ([]string, error) {
	var names []string
	err := backend.ListNames(bg, s.be, backend.Damaged, func(name string) error {
		if _, err := ParseID(name); err != nil {
			s.foreignDamageFile(name)
			return nil
		}
		names = append(names, name)
		return nil
	})
	return names, err
}

// foreignDamageFile says, once per process, that a file in the damage
// record directory is not one recall wrote, and that it stays.
func (s *Store) foreignDamageFile(name string) {
	if _, said := damageWarned.LoadOrStore("foreign "+s.damageDir()+"/"+name, true); !said {
		fmt.Fprintf(os.Stderr, "recall: %s/%s is not a damage record recall wrote; it is left alone (move it out of the store)\n", s.damageDir(), name)
	}
}

// loadDamage reads damage records written since the last call. A record
// that cannot be read is reported once; it is only a record, and verify
// --read-data finds the damage again.
func (s *Store) loadDamage() error {
	names, err := s.damageNames()
	if err != nil {
		s.damageListWarn.Do(func() {
			fmt.Fprintf(os.Stderr, "recall: damage records: %v (ignored; 'recall verify --read-data' finds damage again)\n", err)
		})
		return nil
	}
	for _, name := range names {
		s.fmu.Lock()
		seen := s.loadedD[name]
		s.loadedD[name] = true
		s.fmu.Unlock()
		if seen {
			continue
		}
		b, err := s.be.Load(bg, damageHandle(name), 0, -1, nil)
		if err == nil {
			var recs []DamagedBlob
			if recs, err = decodeDamage(b, s.keys); err == nil {
				s.idx.addDamage(recs)
				continue
			}
		}
		if _, said := damageWarned.LoadOrStore(name, true); !said {
			if errors.Is(err, ErrCorrupt) {
				fmt.Fprintf(os.Stderr, "recall: damage record %s/%s: %v (ignored: the blobs it recorded damaged count as good until 'recall verify --read-data' finds them again; 'recall repair index' removes it)\n", s.damageDir(), name, err)
			} else {
				fmt.Fprintf(os.Stderr, "recall: damage record %s/%s: %v (ignored this time: the blobs it recorded damaged count as good; let recall read it)\n", s.damageDir(), name, err)
			}
		}
	}
	return nil
}

// damageWarned holds the unreadable damage records already reported by
// this process, which may open a store more than once.
var damageWarned sync.Map

// addDamage adds recs to the in-memory record and returns those that were
// not in it.
func (x *index) addDamage(recs []DamagedBlob) []DamagedBlob {
	x.mu.Lock()
	defer x.mu.Unlock()
	var fresh []DamagedBlob
	for _, r := range recs {
		k := blobAt{r.Blob, r.Pack}
		if _, ok := x.damaged[k]; !ok {
			x.damaged[k] = r.Reason
			fresh = append(fresh, r)
		}
	}
	return fresh
}

// recordDamage adds bad places to the record: at once in memory, so this
// process neither reads them again nor deduplicates against them, and in
// a new damage record file, best effort: a read never fails because the
// record cannot be written (a read-only store, a full disk), it warns once.
func (s *Store) recordDamage(recs ...DamagedBlob) {
	if err := s.saveDamage(recs); err != nil {
		s.damageWarn.Do(func() {
			fmt.Fprintf(os.Stderr, "recall: cannot record damaged blobs in %s: %v (the damage is reported, but a later backup may not store those blobs again; run 'recall verify --read-data' where the store is writable)\n", s.damageDir(), err)
		})
	}
}

// saveDamage adds bad places to the record, in memory and in a new damage
// record file, durably; the error says when the file could not be
// written (the places stay recorded in memory).
func (s *Store) saveDamage(recs []DamagedBlob) error {
	fresh := s.idx.addDamage(recs)
	if len(fresh) == 0 {
		return nil
	}
	b := encodeDamage(fresh, s.keys)
	name := ID(blake3.Sum256(b)).String()
	if err := s.be.Save(bg, damageHandle(name), b); err != nil {
		return err
	}
	s.fmu.Lock()
	s.loadedD[name] = true
	s.fmu.Unlock()
	return nil
}

// DamagedBlobs returns the recorded damage, sorted by blob then pack.
func (s *Store) DamagedBlobs() []DamagedBlob {
	s.idx.mu.RLock()
	out := make([]DamagedBlob, 0, len(s.idx.damaged))
	for k, why := range s.idx.damaged {
		out = append(out, DamagedBlob{Blob: k.blob, Pack: k.pack, Reason: why})
	}
	s.idx.mu.RUnlock()
	slices.SortFunc(out, func(a, b DamagedBlob) int {
		if c := bytes.Compare(a.Blob[:], b.Blob[:]); c != 0 {
			return c
		}
		return bytes.Compare(a.Pack[:], b.Pack[:])
	})
	return out
}

// damagePrune is what pruneDamage changed, or would change.
type damagePrune struct {
	// dropped counts the entries of packs that are gone; gone lists
	// those entries, each place once.
	dropped int
	gone    []DamagedBlob
	// unreadable maps each record file (named as recall names them)
	// that cannot be read or decoded to why: removed, since nothing can
	// be learnt from it and every open warns of it.
	unreadable map[string]string
	// replaced lists the readable record files rewritten, without the
	// dropped entries, into written ("" when no entry remains, or in a
	// dry run).
	replaced []string
	written  string
}

// pruneDamage rewrites the damage record without the entries of packs not
// in present, and removes the record files that cannot be read: the new
// file is durable before the ones it replaces are removed, so a crash
// leaves at worst both. Only files recall names are touched (damageNames):
// no command removes what it did not write. The caller holds the writer
// lock.
func (s *Store) pruneDamage(present map[ID]int64, dryRun bool) (*damagePrune, error) {
	names, err := s.damageNames()
	if err != nil {
		return nil, fmt.Errorf("list damage records in %s: %w", s.damageDir(), err)
	}
	res := &damagePrune{unreadable: map[string]string{}}
	var keep []DamagedBlob
	var readable []string
	seen := map[blobAt]bool{}
	seenGone := map[blobAt]bool{}
	for _, name := range names {
		b, err := s.be.Load(bg, damageHandle(name), 0, -1, nil)
		if errors.Is(err, backend.ErrNotExist) {
			continue
		}
		if err != nil {
			// Not known to be bad: it may read next time, and it is
			// not removed on a guess.
			return nil, fmt.Errorf("read damage record %s/%s: %w (nothing was removed from the damage records; let recall read it, then run 'recall repair index' again)", s.damageDir(), name, err)
		}
		recs, err := decodeDamage(b, s.keys)
		if err != nil {
			res.unreadable[name] = err.Error()
			continue
		}
		readable = append(readable, name)
		for _, r := range recs {
			k := blobAt{r.Blob, r.Pack}
			switch _, ok := present[r.Pack]; {
			case !ok:
				res.dropped++
				if !seenGone[k] {
					seenGone[k] = true
					res.gone = append(res.gone, r)
				}
			case !seen[k]:
				seen[k] = true
				keep = append(keep, r)
			}
		}
	}
	if res.dropped > 0 {
		res.replaced = readable
	}
	if dryRun || res.dropped == 0 && len(res.unreadable) == 0 {
		return res, nil
	}
	if res.dropped > 0 {
		s.idx.mu.Lock()
		for k := range s.idx.damaged {
			if _, ok := present[k.pack]; !ok {
				delete(s.idx.damaged, k)
			}
		}
		s.idx.mu.Unlock()
		if len(keep) > 0 {
			b := encodeDamage(keep, s.keys)
			res.written = ID(blake3.Sum256(b)).String()
			if err := s.be.Save(bg, damageHandle(res.written), b); err != nil {
				return nil, storeWriteError(s.Dir(), err)
			}
		}
	}
	remove := slices.Clone(res.replaced)
	for name := range res.unreadable {
		remove = append(remove, name)
	}
	for _, o := range remove {
		if o == res.written {
			continue
		}
		if err := s.be.Remove(bg, damageHandle(o)); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return nil, fmt.Errorf("remove damage record %s/%s: %w", s.damageDir(), o, err)
		}
	}
	res.replaced = slices.DeleteFunc(res.replaced, func(n string) bool { return n == res.written })
	s.fmu.Lock()
	for _, o := range remove {
		delete(s.loadedD, o)
	}
	if res.written != "" {
		s.loadedD[res.written] = true
	}
	s.fmu.Unlock()
	return res, nil
}

// damageReason is the record's reason for err: what failed, without the
// "corrupt data" every entry shares.
func damageReason(err error) string {
	return strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": ")
}
