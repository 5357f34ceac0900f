//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/testenv"
)

// modeCase is one forwarding method end to end: how the real servers are
// set up, the ipvsadm option that selects the method, and the name
// ipvsadm -L -n lists it by.
type modeCase struct {
	name  string
	reals testenv.RealKind
	opt   string // -g, -m, -i, --fullnat
	list  string // Route, Masq, Tunnel, FullNat
}

var modeCases = []modeCase{
	{"dr", testenv.RealDR, "-g", "Route"},
	{"nat", testenv.RealNAT, "-m", "Masq"},
	{"tun", testenv.RealTUN, "-i", "Tunnel"},
	{"fullnat", testenv.RealFullNAT, "--fullnat", "FullNat"},
}

// modeRules is an rr TCP service on vip:vport and a UDP one on vip:53,
// over every real server's port 80 and 53, forwarded by c's method, with
// the topology's local address for FULLNAT.
func modeRules(env *testenv.Env, c modeCase, v6 bool, vport uint16) string {
	vip, laddr := env.VIP, env.LAddr
	if v6 {
		vip, laddr = env.VIP6, env.LAddr6
	}
	ap := func(a netip.Addr, p uint16) string { return netip.AddrPortFrom(a, p).String() }
	var b strings.Builder
	fmt.Fprintf(&b, "-A -t %s -s rr\n-A -u %s -s rr\n", ap(vip, vport), ap(vip, 53))
	if c.reals == testenv.RealFullNAT {
		fmt.Fprintf(&b, "-P -t %s -z %v\n-P -u %s -z %v\n", ap(vip, vport), laddr, ap(vip, 53), laddr)
	}
	for _, rs := range env.Reals {
		a := rs.Addr
		if v6 {
			a = rs.Addr6
		}
		fmt.Fprintf(&b, "-a -t %s -r %s %s -w 1\n", ap(vip, vport), ap(a, 80), c.opt)
		fmt.Fprintf(&b, "-a -u %s -r %s %s -w 1\n", ap(vip, 53), ap(a, 53), c.opt)
	}
	return b.String()
}

// Every forwarding method, IPv4 and IPv6, through the real daemon: 300
// new TCP connections (HTTP) and 300 UDP flows all succeed and rr spreads
// them evenly; 16 MiB over one TCP connection arrive intact both ways;
// -L -n names the method and -L -c lists the connections. NAT maps the
// service port 8080 to the real servers' 80.
func TestForwardingMethods(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range modeCases {
		for _, v6 := range []bool{false, true} {
			name := c.name + "/ipv4"
			if v6 {
				name = c.name + "/ipv6"
			}
			t.Run(name, func(t *testing.T) {
				opts := testenv.DefaultOptions()
				opts.Reals, opts.IPv6, opts.XLB = c.reals, v6, xlbBin
				env := testenv.New(t, opts)
				vport := uint16(80)
				if c.reals == testenv.RealNAT {
					vport = 8080 // port mapping: VIP:8080 → RIP:80
				}
				d := startXLB(t, env, modeRules(env, c, v6, vport))
				vip := env.VIP
				if v6 {
					vip = env.VIP6
				}
				requireSpread(t, env, d, vip, vport)
				// The transfer sink listens on port 9000 of every real
				// server: a service of its own.
				tport := uint16(9000)
				if err := addTransferService(d, env, c, v6, vip, tport); err != nil {
					t.Fatal(err)
				}
				if _, err := env.Client.Transfer(netip.AddrPortFrom(vip, tport), testenv.BulkBytes, testenv.BulkBytes, 60*time.Second); err != nil {
					t.Errorf("16 MiB each way through %v:%d: %v\n%s", vip, tport, err, stats(d))
				}
				list, err := d.ctl("-L", "-n")
				if err != nil {
					t.Fatal(err)
				}
				if strings.Count(list, " "+c.list+" ") < 2*len(env.Reals) {
					t.Errorf("-L -n does not list every real server as %s:\n%s", c.list, list)
				}
				conns, err := d.ctl("-L", "-n", "-c")
				if err != nil {
					t.Fatal(err)
				}
				if n := strings.Count(conns, "\n"); n < 600 {
					t.Errorf("-L -n -c lists %d lines, want 600+:\n%.500s", n, conns)
				}
			})
		}
	}
}

