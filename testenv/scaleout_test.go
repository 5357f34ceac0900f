package testenv

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
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

// TestScaleOutRehash measures the fraction of flows the router moves to
// another director when one leaves or joins, on the router's own kernel
// (RouteFlows over 3000 five tuples), for the two kinds of nexthop group
// Linux has: hash-threshold (type mpath, RFC 2992, what FRR's zebra
// installs for a BGP multipath route) and resilient (type resilient,
// Linux 5.13+, a bucket table that only reassigns the buckets it must).
// The minimum is the leaving (joining) director's share, 1/n; what
// exceeds it breaks connections unless every director can take over any
// flow (sloppy_tcp + mh, or sync).
func TestScaleOutRehash(t *testing.T) {
	so := NewScaleOut(t, ScaleOutOptions{Directors: 8})
	dst := netip.AddrPortFrom(netip.MustParseAddr("10.202.0.201"), 80)
	const flows = 3000
	srcs := make([]netip.AddrPort, flows)
	for i := range srcs {
		srcs[i] = netip.AddrPortFrom(ScaleOutClientAddr, uint16(20000+i))
	}
	for i := range so.Directors {
		// Hash-threshold skips a nexthop whose neighbour is not resolved
		// (nexthop_is_good_nh): resolve every director's, as BGP traffic
		// does in a real run.
		if out, err := so.Router.Command("ping", "-c1", "-W2", ScaleOutDirectorAddr(i+1).String()).CombinedOutput(); err != nil {
			t.Fatalf("router ping director %d: %v: %s", i+1, err, out)
		}
		if err := so.Router.IP("nexthop", "add", "id", strconv.Itoa(1001+i), "via", ScaleOutDirectorAddr(i+1).String(), "dev", fmt.Sprintf("d%d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	group := func(members []int) string {
		var ids []string
		for _, m := range members {
			ids = append(ids, strconv.Itoa(1001+m))
		}
		return strings.Join(ids, "/")
	}
	kinds := map[string][]string{
		"hash-threshold": {"type", "mpath"},
		"resilient":      {"type", "resilient", "buckets", "1024", "idle_timer", "0"},
	}
	route := func() []netip.Addr {
		t.Helper()
		nhs, err := so.RouteFlows("tcp", dst, srcs)
		if err != nil {
			t.Fatal(err)
		}
		return nhs
	}
	id := 2000
	for _, n := range []int{3, 8} {
		for _, kind := range []string{"hash-threshold", "resilient"} {
			all := make([]int, n)
			for i := range all {
				all[i] = i
			}
			for _, pos := range []int{0, n / 2, n - 1} {
				id++
				gid := strconv.Itoa(id)
				if err := so.Router.IP(append([]string{"nexthop", "add", "id", gid, "group", group(all)}, kinds[kind]...)...); err != nil {
					t.Fatal(err)
				}
				if err := so.Router.IP("route", "replace", dst.Addr().String()+"/32", "nhid", gid); err != nil {
					t.Fatal(err)
				}
				before := route()
				gone := ScaleOutDirectorAddr(pos + 1)
				rest := slices.Delete(slices.Clone(all), pos, pos+1)
				// A resilient group is changed in place, which keeps its
				// buckets; a hash-threshold one is replaced by a new group,
				// as zebra does (it has no state to keep).
				regroup := func(members []int) {
					t.Helper()
					if kind == "resilient" {
						if err := so.Router.IP(append([]string{"nexthop", "replace", "id", gid, "group", group(members)}, kinds[kind]...)...); err != nil {
							t.Fatal(err)
						}
						return
					}
					id++
					gid = strconv.Itoa(id)
					if err := so.Router.IP(append([]string{"nexthop", "add", "id", gid, "group", group(members)}, kinds[kind]...)...); err != nil {
						t.Fatal(err)
					}
					if err := so.Router.IP("route", "replace", dst.Addr().String()+"/32", "nhid", gid); err != nil {
						t.Fatal(err)
					}
				}
				regroup(rest)
				after := route()
				if slices.Contains(after, gone) {
					t.Fatalf("%s: flows still routed to the nexthop that left", kind)
				}
				regroup(all)
				back := route()
				carried, extra, joined, joinExtra := 0, 0, 0, 0
				for i := range srcs {
					switch {
					case before[i] == gone:
						carried++
					case after[i] != before[i]:
						extra++
					}
					if back[i] != after[i] {
						joined++
						if back[i] != gone {
							joinExtra++
						}
					}
				}
				pct := func(k int) float64 { return 100 * float64(k) / flows }
				t.Logf("%s, %d directors, nexthop %d of %d leaves: %.1f%% of flows move (its own %.1f%%, %.1f%% between the others); it joins again: %.1f%% move (%.1f%% not onto it); ideal %.1f%%",
					kind, n, pos+1, n, pct(carried+extra), pct(carried), pct(extra), pct(joined), pct(joinExtra), 100/float64(n))
				if kind == "resilient" && (extra > 0 || joinExtra > 0) {
					t.Errorf("resilient group moved %d flows between the other nexthops on leave, %d on join; want 0", extra, joinExtra)
				}
				if kind == "resilient" && n == 3 && (joined < flows/5 || joined > flows/2) {
					t.Errorf("resilient group, 3 nexthops: %d of %d flows moved onto the joining one, want about 1/3", joined, flows)
				}
				if kind == "hash-threshold" && n == 3 {
					// [0,1/3) [1/3,2/3) [2/3,1) become [0,1/2) [1/2,1):
					// the middle leaving moves nothing else, an end 1/6.
					if pos == 1 && extra > 0 || pos != 1 && (extra < flows/10 || extra > flows/4) {
						t.Errorf("hash-threshold, nexthop %d of 3 leaves: %d of %d other flows moved, want %s", pos+1, extra, flows, map[bool]string{true: "0", false: "about 1/6"}[pos == 1])
					}
				}
				if carried == 0 || joined == 0 {
					t.Errorf("%s: no flow on the leaving nexthop or none moved back: nothing was measured", kind)
				}
			}
		}
	}
}
