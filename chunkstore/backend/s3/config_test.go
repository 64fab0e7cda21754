package s3

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/recall-backup/recall/chunkstore/backend"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in                       string
		endpoint, bucket, prefix string
		err                      string
	}{
		{in: "s3:http://127.0.0.1:7480/backups/site-a/store", endpoint: "http://127.0.0.1:7480", bucket: "backups", prefix: "site-a/store"},
		{in: "s3:https://s3.example.com/b", endpoint: "https://s3.example.com", bucket: "b"},
		{in: "s3:https://s3.example.com/b/", endpoint: "https://s3.example.com", bucket: "b"},
		{in: "s3:s3.example.com/b/p", endpoint: "https://s3.example.com", bucket: "b", prefix: "p"},
		{in: "http://127.0.0.1/b", err: "not an s3: location"},
		{in: "s3:http://127.0.0.1:7480", err: "no bucket"},
		{in: "s3:http://127.0.0.1:7480/", err: "no bucket"},
		{in: "s3:ftp://host/b", err: "scheme"},
		{in: "s3:http://user:pw@host/b", err: "credentials in a location are refused"},
		{in: "s3:http://host/b?x=1", err: "nothing else"},
		{in: "s3:http://host/b/p//q", err: "empty element"},
	} {
		c, err := ParseURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseURL(%q): %+v, %v; want an error with %q", tc.in, c, err, tc.err)
			}
			continue
		}
		if err != nil || c.Endpoint != tc.endpoint || c.Bucket != tc.bucket || c.Prefix != tc.prefix {
			t.Errorf("ParseURL(%q) = %q %q %q, %v", tc.in, c.Endpoint, c.Bucket, c.Prefix, err)
			continue
		}
		if back, err := ParseURL(c.URL()); err != nil || back != c {
			t.Errorf("ParseURL(%q).URL() = %q does not read back", tc.in, c.URL())
		}
	}
}

func TestBucketLookup(t *testing.T) {
	for _, tc := range []struct {
		a    Addressing
		host string
		want minio.BucketLookupType
	}{
		{AddressAuto, "127.0.0.1", minio.BucketLookupPath},
		{AddressAuto, "::1", minio.BucketLookupPath},
		{AddressAuto, "localhost", minio.BucketLookupPath},
		{AddressAuto, "s3.eu-west-1.amazonaws.com", minio.BucketLookupAuto},
		{AddressAuto, "ceph.example.org", minio.BucketLookupAuto},
		{AddressPath, "s3.amazonaws.com", minio.BucketLookupPath},
		{AddressVirtualHost, "ceph.example.org", minio.BucketLookupDNS},
		{AddressVirtualHost, "127.0.0.1", minio.BucketLookupDNS},
	} {
		if got := bucketLookup(tc.a, tc.host); got != tc.want {
			t.Errorf("bucketLookup(%d, %q) = %v, want %v", tc.a, tc.host, got, tc.want)
		}
	}
}

