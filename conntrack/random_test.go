package conntrack

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// TestRandomCountsExact opens, updates, closes, removes and expires
// connections at random on a table small enough to evict, across
// persistent and non-persistent NAT and DR services, with weights and
// sysctls changing under it, and checks after every step that each
// destination's active, inactive and persistent counts equal what the
// table holds.
func TestRandomCountsExact(t *testing.T) {
	steps := 20000
	if testing.Short() {
		steps = 4000
	}
	for seed := uint64(1); seed <= 3; seed++ {
		rng := rand.New(rand.NewPCG(seed, seed*7))
		f := newFixture(t, 200, 4, func(o *Options) {
			o.EvictProbe = 8
			o.ActivePreEstablished = seed == 2
		})
		svcs := []*Service{
			f.service(t, func(o *ServiceOptions) { o.Fwd = []uint8{0, FwdMasq, FwdRoute, FwdMasq, FwdTunnel} }),
			f.service(t, func(o *ServiceOptions) {
				o.Persistent, o.Timeout, o.Netmask, o.DefaultFwd = true, 30*time.Second, 28, FwdMasq
			}),
			f.service(t, func(o *ServiceOptions) { o.Proto, o.Port, o.DefaultFwd = ProtoUDP, 80, FwdMasq }),
			f.service(t, func(o *ServiceOptions) {
				o.Proto, o.Port, o.OnePacket, o.Persistent, o.Timeout = ProtoUDP, 80, true, true, 20*time.Second
			}),
			f.service(t, func(o *ServiceOptions) { o.DefaultFwd = FwdFullNAT }),
		}
		var keys []Key
		flagSets := []uint8{syn, synack, ack, fin, rst, rstack, TCPPsh, ack | TCPPsh}
		for i := 0; i < steps; i++ {
			now := f.clk.advance(time.Duration(rng.IntN(int(20 * time.Millisecond))))
			switch op := rng.IntN(100); {
			case op < 35: // a new flow
				si := rng.IntN(len(svcs))
				proto := ProtoTCP
				if si == 2 || si == 3 {
					proto = ProtoUDP
				}
				k := clientKey(proto, uint32(rng.IntN(2000)), uint16(1024+rng.IntN(64)))
				c, v := f.t.NewConn(svcs[si], &k, flagSets[rng.IntN(3)], now)
				if c.Entry != nil {
					keys = append(keys, k)
					if v == VerdictNew && c.Fwd == FwdFullNAT {
						f.t.SetLocal(c.Entry, netip.MustParseAddr("10.9.9.9").As16(), uint16(rng.IntN(50)))
					}
				}
			case op < 75 && len(keys) > 0: // a packet on a known flow, either way
				k := keys[rng.IntN(len(keys))]
				e, _ := f.t.Lookup(&k, now)
				if e == nil {
					break
				}
				dir := DirInput
				if rng.IntN(2) == 0 {
					dir = DirOutput
					if e.flags&fReply != 0 {
						rk := e.replyKey()
						if got, d := f.t.Lookup(&rk, now); got != e || d != DirOutput {
							t.Fatalf("reply key of %v does not find it", e.Client())
						}
					}
				}
				f.t.Update(e, dir, flagSets[rng.IntN(len(flagSets))], 100, now)
			case op < 85:
				f.t.Expire(now, rng.IntN(200))
			case op < 88 && len(keys) > 0:
				k := keys[rng.IntN(len(keys))]
				if e, _ := f.t.Lookup(&k, now); e != nil {
					f.t.Remove(e)
				}
			case op < 92:
				f.dests[rng.IntN(len(f.dests))].SetWeight(int32(rng.IntN(3)))
			case op < 94:
				f.t.settings.SetExpireQuiescentTemplate(rng.IntN(2) == 0)
				f.t.settings.SetSecureTCP(rng.IntN(4) == 0)
			case op < 95:
				d := f.dests[rng.IntN(len(f.dests))]
				d.SetAvailable(!d.Available())
			case op < 96 && rng.IntN(4) == 0:
				f.clk.advance(time.Duration(rng.IntN(int(120 * time.Second))))
			}
			f.checkCounts(t)
			if len(keys) > 5000 {
				keys = keys[2500:]
			}
		}
		// Let everything expire: all counts must return to zero.
		f.clk.advance(2 * time.Hour)
		for i := 0; i < 10; i++ {
			f.t.Expire(f.clk.advance(2*time.Minute), 1000)
		}
		f.checkCounts(t)
		if f.t.Len() != 0 {
			t.Fatalf("seed %d: %d entries left after every timeout", seed, f.t.Len())
		}
		for _, d := range f.dests {
			if d.ActiveConns() != 0 || d.InactConns() != 0 || d.PersistConns() != 0 {
				t.Fatalf("seed %d: %v counts %d/%d/%d after every timeout", seed, d.Addr, d.ActiveConns(), d.InactConns(), d.PersistConns())
			}
		}
		st := f.t.Stats()
		if st.Evicted == 0 || st.Created == 0 {
			t.Fatalf("seed %d: the run never evicted (%+v); the test is too gentle", seed, st)
		}
	}
}

