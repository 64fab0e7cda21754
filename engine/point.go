package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/recall-backup/recall/chunkstore"
)

// Point manifest format, version 2: a JSON object stored as
// <store>/points/<id>, where id is the BLAKE3-256 hash of the stored bytes
// (sealed with the store key when encrypted). Fields:
//
//	version  2 (1 is read too: it lacks exclude and mount_points)
//	source   data source name
//	kind     "tree" (a directory), "file" (one regular file) or "device"
//	path     absolute path backed up
//	host     host name
//	time     start of the backup, RFC 3339 with nanoseconds, UTC
//	tree     hex id of the root tree blob; the root tree holds what PATH
//	         held (for a file or device: one entry named after it)
//	parent   hex id of the point whose unchanged files were reused, or ""
//	stats    counters (files, dirs, bytes, new_bytes, stored_bytes, ...)
//	root     metadata of the backed-up directory itself {mode, uid, gid,
//	         mtime_ns, ctime_ns, atime_ns, nlink, xattrs}
//	errors   [{path, error}] entries skipped or flagged during backup,
//	         mount points of pseudo file systems and recovery trees
//	         among them ("skipped mount point: ...")
//	exclude  what the backup was asked to leave out (version 2; always
//	         present, its fields omitted when unused): {patterns: [...],
//	         files: [{path, patterns: [...]}] (a pattern file's lines as
//	         read), caches: true, if_present: [names], larger_than: bytes,
//	         one_file_system: true}; see Exclude for the pattern grammar
//	mount_points [{path, fs_type}] (version 2, omitted when empty): with
//	         one_file_system, the mount points inside PATH that were not
//	         entered; each is in the tree as an empty directory
//	compression "zstd", "s2" or "off": the codec this backup stored its
//	         new blobs with (blobs reused from earlier points keep theirs).
//	         Optional: omitted by points written before it was recorded,
//	         which used zstd; a reader that does not know it ignores it,
//	         so it came without a new version
//	group    the protection group the backup ran for (optional, like
//	         compression: omitted by backups of a path and by older
//	         points)
//	policy_version the group's policy version the backup ran under
//	         (optional; omitted with group)
//	scheduled the recovery point time, RFC 3339 UTC, this point was made
//	         for (optional): a point that has it is a scheduled recovery
//	         point, kept for the group's retention range; one without it
//	         is a sync, kept for the sync window (see Retention)
//	inode_flags true when the backup recorded the inode flags of files
//	         and directories (tree format 2); optional, omitted by older
//	         points, whose unchanged files' flags are then read afresh
//	reach    who could reach PATH at backup time, through the search
//	         permission of the directories above it (reach.go, Reach):
//	         {who, uid, gid}; optional, omitted by older points
//	name     the point's name in the recovery tree, "@GMT-YYYY.MM.DD-
//	         hh.mm.ss" (UTC): its start second, or when another point of
//	         its source showed that name at the backup, the next second
//	         free (pointname.go); kept for the point's life, so Previous
//	         Versions and scripts find the same point under it after
//	         others are forgotten. Optional, omitted by older points
//
// Paths in errors and mount_points are relative to PATH. A point is
// written only after every pack and index file it needs is durable, so a
// manifest that exists is complete.
const pointVersion = 2

// Point kinds.
const (
	KindTree   = "tree"
	KindFile   = "file"
	KindDevice = "device"
)

// Point is one recovery point.
type Point struct {
	ID      chunkstore.ID `json:"-"`
	Version int           `json:"version"`
	Source  string        `json:"source"`
	Kind    string        `json:"kind"`
	Path    string        `json:"path"`
	Host    string        `json:"host"`
	Time    time.Time     `json:"time"`
	Tree    chunkstore.ID `json:"-"`
	TreeHex string        `json:"tree"`
	Parent  string        `json:"parent"`
	Stats   Stats         `json:"stats"`
	Root    RootMeta      `json:"root"`
	Errors  []PathError   `json:"errors,omitempty"`
	Exclude Exclude       `json:"exclude"`
	// Compression is the codec of the blobs this backup stored ("" in
	// points written before it was recorded).
	Compression chunkstore.Compression `json:"compression,omitempty"`
	// Group and PolicyVersion are the protection group and its policy
	// version the backup ran under ("" and 0 otherwise).
	Group         string `json:"group,omitempty"`
	PolicyVersion uint64 `json:"policy_version,omitempty"`
	// Scheduled is the recovery point time this point was made for; zero
	// for a sync between recovery point times and for backups of a path.
	Scheduled time.Time `json:"scheduled,omitzero"`

	// Damaged is why the manifest could not be read ("" when it was).
	// Only Reader.Points and FindPoint return such a point, with ID set
	// and every other field zero: it cannot be restored or mounted,
	// only listed and forgotten.
	Damaged string `json:"-"`
	// MountPoints lists the file system boundaries that one_file_system
	// kept the backup from entering.
	MountPoints []MountPoint `json:"mount_points,omitempty"`
	// InodeFlags: the backup recorded the inode flags of files and
	// directories (Node.Flags); false in points from before they were.
	InodeFlags bool `json:"inode_flags,omitempty"`
	// Reach is who could reach Path at backup time (reach.go); nil in
	// points from before it was recorded.
	Reach *Reach `json:"reach,omitempty"`
	// Name is the point's name in the recovery tree (@GMT-...), given at
	// its backup: its start second, or the next one no point of its
	// source had then (pointname.go). "" in points from before it was
	// recorded, whose names a mount works out.
	Name string `json:"name,omitempty"`
}

