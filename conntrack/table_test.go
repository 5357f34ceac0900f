package conntrack

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
	"unsafe"
)

func TestSizes(t *testing.T) {
	if got := unsafe.Sizeof(Key{}); got != 40 {
		t.Errorf("sizeof(Key) = %d, want 40", got)
	}
	if got := unsafe.Sizeof(Entry{}); got != 128 {
		t.Errorf("sizeof(Entry) = %d, want 128", got)
	}
}

func TestNewValidates(t *testing.T) {
	f := newFixture(t, 8, 1, nil)
	for _, tc := range []struct {
		name string
		mod  func(*Options)
	}{
		{"zero capacity", func(o *Options) { o.Capacity = 0 }},
		{"huge capacity", func(o *Options) { o.Capacity = MaxCapacity + 1 }},
		{"no registry", func(o *Options) { o.Registry = nil }},
		{"negative probe", func(o *Options) { o.EvictProbe = -1 }},
		{"negative timeout", func(o *Options) { o.Timeouts.UDP = -1 }},
	} {
		o := DefaultOptions()
		o.Capacity = 8
		o.Registry = f.reg
		tc.mod(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded, want an error", tc.name)
		}
	}
}

func TestInsertLookupRemove(t *testing.T) {
	f := newFixture(t, 64, 2, nil)
	now := f.clk.now
	k := clientKey(ProtoTCP, 1, 40000)
	e, ok := f.t.Insert(&k, f.dests[0], FwdRoute, 8080, now)
	if !ok || e == nil {
		t.Fatalf("Insert = %v, %v", e, ok)
	}
	if e2, ok := f.t.Insert(&k, f.dests[1], FwdRoute, 8080, now); ok || e2 != e {
		t.Fatalf("second Insert = %p, %v; want the first entry %p, false", e2, ok, e)
	}
	got, dir := f.t.Lookup(&k, now)
	if got != e || dir != DirInput {
		t.Fatalf("Lookup = %p, %v; want %p, input", got, dir, e)
	}
	if e.DestID() != f.dests[0].ID || e.Dest() != netip.MustParseAddrPort("10.0.0.1:8080") {
		t.Errorf("entry dest = %d %v", e.DestID(), e.Dest())
	}
	if e.Client() != netip.MustParseAddrPort("172.16.0.1:40000") || e.Virtual() != netip.MustParseAddrPort("192.168.1.10:80") {
		t.Errorf("entry key = %v → %v", e.Client(), e.Virtual())
	}
	other := clientKey(ProtoTCP, 1, 40001)
	if got, _ := f.t.Lookup(&other, now); got != nil {
		t.Errorf("Lookup(other port) = %p, want nil", got)
	}
	udp := clientKey(ProtoUDP, 1, 40000)
	if got, _ := f.t.Lookup(&udp, now); got != nil {
		t.Errorf("Lookup(same ports, UDP) = %p, want nil", got)
	}
	if f.dests[0].InactConns() != 1 {
		t.Errorf("InactConns = %d, want 1", f.dests[0].InactConns())
	}
	f.checkCounts(t)
	f.t.Remove(e)
	if got, _ := f.t.Lookup(&k, now); got != nil {
		t.Errorf("Lookup after Remove = %p", got)
	}
	if f.t.Len() != 0 || f.dests[0].InactConns() != 0 {
		t.Errorf("after Remove: Len %d, InactConns %d", f.t.Len(), f.dests[0].InactConns())
	}
	f.checkCounts(t)
}

