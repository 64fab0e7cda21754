package fuzzcheck

import "testing"

var sink []byte

// fakeT records a failure instead of ending the test.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Fatalf(string, ...any) { f.failed = true }

func TestBounded(t *testing.T) {
	for _, tc := range []struct {
		alloc, limit uint64
		fail         bool
	}{
		{alloc: 0, limit: Slack},
		{alloc: 64 << 10, limit: Slack},
		{alloc: 4 << 20, limit: Slack, fail: true},
		{alloc: 4 << 20, limit: Linear(1<<20, 8)},
		{alloc: 64 << 20, limit: Linear(1<<20, 8), fail: true},
	} {
		ft := &fakeT{TB: t}
		Bounded(ft, "test", tc.limit, func() { sink = make([]byte, tc.alloc) })
		if ft.failed != tc.fail {
			t.Errorf("allocating %d with limit %d: failed %v, want %v", tc.alloc, tc.limit, ft.failed, tc.fail)
		}
	}
}