// MountPoint is a mount point inside a backed-up tree.
type MountPoint struct {
	Path   string `json:"path"`    // relative to the point's path
	FSType string `json:"fs_type"` // as mountinfo names it ("tmpfs", "fuse.recall")
}

// Stats counts what a backup saw and wrote.
type Stats struct {
	Files        int64 `json:"files"`
	Dirs         int64 `json:"dirs"`
	Others       int64 `json:"others"`
	Bytes        int64 `json:"bytes"`
	Unchanged    int64 `json:"unchanged_files"`
	NewBlobs     int64 `json:"new_blobs"`
	NewBytes     int64 `json:"new_bytes"`
	StoredBytes  int64 `json:"stored_bytes"`
	DurationNano int64 `json:"duration_ns"`
}

// PathError is one entry that could not be backed up (or was flagged).
type PathError struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// ErrBadPoint: a manifest that does not decode.
var ErrBadPoint = errors.New("malformed point manifest")

func encodePoint(p *Point) []byte {
	p.Version = pointVersion
	p.TreeHex = p.Tree.String()
	b, _ := json.Marshal(p)
	return b
}

func decodePoint(id chunkstore.ID, b []byte) (*Point, error) {
	p := &Point{}
	if err := json.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("point %s: %w: %v", id.Short(), ErrBadPoint, err)
	}
	if p.Version != 1 && p.Version != pointVersion {
		return nil, fmt.Errorf("point %s: %w: version %d", id.Short(), ErrBadPoint, p.Version)
	}
	t, err := chunkstore.ParseID(p.TreeHex)
	if err != nil {
		return nil, fmt.Errorf("point %s: %w: %v", id.Short(), ErrBadPoint, err)
	}
	p.ID, p.Tree = id, t
	return p, nil
}

// Points returns all points, oldest first (ties broken by id), then the
// points whose manifest is damaged, by id: their time is unknown, and at the
// end they neither move "latest" nor shift the names of healthy points. A
// damaged manifest never makes Points fail; it comes back as a Point with
// Damaged set. So does a manifest of a newer format (ErrNewerPoint), which
// is not damage: Damaged says so.
func (r *Reader) Points() ([]*Point, error) { return r.points(r.LoadPoint) }

// knownPoints is Points for callers that only decide from manifests
// (the parent of a backup, retention, status) and run again and again in
// one process: a manifest that once loaded and checked is kept, since a
// point's id is its manifest's hash and a manifest never changes. What
// checks the store (verify, repair) and what shows it (the mount, the
// points command) read every manifest again through Points. The points
// returned are copies.
func (r *Reader) knownPoints() ([]*Point, error) {
	pts, err := r.points(func(id chunkstore.ID) (*Point, error) {
		r.mu.Lock()
		p := r.known[id]
		r.mu.Unlock()
		if p != nil {
			return p, nil
		}
		p, err := r.LoadPoint(id)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		if r.known == nil {
			r.known = map[chunkstore.ID]*Point{}
		}
		r.known[id] = p
		r.mu.Unlock()
		return p, nil
	})
	for i, p := range pts {
		c := *p
		pts[i] = &c
	}
	if err == nil {
		// Forgotten points leave the cache too.
		live := make(map[chunkstore.ID]bool, len(pts))
		for _, p := range pts {
			live[p.ID] = true
		}
		r.mu.Lock()
		for id := range r.known {
			if !live[id] {
				delete(r.known, id)
			}
		}
		r.mu.Unlock()
	}
	return pts, err
}