func TestIPv6Keys(t *testing.T) {
	f := newFixture(t, 16, 1, nil)
	k := KeyFrom(ProtoTCP, netip.MustParseAddrPort("[2001:db8::1]:5000"), netip.MustParseAddrPort("[2001:db8::80]:443"))
	k4 := KeyFrom(ProtoTCP, netip.MustParseAddrPort("0.0.0.1:5000"), netip.MustParseAddrPort("0.0.0.2:443"))
	e, _ := f.t.Insert(&k, f.dests[0], FwdRoute, 443, f.clk.now)
	if got, _ := f.t.Lookup(&k, f.clk.now); got != e {
		t.Fatalf("IPv6 lookup = %p, want %p", got, e)
	}
	if got, _ := f.t.Lookup(&k4, f.clk.now); got != nil {
		t.Fatalf("IPv4 lookup hit the IPv6 entry")
	}
	if e.Client().String() != "[2001:db8::1]:5000" {
		t.Errorf("Client() = %v", e.Client())
	}
}

func TestMasqReplyKey(t *testing.T) {
	f := newFixture(t, 16, 1, nil)
	now := f.clk.now
	k := clientKey(ProtoTCP, 7, 33333)
	e, _ := f.t.Insert(&k, f.dests[0], FwdMasq, 8080, now)
	// Reply: 10.0.0.1:8080 → 172.16.0.7:33333.
	rk := KeyFrom(ProtoTCP, netip.MustParseAddrPort("10.0.0.1:8080"), netip.MustParseAddrPort("172.16.0.7:33333"))
	got, dir := f.t.Lookup(&rk, now)
	if got != e || dir != DirOutput {
		t.Fatalf("reply Lookup = %p, %v; want %p, output", got, dir, e)
	}
	// A DR entry has no reply key.
	k2 := clientKey(ProtoTCP, 8, 33333)
	f.t.Insert(&k2, f.dests[0], FwdRoute, 8080, now)
	rk2 := KeyFrom(ProtoTCP, netip.MustParseAddrPort("10.0.0.1:8080"), netip.MustParseAddrPort("172.16.0.8:33333"))
	if got, _ := f.t.Lookup(&rk2, now); got != nil {
		t.Fatalf("DR entry answered a reply key")
	}
	f.t.Remove(e)
	if got, _ := f.t.Lookup(&rk, now); got != nil {
		t.Fatalf("reply key survived Remove")
	}
	f.checkCounts(t)
}

func TestFullNATLocal(t *testing.T) {
	f := newFixture(t, 16, 1, nil)
	now := f.clk.now
	k1, k2 := clientKey(ProtoTCP, 1, 1000), clientKey(ProtoTCP, 2, 1000)
	e1, _ := f.t.Insert(&k1, f.dests[0], FwdFullNAT, 8080, now)
	e2, _ := f.t.Insert(&k2, f.dests[0], FwdFullNAT, 8080, now)
	laddr := netip.MustParseAddr("10.0.0.254").As16()
	if !f.t.SetLocal(e1, laddr, 20000) {
		t.Fatal("SetLocal(e1) failed")
	}
	if f.t.SetLocal(e2, laddr, 20000) {
		t.Fatal("SetLocal(e2) with e1's local port succeeded")
	}
	if !f.t.SetLocal(e2, laddr, 20001) {
		t.Fatal("SetLocal(e2, 20001) failed")
	}
	rk := KeyFrom(ProtoTCP, netip.MustParseAddrPort("10.0.0.1:8080"), netip.MustParseAddrPort("10.0.0.254:20001"))
	if got, dir := f.t.Lookup(&rk, now); got != e2 || dir != DirOutput {
		t.Fatalf("reply Lookup = %p, %v; want e2 %p, output", got, dir, e2)
	}
	if e2.Local() != netip.MustParseAddrPort("10.0.0.254:20001") {
		t.Errorf("Local() = %v", e2.Local())
	}
	f.checkCounts(t)
}

