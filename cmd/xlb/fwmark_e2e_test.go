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

// fwmarkSel is an xlb mark selector for vip:port, IPv6 in brackets.
func fwmarkSel(vip netip.Addr, port uint16) string {
	if vip.Is6() {
		return fmt.Sprintf("[%v]/128:%d", vip, port)
	}
	return fmt.Sprintf("%v/32:%d", vip, port)
}

// TestFWMarkServices: -f and -6 -f services in DR and NAT (and TUN and
// FULLNAT, IPv4), their marks given by xlb's classifier from --xlb-mark
// lines of the rules file: 300 new TCP connections to VIP:80 and 300 UDP
// flows to VIP:53, both marked 2, all succeed and rr spreads them evenly;
// -L -n lists the service as ipvsadm does; a port with no mark is not
// balanced until xlb mark add gives it the mark. The real servers are
// of port 0: with NAT and FULLNAT each connection goes to the client's
// destination port, and the client's sockets, connected to VIP:port,
// take only replies from VIP:port.
func TestFWMarkServices(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tc := range []struct {
		c  modeCase
		v6 bool
	}{{modeCases[0], false}, {modeCases[0], true}, {modeCases[2], false}, {modeCases[1], false}, {modeCases[1], true}, {modeCases[3], false}} {
		c, v6 := tc.c, tc.v6
		name := c.name + "/ipv4"
		if v6 {
			name = c.name + "/ipv6"
		}
		t.Run(name, func(t *testing.T) {
			opts := testenv.DefaultOptions()
			opts.Reals, opts.IPv6, opts.XLB = c.reals, v6, xlbBin
			env := testenv.New(t, opts)
			vip, fam, ipv6 := env.VIP, "", ""
			if v6 {
				vip, fam, ipv6 = env.VIP6, " -6", " IPv6"
			}
			var b strings.Builder
			fmt.Fprintf(&b, "--xlb-mark 2 -t %s -u %s\n", fwmarkSel(vip, 80), fwmarkSel(vip, 53))
			fmt.Fprintf(&b, "-A -f 2%s -s rr\n", fam)
			if c.reals == testenv.RealFullNAT {
				la := env.LAddr
				if v6 {
					la = env.LAddr6
				}
				fmt.Fprintf(&b, "-P -f 2%s -z %v\n", fam, la)
			}
			for _, rs := range env.Reals {
				a := rs.Addr
				if v6 {
					a = rs.Addr6
				}
				fmt.Fprintf(&b, "-a -f 2%s -r %s %s -w 1\n", fam, netip.AddrPortFrom(a, 0), c.opt)
			}
			d := startXLB(t, env, b.String())
			requireSpread(t, env, d, vip, 80)

			list, err := d.ctl("-L", "-n")
			if err != nil {
				t.Fatal(err)
			}
			if want := "FWM  2" + ipv6 + " rr\n"; !strings.Contains(list, want) || strings.Count(list, " "+c.list+" ") != len(env.Reals) {
				t.Errorf("-L -n lacks %q or the real servers:\n%s", want, list)
			}
			// Port 9000 (the transfer sink) has no mark: xlb leaves it to
			// the director's kernel, which has nothing there.
			if _, err := env.Client.Transfer(netip.AddrPortFrom(vip, 9000), 1024, 1024, 2*time.Second); err == nil {
				t.Errorf("transfer to unmarked %v:9000 succeeded, want it refused by the director", vip)
			}
			if _, err := d.ctl("mark", "add", "2", "-t", fwmarkSel(vip, 9000)); err != nil {
				t.Fatal(err)
			}
			if _, err := env.Client.Transfer(netip.AddrPortFrom(vip, 9000), 1<<20, 1<<20, 20*time.Second); err != nil {
				t.Errorf("transfer to %v:9000 after xlb mark add: %v\n%s", vip, err, stats(d))
			}
		})
	}
}

