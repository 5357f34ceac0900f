package sched

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func randomV4(r *rand.Rand) netip.Addr {
	var b [4]byte
	v := r.Uint32()
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	return netip.AddrFrom4(b)
}

// TestMHDistribution: over 10^6 random clients each destination's share
// is within 1% (relative) of its weight's share.
func TestMHDistribution(t *testing.T) {
	for _, weights := range [][]int32{{1, 2, 3, 4}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {5, 10, 20, 40}} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			ds := dests(weights...)
			s := mustNew(t, "mh", Options{})
			s.Update(ds)
			r := rand.New(rand.NewPCG(3, 4))
			count := map[*Dest]int{}
			const n = 1_000_000
			f := &Flow{Proto: 6, SrcPort: 1234}
			for range n {
				f.Src = randomV4(r)
				count[s.Schedule(f)]++
			}
			var sum int32
			for _, w := range weights {
				sum += w
			}
			for i, d := range ds {
				want := float64(weights[i]) / float64(sum)
				got := float64(count[d]) / n
				rel := (got - want) / want
				t.Logf("destination %s weight %d: share %.4f, want %.4f (%+.2f%%)", letter(d), weights[i], got, want, 100*rel)
				if rel > 0.01 || rel < -0.01 {
					t.Errorf("destination %s weight %d: share %.4f, want %.4f (%+.2f%%)", letter(d), weights[i], got, want, 100*rel)
				}
			}
		})
	}
}

// slotsOf returns mh's table.
func slotsOf(s Scheduler) []*Dest {
	switch s := s.(type) {
	case *mh:
		return s.cur.Load().slots
	case *sh:
		return s.cur.Load().buckets[:]
	case *dh:
		return s.cur.Load().buckets[:]
	}
	panic("no table")
}

