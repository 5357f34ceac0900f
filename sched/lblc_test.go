package sched

import (
	"net/netip"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ t time.Time }

func newFakeClock() *fakeClock               { return &fakeClock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func to(i int) *Flow {
	return &Flow{Proto: 6, Src: netip.MustParseAddr("192.0.2.1"), SrcPort: 40000,
		Dst: netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), DstPort: 80}
}

// TestLBLC pins ip_vs_lblc.c: a daddr sticks to its destination until
// that one is unavailable, quiesced or overloaded in is_overloaded's
// sense, and is then rebound to wlc's choice.
func TestLBLC(t *testing.T) {
	c := newFakeClock()
	ds := dests(1, 1, 1)
	s := mustNew(t, "lblc", Options{Clock: c.now})
	s.Update(ds)

	x := to(1)
	if got := letter(s.Schedule(x)); got != "A" { // wlc: all idle, the first
		t.Fatalf("first decision = %s, want A", got)
	}
	setConns(ds[0], 1, 10) // wlc would now pick B ...
	if got := letter(s.Schedule(x)); got != "A" {
		t.Fatalf("cached decision = %s, want A (locality)", got)
	}
	if got := letter(s.Schedule(to(2))); got != "B" { // ... for a new address
		t.Fatalf("new address = %s, want B", got)
	}
	// A above its weight while every other destination has at least half
	// its weight active: not overloaded in lblc's sense.
	setConns(ds[0], 2, 0)
	setConns(ds[1], 1, 0)
	setConns(ds[2], 1, 0)
	if got := letter(s.Schedule(x)); got != "A" {
		t.Fatalf("A with 2 active, others 1 = %s, want A", got)
	}
	// Now C has none: A is overloaded, rebind to wlc's choice (C).
	setConns(ds[2], 0, 0)
	if got := letter(s.Schedule(x)); got != "C" {
		t.Fatalf("A overloaded = %s, want C", got)
	}
	setConns(ds[0], 0, 0)
	if got := letter(s.Schedule(x)); got != "C" {
		t.Fatalf("after rebinding = %s, want C (the entry now says C)", got)
	}
	// The threshold flag is not looked at for a cached destination (the
	// kernel's lblc checks only availability, weight and is_overloaded).
	ds[2].setOverload(true)
	if got := letter(s.Schedule(x)); got != "C" {
		t.Fatalf("cached C with OVERLOAD set = %s, want C (as the kernel)", got)
	}
	ds[2].setOverload(false)
	// Quiesced: rebind.
	ds[2].SetWeight(0)
	if got := letter(s.Schedule(x)); got != "A" {
		t.Fatalf("cached C quiesced = %s, want A", got)
	}
	ds[2].SetWeight(1)
	// Unavailable (being deleted by the control plane): rebind. A is
	// cached and not overloaded in lblc's sense (1 active, weight 1);
	// wlc prefers C (overhead 0).
	setConns(ds[0], 1, 0)
	ds[0].SetAvailable(false)
	if got := letter(s.Schedule(x)); got != "C" {
		t.Fatalf("cached A unavailable = %s, want C", got)
	}
	ds[0].SetAvailable(true)
	setConns(ds[0], 0, 0)
	// Removed from the list but with its flag still set: never chosen.
	s.Schedule(x) // B or C now cached
	cached := s.(*lblc).dest[s.(*lblc).cache.lookup(x.Dst)]
	var rest []*Dest
	for _, d := range ds {
		if d != cached {
			rest = append(rest, d)
		}
	}
	s.Update(rest)
	if d := s.Schedule(x); d == cached || d == nil {
		t.Fatalf("cached destination removed from the list: chose %s", letter(d))
	}
}

// TestLBLCExpiry pins the periodic check: every 60 s; without pressure
// only every 30th check expires entries, those idle for lblc_expiration.
// The time comes from Options.Clock or from Flow.Now.
func TestLBLCExpiry(t *testing.T) {
	for _, flowNow := range []bool{false, true} {
		c := newFakeClock()
		start := c.t
		ds := dests(1, 1)
		s := mustNew(t, "lblc", Options{Clock: c.now, Expiration: 10 * time.Minute}).(*lblc)
		s.Update(ds)
		x, y := to(1), to(2)
		decide := func(f *Flow) {
			if flowNow {
				f.Now = c.t.Sub(start) + time.Second
				c.t = start.Add(-time.Hour) // Options.Clock must not matter
				defer func() { c.t = start.Add(f.Now - time.Second) }()
			}
			s.Schedule(f)
		}
		decide(x) // cached at t=0
		// Checks at 1..29 min only count; y keeps being used.
		for range 29 {
			c.advance(time.Minute)
			decide(y)
		}
		if s.cache.lookup(x.Dst) == none {
			t.Fatal("x expired before the 30th check, although idle for 29 min > 10 min")
		}
		// The 30th check is a full expiration check, spread over 128
		// decisions.
		c.advance(time.Minute)
		for range lblcTabSize / gcBucketsPerStep {
			decide(y)
		}
		if s.cache.lookup(x.Dst) != none {
			t.Fatalf("Flow.Now %v: x not expired by the full check", flowNow)
		}
		if s.cache.lookup(y.Dst) == none {
			t.Fatalf("Flow.Now %v: y, used at every check, was expired", flowNow)
		}
		if s.cache.entries != 1 {
			t.Fatalf("Flow.Now %v: %d entries after the full check, want 1", flowNow, s.cache.entries)
		}
	}
}

