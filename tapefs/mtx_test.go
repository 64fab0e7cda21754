package tapefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/internal/fuzzcheck"
	"github.com/recall-backup/recall/internal/testskip"
)

// loadMtx reads a recorded mtx status from testdata/mtx, without the
// comment lines at its top that name its source.
func loadMtx(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "mtx", name))
	if err != nil {
		t.Fatal(err)
	}
	for bytes.HasPrefix(b, []byte("#")) {
		_, b, _ = bytes.Cut(b, []byte("\n"))
	}
	return b
}

// slots lists storage slots 1..n, empty, the last ie of them import/export,
// then sets the full ones: number -> barcode ("" for a full slot without).
func slots(n, ie int, full map[int]string) []Element {
	var s []Element
	for i := 1; i <= n; i++ {
		e := Element{Kind: SlotElement, Number: i}
		if i > n-ie {
			e.Kind = ImportExportElement
		}
		if bc, ok := full[i]; ok {
			e.Full, e.Barcode, e.Cleaning = true, bc, strings.HasPrefix(bc, "CLN")
		}
		s = append(s, e)
	}
	return s
}

func drive(n, from int, barcode string) Element {
	return Element{Kind: DriveElement, Number: n, Full: true, From: from, Barcode: barcode, Cleaning: strings.HasPrefix(barcode, "CLN")}
}

func emptyDrive(n int) Element { return Element{Kind: DriveElement, Number: n} }

func TestParseMtxStatus(t *testing.T) {
	quantumSlots := map[int]string{}
	for i := 2; i <= 8; i++ {
		quantumSlots[i] = fmt.Sprintf("VIT%03dL6", i-1)
	}
	quantumSlots[10] = "VIT009L6"
	quantumBare := map[int]string{}
	for i := range quantumSlots {
		quantumBare[i] = ""
	}
	lto9 := map[int]string{}
	for i, bc := range []string{"AAK788L9", "CLN670L1", "AAK780L9", "AAK783L9", "AAK876L9", "AAK786L9", "AAK789L9",
		"AAK782L9", "AAK877L9", "AAK878L9", "AAK879L9", "AAK781L9", "AAK790L9", "AAK793L9", "AAK796L9", "AAK799L9",
		"AAK791L9", "AAK794L9", "AAK797L9", "AAK785L9", "AAK792L9", "AAK795L9", "AAK798L9"} {
		lto9[i+1] = bc
	}
	for _, tc := range []struct {
		file string
		want Inventory
	}{
		{
			file: "quantum-4drives-84slots.txt",
			want: Inventory{
				Drives: []Element{drive(0, 9, "VIT008L6"), drive(1, 1, "VIT000L6"), emptyDrive(2), emptyDrive(3)},
				Slots:  slots(84, 4, quantumSlots),
			},
		},
		{
			file: "quantum-4drives-84slots-nobarcode.txt",
			want: Inventory{
				Drives: []Element{drive(0, 9, ""), drive(1, 1, ""), emptyDrive(2), emptyDrive(3)},
				Slots:  slots(84, 4, quantumBare),
			},
		},
		{
			file: "lto9-1drive-24slots-cleaning.txt",
			want: Inventory{Drives: []Element{drive(0, 24, "AAK787L9")}, Slots: slots(24, 0, lto9)},
		},
		{
			file: "2drives-24slots-4ie-cleaning.txt",
			want: Inventory{
				Drives: []Element{emptyDrive(0), emptyDrive(1)},
				Slots:  slots(24, 4, map[int]string{1: "CLN002CU", 2: "test22L1", 3: "test23L1", 4: "CLN001CU", 5: "test1"}),
			},
		},
		{
			file: "2drives-24slots-alternatevolumetag.txt",
			want: Inventory{
				Drives: []Element{drive(0, 3, "test23L1"), drive(1, 0, "test22L1")},
				Slots:  slots(24, 4, map[int]string{1: "CLN002CU", 4: "CLN001CU", 5: "", 21: "test1"}),
			},
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, err := ParseMtxStatus(loadMtx(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Drives, tc.want.Drives) {
				t.Errorf("drives:\n got %+v\nwant %+v", got.Drives, tc.want.Drives)
			}
			if len(got.Slots) != len(tc.want.Slots) {
				t.Fatalf("%d slots, want %d", len(got.Slots), len(tc.want.Slots))
			}
			for i := range got.Slots {
				if got.Slots[i] != tc.want.Slots[i] {
					t.Errorf("slot %d: got %+v, want %+v", i+1, got.Slots[i], tc.want.Slots[i])
				}
			}
		})
	}
}

