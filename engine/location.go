package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/cache"
	"github.com/recall-backup/recall/chunkstore/backend/local"
	"github.com/recall-backup/recall/chunkstore/backend/s3"
	"github.com/recall-backup/recall/internal/atomicfile"
)

// Store locations. A store lives in a directory (a home's store/, the
// embedded default, or any store directory) or on an S3-compatible object
// store, s3:http(s)://host[:port]/bucket[/prefix]. A home whose store is
// not its store/ records where it is in <home>/store.json, so that every
// command given the home alone finds it:
//
//	{"version":1,"location":"s3:http://host:port/bucket/prefix"}
//
// version is 1; location is what resolveLocation reads. The file holds
// no secret: credentials come from the environment or the credentials
// file each time. It is written once, atomically (atomicfile), by
// recall init or by the first command that opens a remote store for a
// new home. The catalog, the caches of remote stores (<home>/cache,
// RemoteOptions.CacheDir) and the locks of the home itself stay local
// whatever the location.

// homeStoreVersion is the version of store.json this recall writes and
// reads.
const homeStoreVersion = 1

// homeStore is store.json.
type homeStore struct {
	Version  int    `json:"version"`
	Location string `json:"location"`
}

// RemoteOptions say how to reach a store on an object store; the zero
// value is the defaults. Credentials are not here: they come from
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the credentials file
// (see package s3), so nothing recorded holds them.
type RemoteOptions struct {
	// Profile is the credentials file's profile ("": AWS_PROFILE, else
	// "default"); naming one ignores AWS_ACCESS_KEY_ID.
	Profile string
	// Region is the bucket's region ("": asked of the server).
	Region string
	// CAFile is a PEM file of certificates trusted beside the system's.
	CAFile string
	// PathStyle names the bucket in the path, not the host name (a
	// gateway without wildcard DNS); IP addresses and localhost always are.
	PathStyle bool
	// Connections bounds the requests in flight (0: the backend's 8).
	Connections int
	// LockStale is how long a lock holder that stopped refreshing
	// (killed, cut off) keeps others out (0: the backend's 30 minutes).
	// A holder cut off for longer loses its lock and stops writing.
	LockStale time.Duration
	// CacheDir, when set, holds verified local copies of the store's
	// index files, manifests and tree packs (package cache), in a
	// directory of its own per store location, so that opening the store,
	// listing points, browsing the mount and planning a restore download
	// no pack data. A home's commands give <home>/cache; a copy gives none.
	CacheDir string
	// CacheBytes bounds each store's cache (0: the cache's default).
	CacheBytes int64
}

// CacheDir is where a home keeps its caches of remote stores.
func CacheDir(home string) string { return filepath.Join(home, "cache") }

// IsRemote reports whether loc names a store on an object store.
func IsRemote(loc string) bool { return strings.HasPrefix(loc, "s3:") }

// s3Config is the backend configuration of the s3: location loc.
func (o RemoteOptions) s3Config(loc string) (s3.Config, error) {
	cfg, err := s3.ParseURL(loc)
	if err != nil {
		return s3.Config{}, err
	}
	cfg.Profile, cfg.Region, cfg.CAFile, cfg.Connections, cfg.LockStale = o.Profile, o.Region, o.CAFile, o.Connections, o.LockStale
	if o.PathStyle {
		cfg.Addressing = s3.AddressPath
	}
	return cfg, nil
}

// HomeStorePath is where a home records a store kept elsewhere.
func HomeStorePath(home string) string { return filepath.Join(home, "store.json") }

// RecordedStore returns the store location home records, or "" when it
// records none (its store, if any, is its store/).
func RecordedStore(home string) (string, error) {
	p := HomeStorePath(home)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the home's store location: %w%s", err, accessHint(home, err))
	}
	var hs homeStore
	if err := json.Unmarshal(b, &hs); err != nil {
		return "", fmt.Errorf("%s: %v: fix it, or remove it and give --store", p, err)
	}
	if hs.Version != homeStoreVersion {
		return "", fmt.Errorf("%s: version %d, this recall reads %d: upgrade recall", p, hs.Version, homeStoreVersion)
	}
	if hs.Location == "" {
		return "", fmt.Errorf("%s: no location in it: fix it, or remove it and give --store", p)
	}
	return hs.Location, nil
}

// RecordStore records loc as home's store, making home if it is missing.
// The file is replaced atomically: a crash leaves the old record or the
// new one.
func RecordStore(home, loc string) error {
	b, err := json.Marshal(homeStore{Version: homeStoreVersion, Location: loc})
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("record the store's location in %s: %w", home, err)
	}
	if err := atomicfile.Write(HomeStorePath(home), b, 0o600); err != nil {
		return fmt.Errorf("record the store's location: %w", err)
	}
	return nil
}

// ErrOtherStore: a home records another store than the one given.
var ErrOtherStore = errors.New("the home records another store")

