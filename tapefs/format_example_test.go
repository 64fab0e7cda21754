package tapefs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/recall-backup/recall/tapefs"
)

// A media set's first cartridge as a job writes it, then read back with
// no catalog but the tape's own.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "tape")
	defer os.RemoveAll(dir)
	lib, err := tapefs.CreateEmulatedLibrary(dir, tapefs.EmulatorOptions{Slots: 1, Drives: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer lib.Close()
	lib.Load(ctx, 1, 0)
	d, _ := lib.Drive(0)
	d.Load(ctx)

	poolKey, _ := tapefs.NewPoolKey()
	now := time.Now()
	set := tapefs.SetLabel{Pool: "yearly", SetID: tapefs.NewUUID(), Sequence: 1, Created: now, Expiry: now.AddDate(7, 0, 0),
		KeyFingerprint: tapefs.KeyFingerprint(poolKey), Compressed: true}
	vol := tapefs.VolumeLabel{VolumeID: tapefs.NewUUID(), Barcode: "RC0001L9", Created: now}
	if err := tapefs.WriteLabels(ctx, d, vol, set); err != nil {
		log.Fatal(err)
	}
	o := tapefs.FileOptions{Key: tapefs.SetKey(poolKey, set.SetID), Compress: true}
	cat := &tapefs.MediaCatalog{Pool: set.Pool, SetID: set.SetID, Written: now,
		Tapes: []tapefs.CatalogTape{{Sequence: 1, Barcode: vol.Barcode, VolumeID: vol.VolumeID}}}

	// The packs a point needs, then the point. An early warning would
	// end the file here and continue on the set's next cartridge.
	packs, _ := tapefs.NewFileWriter(ctx, d, tapefs.KindPacks, 2, o)
	packs.Add(ctx, "9f86d081884c7d65", make([]byte, 3<<20))
	packs.Add(ctx, "60303ae22b998861", []byte("a small pack"))
	if err := packs.Close(ctx); err != nil {
		log.Fatal(err)
	}
	point, _ := tapefs.NewFileWriter(ctx, d, tapefs.KindPoint, 3, o)
	rec, _ := json.Marshal(map[string]any{"id": "p1", "source": "web", "time": now, "packs": []string{"9f86d081884c7d65", "60303ae22b998861"}})
	point.Add(ctx, "manifest", []byte("the manifest as the store holds it"))
	point.Add(ctx, "point.json", rec)
	if err := point.Close(ctx); err != nil {
		log.Fatal(err)
	}
	cat.Files = []tapefs.CatalogFile{
		{Sequence: 1, FileNo: 2, StartPos: packs.StartPos(), Kind: tapefs.KindPacks, Entries: packs.Entries()},
		{Sequence: 1, FileNo: 3, StartPos: point.StartPos(), Kind: tapefs.KindPoint, Entries: point.Entries()},
	}
	cat.Points = []tapefs.CatalogPoint{{ID: "p1", Source: "web", Time: now, Packs: []string{"9f86d081884c7d65", "60303ae22b998861"}, Files: []int{0, 1}}}
	if _, err := tapefs.WriteCatalogFile(ctx, d, 4, o, cat); err != nil {
		log.Fatal(err)
	}

	// A fresh server with the cartridge and the key.
	res, err := tapefs.ScanTape(ctx, d, poolKey)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Set.Pool, res.FromCatalogFile, len(res.Catalog.Points), res.Catalog.Points[0].ID)

	// One pack, straight from where the catalog says it is.
	f := res.Catalog.Files[0]
	r, err := tapefs.OpenEntry(ctx, d, o, f.StartPos, f.Entries[1])
	if err != nil {
		log.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	fmt.Printf("%s\n", b)

	// Without the key, nothing is read.
	_, err = tapefs.ScanTape(ctx, d, nil)
	fmt.Println(errors.Is(err, tapefs.ErrWrongKey))
	// Output:
	// yearly true 1 p1
	// a small pack
	// true
}
