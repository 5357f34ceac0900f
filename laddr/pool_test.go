package laddr

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func a16(s string) [16]byte { return netip.MustParseAddr(s).As16() }

func newPool(t testing.TB, o Options, addrs ...string) *Pool {
	t.Helper()
	p, err := New(o)
	if err != nil {
		t.Fatalf("New(%+v): %v", o, err)
	}
	var as []netip.Addr
	for _, s := range addrs {
		as = append(as, netip.MustParseAddr(s))
	}
	if err := p.SetAddrs(as); err != nil {
		t.Fatalf("SetAddrs(%v): %v", as, err)
	}
	return p
}

func index(t testing.TB, p *Pool, s string) int32 {
	t.Helper()
	i, ok := p.Index(a16(s))
	if !ok {
		t.Fatalf("Index(%s): not configured", s)
	}
	return i
}

func TestNewOptions(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Workers: 0, MinPort: 1, MaxPort: 2, Buckets: 1}, "invalid worker count 0: must be 1..65535"},
		{Options{Worker: 2, Workers: 2, MinPort: 1, MaxPort: 2, Buckets: 1}, "invalid worker 2: must be 0..1"},
		{Options{Worker: -1, Workers: 2, MinPort: 1, MaxPort: 2, Buckets: 1}, "invalid worker -1: must be 0..1"},
		{Options{Workers: 1, MinPort: 0, MaxPort: 2, Buckets: 1}, "invalid port range 0-2: must be within 1..65535, low to high"},
		{Options{Workers: 1, MinPort: 3, MaxPort: 2, Buckets: 1}, "invalid port range 3-2: must be within 1..65535, low to high"},
		{Options{Workers: 1, MinPort: 1, MaxPort: 2, Buckets: 3}, "invalid bucket count 3: must be a power of two, 1..128"},
		{Options{Workers: 1, MinPort: 1, MaxPort: 2, Buckets: 256}, "invalid bucket count 256: must be a power of two, 1..128"},
		{Options{Workers: 1, MinPort: 1, MaxPort: 2}, "invalid bucket count 0: must be a power of two, 1..128"},
		{Options{Worker: 3, Workers: 4, MinPort: 1024, MaxPort: 1025, Buckets: 1}, "invalid port range 1024-1025: worker 3 of 4 owns none of its ports"},
	} {
		if _, err := New(tc.o); err == nil || err.Error() != tc.want {
			t.Errorf("New(%+v) = %v, want %q", tc.o, err, tc.want)
		}
	}
	p, err := New(DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if p.Share() != 65535-1025+1 {
		t.Errorf("default Share = %d, want 64511", p.Share())
	}
	if err := p.SetAddrs([]netip.Addr{{}}); err == nil {
		t.Error("SetAddrs(invalid address) succeeded")
	}
	if err := p.SetAddrs([]netip.Addr{netip.MustParseAddr("fe80::1%eth0")}); err == nil {
		t.Error("SetAddrs(address with zone) succeeded")
	}
}

// TestShares checks that the workers' shares are disjoint, cover the
// range, and are owned as Owner says.
func TestShares(t *testing.T) {
	for _, tc := range []struct {
		workers  int
		min, max uint16
	}{
		{1, 1025, 65535}, {2, 1025, 65535}, {3, 1025, 65535}, {4, 1025, 65535},
		{6, 1, 100}, {16, 1025, 65535}, {5, 65530, 65535}, {1, 65535, 65535},
	} {
		seen := make(map[uint16]int)
		for w := 0; w < tc.workers; w++ {
			p := newPool(t, Options{Worker: w, Workers: tc.workers, MinPort: tc.min, MaxPort: tc.max, Buckets: 1}, "10.0.0.1")
			i := index(t, p, "10.0.0.1")
			for {
				port, ok := p.Alloc(i, a16("10.1.1.1"), 80)
				if !ok {
					break
				}
				if port < tc.min || port > tc.max {
					t.Fatalf("workers %d: worker %d got port %d outside %d-%d", tc.workers, w, port, tc.min, tc.max)
				}
				if Owner(port, tc.workers) != w {
					t.Fatalf("workers %d: worker %d got port %d, which Owner gives to %d", tc.workers, w, port, Owner(port, tc.workers))
				}
				if o, dup := seen[port]; dup {
					t.Fatalf("workers %d: port %d given to workers %d and %d", tc.workers, port, o, w)
				}
				seen[port] = w
			}
			if got := int(p.AddrStats(i).InUse); got != p.Share() {
				t.Errorf("workers %d: worker %d handed out %d ports, share %d", tc.workers, w, got, p.Share())
			}
		}
		if want := int(tc.max) - int(tc.min) + 1; len(seen) != want {
			t.Errorf("workers %d, ports %d-%d: %d ports handed out, want all %d", tc.workers, tc.min, tc.max, len(seen), want)
		}
	}
}