// requireSpread makes 300 HTTP requests on new connections to vip:vport
// and 300 UDP queries to vip:53, all of which must succeed and rr must
// spread evenly over the topology's real servers.
func requireSpread(t *testing.T, env *testenv.Env, d *xlbProc, vip netip.Addr, vport uint16) {
	t.Helper()
	url := "http://" + netip.AddrPortFrom(vip, vport).String() + "/"
	fresh := env.Client.HTTPClient(false, 5*time.Second)
	tcp, udp := map[string]int{}, map[string]int{}
	for i := 0; i < 300; i++ {
		name, err := testenv.Get(fresh, url)
		if err != nil {
			t.Fatalf("HTTP request %d to %s: %v\nxlb:\n%s\n%s", i, url, err, d.Output.String(), stats(d))
		}
		tcp[name]++
	}
	for i := 0; i < 300; i++ {
		name, err := env.Client.QueryUDP(netip.AddrPortFrom(vip, 53), 3*time.Second)
		if err != nil {
			t.Fatalf("UDP query %d: %v\n%s", i, err, stats(d))
		}
		udp[name]++
	}
	want := 300 / len(env.Reals)
	for _, rs := range env.Reals {
		if tcp[rs.Name] != want || udp[rs.Name] != want {
			t.Errorf("TCP %v, UDP %v per real server; want %d each", tcp, udp, want)
			break
		}
	}
}

// addTransferService adds vip:port over every real server's port 9000.
func addTransferService(d *xlbProc, env *testenv.Env, c modeCase, v6 bool, vip netip.Addr, port uint16) error {
	svc := netip.AddrPortFrom(vip, port).String()
	if _, err := d.ctl("-A", "-t", svc, "-s", "rr"); err != nil {
		return err
	}
	if c.reals == testenv.RealFullNAT {
		la := env.LAddr
		if v6 {
			la = env.LAddr6
		}
		if _, err := d.ctl("-P", "-t", svc, "-z", la.String()); err != nil {
			return err
		}
	}
	for _, rs := range env.Reals {
		a := rs.Addr
		if v6 {
			a = rs.Addr6
		}
		if _, err := d.ctl("-a", "-t", svc, "-r", netip.AddrPortFrom(a, 9000).String(), c.opt); err != nil {
			return err
		}
	}
	return nil
}

// stats is the daemon's counters, for failure messages.
func stats(d *xlbProc) string {
	out, _ := d.ctl("--xlb-stats")
	return out
}

// A client on the same host as the director leaves its TCP and UDP
// checksums to the NIC (CHECKSUM_PARTIAL: tx offload on, which testenv
// otherwise turns off). Forwarded as they are, the real server would drop
// them; xlb completes them first, in every method, and counts it.
func TestChecksumLeftToTheNIC(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range []modeCase{modeCases[0], modeCases[1]} { // DR and NAT
		t.Run(c.name, func(t *testing.T) {
			opts := testenv.DefaultOptions()
			opts.Reals = c.reals
			env := testenv.New(t, opts)
			d := startXLB(t, env, modeRules(env, c, false, 80))
			if err := env.Client.Ethtool("-K", "eth0", "tx", "on"); err != nil {
				t.Fatal(err)
			}
			url := "http://" + netip.AddrPortFrom(env.VIP, 80).String() + "/"
			fresh := env.Client.HTTPClient(false, 5*time.Second)
			for i := 0; i < 30; i++ {
				if _, err := testenv.Get(fresh, url); err != nil {
					t.Fatalf("HTTP request %d with tx offload on: %v\n%s", i, err, stats(d))
				}
				if _, err := env.Client.QueryUDP(netip.AddrPortFrom(env.VIP, 53), 3*time.Second); err != nil {
					t.Fatalf("UDP query %d with tx offload on: %v\n%s", i, err, stats(d))
				}
			}
			if n := counter(stats(d), "csum_completed"); n < 60 {
				t.Errorf("csum_completed = %d, want ≥ 60 (every SYN and UDP query at least):\n%s", n, stats(d))
			}
		})
	}
}

