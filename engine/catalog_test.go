package engine

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestCatalogMigration1(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	c, err := OpenCatalog(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	err = c.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketJobs) == nil {
			t.Error("no jobs bucket")
		}
		if v := tx.Bucket(bucketMeta).Get(keyVersion); binary.BigEndian.Uint64(v) != 1 {
			t.Errorf("version %v", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Reopening is a no-op migration.
	c, err = OpenCatalog(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestCatalogJobs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	c, err := OpenCatalog(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 3; i++ {
		j := &Job{Kind: "backup", Source: "s", Started: time.Unix(int64(i), 0)}
		if err := c.StartJob(j); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			j.Status = "ok"
			c.FinishJob(j)
		}
	}
	// A job left running by a process that no longer exists.
	c.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).Put(binary.BigEndian.AppendUint64(nil, 99), []byte(`{"number":99,"kind":"backup","status":"running","pid":999999999,"host":"`+hostname()+`"}`))
	})
	jobs, err := c.Jobs(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].Number != 3 || jobs[0].Status != "running" || jobs[1].Number != 99 || jobs[1].Status != "interrupted" {
		t.Errorf("jobs: %+v", jobs)
	}
}

func TestCatalogBusy(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	c, err := OpenCatalog(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := OpenCatalog(p, 100*time.Millisecond); !errors.Is(err, ErrCatalogBusy) {
		t.Errorf("second open: %v", err)
	}
}

func hostname() string { h, _ := os.Hostname(); return h }