func (r *Reader) points(load func(chunkstore.ID) (*Point, error)) ([]*Point, error) {
	ids, err := r.st.ListPoints()
	if err != nil {
		return nil, err
	}
	var out []*Point
	for _, id := range ids {
		p, err := load(id)
		if errors.Is(err, chunkstore.ErrNotFound) {
			continue // forgotten meanwhile
		}
		var dp *DamagedPointError
		if errors.As(err, &dp) {
			out = append(out, &Point{ID: id, Damaged: dp.Reason})
			continue
		}
		if errors.Is(err, ErrNewerPoint) {
			out = append(out, &Point{ID: id, Damaged: strings.TrimPrefix(err.Error(), "recovery point "+pointShort(id)+": ")})
			continue
		}
		if err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			return nil, err
		}
		if err != nil {
			// A manifest that cannot be read at all (its permissions,
			// a directory in its place, an I/O error) affects only its
			// own point, as one whose bytes are damaged does: listed
			// with the reason, it keeps garbage collection from
			// deleting what only it uses, and every other point stays
			// listable, restorable and mountable.
			out = append(out, &Point{ID: id, Damaged: "manifest unreadable: " + err.Error() + " (fix its file or the storage, then run again)"})
			continue
		}
		out = append(out, p)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.Damaged != "") != (b.Damaged != "") {
			return b.Damaged != ""
		}
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		return a.ID.String() < b.ID.String()
	})
	return out, nil
}

// DamagedPointError is a point whose manifest cannot be read: its bytes
// fail their hash or authentication, or do not decode. It wraps ErrDamaged
// and the underlying error. Other points are not affected.
type DamagedPointError struct {
	ID     chunkstore.ID
	Reason string // why, for a person: what failed
	Err    error
}

func (e *DamagedPointError) Error() string {
	return fmt.Sprintf("recovery point %s is damaged: %s; nothing of it can be restored or mounted (remove it with 'recall forget %s')",
		pointShort(e.ID), e.Reason, pointShort(e.ID))
}

// pointShort is how messages name a point: the 12 digits 'recall points'
// shows.
func pointShort(id chunkstore.ID) string { return id.String()[:12] }

func (e *DamagedPointError) Unwrap() []error { return []error{ErrDamaged, e.Err} }

// LoadPoint reads one point manifest. A manifest that is there but cannot
// be read gives a *DamagedPointError (which wraps ErrDamaged).
func (r *Reader) LoadPoint(id chunkstore.ID) (*Point, error) {
	b, err := r.st.LoadPoint(id)
	if errors.Is(err, chunkstore.ErrCorrupt) {
		reason := "its manifest fails its check (the stored bytes do not match the id)"
		if r.st.Encrypted() {
			reason = "its manifest fails its check or does not decrypt"
		}
		return nil, &DamagedPointError{ID: id, Reason: reason, Err: err}
	}
	if err != nil {
		return nil, err
	}
	p, err := decodePoint(id, b)
	if err != nil {
		// A manifest a newer recall wrote is not damage: repair must
		// never remove it.
		var v struct {
			Version int `json:"version"`
		}
		if json.Unmarshal(b, &v) == nil && v.Version > pointVersion {
			return nil, fmt.Errorf("recovery point %s: %w: manifest version %d (this recall reads up to %d); use a newer recall",
				pointShort(id), ErrNewerPoint, v.Version, pointVersion)
		}
		return nil, &DamagedPointError{ID: id, Reason: "its manifest does not decode: " + strings.TrimPrefix(err.Error(), "point "+id.Short()+": "), Err: err}
	}
	return p, nil
}

// ErrNewerPoint: a manifest written by a newer recall, in a format this one
// does not read. It is intact; Points lists it as unreadable, and nothing
// removes it but an explicit forget.
var ErrNewerPoint = errors.New("recovery point from a newer recall")

// ErrAmbiguous: a point prefix matches several points.
var ErrAmbiguous = errors.New("ambiguous point id prefix")

// ambiguousLatest is ErrAmbiguous for "latest" with several sources,
// which is no id prefix.
type ambiguousLatest string

func (e ambiguousLatest) Error() string        { return string(e) }
func (e ambiguousLatest) Is(target error) bool { return target == ErrAmbiguous }

// FindPoint resolves "latest", a full id or a unique id prefix, limited to
// source when source is not empty. "latest" never picks a point whose
// manifest is damaged (its source is unknown); an id or prefix matches one
// whatever source is given, and then FindPoint returns a
// *DamagedPointError, so that forget can remove the point and everything
// else refuses it with exit code 4.
func (r *Reader) FindPoint(spec, source string) (*Point, error) {
	pts, err := r.Points()
	if err != nil {
		return nil, err
	}
	return r.findPoint(pts, spec, source)
}

