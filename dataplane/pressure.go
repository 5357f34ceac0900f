//go:build linux

package dataplane

import (
	"sync/atomic"

	"github.com/xlbproject/xlb/bpf"
)

// SYN flood protection. The kernel drops frames for a queue when its
// AF_XDP RX ring is full or its fill ring empty, before the worker sees
// them and without looking at what they are: under a SYN flood that the
// worker cannot keep up with, established connections lose segments and
// stall for a retransmission timeout (200 ms or more). So priority is
// decided in the XDP program, which drops pure SYNs to services (never
// anything else) on a queue whose worker says it is under pressure; see
// bpf.SYNLevel.
//
// The worker looks at its rings at every batch edge (two atomic loads):
// it is overloaded when the kernel has queued more than a quarter of the
// RX ring, or has less than a quarter of the fill ring left. Well before
// either ring runs out (2048 entries last ~10 ms at a flood of 200k
// frames/s beyond what the worker serves), it raises its level:
//
//	0 -> 1  at once: SYNs beyond SYNRate per source prefix are dropped, so a
//	        flood from a few prefixes loses its SYNs and other clients
//	        still connect;
//	1 -> 2  if it is still overloaded escalateNs after that (a flood spread
//	        over many prefixes): every SYN is dropped, so established
//	        connections keep flowing while new ones wait for TCP's SYN
//	        retransmission (1 s, then 2 s, ...);
//
// and lowers it by one after holdNs without overload, except that level 1
// stays while the XDP program refuses more than 1000 SYNs a second on the
// queue: the flood goes on, and letting it in again would overload the
// worker before it could react (it may not even be running: on a busy
// machine a worker preempted for 30 ms at a 70k frames/s flood finds its
// 2048-entry ring overflowed).
// The level is published in the bpf syn_guard map only when it changes.
// Before any of this, the XDP program applies level 1 by itself for 100 ms
// whenever the queue gets more than Options.SYNAuto SYNs a second: the
// worker's view covers what that trigger does not (floods below it that
// the worker still cannot keep up with, level 2, holding the level).
//
// Ring overload counts only while the frames are handshakes: a worker
// that cannot keep up with bulk traffic on established connections (one
// iperf3 stream fills the RX ring on a veth) is not under a SYN flood,
// and refusing SYNs then would only stop legitimate clients from
// connecting. So the worker also looks at what its last mixWindowNs of
// frames were (bulkLoad): if at least mixMinFrames came and fewer than an
// eighth of them opened a connection (a non-keep-alive HTTP client opens
// one per 5-7 frames, a SYN flood one per frame), the overload is bulk and
// the level is left as it is. With no such history (a worker that was idle
// when the ring filled) overload counts, as before.
//
// A second signal raises the level to 1 (never to 2): the connection table
// evicting more than evictBurst entries within evictWindowNs, which is
// what a SYN flood that the worker still keeps up with does, at the cost
// of all its CPU (and the real servers'). Level 1 costs legitimate clients
// nothing while each prefix opens fewer than SYNRate connections a second.
const (
	escalateNs    = 50_000_000  // at level 1, ring overload this long: level 2
	holdNs        = 500_000_000 // no overload this long: one level down
	evictWindowNs = 10_000_000
	evictBurst    = 64 // evictions per evictWindowNs (6400/s) that mean a flood
	mixWindowNs   = 10_000_000
	mixMinFrames  = 64
)

// synGuard is a worker's pressure level and its publication. Owned by the
// worker; level is also read by Stats.
type synGuard struct {
	level    bpf.SYNLevel
	raisedAt int64 // when level was last raised
	overAt   int64 // when the worker was last overloaded
	// set publishes a level to the XDP program; nil without one (tests).
	set func(bpf.SYNLevel) error
	// refused reads how many SYNs the XDP program refused on this queue;
	// nil without one.
	refused     func() (uint64, error)
	lastRefused uint64 // refused's count when last read
	raises      uint64 // times the level went up
	errs        uint64 // failed publications

	evictAt    int64  // start of the current eviction window
	evictStart uint64 // the table's Evictions at evictAt

	// The frame mix of the latest complete mixWindowNs (bulkLoad): bulk
	// tells that it was mostly established traffic.
	mixAt          int64
	mixRx, mixOpen uint64 // the worker's RxFrames and ConnNew at mixAt
	bulk           bool
}

// bulkLoad tells whether the worker's recent frames were bulk traffic
// rather than handshakes: rx and opened are its RxFrames and ConnNew
// counts so far, at time now.
func (g *synGuard) bulkLoad(rx, opened uint64, now int64) bool {
	if now-g.mixAt >= mixWindowNs {
		drx, dopen := rx-g.mixRx, opened-g.mixOpen
		g.bulk = drx >= mixMinFrames && dopen*8 < drx
		g.mixAt, g.mixRx, g.mixOpen = now, rx, opened
	}
	return g.bulk
}

// overloaded tells whether the kernel is about to drop frames for q: its
// RX ring more than a quarter full, or its fill ring less than a quarter
// full.
func (q *queue) overloaded() bool {
	rxPending := atomic.LoadUint32(q.rx.producer) - q.rx.cachedCons
	fillAvail := q.fill.cachedProd - atomic.LoadUint32(q.fill.consumer)
	return rxPending > q.rx.size/4 || fillAvail < q.fill.size/4
}

// flooded tells whether the connection table, whose Evictions count is
// evictions at time now, evicts at a flood's rate.
func (g *synGuard) flooded(evictions uint64, now int64) bool {
	if evictions-g.evictStart > evictBurst {
		g.evictAt, g.evictStart = now, evictions
		return true
	}
	if now-g.evictAt > evictWindowNs {
		g.evictAt, g.evictStart = now, evictions
	}
	return false
}

// check updates the level at a batch edge, time now: over tells whether
// the rings are about to overflow, flooded whether the table is flooded.
func (g *synGuard) check(over, flooded bool, now int64) {
	switch {
	case (over || flooded) && g.level == bpf.SYNAdmit:
		g.raise(bpf.SYNLimit, now)
	case over && g.level == bpf.SYNLimit && now-g.raisedAt > escalateNs:
		g.raise(bpf.SYNKnownOnly, now)
	case over || flooded:
		g.overAt = now
	case g.level > bpf.SYNAdmit && now-g.overAt > holdNs:
		g.overAt = now // the next step down waits another holdNs
		if g.level == bpf.SYNLimit && g.refusing() {
			return // the flood goes on, kept away by level 1
		}
		g.publish(g.level - 1)
	}
}

// refusedFlood is the refusal count per holdNs above which level 1 is
// kept: 1000 refused SYNs a second.
const refusedFlood = 1000 * holdNs / 1_000_000_000

// refusing tells whether the XDP program refused more than refusedFlood
// SYNs on this queue since the last call (or the last raise). One map
// lookup, at most once per holdNs.
func (g *synGuard) refusing() bool {
	if g.refused == nil {
		return false
	}
	n, err := g.refused()
	if err != nil {
		g.errs++
		return false
	}
	d := n - g.lastRefused
	g.lastRefused = n
	return d > refusedFlood
}

func (g *synGuard) raise(level bpf.SYNLevel, now int64) {
	g.raisedAt, g.overAt = now, now
	g.raises++
	if g.level == bpf.SYNAdmit {
		g.refusing() // start counting from here
	}
	g.publish(level)
}

func (g *synGuard) publish(level bpf.SYNLevel) {
	if g.set != nil {
		if err := g.set(level); err != nil {
			// Keep the old level: check tries again at the next edge.
			g.errs++
			return
		}
	}
	g.level = level
}
