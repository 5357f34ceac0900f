package sched

import (
	"encoding/binary"
	"math"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// The lblc/lblcr address cache (ip_vs_lblc.c, ip_vs_lblcr.c).
const (
	lblcTabBits = 10 // CONFIG_IP_VS_LBLC_TAB_BITS, CONFIG_IP_VS_LBLCR_TAB_BITS
	lblcTabSize = 1 << lblcTabBits
	lblcTabMask = lblcTabSize - 1
	// lblcMaxSize is tbl->max_size: above it the periodic check removes
	// entries idle for entryTimeout.
	lblcMaxSize = lblcTabSize * 16

	checkExpireInterval    = 60 * time.Second // CHECK_EXPIRE_INTERVAL
	entryTimeout           = 6 * time.Minute  // ENTRY_TIMEOUT
	countForFullExpiration = 30               // COUNT_FOR_FULL_EXPIRATION

	// gcBucketsPerStep bounds the garbage collection one decision does:
	// a collection pass (every 60 s) is spread over 1024/8 = 128
	// decisions instead of stopping one for a 1024-bucket scan. With the
	// cache at its 16-entries-per-bucket threshold that is about 128
	// entry checks, a few hundred nanoseconds, per decision while a pass
	// runs.
	gcBucketsPerStep = 8
)

// addrKey is a cache key: a client-side destination address.
type addrKey struct {
	hi, lo uint64
	v4     bool
}

func keyOf(a netip.Addr) addrKey {
	b := a.As16()
	return addrKey{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:]), a.Is4()}
}

// lblcHash is ip_vs_lblc_hashkey / ip_vs_lblcr_hashkey:
// hash_32(ntohl(addr_fold), 10), i.e. the top 10 bits of
// fold * GOLDEN_RATIO_32. The bucket decides which entries a
// goal-limited collection pass reaches first, so it is the kernel's.
func lblcHash(a netip.Addr) int {
	return int(hash32(addrFold(a), lblcTabBits))
}

const none = -1

// addrCache is the kernel's per-service hash table of entries, with a
// fixed pool of entries so that inserting never allocates. Entries are
// chained per bucket, newest first (hlist_add_head). It is owned by the
// goroutine that calls Schedule.
type addrCache struct {
	buckets [lblcTabSize]int32
	key     []addrKey
	lastuse []int64 // on the scheduler's clock, nanoseconds
	next    []int32 // bucket chain, or free list
	free    int32
	entries int
	onFree  func(e int32) // releases the entry's payload

	expiration int64 // lblc_expiration / lblcr_expiration

	// The periodic check (ip_vs_lblc_check_expire), run incrementally.
	nextCheck int64
	counter   int
	rover     int
	job       gcJob
	onFlowNow bool // decisions carry Flow.Now
	// low is at most the oldest lastuse in the cache (max int64 when
	// empty): a pass at a time less than a timeout after it would remove
	// nothing and is skipped. Inserts lower it; a pass that sweeps every
	// bucket raises it to what it saw.
	low int64
}

type gcJob struct {
	active bool
	full   bool  // full expiration check, else goal-limited
	now    int64 // the pass's time
	goal   int
	left   int   // buckets still to sweep
	j      int   // last bucket swept
	seen   int64 // oldest lastuse kept, and inserted, during the pass
}

func (c *addrCache) init(size int, expiration time.Duration, onFree func(int32)) {
	c.key = make([]addrKey, size)
	c.lastuse = make([]int64, size)
	c.next = make([]int32, size)
	for i := range c.next {
		c.next[i] = int32(i) + 1
	}
	c.next[size-1] = none
	for i := range c.buckets {
		c.buckets[i] = none
	}
	c.expiration = int64(expiration)
	c.nextCheck = int64(checkExpireInterval)
	c.counter = 1
	c.low = math.MaxInt64
	c.onFree = onFree
}

func (c *addrCache) lookup(a netip.Addr) int32 {
	k := keyOf(a)
	for e := c.buckets[lblcHash(a)]; e != none; e = c.next[e] {
		if c.key[e] == k {
			return e
		}
	}
	return none
}

// insert adds an entry for a, or returns none when the pool is empty
// (the kernel's kmalloc failing: the caller goes on without caching).
func (c *addrCache) insert(a netip.Addr, now int64) int32 {
	e := c.free
	if e == none {
		return none
	}
	c.free = c.next[e]
	b := lblcHash(a)
	c.key[e], c.lastuse[e] = keyOf(a), now
	c.next[e], c.buckets[b] = c.buckets[b], e
	c.entries++
	c.low = min(c.low, now)
	c.job.seen = min(c.job.seen, now)
	return e
}

