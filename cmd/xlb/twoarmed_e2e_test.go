//go:build linux

package main

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// A two-armed director: clients on eth0, real servers behind eth1 on a
// network of their own, `xlb run --iface eth0 --iface eth1`. Each frame
// leaves by the interface the route to its next hop names, with that
// interface's MAC: requests out of eth1, NAT and FULLNAT replies out of
// eth0, where the client's frames came in. 300 new TCP connections and
// 300 UDP flows succeed and rr spreads them; 16 MiB each way arrive
// intact; IPv4 and IPv6.
func TestTwoArmed(t *testing.T) {
	testenv.RequireRoot(t)
	testTwoArmed(t, modeCases, false)
}

// TestTwoArmed's NAT and DR with --no-shared-umem: a UMEM per interface,
// each frame that changes interface copied (the fallback for a kernel
// that refuses XDP_SHARED_UMEM), for comparison.
func TestTwoArmedCopy(t *testing.T) {
	testenv.RequireRoot(t)
	testTwoArmed(t, modeCases[:2], true)
}

func testTwoArmed(t *testing.T, cases []modeCase, copying bool) {
	var extra []string
	if copying {
		extra = []string{"--no-shared-umem"}
	}
	for _, c := range cases {
		for _, v6 := range []bool{false, true} {
			name := c.name + "/ipv4"
			if v6 {
				name = c.name + "/ipv6"
			}
			t.Run(name, func(t *testing.T) {
				opts := testenv.DefaultOptions()
				opts.Reals, opts.IPv6, opts.XLB, opts.TwoArmed = c.reals, v6, xlbBin, true
				env := testenv.New(t, opts)
				vport := uint16(80)
				if c.reals == testenv.RealNAT {
					vport = 8080 // port mapping: VIP:8080 → RIP:80
				}
				d := startXLBOn(t, env.Director, env.DirectorIfaces, modeRules(env, c, v6, vport), extra...)
				vip := env.VIP
				if v6 {
					vip = env.VIP6
				}
				requireSpread(t, env, d, vip, vport)
				tport := uint16(9000)
				if err := addTransferService(d, env, c, v6, vip, tport); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				if _, err := env.Client.Transfer(netip.AddrPortFrom(vip, tport), testenv.BulkBytes, testenv.BulkBytes, 60*time.Second); err != nil {
					t.Errorf("16 MiB each way through %v:%d: %v\n%s", vip, tport, err, stats(d))
				} else {
					el := time.Since(start)
					t.Logf("16 MiB each way in %v: %.0f Mbit/s each way", el.Round(time.Millisecond),
						float64(testenv.BulkBytes)*8/el.Seconds()/1e6)
				}
				list, err := d.ctl("-L", "-n")
				if err != nil {
					t.Fatal(err)
				}
				if strings.Count(list, " "+c.list+" ") < 2*len(env.Reals) {
					t.Errorf("-L -n does not list every real server as %s:\n%s", c.list, list)
				}
				st := stats(d)
				if copied := strings.Contains(st, " copied "); copied != copying {
					t.Errorf("frames copied between UMEMs: %v, want %v:\n%s", copied, copying, st)
				}
				if shared := strings.Contains(d.Output.String(), "shared_umem=true"); shared == copying {
					t.Errorf("UMEM shared between the interfaces: %v, want %v:\n%s", shared, !copying, d.Output.String())
				}
			})
		}
	}
}

// The kernel's IPVS selftest (tools/testing/selftests/net/netfilter/
// ipvs.sh): client on the director's eth0, the server behind its eth1,
// the VIP on lo. Its DR, NAT and TUN cases with xlb serving both
// interfaces, each checked as ipvs.sh does: random bytes through the VIP,
// compared on the server (Selftest.Check), IPv4 and IPv6; and FULLNAT,
// which ipvs.sh lacks, in the same topology (the server has no route to
// the client).
func TestIPVSSelftest(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range []struct {
		name string
		kind testenv.RealKind
		opt  string
	}{
		{"dr", testenv.RealDR, "-g"},
		{"nat", testenv.RealNAT, "-m"},
		{"tun", testenv.RealTUN, "-i"},
		{"fullnat", testenv.RealFullNAT, "--fullnat"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := testenv.NewSelftest(t, c.kind, xlbBin)
			var rules strings.Builder
			for _, p := range [][3]netip.Addr{{s.VIP, s.ServerAddr, s.LAddr}, {s.VIP6, s.ServerAddr6, s.LAddr6}} {
				vip := netip.AddrPortFrom(p[0], s.Port)
				fmt.Fprintf(&rules, "-A -t %v -s rr\n", vip)
				if c.kind == testenv.RealFullNAT {
					fmt.Fprintf(&rules, "-P -t %v -z %v\n", vip, p[2])
				}
				fmt.Fprintf(&rules, "-a -t %v -r %v %s\n", vip, netip.AddrPortFrom(p[1], s.Port), c.opt)
			}
			d := startXLBOn(t, s.Director, []string{s.ClientIface, s.ServerIface}, rules.String())
			if err := s.Check(1<<20, 20*time.Second); err != nil {
				t.Errorf("ipvs.sh test_service through %v: %v\nxlb:\n%s\n%s", s.VIP, err, d.Output.String(), stats(d))
			}
			if err := s.Check6(1<<20, 20*time.Second); err != nil {
				t.Errorf("ipvs.sh test_service through %v: %v\n%s", s.VIP6, err, stats(d))
			}
		})
	}
}

// ipvs.sh's DR case with xlb serving only the client's interface: the
// real server, behind eth1, is listed as unresolved with the reason and
// logged at once; its frames are counted as dropped for want of a
// neighbour, never sent out of the wrong interface.
func TestUnservedInterface(t *testing.T) {
	testenv.RequireRoot(t)
	s := testenv.NewSelftest(t, testenv.RealDR, xlbBin)
	vip := netip.AddrPortFrom(s.VIP, s.Port)
	rules := fmt.Sprintf("-A -t %v -s rr\n-a -t %v -r %v -g\n", vip, vip, netip.AddrPortFrom(s.ServerAddr, s.Port))
	d := startXLBOn(t, s.Director, []string{s.ClientIface}, rules)
	if err := s.Check(1<<10, 2*time.Second); err == nil {
		t.Errorf("a real server behind an interface xlb does not serve was reached")
	}
	const why = "which xlb does not serve"
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := stats(d)
		if strings.Contains(st, "unresolved "+s.ServerAddr.String()+": route via interface") && strings.Contains(st, why) &&
			strings.Contains(d.Output.String(), why) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the real server is not reported unresolved, with the interface:\n%s\nlogs:\n%s", st, d.Output.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := stats(d); !strings.Contains(st, "no_neighbour") {
		t.Errorf("no no_neighbour count:\n%s", st)
	}
}
