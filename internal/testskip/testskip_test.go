package testskip

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// fakeTB records how Skip ended the test; both ends exit the goroutine,
// as the real ones do.
type fakeTB struct {
	testing.TB
	skipped, failed string
	returned        bool
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skip(args ...any) {
	f.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestSkip(t *testing.T) {
	for _, tc := range []struct {
		env      string
		wantFail bool
	}{
		{"", false},
		{"0", false},
		{"yes", false},
		{"1", true},
	} {
		t.Run("env="+tc.env, func(t *testing.T) {
			t.Setenv(DisallowEnv, tc.env)
			f := &fakeTB{}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Skip(f, "needs %s", "root")
				f.returned = true
			}()
			<-done
			switch {
			case f.returned:
				t.Fatal("Skip returned")
			case tc.wantFail && (f.failed == "" || f.skipped != ""):
				t.Fatalf("skipped %q, failed %q: want a failure", f.skipped, f.failed)
			case !tc.wantFail && (f.skipped == "" || f.failed != ""):
				t.Fatalf("skipped %q, failed %q: want a skip", f.skipped, f.failed)
			}
			if got := f.skipped + f.failed; !strings.Contains(got, "needs root") {
				t.Fatalf("message %q does not give the reason", got)
			}
		})
	}
}