func TestExhaustion(t *testing.T) {
	p := newPool(t, Options{Workers: 1, MinPort: 2000, MaxPort: 2003, Buckets: 1}, "10.0.0.1")
	i := index(t, p, "10.0.0.1")
	rs := a16("10.1.1.1")
	var got []uint16
	for k := 0; k < 4; k++ {
		port, ok := p.Alloc(i, rs, 80)
		if !ok {
			t.Fatalf("Alloc %d failed with free ports", k)
		}
		got = append(got, port)
	}
	if want := []uint16{2000, 2001, 2002, 2003}; !equal(got, want) {
		t.Errorf("ports = %v, want %v", got, want)
	}
	// Ports are unique per address whatever the real server: the next
	// one fails for another real server too, and is counted.
	for _, rs2 := range [][16]byte{rs, a16("10.1.1.2")} {
		if port, ok := p.Alloc(i, rs2, 80); ok {
			t.Fatalf("Alloc on an exhausted address = %d", port)
		}
	}
	if s := p.Stats(); s.Exhausted != 2 || s.Allocs != 4 {
		t.Errorf("Stats = %+v, want 2 exhausted, 4 allocs", s)
	}
	if s := p.AddrStats(i); s.Exhausted != 2 || s.InUse != 4 {
		t.Errorf("AddrStats = %+v, want 2 exhausted, 4 in use", s)
	}
	// Release returns the port, and it is handed out again last (FIFO).
	if !p.Release(a16("10.0.0.1"), rs, 80, 2001) {
		t.Fatal("Release(2001) = false")
	}
	if port, ok := p.Alloc(i, rs, 80); !ok || port != 2001 {
		t.Errorf("Alloc after Release = %d, %v, want 2001", port, ok)
	}
	if !p.Release(a16("10.0.0.1"), rs, 80, 2003) || !p.Release(a16("10.0.0.1"), rs, 80, 2000) {
		t.Fatal("Release failed")
	}
	for _, want := range []uint16{2003, 2000} {
		if port, ok := p.Alloc(i, rs, 80); !ok || port != want {
			t.Errorf("Alloc = %d, %v, want %d (released order)", port, ok, want)
		}
	}
}

func TestBadRelease(t *testing.T) {
	p := newPool(t, Options{Worker: 1, Workers: 2, MinPort: 2000, MaxPort: 2009, Buckets: 1}, "10.0.0.1")
	i := index(t, p, "10.0.0.1")
	rs := a16("10.1.1.1")
	port, ok := p.Alloc(i, rs, 80)
	if !ok || port != 2001 {
		t.Fatalf("Alloc = %d, %v, want 2001", port, ok)
	}
	la := a16("10.0.0.1")
	for _, tc := range []struct {
		name  string
		laddr [16]byte
		port  uint16
	}{
		{"never handed out", la, 2003},
		{"other worker's", la, 2002},
		{"below the range", la, 1999},
		{"above the range", la, 2011},
		{"zero", la, 0},
		{"unknown address", a16("10.0.0.2"), 2001},
	} {
		before := p.Stats().BadReleases
		if p.Release(tc.laddr, rs, 80, tc.port) {
			t.Errorf("Release(%s) = true", tc.name)
		}
		if p.Stats().BadReleases != before+1 {
			t.Errorf("Release(%s) not counted", tc.name)
		}
	}
	if !p.Release(la, rs, 80, port) {
		t.Fatal("Release = false")
	}
	if p.Release(la, rs, 80, port) {
		t.Error("double Release = true")
	}
	if s := p.AddrStats(i); s.InUse != 0 {
		t.Errorf("InUse = %d after release, want 0", s.InUse)
	}
}