// counter reads one worker counter from `xlb --xlb-stats` output.
func counter(out, name string) int {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == name {
			var n int
			fmt.Sscan(f[1], &n)
			return n
		}
	}
	return 0
}

// Tunnels may cross families, as IPVS allows: an IPv4 service over real
// servers reached by IPv6 (IPv4 in IPv6), and an IPv6 service over IPv4
// ones (IPv6 in IPv4).
func TestMixedFamilyTunnels(t *testing.T) {
	testenv.RequireRoot(t)
	opts := testenv.DefaultOptions()
	opts.Reals, opts.IPv6, opts.XLB = testenv.RealTUN, true, xlbBin
	env := testenv.New(t, opts)
	var b strings.Builder
	v4, v6 := netip.AddrPortFrom(env.VIP, 80), netip.AddrPortFrom(env.VIP6, 80)
	fmt.Fprintf(&b, "-A -t %s -s rr\n-A -t %s -s rr\n", v4, v6)
	for _, rs := range env.Reals {
		fmt.Fprintf(&b, "-a -t %s -r %s -i -w 1\n", v4, netip.AddrPortFrom(rs.Addr6, 80))
		fmt.Fprintf(&b, "-a -t %s -r %s -i -w 1\n", v6, netip.AddrPortFrom(rs.Addr, 80))
	}
	d := startXLB(t, env, b.String())
	for _, vip := range []netip.AddrPort{v4, v6} {
		fresh := env.Client.HTTPClient(false, 5*time.Second)
		got := map[string]int{}
		for i := 0; i < 60; i++ {
			name, err := testenv.Get(fresh, "http://"+vip.String()+"/")
			if err != nil {
				t.Fatalf("request %d to %v over a mixed-family tunnel: %v\n%s", i, vip, err, stats(d))
			}
			got[name]++
		}
		for _, rs := range env.Reals {
			if got[rs.Name] != 20 {
				t.Errorf("%v: connections per real server %v, want 20 each", vip, got)
				break
			}
		}
	}
	// The real servers' decapsulation counters say which tunnels came.
	for _, rs := range env.Reals {
		if rs.DecapProc == nil {
			t.Fatalf("%s runs no xlb decap", rs.Name)
		}
		rs.DecapProc.Stop(syscall.SIGTERM, 5*time.Second)
		out := rs.DecapProc.Stdout.String()
		if counter(out, "decap_4in6") < 20 || counter(out, "decap_6in4") < 20 {
			t.Errorf("%s decapsulated too few mixed-family packets:\n%s", rs.Name, out)
		}
	}
}

// Every tunnel type ipvsadm names, through the daemon to real servers
// running xlb decap: ipip, gue (to --tun-port, with and without
// --tun-csum) and gre (with and without its checksum), IPv4 and IPv6.
func TestTunnelTypes(t *testing.T) {
	testenv.RequireRoot(t)
	opts := testenv.DefaultOptions()
	opts.Reals, opts.IPv6, opts.XLB, opts.GUEPort = testenv.RealTUN, true, xlbBin, 6080
	env := testenv.New(t, opts)
	for _, c := range []struct{ name, opts string }{
		{"ipip", "--tun-type ipip"},
		{"gue", "--tun-type gue --tun-port 6080"},
		{"gue+csum", "--tun-type gue --tun-port 6080 --tun-csum"},
		{"gre", "--tun-type gre"},
		{"gre+csum", "--tun-type gre --tun-csum"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b strings.Builder
			v4, v6 := netip.AddrPortFrom(env.VIP, 80), netip.AddrPortFrom(env.VIP6, 80)
			fmt.Fprintf(&b, "-A -t %s -s rr\n-A -t %s -s rr\n", v4, v6)
			for _, rs := range env.Reals {
				fmt.Fprintf(&b, "-a -t %s -r %s -i %s -w 1\n", v4, netip.AddrPortFrom(rs.Addr, 80), c.opts)
				fmt.Fprintf(&b, "-a -t %s -r %s -i %s -w 1\n", v6, netip.AddrPortFrom(rs.Addr6, 80), c.opts)
			}
			d := startXLB(t, env, b.String())
			for _, vip := range []netip.AddrPort{v4, v6} {
				fresh := env.Client.HTTPClient(false, 5*time.Second)
				got := map[string]int{}
				for i := 0; i < 30; i++ {
					name, err := testenv.Get(fresh, "http://"+vip.String()+"/")
					if err != nil {
						t.Fatalf("request %d to %v over %s: %v\n%s", i, vip, c.name, err, stats(d))
					}
					got[name]++
				}
				for _, rs := range env.Reals {
					if got[rs.Name] != 10 {
						t.Errorf("%v over %s: connections per real server %v, want 10 each", vip, c.name, got)
						break
					}
				}
			}
			if s, err := d.ctl("-S", "-n"); err != nil || !strings.Contains(s, c.opts) && c.name != "ipip" {
				t.Errorf("-S -n does not keep %q (%v):\n%s", c.opts, err, s)
			}
			d.stop()
		})
	}
}