func TestParseMtxStatusRejects(t *testing.T) {
	good := string(loadMtx(t, "2drives-24slots-4ie-cleaning.txt"))
	lines := strings.Split(strings.TrimSuffix(good, "\n"), "\n")
	for _, tc := range []struct {
		name, out, words string
	}{
		{"empty", "", "no \"Storage Changer\""},
		{"an error message", "cannot open SCSI device '/dev/sg9' - No such file or directory\n", "no \"Storage Changer\""},
		{"cut short", strings.Join(lines[:len(lines)-3], "\n"), "lists 21 slots where its header says 24"},
		{"a drive missing", strings.Replace(good, "Data Transfer Element 1:Empty\n", "", 1), "lists 1 drives"},
		{"import/export count", strings.Replace(good, "24 IMPORT/EXPORT:", "24:", 1), "3 import/export slots"},
		{"slot twice", strings.Replace(good, "Storage Element 7:", "Storage Element 6:", 1), "slot 6 listed twice"},
		{"slot beyond the count", strings.Replace(good, "Storage Element 7:", "Storage Element 99:", 1), "slot 99 of 24"},
		{"slot 0", strings.Replace(good, "Storage Element 7:", "Storage Element 0:", 1), "bad slot number"},
		{"state cut", strings.Replace(good, "Storage Element 7:Empty", "Storage Element 7:Emp", 1), "neither Empty nor Full"},
		{"drive from a slot beyond", strings.Replace(good, "Data Transfer Element 0:Empty", "Data Transfer Element 0:Full (Storage Element 30 Loaded)", 1), "slot 30 of 24"},
		{"drive source garbled", strings.Replace(good, "Data Transfer Element 0:Empty", "Data Transfer Element 0:Full (Storage Element x Loaded)", 1), "after Full"},
		{"two headers", lines[0] + "\n" + good, "a second header"},
		{"header without counts", "  Storage Changer /dev/sg3\n", "want \"DEVICE:N Drives"},
		{"huge count", "  Storage Changer /dev/sg3:1 Drives, 99999999999 Slots ( 0 Import/Export )\n", "bad count"},
		{"slot before the header", "      Storage Element 1:Empty\n" + good, "before the header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := ParseMtxStatus([]byte(tc.out))
			if err == nil || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("ParseMtxStatus = %+v, %v; want an error saying %q", inv, err, tc.words)
			}
		})
	}
}

