package engine

import (
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Migration 3 adds the tape buckets to a version 2 catalog and keeps its
// jobs and groups.
func TestCatalogMigration3(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	db, err := bolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, m := range migrations[:2] {
			if err := m.apply(tx); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keyVersion, binary.BigEndian.AppendUint64(nil, 2)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketGroups).Put([]byte("g"), []byte(`{"name":"g"}`)); err != nil {
			return err
		}
		return tx.Bucket(bucketJobs).Put(binary.BigEndian.AppendUint64(nil, 1), []byte(`{"number":1,"kind":"backup","status":"ok"}`))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenCatalog(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTapeLibraries, bucketTapePools, bucketTapeMedia, bucketTapeSets} {
			if tx.Bucket(b) == nil {
				t.Errorf("no %s bucket", b)
			}
		}
		if v := tx.Bucket(bucketMeta).Get(keyVersion); binary.BigEndian.Uint64(v) != catalogVersion {
			t.Errorf("version %x", v)
		}
		return nil
	})
	jobs, err := c.Jobs(0)
	if err != nil || len(jobs) != 1 || jobs[0].Kind != "backup" {
		t.Errorf("jobs after migration: %+v %v", jobs, err)
	}
	if gs, err := c.Groups(); err != nil || len(gs) != 1 || gs[0].Name != "g" {
		t.Errorf("groups after migration: %+v %v", gs, err)
	}
}