// TestBuckets checks that with buckets real servers in different
// buckets reuse ports, one real server never gets a port twice, and the
// bucket is the real server's at release.
func TestBuckets(t *testing.T) {
	p := newPool(t, Options{Workers: 1, MinPort: 3000, MaxPort: 3007, Buckets: 16}, "10.0.0.1")
	i := index(t, p, "10.0.0.1")
	// Find two real servers in different buckets and one in the first's.
	rsA := a16("10.1.1.1")
	var rsB, rsC [16]byte
	var foundB, foundC bool
	for k := 2; k < 1000 && !(foundB && foundC); k++ {
		rs := netip.AddrFrom4([4]byte{10, 1, byte(k >> 8), byte(k)}).As16()
		if p.bucketOf(&rs, 80) != p.bucketOf(&rsA, 80) && !foundB {
			rsB, foundB = rs, true
		} else if p.bucketOf(&rs, 80) == p.bucketOf(&rsA, 80) && !foundC {
			rsC, foundC = rs, true
		}
	}
	if !foundB || !foundC {
		t.Fatal("no real servers found in the buckets wanted")
	}
	for k := 0; k < 8; k++ {
		if _, ok := p.Alloc(i, rsA, 80); !ok {
			t.Fatalf("Alloc A %d failed", k)
		}
	}
	if _, ok := p.Alloc(i, rsC, 80); ok {
		t.Error("Alloc for a real server in an exhausted bucket succeeded")
	}
	for k := 0; k < 8; k++ {
		if _, ok := p.Alloc(i, rsB, 80); !ok {
			t.Fatalf("Alloc B %d failed: buckets share ports", k)
		}
	}
	if got := p.AddrStats(i).InUse; got != 16 {
		t.Errorf("InUse = %d, want 16 (twice the share)", got)
	}
	// Releasing B's port does not free a port of A's bucket.
	if !p.Release(a16("10.0.0.1"), rsB, 80, 3000) {
		t.Fatal("Release B = false")
	}
	if _, ok := p.Alloc(i, rsC, 80); ok {
		t.Error("a release in B's bucket freed a port in A's")
	}
	if p.Release(a16("10.0.0.1"), rsB, 80, 3000) {
		t.Error("second Release B = true")
	}
}

func TestAllocFrom(t *testing.T) {
	p := newPool(t, Options{Workers: 1, MinPort: 4000, MaxPort: 4001, Buckets: 1}, "10.0.0.1", "10.0.0.2", "10.0.0.3")
	set := []int32{index(t, p, "10.0.0.1"), index(t, p, "10.0.0.2"), index(t, p, "10.0.0.3")}
	rs := a16("10.1.1.1")
	var next uint32
	count := map[netip.Addr]int{}
	for k := 0; k < 6; k++ {
		la, _, ok := p.AllocFrom(set, &next, rs, 80)
		if !ok {
			t.Fatalf("AllocFrom %d failed", k)
		}
		count[netip.AddrFrom16(la).Unmap()]++
	}
	for _, s := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		if count[netip.MustParseAddr(s)] != 2 {
			t.Errorf("round robin: %v", count)
		}
	}
	if _, _, ok := p.AllocFrom(set, &next, rs, 80); ok {
		t.Error("AllocFrom with every address exhausted succeeded")
	}
	if s := p.Stats(); s.Exhausted != 1 {
		t.Errorf("Exhausted = %d, want 1 (one refused connection)", s.Exhausted)
	}
	// An exhausted address is skipped: free one port of the third.
	if !p.Release(a16("10.0.0.3"), rs, 80, 4001) {
		t.Fatal("Release = false")
	}
	next = 0
	la, port, ok := p.AllocFrom(set, &next, rs, 80)
	if !ok || la != a16("10.0.0.3") || port != 4001 {
		t.Errorf("AllocFrom = %v:%d %v, want 10.0.0.3:4001", netip.AddrFrom16(la).Unmap(), port, ok)
	}
	if _, _, ok := p.AllocFrom(nil, &next, rs, 80); ok || p.Stats().NoAddr != 1 {
		t.Errorf("AllocFrom(no addresses) = %v, NoAddr %d, want false, 1", ok, p.Stats().NoAddr)
	}
	if _, ok := p.Alloc(99, rs, 80); ok || p.Stats().NoAddr != 2 {
		t.Errorf("Alloc(bad index) = %v, NoAddr %d, want false, 2", ok, p.Stats().NoAddr)
	}
}

