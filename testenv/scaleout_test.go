package testenv

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestScaleOutParseNexthops(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want []string
	}{
		{"", nil},
		{"10.202.0.100 nhid 21 via 10.201.2.2 dev d2 proto bgp metric 20 \n", []string{"10.201.2.2"}},
		{`10.202.0.100 nhid 27 proto bgp metric 20 
	nexthop via 10.201.3.2 dev d3 weight 1 
	nexthop via 10.201.1.2 dev d1 weight 1 
	nexthop via 10.201.2.2 dev d2 weight 1 
`, []string{"10.201.1.2", "10.201.2.2", "10.201.3.2"}},
	} {
		var want []netip.Addr
		for _, s := range tc.want {
			want = append(want, netip.MustParseAddr(s))
		}
		if got := parseNexthops(tc.out); !slices.Equal(got, want) {
			t.Errorf("parseNexthops(%q) = %v, want %v", tc.out, got, want)
		}
	}
}

// TestScaleOutTopology builds the topology with FRR and checks what the
// BGP tests rely on: bgpd runs with a passive neighbour per director,
// multipath on, the client reaches the router and each director its link,
// and no route to the VIP exists before anyone announces it.
func TestScaleOutTopology(t *testing.T) {
	so := NewScaleOut(t, ScaleOutOptions{Directors: 2})
	out, err := so.Vtysh(context.Background(), "show running-config")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"neighbor 10.201.1.2 remote-as 65001", "neighbor 10.201.2.2 passive", "maximum-paths 8"} {
		if !strings.Contains(out, want) {
			t.Errorf("bgpd running-config lacks %q:\n%s", want, out)
		}
	}
	if out, err := so.Client.Command("ping", "-c1", "-W2", ScaleOutRouterLinkAddr(2).String()).CombinedOutput(); err != nil {
		t.Errorf("client ping router: %v: %s", err, out)
	}
	if out, err := so.Directors[1].Command("ping", "-c1", "-W2", ScaleOutClientAddr.String()).CombinedOutput(); err != nil {
		t.Errorf("director 2 ping client: %v: %s", err, out)
	}
	if nhs, err := so.Nexthops(ScaleOutVIP); err != nil || len(nhs) != 0 {
		t.Errorf("route to the VIP before any announcement: %v, %v", nhs, err)
	}
}

// TestScaleOutServerLAN builds the topology with real servers: every
// director reaches every real server on its eth1, the client reaches
// them through the router, they answer UDP from the VIP, and RouteFlows
// reads the router's ECMP choice per flow (here of a static multipath
// route: both nexthops used, the same answer twice).
func TestScaleOutServerLAN(t *testing.T) {
	so := NewScaleOut(t, ScaleOutOptions{Directors: 2, RealServers: 3, ClientAddrs: 2})
	if len(so.Reals) != 3 {
		t.Fatalf("%d real servers, want 3", len(so.Reals))
	}
	for i := range so.Directors {
		for j := range so.Reals {
			if out, err := so.Directors[i].Command("ping", "-c1", "-W2", "-I", "eth1", ScaleOutRealAddr(j+1).String()).CombinedOutput(); err != nil {
				t.Errorf("director %d ping rs%d: %v: %s", i+1, j+1, err, out)
			}
		}
	}
	c := so.Client.HTTPClient(false, 2*time.Second)
	defer c.CloseIdleConnections()
	for j := range so.Reals {
		if name, err := Get(c, "http://"+ScaleOutRealAddr(j+1).String()+"/"); err != nil || name != so.Reals[j].Name {
			t.Errorf("client GET rs%d = %q, %v", j+1, name, err)
		}
	}
	if out, err := so.Client.Command("ping", "-c1", "-W2", "-I", ScaleOutExtraClientAddr(1).String(), ScaleOutRealAddr(1).String()).CombinedOutput(); err != nil {
		t.Errorf("client ping from its extra address: %v: %s", err, out)
	}

	dst := netip.MustParseAddr("10.202.0.200")
	d1, d2 := ScaleOutDirectorAddr(1), ScaleOutDirectorAddr(2)
	if err := so.Router.IP("route", "add", dst.String()+"/32", "nexthop", "via", d1.String(), "nexthop", "via", d2.String()); err != nil {
		t.Fatal(err)
	}
	var srcs []netip.AddrPort
	for p := range 64 {
		srcs = append(srcs, netip.AddrPortFrom(ScaleOutClientAddr, uint16(20000+p)))
	}
	got, err := so.RouteFlows("tcp", netip.AddrPortFrom(dst, 80), srcs)
	if err != nil {
		t.Fatal(err)
	}
	again, err := so.RouteFlows("tcp", netip.AddrPortFrom(dst, 80), srcs)
	if err != nil {
		t.Fatal(err)
	}
	n := map[netip.Addr]int{}
	for i, a := range got {
		n[a]++
		if again[i] != a {
			t.Errorf("flow %v: nexthop %v, then %v", srcs[i], a, again[i])
		}
	}
	if len(n) != 2 || n[d1] == 0 || n[d2] == 0 {
		t.Errorf("64 flows over a two-way ECMP route: %v, want both nexthops", n)
	}
}
