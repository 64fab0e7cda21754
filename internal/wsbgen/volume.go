package wsbgen

import (
	"encoding/binary"
	"io"
	"math"
	"sort"
)

const clusterSize = 4096

// extent is a run of bytes of a volume, cluster aligned.
type extent struct{ off, len int64 }

func (e extent) end() int64 { return e.off + e.len }

// plan is one generation of one volume: where it has data and which
// version of its content each cluster holds. Every byte is a function of
// the plan, so the VHDX writer and VolumeReader agree by construction.
type plan struct {
	size int64
	// base keys the layout and the content every cluster has before its
	// first change (the installation image); key the changes and what
	// they write (the computer). Equal unless computers share an image.
	base, key uint64
	fs        string // "NTFS" or "FAT32": what the boot sector says
	extents   []extent
	// breaks holds the version of each cluster as a step function:
	// clusters from breaks[i].off on hold version breaks[i].v.
	breaks []vbreak
}

type vbreak struct {
	off int64
	v   uint64
}

// personalRate is how much of an installation image a computer has made
// its own by its first backup (configuration, its roles' data, updates
// installed since): the part of generation 0 two computers of one image
// do not share.
const personalRate = 0.2

// newPlan lays out generation gen of a volume: generation 0 from the
// base key (changed by personalRate when the computer's key differs),
// then each later generation's changes on top of the one before.
func newPlan(base, key uint64, fs string, size, allocated int64, gen int, rate float64) *plan {
	p := &plan{size: size, base: base, key: key, fs: fs}
	p.extents = layout(rng{mix(base, 0x1a)}, size, allocated, fs)
	var changes []extent
	apply := func(r rng, rate float64) {
		mod, grown := p.changes(r, rate)
		p.extents = union(append(p.extents, grown...))
		changes = append(changes, mod...)
		changes = append(changes, grown...)
	}
	if base != key {
		apply(rng{mix(key, 0xc4, 0)}, personalRate)
	}
	for g := 1; g <= gen; g++ {
		apply(rng{mix(key, 0xc4, uint64(g))}, rate)
	}
	p.breaks = steps(changes)
	return p
}

// layout places generation 0's data: the boot region at 0, runs of
// 64 KiB..64 MiB (log-uniform, as a system volume's files and their
// fragments are) separated by gaps of random size that leave large
// unallocated stretches and the end of the volume free, and for NTFS the
// backup boot sector in the last cluster.
func layout(r rng, size, allocated int64, fs string) []extent {
	const boot = 64 << 10
	ext := []extent{{0, boot}}
	tail := int64(0)
	if fs == "NTFS" {
		tail = clusterSize
	}
	want := allocated - boot - tail
	maxRun := min(int64(64<<20), max(want/4, 64<<10))
	var runs []int64
	for sum := int64(0); sum < want; {
		n := logUniform(&r, 64<<10, maxRun)
		n = min(n, want-sum)
		runs = append(runs, n)
		sum += n
	}
	free := size - allocated - (1 << 20)
	span := float64(free) * (0.55 + 0.35*r.float())
	weights := make([]float64, len(runs))
	total := 0.0
	for i := range weights {
		w := -math.Log(1 - r.float())
		if r.float() < 0.05 {
			w *= 20 // now and then a very large hole, as a deleted big file leaves
		}
		weights[i] = w
		total += w
	}
	at := int64(1 << 20)
	for i, n := range runs {
		at += int64(span*weights[i]/total) / clusterSize * clusterSize
		ext = append(ext, extent{at, n})
		at += n
	}
	if tail > 0 {
		ext = append(ext, extent{size - clusterSize, clusterSize})
	}
	return union(ext)
}

