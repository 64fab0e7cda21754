package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/recall-backup/recall/chunkstore/backend"
)

// Addressing is how a bucket is named in a request.
type Addressing uint8

// The addressings.
const (
	// AddressAuto: path-style for an IP address or localhost, which
	// cannot carry a bucket in its name; otherwise what the client library
	// knows of the provider (virtual-host for AWS and the large clouds,
	// path-style for the rest, such as a Ceph gateway without wildcard
	// DNS).
	AddressAuto        Addressing = iota
	AddressPath                   // http://host/bucket/key
	AddressVirtualHost            // http://bucket.host/key
)

// Config says where a store lives and how to reach it. ParseURL fills in
// the location; the zero values of the rest are the defaults.
type Config struct {
	Endpoint   string // scheme://host[:port]
	Bucket     string
	Prefix     string // the store's objects are under Prefix/ (none: at the bucket's root)
	Region     string // "": asked of the server (us-east-1 for Ceph)
	Addressing Addressing
	// CAFile is a PEM file of certificates trusted beside the system's,
	// for a gateway with its own certificate authority.
	CAFile string

	// Credentials: AccessKey and SecretKey when set; otherwise
	// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)
	// unless a Profile is named; otherwise the shared credentials file
	// (CredentialsFile, AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials),
	// in Profile, AWS_PROFILE or "default".
	AccessKey, SecretKey, SessionToken string
	Profile                            string
	CredentialsFile                    string

	// Connections bounds the requests in flight (default 8).
	Connections int
	// RequestTimeout bounds one request (default 2 minutes: a 64 MiB
	// pack at 1 MiB/s).
	RequestTimeout time.Duration
	// Attempts is how many times a request is sent before its transient
	// error is returned (default 10); the waits between grow from
	// RetryBase (default 100 ms) to RetryMax (default 10 s), each drawn
	// at random below its bound ("full jitter").
	Attempts            int
	RetryBase, RetryMax time.Duration

	// The lock protocol's times (see the package comment): a holder
	// refreshes its lock object every LockRefresh (default 5 minutes); one
	// not refreshed for LockStale (default 30 minutes) is dead; a new
	// holder lists the others again LockRecheck (default 200 ms) after
	// writing its object.
	LockRefresh, LockStale, LockRecheck time.Duration
}

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Connections <= 0 {
		c.Connections = 8
	}
	if c.Attempts <= 0 {
		c.Attempts = 10
	}
	set(&c.RequestTimeout, 2*time.Minute)
	set(&c.RetryBase, 100*time.Millisecond)
	set(&c.RetryMax, 10*time.Second)
	set(&c.LockStale, 30*time.Minute)
	set(&c.LockRefresh, c.LockStale/6)
	set(&c.LockRecheck, 200*time.Millisecond)
}

// ParseURL reads a store location, s3:http://host:port/bucket/prefix (the
// scheme https when omitted: s3:host/bucket), into a Config's Endpoint,
// Bucket and Prefix.
func ParseURL(s string) (Config, error) {
	rest, ok := strings.CutPrefix(s, "s3:")
	if !ok {
		return Config{}, fmt.Errorf("store location %q: not an s3: location (s3:http://host:port/bucket/prefix)", Redact(s))
	}
	if !strings.Contains(rest, "://") {
		rest = "https://" + rest
	}
	u, err := url.Parse(rest)
	if err != nil {
		// url.Error repeats the URL, credentials and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Config{}, fmt.Errorf("store location %q: %w", Redact(s), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Config{}, fmt.Errorf("store location %q: scheme %q, want http or https", Redact(s), u.Scheme)
	}
	if u.User != nil {
		return Config{}, fmt.Errorf("store location %q: credentials in a location are refused (they would show in messages, logs and the home's record): give them in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a credentials file or --s3-profile", Redact(s))
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return Config{}, fmt.Errorf("store location %q: want s3:%s://host[:port]/bucket[/prefix], nothing else", Redact(s), u.Scheme)
	}
	bucket, prefix, _ := strings.Cut(strings.Trim(u.Path, "/"), "/")
	if bucket == "" {
		return Config{}, fmt.Errorf("store location %q: no bucket (s3:%s://%s/bucket/prefix)", Redact(s), u.Scheme, u.Host)
	}
	prefix = strings.Trim(prefix, "/")
	if strings.Contains(prefix, "//") {
		return Config{}, fmt.Errorf("store location %q: empty element in prefix %q", Redact(s), prefix)
	}
	return Config{Endpoint: u.Scheme + "://" + u.Host, Bucket: bucket, Prefix: prefix}, nil
}

