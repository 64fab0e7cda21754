package tapefs

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var (
	testTime   = time.Date(2026, 11, 29, 18, 0, 0, 123456789, time.UTC)
	testVolume = VolumeLabel{FormatVersion: FormatVersion, VolumeID: "2f1c6a0e-8d4b-4c1a-9e7f-3b5d2a6c8e01", Barcode: "RC0001L9", BlockSize: BlockSize, Created: testTime}
	testSet    = SetLabel{Pool: "yearly", SetID: "7d3e9b2a-1c4f-4e8a-b6d0-5a2f8c1e9b37", Sequence: 2, Created: testTime,
		Expiry: testTime.AddDate(7, 0, 0), KeyFingerprint: KeyFingerprint(testKey), Compressed: true, StoreID: "store-1",
		StoreConfig: map[string][]byte{"config": []byte("version = 3\n")}}
)

func TestLabelsRoundTrip(t *testing.T) {
	ctx := context.Background()
	d := newMemDrive()
	// Labelling discards what the cartridge held.
	writeFile(t, d, KindPacks, 2, FileOptions{}, makeEntries(5, 100))
	writeFile(t, d, KindPacks, 3, FileOptions{}, makeEntries(5, 100))
	writeFile(t, d, KindPacks, 4, FileOptions{}, makeEntries(5, 100))
	if err := WriteLabels(ctx, d, testVolume, testSet); err != nil {
		t.Fatal(err)
	}
	if p, _ := d.Position(ctx); p != 4 || len(d.objs) != 4 {
		t.Fatalf("after labelling at %d of %d objects, want 4 of 4", p, len(d.objs))
	}
	v, s, err := ReadLabels(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*v, testVolume) || !reflect.DeepEqual(*s, testSet) {
		t.Fatalf("read back\n%+v\n%+v\nwant\n%+v\n%+v", *v, *s, testVolume, testSet)
	}
	if p, _ := d.Position(ctx); p != 4 {
		t.Fatalf("after reading the labels at %d, want 4", p)
	}
}

func TestReadLabelsRefuses(t *testing.T) {
	ctx := context.Background()
	future := func(d *memDrive) {
		// A label of version 2, as a newer recall would write it.
		b, _ := encodeVolumeLabel(testVolume)
		b = []byte(strings.Replace(string(b), `"version": 1`, `"version": 2`, 1))
		w, _ := NewFileWriter(ctx, d, KindVolumeLabel, 0, FileOptions{})
		w.Add(ctx, volumeLabelName, b)
		w.Close(ctx)
	}
	for _, tc := range []struct {
		name string
		make func(d *memDrive)
		want error
		text string
	}{
		{"blank", func(d *memDrive) {}, ErrNotLabelled, ""},
		{"foreign", func(d *memDrive) { d.objs = [][]byte{[]byte("tar archive"), nil} }, ErrForeign, ""},
		{"foreign, one block", func(d *memDrive) { d.objs = [][]byte{[]byte("tar archive")} }, ErrForeign, ""},
		{"erased (a filemark)", func(d *memDrive) { d.objs = [][]byte{nil} }, ErrNotLabelled, "erased"},
		{"a filemark, then data", func(d *memDrive) {
			WriteLabels(ctx, d, testVolume, testSet)
			d.objs = append([][]byte{nil}, d.objs...)
		}, ErrForeign, ""},
		{"torn volume label", func(d *memDrive) {
			WriteLabels(ctx, d, testVolume, testSet)
			d.objs = [][]byte{d.objs[0][:40]}
		}, ErrForeign, "torn"},
		{"future label", future, ErrUnsupportedVersion, "version 2"},
		{"future blocks", func(d *memDrive) {
			WriteLabels(ctx, d, testVolume, testSet)
			d.objs[0][4] = 2
		}, ErrUnsupportedVersion, "version 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newMemDrive()
			tc.make(d)
			_, _, err := ReadLabels(ctx, d)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %v naming %q", err, tc.want, tc.text)
			}
		})
	}
}