func TestExpireSweep(t *testing.T) {
	f := newFixture(t, 1000, 3, nil)
	now := f.clk.now
	for i := uint32(0); i < 900; i++ {
		k := clientKey(ProtoUDP, i, 53)
		e, _ := f.t.Insert(&k, f.dests[i%3], FwdRoute, 53, now)
		f.t.Update(e, DirInput, 0, 100, now)
	}
	f.checkCounts(t)
	// Nothing expires before 300 s.
	now = f.clk.advance(299 * time.Second)
	if n := f.t.Expire(now, 10000); n != 0 {
		t.Fatalf("Expire at 299 s removed %d", n)
	}
	now = f.clk.advance(time.Second)
	removed := 0
	for calls := 0; removed < 900; calls++ {
		if calls > 9 {
			t.Fatalf("10 sweeps of 100 removed %d, want 900", removed)
		}
		removed += f.t.Expire(now, 100)
		f.checkCounts(t)
	}
	if f.t.Len() != 0 {
		t.Fatalf("Len = %d after expiry", f.t.Len())
	}
	if s := f.t.Stats(); s.Expired != 900 || s.Created != 900 || s.Entries != 0 {
		t.Errorf("Stats = %+v", s)
	}
}

func TestLookupHidesExpired(t *testing.T) {
	f := newFixture(t, 16, 1, nil)
	now := f.clk.now
	k := clientKey(ProtoUDP, 1, 5353)
	e, _ := f.t.Insert(&k, f.dests[0], FwdRoute, 53, now)
	f.t.Update(e, DirInput, 0, 60, now)
	now = f.clk.advance(300*time.Second - 1)
	if got, _ := f.t.Lookup(&k, now); got != e {
		t.Fatal("entry gone 1 ns before its timeout")
	}
	f.t.Update(e, DirInput, 0, 60, now) // restarts the timer
	now = f.clk.advance(300*time.Second - 1)
	if got, _ := f.t.Lookup(&k, now); got != e {
		t.Fatal("Update did not restart the timer")
	}
	now = f.clk.advance(300 * time.Second)
	if got, _ := f.t.Lookup(&k, now); got != nil {
		t.Fatal("expired entry returned")
	}
	if f.t.Len() != 0 || f.dests[0].InactConns() != 0 {
		t.Fatalf("expired entry not removed: Len %d, InactConns %d", f.t.Len(), f.dests[0].InactConns())
	}
}

func TestCounters(t *testing.T) {
	f := newFixture(t, 16, 1, nil)
	now := f.clk.now
	k := clientKey(ProtoTCP, 1, 1)
	e, _ := f.t.Insert(&k, f.dests[0], FwdMasq, 8080, now)
	f.t.Update(e, DirInput, TCPSyn, 60, now)
	f.t.Update(e, DirOutput, TCPSyn|TCPAck, 60, now)
	f.t.Update(e, DirInput, TCPAck, 1500, now)
	in, out, inb, outb := e.Counters()
	if in != 2 || out != 1 || inb != 1560 || outb != 60 {
		t.Fatalf("Counters = %d %d %d %d; want 2 1 1560 60", in, out, inb, outb)
	}
}