// Redact returns location s with the userinfo of its URL (user:password@,
// where some tools put S3 credentials) replaced by "REDACTED@", for every
// message, log line or record that shows a location.
func Redact(s string) string {
	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + 3
	} else if rest, ok := strings.CutPrefix(s, "s3:"); ok {
		start = len(s) - len(rest)
	}
	// The last "@", not the first after the host: a secret key may hold
	// "/", which would end the host part for url.Parse. A prefix holding
	// "@" is redacted too, on the safe side.
	at := strings.LastIndex(s[start:], "@")
	if at < 0 {
		return s
	}
	return s[:start] + "REDACTED@" + s[start+at+1:]
}

// URL is the location ParseURL reads.
func (c Config) URL() string {
	u := "s3:" + c.Endpoint + "/" + c.Bucket
	if c.Prefix != "" {
		u += "/" + c.Prefix
	}
	return u
}

// Sentinel errors of Open and Create, checked with errors.Is.
var (
	// ErrNoBucket: the bucket does not exist (Create makes it).
	ErrNoBucket = errors.New("bucket does not exist")
	// ErrCredentials: the server refused the credentials, or none were found.
	ErrCredentials = errors.New("credentials refused")
)

// Backend is a store in a bucket of an S3-compatible object store.
type Backend struct {
	cfg      Config
	core     *minio.Core
	credFrom string        // where the credentials came from, for messages
	sem      chan struct{} // one token per request in flight
	tr       *http.Transport
	retries  atomic.Int64
	skew     atomic.Value // time.Duration: the server's clock minus ours (lock.go)
	// dead is SetHolderDead's judge of lock holders (lock.go).
	dead func(info []byte) bool
}

var _ backend.Backend = (*Backend)(nil)

