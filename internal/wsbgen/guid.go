package wsbgen

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// GUID is a Windows GUID in its on-disk byte order: Data1, Data2 and
// Data3 little-endian, Data4 as is ([MS-DTYP] 2.3.4.1).
type GUID [16]byte

// String formats g as Windows prints it, lower case, without braces.
func (g GUID) String() string {
	le := binary.LittleEndian
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", le.Uint32(g[0:]), le.Uint16(g[4:]), le.Uint16(g[6:]), g[8:10], g[10:])
}

// Braced is g as {xxxxxxxx-...}, the form VSS and the volume names use.
func (g GUID) Braced() string { return "{" + g.String() + "}" }

func parseGUID(s string) (GUID, error) {
	var g GUID
	s = strings.Trim(s, "{}")
	parts := strings.Split(s, "-")
	if len(parts) != 5 {
		return g, fmt.Errorf("guid %q: want 5 dash-separated parts", s)
	}
	raw, err := hex.DecodeString(strings.Join(parts, ""))
	if err != nil || len(raw) != 16 {
		return g, fmt.Errorf("guid %q: not 32 hex digits", s)
	}
	le := binary.LittleEndian
	le.PutUint32(g[0:], binary.BigEndian.Uint32(raw[0:]))
	le.PutUint16(g[4:], binary.BigEndian.Uint16(raw[4:]))
	le.PutUint16(g[6:], binary.BigEndian.Uint16(raw[6:]))
	copy(g[8:], raw[8:])
	return g, nil
}

func mustGUID(s string) GUID {
	g, err := parseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// randomGUID is a version 4 GUID drawn from the key, so the same seed and
// labels give the same GUID.
func randomGUID(key uint64) GUID {
	var g GUID
	r := rng{key}
	binary.LittleEndian.PutUint64(g[0:], r.next())
	binary.LittleEndian.PutUint64(g[8:], r.next())
	g[7] = g[7]&0x0f | 0x40 // Data3's high nibble: version 4
	g[8] = g[8]&0x3f | 0x80
	return g
}

// volumeGUID is a GUID of the shape the Windows mount manager gives
// volumes ({xxxxxxxx-xxxx-11xx-xxxx-806e6f6e6963}: version 1, the node
// field "\x80none"), as they appear in \\?\Volume{...}\ names and WSB's
// image file names.
func volumeGUID(key uint64) GUID {
	g := randomGUID(key)
	g[7] = 0x11
	copy(g[10:], []byte{0x80, 0x6e, 0x6f, 0x6e, 0x69, 0x63})
	return g
}

// rng is splitmix64: fast, and every stream is a pure function of its
// key, which is what makes the volumes reproducible from a seed.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// float is uniform in [0, 1).
func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// mix derives a key from a key and labels.
func mix(k uint64, labels ...uint64) uint64 {
	for _, l := range labels {
		r := rng{k ^ l*0xd6e8feb86659fd93}
		k = r.next()
	}
	return k
}

// mixString derives a key from a key and a string.
func mixString(k uint64, s string) uint64 {
	for _, c := range []byte(s) {
		k = mix(k, uint64(c)+1)
	}
	return k
}
