package wsb

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
)

// Dir is the folder WSB writes to at the root of its target.
const Dir = "WindowsImageBackup"

var (
	// ErrIncomplete: the newest backup lacks files a complete one has.
	//lint:ignore ST1005 the message starts with the product's name
	ErrIncomplete = errors.New("Windows Server Backup image is incomplete")
	// ErrNoImage: the tree holds no image of the computer at all.
	ErrNoImage = errors.New("no Windows Server Backup image")
)

// backupPrefix and backupLayout make a backup folder's name: "Backup
// 2026-11-02 210312".
const (
	backupPrefix = "Backup "
	backupLayout = "2006-01-02 150405"
)

// mediaIDSize is the least a MediaId holds: the media's GUID.
const mediaIDSize = 16

// unnamedBackup stands for the backup folder in Missing when there is
// none.
const unnamedBackup = "Backup YYYY-MM-DD HHMMSS"

// File is one file of an image, Name a slash path relative to
// WindowsImageBackup/<Computer>.
type File struct {
	Name string
	Size int64
}

// Image is what a tree holds for one computer (fsys rooted where
// WindowsImageBackup is).
type Image struct {
	Computer string    // the folder's name under WindowsImageBackup, as found
	Backup   string    // newest "Backup YYYY-MM-DD HHMMSS" folder name; "" when none
	Time     time.Time // that folder's time (UTC)
	// Missing is what a complete backup has and this lacks, slash paths
	// relative to WindowsImageBackup/<Computer>, in the order of the
	// package comment.
	Missing []string
	// Others are the other folders directly under WindowsImageBackup
	// (another computer wrote here), sorted. Files there (Explorer's
	// desktop.ini) are no computer and are not listed.
	Others []string
	Images []File // the .vhd/.vhdx files of the newest backup
	Size   int64  // their total size
	// LastWrite is the newest write time of anything under
	// WindowsImageBackup (a settle time's clock; Print, not this, sees a
	// write whose time a client set back).
	LastWrite time.Time
	// Print is a short hash (16 hex digits) of what a point of the image
	// holds: the newest backup folder's name and each file's path, size,
	// write time and change time under the computer's folder, but for
	// the other Backup folders. Two looks with the same print saw the
	// same tree, so nothing was written in between; "" when there is no
	// computer folder.
	Print string
}

// Inspect reads fsys/WindowsImageBackup/<computer>. It fails only when
// the tree cannot be read; an absent WindowsImageBackup or computer
// folder gives an Image with Missing set (and Err wrapping ErrNoImage).
// computer is matched without regard to case; Image.Computer is the
// folder's name as found.
func Inspect(fsys fs.FS, computer string) (*Image, error) {
	im := &Image{Computer: computer}
	ents, err := fs.ReadDir(fsys, Dir)
	if errors.Is(err, fs.ErrNotExist) {
		im.Missing = []string{unnamedBackup, "Catalog/GlobalCatalog", "MediaId"}
		return im, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", Dir, err)
	}
	name, found := pickComputer(ents, computer)
	if found {
		im.Computer = name
	}
	for _, e := range ents {
		if e.IsDir() && (!found || e.Name() != im.Computer) {
			im.Others = append(im.Others, e.Name())
		}
	}
	sort.Strings(im.Others)
	root := path.Join(Dir, im.Computer)
	if found {
		ents, err := fs.ReadDir(fsys, root)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", root, err)
		}
		im.Backup, im.Time = newestBackup(ents)
	}
	h := sha256.New()
	if err := im.lastWrite(fsys, found, func(p string, fi fs.FileInfo) {
		// Lengths before strings, so no two trees hash alike by
		// shifting bytes between names.
		var b [32]byte
		binary.LittleEndian.PutUint64(b[:], uint64(len(p)))
		binary.LittleEndian.PutUint64(b[8:], uint64(fi.Size()))
		binary.LittleEndian.PutUint64(b[16:], uint64(fi.ModTime().UnixNano()))
		binary.LittleEndian.PutUint64(b[24:], uint64(changeTime(fi).UnixNano()))
		h.Write(b[:])
		h.Write([]byte(p))
	}); err != nil {
		return nil, err
	}
	if !found {
		im.Missing = []string{unnamedBackup, "Catalog/GlobalCatalog", "MediaId"}
		return im, nil
	}
	h.Write([]byte(im.Backup))
	im.Print = hex.EncodeToString(h.Sum(nil)[:8])
	if im.Backup == "" {
		im.Missing = append(im.Missing, unnamedBackup)
	} else {
		if err := im.readBackup(fsys, root); err != nil {
			return nil, err
		}
	}
	for _, p := range []string{"Catalog/GlobalCatalog", "MediaId"} {
		fi, err := fs.Stat(fsys, path.Join(root, p))
		switch {
		case errors.Is(err, fs.ErrNotExist) || err == nil && !fi.Mode().IsRegular():
			im.Missing = append(im.Missing, p)
		case err != nil:
			return nil, fmt.Errorf("stat %s: %w", path.Join(root, p), err)
		case fi.Size() == 0:
			// What a share that filled up (or a write cut off) leaves:
			// no recovery reads a catalog without its bytes.
			im.Missing = append(im.Missing, p+" (empty)")
		case p == "MediaId" && fi.Size() < mediaIDSize:
			im.Missing = append(im.Missing, fmt.Sprintf("%s (cut short: %d bytes)", p, fi.Size()))
		}
	}
	return im, nil
}