// TestLBLCSparse: the kernel's timer fires every minute whether or not
// packets come, so with sparse traffic the full check still happens
// every 30 minutes; the first decision after a firing time does what the
// missed firings would have done, as of their time.
func TestLBLCSparse(t *testing.T) {
	c := newFakeClock()
	ds := dests(1, 1)
	s := mustNew(t, "lblc", Options{Clock: c.now, Expiration: 10 * time.Minute})
	s.Update(ds)
	x := to(1)
	if got := letter(s.Schedule(x)); got != "A" {
		t.Fatalf("first = %s, want A", got)
	}
	setConns(ds[0], 0, 50) // wlc prefers B now; A is not overloaded for lblc
	c.advance(29*time.Minute + 59*time.Second)
	if got := letter(s.Schedule(x)); got != "A" {
		t.Fatalf("at 29:59, before the first full check = %s, want A (cached)", got)
	}
	// Idle since 29:59: at the 60:00 full check x is idle 30 min > 10 min
	// (at 30:00 it was not).
	c.advance(35 * time.Minute)
	if got := letter(s.Schedule(x)); got != "B" {
		t.Fatalf("at 64:59, after the full check at 60:00 = %s, want B (x expired)", got)
	}
	if got := letter(s.Schedule(x)); got != "B" {
		t.Fatalf("then = %s, want B (cached again)", got)
	}
}

// TestLBLCPressure pins the goal-limited collection above max_size
// (16384) entries: (entries - 16384) * 4/3 entries idle for 6 minutes go,
// bucket by bucket, so a little more than the goal.
func TestLBLCPressure(t *testing.T) {
	c := newFakeClock()
	ds := dests(1, 1)
	s := mustNew(t, "lblc", Options{Clock: c.now}).(*lblc)
	s.Update(ds)
	const n = 20000
	for i := range n {
		s.Schedule(&Flow{Proto: 6, Src: flow.Src, Dst: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})})
	}
	if s.cache.entries != n {
		t.Fatalf("%d entries, want %d", s.cache.entries, n)
	}
	c.advance(7 * time.Minute)
	x := &Flow{Proto: 6, Src: flow.Src, Dst: netip.AddrFrom4([4]byte{10, 0, 0, 0})} // already cached
	for range lblcTabSize / gcBucketsPerStep {
		s.Schedule(x)
	}
	goal := (n - lblcMaxSize) * 4 / 3
	removed := n - s.cache.entries
	// ~20 entries per bucket: the pass stops at the end of the bucket
	// that reached the goal.
	if removed < goal || removed > goal+100 {
		t.Fatalf("collected %d entries, want %d and the rest of a bucket", removed, goal)
	}
	if s.cache.job.active {
		t.Fatal("collection still running after 128 decisions")
	}
	// A full cache schedules without caching.
	s2 := mustNew(t, "lblc", Options{Clock: c.now, CacheSize: 4}).(*lblc)
	s2.Update(ds)
	for i := range 10 {
		if s2.Schedule(to(i)) == nil {
			t.Fatal("no decision with a full cache")
		}
	}
	if s2.cache.entries != 4 {
		t.Fatalf("%d entries in a cache of 4", s2.cache.entries)
	}
}

// TestLBLCR pins ip_vs_lblcr.c: the set grows when its least loaded
// member is overloaded, and after lblcr_expiration without change loses
// its most loaded member.
func TestLBLCR(t *testing.T) {
	c := newFakeClock()
	ds := dests(1, 1, 1)
	s := mustNew(t, "lblcr", Options{Clock: c.now, Expiration: time.Hour}).(*lblcr)
	s.Update(ds)
	x := to(1)
	set := func() string {
		e := s.cache.lookup(x.Dst)
		str := ""
		for m := s.setHead[e]; m != none; m = s.elemNext[m] {
			str += letter(s.elemDest[m])
		}
		return str
	}
	if got := letter(s.Schedule(x)); got != "A" {
		t.Fatalf("first = %s, want A", got)
	}
	setConns(ds[0], 2, 0) // A: 2 active > weight 1, and B has 0*2 < 1
	if got := letter(s.Schedule(x)); got != "B" {
		t.Fatalf("A overloaded = %s, want B", got)
	}
	if got := set(); got != "BA" {
		t.Fatalf("set = %s, want BA (newest first)", got)
	}
	setConns(ds[1], 3, 0) // the set's least loaded is A (512 < 768): overloaded too
	if got := letter(s.Schedule(x)); got != "C" {
		t.Fatalf("set members overloaded = %s, want C", got)
	}
	if got := set(); got != "CBA" {
		t.Fatalf("set = %s, want CBA", got)
	}
	setConns(ds[2], 1, 0)
	// Within the hour nothing is dropped: C is the least loaded member.
	c.advance(59 * time.Minute)
	if got := letter(s.Schedule(x)); got != "C" {
		t.Fatalf("set min = %s, want C", got)
	}
	// After it, the most loaded member (B, 768) goes; the decision is still C.
	c.advance(2 * time.Minute)
	if got := letter(s.Schedule(x)); got != "C" {
		t.Fatalf("after expiration = %s, want C", got)
	}
	if got := set(); got != "CA" {
		t.Fatalf("set after expiration = %s, want CA", got)
	}
	// The erase reset lastmod: nothing more goes for an hour.
	c.advance(30 * time.Minute)
	s.Schedule(x)
	if got := set(); got != "CA" {
		t.Fatalf("set 30 min later = %s, want CA", got)
	}
	// Members that left the service are never chosen.
	s.Update(ds[:2])
	if got := letter(s.Schedule(x)); got == "C" {
		t.Fatalf("removed member chosen")
	}
	// Quiesced members are skipped by the set's minimum.
	setConns(ds[0], 0, 0)
	setConns(ds[1], 0, 0)
	ds[0].SetWeight(0)
	if got := letter(s.Schedule(x)); got != "B" {
		t.Fatalf("with A quiesced = %s, want B", got)
	}
}
