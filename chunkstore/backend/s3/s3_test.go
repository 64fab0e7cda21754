package s3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/backendtest"
	"github.com/recall-backup/recall/internal/cephtest"
	"github.com/recall-backup/recall/internal/testskip"
)

// One cluster serves the package's tests: its start is most of their time.
var (
	cluster    *cephtest.Cluster
	clusterErr error
)

const testBucket = "recall-test"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "recall-ceph-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cluster, clusterErr = cephtest.New(dir, cephtest.Options{})
	code := m.Run()
	if cluster != nil {
		cluster.Stop()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// gateway returns the cluster, or skips t when its programs are missing.
func gateway(t testing.TB) *cephtest.Cluster {
	t.Helper()
	if errors.Is(clusterErr, cephtest.ErrMissing) {
		testskip.Skip(t, "%v: run make deps", clusterErr)
	}
	if clusterErr != nil {
		t.Fatal(clusterErr)
	}
	return cluster
}

var bucketOnce sync.Once

// config returns a Config of a fresh prefix in the test bucket, with the
// cluster's credentials and times short enough for tests.
func config(t testing.TB, endpoint string) Config {
	c := gateway(t)
	tok := make([]byte, 6)
	rand.Read(tok)
	return Config{
		Endpoint: endpoint, Bucket: testBucket, Prefix: "t/" + hex.EncodeToString(tok),
		AccessKey: c.AccessKey, SecretKey: c.SecretKey,
		RetryBase: 20 * time.Millisecond, RetryMax: 500 * time.Millisecond, RequestTimeout: 30 * time.Second,
		LockRecheck: 20 * time.Millisecond,
	}
}

// open returns a backend of cfg in the test bucket, made on first use.
func open(t testing.TB, cfg Config) *Backend {
	t.Helper()
	var err error
	bucketOnce.Do(func() {
		var b *Backend
		if b, err = Create(context.Background(), cfg); err == nil {
			b.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend { return open(t, config(t, gateway(t).Endpoint)) })
}
