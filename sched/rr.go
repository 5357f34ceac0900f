package sched

import (
	"slices"
	"sync"
	"sync/atomic"
)

// rr and wrr keep a cursor (the last destination chosen, and wrr's
// current weight) that the kernel moves in two places: the scheduling
// function, under svc->sched_lock, and the add/del/upd_dest callbacks,
// from the control path. Here the cursor belongs to the goroutine that
// calls Schedule, so Update cannot move it. Instead Update appends what
// it changed to a log (a singly linked list of small immutable records,
// one per Update) before it publishes the new list, and Schedule, when
// it sees a new list, replays the records it has not seen, in order.
// That reproduces the kernel's sequence of cursor moves exactly, however
// many Updates happened between two decisions, at the cost of one
// pointer comparison per decision. The log's records before the
// worker's position are garbage; those after it live until the worker's
// next decision (a few dozen bytes per Update).

// logRec is one Update as a cursor replays it.
type logRec struct {
	seq  uint64
	next atomic.Pointer[logRec]
	// rr: each destination this Update removed, mapped to the closest
	// preceding one in the previous list that stayed (nil: list head).
	removed map[*Dest]*Dest
	// wrr: the new maximum weight step and gcd (mw, di).
	mw, di int32
}

// snap records what an Update was given, to recognise an Update that
// changes nothing.
type snap struct {
	d              *Dest
	weight, lastWt int32
}

func snapshot(ds []*Dest) []snap {
	s := make([]snap, len(ds))
	for i, d := range ds {
		s[i] = snap{d, d.weight.Load(), d.lastWeight.Load()}
	}
	return s
}

// same reports whether ds, with their current weights, is what prev
// recorded.
func same(prev []snap, ds []*Dest) bool {
	if len(prev) != len(ds) {
		return false
	}
	for i, d := range ds {
		if p := prev[i]; p.d != d || p.weight != d.weight.Load() || p.lastWt != d.lastWeight.Load() {
			return false
		}
	}
	return true
}

// cursorList is a published list for rr or wrr.
type cursorList struct {
	seq   uint64
	dests []*Dest
	index map[*Dest]int
	mw    int32 // wrr: max weight - (di - 1); 0 when nothing can be chosen
	di    int32 // wrr: gcd of the positive weights, 1 if none
}

// cursorBase is the control-plane half of rr and wrr.
type cursorBase struct {
	cur atomic.Pointer[cursorList]

	mu   sync.Mutex // serialises Update
	tail *logRec
	prev []snap
}

func (b *cursorBase) init() *logRec {
	head := &logRec{}
	b.tail = head
	b.cur.Store(&cursorList{di: 1})
	return head
}

// publish appends recs to the log, then stores the list, so that a worker
// that loads list seq k finds records up to k in the log. Several records
// for one list are several Updates of which only the last list is seen.
func (b *cursorBase) publish(l *cursorList, recs ...*logRec) {
	for _, rec := range recs {
		rec.seq = b.tail.seq + 1
		b.tail.next.Store(rec)
		b.tail = rec
	}
	l.seq = b.tail.seq
	b.cur.Store(l)
}

func newCursorList(ds []*Dest) *cursorList {
	l := &cursorList{dests: slices.Clone(ds), index: make(map[*Dest]int, len(ds))}
	for i, d := range l.dests {
		l.index[d] = i
	}
	return l
}

// rr is ip_vs_rr.c: the cursor points at the last destination chosen
// (initially the list head); a decision takes the next destination after
// it, wrapping around, that is neither overloaded nor of weight 0 (the
// cursor's own destination is tried last). When the cursor's destination
// is deleted, it moves to the destination before it (ip_vs_rr_del_dest).
type rr struct {
	cursorBase

	// Owned by the goroutine that calls Schedule.
	seen *cursorList
	log  *logRec
	pos  int // index in seen.dests of the last choice; -1: list head
}

func newRR() *rr {
	s := &rr{pos: -1}
	s.log = s.init()
	s.seen = s.cur.Load()
	return s
}

func (s *rr) Name() string { return "rr" }

func (s *rr) Update(dests []*Dest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := newCursorList(dests)
	rec := &logRec{}
	var pred *Dest
	for _, p := range s.prev {
		if _, ok := l.index[p.d]; ok {
			pred = p.d
			continue
		}
		if rec.removed == nil {
			rec.removed = map[*Dest]*Dest{}
		}
		rec.removed[p.d] = pred
	}
	s.prev = snapshot(l.dests)
	s.publish(l, rec)
}

// catchUp replays the log up to l, the newly published list.
func (s *rr) catchUp(l *cursorList) {
	var last *Dest
	if s.pos >= 0 {
		last = s.seen.dests[s.pos]
	}
	for s.log.seq < l.seq {
		s.log = s.log.next.Load()
		if p, gone := s.log.removed[last]; gone {
			last = p
		}
	}
	s.seen, s.pos = l, -1
	if i, ok := l.index[last]; ok && last != nil {
		s.pos = i
	}
}

func (s *rr) Schedule(*Flow) *Dest {
	if l := s.cur.Load(); l != s.seen {
		s.catchUp(l)
	}
	ds := s.seen.dests
	for i := s.pos + 1; i < len(ds); i++ {
		if d := ds[i]; d.weight.Load() > 0 && !overloaded(d) {
			s.pos = i
			return d
		}
	}
	for i := 0; i <= s.pos; i++ {
		if d := ds[i]; d.weight.Load() > 0 && !overloaded(d) {
			s.pos = i
			return d
		}
	}
	return nil
}