// HomeStore returns the location of home's store. given is what the user
// asked for ("" for nothing): explicit when typed as --store on the
// command line, not when it came from the environment. With nothing
// given it is the location home records, else its store/. A given
// location wins over a home with no store; over a home whose store is
// another, it wins only when explicit (and note says so, for a warning);
// otherwise the error wraps ErrOtherStore, so that a RECALL_STORE left
// set in a shell never sends a home's commands to another store unseen.
func HomeStore(home, given string, explicit bool) (loc, note string, err error) {
	rec, err := RecordedStore(home)
	if err != nil {
		return "", "", err
	}
	own := rec
	if own == "" {
		if _, err := os.Stat(filepath.Join(StoreDir(home), "config")); err == nil {
			own = StoreDir(home)
		}
	}
	switch {
	case given == "" && own != "":
		return own, "", nil
	case given == "":
		return StoreDir(home), "", nil
	case own == "" || sameLocation(given, own):
		return given, "", nil
	case explicit:
		return given, fmt.Sprintf("home %s records store %s; using %s for this run, as --store says", home, s3.Redact(own), s3.Redact(given)), nil
	}
	return "", "", fmt.Errorf("%w: home %s has store %s, and RECALL_STORE says %s: unset RECALL_STORE, or give --store %s on the command line to use it for this run",
		ErrOtherStore, home, s3.Redact(own), s3.Redact(given), s3.Redact(given))
}

// sameLocation reports whether two location strings name one store.
func sameLocation(a, b string) bool {
	canon := func(loc string) string {
		if IsRemote(loc) {
			if c, err := s3.ParseURL(loc); err == nil {
				return c.URL()
			}
			return loc
		}
		d, err := filepath.Abs(loc)
		if err != nil {
			return loc
		}
		if _, err := os.Stat(filepath.Join(StoreDir(d), "config")); err == nil {
			d = StoreDir(d)
		}
		if c, err := filepath.EvalSymlinks(d); err == nil {
			d = c
		}
		return d
	}
	return canon(a) == canon(b)
}

// RequireStore fails, wrapping chunkstore.ErrNoStore (or ErrConfigMissing
// where a store lost both its config files), unless home holds a
// store or records where its store is, so that nothing (a new catalog.db)
// is written into a directory that is not recall's. A recorded remote
// store is not contacted here.
func RequireStore(home string) error {
	if rec, err := RecordedStore(home); err != nil || rec != "" {
		return err
	}
	return chunkstore.CheckLocal(StoreDir(home))
}

// location is a store's place, resolved from what a person typed.
type location struct {
	be backend.Backend
	// canon names the place so that two locations are one store exactly
	// when their canon is equal.
	canon string
	// exists: a store is there (its config or its copy).
	exists bool
	// home is the directory of the new home a new local store goes in.
	home string
}

// resolveLocation turns a location string into the backend of the store
// there. An s3: location is opened (its bucket must exist unless create:
// then a missing one is made); the backend's Open has already said which
// endpoint and what to do when the credentials are refused. A directory
// is a store, or a recall home (its recorded store, else its store/). A
// directory holding neither is where a new store goes, as a new home's
// (DIR/store), so that every command's --home reaches it; it must be
// missing or empty. It is the one place a location string is read.
func resolveLocation(ctx context.Context, loc string, ro RemoteOptions, create bool) (*location, error) {
	if loc == "" {
		return nil, errors.New("no location given")
	}
	if IsRemote(loc) {
		return resolveRemote(ctx, loc, ro, create)
	}
	dir, err := filepath.Abs(loc)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		// Said as what it is: reading a home's store.json in it said
		// "open FILE/store.json: not a directory".
		return nil, fmt.Errorf("%s is a %s, not a store directory or a recall home: give a directory (a new or empty one for a new store) or an s3: location", dir, fileKind(fi.Mode()))
	}
	if rec, err := RecordedStore(dir); err != nil {
		return nil, err
	} else if rec != "" {
		if IsRemote(rec) {
			return resolveRemote(ctx, rec, ro, create)
		}
		dir = rec
	}
	isStore := func(d string) bool {
		for _, n := range []string{"config", "config.copy"} {
			if _, err := os.Stat(filepath.Join(d, n)); err == nil {
				return true
			}
		}
		return false
	}
	l := &location{exists: true}
	switch {
	case isStore(dir):
	case isStore(StoreDir(dir)):
		dir = StoreDir(dir)
	default:
		l.exists, l.home = false, dir
		dir = StoreDir(dir)
	}
	l.canon = dir
	if c, err := filepath.EvalSymlinks(dir); err == nil {
		l.canon = c
	}
	l.be = local.Open(dir)
	return l, nil
}