// TestMHRemoval: removing one of ten destinations moves its own slots
// and only a few others (Maglev's minimal disruption is not perfect:
// the refill shifts some preferences). Quiescing one (weight 0) moves no
// slot at all, and with mh-fallback only its clients go elsewhere.
func TestMHRemoval(t *testing.T) {
	ds := dests(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
	s := mustNew(t, "mh", Options{Flags: MHFallback})
	s.Update(ds)
	before := append([]*Dest(nil), slotsOf(s)...)

	gone := ds[3]
	s.Update(append(append([]*Dest(nil), ds[:3]...), ds[4:]...))
	after := slotsOf(s)
	own, others := 0, 0
	for i := range before {
		switch {
		case before[i] == gone:
			own++
			if after[i] == gone {
				t.Fatalf("slot %d still maps to the removed destination", i)
			}
		case before[i] != after[i]:
			others++
		}
	}
	m := len(before)
	t.Logf("removing 1 of 10: its %d slots (%.1f%%) moved, plus %d (%.2f%%) of the others'", own, 100*float64(own)/float64(m), others, 100*float64(others)/float64(m))
	if f := float64(own) / float64(m); f < 0.09 || f > 0.11 {
		t.Errorf("the removed destination had %.3f of the slots, want about 1/10", f)
	}
	if f := float64(others) / float64(m); f > 0.02 {
		t.Errorf("removing one destination moved %.3f of the other destinations' slots, want at most 0.02", f)
	}

	// Quiesce another: the table stays, its clients fall back.
	s.Update(ds)
	before = append([]*Dest(nil), slotsOf(s)...)
	ds[5].SetWeight(0)
	s.Update(ds)
	after = slotsOf(s)
	for i := range before {
		if before[i] != after[i] {
			t.Fatalf("quiescing moved slot %d", i)
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	moved, quiesced := 0, 0
	f := &Flow{Proto: 6}
	for range 100000 {
		f.Src = randomV4(r)
		d := s.Schedule(f)
		h := after[mhHash(addrFold(f.Src), 0, mhKey1, 0)%uint32(len(after))]
		if h == ds[5] {
			quiesced++
			if d == ds[5] || d == nil {
				t.Fatalf("client %v of the quiesced destination got %v", f.Src, d)
			}
		} else if d != h {
			moved++
		}
	}
	if moved != 0 {
		t.Errorf("%d clients of available destinations moved when another was quiesced", moved)
	}
	if quiesced < 8000 || quiesced > 12000 {
		t.Errorf("%d of 100000 clients hashed to the quiesced destination, want about 10000", quiesced)
	}
}

// TestSHRemoval pins what the kernel's sh does, which is not consistent
// hashing: the table is refilled from the list, so deleting a destination
// shifts most buckets. With four destinations of weight 1 (table ABCD
// repeated) deleting the last leaves ABC repeated: bucket i keeps its
// destination only when i%4 == i%3, 66 of 256 buckets. Making the
// destination unavailable instead (overloaded) changes no bucket, and
// with sh-fallback only its own clients move.
func TestSHRemoval(t *testing.T) {
	ds := dests(1, 1, 1, 1)
	s := mustNew(t, "sh", Options{Flags: SHFallback})
	s.Update(ds)
	before := append([]*Dest(nil), slotsOf(s)...)
	s.Update(ds[:3])
	after := slotsOf(s)
	kept := 0
	for i := range before {
		if before[i] == after[i] {
			kept++
		}
	}
	if kept != 66 {
		t.Errorf("deleting the last of ABCD kept %d of 256 buckets, want 66", kept)
	}

	s.Update(ds)
	r := rand.New(rand.NewPCG(7, 8))
	f := &Flow{Proto: 6}
	clients := make([]netip.Addr, 20000)
	was := make([]*Dest, len(clients))
	for i := range clients {
		clients[i] = randomV4(r)
		f.Src = clients[i]
		was[i] = s.Schedule(f)
	}
	ds[2].setOverload(true)
	moved, own := 0, 0
	for i, c := range clients {
		f.Src = c
		d := s.Schedule(f)
		if was[i] == ds[2] {
			own++
			if d == ds[2] || d == nil {
				t.Fatalf("client %v of the overloaded destination got %v", c, d)
			}
		} else if d != was[i] {
			moved++
		}
	}
	if moved != 0 {
		t.Errorf("%d clients of available destinations moved", moved)
	}
	if frac := float64(own) / float64(len(clients)); frac < 0.2 || frac > 0.3 {
		t.Errorf("the overloaded destination had %.3f of the clients, want about 1/4", frac)
	}
}

// TestSHWeights: each destination owns weight buckets per round.
func TestSHWeights(t *testing.T) {
	ds := dests(3, 1, 0, 4)
	s := mustNew(t, "sh", Options{})
	s.Update(ds)
	tab := slotsOf(s)
	// Rounds of 3+1+1+4 = 9 buckets: AAABCDDDD; 256 = 28*9 + 4.
	want := "AAABCDDDD"
	for i, d := range tab {
		if letter(d) != string(want[i%9]) {
			t.Fatalf("bucket %d = %s, want %c (table %v)", i, letter(d), want[i%9], tab[:18])
		}
	}
}

// TestDHTable: dh ignores weights and refuses what is unavailable.
func TestDHTable(t *testing.T) {
	ds := dests(5, 0, 1)
	s := mustNew(t, "dh", Options{})
	s.Update(ds)
	for i, d := range slotsOf(s) {
		if d != ds[i%3] {
			t.Fatalf("bucket %d = %s, want %s", i, letter(d), letter(ds[i%3]))
		}
	}
	seen := map[string]bool{}
	for i := range 256 {
		f := &Flow{Proto: 6, Src: flow.Src, Dst: netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})}
		seen[letter(s.Schedule(f))] = true
	}
	if !seen["A"] || !seen["C"] || !seen["-"] || seen["B"] {
		t.Errorf("dh decisions over 256 addresses: %v, want A, C and none, never B", seen)
	}
	ds[0].SetAvailable(false)
	for i := range 256 {
		f := &Flow{Proto: 6, Src: flow.Src, Dst: netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})}
		if s.Schedule(f) == ds[0] {
			t.Fatal("dh chose an unavailable destination")
		}
	}
}