func TestReuse(t *testing.T) {
	f := newFixture(t, 16, 2, nil)
	nat := f.service(t, func(o *ServiceOptions) { o.DefaultFwd = FwdMasq })
	dr := f.service(t, nil)
	per := f.service(t, func(o *ServiceOptions) { o.Persistent, o.Timeout = true, time.Minute })
	now := f.clk.now
	open := func(svc *Service, n uint32, flags ...uint8) (*Entry, Key) {
		k := clientKey(ProtoTCP, n, 1000)
		c, v := f.t.NewConn(svc, &k, syn, now)
		if v != VerdictNew {
			t.Fatalf("flow %d: %v", n, v)
		}
		for _, fl := range flags {
			f.t.Update(c.Entry, DirInput, fl, 40, now)
		}
		return c.Entry, k
	}
	e, k := open(nat, 1, syn, ack)
	if f.t.Reuse(e, syn) {
		t.Fatal("SYN on an ESTABLISHED connection reused it")
	}
	f.t.Update(e, DirInput, fin, 40, now)
	f.t.Update(e, DirOutput, fin, 40, now) // TIME_WAIT
	if f.t.Reuse(e, ack) {
		t.Fatal("an ACK reused a TIME_WAIT entry")
	}
	if !f.t.Reuse(e, syn) {
		t.Fatal("SYN on TIME_WAIT not reused")
	}
	if got, _ := f.t.Lookup(&k, now); got != nil {
		t.Fatal("reused entry still there")
	}
	if _, v := f.t.NewConn(nat, &k, syn, now); v != VerdictNew {
		t.Fatalf("NewConn after Reuse: %v", v)
	}
	// Persistence: a controlled connection is never reused.
	pe, _ := open(per, 2, syn, rst)
	if pe.State() != StateClose && pe.State() != StateSynRecv {
		t.Fatalf("state %v", pe.State())
	}
	f.t.Update(pe, DirInput, TCPPsh, 40, now) // CLOSE
	if f.t.Reuse(pe, syn) {
		t.Fatal("reused a connection controlled by a template")
	}
	// DR FIN_WAIT: only with conn_reuse_mode bit 2.
	de, _ := open(dr, 3, syn, ack, fin)
	if de.State() != StateFinWait {
		t.Fatalf("DR state %v, want FIN_WAIT", de.State())
	}
	if f.t.Reuse(de, syn) {
		t.Fatal("mode 1 reused FIN_WAIT")
	}
	f.t.settings.SetConnReuseMode(3)
	f.t.Expire(now, 0)
	if !f.t.Reuse(de, syn) {
		t.Fatal("mode 3 did not reuse a DR FIN_WAIT entry")
	}
	f.t.settings.SetConnReuseMode(0)
	f.t.Expire(now, 0)
	ce, _ := open(nat, 4, syn, TCPPsh) // CLOSE
	if f.t.Reuse(ce, syn) {
		t.Fatal("mode 0 reused")
	}
	f.checkCounts(t)
	f.t.Expire(now, 0)
	if f.t.Stats().Reused != 2 {
		t.Fatalf("Stats.Reused = %d, want 2", f.t.Stats().Reused)
	}
}

func TestLookupBatch(t *testing.T) {
	f := newFixture(t, 256, 1, nil)
	var keys []Key
	for i := uint32(0); i < 200; i++ {
		k := clientKey(ProtoUDP, i, 9)
		keys = append(keys, k)
		if i%2 == 0 {
			e, _ := f.t.Insert(&k, f.dests[0], FwdMasq, 53, f.clk.now)
			if i%10 == 0 {
				e.expires = f.clk.now // expired: the batch must not return it
			} else {
				f.t.Update(e, DirInput, 0, 1, f.clk.now)
			}
		}
	}
	// Reply keys in the same batch.
	rk := KeyFrom(ProtoUDP, netip.MustParseAddrPort("10.0.0.1:53"), netip.MustParseAddrPort("172.16.0.2:9"))
	keys = append(keys, rk)
	hits := make([]Hit, len(keys))
	f.t.LookupBatch(keys, f.clk.now, hits)
	for i := range keys[:200] {
		want := i%2 == 0 && i%10 != 0
		if (hits[i].Entry != nil) != want || hits[i].Dir != DirInput {
			t.Fatalf("key %d: hit %+v, want entry %v", i, hits[i], want)
		}
	}
	if h := hits[200]; h.Entry == nil || h.Dir != DirOutput || h.Entry.Client().Port() != 9 {
		t.Fatalf("reply key: %+v", h)
	}
	f.t.LookupBatch(nil, f.clk.now, nil)
	f.checkCounts(t)
	if n := testing.AllocsPerRun(100, func() { f.t.LookupBatch(keys, f.clk.now, hits) }); n != 0 {
		t.Fatalf("LookupBatch: %v allocs", n)
	}
}

