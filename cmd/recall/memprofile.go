package main

import (
	"bytes"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// memProfiler keeps the heap profile taken when the heap in use was at
// its highest (RECALL_MEMPROFILE): a profile taken at exit shows what is
// left, not what made the peak RSS /usr/bin/time reports.
type memProfiler struct {
	path string
	stop chan struct{}
	done chan struct{}
	best []byte
	peak uint64
}

// startMemProfile samples the heap every 50 ms and keeps a profile each
// time it grows by a tenth past the highest so far; nil when path is "".
func startMemProfile(path string) *memProfiler {
	if path == "" {
		return nil
	}
	runtime.MemProfileRate = 64 << 10
	m := &memProfiler{path: path, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > m.peak+m.peak/10 {
				m.peak = ms.HeapInuse
				var b bytes.Buffer
				// The profile shows the heap as of the last collection.
				runtime.GC()
				if pprof.Lookup("heap").WriteTo(&b, 0) == nil {
					m.best = b.Bytes()
				}
			}
		}
	}()
	return m
}

// Stop writes the kept profile to the file named by RECALL_MEMPROFILE.
func (m *memProfiler) Stop() {
	if m == nil {
		return
	}
	close(m.stop)
	<-m.done
	if m.best != nil {
		if err := os.WriteFile(m.path, m.best, 0o644); err != nil {
			logf("warning: RECALL_MEMPROFILE: %v", err)
		} else {
			logf("heap profile at a peak of %d MiB in use written to %s", m.peak>>20, m.path)
		}
	}
}
