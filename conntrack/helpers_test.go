package conntrack

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xlbproject/xlb/sched"
)

// clock is a fake monotonic clock in nanoseconds.
type clock struct{ now int64 }

func (c *clock) advance(d time.Duration) int64 { c.now += int64(d); return c.now }

// testRR is a minimal round-robin scheduler for tests (skips weight 0
// and overloaded destinations), so these tests do not depend on the
// schedulers in package sched.
type testRR struct {
	dests []*sched.Dest
	next  int
	calls int
}

func (s *testRR) Name() string               { return "test-rr" }
func (s *testRR) Update(dests []*sched.Dest) { s.dests = dests }
func (s *testRR) Schedule(*sched.Flow) *sched.Dest {
	s.calls++
	for range s.dests {
		d := s.dests[s.next%len(s.dests)]
		s.next++
		if d.Weight() > 0 && !d.Overloaded() {
			return d
		}
	}
	return nil
}

// fixture is a registry with n destinations 10.0.0.1.. :8080 and a table.
type fixture struct {
	reg   *sched.Registry
	dests []*sched.Dest
	t     *Table
	rr    *testRR
	clk   clock
}

func newFixture(tb testing.TB, capacity, ndest int, mod func(*Options)) *fixture {
	tb.Helper()
	f := &fixture{reg: sched.NewRegistry(ndest + 1), clk: clock{now: 1e12}}
	for i := 0; i < ndest; i++ {
		d := sched.NewDest(netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + i)}), 8080, 1)
		if err := f.reg.Add(d); err != nil {
			tb.Fatal(err)
		}
		f.dests = append(f.dests, d)
	}
	f.rr = &testRR{dests: f.dests}
	o := DefaultOptions()
	o.Capacity = capacity
	o.Registry = f.reg
	if mod != nil {
		mod(&o)
	}
	t, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	f.t = t
	return f
}

func (f *fixture) service(tb testing.TB, mod func(*ServiceOptions)) *Service {
	tb.Helper()
	o := DefaultServiceOptions()
	o.Scheduler = f.rr
	o.Port = 80
	if mod != nil {
		mod(&o)
	}
	s, err := NewService(o)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

var vip = netip.MustParseAddr("192.168.1.10")

// clientKey is the forward key of client 172.16.a.b:port → vip:80.
func clientKey(proto uint8, n uint32, port uint16) Key {
	c := netip.AddrFrom4([4]byte{172, 16, byte(n >> 8), byte(n)})
	if n > 0xffff {
		c = netip.AddrFrom4([4]byte{byte(100 + n>>24), byte(n >> 16), byte(n >> 8), byte(n)})
	}
	return KeyFrom(proto, netip.AddrPortFrom(c, port), netip.AddrPortFrom(vip, 80))
}

// counts sums, over the table's live entries, what each destination's
// counters should be.
func (f *fixture) recount() map[uint32][3]int32 {
	m := map[uint32][3]int32{}
	t := f.t
	for i := uint32(0); i < t.used; i++ {
		e := &t.entries[i]
		if e.flags&fUsed == 0 || e.flags&fBound == 0 {
			continue
		}
		c := m[e.dest]
		switch {
		case e.flags&fTemplate != 0:
			c[2]++
		case e.flags&fInactive == 0:
			c[0]++
		default:
			c[1]++
		}
		m[e.dest] = c
	}
	return m
}

// checkCounts fails unless every destination's active, inactive and
// persistent counts equal what the table's entries say.
func (f *fixture) checkCounts(tb testing.TB) {
	tb.Helper()
	want := f.recount()
	for _, d := range f.dests {
		w := want[d.ID]
		got := [3]int32{d.ActiveConns(), d.InactConns(), d.PersistConns()}
		if got != w {
			tb.Fatalf("dest %v: active/inactive/persist = %v, want %v", d.Addr, got, w)
		}
	}
	f.checkInvariants(tb)
}

// checkInvariants verifies the index against the entries: every live
// entry is found by its keys, the index holds nothing else, template
// control counts add up.
func (f *fixture) checkInvariants(tb testing.TB) {
	tb.Helper()
	t := f.t
	live, tmpl, slots := 0, 0, 0
	ctl := map[uint32]uint32{}
	for i := range uint32(len(t.entries)) {
		bit := t.bits[i>>6]>>(i&63)&1 != 0
		if used := i < t.used && t.entries[i].flags&fUsed != 0; bit != used {
			tb.Fatalf("entry %d: allocation bit %v, in use %v (high-water mark %d)", i, bit, used, t.used)
		}
	}
	for i := uint32(0); i < t.used; i++ {
		e := &t.entries[i]
		if e.flags&fUsed == 0 {
			continue
		}
		live++
		if e.flags&fTemplate != 0 {
			tmpl++
		} else if e.link != 0 {
			ctl[e.link-1]++
		}
		if e.flags&fUnhashed == 0 {
			slots++
			if idx, ok := t.findFwd(&e.key, uint32(t.seed.hash(&e.key))); !ok || idx != i {
				tb.Fatalf("entry %d: forward key not found (%v, %d)", i, ok, idx)
			}
		}
		if e.flags&fReply != 0 {
			slots++
			rk := e.replyKey()
			if h := t.seed.hash(&rk); t.seed.replyHash(e) != h {
				tb.Fatalf("entry %d: replyHash %#x, hash of the reply key %#x", i, t.seed.replyHash(e), h)
			}
			if _, found := t.findReply(e, uint32(t.seed.hash(&rk))); !found {
				tb.Fatalf("entry %d: reply key not found", i)
			}
		}
	}
	for i, n := range ctl {
		if t.entries[i].flags&fTemplate == 0 {
			tb.Fatalf("entry %d controls %d connections but is not a template", i, n)
		}
	}
	for i := uint32(0); i < t.used; i++ {
		if e := &t.entries[i]; e.flags&(fUsed|fTemplate) == fUsed|fTemplate && e.link != ctl[i] {
			tb.Fatalf("template %d controls %d connections, its count says %d", i, ctl[i], e.link)
		}
	}
	n := 0
	for _, s := range t.slots {
		if s != 0 {
			n++
		}
	}
	if live != t.live || tmpl != t.tmpl || n != slots {
		tb.Fatalf("live %d (table says %d), templates %d (%d), slots %d (want %d)", live, t.live, tmpl, t.tmpl, n, slots)
	}
}