// TestLookupBatchProtectsHits: creating entries for a batch's misses
// never evicts an entry the batch returned.
func TestLookupBatchProtectsHits(t *testing.T) {
	f := newFixture(t, 8, 1, func(o *Options) { o.EvictProbe = 8 })
	svc := f.service(t, nil)
	var keys []Key
	for i := uint32(0); i < 8; i++ {
		k := clientKey(ProtoTCP, i, 1)
		f.t.NewConn(svc, &k, syn, f.clk.now) // NONE: evictable
		keys = append(keys, k)
	}
	hits := make([]Hit, 8)
	f.t.LookupBatch(keys[:4], f.clk.now, hits)
	for i := uint32(0); i < 4; i++ {
		k := clientKey(ProtoTCP, 100+i, 1)
		if _, v := f.t.NewConn(svc, &k, syn, f.clk.now); v != VerdictNew {
			t.Fatalf("new flow %d: %v", i, v)
		}
	}
	for i := range keys[:4] {
		if hits[i].Entry.Key() != keys[i] {
			t.Fatalf("hit %d was evicted and reused during its batch", i)
		}
		if e, _ := f.t.Lookup(&keys[i], f.clk.now); e != hits[i].Entry {
			t.Fatalf("hit %d no longer found", i)
		}
	}
	// Four protected hits and four new entries: the next flows take
	// the new ones' places, never the hits'.
	for i := uint32(0); i < 6; i++ {
		k := clientKey(ProtoTCP, 200+i, 1)
		if _, v := f.t.NewConn(svc, &k, syn, f.clk.now); v != VerdictNew {
			t.Fatalf("flow %d: %v", i, v)
		}
	}
	for i := range keys[:4] {
		if e, _ := f.t.Lookup(&keys[i], f.clk.now); e != hits[i].Entry {
			t.Fatalf("hit %d evicted", i)
		}
	}
	f.checkCounts(t)
}

func TestZeroOptionsTimeoutsAreDefaults(t *testing.T) {
	f := newFixture(t, 8, 1, nil)
	tb, err := New(Options{Capacity: 8, Registry: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	k := clientKey(ProtoUDP, 1, 1)
	e, _ := tb.Insert(&k, f.dests[0], FwdRoute, 53, 0)
	tb.Update(e, DirInput, 0, 1, 0)
	if e.Expires() != int64(300*time.Second) {
		t.Fatalf("UDP timer %v with zero Options.Timeouts, want 300s", time.Duration(e.Expires()))
	}
	// EvictProbe 0 never evicts: a full table forwards untracked.
	k2 := clientKey(ProtoUDP, 2, 1)
	for i := uint32(2); i < 9; i++ {
		k2 = clientKey(ProtoUDP, i, 1)
		tb.Insert(&k2, f.dests[0], FwdRoute, 53, 0)
	}
	k3 := clientKey(ProtoUDP, 99, 1)
	if e, ok := tb.Insert(&k3, f.dests[0], FwdRoute, 53, 0); e != nil || ok {
		t.Fatal("EvictProbe 0 evicted")
	}
}

// TestReplyHash: replyHash, which reads the entry's fields, equals hash
// of the reply key built from them, for random entries of both families
// and edge values.
func TestReplyHash(t *testing.T) {
	rng := rand.New(rand.NewPCG(40, 37))
	s := seed{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()}
	for i := range 10000 {
		var e Entry
		for j := range 16 {
			e.daddr[j], e.laddr[j] = byte(rng.Uint32()), byte(rng.Uint32())
			e.key.Src[j], e.key.Dst[j] = byte(rng.Uint32()), byte(rng.Uint32())
		}
		if i%2 == 0 { // IPv4-mapped
			copy(e.daddr[:12], []byte{10: 0xff, 11: 0xff})
			copy(e.laddr[:12], []byte{10: 0xff, 11: 0xff})
		}
		e.dport, e.lport, e.key.Proto = uint16(rng.Uint32()), uint16(rng.Uint32()), uint8(rng.Uint32())
		if i%7 == 0 {
			e.dport, e.lport, e.key.Proto = 0xffff, 0xffff, 0xff
		}
		rk := e.replyKey()
		if got, want := s.replyHash(&e), s.hash(&rk); got != want {
			t.Fatalf("replyHash(%+v) = %#x, hash(replyKey) = %#x", e, got, want)
		}
	}
}