// FindPointIn is FindPoint among pts, the store's points as Points
// listed them: for a caller that looks at them too, without listing them
// again.
func (r *Reader) FindPointIn(pts []*Point, spec, source string) (*Point, error) {
	return r.findPoint(pts, spec, source)
}

// checkSpec refuses an empty spec: every id has the empty prefix, so
// "forget --source S $ID" with $ID unset forgot S's only point.
func checkSpec(spec string) error {
	if strings.TrimSpace(spec) == "" {
		return fmt.Errorf("no point given (an empty id): name one by its id, a unique id prefix, or \"latest\"; 'recall points' lists them")
	}
	return nil
}

// findPoint is FindPoint among pts, the store's points (Points).
func (r *Reader) findPoint(pts []*Point, spec, source string) (*Point, error) {
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	var cand []*Point
	for _, p := range pts {
		switch {
		case p.Damaged != "":
			if spec == "latest" {
				continue
			}
		case source != "" && p.Source != source:
			continue
		}
		if spec == "latest" || strings.HasPrefix(p.ID.String(), strings.ToLower(spec)) {
			cand = append(cand, p)
		}
	}
	switch {
	case len(cand) == 0:
		if source != "" {
			if srcs := PointSources(pts); !slices.Contains(srcs, source) {
				return nil, fmt.Errorf("point %q of source %q: %w: the store holds no point of that source%s", spec, source, chunkstore.ErrNotFound, SourcesHint(source, srcs))
			}
			return nil, fmt.Errorf("point %q of source %q: %w (list them with 'recall points --source %s')", spec, source, chunkstore.ErrNotFound, source)
		}
		return nil, fmt.Errorf("point %q: %w (list them with 'recall points')", spec, chunkstore.ErrNotFound)
	case spec == "latest":
		if source == "" {
			if srcs := PointSources(cand); len(srcs) > 1 {
				return nil, ambiguousLatest(fmt.Sprintf("\"latest\" is the newest point of one source, and this store has %d (%s): name one with --source", len(srcs), ListSome(srcs, 8)))
			}
		}
		return cand[len(cand)-1], nil
	case len(cand) > 1:
		ids := make([]string, len(cand))
		for i, p := range cand {
			ids[i] = p.ID.String()[:16]
		}
		return nil, fmt.Errorf("%w %q matches %d points (%s); give more digits", ErrAmbiguous, spec, len(cand), ListSome(ids, 5))
	}
	if p := cand[0]; p.Damaged != "" {
		_, err := r.LoadPoint(p.ID) // the error, with its cause (or ErrNewerPoint)
		if err == nil {
			err = &DamagedPointError{ID: p.ID, Reason: p.Damaged, Err: chunkstore.ErrCorrupt}
		}
		return nil, err
	}
	return cand[0], nil
}

// PointSources are the sources of pts, sorted, each once; damaged points
// (whose source is unknown) have none.
func PointSources(pts []*Point) []string {
	var out []string
	for _, p := range pts {
		if p.Damaged == "" && p.Source != "" {
			out = append(out, p.Source)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ListSome joins the first max of names, saying how many more there are.
func ListSome(names []string, max int) string {
	if len(names) <= max {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:max], ", "), len(names)-max)
}

// SourcesHint ends a message about a source name the store does not hold:
// the closest name there is, when one is close (a typing slip), and the
// names there are, or that there are none.
func SourcesHint(name string, have []string) string {
	if len(have) == 0 {
		return " (the store has no points yet)"
	}
	if best := closeName(name, have); best != "" {
		return fmt.Sprintf("; did you mean %q? (sources: %s)", best, ListSome(have, 8))
	}
	return fmt.Sprintf(" (sources: %s)", ListSome(have, 8))
}

// closeName is the name of have that name is one slip away from (a
// letter missing, extra, wrong, or two swapped; two in a longer name),
// the closest; "" when none is that close.
func closeName(name string, have []string) string {
	best, dist := "", 0
	for _, h := range have {
		if d := EditDistance(strings.ToLower(name), strings.ToLower(h)); best == "" || d < dist {
			best, dist = h, d
		}
	}
	if dist <= 1 || dist == 2 && len(name) >= 6 {
		return best
	}
	return ""
}

// EditDistance is the optimal string alignment distance of a and b (in
// bytes): insertions, deletions, substitutions and swaps of two
// neighbours, each one step.
func EditDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