// Fragments are not balanced: the first carries the ports, the others do
// not, and steering the first alone would split the datagram between a
// worker and the kernel. Every fragment goes to the director's kernel,
// counted (pass_fragment), and none reaches a real server; unfragmented
// traffic keeps being balanced.
func TestFragmentsGoToTheKernel(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	d := startXLB(t, env, drRules(env, "rr"))
	var c *net.UDPConn
	if err := env.Client.Do(func() (err error) {
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(testenv.VIP, 53)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Let the kernel fragment: path MTU discovery off on this socket.
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
	})
	big := make([]byte, 4000) // three fragments on a 1500-byte link
	sent := 0
	for i := 0; i < 5; i++ {
		// The director's kernel reassembles the datagram and, having no
		// socket on port 53, answers port unreachable: the next write on
		// this connected socket reports it instead of sending.
		_, err := c.Write(big)
		switch {
		case err == nil:
			sent++
		case !errors.Is(err, unix.ECONNREFUSED):
			t.Fatal(err)
		}
	}
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := c.Read(make([]byte, 64)); err == nil {
		t.Errorf("a fragmented query was answered (%d bytes): a real server got it whole", n)
	}
	if _, err := env.Client.QueryUDP(netip.AddrPortFrom(testenv.VIP, 53), 3*time.Second); err != nil {
		t.Errorf("an unfragmented query after the fragments: %v", err)
	}
	if n := counter(stats(d), "pass_fragment"); sent == 0 || n < 3*sent {
		t.Errorf("pass_fragment = %d, want ≥ %d (%d datagrams of 3 fragments):\n%s", n, 3*sent, sent, stats(d))
	}
}

// With NAT, the XDP program steers every frame from a real server's
// address and port to the workers; the director's own connections to that
// port (a health check, an operator's curl) must still reach its stack,
// since AF_XDP cannot hand a frame back (pass_local).
func TestDirectorsOwnConnectionsToNATRealServers(t *testing.T) {
	testenv.RequireRoot(t)
	opts := testenv.DefaultOptions()
	opts.Reals = testenv.RealNAT
	env := testenv.New(t, opts)
	d := startXLB(t, env, modeRules(env, modeCases[1], false, 80))
	own := env.Director.HTTPClient(false, 3*time.Second)
	for i, rs := range env.Reals {
		name, err := testenv.Get(own, "http://"+netip.AddrPortFrom(rs.Addr, 80).String()+"/")
		if err != nil || name != rs.Name {
			t.Errorf("the director's own GET to real server %d: %q, %v\n%s", i, name, err, stats(d))
		}
	}
	if n := counter(stats(d), "pass_local"); n < 3 {
		t.Errorf("pass_local = %d, want ≥ 3 (the real servers' answers to the director)", n)
	}
	// Clients are still served through the VIP meanwhile.
	if _, err := testenv.Get(env.Client.HTTPClient(false, 3*time.Second), "http://"+netip.AddrPortFrom(env.VIP, 80).String()+"/"); err != nil {
		t.Errorf("client through the VIP: %v", err)
	}
}
