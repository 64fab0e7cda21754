package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// Creating the files of a restore.
//
// A create costs ext4 tens to hundreds of microseconds, much of it spent
// waiting (the directory's lock, the journal), and a restore of many
// small files makes one per file. Made by the walk, the creates line up
// one after another; made by the readers as their chunks arrive, a reader
// blocked in a create leaves its pack's reads and checks idle. So a file
// the walk does not have to create itself (a hard link's leader it does:
// its links are made at once) is created ahead of the readers by a few
// creator goroutines: as the feeder queues a pack for the readers, the
// files its chunks go to are queued for the creators, so the creators
// work on the packs the readers are about to read, each pack's files from
// the last, as the pack's reader writes them from the first. The first to
// come creates the file: a creator, the reader that writes the file's
// first chunk, or whoever finishes it (a file with no stored chunk, or
// whose chunks never came), under the file's lock, so each file is
// created once, with O_EXCL. A reader may wait for a
// creator's create of the file it writes; nothing else waits for the
// creators: a creator passes over a file whose lock a reader holds, and
// the files of a pack their queue has no room for are created by the
// readers.
//
// A created file stays open until it is finished while fewer than
// holdMax files are held; creators take at most three quarters of that,
// so a reader creating a file of several chunks still finds room. A file
// of one chunk created by a reader is closed as soon as it is written,
// and one of several chunks that finds no room is opened again by each
// reader that writes to it (fileCache).

// createdAhead, when set (tests), is called with each file a creator
// created.
var createdAhead func(path string)

// createQueue is how many packs' files can wait for the creators.
const createQueue = 64

// creates holds the creator goroutines and the count of held files.
type creates struct {
	queue   chan []*openFile
	wg      sync.WaitGroup
	mu      sync.Mutex
	room    sync.Cond // signalled when a held file is closed, or stop is set
	held    int64     // files held open from their creation until finished
	max     int64     // holdMax: at most this many held
	stop    bool      // creators give up waiting for room
	started bool
}

// startCreators starts n creators; none when no file can be held open.
func (rs *restorer) startCreators(n int) {
	c := &rs.creates
	c.room.L = &c.mu
	c.max = rs.holdMax
	if c.max < 4 || n <= 0 {
		return
	}
	c.started = true
	c.queue = make(chan []*openFile, createQueue)
	for range n {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			for files := range c.queue {
				// From the end: the reader that takes the pack
				// writes its files from the front, and meets the
				// creator once, not file after file.
				for _, of := range slices.Backward(files) {
					if rs.ctx.Err() != nil || !rs.createAhead(of) {
						break // drain: the feeder may still be queuing
					}
				}
			}
		}()
	}
}

// createFilesOf queues the files pp's chunks go to for the creators, as
// the feeder hands pp to the readers.
func (rs *restorer) createFilesOf(pp *packPlan) {
	if !rs.creates.started {
		return
	}
	var files []*openFile
	for _, e := range pp.ents {
		if of := e.of; of.late && (len(files) == 0 || files[len(files)-1] != of) {
			files = append(files, of)
		}
	}
	select {
	case rs.creates.queue <- files:
	default:
	}
}

// closeCreateQueue ends the feeder's queuing; stopCreators, once every
// file is finished, ends the creators.
func (rs *restorer) closeCreateQueue() {
	if rs.creates.started {
		close(rs.creates.queue)
	}
}

func (rs *restorer) stopCreators() {
	c := &rs.creates
	c.mu.Lock()
	c.stop = true
	c.mu.Unlock()
	c.room.Broadcast()
	c.wg.Wait()
}