// changes draws one generation's writes: runs of 4..64 KiB over the
// allocated clusters, for 85% of rate of the allocated bytes, and one to
// three newly allocated runs in the free space for the other 15%. The
// writes come in bursts of 1..8 MiB of the volume that they cover about
// half of (overlaps take some back from the 80% written), as a system volume's do (the MFT, the logs, the registry
// hives, a patched program's files): scattered at cluster granularity
// within a burst, the bursts themselves spread over the whole volume.
func (p *plan) changes(r rng, rate float64) (mod, grown []extent) {
	alloc := int64(0)
	cum := make([]int64, len(p.extents))
	for i, e := range p.extents {
		alloc += e.len
		cum[i] = alloc
	}
	target := int64(rate * float64(alloc))
	modTarget := target * 85 / 100
	for covered := int64(0); covered < modTarget; {
		span := logUniform(&r, 1<<20, 8<<20)
		start := int64(r.next() % uint64(alloc))
		for burst := int64(0); burst < span*4/5 && covered < modTarget; {
			at := (start + int64(r.next()%uint64(span))) % alloc
			i := sort.Search(len(cum), func(i int) bool { return cum[i] > at })
			e := p.extents[i]
			off := (e.off + at - (cum[i] - e.len)) / clusterSize * clusterSize
			n := min(logUniform(&r, 4<<10, 64<<10), e.end()-off)
			mod = append(mod, extent{off, n})
			burst += n
			if len(mod)%64 == 0 || covered+n >= modTarget {
				mod = union(mod)
				covered = total(mod)
			} else {
				covered += n
			}
		}
	}
	newTarget := target - modTarget
	k := 1 + int(r.next()%3)
	for j := 0; j < k && newTarget > 0; j++ {
		n := max(newTarget/int64(k)/clusterSize*clusterSize, clusterSize)
		if g, ok := p.findGap(&r, n+(2<<20)); ok {
			grown = append(grown, extent{g + (1 << 20), n})
		}
	}
	return union(mod), union(grown)
}

// findGap returns the start of a free stretch of at least n bytes, from
// a random place on.
func (p *plan) findGap(r *rng, n int64) (int64, bool) {
	var gaps []extent
	for i := 0; i+1 < len(p.extents); i++ {
		if g := p.extents[i+1].off - p.extents[i].end(); g >= n {
			gaps = append(gaps, extent{p.extents[i].end(), g})
		}
	}
	if len(gaps) == 0 {
		return 0, false
	}
	return roundUp(gaps[r.next()%uint64(len(gaps))].off, clusterSize), true
}

func logUniform(r *rng, lo, hi int64) int64 {
	if hi <= lo {
		return lo / clusterSize * clusterSize
	}
	v := math.Exp(math.Log(float64(lo)) + r.float()*(math.Log(float64(hi))-math.Log(float64(lo))))
	return max(int64(v)/clusterSize*clusterSize, clusterSize)
}

// union sorts and merges overlapping or touching extents.
func union(es []extent) []extent {
	sort.Slice(es, func(i, j int) bool { return es[i].off < es[j].off })
	out := es[:0:0]
	for _, e := range es {
		if e.len <= 0 {
			continue
		}
		if n := len(out); n > 0 && e.off <= out[n-1].end() {
			if e.end() > out[n-1].end() {
				out[n-1].len = e.end() - out[n-1].off
			}
			continue
		}
		out = append(out, e)
	}
	return out
}

func total(es []extent) int64 {
	var n int64
	for _, e := range es {
		n += e.len
	}
	return n
}

// steps turns the generations' change runs into the version step
// function: a cluster's version is the number of runs covering it.
func steps(changes []extent) []vbreak {
	type ev struct {
		off int64
		d   int
	}
	evs := make([]ev, 0, 2*len(changes))
	for _, c := range changes {
		evs = append(evs, ev{c.off, 1}, ev{c.end(), -1})
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].off < evs[j].off })
	out := []vbreak{{0, 0}}
	v := 0
	for _, e := range evs {
		v += e.d
		if last := &out[len(out)-1]; last.off == e.off {
			last.v = uint64(v)
		} else {
			out = append(out, vbreak{e.off, uint64(v)})
		}
	}
	return out
}

func (p *plan) version(off int64) uint64 {
	i := sort.Search(len(p.breaks), func(i int) bool { return p.breaks[i].off > off })
	return p.breaks[i-1].v
}

func (p *plan) allocated() int64 { return total(p.extents) }

// presentBlocks lists the payload blocks holding any data, ascending.
func (p *plan) presentBlocks() []int64 {
	var bs []int64
	for _, e := range p.extents {
		for b := e.off / BlockSize; b <= (e.end()-1)/BlockSize; b++ {
			if n := len(bs); n == 0 || bs[n-1] < b {
				bs = append(bs, b)
			}
		}
	}
	return bs
}

