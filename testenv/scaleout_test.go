package testenv

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
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