// createAhead creates of for a creator, waiting for room to hold it open;
// false when the creators are stopped.
func (rs *restorer) createAhead(of *openFile) bool {
	if !of.mu.TryLock() {
		return true // a reader is creating it, or writing to it
	}
	done := of.created
	of.mu.Unlock()
	if done {
		return true
	}
	c := &rs.creates
	c.mu.Lock()
	for c.held >= c.max*3/4 && !c.stop {
		c.room.Wait()
	}
	if c.stop {
		c.mu.Unlock()
		return false
	}
	c.held++
	c.mu.Unlock()
	if !of.mu.TryLock() {
		rs.release()
		return true
	}
	defer of.mu.Unlock()
	if of.created {
		rs.release()
		return true
	}
	if fd, ok := rs.createOnce(of); ok {
		of.fd, of.held = fd, true
		if createdAhead != nil {
			createdAhead(of.path)
		}
	} else {
		rs.release()
	}
	return true
}

// hold takes room for one more held file, if there is any.
func (rs *restorer) hold() bool {
	c := &rs.creates
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held >= c.max {
		return false
	}
	c.held++
	return true
}

// release gives back the room of a held file that is closed.
func (rs *restorer) release() {
	c := &rs.creates
	c.mu.Lock()
	c.held--
	c.mu.Unlock()
	c.room.Signal()
}

// createLate creates a file the walk did not create, if no one has yet:
// called by each reader before it writes one of the file's chunks (fc,
// its descriptors), and when the file is finished (fc nil) for a file
// no chunk reached (the pack could not be warmed, the restore was
// stopped). The caller reads of.fd, of.failed, of.dev and of.ino only
// after this call.
func (rs *restorer) createLate(of *openFile, fc *fileCache) {
	of.mu.Lock()
	defer of.mu.Unlock()
	if of.created {
		return
	}
	fd, ok := rs.createOnce(of)
	switch {
	case !ok:
	case fc == nil || of.stored <= 1:
		// Written now, or never: closed when finished, soon.
		of.fd = fd
	case rs.hold():
		of.fd, of.held = fd, true
	default:
		// Every reader that writes to it opens it again (fileCache), and
		// checks it is this file.
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			rs.createFailed(of, fmt.Errorf("restore %s: %w", of.path, &os.PathError{Op: "stat", Path: of.path, Err: err}))
			return
		}
		of.dev, of.ino = st.Dev, st.Ino
		fc.adopt(of, fd)
	}
}

// createOnce creates of, which no one has (of.mu held); a failed create
// stops the restore, as a failed create in the walk does (createErr),
// except one whose directory was replaced by a symlink: that file is
// listed as not restored and the restore goes on (createStop).
func (rs *restorer) createOnce(of *openFile) (int, bool) {
	of.created = true
	perm, final := rs.createMode(of.n)
	of.modeSet = final
	fd, aside, err := rs.create(of.path, of.n, of.size, of.alloc, perm)
	of.aside = aside
	if err != nil {
		rs.createFailed(of, err)
		return -1, false
	}
	return fd, true
}

func (rs *restorer) createFailed(of *openFile, err error) {
	of.failed = true
	if rs.cannotCreate(of.rel, filepath.Base(of.path), err) {
		return // a name the target cannot hold (vfat: ':'): that file only
	}
	if !rs.single && (errors.Is(err, errStuck) || errors.Is(err, errBusy) || errors.Is(err, errInTheWay)) {
		// What was in its way cannot be unlinked (clearWayAt): that
		// file only, unless it is the one entry asked for.
		rs.skip(of.rel, errors.Unwrap(err))
		return
	}
	rs.mu.Lock()
	if rs.createErr == nil {
		rs.createErr = err
	}
	rs.mu.Unlock()
}

// lateErr is the error of the first file createLate could not create.
func (rs *restorer) lateErr() error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.createErr
}

// adopt makes fd, a descriptor of of the caller just created, this
// reader's descriptor of of, as if get had opened it.
func (c *fileCache) adopt(of *openFile, fd int) {
	if len(c.order) >= fileCacheSize {
		c.release(c.order[0])
	}
	c.fds[of] = fd
	c.order = append(c.order, of)
}
