package conntrack

import (
	"testing"
	"time"

	"github.com/xlbproject/xlb/sched"
)

// TestWithWLC runs the table with package sched's wlc: the counts that
// the table keeps are what wlc reads, so with equal weights the
// established connections spread evenly, and a destination whose
// connections close gets the next ones.
func TestWithWLC(t *testing.T) {
	f := newFixture(t, 1024, 3, nil)
	wlc, err := sched.New("wlc", sched.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Kernel list order is newest first.
	wlc.Update([]*sched.Dest{f.dests[2], f.dests[1], f.dests[0]})
	svc := f.service(t, func(o *ServiceOptions) { o.Scheduler = wlc })
	var entries []*Entry
	for i := uint32(0); i < 300; i++ {
		k := clientKey(ProtoTCP, i, 1000)
		c, v := f.t.NewConn(svc, &k, syn, f.clk.now)
		if v != VerdictNew {
			t.Fatalf("conn %d: %v", i, v)
		}
		f.t.Update(c.Entry, DirInput, syn, 60, f.clk.now)
		f.t.Update(c.Entry, DirInput, ack, 60, f.clk.now)
		entries = append(entries, c.Entry)
	}
	for _, d := range f.dests {
		if d.ActiveConns() != 100 || d.InactConns() != 0 {
			t.Fatalf("%v: active %d inactive %d, want 100 and 0", d.Addr, d.ActiveConns(), d.InactConns())
		}
	}
	// Close dest 1's connections: the next 50 go there.
	for _, e := range entries {
		if e.DestID() == f.dests[1].ID {
			f.t.Update(e, DirInput, rst, 40, f.clk.now)
		}
	}
	now := f.clk.advance(11 * time.Second)
	f.t.Expire(now, 2048)
	for i := uint32(0); i < 50; i++ {
		k := clientKey(ProtoTCP, 1000+i, 1000)
		if c, _ := f.t.NewConn(svc, &k, syn, now); c.Dest != f.dests[1] {
			t.Fatalf("conn %d went to %v, want the idle %v", i, c.Dest.Addr, f.dests[1].Addr)
		}
	}
	f.checkCounts(t)
}