// pickComputer finds the computer's folder: the exact name first, else
// one equal to it but for case.
func pickComputer(ents []fs.DirEntry, computer string) (string, bool) {
	folded := ""
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if e.Name() == computer {
			return computer, true
		}
		if folded == "" && strings.EqualFold(e.Name(), computer) {
			folded = e.Name()
		}
	}
	return folded, folded != ""
}

// newestBackup returns the backup folder with the latest time in its
// name: WSB replaces the previous one on a share, but a run that broke
// off while removing it can leave both.
func newestBackup(ents []fs.DirEntry) (string, time.Time) {
	var name string
	var newest time.Time
	for _, e := range ents {
		t, ok := backupTime(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		if name == "" || t.After(newest) {
			name, newest = e.Name(), t
		}
	}
	return name, newest
}

// BackupTime is the time in a backup folder's name ("Backup 2026-11-02
// 210312"), UTC; false when name is not one.
func BackupTime(name string) (time.Time, bool) { return backupTime(name) }

// backupTime parses a backup folder's name, in any case ("backup ..."
// is the same folder to Windows).
func backupTime(name string) (time.Time, bool) {
	if len(name) < len(backupPrefix) || !strings.EqualFold(name[:len(backupPrefix)], backupPrefix) {
		return time.Time{}, false
	}
	t, err := time.Parse(backupLayout, name[len(backupPrefix):])
	return t, err == nil
}

// readBackup lists the newest backup folder: its images, and what of the
// required files it lacks.
func (im *Image) readBackup(fsys fs.FS, root string) error {
	dir := path.Join(root, im.Backup)
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	var specs, components, writers bool
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		n := strings.ToLower(e.Name())
		switch {
		case n == "backupspecs.xml":
			specs = true
		case strings.HasSuffix(n, "_components.xml"):
			components = true
		case strings.HasSuffix(n, ".xml") && strings.Contains(n, "_writer"):
			writers = true
		case strings.HasSuffix(n, ".vhdx") || strings.HasSuffix(n, ".vhd"):
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed since listed: WSB is at work
			}
			if err != nil {
				return fmt.Errorf("stat %s: %w", path.Join(dir, e.Name()), err)
			}
			im.Images = append(im.Images, File{Name: im.Backup + "/" + e.Name(), Size: fi.Size()})
			im.Size += fi.Size()
		}
	}
	for _, m := range []struct {
		ok   bool
		name string
	}{
		{specs, "BackupSpecs.xml"},
		{components, "*_Components.xml"},
		{writers, "*_Writer*.xml"},
		{len(im.Images) > 0, "*.vhdx"},
	} {
		if !m.ok {
			im.Missing = append(im.Missing, im.Backup+"/"+m.name)
		}
	}
	if specs && len(im.Images) > 0 {
		missing, err := im.namedImages(fsys, dir, ents)
		if err != nil {
			return err
		}
		im.Missing = append(im.Missing, missing...)
	}
	return nil
}

