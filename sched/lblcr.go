package sched

import "sync/atomic"

// lblcr is ip_vs_lblcr.c, locality-based least-connection with
// replication: the cache maps a client-side destination address to a set
// of destinations (newest member first). A decision takes the set's
// weighted-least-connection member (skipping overloaded, unavailable and
// weight-0 ones). If the set has more than one member and has not
// changed for lblcr_expiration (24 h), its weighted-most-loaded member
// is dropped. If there was no usable member, or it is overloaded in
// is_overloaded's sense (see lblc), wlc over the whole service picks a
// destination, which joins the set. Entries expire as lblc's do; the
// garbage collection also runs incrementally inside Schedule.
//
// Set members come from a preallocated pool (two per cache entry); when
// it is empty a member is not added, as when the kernel's kmalloc fails.
type lblcr struct {
	cur   atomic.Pointer[memberList]
	clock clock

	// Owned by the goroutine that calls Schedule.
	cache   addrCache
	setHead []int32 // per entry: first member, or none
	setSize []int32
	lastmod []int64

	// The member pool.
	elemDest []*Dest
	elemHint []int32
	elemNext []int32
	elemFree int32
}

func newLBLCR(o Options) *lblcr {
	s := &lblcr{clock: clock{o.Clock, o.Clock()}}
	s.cur.Store(emptyMembers)
	n := o.CacheSize
	s.setHead = make([]int32, n)
	s.setSize = make([]int32, n)
	s.lastmod = make([]int64, n)
	s.elemDest = make([]*Dest, 2*n)
	s.elemHint = make([]int32, 2*n)
	s.elemNext = make([]int32, 2*n)
	for i := range s.elemNext {
		s.elemNext[i] = int32(i) + 1
	}
	s.elemNext[2*n-1] = none
	s.cache.init(n, o.Expiration, s.eraseAll)
	return s
}

func (s *lblcr) Name() string { return "lblcr" }

func (s *lblcr) Update(dests []*Dest) { s.cur.Store(newMemberList(dests)) }

// insert is ip_vs_dest_set_insert with check: add d at the head of entry
// e's set unless it is a member already; the set's lastmod is set only
// when it changes.
func (s *lblcr) insert(e int32, d *Dest, l *memberList, now int64) {
	for x := s.setHead[e]; x != none; x = s.elemNext[x] {
		if s.elemDest[x] == d {
			return
		}
	}
	x := s.elemFree
	if x == none {
		return
	}
	s.elemFree = s.elemNext[x]
	s.elemDest[x], s.elemHint[x] = d, l.index[d]
	s.elemNext[x], s.setHead[e] = s.setHead[e], x
	s.setSize[e]++
	s.lastmod[e] = now
}

// erase is ip_vs_dest_set_erase.
func (s *lblcr) erase(e int32, d *Dest, now int64) {
	prev := int32(none)
	for x := s.setHead[e]; x != none; prev, x = x, s.elemNext[x] {
		if s.elemDest[x] != d {
			continue
		}
		if prev == none {
			s.setHead[e] = s.elemNext[x]
		} else {
			s.elemNext[prev] = s.elemNext[x]
		}
		s.setSize[e]--
		s.lastmod[e] = now
		s.elemDest[x] = nil
		s.elemNext[x], s.elemFree = s.elemFree, x
		return
	}
}

// eraseAll frees entry e's members when the entry is collected.
func (s *lblcr) eraseAll(e int32) {
	for x := s.setHead[e]; x != none; {
		nx := s.elemNext[x]
		s.elemDest[x] = nil
		s.elemNext[x], s.elemFree = s.elemFree, x
		x = nx
	}
	s.setHead[e], s.setSize[e] = none, 0
}

// setMin is ip_vs_dest_set_min: the first member that is not overloaded,
// of positive weight and available is the candidate; a later member not
// overloaded replaces it if it is less loaded per weight (as wlc) and
// available.
func (s *lblcr) setMin(e int32, l *memberList) *Dest {
	x := s.setHead[e]
	var least *Dest
	var loh, lw int64
	for ; x != none; x = s.elemNext[x] {
		d := s.elemDest[x]
		if overloaded(d) {
			continue
		}
		if w := d.weight.Load(); w > 0 && d.Available() && l.member(d, &s.elemHint[x]) {
			least, loh, lw = d, int64(d.Overhead()), int64(w)
			break
		}
	}
	if least == nil {
		return nil
	}
	for x = s.elemNext[x]; x != none; x = s.elemNext[x] {
		d := s.elemDest[x]
		if overloaded(d) {
			continue
		}
		doh, w := int64(d.Overhead()), int64(d.weight.Load())
		if loh*w > doh*lw && d.Available() && l.member(d, &s.elemHint[x]) {
			least, loh, lw = d, doh, w
		}
	}
	return least
}

// setMax is ip_vs_dest_set_max: the member with the highest load per
// weight among those of positive weight, the first on a tie. Overloaded,
// unavailable and deleted members count: dropping them is the point.
func (s *lblcr) setMax(e int32) *Dest {
	x := s.setHead[e]
	var most *Dest
	var moh, mw int64
	for ; x != none; x = s.elemNext[x] {
		d := s.elemDest[x]
		if w := d.weight.Load(); w > 0 {
			most, moh, mw = d, int64(d.Overhead()), int64(w)
			break
		}
	}
	if most == nil {
		return nil
	}
	for x = s.elemNext[x]; x != none; x = s.elemNext[x] {
		d := s.elemDest[x]
		doh, w := int64(d.Overhead()), int64(d.weight.Load())
		if moh*w < doh*mw && w > 0 {
			most, moh, mw = d, doh, w
		}
	}
	return most
}

func (s *lblcr) Schedule(f *Flow) *Dest {
	now := s.cache.now(f, s.clock)
	s.cache.gc(now)
	l := s.cur.Load()
	e := s.cache.get(f.Dst)
	if e != none {
		s.cache.lastuse[e] = now
		d := s.setMin(e, l)
		// More than one member and unchanged for long enough: drop the
		// most loaded (time_after(jiffies, lastmod + expiration)).
		if s.setSize[e] > 1 && now-s.lastmod[e] > s.cache.expiration {
			if m := s.setMax(e); m != nil {
				s.erase(e, m, now)
			}
		}
		if d != nil && !lblcOverloaded(d, l.dests) {
			return d
		}
		if d = wlcPick(l.dests); d != nil {
			s.insert(e, d, l, now)
		}
		return d
	}
	d := wlcPick(l.dests)
	if d == nil {
		return nil
	}
	if e = s.cache.insert(f.Dst, now); e != none {
		s.setHead[e], s.setSize[e] = none, 0
		s.insert(e, d, l, now)
	}
	return d
}