// gc advances the periodic check, ip_vs_lblc_check_expire and
// ip_vs_lblcr_check_expire. The kernel's timer fires every 60 s from the
// service's creation; here the first decision at or after a firing time
// runs what the timer would have run, for every firing since the last
// one: most only count (counter++), every 30th is a full expiration
// check, and while the cache holds more than max_size entries each is a
// goal-limited collection that removes entries idle for 6 minutes until
// (entries - max_size) * 4/3, at most max_size/2, are gone. A pass
// judges idleness at its firing time, as the kernel does, and sweeps at
// most gcBucketsPerStep buckets per call, continuing from where the
// previous pass stopped (tbl->rover). Consecutive full checks without a
// decision in between collapse into the last one, which removes what
// each would have.
func (c *addrCache) gc(now int64) {
	if !c.job.active {
		if now < c.nextCheck {
			return
		}
		interval := int64(checkExpireInterval)
		full := false
		for !c.job.active && now >= c.nextCheck {
			at := c.nextCheck
			switch {
			case c.counter%countForFullExpiration == 0:
				c.counter = 1
				c.nextCheck += interval
				if at-c.low >= c.expiration { // else it removes nothing
					full = true
					c.job.now = at
				}
			case c.entries <= lblcMaxSize:
				// Count up to the next full check at most.
				n := min((now-at)/interval+1, int64(countForFullExpiration-c.counter%countForFullExpiration))
				c.counter += int(n)
				c.nextCheck += n * interval
			default:
				// Only before any full check in this catch-up: a full
				// check needs entries <= max_size, and entries do not
				// grow between decisions.
				c.nextCheck += interval
				if at-c.low >= int64(entryTimeout) { // else it removes nothing
					goal := (c.entries - lblcMaxSize) * 4 / 3
					c.job = gcJob{active: true, now: at, goal: min(goal, lblcMaxSize/2)}
				}
			}
		}
		if full && !c.job.active {
			c.job.active, c.job.full = true, true
		}
		if !c.job.active {
			return
		}
		c.job.left, c.job.j, c.job.seen = lblcTabSize, c.rover, math.MaxInt64
	}
	for n := 0; n < gcBucketsPerStep && c.job.left > 0; n++ {
		c.job.left--
		c.job.j = (c.job.j + 1) & lblcTabMask
		prev := int32(none)
		for e := c.buckets[c.job.j]; e != none; {
			nx := c.next[e]
			if !c.expired(e) {
				c.job.seen = min(c.job.seen, c.lastuse[e])
				prev, e = e, nx
				continue
			}
			c.unlink(c.job.j, prev, e)
			c.job.goal--
			e = nx
		}
		if !c.job.full && c.job.goal <= 0 && c.job.left > 0 {
			c.job.left, c.job.seen = 0, math.MinInt64 // stopped early: saw only part
		}
	}
	if c.job.left == 0 {
		c.job.active = false
		c.rover = c.job.j
		if c.job.seen != math.MinInt64 {
			c.low = c.job.seen
		}
	}
}

// expired reports whether the running pass removes entry e:
// !time_before(now, lastuse + timeout).
func (c *addrCache) expired(e int32) bool {
	timeout := int64(entryTimeout)
	if c.job.full {
		timeout = c.expiration
	}
	return c.job.now-c.lastuse[e] >= timeout
}

// unlink removes entry e, which follows prev (or heads the bucket when
// prev is none), and returns it to the pool.
func (c *addrCache) unlink(bucket int, prev, e int32) {
	if prev == none {
		c.buckets[bucket] = c.next[e]
	} else {
		c.next[prev] = c.next[e]
	}
	c.onFree(e)
	c.next[e], c.free = c.free, e
	c.entries--
}

// get is lookup for a decision: while a full expiration check runs, an
// entry it will remove but has not reached yet is removed now, so that a
// decision sees the cache as the kernel's would be right after the check.
// (A goal-limited pass cannot be anticipated: whether it reaches an entry
// depends on the entries before it.)
func (c *addrCache) get(a netip.Addr) int32 {
	e := c.lookup(a)
	if e == none || !c.job.active || !c.job.full || !c.expired(e) {
		return e
	}
	b := lblcHash(a)
	prev := int32(none)
	for x := c.buckets[b]; x != e; x = c.next[x] {
		prev = x
	}
	c.unlink(b, prev, e)
	return none
}