// TestDrain checks that a removed address takes its ports back without
// giving new ones, is forgotten when empty, and keeps its state when it
// comes back before that.
func TestDrain(t *testing.T) {
	p := newPool(t, Options{Workers: 1, MinPort: 5000, MaxPort: 5009, Buckets: 1}, "10.0.0.1", "2001:db8::1")
	i := index(t, p, "10.0.0.1")
	rs := a16("10.1.1.1")
	p1, _ := p.Alloc(i, rs, 80)
	p2, _ := p.Alloc(i, rs, 80)
	if err := p.SetAddrs([]netip.Addr{netip.MustParseAddr("2001:db8::1")}); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Index(a16("10.0.0.1")); ok {
		t.Error("Index of a draining address succeeded")
	}
	if _, ok := p.Alloc(i, rs, 80); ok {
		t.Error("Alloc from a draining address succeeded")
	}
	if !p.Release(a16("10.0.0.1"), rs, 80, p1) {
		t.Fatal("Release to a draining address = false")
	}
	// Back before it is empty: the port still out stays out.
	if err := p.SetAddrs([]netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1")}); err != nil {
		t.Fatal(err)
	}
	if j := index(t, p, "10.0.0.1"); j != i {
		t.Errorf("index changed from %d to %d", i, j)
	}
	for k := 0; k < 9; k++ {
		port, ok := p.Alloc(i, rs, 80)
		if !ok || port == p2 {
			t.Fatalf("Alloc %d = %d, %v: port %d is still out", k, port, ok, p2)
		}
	}
	if _, ok := p.Alloc(i, rs, 80); ok {
		t.Error("more ports than the share")
	}
	// Removed again and emptied: forgotten, its slot reused.
	if err := p.SetAddrs([]netip.Addr{netip.MustParseAddr("2001:db8::1")}); err != nil {
		t.Fatal(err)
	}
	for port := uint16(5000); port <= 5009; port++ {
		p.Release(a16("10.0.0.1"), rs, 80, port)
	}
	if p.Release(a16("10.0.0.1"), rs, 80, p2) {
		t.Error("Release to a forgotten address = true")
	}
	if err := p.SetAddrs([]netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("10.0.0.9")}); err != nil {
		t.Fatal(err)
	}
	if j := index(t, p, "10.0.0.9"); j != i {
		t.Errorf("new address got index %d, want the freed %d", j, i)
	}
	if got := p.Addr(i); got != netip.MustParseAddr("10.0.0.9") {
		t.Errorf("Addr(%d) = %v", i, got)
	}
	// Removing an address with nothing out forgets it at once.
	if err := p.SetAddrs(nil); err != nil {
		t.Fatal(err)
	}
	if len(p.index) != 0 {
		t.Errorf("index after SetAddrs(nil) = %v", p.index)
	}
}

type lease struct {
	laddr, rs [16]byte
	rport     uint16
	lport     uint16
}

type replyKey struct {
	rs    [16]byte
	rport uint16
	laddr [16]byte
	lport uint16
}