// TestHash32Kernel pins hash_32 of include/linux/hash.h on values worked
// out by hand: 1 * 0x61C88647 = 0x61C88647, whose top byte is 0x61 = 97
// and whose top 10 bits are 0x187 = 391; the others are the same product
// taken mod 2^32 (192.0.2.1 = 0xC0000201, 10.0.0.1 = 0x0A000001,
// 2001:db8::1 folds to 0x20010DB9). The 4.4-era hash (low byte of
// v * 2654435761) gives 177, 177, 177 and 233 for the same values.
func TestHash32Kernel(t *testing.T) {
	for _, c := range []struct {
		val  uint32
		bits uint
		want uint32
	}{
		{1, 8, 97},
		{1, 10, 391},
		{0xC0000201, 8, 50},
		{0x0A000001, 8, 39},
		{0x20010DB9, 8, 63},
		{0xC0000201 + 1234, 8, 139}, // sh-port: port 1234 + 192.0.2.1
	} {
		if got := hash32(c.val, c.bits); got != c.want {
			t.Errorf("hash32(%#x, %d) = %d, want %d", c.val, c.bits, got, c.want)
		}
	}
	if got := addrFold(netip.MustParseAddr("2001:db8::1")); got != 0x20010DB9 {
		t.Errorf("addrFold(2001:db8::1) = %#x, want 0x20010db9", got)
	}

	// Four destinations, weight 1: bucket b holds ds[b%4] in dh and sh.
	// Bucket 50 -> C, 39 -> D, 63 -> D, 139 -> D; the old hash would have
	// given bucket 177 -> B for the IPv4 clients.
	ds := dests(1, 1, 1, 1)
	d := mustNew(t, "dh", Options{})
	d.Update(ds)
	s := mustNew(t, "sh", Options{})
	s.Update(ds)
	sp := mustNew(t, "sh", Options{Flags: SHPort})
	sp.Update(ds)
	other := netip.MustParseAddr("203.0.113.9")
	for _, c := range []struct {
		s    Scheduler
		f    Flow
		want string
	}{
		{d, Flow{Proto: 6, Src: other, SrcPort: 1, Dst: netip.MustParseAddr("192.0.2.1"), DstPort: 80}, "C"},
		{d, Flow{Proto: 6, Src: other, SrcPort: 1, Dst: netip.MustParseAddr("10.0.0.1"), DstPort: 80}, "D"},
		{s, Flow{Proto: 6, Src: netip.MustParseAddr("192.0.2.1"), SrcPort: 1234, Dst: other, DstPort: 80}, "C"},
		{s, Flow{Proto: 17, Src: netip.MustParseAddr("10.0.0.1"), SrcPort: 1234, Dst: other, DstPort: 80}, "D"},
		{sp, Flow{Proto: 6, Src: netip.MustParseAddr("192.0.2.1"), SrcPort: 1234, Dst: other, DstPort: 80}, "D"},
	} {
		if got := letter(c.s.Schedule(&c.f)); got != c.want {
			t.Errorf("%s(%v:%d -> %v) = %s, want %s", c.s.Name(), c.f.Src, c.f.SrcPort, c.f.Dst, got, c.want)
		}
	}
	ds6 := []*Dest{NewDest(netip.MustParseAddr("2001:db8:1::1"), 80, 1), NewDest(netip.MustParseAddr("2001:db8:1::2"), 80, 1),
		NewDest(netip.MustParseAddr("2001:db8:1::3"), 80, 1), NewDest(netip.MustParseAddr("2001:db8:1::4"), 80, 1)}
	d.Update(ds6)
	f := Flow{Proto: 6, Src: netip.MustParseAddr("2001:db8::9"), SrcPort: 1, Dst: netip.MustParseAddr("2001:db8::1"), DstPort: 80}
	if got := d.Schedule(&f); got != ds6[63%4] {
		t.Errorf("dh(2001:db8::1) = %v, want %v (bucket 63)", got.Addr, ds6[63%4].Addr)
	}
}