// wrr is ip_vs_wrr.c. With di the gcd of the positive weights and mw the
// maximum weight minus (di - 1), the current weight cw starts at mw and
// each pass over the list picks, in order, the destinations not
// overloaded whose weight is at least cw; at the end of a pass cw drops
// by di, and below 1 it starts again at mw. Weights 4, 3, 2 give
// A A B A B C A B C.
//
// Every Update is ip_vs_wrr_dest_changed: the cursor goes back to the
// list head, di and mw are recomputed and cw becomes mw if it is 0 or
// above the new mw, else is rounded to the step grid
// ((cw/di)*di + 1 when di > 1). New starts as the kernel binds wrr to an
// empty service (cw = mw = 0), so a first Update with the whole list is
// binding to a populated service (ipvsadm -E -s wrr: cw = mw), while one
// Update per added destination replays a service built with ipvsadm -a,
// whose first round differs (C B A | A B A C B A C B A for A=4, B=3, C=2
// added in that order). An Update that changes neither the list nor a
// weight is ignored, so re-applying an unchanged configuration does not
// restart the round.
type wrr struct {
	cursorBase

	// Owned by the goroutine that calls Schedule.
	seen *cursorList
	log  *logRec
	pos  int   // index in seen.dests of the last choice; -1: list head
	cw   int32 // current weight
}

func newWRR() *wrr {
	s := &wrr{pos: -1}
	s.log = s.init()
	s.seen = s.cur.Load()
	return s
}

func (s *wrr) Name() string { return "wrr" }

func gcd(a, b int32) int32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (s *wrr) Update(dests []*Dest) { s.updateSteps([][]*Dest{dests}) }

// updateSteps is one ip_vs_wrr_dest_changed per step that changes the
// list or a weight; the last such step's list is published.
func (s *wrr) updateSteps(steps [][]*Dest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		recs   []*logRec
		prev   []*Dest // the last step, nil before the first
		g, max int32   // prev's gcd of positive weights, and largest weight
	)
	for _, dests := range steps {
		// A step that adds one destination at the head of the last one
		// (how dataplane lays out a restore: every step a suffix of one
		// array) updates the gcd and maximum with that destination only,
		// so a restore of n destinations costs O(n), not O(n²).
		if len(prev) > 0 && len(dests) == len(prev)+1 && &dests[1] == &prev[0] {
			w := dests[0].weight.Load()
			if w > 0 {
				if g > 0 {
					g = gcd(w, g)
				} else {
					g = w
				}
			}
			if w > max {
				max = w
			}
		} else {
			unchanged := prev == nil && s.prev != nil && same(s.prev, dests) || prev != nil && slices.Equal(prev, dests)
			g, max = gcdMax(dests)
			if unchanged {
				prev = dests
				continue
			}
		}
		prev = dests
		di := g
		if di == 0 {
			di = 1
		}
		recs = append(recs, &logRec{mw: max - (di - 1), di: di})
	}
	if len(recs) == 0 {
		return
	}
	l := newCursorList(prev)
	l.di, l.mw = recs[len(recs)-1].di, recs[len(recs)-1].mw
	s.prev = snapshot(l.dests)
	s.publish(l, recs...)
}

// gcdMax returns the gcd of ds' positive weights (0 when none is) and the
// largest weight.
func gcdMax(ds []*Dest) (g, max int32) {
	for _, d := range ds {
		w := d.weight.Load()
		if w > 0 {
			if g > 0 {
				g = gcd(w, g)
			} else {
				g = w
			}
		}
		if w > max {
			max = w
		}
	}
	return g, max
}

func (s *wrr) catchUp(l *cursorList) {
	for s.log.seq < l.seq {
		s.log = s.log.next.Load()
		mw, di := s.log.mw, s.log.di
		switch {
		case s.cw > mw || s.cw == 0:
			s.cw = mw
		case di > 1:
			s.cw = (s.cw/di)*di + 1
		}
	}
	s.seen, s.pos = l, -1
}

func (s *wrr) Schedule(*Flow) *Dest {
	if l := s.cur.Load(); l != s.seen {
		s.catchUp(l)
	}
	l := s.seen
	if l.mw == 0 {
		return nil // no destination has a positive weight
	}
	ds := l.dests
	last := s.pos // where this decision started
	stop := -2    // none
	lastPass, restarted := false, false
	i := s.pos
	for {
		for i++; i < len(ds); i++ {
			d := ds[i]
			if !overloaded(d) && d.weight.Load() >= s.cw {
				s.pos = i
				return d
			}
			if i == stop {
				s.pos = i
				return nil
			}
		}
		i = -1 // back at the list head
		s.cw -= l.di
		if s.cw <= 0 {
			s.cw = l.mw
			// Stop if the pass for weight >= 1 started at the head, or
			// covered the destinations after last already.
			if lastPass || last == -1 {
				s.pos = -1
				return nil
			}
			restarted = true
		}
		lastPass = s.cw <= l.di
		if lastPass && restarted && last != -1 {
			// The first pass for weight >= 1 covered only the
			// destinations after last: this one ends at last.
			stop = last
		}
	}
}