// TestRandom runs random allocations and releases against a model: no
// two live leases share a reply key (nor, with one bucket, an address
// and port), allocation fails only when the model says the bucket is
// full, every lease comes back, and the counters agree.
func TestRandom(t *testing.T) {
	for _, buckets := range []int{1, 4} {
		for seed := uint64(1); seed <= 4; seed++ {
			rng := rand.New(rand.NewPCG(seed, uint64(buckets)))
			workers := 1 + int(seed%3)
			o := Options{Worker: int(seed) % workers, Workers: workers, MinPort: 1025, MaxPort: 1025 + 60, Buckets: buckets}
			p := newPool(t, o, "10.0.0.1", "10.0.0.2")
			laddrs := [][16]byte{a16("10.0.0.1"), a16("10.0.0.2")}
			set := []int32{index(t, p, "10.0.0.1"), index(t, p, "10.0.0.2")}
			rss := [][16]byte{a16("10.1.1.1"), a16("10.1.1.2"), a16("10.1.1.3"), a16("2001:db8::7")}
			var live []lease
			keys := map[replyKey]bool{}
			perAddrPort := map[replyKey]int{} // laddr, lport only
			perBucket := map[[2]int32]int{}   // (address index, bucket) → in use
			var next uint32
			for step := 0; step < 20000; step++ {
				if len(live) == 0 || rng.IntN(100) < 55 {
					rs := rss[rng.IntN(len(rss))]
					rport := uint16(80 + rng.IntN(2))
					var la [16]byte
					var lport uint16
					var ok bool
					if rng.IntN(2) == 0 {
						la, lport, ok = p.AllocFrom(set, &next, rs, rport)
						for _, i := range set {
							if !ok && perBucket[[2]int32{i, p.bucketOf(&rs, rport)}] != p.Share() {
								t.Fatalf("seed %d: AllocFrom failed with free ports in a bucket", seed)
							}
						}
					} else {
						k := rng.IntN(2)
						la = laddrs[k]
						lport, ok = p.Alloc(set[k], rs, rport)
						if !ok && perBucket[[2]int32{set[k], p.bucketOf(&rs, rport)}] != p.Share() {
							t.Fatalf("seed %d: Alloc failed with free ports in the bucket", seed)
						}
					}
					if !ok {
						continue
					}
					if Owner(lport, workers) != o.Worker {
						t.Fatalf("seed %d: port %d not in worker %d's share", seed, lport, o.Worker)
					}
					rk := replyKey{rs, rport, la, lport}
					if keys[rk] {
						t.Fatalf("seed %d step %d: reply key %v handed out twice", seed, step, rk)
					}
					keys[rk] = true
					ak := replyKey{laddr: la, lport: lport}
					perAddrPort[ak]++
					if buckets == 1 && perAddrPort[ak] > 1 {
						t.Fatalf("seed %d: with one bucket port %d of %v handed out twice", seed, lport, la)
					}
					i, _ := p.Index(la)
					perBucket[[2]int32{i, p.bucketOf(&rs, rport)}]++
					live = append(live, lease{la, rs, rport, lport})
				} else {
					j := rng.IntN(len(live))
					l := live[j]
					live[j] = live[len(live)-1]
					live = live[:len(live)-1]
					if !p.Release(l.laddr, l.rs, l.rport, l.lport) {
						t.Fatalf("seed %d: Release(%v) = false", seed, l)
					}
					delete(keys, replyKey{l.rs, l.rport, l.laddr, l.lport})
					perAddrPort[replyKey{laddr: l.laddr, lport: l.lport}]--
					i, _ := p.Index(l.laddr)
					perBucket[[2]int32{i, p.bucketOf(&l.rs, l.rport)}]--
				}
			}
			var inUse uint32
			for _, i := range set {
				inUse += p.AddrStats(i).InUse
			}
			if int(inUse) != len(live) {
				t.Errorf("seed %d: InUse %d, %d leases live", seed, inUse, len(live))
			}
			for _, l := range live {
				if !p.Release(l.laddr, l.rs, l.rport, l.lport) {
					t.Fatalf("seed %d: final Release(%v) = false", seed, l)
				}
			}
			s := p.Stats()
			if s.Allocs != s.Releases || s.BadReleases != 0 {
				t.Errorf("seed %d: Stats %+v: allocs and releases differ", seed, s)
			}
			if buckets == 1 && s.Exhausted == 0 {
				t.Errorf("seed %d: the test never exhausted the pool", seed)
			}
		}
	}
}