// Open returns the backend of an existing bucket, after one listing that
// proves the endpoint answers, accepts the credentials and has the
// bucket. Nothing is written.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	b, err := newBackend(cfg)
	if err != nil {
		return nil, err
	}
	if err := b.probe(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// Create is Open that makes the bucket when it is missing (recall init).
func Create(ctx context.Context, cfg Config) (*Backend, error) {
	b, err := newBackend(cfg)
	if err != nil {
		return nil, err
	}
	err = b.probe(ctx)
	if !errors.Is(err, ErrNoBucket) {
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	err = b.do(ctx, func(ctx context.Context) error {
		err := b.core.MakeBucket(ctx, b.cfg.Bucket, minio.MakeBucketOptions{Region: b.cfg.Region})
		if code(err) == "BucketAlreadyOwnedByYou" {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, b.fail("create bucket "+b.cfg.Bucket, err)
	}
	if err := b.probe(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

func newBackend(cfg Config) (*Backend, error) {
	cfg.defaults()
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" || u.User != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("s3 endpoint %q: want http(s)://host[:port]", Redact(cfg.Endpoint))
	}
	secure := u.Scheme == "https"
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	tr.MaxIdleConnsPerHost = cfg.Connections
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("s3 CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s3 CA file %s: no PEM certificate in it", cfg.CAFile)
		}
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	ak, sk, tok, from, err := cfg.credentials()
	if err != nil {
		return nil, err
	}
	cl, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(ak, sk, tok),
		Secure:       secure,
		Transport:    tr,
		Region:       cfg.Region,
		BucketLookup: bucketLookup(cfg.Addressing, u.Hostname()),
		// One attempt: the retries are this package's (retry.go).
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %s: %w", cfg.Endpoint, err)
	}
	return &Backend{cfg: cfg, core: &minio.Core{Client: cl}, credFrom: from, sem: make(chan struct{}, cfg.Connections), tr: tr}, nil
}

// bucketLookup is the client library's addressing for a, on host.
func bucketLookup(a Addressing, host string) minio.BucketLookupType {
	switch a {
	case AddressPath:
		return minio.BucketLookupPath
	case AddressVirtualHost:
		return minio.BucketLookupDNS
	}
	if host == "localhost" || net.ParseIP(host) != nil {
		return minio.BucketLookupPath
	}
	return minio.BucketLookupAuto
}

// credentials finds the credentials and says where they came from.
func (c Config) credentials() (ak, sk, tok, from string, err error) {
	if c.AccessKey != "" || c.SecretKey != "" {
		return c.AccessKey, c.SecretKey, c.SessionToken, "the configuration", nil
	}
	if c.Profile == "" && os.Getenv("AWS_ACCESS_KEY_ID") != "" {
		return os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN"), "AWS_ACCESS_KEY_ID", nil
	}
	file := c.CredentialsFile
	if file == "" {
		file = os.Getenv("AWS_SHARED_CREDENTIALS_FILE")
	}
	if file == "" {
		home, herr := os.UserHomeDir()
		if herr != nil {
			return "", "", "", "", fmt.Errorf("%w: no AWS_ACCESS_KEY_ID and no home for ~/.aws/credentials", ErrCredentials)
		}
		file = filepath.Join(home, ".aws", "credentials")
	}
	profile := c.Profile
	if profile == "" {
		profile = os.Getenv("AWS_PROFILE")
	}
	if profile == "" {
		profile = "default"
	}
	from = fmt.Sprintf("profile %q of %s", profile, file)
	if _, serr := os.Stat(file); serr != nil {
		return "", "", "", "", fmt.Errorf("%w: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or write %s", ErrCredentials, from)
	}
	v, err := credentials.NewFileAWSCredentials(file, profile).GetWithContext(&credentials.CredContext{})
	if err != nil || v.AccessKeyID == "" {
		return "", "", "", "", fmt.Errorf("%w: no S3 credentials in %s: %v", ErrCredentials, from, err)
	}
	return v.AccessKeyID, v.SecretAccessKey, v.SessionToken, from, nil
}

// probe lists at most one object of the store: the first request to the
// endpoint, which shows a wrong endpoint, refused credentials or a
// missing bucket before anything is written.
func (b *Backend) probe(ctx context.Context) error {
	err := b.do(ctx, func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for o := range b.core.Client.ListObjects(ctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: b.dir(""), MaxKeys: 1}) {
			return o.Err
		}
		return nil
	})
	if err != nil {
		return b.fail("open", err)
	}
	return nil
}

// Location returns the store's URL.
func (b *Backend) Location() string { return Redact(b.cfg.URL()) }

// Config returns the configuration with its defaults filled in.
func (b *Backend) Config() Config { return b.cfg }

// Connections is how many requests may be in flight: the store keeps as
// many packs uploading at once.
func (b *Backend) Connections() int { return b.cfg.Connections }

// dir returns the key prefix of a type's objects ("" for the store's).
func (b *Backend) dir(typ string) string {
	p := b.cfg.Prefix
	if p != "" {
		p += "/"
	}
	if typ != "" {
		p += typ + "/"
	}
	return p
}

// key returns the object key of a file.
func (b *Backend) key(h backend.Handle) string { return b.dir(h.Type.String()) + h.Name }

// fail wraps err of op with the location and turns the server's codes
// into the backend's sentinels.
func (b *Backend) fail(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) && !isAttemptTimeout(err) {
		return fmt.Errorf("%s %s: %w", b.Location(), op, err)
	}
	switch c := code(err); c {
	case "NoSuchKey":
		return fmt.Errorf("%s %s: %w", b.Location(), op, backend.ErrNotExist)
	case "NoSuchBucket":
		return fmt.Errorf("%s: %w: bucket %q at %s: create it with recall init, or check the location", op, ErrNoBucket, b.cfg.Bucket, b.cfg.Endpoint)
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken":
		return fmt.Errorf("%s %s: %w: %s refused the credentials from %s (%s): check the access key and secret and their rights on bucket %q",
			b.Location(), op, ErrCredentials, b.cfg.Endpoint, b.credFrom, c, b.cfg.Bucket)
	case "QuotaExceeded":
		return fmt.Errorf("%s %s: %w: bucket %q is over its quota (%s): raise the quota or free space", b.Location(), op, backend.ErrNoSpace, b.cfg.Bucket, c)
	case "EntityTooLarge":
		return fmt.Errorf("%s %s: %w: the server refuses an object this large (%s)", b.Location(), op, backend.ErrNoSpace, c)
	}
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return fmt.Errorf("%s %s: %w: name the authority that signed the gateway's certificate in a CA file", b.Location(), op, err)
	}
	return fmt.Errorf("%s %s: %w", b.Location(), op, err)
}

func code(err error) string {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		if er.Code == "" && er.StatusCode == http.StatusNotFound {
			return "NoSuchKey"
		}
		return er.Code
	}
	return ""
}