// memberList is a published destination list with an index, so that a
// cached destination can be checked against the current list: the
// kernel clears IP_VS_DEST_F_AVAILABLE on a deleted destination, xlb
// additionally requires membership, so that a deleted destination is
// never chosen even if the control plane leaves its flag set.
type memberList struct {
	dests []*Dest
	index map[*Dest]int32
}

var emptyMembers = &memberList{}

func newMemberList(ds []*Dest) *memberList {
	l := &memberList{dests: slices.Clone(ds), index: make(map[*Dest]int32, len(ds))}
	for i, d := range l.dests {
		l.index[d] = int32(i)
	}
	return l
}

// member reports whether d is in l; *hint is where d was last found and
// is updated, so that the check is one comparison while the list keeps
// its order.
func (l *memberList) member(d *Dest, hint *int32) bool {
	if h := int(*hint); h < len(l.dests) && l.dests[h] == d {
		return true
	}
	i, ok := l.index[d]
	if ok {
		*hint = i
	}
	return ok
}

// lblcOverloaded is is_overloaded in ip_vs_lblc.c and ip_vs_lblcr.c: d has
// more active connections than its weight while some destination of the
// service has fewer than half its weight.
func lblcOverloaded(d *Dest, ds []*Dest) bool {
	if d.activeConns.Load() <= d.weight.Load() {
		return false
	}
	for _, x := range ds {
		if x.activeConns.Load()*2 < x.weight.Load() {
			return true
		}
	}
	return false
}

// now returns a decision's time: Flow.Now if set, else the clock's
// reading. The first Flow.Now starts the timer's firing times, which
// are otherwise counted from the instance's creation on the clock.
func (c *addrCache) now(f *Flow, clk clock) int64 {
	if f.Now == 0 {
		return clk.read()
	}
	if !c.onFlowNow {
		c.onFlowNow = true
		c.nextCheck = int64(f.Now + checkExpireInterval)
	}
	return int64(f.Now)
}

// clock turns Options.Clock into nanoseconds since the instance was made.
type clock struct {
	now   func() time.Time
	epoch time.Time
}

func (c clock) read() int64 { return int64(c.now().Sub(c.epoch)) }

// lblc is ip_vs_lblc.c, locality-based least-connection: a cache maps
// each client-side destination address (the packet's daddr, typically
// of a web cache cluster) to a destination. A cached destination is used
// while it is available, of positive weight and not overloaded in
// is_overloaded's sense (more active connections than its weight while
// another destination is below half of its own; the threshold flag is
// not looked at, as in the kernel); otherwise wlc picks one and the
// entry is rebound. Entries idle for lblc_expiration (24 h) are
// forgotten, and above 16384 entries those idle for 6 minutes (see
// addrCache.gc). Garbage collection runs incrementally inside Schedule
// (gcBucketsPerStep buckets per decision), driven by Options.Clock: there
// is no timer goroutine and no lock.
type lblc struct {
	cur   atomic.Pointer[memberList]
	clock clock

	// Owned by the goroutine that calls Schedule.
	cache addrCache
	dest  []*Dest
	hint  []int32
}

func newLBLC(o Options) *lblc {
	s := &lblc{clock: clock{o.Clock, o.Clock()}}
	s.cur.Store(emptyMembers)
	s.dest = make([]*Dest, o.CacheSize)
	s.hint = make([]int32, o.CacheSize)
	s.cache.init(o.CacheSize, o.Expiration, func(e int32) { s.dest[e] = nil })
	return s
}

func (s *lblc) Name() string { return "lblc" }

func (s *lblc) Update(dests []*Dest) { s.cur.Store(newMemberList(dests)) }

func (s *lblc) Schedule(f *Flow) *Dest {
	now := s.cache.now(f, s.clock)
	s.cache.gc(now)
	l := s.cur.Load()
	e := s.cache.get(f.Dst)
	if e != none {
		s.cache.lastuse[e] = now
		d := s.dest[e]
		if d.Available() && l.member(d, &s.hint[e]) && d.weight.Load() > 0 && !lblcOverloaded(d, l.dests) {
			return d
		}
	}
	d := wlcPick(l.dests)
	if d == nil {
		return nil
	}
	if e == none {
		if e = s.cache.insert(f.Dst, now); e == none {
			return d // cache full: schedule without caching
		}
	}
	s.dest[e], s.hint[e] = d, l.index[d]
	return d
}
