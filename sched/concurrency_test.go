package sched

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestUpdateConcurrentWithSchedule runs the control plane's Update (and
// weight, threshold and connection changes) against a worker's Schedule
// for every scheduler. Run with -race: the contract is that Schedule
// takes no lock and Update publishes atomically.
func TestUpdateConcurrentWithSchedule(t *testing.T) {
	decisions := 20000
	if testing.Short() {
		decisions = 2000
	}
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			universe := make([]*Dest, 16)
			in := map[*Dest]bool{}
			for i := range universe {
				universe[i] = NewDest(netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}), 80, int32(i%4))
				in[universe[i]] = true
			}
			s := mustNew(t, name, Options{Seed: 1, CacheSize: 64, MHTableSize: 251})
			s.Update(universe[:8])

			done := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { // control plane
				defer wg.Done()
				r := rand.New(rand.NewPCG(1, 1))
				for {
					select {
					case <-done:
						return
					default:
					}
					perm := r.Perm(len(universe))[:1+r.IntN(len(universe))]
					list := make([]*Dest, len(perm))
					for i, p := range perm {
						list[i] = universe[p]
						if r.IntN(4) == 0 {
							list[i].SetWeight(int32(r.IntN(5)))
						}
						if r.IntN(8) == 0 {
							list[i].SetThresholds(uint32(r.IntN(6)), uint32(r.IntN(3)))
						}
					}
					s.Update(list)
					time.Sleep(time.Microsecond)
				}
			}()
			go func() { // other workers' connections coming and going
				defer wg.Done()
				r := rand.New(rand.NewPCG(2, 2))
				for {
					select {
					case <-done:
						return
					default:
					}
					d := universe[r.IntN(len(universe))]
					switch r.IntN(3) {
					case 0:
						d.Bind(false)
					case 1:
						if d.InactConns() > 0 {
							d.Activate()
						}
					case 2:
						if d.ActiveConns() > 0 {
							d.Unbind(false, true)
						}
					}
				}
			}()
			r := rand.New(rand.NewPCG(3, 3))
			f := &Flow{Proto: 6, SrcPort: 1000, DstPort: 80}
			for range decisions {
				f.Src = netip.AddrFrom4([4]byte{192, 0, 2, byte(r.IntN(256))})
				f.Dst = netip.AddrFrom4([4]byte{198, 51, 100, byte(r.IntN(256))})
				f.SrcPort = uint16(r.IntN(65536))
				if d := s.Schedule(f); d != nil && !in[d] {
					t.Fatalf("Schedule returned a destination never given: %v", d.Addr)
				}
			}
			close(done)
			wg.Wait()
		})
	}
}

// TestScheduleDoesNotAllocate checks the per-packet contract for every
// scheduler, including lblc/lblcr cache misses, inserts and collection.
func TestScheduleDoesNotAllocate(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			clock := func() time.Time { return now }
			s := mustNew(t, name, Options{Seed: 1, Clock: clock, CacheSize: 512, Flags: FlagSched1 | FlagSched2})
			ds := dests(3, 1, 0, 2, 5, 1, 1, 4)
			ds[3].setOverload(true)
			s.Update(ds)
			flows := make([]Flow, 1024)
			r := rand.New(rand.NewPCG(4, 4))
			for i := range flows {
				flows[i] = Flow{Proto: 17, Src: randomV4(r), SrcPort: uint16(r.Uint32()), Dst: randomV4(r), DstPort: 53}
			}
			i := 0
			step := func() {
				s.Schedule(&flows[i%len(flows)])
				i++
				now = now.Add(7 * time.Second) // lblc/lblcr collect every 60 s
			}
			for range 2048 {
				step()
			}
			s.Update(ds[1:]) // the first decision after an Update catches up
			if a := testing.AllocsPerRun(5000, step); a != 0 {
				t.Errorf("Schedule allocates %v times per decision", a)
			}
		})
	}
}