func TestAllocsPerRun(t *testing.T) {
	p := newPool(t, Options{Workers: 2, Worker: 1, MinPort: 1025, MaxPort: 65535, Buckets: 16}, "10.0.0.1", "10.0.0.2")
	set := []int32{index(t, p, "10.0.0.1"), index(t, p, "10.0.0.2")}
	rs := a16("10.1.1.1")
	var next uint32
	if n := testing.AllocsPerRun(1000, func() {
		la, port, ok := p.AllocFrom(set, &next, rs, 80)
		if !ok {
			panic("exhausted")
		}
		p.Release(la, rs, 80, port)
		port, _ = p.Alloc(set[0], rs, 81)
		p.Release(a16("10.0.0.1"), rs, 81, port)
		p.Alloc(99, rs, 80)                   // NoAddr
		p.Release(a16("10.9.9.9"), rs, 80, 1) // BadRelease
	}); n != 0 {
		t.Errorf("AllocsPerRun = %v, want 0", n)
	}
}

func BenchmarkAllocRelease(b *testing.B) {
	for _, buckets := range []int{1, 16} {
		b.Run(map[int]string{1: "buckets=1", 16: "buckets=16"}[buckets], func(b *testing.B) {
			p := newPool(b, Options{Workers: 1, MinPort: 1025, MaxPort: 65535, Buckets: buckets}, "10.0.0.1", "10.0.0.2")
			set := []int32{index(b, p, "10.0.0.1"), index(b, p, "10.0.0.2")}
			// A working set of 1000 live connections over 64 real servers.
			const live = 1000
			var ring [live]lease
			rss := make([][16]byte, 64)
			for k := range rss {
				rss[k] = netip.AddrFrom4([4]byte{10, 1, 0, byte(k)}).As16()
			}
			var next uint32
			for k := range ring {
				rs := rss[k%len(rss)]
				la, port, _ := p.AllocFrom(set, &next, rs, 80)
				ring[k] = lease{la, rs, 80, port}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				k := n % live
				l := &ring[k]
				p.Release(l.laddr, l.rs, l.rport, l.lport)
				la, port, ok := p.AllocFrom(set, &next, l.rs, 80)
				if !ok {
					b.Fatal("exhausted")
				}
				l.laddr, l.lport = la, port
			}
		})
	}
}