// resolveRemote is resolveLocation of an s3: location.
func resolveRemote(ctx context.Context, loc string, ro RemoteOptions, create bool) (*location, error) {
	cfg, err := ro.s3Config(loc)
	if err != nil {
		return nil, err
	}
	open := s3.Open
	if create {
		open = s3.Create
	}
	be, err := open(ctx, cfg)
	if errors.Is(err, s3.ErrNoBucket) {
		// The backend's message says what to do; the location says
		// what to give init.
		return nil, fmt.Errorf("store %s: %w", cfg.URL(), err)
	}
	if err != nil {
		return nil, err
	}
	be.SetHolderDead(chunkstore.HolderDead) // a holder that died on this host frees at once the locks taken with backend.FreeDeadHere
	l := &location{be: be, canon: cfg.URL()}
	if ro.CacheDir != "" {
		// One directory per store: a cache serves one store (its List
		// drops what the remote does not have).
		sum := sha256.Sum256([]byte(cfg.URL()))
		c, err := cache.New(be, filepath.Join(ro.CacheDir, "s3-"+hex.EncodeToString(sum[:12])), cache.Options{MaxBytes: ro.CacheBytes})
		if err != nil {
			be.Close()
			return nil, err
		}
		l.be = c
	}
	for _, n := range []string{"config", "config.copy"} {
		_, err := l.be.Stat(ctx, backend.Handle{Type: backend.Config, Name: n})
		if err == nil {
			l.exists = true
			break
		}
		if !errors.Is(err, backend.ErrNotExist) {
			l.be.Close()
			return nil, err
		}
	}
	return l, nil
}

// OpenLocation opens the store at loc: an s3: location, a recall home (a
// directory holding store/, or recording its store) or a store
// directory. Nothing is locked or written.
func OpenLocation(ctx context.Context, loc string, ro RemoteOptions, o chunkstore.OpenOptions) (*Store, error) {
	l, err := resolveLocation(ctx, loc, ro, false)
	if err != nil {
		return nil, err
	}
	if !l.exists {
		where := l.be.Location()
		l.be.Close()
		if IsRemote(where) {
			return nil, fmt.Errorf("%s: %w (the bucket holds no store under this prefix: check the location, or run 'recall init --store %s')", where, chunkstore.ErrNoStore, where)
		}
		return nil, fmt.Errorf("%s: %w (give a recall home or a store directory)", s3.Redact(loc), chunkstore.ErrNoStore)
	}
	st, err := chunkstore.OpenBackend(l.be, o)
	if err != nil {
		l.be.Close()
		return nil, err
	}
	return NewStore(st), nil
}

// InitLocation makes a new, empty store at loc (an s3: location, or a
// directory: see resolveLocation), making a missing bucket, and returns
// its config and where it is. A place holding a store, or a store's files
// (another store's bucket), is refused before anything is written.
func InitLocation(ctx context.Context, loc string, ro RemoteOptions, o chunkstore.InitOptions) (*chunkstore.Config, string, error) {
	l, err := resolveLocation(ctx, loc, ro, true)
	if err != nil {
		return nil, "", fmt.Errorf("init %s: %w", s3.Redact(loc), err)
	}
	where := l.be.Location()
	if l.exists {
		l.be.Close()
		return nil, "", fmt.Errorf("init %s: %w: it is another store's; give another bucket or prefix, or use that store with --store %s", where, chunkstore.ErrExists, s3.Redact(loc))
	}
	if lb, ok := l.be.(*local.Backend); ok {
		lb.Close()
		cfg, err := chunkstore.Init(where, o)
		return cfg, where, err
	}
	defer l.be.Close()
	if err := checkNoStoreFiles(ctx, l.be); err != nil {
		return nil, "", fmt.Errorf("init %s: %w (another store's, or one whose config was lost): give another bucket or prefix, or run 'recall repair' there", where, err)
	}
	cfg, err := chunkstore.InitBackend(l.be, o)
	return cfg, where, err
}

// checkNoStoreFiles fails when be holds files of a store (packs, index
// files, points), which are no place for a new one.
func checkNoStoreFiles(ctx context.Context, be backend.Backend) error {
	found := errors.New("found")
	for _, t := range []backend.FileType{backend.Packs, backend.Index, backend.Points} {
		err := backend.ListNames(ctx, be, t, func(string) error { return found })
		if errors.Is(err, found) {
			return fmt.Errorf("it holds %s of a store but no store config", t)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// accessHint ends the message of an error reading home that permissions
// caused: whose home it is, and the two ways on. A bare "permission
// denied" left a user who is not the home's owner guessing.
func accessHint(home string, err error) string {
	if !errors.Is(err, fs.ErrPermission) {
		return ""
	}
	owner := ""
	if fi, err := os.Stat(home); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			name := strconv.Itoa(int(st.Uid))
			if u, err := user.LookupId(name); err == nil {
				name = u.Username
			}
			owner = fmt.Sprintf(" (owner %s, mode %04o)", name, fi.Mode().Perm())
		}
	}
	return fmt.Sprintf("; home %s%s is not open to this user (uid %d): run recall as its owner (sudo recall ...), or give --home a directory of your own", home, owner, os.Geteuid())
}

// fileKind names what a file of mode m is, for a message.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		return "block device"
	case m&os.ModeCharDevice != 0:
		return "character device"
	case m&os.ModeNamedPipe != 0:
		return "named pipe"
	case m&os.ModeSocket != 0:
		return "socket"
	}
	return "file that is not a directory"
}
