//go:build linux

package dataplane

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// The netlink glue against a real kernel, in a topology's director
// namespace: route lookups (on-link, via a gateway, unreachable, local),
// one neighbour dump, a probe that makes the kernel resolve a real
// server, and the subscription announcing it.
func TestNetlinkKernel(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.Options{RealServers: 1})
	rs := testenv.RealAddr(0)
	var k *netlinkKernel
	var ifindex int
	events := make(chan netEvent, 256)
	done := make(chan struct{})
	defer close(done)
	if err := env.Director.Do(func() (err error) {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		ifindex = ifc.Index
		if out, err := env.Director.Command("ip", "route", "add", "10.9.0.0/16", "via", rs.String()).CombinedOutput(); err != nil {
			t.Fatalf("add route: %v %s", err, out)
		}
		if k, err = newNetlinkKernel(); err != nil {
			return err
		}
		return k.subscribe(done, events)
	}); err != nil {
		t.Fatal(err)
	}
	defer k.close()

	for _, c := range []struct {
		dst     string
		hop     netip.Addr
		wantErr string
	}{
		{dst: rs.String(), hop: rs},
		{dst: "10.9.1.2", hop: rs},
		{dst: "203.0.113.9", wantErr: "unreachable"},
		{dst: testenv.VIP.String(), wantErr: "local"},
	} {
		r, err := k.routeGet(netip.MustParseAddr(c.dst))
		switch {
		case c.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("routeGet(%s) = %+v, %v; want an error saying %q", c.dst, r, err, c.wantErr)
			}
		case err != nil || r.hop != c.hop || r.ifindex != ifindex:
			t.Errorf("routeGet(%s) = %+v, %v; want hop %v on ifindex %d", c.dst, r, err, c.hop, ifindex)
		}
	}

	if err := k.probe(rs, ifindex); err != nil {
		t.Fatalf("probe: %v", err)
	}
	want := neighKey{ifindex, rs}
	deadline := time.After(3 * time.Second)
	for seen := false; !seen; {
		select {
		case ev := <-events:
			seen = ev.kind == evNeigh && neighKey{ev.neigh.ifindex, ev.neigh.addr} == want && ev.neigh.usable()
		case <-deadline:
			t.Fatal("no neighbour event for the probed real server within 3 s")
		}
	}
	ns, err := k.neighbours()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range ns {
		if (neighKey{n.ifindex, n.addr}) == want {
			found = n.usable() && net.HardwareAddr(n.mac[:]).String() == env.Reals[0].MAC.String()
		}
	}
	if !found {
		t.Errorf("neighbour dump %+v lacks %v at %v", ns, rs, env.Reals[0].MAC)
	}
	// A route change is announced with its prefix.
	if out, err := env.Director.Command("ip", "route", "del", "10.9.0.0/16").CombinedOutput(); err != nil {
		t.Fatalf("del route: %v %s", err, out)
	}
	for {
		select {
		case ev := <-events:
			if ev.kind == evRoute && ev.prefix == netip.MustParsePrefix("10.9.0.0/16") {
				return
			}
		case <-time.After(3 * time.Second):
			t.Fatal("no route event for 10.9.0.0/16 within 3 s")
		}
	}
}
