package conntrack

import (
	"testing"
	"time"
)

// TestZeroAllocs proves the per-packet path allocates nothing.
func TestZeroAllocs(t *testing.T) {
	f := newFixture(t, 1<<14, 4, nil)
	nat := f.service(t, func(o *ServiceOptions) { o.DefaultFwd = FwdMasq })
	per := f.service(t, func(o *ServiceOptions) { o.Persistent, o.Timeout, o.Netmask = true, time.Minute, 24 })
	k := clientKey(ProtoTCP, 1, 1)
	c, _ := f.t.NewConn(nat, &k, syn, f.clk.now)
	e := c.Entry
	now := f.clk.now

	if n := testing.AllocsPerRun(1000, func() {
		if got, _ := f.t.Lookup(&k, now); got != e {
			t.Fatal("miss")
		}
	}); n != 0 {
		t.Errorf("Lookup hit: %v allocs/op", n)
	}
	miss := clientKey(ProtoTCP, 2, 2)
	if n := testing.AllocsPerRun(1000, func() { f.t.Lookup(&miss, now) }); n != 0 {
		t.Errorf("Lookup miss: %v allocs/op", n)
	}
	flags := []uint8{syn, synack, ack, fin, rst}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		f.t.Update(e, Dir(i%2), flags[i%len(flags)], 100, now)
		i++
	}); n != 0 {
		t.Errorf("Update: %v allocs/op", n)
	}
	port := uint16(0)
	if n := testing.AllocsPerRun(1000, func() {
		port++
		nk := clientKey(ProtoTCP, 3, port)
		if _, v := f.t.NewConn(nat, &nk, syn, now); v != VerdictNew {
			t.Fatal(v)
		}
	}); n != 0 {
		t.Errorf("NewConn: %v allocs/op", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		port++
		nk := clientKey(ProtoTCP, uint32(port), port)
		if _, v := f.t.NewConn(per, &nk, syn, now); v != VerdictNew {
			t.Fatal(v)
		}
	}); n != 0 {
		t.Errorf("NewConn persistent: %v allocs/op", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		port++
		nk := clientKey(ProtoUDP, 4, port)
		if _, ok := f.t.Insert(&nk, f.dests[0], FwdRoute, 53, now); !ok {
			t.Fatal("insert failed")
		}
	}); n != 0 {
		t.Errorf("Insert: %v allocs/op", n)
	}
	later := now + int64(time.Hour)
	if n := testing.AllocsPerRun(100, func() { f.t.Expire(later, 256) }); n != 0 {
		t.Errorf("Expire: %v allocs/op", n)
	}
	// A full table: eviction and untracked forwarding allocate nothing.
	g := newFixture(t, 64, 2, nil)
	svc := g.service(t, nil)
	if n := testing.AllocsPerRun(1000, func() {
		port++
		nk := clientKey(ProtoTCP, uint32(port), port)
		g.t.NewConn(svc, &nk, syn, now)
	}); n != 0 {
		t.Errorf("NewConn into a full table: %v allocs/op", n)
	}
}