// TestFWMarkPersistence: the usual sticky pair, in DR and NAT. One mark
// for VIP:80 and VIP:9000 (and, with NAT, UDP VIP:53), -A -f 1 -s rr -p
// 300 over the real servers: every connection of the client, to either
// port, of either protocol, goes to one real server, the one the mark's
// template names (protocol 0, port 0: ip_vs_sched_persist); -L -n lists
// "FWM  1 rr persistent 300", and -S saves the rules so that -R rebuilds
// them.
func TestFWMarkPersistence(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range []modeCase{modeCases[0], modeCases[1]} {
		t.Run(c.name, func(t *testing.T) { testFWMarkPersistence(t, c) })
	}
}

func testFWMarkPersistence(t *testing.T, c modeCase) {
	opts := testenv.DefaultOptions()
	opts.Reals, opts.XLB = c.reals, xlbBin
	env := testenv.New(t, opts)
	vip := env.VIP
	nat := c.reals == testenv.RealNAT
	var b strings.Builder
	fmt.Fprintf(&b, "-A -f 1 -s rr -p 300\n")
	for _, rs := range env.Reals {
		fmt.Fprintf(&b, "-a -f 1 -r %v %s -w 1\n", netip.AddrPortFrom(rs.Addr, 0), c.opt)
	}
	fmt.Fprintf(&b, "--xlb-mark 1 -t %s -t %s", fwmarkSel(vip, 80), fwmarkSel(vip, 9000))
	if nat {
		fmt.Fprintf(&b, " -u %s", fwmarkSel(vip, 53))
	}
	b.WriteString("\n")
	d := startXLB(t, env, b.String())

	url := fmt.Sprintf("http://%v/", vip)
	fresh := env.Client.HTTPClient(false, 5*time.Second)
	got := map[string]int{}
	for i := 0; i < 30; i++ {
		name, err := testenv.Get(fresh, url)
		if err != nil {
			t.Fatalf("request %d: %v\n%s", i, err, stats(d))
		}
		got[name]++
		if i%10 == 9 {
			name, err := env.Client.Transfer(netip.AddrPortFrom(vip, 9000), 64<<10, 64<<10, 10*time.Second)
			if err != nil {
				t.Fatalf("transfer to %v:9000: %v\n%s", vip, err, stats(d))
			}
			got[name]++
		}
		if nat && i%10 == 4 {
			name, err := env.Client.QueryUDP(netip.AddrPortFrom(vip, 53), 3*time.Second)
			if err != nil {
				t.Fatalf("UDP query to %v:53: %v\n%s", vip, err, stats(d))
			}
			got[name]++
		}
	}
	if len(got) != 1 {
		t.Errorf("the client's connections to :80, :9000 (and UDP :53) went to %v, want all to one real server", got)
	}
	list, err := d.ctl("-L", "-n")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list, "FWM  1 rr persistent 300\n") {
		t.Errorf("-L -n lacks FWM  1 rr persistent 300:\n%s", list)
	}
	conns, err := d.ctl("-L", "-n", "-c")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(conns, fmt.Sprintf("%v:80", vip)) || !strings.Contains(conns, fmt.Sprintf("%v:9000", vip)) {
		t.Errorf("-L -n -c lacks connections to both ports of %v:\n%s", vip, conns)
	}
	saved, err := d.ctl("-S", "-n")
	if err != nil {
		t.Fatal(err)
	}
	wantMark := fmt.Sprintf("--xlb-mark 1 -t %v/32:80-80 -t %v/32:9000-9000", vip, vip)
	if nat {
		wantMark += fmt.Sprintf(" -u %v/32:53-53", vip)
	}
	wantMark += "\n"
	if !strings.Contains(saved, "-A -f 1 -s rr -p 300\n") || !strings.Contains(saved, wantMark) {
		t.Errorf("-S -n =\n%s\nwant the -f service and %q", saved, wantMark)
	}
	if _, err := d.ctl("-C"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ctl("mark", "del", "1"); err != nil {
		t.Fatal(err)
	}
	if err := d.restore(saved); err != nil {
		t.Fatalf("-R of the save: %v", err)
	}
	if again, _ := d.ctl("-S", "-n"); again != saved {
		t.Errorf("-S after -R =\n%s\nwant\n%s", again, saved)
	}
	if _, err := testenv.Get(fresh, url); err != nil {
		t.Errorf("request after -R: %v", err)
	}
}