// cluster fills b (clusterSize bytes) with allocated cluster c. The kind
// of content is chosen per 64 KiB so a volume mixes incompressible data
// (40%: compressed files, executables' code), text-like data (30%: 5
// bits of entropy a byte), structured records (20%: an MFT, a database:
// compress well) and zeroed clusters (10%: preallocated files).
func (p *plan) cluster(c int64, b []byte) {
	clear(b)
	if c == 0 || (p.fs == "NTFS" && c == p.size/clusterSize-1) {
		p.bootSector(b, c != 0)
		return
	}
	v := p.version(c * clusterSize)
	r := rng{mix(p.base, uint64(c), 0)}
	if v > 0 {
		r = rng{mix(p.key, uint64(c), v)}
	}
	kind := mix(p.base, uint64(c>>4), 0x6b) % 10
	if kind == 9 && v > 0 {
		kind = 4 // a preallocated cluster once written holds data
	}
	switch {
	case kind < 4:
		for i := 0; i < len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], r.next())
		}
	case kind < 7:
		const alphabet = "etaoinshrdlucmfwypvbgkqjxz ,.\n0E"
		for i := 0; i < len(b); i += 8 {
			v := r.next()
			for j := range 8 {
				b[i+j] = alphabet[v>>(5*j)&31]
			}
		}
	case kind < 9:
		tag := r.next()
		for i := 0; i < len(b); i += 64 {
			binary.LittleEndian.PutUint64(b[i:], uint64(c)<<6|uint64(i/64))
			binary.LittleEndian.PutUint64(b[i+8:], tag)
			binary.LittleEndian.PutUint32(b[i+16:], uint32(r.next()))
		}
	}
}

// bootSector writes the volume's boot sector: the fields of an NTFS or
// FAT32 boot sector that identify the file system and its geometry, and
// the 0x55AA signature. NTFS keeps its copy in the last sector.
func (p *plan) bootSector(b []byte, backup bool) {
	s := b[:512]
	if backup {
		s = b[clusterSize-512:]
	}
	le := binary.LittleEndian
	s[0], s[1], s[2] = 0xeb, 0x52, 0x90
	le.PutUint16(s[11:], 512) // bytes per sector
	s[13] = clusterSize / 512 // sectors per cluster
	s[21] = 0xf8              // fixed disk
	le.PutUint16(s[24:], 63)
	le.PutUint16(s[26:], 255)
	if p.fs == "NTFS" {
		copy(s[3:], "NTFS    ")
		le.PutUint64(s[40:], uint64(p.size/512-1))                      // total sectors
		le.PutUint64(s[48:], uint64(min(786432, p.size/clusterSize/4))) // $MFT cluster
		le.PutUint64(s[56:], 2)                                         // $MFTMirr cluster
		s[64] = 0xf6                                                    // 1 KiB file records
		s[68] = 1
		le.PutUint64(s[72:], mix(p.key, 0x5e)) // volume serial number
	} else {
		s[1] = 0x58
		copy(s[3:], "MSDOS5.0")
		le.PutUint16(s[14:], 32) // reserved sectors
		s[16] = 2                // FATs
		le.PutUint32(s[32:], uint32(p.size/512))
		le.PutUint32(s[44:], 2) // root directory cluster
		s[66] = 0x29
		le.PutUint32(s[67:], uint32(mix(p.key, 0x5e)))
		copy(s[71:], "NO NAME    FAT32   ")
	}
	s[510], s[511] = 0x55, 0xaa
}

// VolumeReader reads a generated volume as the VHDX holds it: its data
// where allocated, zeroes elsewhere. It is safe for concurrent ReadAt.
type VolumeReader struct {
	p   *plan
	pos int64
}

var (
	_ io.ReaderAt = (*VolumeReader)(nil)
	_ io.Reader   = (*VolumeReader)(nil)
)

// Size is the volume's virtual size.
func (r *VolumeReader) Size() int64 { return r.p.size }

// Read reads sequentially from the start of the volume.
func (r *VolumeReader) Read(b []byte) (int, error) {
	n, err := r.ReadAt(b, r.pos)
	r.pos += int64(n)
	return n, err
}

// ReadAt reads len(b) bytes of the volume at off.
func (r *VolumeReader) ReadAt(b []byte, off int64) (int, error) {
	if off >= r.p.size {
		return 0, io.EOF
	}
	var err error
	if off+int64(len(b)) > r.p.size {
		b = b[:r.p.size-off]
		err = io.EOF
	}
	clear(b)
	end := off + int64(len(b))
	es := r.p.extents
	i := sort.Search(len(es), func(i int) bool { return es[i].end() > off })
	cl := make([]byte, clusterSize)
	for ; i < len(es) && es[i].off < end; i++ {
		lo, hi := max(es[i].off, off), min(es[i].end(), end)
		for c := lo / clusterSize; c*clusterSize < hi; c++ {
			r.p.cluster(c, cl)
			cs := c * clusterSize
			from, to := max(cs, lo), min(cs+clusterSize, hi)
			copy(b[from-off:to-off], cl[from-cs:to-cs])
		}
	}
	return len(b), err
}