// Credentials come from the configuration, the environment, or a profile
// of the shared credentials file; a refusal names the endpoint and where
// the credentials came from, before anything is written.
func TestCredentials(t *testing.T) {
	c := gateway(t)
	base := config(t, c.Endpoint)
	open(t, base) // the bucket exists
	file := filepath.Join(t.TempDir(), "credentials")
	os.WriteFile(file, []byte("[default]\naws_access_key_id = nobody\naws_secret_access_key = x\n\n[recall]\naws_access_key_id = "+
		c.AccessKey+"\naws_secret_access_key = "+c.SecretKey+"\n"), 0o600)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", file)
	t.Setenv("AWS_PROFILE", "")
	for _, tc := range []struct {
		name    string
		env     map[string]string
		mod     func(*Config)
		refused string // "": accepted; else in the error
	}{
		{name: "configuration", mod: func(*Config) {}},
		{name: "wrong secret", mod: func(c *Config) { c.SecretKey = "wrong" }, refused: "the configuration (SignatureDoesNotMatch)"},
		{name: "unknown key", mod: func(c *Config) { c.AccessKey = "NOSUCHKEY" }, refused: "the configuration (InvalidAccessKeyId)"},
		{name: "environment", env: map[string]string{"AWS_ACCESS_KEY_ID": c.AccessKey, "AWS_SECRET_ACCESS_KEY": c.SecretKey}},
		{name: "environment wrong", env: map[string]string{"AWS_ACCESS_KEY_ID": c.AccessKey, "AWS_SECRET_ACCESS_KEY": "x"}, refused: "AWS_ACCESS_KEY_ID"},
		{name: "profile", mod: func(c *Config) { c.Profile = "recall" }},
		{name: "AWS_PROFILE", env: map[string]string{"AWS_PROFILE": "recall"}},
		{name: "default profile", refused: `profile "default" of ` + file + " (InvalidAccessKeyId)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.AccessKey, cfg.SecretKey = "", ""
			t.Setenv("AWS_ACCESS_KEY_ID", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if tc.mod != nil {
				cfg.AccessKey, cfg.SecretKey = base.AccessKey, base.SecretKey
				tc.mod(&cfg)
			}
			b, err := Open(context.Background(), cfg)
			if tc.refused == "" {
				if err != nil {
					t.Fatal(err)
				}
				b.Close()
				return
			}
			if !errors.Is(err, ErrCredentials) || !strings.Contains(err.Error(), c.Endpoint) || !strings.Contains(err.Error(), tc.refused) {
				t.Fatalf("open: %v; want ErrCredentials naming %s and %q", err, c.Endpoint, tc.refused)
			}
			t.Log(err)
		})
	}
}

// A missing bucket: Open refuses it by name, Create makes it.
func TestMissingBucket(t *testing.T) {
	cfg := config(t, gateway(t).Endpoint)
	cfg.Bucket = "recall-missing-" + strings.ReplaceAll(cfg.Prefix, "/", "-")
	_, err := Open(context.Background(), cfg)
	if !errors.Is(err, ErrNoBucket) || !strings.Contains(err.Error(), `"`+cfg.Bucket+`"`) {
		t.Fatalf("open of a missing bucket: %v", err)
	}
	t.Log(err)
	b, err := Create(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	h := backend.Handle{Type: backend.Config, Name: "config"}
	if err := b.Save(context.Background(), h, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(context.Background(), cfg); err != nil {
		t.Fatalf("create of an existing bucket: %v", err)
	}
	if _, err := Open(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
}

// A location with credentials in it never shows them: not in ParseURL's
// errors (url.Parse's own repeat the URL), nor through Redact.
func TestRedact(t *testing.T) {
	const secret = "wJalr/XUtnFEMI"
	for _, tc := range []struct{ in, want string }{
		{"s3:http://AKIAKEY:" + secret + "@host:7480/bucket/p", "s3:http://REDACTED@host:7480/bucket/p"},
		{"s3:AKIAKEY:" + secret + "@host/bucket", "s3:REDACTED@host/bucket"},
		{"s3:http://host:7480/bucket/p", "s3:http://host:7480/bucket/p"},
		{"/srv/recall", "/srv/recall"},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, loc := range []string{
		"s3:http://AKIAKEY:" + secret + "@host:7480/bucket",
		"s3:http://AKIAKEY:" + secret + "@host:port%zz/bucket", // url.Parse fails
		"s3:ftp://AKIAKEY:" + secret + "@host/bucket",
	} {
		_, err := ParseURL(loc)
		if err == nil {
			t.Errorf("ParseURL(%q) accepted credentials in the location", loc)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "AKIAKEY") {
			t.Errorf("ParseURL's error shows the credentials: %v", err)
		}
	}
	if _, err := newBackend(Config{Endpoint: "http://AKIAKEY:" + secret + "@host:7480", Bucket: "b"}); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("an endpoint with credentials: %v", err)
	}
}
