package fs

import (
	"container/list"
	"sync"

	"github.com/recall-backup/recall/chunkstore"
)

// cache is a byte-sized LRU of immutable values keyed by blob id, split
// into shards so concurrent readers rarely meet on one mutex. A shard is
// locked for map and list updates only, never while loading. Concurrent
// gets of one missing key share one load. Errors are not cached, so a
// transient failure is retried by the next reader.
//
// A value heavier than its shard's share (a directory of 100,000 entries
// decodes to ~20 MiB) is still kept, alone in its shard, when it is no
// heavier than the whole budget: not caching it would decode it again for
// every lookup in it. So the total can exceed the budget by such values.
// With giants set (the tree cache), one value heavier than the whole
// budget is kept too, the latest such one: a directory of 300,000 entries
// weighs more than the 64 MiB default, and a listing of it looks up
// every entry, each lookup decoding it whole again, and each entry the
// kernel kept pinning its own copy (a mount grew to 24 GB listing one).
// Memory is then the budget plus the largest directory being listed.
type cache[V any] struct {
	shards []cacheShard[V]
	total  int64
	load   func(chunkstore.ID) (V, int64, error) // value and its weight in bytes
	// hold and drop, when set, count the holders of a value: the cache
	// while it keeps the value, and every get until the caller drops it.
	hold, drop func(V)
	// giants: keep the latest value heavier than total, alone (above).
	giants  bool
	giantMu sync.Mutex
	giant   *chunkstore.ID // the one kept, if any
}

type cacheShard[V any] struct {
	mu       sync.Mutex
	max      int64
	used     int64
	items    map[chunkstore.ID]*list.Element
	lru      list.List // front: most recently used; values are *cacheItem[V]
	inflight map[chunkstore.ID]*cacheCall[V]
}

type cacheItem[V any] struct {
	id     chunkstore.ID
	v      V
	weight int64 // 0 for a giant: not counted in its shard's budget
}

type cacheCall[V any] struct {
	done    chan struct{}
	v       V
	err     error
	waiters int  // gets sharing this load, besides the loader
	removed bool // remove was called during the load: do not keep the value
}

// newCache makes a cache of about maxBytes. Shards get at least minShard
// bytes each so the largest values (8 MiB chunks) still fit.
func newCache[V any](maxBytes, minShard int64, load func(chunkstore.ID) (V, int64, error)) *cache[V] {
	n := 16
	for n > 1 && maxBytes/int64(n) < minShard {
		n /= 2
	}
	c := &cache[V]{shards: make([]cacheShard[V], n), total: maxBytes, load: load}
	for i := range c.shards {
		c.shards[i].max = maxBytes / int64(n)
		c.shards[i].items = map[chunkstore.ID]*list.Element{}
		c.shards[i].inflight = map[chunkstore.ID]*cacheCall[V]{}
	}
	return c
}

func (c *cache[V]) shard(id chunkstore.ID) *cacheShard[V] {
	// Ids are hashes: any byte is uniformly distributed.
	return &c.shards[int(id[31])%len(c.shards)]
}

// get returns the value for id, loading it at most once at a time. With
// hold and drop set, the caller holds the value and must drop it.
func (c *cache[V]) get(id chunkstore.ID) (V, error) {
	s := c.shard(id)
	s.mu.Lock()
	if e, ok := s.items[id]; ok {
		s.lru.MoveToFront(e)
		v := e.Value.(*cacheItem[V]).v
		if c.hold != nil {
			c.hold(v)
		}
		s.mu.Unlock()
		return v, nil
	}
	if call, ok := s.inflight[id]; ok {
		call.waiters++
		s.mu.Unlock()
		<-call.done
		return call.v, call.err
	}
	call := &cacheCall[V]{done: make(chan struct{})}
	s.inflight[id] = call
	s.mu.Unlock()

	v, w, err := c.load(id)
	call.v, call.err = v, err

	var evicted []V
	s.mu.Lock()
	delete(s.inflight, id)
	if err == nil && c.hold != nil {
		for range 1 + call.waiters {
			c.hold(v)
		}
	}
	giant := w > c.total
	if err == nil && (!giant || c.giants) && !call.removed {
		if c.hold != nil {
			c.hold(v)
		}
		if giant {
			w = 0 // kept beside the budget, until the next giant (below)
		}
		s.items[id] = s.lru.PushFront(&cacheItem[V]{id: id, v: v, weight: w})
		s.used += w
		for back := s.lru.Back(); s.used > s.max && back != nil && back != s.lru.Front(); {
			it := back.Value.(*cacheItem[V])
			prev := back.Prev()
			if it.weight > 0 || !c.giants {
				s.lru.Remove(back)
				delete(s.items, it.id)
				s.used -= it.weight
				evicted = append(evicted, it.v)
			}
			back = prev
		}
	}
	s.mu.Unlock()
	close(call.done)
	if c.drop != nil {
		for _, e := range evicted {
			c.drop(e)
		}
	}
	if err == nil && giant && c.giants && !call.removed {
		c.giantMu.Lock()
		old := c.giant
		c.giant = &id
		c.giantMu.Unlock()
		if old != nil && *old != id {
			c.remove(*old)
		}
	}
	return v, err
}

// remove takes id out of the cache, if it is there. A load of id under
// way still goes to its callers but is not kept: a reader's prefetch that
// lands after the reader has passed the chunk does not stay behind.
func (c *cache[V]) remove(id chunkstore.ID) {
	s := c.shard(id)
	s.mu.Lock()
	if call, ok := s.inflight[id]; ok {
		call.removed = true
	}
	e, ok := s.items[id]
	if !ok {
		s.mu.Unlock()
		return
	}
	it := e.Value.(*cacheItem[V])
	s.lru.Remove(e)
	delete(s.items, id)
	s.used -= it.weight
	s.mu.Unlock()
	if c.drop != nil {
		c.drop(it.v)
	}
}

// has reports whether id is cached or being loaded.
func (c *cache[V]) has(id chunkstore.ID) bool {
	s := c.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.items[id]
	_, loading := s.inflight[id]
	return ok || loading
}

// usedBytes is the total weight held, for tests and statistics.
func (c *cache[V]) usedBytes() int64 {
	var n int64
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += s.used
		s.mu.Unlock()
	}
	return n
}