// List lists the files of type t: one listing of its prefix, with "/" as
// the delimiter (a lock's holder objects, under locks/<name>/, are not
// files). A listing cut by a transient error goes on after the last name
// it gave.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(name string, size int64) error) error {
	if err := (backend.Handle{Type: t, Name: "x"}).Valid(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s list %v: %w", b.Location(), t, err)
	}
	prefix := b.dir(t.String())
	last := ""
	var fnErr error
	err := b.retry(ctx, false, func(context.Context) error {
		// The attempt's timeout would bound the whole listing, callbacks
		// included; the transport's timeouts bound each page.
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for o := range b.core.Client.ListObjects(lctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, StartAfter: last}) {
			if o.Err != nil {
				return o.Err
			}
			if strings.HasSuffix(o.Key, "/") {
				continue // a common prefix: a lock's holders
			}
			last = o.Key
			if err := fn(strings.TrimPrefix(o.Key, prefix), o.Size); err != nil {
				fnErr = err
				return nil
			}
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return b.fail("list "+t.String(), err)
	}
	return nil
}

// Stat returns a file's size (HEAD).
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (int64, error) {
	if err := h.Valid(); err != nil {
		return 0, err
	}
	var size int64
	err := b.do(ctx, func(ctx context.Context) error {
		oi, err := b.core.StatObject(ctx, b.cfg.Bucket, b.key(h), minio.StatObjectOptions{})
		size = oi.Size
		return err
	})
	if err != nil {
		return 0, b.fail("stat "+h.String(), err)
	}
	return size, nil
}

// Load reads a range of a file with one ranged GET into buf's storage. A
// body shorter than the response said is a cut connection, retried; a
// range shorter than asked is the file's end.
func (b *Backend) Load(ctx context.Context, h backend.Handle, off int64, length int, buf []byte) ([]byte, error) {
	if err := h.Valid(); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("load %v: negative offset %d", h, off)
	}
	if length == 0 {
		if _, err := b.Stat(ctx, h); err != nil {
			return nil, err
		}
		return buf[:0], nil
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		opts.SetRange(off, off+int64(length)-1)
	case off > 0:
		opts.SetRange(off, 0)
	}
	got := 0
	err := b.do(ctx, func(ctx context.Context) error {
		body, oi, _, err := b.core.GetObject(ctx, b.cfg.Bucket, b.key(h), opts)
		if code(err) == "InvalidRange" {
			got = 0 // the range starts at or past the end
			return nil
		}
		if err != nil {
			return err
		}
		defer body.Close()
		n := int(oi.Size) // this response's length
		if length >= 0 && n > length {
			return fmt.Errorf("%d bytes sent for a range of %d", n, length)
		}
		if cap(buf) < n {
			buf = make([]byte, n, max(n, length))
		}
		if _, err := io.ReadFull(body, buf[:n]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read body: %w", err)
		}
		got = n
		return nil
	})
	if err != nil {
		return nil, b.fail("load "+h.String(), err)
	}
	if buf == nil {
		buf = []byte{}
	}
	if length >= 0 && got < length {
		return buf[:got], io.ErrUnexpectedEOF
	}
	return buf[:got], nil
}

// Save stores a file with one PUT of known size, which S3 makes atomic
// and, once answered, durable. The body's SHA-256 is signed, so the
// server refuses bytes damaged on the way.
func (b *Backend) Save(ctx context.Context, h backend.Handle, data []byte) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if err := b.put(ctx, b.key(h), data); err != nil {
		return b.fail("save "+h.String(), err)
	}
	return nil
}

func (b *Backend) put(ctx context.Context, key string, data []byte) error {
	sum := sha256.Sum256(data)
	sumHex := hex.EncodeToString(sum[:])
	return b.do(ctx, func(ctx context.Context) error {
		_, err := b.core.PutObject(ctx, b.cfg.Bucket, key, bytes.NewReader(data), int64(len(data)), "", sumHex,
			// The whole body's hash, signed in the request's headers,
			// not the client library's chunk-signed streaming (which Ceph
			// 16 refuses for an empty body, and which hashes every
			// chunk a second time).
			minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true})
		return err
	})
}

// Remove deletes a file. S3's DELETE succeeds for a missing object, so a
// HEAD comes first for the contract's ErrNotExist: two concurrent
// removals of one file may then both succeed. Removing a lock removes
// its name (locks/<name>); its holders' objects stay with their holders.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if _, err := b.Stat(ctx, h); err != nil {
		return err
	}
	if err := b.remove(ctx, b.key(h)); err != nil {
		return b.fail("remove "+h.String(), err)
	}
	return nil
}

func (b *Backend) remove(ctx context.Context, key string) error {
	return b.do(ctx, func(ctx context.Context) error {
		return b.core.RemoveObject(ctx, b.cfg.Bucket, key, minio.RemoveObjectOptions{})
	})
}

// Close closes idle connections. Locks are not released.
func (b *Backend) Close() error {
	b.tr.CloseIdleConnections()
	return nil
}
