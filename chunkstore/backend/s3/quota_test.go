package s3

import (
	"context"
	"errors"
	"testing"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// A bucket over its quota: a save fails with backend.ErrNoSpace, and
// nothing is left of it.
func TestQuota(t *testing.T) {
	c := gateway(t)
	cfg := config(t, c.Endpoint)
	cfg.Bucket = "recall-quota"
	b, err := Create(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := c.Admin("quota", "set", "--quota-scope=bucket", "--bucket="+cfg.Bucket, "--max-size=1048576"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Admin("quota", "enable", "--quota-scope=bucket", "--bucket="+cfg.Bucket); err != nil {
		t.Fatal(err)
	}
	h := backend.Handle{Type: backend.Packs, Name: "big"}
	err = b.Save(context.Background(), h, make([]byte, 2<<20))
	if !errors.Is(err, backend.ErrNoSpace) {
		t.Fatalf("save over the quota: %v, want ErrNoSpace", err)
	}
	t.Log(err)
	if _, err := b.Stat(context.Background(), h); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("after a refused save: %v", err)
	}
}
