package engine

// Fuzz targets for the engine's decoders of stored bytes: tree blobs,
// point manifests and catalog job records. As in chunkstore, each asserts
// that no input panics, that a decode allocates no more than its input
// justifies, and that what decodes encodes back to itself.

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/recall-backup/recall/internal/fuzzcheck"
	"github.com/recall-backup/recall/internal/golden"
)

// addGolden seeds f with every version of a pinned format
// (testdata/<prefix>-v*.golden), so a new version is fuzzed from its
// golden file on.
func addGolden(f *testing.F, prefix string) {
	names, _ := filepath.Glob(filepath.Join("testdata", prefix+"-v*.golden"))
	if len(names) == 0 {
		f.Fatalf("no golden files testdata/%s-v*.golden", prefix)
	}
	for _, n := range names {
		f.Add(golden.Load(f, filepath.Base(n)))
	}
}

func FuzzDecodeTree(f *testing.F) {
	addGolden(f, "tree")
	f.Add(EncodeTree(&Tree{}))
	f.Add(EncodeTree(&Tree{Nodes: []*Node{{Name: "big", Type: TypeFile, Size: 1 << 40,
		Extents: []Extent{{Hole: true, End: 1 << 39}, {End: 1 << 40, ID: id(4)}}}}}))
	// Counts far past the input: 2^40 nodes; one node with 2^40 xattrs;
	// one file with 2^40 extents.
	f.Add([]byte("RTRE\x01\x80\x80\x80\x80\x80\x80\x20"))
	f.Add([]byte("RTRE\x01\x01\x01a\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x80\x80\x80\x80\x80\x20"))
	f.Add([]byte("RTRE\x01\x01\x01a\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x80\x80\x80\x80\x80\x20"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var tr *Tree
		var err error
		fuzzcheck.Bounded(t, "DecodeTree", fuzzcheck.Linear(len(b), 64), func() { tr, err = DecodeTree(b) })
		if err != nil {
			return
		}
		enc := EncodeTree(tr) // sorts tr's nodes, as every encoded tree is
		again, err := DecodeTree(enc)
		if err != nil {
			t.Fatalf("re-encoded tree does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, tr) {
			t.Fatalf("tree round trip differs:\n got %+v\nwant %+v", again, tr)
		}
	})
}

func FuzzDecodePoint(f *testing.F) {
	addGolden(f, "point")
	f.Add(encodePoint(&Point{Source: "s", Kind: KindFile, Path: "/x", Time: time.Unix(0, 1).UTC()}))
	f.Add([]byte(`{"version":1,"tree":"` + id(1).String() + `","errors":[{},{},{}],"time":"2026-01-01T00:00:00+23:59"}`))
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p *Point
		var err error
		fuzzcheck.Bounded(t, "decodePoint", fuzzcheck.Linear(len(b), 64), func() { p, err = decodePoint(id(5), b) })
		if err != nil {
			return
		}
		// Round trip: the encoding of what decodes is stable (compared as
		// bytes: a time's zone may be a new *Location each time).
		enc := encodePoint(p)
		again, err := decodePoint(id(5), enc)
		if err != nil {
			t.Fatalf("re-encoded manifest does not decode: %v\n%s", err, enc)
		}
		if re := encodePoint(again); !bytes.Equal(re, enc) {
			t.Fatalf("manifest round trip differs:\n got %s\nwant %s", re, enc)
		}
	})
}

func FuzzDecodeJob(f *testing.F) {
	for _, j := range []Job{
		{Number: 1, Kind: "backup", Source: "srv-www", Path: "/srv/www", Host: "backup1", PID: 4242,
			Started: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Finished: time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC),
			Status: "warnings", Point: id(3).String(), Stats: &Stats{Files: 10, Bytes: 1 << 30}, Warnings: 2},
		{Number: 2, Kind: "verify", Status: "failed", Error: "pack 0a0b: corrupt data"},
		{Number: 3, Kind: "backup", Status: "running"},
	} {
		b, err := json.Marshal(j)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"number":18446744073709551615,"pid":-1,"stats":null,"started":"0001-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var j Job
		var err error
		fuzzcheck.Bounded(t, "decodeJob", fuzzcheck.Linear(len(b), 64), func() { j, err = decodeJob(b) })
		if err != nil {
			return
		}
		enc, err := json.Marshal(j)
		if err != nil {
			return // a time encoding/json reads but does not write
		}
		again, err := decodeJob(enc)
		if err != nil {
			t.Fatalf("re-encoded job does not decode: %v\n%s", err, enc)
		}
		if re, _ := json.Marshal(again); !bytes.Equal(re, enc) {
			t.Fatalf("job round trip differs:\n got %s\nwant %s", re, enc)
		}
	})
}
