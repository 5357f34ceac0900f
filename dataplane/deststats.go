package dataplane

import "sync/atomic"

// destCounters are IPVS's per-destination statistics (struct
// ip_vs_kstats): connections scheduled, and packets and bytes in each
// direction.
type destCounters struct {
	Conns, InPkts, InBytes, OutPkts, OutBytes uint64
}

func (c *destCounters) add(o *destCounters) {
	c.Conns += o.Conns
	c.InPkts += o.InPkts
	c.InBytes += o.InBytes
	c.OutPkts += o.OutPkts
	c.OutBytes += o.OutBytes
}

func (c destCounters) sub(o destCounters) destCounters {
	return destCounters{c.Conns - o.Conns, c.InPkts - o.InPkts, c.InBytes - o.InBytes,
		c.OutPkts - o.OutPkts, c.OutBytes - o.OutBytes}
}

type publishedCounters struct {
	conns, inPkts, inBytes, outPkts, outBytes atomic.Uint64
}

// destStats are one worker's per-destination counters, indexed by
// destination ID. The worker adds to plain fields it owns (no atomic per
// frame) and, once per batch, publishes the destinations it touched with
// atomic stores; readers sum the published copies over workers.
type destStats struct {
	local []destCounters
	pub   []publishedCounters
	dirty []uint32 // IDs touched since the last publish
	mark  []bool   // mark[id]: id is in dirty
}

func newDestStats(n int) destStats {
	return destStats{
		local: make([]destCounters, n),
		pub:   make([]publishedCounters, n),
		dirty: make([]uint32, 0, n),
		mark:  make([]bool, n),
	}
}

func (s *destStats) touch(id uint32) *destCounters {
	if !s.mark[id] {
		s.mark[id] = true
		s.dirty = append(s.dirty, id)
	}
	return &s.local[id]
}

// in counts a frame sent towards destination id (client → server).
func (s *destStats) in(id uint32, n int) {
	c := s.touch(id)
	c.InPkts++
	c.InBytes += uint64(n)
}

// out counts a reply frame from destination id (server → client), which
// NAT and FULLNAT see.
func (s *destStats) out(id uint32, n int) {
	c := s.touch(id)
	c.OutPkts++
	c.OutBytes += uint64(n)
}

// conn counts a connection scheduled to destination id.
func (s *destStats) conn(id uint32) { s.touch(id).Conns++ }

func (s *destStats) publish() {
	for _, id := range s.dirty {
		l, p := &s.local[id], &s.pub[id]
		// Only the words that changed (an atomic store is an XCHG;
		// established flows change two of the five in a batch).
		storeChanged(&p.conns, l.Conns)
		storeChanged(&p.inPkts, l.InPkts)
		storeChanged(&p.inBytes, l.InBytes)
		storeChanged(&p.outPkts, l.OutPkts)
		storeChanged(&p.outBytes, l.OutBytes)
		s.mark[id] = false
	}
	s.dirty = s.dirty[:0]
}

// storeChanged stores v in p unless p holds it already.
func storeChanged(p *atomic.Uint64, v uint64) {
	if p.Load() != v {
		p.Store(v)
	}
}

// read adds destination id's published counters to c.
func (s *destStats) read(id uint32, c *destCounters) {
	if int(id) >= len(s.pub) {
		return
	}
	p := &s.pub[id]
	c.add(&destCounters{p.conns.Load(), p.inPkts.Load(), p.inBytes.Load(), p.outPkts.Load(), p.outBytes.Load()})
}

// estimator is IPVS's rate estimator (ip_vs_est.c): every 2 s it turns
// counter deltas into per-second rates smoothed with a weight of 1/4,
// kept in fixed point (<<10 for connections and packets, <<5 for bytes).
type estimator struct {
	last                              destCounters
	cps, inpps, outpps, inbps, outbps int64
}

// estimatePeriod is IPVS's estimator period, 2 s.
const estimatePeriod = 2

func (e *estimator) update(cur destCounters) {
	ewma := func(avg *int64, n, last uint64, shift uint) {
		rate := int64(n-last) << shift
		*avg += (rate - *avg) >> 2
	}
	// A delta over 2 s, <<9, is the per-second rate <<10; <<4 is <<5.
	ewma(&e.cps, cur.Conns, e.last.Conns, 9)
	ewma(&e.inpps, cur.InPkts, e.last.InPkts, 9)
	ewma(&e.outpps, cur.OutPkts, e.last.OutPkts, 9)
	ewma(&e.inbps, cur.InBytes, e.last.InBytes, 4)
	ewma(&e.outbps, cur.OutBytes, e.last.OutBytes, 4)
	e.last = cur
}

// Rates are per-second rates as ip_vs_read_estimator rounds them.
type Rates struct {
	CPS, InPPS, OutPPS, InBPS, OutBPS uint64
}

func (e *estimator) rates() Rates {
	if e == nil {
		return Rates{}
	}
	r := func(v int64, shift uint) uint64 {
		if v < 0 {
			return 0
		}
		return uint64(v+(1<<(shift-1))-1) >> shift
	}
	return Rates{r(e.cps, 10), r(e.inpps, 10), r(e.outpps, 10), r(e.inbps, 5), r(e.outbps, 5)}
}
