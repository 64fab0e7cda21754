package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/local"
)

// packBlobsResult is what LoadPackBlobs handed to fn, in order.
type packBlobsResult struct {
	ids  []ID
	data map[ID][]byte
	errs map[ID]error
}

func loadPackBlobs(t *testing.T, s *Store, pack ID, ids []ID) packBlobsResult {
	t.Helper()
	r := packBlobsResult{data: map[ID][]byte{}, errs: map[ID]error{}}
	err := s.LoadPackBlobs(context.Background(), pack, ids, func(id ID, data []byte, err error) {
		r.ids = append(r.ids, id)
		if err != nil {
			r.errs[id] = err
		} else {
			r.data[id] = bytes.Clone(data)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Every blob asked for comes back once, in the order of the pack, as
// LoadBlob gives it; blobs of other packs and unknown ones get LoadBlob's
// answer after the pass.
func TestLoadPackBlobs(t *testing.T) {
	for _, enc := range []bool{false, true} {
		_, s := newStore(t, enc)
		blobs := [][]byte{
			randBytes(1, 300_000), // read with O_DIRECT when plain
			bytes.Repeat([]byte("compressible "), 20_000),
			randBytes(2, 5_000),
			randBytes(3, 1),
			randBytes(4, 700_000),
		}
		ids := saveBlobs(t, s, blobs...)
		other := saveBlobs(t, s, randBytes(5, 9_000))[0]
		pack, _ := s.PackOf(ids[0])
		unknown := testID(9)
		ask := []ID{ids[4], unknown, ids[2], other, ids[0], ids[3], ids[1], ids[2]}
		alone := readAlone.Load()
		r := loadPackBlobs(t, s, pack, ask)
		if n := readAlone.Load() - alone; n != 0 {
			t.Errorf("encrypted=%v: %d healthy blobs of the pack read again alone", enc, n)
		}

		var offs []uint32
		for _, id := range r.ids[:len(ids)] {
			_, e := blobPlace(t, s, id)
			offs = append(offs, e.Offset)
		}
		for i := 1; i < len(offs); i++ {
			if offs[i] <= offs[i-1] {
				t.Errorf("encrypted=%v: blobs of the pack not handed over in pack order: offsets %v", enc, offs)
			}
		}
		if len(r.ids) != len(ids)+2 {
			t.Errorf("encrypted=%v: fn called %d times for %d distinct ids", enc, len(r.ids), len(ids)+2)
		}
		for i, id := range ids {
			if !bytes.Equal(r.data[id], blobs[i]) {
				t.Errorf("encrypted=%v: blob %d: %d bytes, err %v", enc, i, len(r.data[id]), r.errs[id])
			}
		}
		if _, err := s.LoadBlob(other, nil); err != nil || r.errs[other] != nil || r.data[other] == nil {
			t.Errorf("encrypted=%v: blob of another pack: %v", enc, r.errs[other])
		}
		if !errors.Is(r.errs[unknown], ErrNotFound) {
			t.Errorf("encrypted=%v: unknown blob: %v, want ErrNotFound", enc, r.errs[unknown])
		}
	}
}

// Damage found in a pass is what LoadBlob finds and records: the same
// error, the same record; the blobs around it are not affected.
func TestLoadPackBlobsDamage(t *testing.T) {
	for _, enc := range []bool{false, true} {
		_, s := newStore(t, enc)
		blobs := [][]byte{randBytes(1, 400_000), randBytes(2, 6_000), randBytes(3, 400_000), randBytes(4, 70_000)}
		ids := saveBlobs(t, s, blobs...)
		pack, _ := s.PackOf(ids[0])
		p, e := blobPlace(t, s, ids[1])
		flipAt(t, p, int64(e.Offset)+3)
		_, e3 := blobPlace(t, s, ids[3])
		for _, id := range ids[:3] {
			if _, e := blobPlace(t, s, id); e.Offset > e3.Offset {
				t.Fatal("blob 3 is not the last of its pack: the test truncates the pack in it")
			}
		}
		if err := os.Truncate(p, int64(e3.Offset)+10); err != nil {
			t.Fatal(err)
		}
		alone := readAlone.Load()
		r := loadPackBlobs(t, s, pack, ids)
		if n := readAlone.Load() - alone; n != 2 {
			t.Errorf("encrypted=%v: %d blobs read again alone, want the 2 damaged ones", enc, n)
		}
		for _, i := range []int{0, 2} {
			if !bytes.Equal(r.data[ids[i]], blobs[i]) {
				t.Errorf("encrypted=%v: healthy blob %d: %v", enc, i, r.errs[ids[i]])
			}
		}
		for _, i := range []int{1, 3} {
			_, want := s.LoadBlob(ids[i], nil)
			got := r.errs[ids[i]]
			if !errors.Is(got, ErrCorrupt) || want == nil || got.Error() != want.Error() {
				t.Errorf("encrypted=%v: damaged blob %d: %v, LoadBlob says %v", enc, i, got, want)
			}
		}
		d := s.DamagedBlobs()
		if len(d) != 2 || !(d[0].Blob == ids[1] || d[1].Blob == ids[1]) || !(d[0].Blob == ids[3] || d[1].Blob == ids[3]) {
			t.Errorf("encrypted=%v: damage record %+v, want blobs 1 and 3", enc, d)
		}
	}
}

func TestLoadPackBlobsCanceled(t *testing.T) {
	_, s := newStore(t, false)
	ids := saveBlobs(t, s, randBytes(1, 1000), randBytes(2, 1000))
	pack, _ := s.PackOf(ids[0])
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := 0
	err := s.LoadPackBlobs(ctx, pack, ids, func(ID, []byte, error) { called++ })
	if !errors.Is(err, context.Canceled) || called != 0 {
		t.Errorf("canceled pass: %v, fn called %d times", err, called)
	}
}

// Blobs share a read while the gap between them is small and the read
// stays within its bound; a blob larger than the bound is read alone.
func TestNextSpan(t *testing.T) {
	at := func(off, n uint32) placed { return placed{l: loc{off: off, lenFlg: n}} }
	const mib = 1 << 20
	tests := []struct {
		name  string
		blobs []placed
		want  [][2]int64 // spans as [start, end)
	}{
		{"adjacent", []placed{at(0, 100), at(100, 50), at(150, 10)}, [][2]int64{{0, 160}}},
		{"small gap read through", []placed{at(0, 100), at(100+packReadGap, 10)}, [][2]int64{{0, 110 + packReadGap}}},
		{"large gap splits", []placed{at(0, 100), at(101+packReadGap, 10)}, [][2]int64{{0, 100}, {101 + packReadGap, 111 + packReadGap}}},
		{"span bound", []placed{at(0, 5*mib), at(5*mib, 3*mib), at(8*mib, 1)}, [][2]int64{{0, 8 * mib}, {8 * mib, 8*mib + 1}}},
		{"large blob alone", []placed{at(0, 10), at(20, 9*mib), at(20+9*mib, 10)}, [][2]int64{{0, 10}, {20, 20 + 9*mib}, {20 + 9*mib, 30 + 9*mib}}},
	}
	for _, tc := range tests {
		var got [][2]int64
		for i := 0; i < len(tc.blobs); {
			j, start, end := nextSpan(tc.blobs, i)
			got = append(got, [2]int64{start, end})
			i = j
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: spans %v, want %v", tc.name, got, tc.want)
			continue
		}
		for k := range got {
			if got[k] != tc.want[k] {
				t.Errorf("%s: spans %v, want %v", tc.name, got, tc.want)
				break
			}
		}
	}
}

// The one-pass path itself (LoadPackBlobs falls back to LoadBlob on any
// failure, which would hide a broken one): a span read over the whole pack
// gives every blob, and a flipped byte fails the check.
func TestSpanBlobs(t *testing.T) {
	for _, enc := range []bool{false, true} {
		_, s := newStore(t, enc)
		blobs := [][]byte{randBytes(1, 300_000), bytes.Repeat([]byte("abc"), 100_000), randBytes(2, 10), randBytes(3, 900_000), randBytes(4, packReadPiece+1000)}
		ids := saveBlobs(t, s, blobs...)
		var here []placed
		var end int64
		for _, id := range ids {
			l, _, ok := s.idx.lookup(id)
			if !ok {
				t.Fatalf("blob %s not usable", id.Short())
			}
			here = append(here, placed{id, l})
			end = max(end, int64(l.off)+int64(l.length()))
		}
		var span []byte
		var pieces int
		if err := s.readSpan(here[0].l.pack, 0, end, nil, func(b []byte) {
			if len(b) <= len(span) {
				t.Errorf("a piece arrived with %d bytes after %d", len(b), len(span))
			}
			span = b
			pieces++
		}); err != nil {
			t.Fatal(err)
		}
		if int64(len(span)) != end || pieces < 2 || pieces != int((end+packReadPiece-1)/packReadPiece) {
			t.Fatalf("span of %d bytes came as %d bytes in %d pieces", end, len(span), pieces)
		}
		buffer := func() []byte { return nil }
		for i, b := range here {
			stored := span[b.l.off : b.l.off+b.l.length()]
			got, err := s.checkSpanBlob(b, bytes.Clone(stored), buffer)
			if err != nil || !bytes.Equal(got, blobs[i]) {
				t.Errorf("encrypted=%v: blob %d from the span: %v", enc, i, err)
			}
			bad := bytes.Clone(stored)
			bad[len(bad)/2] ^= 1
			if _, err := s.checkSpanBlob(b, bad, buffer); !errors.Is(err, ErrCorrupt) {
				t.Errorf("encrypted=%v: flipped blob %d from the span: %v, want ErrCorrupt", enc, i, err)
			}
		}
	}
}

// remoteCounter is a backend that says it is an object store (Connections)
// and counts its reads, stats and opens (the cache's OpenFile of a pack it
// does not keep is a HEAD request).
type remoteCounter struct {
	backend.Backend
	loads, stats, opens atomic.Int64
}

func (r *remoteCounter) OpenFile(ctx context.Context, h backend.Handle) (backend.ReadAtCloser, int64, error) {
	r.opens.Add(1)
	return nil, 0, errors.New("not opened in this test")
}

func (r *remoteCounter) Connections() int { return 8 }

func (r *remoteCounter) Load(ctx context.Context, h backend.Handle, off int64, length int, buf []byte) ([]byte, error) {
	if h.Type == backend.Packs {
		r.loads.Add(1)
	}
	return r.Backend.Load(ctx, h, off, length, buf)
}

func (r *remoteCounter) Stat(ctx context.Context, h backend.Handle) (int64, error) {
	if h.Type == backend.Packs {
		r.stats.Add(1)
	}
	return r.Backend.Stat(ctx, h)
}

// On an object store a span is one ranged read and nothing else: a
// request costs far more than its bytes.
func TestLoadPackBlobsRemoteOneRequestPerSpan(t *testing.T) {
	for _, enc := range []bool{false, true} {
		dir, s := newStore(t, enc)
		blobs := [][]byte{randBytes(1, 900_000), randBytes(2, 700_000), randBytes(3, 5_000), randBytes(4, 800_000)}
		ids := saveBlobs(t, s, blobs...)
		pack, _ := s.PackOf(ids[0])
		rc := &remoteCounter{Backend: local.Open(dir)}
		r, err := OpenBackend(rc, OpenOptions{Password: "pw"})
		if err != nil {
			t.Fatal(err)
		}
		rc.loads.Store(0)
		rc.stats.Store(0)
		rc.opens.Store(0)
		got := loadPackBlobs(t, r, pack, ids)
		for i, id := range ids {
			if !bytes.Equal(got.data[id], blobs[i]) {
				t.Errorf("encrypted=%v: blob %d: %d bytes, err %v", enc, i, len(got.data[id]), got.errs[id])
			}
		}
		if n, m := rc.loads.Load(), rc.stats.Load()+rc.opens.Load(); n != 1 || m != 0 {
			t.Errorf("encrypted=%v: a span of %d blobs (2.4 MB) took %d reads and %d stats or opens of the pack, want 1 and 0", enc, len(ids), n, m)
		}
		r.Close()
	}
}
