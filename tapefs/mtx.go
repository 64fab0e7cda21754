package tapefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A real library: its changer is driven by the mtx program (Debian package
// mtx) on the changer's SCSI generic device, its drives by the st driver.
// mtx is run per operation and its text parsed, as Bacula, Amanda and
// Proxmox Backup do: it knows the quirks of a great many changers, which
// talking SCSI to the changer ourselves would have to relearn.
//
// mtx status prints (mtx.c, Status, as in mtx 1.3.12):
//
//	  Storage Changer /dev/sg3:2 Drives, 24 Slots ( 4 Import/Export )
//	Data Transfer Element 0:Full (Storage Element 5 Loaded):VolumeTag = ABC005L9
//	Data Transfer Element 1:Empty
//	      Storage Element 1:Full :VolumeTag=ABC001L9
//	      Storage Element 2:Empty
//	      Storage Element 24 IMPORT/EXPORT:Full :VolumeTag=CLN001L1
//
// Drives are numbered from 0, storage elements from 1 with the
// import/export ones among them (counted in "Slots"); "load", "unload" and
// "transfer" take those numbers. A drive's source element is "Unknown" when
// the changer lost track of it. A volume tag (barcode) is missing when the
// library has no reader or the label is unreadable; libraries with two
// labels add ":AlternateVolumeTag=...", which is not the barcode. Tags come
// padded with spaces to their 32-byte SCSI field on some libraries.

// mtxTimeout bounds one mtx run: a move on a large library takes a minute,
// an inventory after the door was opened several.
const mtxTimeout = 10 * time.Minute

// maxMtxElements bounds the element counts a status may claim.
const maxMtxElements = 1 << 20

// ParseMtxStatus parses the output of `mtx status`. The counts in its
// header must match the elements listed: a status cut short is an error,
// not a smaller library.
func ParseMtxStatus(out []byte) (*Inventory, error) {
	var (
		inv                   Inventory
		header                bool
		nDrives, nSlots, nIE  int
		ieListed              bool
		ieSeen                int
		seenDrives, seenSlots = map[int]bool{}, map[int]bool{}
	)
	for i, raw := range bytes.Split(out, []byte("\n")) {
		line := strings.TrimSpace(string(raw))
		bad := func(err error) (*Inventory, error) {
			return nil, fmt.Errorf("mtx status line %d %q: %w", i+1, line, err)
		}
		switch {
		case strings.HasPrefix(line, "Storage Changer "):
			if header {
				return bad(errors.New("a second header"))
			}
			var err error
			if nDrives, nSlots, nIE, ieListed, err = parseMtxHeader(strings.TrimPrefix(line, "Storage Changer ")); err != nil {
				return bad(err)
			}
			header = true
		case strings.HasPrefix(line, "Data Transfer Element"):
			if !header {
				return bad(errors.New("a drive before the header"))
			}
			e, err := parseMtxDrive(strings.TrimPrefix(line, "Data Transfer Element"), len(inv.Drives))
			if err != nil {
				return bad(err)
			}
			if seenDrives[e.Number] {
				return bad(fmt.Errorf("drive %d listed twice", e.Number))
			}
			if e.From > nSlots {
				return bad(fmt.Errorf("drive loaded from slot %d of %d", e.From, nSlots))
			}
			seenDrives[e.Number] = true
			inv.Drives = append(inv.Drives, e)
		case strings.HasPrefix(line, "Storage Element "):
			if !header {
				return bad(errors.New("a slot before the header"))
			}
			e, err := parseMtxSlot(strings.TrimPrefix(line, "Storage Element "))
			if err != nil {
				return bad(err)
			}
			if seenSlots[e.Number] {
				return bad(fmt.Errorf("slot %d listed twice", e.Number))
			}
			if e.Number > nSlots {
				return bad(fmt.Errorf("slot %d of %d", e.Number, nSlots))
			}
			seenSlots[e.Number] = true
			if e.Kind == ImportExportElement {
				ieSeen++
			}
			inv.Slots = append(inv.Slots, e)
		}
		// Anything else (blank lines, messages of other mtx versions) is
		// not an element; the counts below catch what is missing.
	}
	switch {
	case !header:
		return nil, errors.New("not mtx status output: no \"Storage Changer\" line")
	case len(inv.Drives) != nDrives:
		return nil, fmt.Errorf("mtx status lists %d drives where its header says %d: output cut short?", len(inv.Drives), nDrives)
	case len(inv.Slots) != nSlots:
		return nil, fmt.Errorf("mtx status lists %d slots where its header says %d: output cut short?", len(inv.Slots), nSlots)
	case ieListed && ieSeen != nIE:
		return nil, fmt.Errorf("mtx status lists %d import/export slots where its header says %d", ieSeen, nIE)
	}
	slices.SortStableFunc(inv.Drives, func(a, b Element) int { return a.Number - b.Number })
	slices.SortStableFunc(inv.Slots, func(a, b Element) int { return a.Number - b.Number })
	return &inv, nil
}

// parseMtxHeader parses what follows "Storage Changer ": the device (which
// may itself hold colons, as by-path names do), then "N Drives, M Slots" and,
// in all but old versions, "( K Import/Export )".
func parseMtxHeader(s string) (drives, slots, ie int, ieListed bool, err error) {
	d := strings.Index(s, " Drives, ")
	colon := strings.LastIndexByte(s[:max(d, 0)], ':')
	if d < 0 || colon < 0 {
		return 0, 0, 0, false, errors.New(`want "DEVICE:N Drives, M Slots"`)
	}
	if drives, err = mtxCount(s[colon+1 : d]); err != nil {
		return 0, 0, 0, false, err
	}
	rest := s[d+len(" Drives, "):]
	sl := strings.Index(rest, " Slots")
	if sl < 0 {
		return 0, 0, 0, false, errors.New(`no "Slots" count`)
	}
	if slots, err = mtxCount(rest[:sl]); err != nil {
		return 0, 0, 0, false, err
	}
	rest = strings.TrimSpace(rest[sl+len(" Slots"):])
	if rest == "" {
		return drives, slots, 0, false, nil
	}
	inner, ok := strings.CutPrefix(rest, "(")
	inner, ok2 := strings.CutSuffix(inner, ")")
	f := strings.Fields(inner)
	if !ok || !ok2 || len(f) != 2 || f[1] != "Import/Export" {
		return 0, 0, 0, false, fmt.Errorf("unexpected %q after the slot count", rest)
	}
	if ie, err = mtxCount(f[0]); err != nil {
		return 0, 0, 0, false, err
	}
	if ie > slots {
		return 0, 0, 0, false, fmt.Errorf("%d import/export slots among %d", ie, slots)
	}
	return drives, slots, ie, true, nil
}

func mtxCount(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 || n > maxMtxElements {
		return 0, fmt.Errorf("bad count %q", s)
	}
	return n, nil
}

// parseMtxDrive parses what follows "Data Transfer Element": " N:Empty" or
// " N:Full (Storage Element M Loaded)" with tags. Old mtx versions print no
// number for a single drive; next is the number it then has.
func parseMtxDrive(s string, next int) (Element, error) {
	numStr, status, ok := strings.Cut(s, ":")
	if !ok {
		return Element{}, errors.New("no ':' after the drive number")
	}
	e := Element{Kind: DriveElement, Number: next}
	if numStr = strings.TrimSpace(numStr); numStr != "" {
		n, err := strconv.Atoi(numStr)
		if err != nil || n < 0 || n >= maxMtxElements {
			return Element{}, fmt.Errorf("bad drive number %q", numStr)
		}
		e.Number = n
	}
	state, tags, _ := strings.Cut(status, ":")
	state = strings.TrimSpace(state)
	switch {
	case state == "Empty":
		return e, nil
	case strings.HasPrefix(state, "Full"):
		e.Full = true
	default:
		return Element{}, fmt.Errorf("drive state %q is neither Empty nor Full", state)
	}
	switch src := strings.TrimSpace(strings.TrimPrefix(state, "Full")); src {
	case "", "(Unknown Storage Element Loaded)":
	default:
		n, ok := strings.CutPrefix(src, "(Storage Element ")
		n, ok2 := strings.CutSuffix(n, " Loaded)")
		from, err := strconv.Atoi(n)
		if !ok || !ok2 || err != nil || from < 1 || from > maxMtxElements {
			return Element{}, fmt.Errorf("unexpected %q after Full", src)
		}
		e.From = from
	}
	e.Barcode = mtxVolumeTag(tags)
	e.Cleaning = isCleaningBarcode(e.Barcode)
	return e, nil
}

// parseMtxSlot parses what follows "Storage Element ": "N:Empty",
// "N:Full :VolumeTag=X", "N IMPORT/EXPORT:Full ...".
func parseMtxSlot(s string) (Element, error) {
	head, status, ok := strings.Cut(s, ":")
	if !ok {
		return Element{}, errors.New("no ':' after the slot number")
	}
	e := Element{Kind: SlotElement}
	if h, ie := strings.CutSuffix(strings.TrimSpace(head), " IMPORT/EXPORT"); ie {
		e.Kind, head = ImportExportElement, h
	}
	n, err := strconv.Atoi(strings.TrimSpace(head))
	if err != nil || n < 1 || n > maxMtxElements {
		return Element{}, fmt.Errorf("bad slot number %q", head)
	}
	e.Number = n
	state, tags, _ := strings.Cut(status, ":")
	switch strings.TrimSpace(state) {
	case "Empty":
		return e, nil
	case "Full":
		e.Full = true
	default:
		return Element{}, fmt.Errorf("slot state %q is neither Empty nor Full", state)
	}
	e.Barcode = mtxVolumeTag(tags)
	e.Cleaning = isCleaningBarcode(e.Barcode)
	return e, nil
}

// mtxVolumeTag finds the primary volume tag among the colon-separated tags
// ("VolumeTag=X" for slots, "VolumeTag = X" for drives), leaving out the
// alternate one. Tags hold no colons.
func mtxVolumeTag(tags string) string {
	for _, f := range strings.Split(tags, ":") {
		name, val, ok := strings.Cut(f, "=")
		if ok && strings.TrimSpace(name) == "VolumeTag" {
			return strings.TrimSpace(val)
		}
	}
	return ""
}

// isCleaningBarcode: LTO cleaning cartridges carry labels CLNnnnLn (or
// CLNUnnCU for the universal ones).
func isCleaningBarcode(b string) bool {
	return len(b) >= 3 && strings.EqualFold(b[:3], "CLN")
}

// MtxLibrary is a real library: a changer driven through mtx and st drives.
// Drive i is the changer's data transfer element i.
type MtxLibrary struct {
	changer    string
	drivePaths []string
	program    string
	timeout    time.Duration

	// moves serializes mtx runs: a changer has one robot, and a second
	// command while it moves fails with "not ready" on many libraries.
	moves sync.Mutex

	mu     sync.Mutex
	drives []*mtxDrive
}

var _ Changer = (*MtxLibrary)(nil)

// OpenMtxLibrary opens the library whose changer is the SCSI generic device
// changer (/dev/sgN, or a stable /dev/tape/by-id/... link) and whose drives
// are the st devices drives, given in the changer's drive order: drives[i]
// is what `mtx status` calls Data Transfer Element i. It checks that mtx is
// installed and the devices exist; the changer is first asked by Inventory,
// and a drive opened by Drive.
func OpenMtxLibrary(changer string, drives []string) (*MtxLibrary, error) {
	if changer == "" {
		return nil, errors.New("no changer device: give the library's /dev/sgN (lsscsi -g lists it as mediumx)")
	}
	if len(drives) == 0 {
		return nil, fmt.Errorf("changer %s: no drives: give each drive's /dev/nstN, in the changer's drive order", changer)
	}
	prog, err := findMtx()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(changer); err != nil {
		return nil, &DeviceError{Device: changer, Op: "open changer", Err: fmt.Errorf("%w; find the changer's /dev/sgN with lsscsi -g (type mediumx; the sg module must be loaded)", err)}
	}
	for _, d := range drives {
		if _, err := os.Stat(d); err != nil {
			return nil, &DeviceError{Device: d, Op: "open drive", Err: fmt.Errorf("%w; find the drive's /dev/nstN with lsscsi -g (type tape; the st module must be loaded)", err)}
		}
	}
	return newMtxLibrary(prog, changer, drives), nil
}

// findMtx finds the mtx program: Debian installs it in /usr/sbin, which a
// service user's PATH may lack.
func findMtx() (string, error) {
	if p, err := exec.LookPath("mtx"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mtx", "/sbin/mtx", "/usr/local/sbin/mtx"} {
		if p, err := exec.LookPath(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("the mtx program is not installed: install the mtx package (apt-get install mtx, dnf install mtx)")
}

func newMtxLibrary(program, changer string, drives []string) *MtxLibrary {
	return &MtxLibrary{
		changer:    changer,
		drivePaths: slices.Clone(drives),
		program:    program,
		timeout:    mtxTimeout,
		drives:     make([]*mtxDrive, len(drives)),
	}
}

// Name is the changer device.
func (l *MtxLibrary) Name() string { return l.changer }

// NumDrives is the number of drives given to OpenMtxLibrary.
func (l *MtxLibrary) NumDrives() int { return len(l.drivePaths) }

// run runs mtx -f changer args and returns its standard output.
func (l *MtxLibrary) run(ctx context.Context, args ...string) ([]byte, error) {
	l.moves.Lock()
	defer l.moves.Unlock()
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.program, append([]string{"-f", l.changer}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second // a child of mtx holding its output open
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (mtx ran longer than %v: is the robot stuck? check the library's panel)", ctx.Err(), l.timeout)
	}
	return stdout.Bytes(), &DeviceError{Device: l.changer, Op: "mtx " + strings.Join(args, " "), Err: mtxFailure(l.changer, stderr.Bytes(), err)}
}

// mtxFailure explains a failed mtx run from its standard error: a move from
// an empty place is ErrNoCartridge; anything else quotes mtx and says what
// to check.
func mtxFailure(changer string, stderr []byte, runErr error) error {
	msg := mtxMessage(stderr)
	quoted := ""
	if msg != "" {
		quoted = fmt.Sprintf(": mtx says %q", msg)
	}
	switch {
	case strings.Contains(msg, "is Empty") || strings.Contains(msg, "No Source for tape"):
		return fmt.Errorf("%w%s", ErrNoCartridge, quoted)
	case strings.Contains(msg, "Already Full"):
		return fmt.Errorf("%w%s; the destination holds a cartridge: run tape inventory and pick an empty slot", runErr, quoted)
	case strings.Contains(msg, "Drive needs offline before move"):
		return fmt.Errorf("%w%s; the drive still holds the tape: unload it in the drive first", runErr, quoted)
	}
	return fmt.Errorf("%w%s; check that %s is the changer (lsscsi -g lists it as mediumx, with its own /dev/sgN), "+
		"that this user may open it (its group, usually tape or disk, or a udev rule), and that the mtx package is installed", runErr, quoted, changer)
}

// mtxMessage is what mtx printed to standard error, on one line: its own
// messages, and of the sense data it decodes line by line only the sense
// key and codes, which say what happened.
func mtxMessage(stderr []byte) string {
	var lines []string
	for _, l := range strings.Split(string(stderr), "\n") {
		l = strings.TrimSpace(l)
		if sense, ok := strings.CutPrefix(l, "mtx: Request Sense: "); ok {
			if !strings.HasPrefix(sense, "Sense Key=") && !strings.HasPrefix(sense, "Additional Sense") {
				continue
			}
			l = sense
		}
		if l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > 6 {
		lines = lines[len(lines)-6:]
	}
	return strings.Join(lines, " / ")
}

// Inventory runs mtx status. A changer reports a unit attention once after
// its door was opened or it was reset; the status is asked again then.
func (l *MtxLibrary) Inventory(ctx context.Context) (*Inventory, error) {
	out, err := l.run(ctx, "status")
	if err != nil && strings.Contains(err.Error(), "Unit Attention") && ctx.Err() == nil {
		out, err = l.run(ctx, "status")
	}
	if err != nil {
		return nil, err
	}
	inv, err := ParseMtxStatus(out)
	if err != nil {
		return nil, &DeviceError{Device: l.changer, Op: "mtx status", Err: fmt.Errorf("%w; report this output with the library's model", err)}
	}
	if len(inv.Drives) < len(l.drivePaths) {
		return nil, &DeviceError{Device: l.changer, Op: "mtx status", Err: fmt.Errorf("the changer has %d drives where %d are configured: give only its drives, in its order", len(inv.Drives), len(l.drivePaths))}
	}
	return inv, nil
}

func (l *MtxLibrary) checkDrive(drive int) error {
	if drive < 0 || drive >= len(l.drivePaths) {
		return &DeviceError{Device: l.changer, Op: fmt.Sprintf("drive %d", drive), Err: fmt.Errorf("no such drive: the library has drives 0 to %d", len(l.drivePaths)-1)}
	}
	return nil
}

func checkSlot(changer string, slot int) error {
	if slot < 1 {
		return &DeviceError{Device: changer, Op: fmt.Sprintf("slot %d", slot), Err: errors.New("no such slot: slots are numbered from 1")}
	}
	return nil
}

// Load moves the cartridge in slot into drive.
func (l *MtxLibrary) Load(ctx context.Context, slot, drive int) error {
	if err := l.checkDrive(drive); err != nil {
		return err
	}
	if err := checkSlot(l.changer, slot); err != nil {
		return err
	}
	_, err := l.run(ctx, "load", strconv.Itoa(slot), strconv.Itoa(drive))
	return err
}

// Unload ejects the cartridge in drive through the st driver (most
// changers cannot take a tape the drive still holds), then moves it to slot.
func (l *MtxLibrary) Unload(ctx context.Context, drive, slot int) error {
	if err := l.checkDrive(drive); err != nil {
		return err
	}
	if err := checkSlot(l.changer, slot); err != nil {
		return err
	}
	// A drive that cannot be opened (another process has it) cannot eject;
	// some changers pull the tape all the same, the others say so.
	var driveErr error
	if d, err := l.Drive(drive); err != nil {
		driveErr = err
	} else if err := d.Unload(ctx); err != nil && !errors.Is(err, ErrNoMedium) {
		return err
	}
	_, err := l.run(ctx, "unload", strconv.Itoa(slot), strconv.Itoa(drive))
	if err != nil && driveErr != nil {
		return fmt.Errorf("%w (the drive could not eject the tape first: %v)", err, driveErr)
	}
	return err
}

// Transfer moves a cartridge between two slots.
func (l *MtxLibrary) Transfer(ctx context.Context, from, to int) error {
	if err := checkSlot(l.changer, from); err != nil {
		return err
	}
	if err := checkSlot(l.changer, to); err != nil {
		return err
	}
	_, err := l.run(ctx, "transfer", strconv.Itoa(from), strconv.Itoa(to))
	return err
}

// Drive returns drive n, opening its st device on first use. The library
// owns it (Close of the library closes it): the st driver lets a drive be
// open once, so the same Drive is handed out until it is closed.
func (l *MtxLibrary) Drive(n int) (Drive, error) {
	if err := l.checkDrive(n); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if d := l.drives[n]; d != nil && !d.closed {
		return d, nil
	}
	st, err := OpenST(l.drivePaths[n])
	if err != nil {
		return nil, err
	}
	d := &mtxDrive{Drive: st, lib: l}
	l.drives[n] = d
	return d, nil
}

// Close closes the drives it opened.
func (l *MtxLibrary) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for i, d := range l.drives {
		if d != nil && !d.closed {
			d.closed = true
			errs = append(errs, d.Drive.Close())
		}
		l.drives[i] = nil
	}
	return errors.Join(errs...)
}

// mtxDrive is a drive the library keeps open; closing it lets the next
// Drive call open the device afresh.
type mtxDrive struct {
	Drive
	lib    *MtxLibrary
	closed bool
}

func (d *mtxDrive) Close() error {
	d.lib.mu.Lock()
	defer d.lib.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	return d.Drive.Close()
}
