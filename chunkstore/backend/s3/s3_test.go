package s3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/backendtest"
	"github.com/recall-backup/recall/internal/cephtest"
	holderfile "github.com/recall-backup/recall/internal/holder"
	"github.com/recall-backup/recall/internal/testskip"
)

// One cluster serves the package's tests, started by the first that
// needs it: its start is most of their time.
var (
	clusterOnce sync.Once
	clusterDir  string
	cluster     *cephtest.Cluster
	clusterErr  error
)

const testBucket = "recall-test"

func TestMain(m *testing.M) {
	// The tests' holder processes (lock_test.go) and their judge share a
	// holder directory of their own, never the machine's; a holder
	// process inherits its parent's.
	holders := ""
	if os.Getenv(holderfile.DirEnv) == "" {
		var err error
		if holders, err = os.MkdirTemp("", "recall-s3-test-"); err != nil {
			panic(err)
		}
		os.Setenv(holderfile.DirEnv, filepath.Join(holders, "holders"))
	}
	code := m.Run()
	if cluster != nil {
		cluster.Stop()
	}
	if clusterDir != "" {
		os.RemoveAll(clusterDir)
	}
	if holders != "" {
		os.RemoveAll(holders)
	}
	os.Exit(code)
}

// gateway returns the cluster, or skips t when its programs are missing.
func gateway(t testing.TB) *cephtest.Cluster {
	t.Helper()
	clusterOnce.Do(func() {
		if clusterDir, clusterErr = os.MkdirTemp("", "recall-ceph-"); clusterErr == nil {
			cluster, clusterErr = cephtest.New(clusterDir, cephtest.Options{})
		}
	})
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

// A listing's callback may make requests of its own, with every
// connection slot taken by listings.
func TestListCallbackRequests(t *testing.T) {
	cfg := config(t, gateway(t).Endpoint)
	cfg.Connections = 1
	be := open(t, cfg)
	for i := range 3 {
		if err := be.Save(bg, backend.Handle{Type: backend.Index, Name: fmt.Sprint("i", i)}, []byte("index")); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	n := 0
	err := be.List(ctx, backend.Index, func(name string, _ int64) error {
		return be.List(ctx, backend.Index, func(inner string, _ int64) error {
			n++
			_, err := be.Load(ctx, backend.Handle{Type: backend.Index, Name: inner}, 0, -1, nil)
			return err
		})
	})
	if err != nil || n != 9 {
		t.Fatalf("nested listings with loads: %d loads, %v; want 9", n, err)
	}
}

// The names of holder objects are a format: a newer one's holders are
// never ignored, and a holder's own stale time is read back.
func TestHolderNames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mode  backend.LockMode
		stale time.Duration
		ok    bool
	}{
		{holderName(backend.Shared, "0123456789abcdef", 90*time.Second), backend.Shared, 90 * time.Second, true},
		{holderName(backend.Exclusive, "0123456789abcdef", 1500*time.Millisecond), backend.Exclusive, 1500 * time.Millisecond, true},
		{"s1-0123456789abcdef", backend.Shared, 0, true}, // an older version's
		{"x1-0123456789abcdef-junk", backend.Exclusive, 0, true},
		{"s2-0123456789abcdef", backend.Exclusive, 0, false},
		{"lock", backend.Exclusive, 0, false},
	} {
		if mode, stale, ok := parseHolder(tc.name); mode != tc.mode || stale != tc.stale || ok != tc.ok {
			t.Errorf("parseHolder(%q) = %v, %v, %v; want %v, %v, %v", tc.name, mode, stale, ok, tc.mode, tc.stale, tc.ok)
		}
	}
	if got := holderName(backend.Shared, "0123456789abcdef", 30*time.Minute); got != "s1-0123456789abcdef-1800000" {
		t.Errorf("shared holder named %q", got)
	}
	if got := holderName(backend.Exclusive, "0123456789abcdef", 2*time.Minute); got != "x1-0123456789abcdef-120000" {
		t.Errorf("exclusive holder named %q", got)
	}
}