// namedImages returns the image files BackupSpecs.xml names that the
// backup folder (listed in ents) lacks: one volume's image is enough to
// look like a backup, and a run cut short, or a file hidden for a while,
// leaves the others out. A BackupSpecs.xml that does not decode (cut
// short, or not WSB's) names none, and is itself what is missing.
func (im *Image) namedImages(fsys fs.FS, dir string, ents []fs.DirEntry) ([]string, error) {
	var specs string
	have := map[string]bool{}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		if strings.EqualFold(e.Name(), "BackupSpecs.xml") {
			specs = e.Name()
		}
		have[strings.ToLower(e.Name())] = true // Windows names compare without case
	}
	b, err := readLimited(fsys, path.Join(dir, specs), MaxSpecsSize)
	switch {
	case errors.Is(err, ErrIncomplete):
		return nil, nil // removed since listed: WSB is at work, and LastWrite says so
	case err != nil && !errors.Is(err, errTooLarge):
		return nil, err
	case err == nil:
		v, derr := decodeSpecs(b)
		if derr != nil {
			break
		}
		var out []string
		for _, vol := range v.Volumes {
			// Recorded as a name in the backup folder; a path (either
			// separator) is read as its last element.
			name := path.Base(strings.ReplaceAll(vol.ImageFile, `\`, "/"))
			if vol.ImageFile != "" && !have[strings.ToLower(name)] {
				out = append(out, im.Backup+"/"+name)
			}
		}
		return out, nil
	}
	return []string{im.Backup + "/" + specs + " (unreadable)"}, nil
}

// lastWrite sets LastWrite from everything under WindowsImageBackup,
// other computers' folders included: any write there means WSB (or
// someone) is still at work on the share. With found, each file under
// the computer's folder that a point of the image holds (all but the
// Backup folders other than im.Backup) goes to print too (the walk's
// order is lexical, so the same tree gives the same calls).
func (im *Image) lastWrite(fsys fs.FS, found bool, print func(p string, fi fs.FileInfo)) error {
	root := path.Join(Dir, im.Computer) + "/"
	return fs.WalkDir(fsys, Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile: WSB replacing the previous backup
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if t := fi.ModTime(); t.After(im.LastWrite) {
			im.LastWrite = t
		}
		if found && !d.IsDir() && strings.HasPrefix(p, root) && !im.stray(p[len(root):]) {
			print(p[len(root):], fi)
		}
		return nil
	})
}

// stray reports whether rel, a path in the computer's folder, is inside a
// Backup folder other than the newest: one a run that broke off left,
// which a point does not hold.
func (im *Image) stray(rel string) bool {
	top, _, inside := strings.Cut(rel, "/")
	if !inside || top == im.Backup {
		return false
	}
	_, ok := backupTime(top)
	return ok
}

// Complete reports whether the newest backup has everything a complete
// one has.
func (im *Image) Complete() bool { return len(im.Missing) == 0 }

// Err is nil for a complete image, else an error wrapping ErrIncomplete
// naming every missing part; when not even a backup folder is there
// (Missing holds "Backup YYYY-MM-DD HHMMSS") it wraps ErrNoImage too.
func (im *Image) Err() error {
	if im.Complete() {
		return nil
	}
	return &incompleteError{computer: im.Computer, missing: im.Missing, others: im.Others}
}

type incompleteError struct {
	computer        string
	missing, others []string
}

func (e *incompleteError) none() bool { return slices.Contains(e.missing, unnamedBackup) }

func (e *incompleteError) Error() string {
	msg := fmt.Sprintf("image of %s is incomplete: missing %s", e.computer, strings.Join(e.missing, ", "))
	if e.none() && len(e.others) > 0 {
		msg += fmt.Sprintf(" (%s holds %s)", Dir, strings.Join(e.others, ", "))
	}
	return msg
}

func (e *incompleteError) Unwrap() []error {
	if e.none() {
		return []error{ErrIncomplete, ErrNoImage}
	}
	return []error{ErrIncomplete}
}

// Computers lists the folders under fsys/WindowsImageBackup, sorted: the
// computers that wrote images there. No WindowsImageBackup gives none.
func Computers(fsys fs.FS) ([]string, error) {
	ents, err := fs.ReadDir(fsys, Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", Dir, err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
