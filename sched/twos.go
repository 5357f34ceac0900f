package sched

import (
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
)

// twos is ip_vs_twos.c, power of two choices: with total the sum of the
// weights of the destinations neither overloaded nor of weight 0, draw
// r1 and r2 uniformly in [0, total] (total+1 values, as the kernel does)
// and walk the list subtracting weights: the first destination where r1
// (r2) drops to 0 or below is choice 1 (2). Choice 2 wins if its overhead
// per weight is strictly lower: w2*oh1 > w1*oh2.
//
// The kernel draws from prandom_u32 and multiplies in int, which can
// overflow for large connection counts; xlb draws from a per-instance
// wyrand generator (one 64-bit multiply per number, no allocation, no
// lock) and multiplies in 64 bits. Decisions are random in both, so no
// sequence can be compared across the two anyway.
type twos struct {
	cur atomic.Pointer[destList]
	rng wyrand // owned by the goroutine that calls Schedule
}

func newTwos(seed uint64) *twos {
	if seed == 0 {
		seed = rand.Uint64() | 1
	}
	s := &twos{rng: wyrand(seed)}
	s.cur.Store(emptyList)
	return s
}

func (s *twos) Name() string { return "twos" }

func (s *twos) Update(dests []*Dest) { s.cur.Store(&destList{dests: append([]*Dest(nil), dests...)}) }

func (s *twos) Schedule(*Flow) *Dest {
	ds := s.cur.Load().dests
	var total int64
	var any *Dest
	for _, d := range ds {
		if w := d.weight.Load(); w > 0 && !overloaded(d) {
			total += int64(w)
			any = d
		}
	}
	if any == nil {
		return nil
	}
	total++
	r1 := int64(uint64(s.rng.next32()) % uint64(total))
	r2 := int64(uint64(s.rng.next32()) % uint64(total))
	var c1, c2 *Dest
	var w1, w2, oh1, oh2 int64
	for _, d := range ds {
		w := d.weight.Load()
		if w <= 0 || overloaded(d) {
			continue
		}
		r1 -= int64(w)
		r2 -= int64(w)
		if r1 <= 0 && c1 == nil {
			c1, w1, oh1 = d, int64(w), int64(d.Overhead())
		}
		if r2 <= 0 && c2 == nil {
			c2, w2, oh2 = d, int64(w), int64(d.Overhead())
		}
		if c1 != nil && c2 != nil {
			break
		}
	}
	if c1 == nil {
		// The weights dropped between the two walks (a concurrent edit):
		// the kernel keeps the last available destination of the first.
		return any
	}
	if c2 != nil && w2*oh1 > w1*oh2 {
		return c2
	}
	return c1
}

// wyrand is Wang Yi's wyrand generator: a 64-bit counter stepped by an
// odd constant and mixed by one 128-bit multiply. Not safe for concurrent
// use.
type wyrand uint64

func (r *wyrand) next() uint64 {
	*r += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(uint64(*r), uint64(*r)^0xe7037ed1a0b428db)
	return hi ^ lo
}

func (r *wyrand) next32() uint32 { return uint32(r.next() >> 32) }