// TestFlood sends 10× the table's capacity of SYNs from random sources at
// full speed while established connections keep talking: every
// established connection keeps its entry and destination throughout, the
// table never exceeds its capacity and the heap does not grow.
func TestFlood(t *testing.T) {
	const capacity = 20000
	f := newFixture(t, capacity, 4, nil)
	svc := f.service(t, func(o *ServiceOptions) { o.DefaultFwd = FwdMasq })
	const established = 2000
	keys := make([]Key, established)
	dest := make([]uint32, established)
	for i := range keys {
		keys[i] = clientKey(ProtoTCP, uint32(i), 40000)
		c, v := f.t.NewConn(svc, &keys[i], syn, f.clk.now)
		if v != VerdictNew {
			t.Fatal(v)
		}
		f.t.Update(c.Entry, DirInput, syn, 60, f.clk.now)
		f.t.Update(c.Entry, DirOutput, synack, 60, f.clk.now)
		f.t.Update(c.Entry, DirInput, ack, 60, f.clk.now)
		dest[i] = c.Entry.DestID()
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	rng := rand.New(rand.NewPCG(1, 2))
	var untracked, tracked int
	for i := 0; i < 10*capacity; i++ {
		now := f.clk.advance(time.Microsecond)
		src := netip.AddrFrom4([4]byte{byte(1 + rng.IntN(200)), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
		k := KeyFrom(ProtoTCP, netip.AddrPortFrom(src, uint16(rng.Uint32())), netip.AddrPortFrom(vip, 80))
		c, v := f.t.NewConn(svc, &k, syn, now)
		switch {
		case v == VerdictNew:
			tracked++
			f.t.Update(c.Entry, DirInput, syn, 60, now)
		case v == VerdictUntracked && c.Dest != nil:
			untracked++
		default:
			t.Fatalf("flood SYN %d: %v", i, v)
		}
		if f.t.Len() > capacity {
			t.Fatalf("Len %d > capacity", f.t.Len())
		}
		if i%500 == 0 {
			f.t.Expire(now, 64)
			for j := range keys {
				e, dir := f.t.Lookup(&keys[j], now)
				if e == nil || dir != DirInput || e.DestID() != dest[j] || e.State() != StateEstablished {
					t.Fatalf("after %d flood SYNs, established flow %d lost its entry or destination", i, j)
				}
				f.t.Update(e, DirInput, ack, 1500, now)
			}
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grow := int64(after.HeapAlloc) - int64(before.HeapAlloc); grow > 1<<20 {
		t.Fatalf("heap grew by %d bytes during the flood", grow)
	}
	f.checkCounts(t)
	f.t.Expire(f.clk.now, 0)
	st := f.t.Stats()
	t.Logf("flood: %d tracked, %d untracked; %+v", tracked, untracked, st)
	if st.Evicted == 0 {
		t.Fatal("the flood evicted nothing")
	}
}

// TestFloodModeUntracked fills the table with established connections,
// so nothing may be evicted: new SYNs and, for FloodHold, segments of
// unknown flows are forwarded without entries; afterwards ACKs of unknown
// flows are not scheduled again.
func TestFloodModeUntracked(t *testing.T) {
	f := newFixture(t, 100, 2, nil)
	svc := f.service(t, nil)
	for i := 0; i < 100; i++ {
		k := clientKey(ProtoTCP, uint32(i), 1)
		c, _ := f.t.NewConn(svc, &k, syn, f.clk.now)
		f.t.Update(c.Entry, DirInput, ack, 60, f.clk.now)
	}
	k := clientKey(ProtoTCP, 5000, 1)
	c, v := f.t.NewConn(svc, &k, syn, f.clk.now)
	if v != VerdictUntracked || c.Dest == nil || c.Entry != nil {
		t.Fatalf("SYN into a full table: %v %+v", v, c)
	}
	if _, v := f.t.NewConn(svc, &k, ack, f.clk.advance(500*time.Millisecond)); v != VerdictUntracked {
		t.Fatalf("ACK while flooded: %v, want untracked", v)
	}
	if _, v := f.t.NewConn(svc, &k, ack, f.clk.advance(600*time.Millisecond)); v != VerdictNotNew {
		t.Fatalf("ACK after FloodHold: %v, want not-new", v)
	}
	f.t.Expire(f.clk.now, 0)
	if st := f.t.Stats(); st.Full != 1 || st.Untracked != 2 || st.NotNew != 1 {
		t.Fatalf("Stats = %+v", st)
	}
	f.checkCounts(t)
}

// TestEvictionPrefersUnestablished checks the victim order.
func TestEvictionPrefersUnestablished(t *testing.T) {
	f := newFixture(t, 4, 1, func(o *Options) { o.EvictProbe = 4 })
	now := f.clk.now
	mk := func(n uint32, flags ...uint8) *Entry {
		k := clientKey(ProtoTCP, n, 1)
		e, ok := f.t.Insert(&k, f.dests[0], FwdRoute, 80, now)
		if !ok {
			t.Fatalf("insert %d failed", n)
		}
		for _, fl := range flags {
			f.t.Update(e, DirInput, fl, 60, now)
		}
		return e
	}
	mk(1, syn, ack)      // ESTABLISHED
	mk(2, syn, ack, fin) // FIN_WAIT
	mk(3, syn)           // SYN_RECV
	mk(4, syn, ack)      // ESTABLISHED
	k5 := clientKey(ProtoTCP, 5, 1)
	if _, ok := f.t.Insert(&k5, f.dests[0], FwdRoute, 80, now); !ok {
		t.Fatal("insert into full table failed")
	}
	gone := func(n uint32) bool {
		k := clientKey(ProtoTCP, n, 1)
		e, _ := f.t.Lookup(&k, now)
		return e == nil
	}
	if !gone(3) || gone(1) || gone(2) || gone(4) {
		t.Fatal("eviction did not take the SYN_RECV entry")
	}
	k6 := clientKey(ProtoTCP, 6, 1)
	f.t.Insert(&k6, f.dests[0], FwdRoute, 80, now) // takes entry 5 (NONE) before FIN_WAIT
	if !gone(5) || gone(2) {
		t.Fatal("eviction took FIN_WAIT before a NONE entry")
	}
	f.checkCounts(t)
}
