package sched

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkSchedule measures one decision of each scheduler with 10, 100
// and 1000 destinations of random weights (1..100) and connection counts,
// over 4096 different flows. ns/dest is ns/op divided by the number of
// destinations, the figure that matters for the schedulers that scan the
// list (lc, wlc, sed, nq, fo, ovf, twos). The flows carry Now, as a
// worker's batch clock would give it; BenchmarkLBLCClock measures lblc
// reading time.Now instead.
func BenchmarkSchedule(b *testing.B) {
	for _, name := range Names() {
		for _, n := range []int{10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				r := rand.New(rand.NewPCG(uint64(n), 1))
				ds := make([]*Dest, n)
				for i := range ds {
					ds[i] = NewDest(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 80, int32(1+r.IntN(100)))
					setConns(ds[i], int32(r.IntN(1000)), int32(r.IntN(1000)))
				}
				s, err := New(name, Options{Seed: 1}) // lblc/lblcr read time.Now
				if err != nil {
					b.Fatal(err)
				}
				s.Update(ds)
				flows := make([]Flow, 4096)
				for i := range flows {
					flows[i] = Flow{Proto: 6, Src: randomV4(r), SrcPort: uint16(r.Uint32()), Dst: randomV4(r), DstPort: 80, Now: time.Hour}
				}
				for i := range flows { // warm lblc/lblcr caches
					s.Schedule(&flows[i])
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					s.Schedule(&flows[i&(len(flows)-1)])
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/dest")
			})
		}
	}
}

// BenchmarkLBLCClock is lblc with 100 destinations reading time.Now for
// every decision (Flow.Now zero).
func BenchmarkLBLCClock(b *testing.B) {
	r := rand.New(rand.NewPCG(100, 1))
	ds := dests(make([]int32, 100)...)
	for _, d := range ds {
		d.SetWeight(int32(1 + r.IntN(100)))
		setConns(d, int32(r.IntN(1000)), int32(r.IntN(1000)))
	}
	s := mustNew(b, "lblc", Options{})
	s.Update(ds)
	flows := make([]Flow, 4096)
	for i := range flows {
		flows[i] = Flow{Proto: 6, Src: randomV4(r), Dst: randomV4(r), DstPort: 80}
		s.Schedule(&flows[i])
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Schedule(&flows[i&(len(flows)-1)])
	}
}