func equal(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Reserve takes a given free port of the worker's share, which Alloc
// then never hands out until Release gives it back; it refuses ports in
// use, of another worker, out of range or of an unknown address.
func TestReserve(t *testing.T) {
	o := Options{Worker: 1, Workers: 2, MinPort: 1000, MaxPort: 1019, Buckets: 1}
	p := newPool(t, o, "10.0.0.1")
	la, rs := a16("10.0.0.1"), a16("10.1.0.1")
	i := index(t, p, "10.0.0.1")
	for _, c := range []struct {
		port uint16
		ok   bool
	}{{1005, true}, {1005, false}, {1004, false}, {999, false}, {1021, false}, {1019, true}} {
		if got := p.Reserve(la, rs, 80, c.port); got != c.ok {
			t.Errorf("Reserve(%d) = %v, want %v", c.port, got, c.ok)
		}
	}
	if p.Reserve(a16("10.0.0.2"), rs, 80, 1007) {
		t.Error("Reserve on an unknown address succeeded")
	}
	got := map[uint16]bool{}
	for {
		port, ok := p.Alloc(i, rs, 80)
		if !ok {
			break
		}
		if port == 1005 || port == 1019 || got[port] {
			t.Fatalf("Alloc handed out %d (reserved or twice)", port)
		}
		got[port] = true
	}
	if len(got) != 8 {
		t.Errorf("Alloc handed out %d ports, want the 8 others of 10", len(got))
	}
	if st := p.Stats(); st.Reserved != 2 || st.RefusedReserves != 5 || p.AddrStats(i).InUse != 10 {
		t.Errorf("stats %+v, in use %d; want 2 reserved, 5 refused, 10 in use", st, p.AddrStats(i).InUse)
	}
	if !p.Release(la, rs, 80, 1005) {
		t.Fatal("Release of a reserved port failed")
	}
	if port, ok := p.Alloc(i, rs, 80); !ok || port != 1005 {
		t.Errorf("Alloc after release = %d, %v; want 1005", port, ok)
	}
}

// Offset rotates where the queue of free ports starts; every port of
// the share is still handed out once before any repeats.
func TestOffset(t *testing.T) {
	for _, tc := range []struct {
		offset int
		first  uint16
	}{{0, 2001}, {2, 2005}, {5, 2001}, {7, 2005}} {
		// Worker 1 of 2 owns 2001, 2003, ... 2009: a share of 5.
		p := newPool(t, Options{Worker: 1, Workers: 2, MinPort: 2000, MaxPort: 2009, Buckets: 1, Offset: tc.offset}, "10.0.0.1")
		i := index(t, p, "10.0.0.1")
		rs := a16("10.1.1.1")
		seen := map[uint16]bool{}
		for n := range 5 {
			port, ok := p.Alloc(i, rs, 80)
			if !ok || seen[port] || port < 2001 || port > 2009 || port%2 != 1 {
				t.Fatalf("offset %d: Alloc %d = %d, %v (seen %v)", tc.offset, n, port, ok, seen)
			}
			if n == 0 && port != tc.first {
				t.Errorf("offset %d: first port %d, want %d", tc.offset, port, tc.first)
			}
			seen[port] = true
		}
		if port, ok := p.Alloc(i, rs, 80); ok {
			t.Errorf("offset %d: sixth Alloc = %d from a share of 5", tc.offset, port)
		}
	}
	if _, err := New(Options{Workers: 1, MinPort: 1, MaxPort: 9, Buckets: 1, Offset: -1}); err == nil {
		t.Error("New accepted a negative offset")
	}
}

// TestLookup: lookup (a scan of up to scanAddrs addresses, the map past
// that) finds exactly what the index map holds, live and draining
// addresses, for pools on either side of scanAddrs, after addresses are
// drained, forgotten and their slots reused; and Release works on each.
func TestLookup(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }
	for _, n := range []int{1, 2, scanAddrs - 1, scanAddrs, scanAddrs + 1, 2 * scanAddrs} {
		p := newPool(t, Options{Workers: 1, MinPort: 5000, MaxPort: 5003, Buckets: 1})
		type out struct {
			a    [16]byte
			port uint16
		}
		var outs []out
		for round := range 20 {
			var as []netip.Addr
			for i := range n + 4 {
				if rng.IntN(3) != 0 {
					as = append(as, addr(i))
				}
			}
			if len(as) > n {
				as = as[:n]
			}
			if err := p.SetAddrs(as); err != nil {
				t.Fatal(err)
			}
			for _, a := range as {
				if i, ok := p.Index(a.As16()); ok {
					if port, ok := p.Alloc(i, a16("10.1.1.1"), 80); ok && rng.IntN(2) == 0 {
						outs = append(outs, out{a.As16(), port})
					}
				}
			}
			for i := range n + 4 {
				k := addr(i).As16()
				wi, wok := p.index[k]
				gi, gok := p.lookup(&k)
				if gok != wok || gok && gi != wi {
					t.Fatalf("%d addresses, round %d: lookup(%v) = %d, %v; index has %d, %v", n, round, addr(i), gi, gok, wi, wok)
				}
			}
			for len(outs) > 0 && rng.IntN(3) != 0 {
				o := outs[len(outs)-1]
				outs = outs[:len(outs)-1]
				_, live := p.index[o.a]
				// An address forgotten and configured again has a fresh
				// pool, where the old port is not out: false too.
				if got := p.Release(o.a, a16("10.1.1.1"), 80, o.port); got && !live {
					t.Fatalf("%d addresses, round %d: Release(%v, %d) = true for an address not in the index", n, round, netip.AddrFrom16(o.a), o.port)
				}
			}
		}
	}
}