// TestParseMtxStatusOldHeader: old mtx versions print no import/export
// count, and old versions no number for a single drive.
func TestParseMtxStatusOldHeader(t *testing.T) {
	out := "  Storage Changer /dev/sgd:1 Drives, 3 Slots\nData Transfer Element:Full (Storage Element 2 Loaded)\n" +
		"      Storage Element 1:Full :VolumeTag=CLNA0001\n      Storage Element 2:Empty\n      Storage Element 3:Full \n"
	got, err := ParseMtxStatus([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := &Inventory{
		Drives: []Element{drive(0, 2, "")},
		Slots:  slots(3, 0, map[int]string{1: "CLNA0001", 3: ""}),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func FuzzParseMtxStatus(f *testing.F) {
	entries, err := os.ReadDir(filepath.Join("testdata", "mtx"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		f.Add(loadMtx(f, e.Name()))
	}
	f.Add([]byte("Storage Changer x:0 Drives, 0 Slots ( 0 Import/Export )\n"))
	f.Add([]byte("Storage Changer a:b:1 Drives, 1 Slots\nData Transfer Element:Full (Unknown Storage Element Loaded):VolumeTag = :\n Storage Element 1 IMPORT/EXPORT:Full :VolumeTag\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		var inv *Inventory
		var err error
		fuzzcheck.Bounded(t, "ParseMtxStatus", fuzzcheck.Linear(len(out), 64), func() {
			inv, err = ParseMtxStatus(out)
		})
		if err != nil {
			return
		}
		// What parses is a consistent inventory: unique numbers in order,
		// kinds right, nothing in an empty place, sources within the slots.
		for i, d := range inv.Drives {
			if d.Kind != DriveElement || (i > 0 && d.Number <= inv.Drives[i-1].Number) {
				t.Fatalf("drive %d: %+v", i, d)
			}
			if !d.Full && (d.Barcode != "" || d.From != 0) || d.From > len(inv.Slots) {
				t.Fatalf("drive %d: %+v with %d slots", i, d, len(inv.Slots))
			}
		}
		for i, s := range inv.Slots {
			if s.Kind == DriveElement || s.Number < 1 || (i > 0 && s.Number <= inv.Slots[i-1].Number) {
				t.Fatalf("slot %d: %+v", i, s)
			}
			if !s.Full && s.Barcode != "" || s.Cleaning != isCleaningBarcode(s.Barcode) {
				t.Fatalf("slot %d: %+v", i, s)
			}
		}
	})
}

// fakeMtx writes a stand-in for the mtx program: it logs its arguments and
// answers each command with what script gives for it (a shell fragment).
// It tests how the library runs mtx, not what a changer does.
func fakeMtx(t *testing.T, script map[string]string) (prog, log string) {
	t.Helper()
	dir := t.TempDir()
	log = filepath.Join(dir, "calls")
	var sh strings.Builder
	fmt.Fprintf(&sh, "#!/bin/sh\necho \"$*\" >> %s\ncase \"$3\" in\n", log)
	for cmd, body := range script {
		fmt.Fprintf(&sh, "%s) %s ;;\n", cmd, body)
	}
	sh.WriteString("*) echo \"fake mtx: unexpected $*\" >&2; exit 2 ;;\nesac\n")
	prog = filepath.Join(dir, "mtx")
	if err := os.WriteFile(prog, []byte(sh.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return prog, log
}

func calls(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestMtxLibraryRunsMtx(t *testing.T) {
	status := filepath.Join("testdata", "mtx", "2drives-24slots-4ie-cleaning.txt")
	abs, err := filepath.Abs(status)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		script map[string]string
		do     func(l *MtxLibrary) error
		calls  []string
		err    error  // matched with errors.Is
		words  string // the error says
	}{
		{
			name:   "inventory",
			script: map[string]string{"status": "grep -v '^#' " + abs},
			do: func(l *MtxLibrary) error {
				inv, err := l.Inventory(ctx)
				if err == nil && (len(inv.Drives) != 2 || len(inv.Slots) != 24 || !inv.Slots[0].Cleaning) {
					return fmt.Errorf("inventory %+v", inv)
				}
				return err
			},
			calls: []string{"-f /dev/sg7 status"},
		},
		{
			// A changer answers once with a unit attention after its door
			// was opened; the status is asked again.
			name: "unit attention",
			script: map[string]string{"status": `if [ ! -e ` + "$0.once" + ` ]; then touch $0.once; ` +
				`echo "mtx: Request Sense: Sense Key=Unit Attention" >&2; echo "mtx: Request Sense: Additional Sense Code = 28" >&2; ` +
				`echo "READ ELEMENT STATUS Command Failed" >&2; exit 1; fi; grep -v '^#' ` + abs},
			do: func(l *MtxLibrary) error {
				_, err := l.Inventory(ctx)
				return err
			},
			calls: []string{"-f /dev/sg7 status", "-f /dev/sg7 status"},
		},
		{
			name:   "load",
			script: map[string]string{"load": "echo 'Loading media from Storage Element 3 into drive 1...done'"},
			do:     func(l *MtxLibrary) error { return l.Load(ctx, 3, 1) },
			calls:  []string{"-f /dev/sg7 load 3 1"},
		},
		{
			name:   "transfer",
			script: map[string]string{"transfer": "true"},
			do:     func(l *MtxLibrary) error { return l.Transfer(ctx, 5, 24) },
			calls:  []string{"-f /dev/sg7 transfer 5 24"},
		},
		{
			name:   "load from an empty slot",
			script: map[string]string{"load": "echo 'mtx: Source Element Address 1006 is Empty' >&2; exit 1"},
			do:     func(l *MtxLibrary) error { return l.Load(ctx, 6, 0) },
			calls:  []string{"-f /dev/sg7 load 6 0"},
			err:    ErrNoCartridge,
			words:  "Source Element Address 1006 is Empty",
		},
		{
			// The drive's st device cannot be opened here, so the library
			// goes on with the move and reports both when it fails.
			name:   "unload into a full slot",
			script: map[string]string{"unload": "echo 'mtx: Storage Element 2 is Already Full' >&2; exit 1"},
			do:     func(l *MtxLibrary) error { return l.Unload(ctx, 0, 2) },
			calls:  []string{"-f /dev/sg7 unload 2 0"},
			words:  "pick an empty slot",
		},
		{
			name:   "unload",
			script: map[string]string{"unload": "echo 'Unloading drive 0 into Storage Element 9...done'"},
			do:     func(l *MtxLibrary) error { return l.Unload(ctx, 0, 9) },
			calls:  []string{"-f /dev/sg7 unload 9 0"},
		},
		{
			name:   "no access to the changer",
			script: map[string]string{"status": "echo \"cannot open SCSI device '/dev/sg7' - Permission denied\" >&2; exit 1"},
			do: func(l *MtxLibrary) error {
				_, err := l.Inventory(ctx)
				return err
			},
			calls: []string{"-f /dev/sg7 status"},
			words: `mtx says "cannot open SCSI device '/dev/sg7' - Permission denied"; check that /dev/sg7 is the changer`,
		},
		{
			name:  "no such drive",
			do:    func(l *MtxLibrary) error { return l.Load(ctx, 1, 2) },
			words: "the library has drives 0 to 1",
		},
		{
			name:  "no such slot",
			do:    func(l *MtxLibrary) error { return l.Transfer(ctx, 0, 3) },
			words: "slots are numbered from 1",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prog, log := fakeMtx(t, tc.script)
			dir := t.TempDir()
			l := newMtxLibrary(prog, "/dev/sg7", []string{filepath.Join(dir, "nst0"), filepath.Join(dir, "nst1")})
			defer l.Close()
			err := tc.do(l)
			if got := calls(t, log); !reflect.DeepEqual(got, tc.calls) {
				t.Errorf("mtx ran as %q, want %q", got, tc.calls)
			}
			if tc.err == nil && tc.words == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || (tc.err != nil && !errors.Is(err, tc.err)) || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("err = %v; want %v saying %q", err, tc.err, tc.words)
			}
			var de *DeviceError
			if !errors.As(err, &de) || de.Device != "/dev/sg7" {
				t.Errorf("err = %v does not name the changer", err)
			}
		})
	}
}

// TestMtxLibraryOneMoveAtATime: jobs on two drives ask for moves at once;
// the changer gets them one after the other.
func TestMtxLibraryOneMoveAtATime(t *testing.T) {
	// The fake holds a directory while it "moves"; a second run that finds
	// it there fails as a busy robot would.
	prog, log := fakeMtx(t, map[string]string{"load": `mkdir "$0.busy" || { echo "mtx: robot busy" >&2; exit 1; }; sleep 0.1; rmdir "$0.busy"`})
	l := newMtxLibrary(prog, "/dev/sg7", []string{"/dev/nst0", "/dev/nst1"})
	errs := make(chan error)
	for i := range 4 {
		go func() { errs <- l.Load(context.Background(), i+1, i%2) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := len(calls(t, log)); n != 4 {
		t.Errorf("mtx ran %d times, want 4", n)
	}
}

func TestMtxLibraryTimeout(t *testing.T) {
	prog, _ := fakeMtx(t, map[string]string{"status": "exec sleep 30"})
	l := newMtxLibrary(prog, "/dev/sg7", []string{"/dev/nst0"})
	l.timeout = 100 * time.Millisecond
	start := time.Now()
	_, err := l.Inventory(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "robot stuck") {
		t.Fatalf("err = %v, want the deadline and what to check", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a stuck mtx held the library for %v", d)
	}
}

// TestOpenMtxLibrary: the devices must exist, and the real mtx run on
// what is not a changer is quoted with what to check.
func TestOpenMtxLibrary(t *testing.T) {
	prog, err := findMtx()
	if err != nil {
		testskip.Skip(t, "the mtx program is not installed (package mtx)")
	}
	dir := t.TempDir()
	missing := filepath.Join(dir, "sg9")
	if _, err := OpenMtxLibrary(missing, []string{"/dev/null"}); err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "lsscsi -g") {
		t.Errorf("OpenMtxLibrary(%s) = %v, want an error naming it and saying how to find the changer", missing, err)
	}
	if _, err := OpenMtxLibrary("/dev/null", []string{missing}); err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "/dev/nstN") {
		t.Errorf("OpenMtxLibrary with drive %s = %v, want an error naming it", missing, err)
	}
	if _, err := OpenMtxLibrary("/dev/null", nil); err == nil || !strings.Contains(err.Error(), "/dev/nstN") {
		t.Errorf("OpenMtxLibrary without drives = %v", err)
	}
	l, err := OpenMtxLibrary("/dev/null", []string{"/dev/null"})
	if err != nil {
		t.Fatal(err)
	}
	if l.program != prog || l.Name() != "/dev/null" || l.NumDrives() != 1 {
		t.Errorf("library %+v", l)
	}
	_, err = l.Inventory(context.Background())
	if err == nil || !strings.Contains(err.Error(), `mtx says "/dev/null is not an sg device`) || !strings.Contains(err.Error(), "lsscsi -g") {
		t.Errorf("Inventory of /dev/null = %v, want mtx quoted and what to check", err)
	}
}

func TestMtxInventoryMoreDrivesThanTheChanger(t *testing.T) {
	abs, err := filepath.Abs(filepath.Join("testdata", "mtx", "lto9-1drive-24slots-cleaning.txt"))
	if err != nil {
		t.Fatal(err)
	}
	prog, _ := fakeMtx(t, map[string]string{"status": "grep -v '^#' " + abs})
	l := newMtxLibrary(prog, "/dev/sg7", []string{"/dev/nst0", "/dev/nst1"})
	if _, err := l.Inventory(context.Background()); err == nil || !strings.Contains(err.Error(), "has 1 drives where 2 are configured") {
		t.Fatalf("Inventory = %v", err)
	}
}
