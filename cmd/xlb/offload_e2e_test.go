//go:build linux

package main

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// nftCounters counts, on host's output hook, the packets and IP bytes it
// sends to the VIP's TCP port 80 and UDP port 53: the frames the director
// receives for the services, the truth its --stats must match.
type nftCounters struct{ h *testenv.Host }

func newNFTCounters(t *testing.T, h *testenv.Host) nftCounters {
	t.Helper()
	return newNFTCountersPort(t, h, 80)
}

// newNFTCountersPort is newNFTCounters with the TCP service on port
// tport (the counter keeps its name, tcp80).
func newNFTCountersPort(t *testing.T, h *testenv.Host, tport uint16) nftCounters {
	t.Helper()
	script := fmt.Sprintf(`table ip xlbt {
	counter tcp80 {}
	counter udp53 {}
	chain out {
		type filter hook output priority 0;
		ip daddr %v tcp dport %d counter name tcp80
		ip daddr %v udp dport 53 counter name udp53
	}
}
`, testenv.VIP, tport, testenv.VIP)
	c := h.Command("nft", "-f", "-")
	c.Stdin = strings.NewReader(script)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	t.Cleanup(func() { h.Command("nft", "delete", "table", "ip", "xlbt").Run() })
	return nftCounters{h}
}

// keepAliveTraffic opens n keep-alive connections to vip and makes
// requests requests on each (the first as it opens), failing with the
// daemon's log, and more's text if more is not nil.
func keepAliveTraffic(t *testing.T, env *testenv.Env, d *xlbProc, vip netip.AddrPort, n, requests int, more func() string) []*keepAlive {
	t.Helper()
	var kas []*keepAlive
	for range n {
		kas = append(kas, mustKeepAlive(t, env, vip))
	}
	for i := 1; i < requests; i++ {
		for j, k := range kas {
			if _, err := k.get(3 * time.Second); err != nil {
				extra := ""
				if more != nil {
					extra = more()
				}
				t.Fatalf("request %d on connection %d: %v\n%s\n%s", i, j, err, d.Output.String(), extra)
			}
		}
	}
	return kas
}

// statsMatchClient waits out delayed ACKs and holds -L -n --stats
// --exact to the client's own counts: the TCP service at tcp and the UDP
// one at udp got exactly the packets and IP bytes nft counted.
func statsMatchClient(t *testing.T, d *xlbProc, nft nftCounters, tcp, udp netip.AddrPort) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	stats, err := d.ctl("-L", "-n", "--stats", "--exact")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct{ svc, counter string }{{fmt.Sprintf("TCP  %v", tcp), "tcp80"}, {fmt.Sprintf("UDP  %v", udp), "udp53"}} {
		wp, wb := nft.read(t, s.counter, false)
		if _, p, b := statsLine(t, stats, s.svc, s.svc); p != wp || b != wb {
			t.Errorf("%s: --stats InPkts %d InBytes %d; the client sent %d packets, %d bytes\n%s", s.svc, p, b, wp, wb, stats)
		}
	}
}

// establishedRunning checks that -L -n -c lists want ESTABLISHED TCP
// connections whose destination ends with dest ("" for any), each with
// its timer restarted within the last 10 s (14:50-15:00 left).
func establishedRunning(t *testing.T, d *xlbProc, dest string, want int) {
	t.Helper()
	conns, err := d.ctl("-L", "-n", "-c")
	if err != nil {
		t.Fatal(err)
	}
	est := 0
	for _, l := range strings.Split(conns, "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 && f[0] == "TCP" && f[2] == "ESTABLISHED" && strings.HasSuffix(f[4], dest) {
			est++
			if f[1] < "14:50" || f[1] > "15:00" {
				t.Errorf("ESTABLISHED connection expires in %s, want 14:50-15:00: %s", f[1], l)
			}
		}
	}
	if est != want {
		t.Errorf("-L -n -c lists %d ESTABLISHED connections to %q, want %d:\n%s", est, dest, want, conns)
	}
}

var offloadCounterRE = regexp.MustCompile(`packets (\d+) bytes (\d+)`)

// read returns counter name's packets and bytes; reset zeroes it after.
func (n nftCounters) read(t *testing.T, name string, reset bool) (pkts, bytes uint64) {
	t.Helper()
	verb := "list"
	if reset {
		verb = "reset"
	}
	out, err := n.h.Command("nft", verb, "counter", "ip", "xlbt", name).CombinedOutput()
	m := offloadCounterRE.FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("nft %s counter %s: %v: %s", verb, name, err, out)
	}
	pkts, _ = strconv.ParseUint(string(m[1]), 10, 64)
	bytes, _ = strconv.ParseUint(string(m[2]), 10, 64)
	return pkts, bytes
}

// statsLine returns the Conns, InPkts and InBytes of the `-L -n --stats
// --exact` line that starts with what ("TCP  10.0.0.100:80", or "->
// 10.0.0.11:80" for a destination, of the service listed before it).
func statsLine(t *testing.T, stats, svc, what string) (conns, pkts, bytes uint64) {
	t.Helper()
	in := false
	for _, l := range strings.Split(stats, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		if f[0] == "TCP" || f[0] == "UDP" {
			in = f[0]+"  "+f[1] == svc
		}
		if !in {
			continue
		}
		var v []string
		switch {
		case what == svc && f[0]+"  "+f[1] == svc:
			v = f[2:]
		case f[0] == "->" && f[1] == what:
			v = f[2:]
		default:
			continue
		}
		if len(v) < 5 {
			t.Fatalf("short --stats line %q", l)
		}
		n := make([]uint64, 4)
		for i := range n {
			var err error
			if n[i], err = strconv.ParseUint(v[[]int{0, 1, 3, 2}[i]], 10, 64); err != nil {
				t.Fatalf("--stats line %q: %v", l, err)
			}
		}
		return n[0], n[1], n[2]
	}
	t.Fatalf("no --stats line for %s in %s:\n%s", what, svc, stats)
	return
}

// Flow offload keeps IPVS's semantics. The same TCP (keep-alive and
// fresh connections) and UDP (one flow of many datagrams and fresh ones)
// traffic runs with --offload=off and =on; in both, --stats counts
// exactly the packets and IP bytes the client sent to each service (its
// own nftables counters), and the destinations add up to their service.
// With the offload on most frames are forwarded by XDP itself
// (redirect_offload), -L -c still lists the connections ESTABLISHED with
// a running timer, weight 0 keeps a connection going and a removed
// destination's connection stops being forwarded with expire_nodest_conn,
// as in IPVS.
func TestOffload(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	if err := env.EnableXDPTx(); err != nil {
		t.Fatal(err)
	}
	nft := newNFTCounters(t, env.Client)
	vip80, vip53 := netip.AddrPortFrom(testenv.VIP, 80), netip.AddrPortFrom(testenv.VIP, 53)
	tcpSvc, udpSvc := fmt.Sprintf("TCP  %v", vip80), fmt.Sprintf("UDP  %v", vip53)
	rs := func(i int, port uint16) string { return netip.AddrPortFrom(env.Reals[i].Addr, port).String() }
	const gets = 40

	for _, mode := range []string{"off", "on"} {
		t.Run(mode, func(t *testing.T) {
			d := startXLB(t, env, drRules(env, "rr"), "--offload="+mode, "--xdp-mode", "native") // generic: TestXDPModes
			// No warm-up: the first frames must be counted too (before
			// the workers stocked their fill rings at start, the first
			// frame steered could be dropped, rx_dropped).
			if _, err := d.ctl("-Z"); err != nil {
				t.Fatal(err)
			}
			nft.read(t, "tcp80", true)
			nft.read(t, "udp53", true)
			kas := keepAliveTraffic(t, env, d, vip80, 3, gets, nil)
			fresh := env.Client.HTTPClient(false, 3*time.Second)
			for i := range 6 {
				if _, err := testenv.Get(fresh, fmt.Sprintf("http://%v/", vip80)); err != nil {
					t.Fatalf("fresh request %d: %v", i, err)
				}
			}
			uc, err := env.Client.UDPConn(vip53)
			if err != nil {
				t.Fatal(err)
			}
			defer uc.Close()
			for i := range gets {
				if _, err := testenv.ExchangeUDP(uc, 3*time.Second); err != nil {
					t.Fatalf("UDP query %d on one flow: %v", i, err)
				}
			}
			for i := range 6 {
				if _, err := env.Client.QueryUDP(vip53, 3*time.Second); err != nil {
					t.Fatalf("fresh UDP query %d: %v", i, err)
				}
			}
			time.Sleep(300 * time.Millisecond) // delayed ACKs

			stats, err := d.ctl("-L", "-n", "--stats", "--exact")
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				svc, counter string
				port         uint16
				conns        uint64
			}{{tcpSvc, "tcp80", 80, 3 + 6}, {udpSvc, "udp53", 53, 1 + 6}} {
				wp, wb := nft.read(t, c.counter, false)
				conns, p, b := statsLine(t, stats, c.svc, c.svc)
				if conns != c.conns || p != wp || b != wb {
					t.Errorf("%s: --stats Conns %d InPkts %d InBytes %d; the client sent %d packets, %d bytes in %d connections\n%s",
						c.svc, conns, p, b, wp, wb, c.conns, stats)
				}
				var sc, sp, sb uint64
				for i := range env.Reals {
					dc, dp, db := statsLine(t, stats, c.svc, rs(i, c.port))
					sc, sp, sb = sc+dc, sp+dp, sb+db
				}
				if sc != conns || sp != p || sb != b {
					t.Errorf("%s: destinations add up to %d conns %d packets %d bytes, the service has %d %d %d", c.svc, sc, sp, sb, conns, p, b)
				}
			}
			xs := daemonStats(t, d)
			if t.Failed() {
				var nz []string
				for k, v := range xs {
					if v != 0 {
						nz = append(nz, fmt.Sprintf("%s=%d", k, v))
					}
				}
				es, _ := env.Director.Command("ethtool", "-S", "eth0").CombinedOutput()
				ns, _ := env.Client.Command("nstat", "-az", "TcpRetransSegs", "TcpExtTCPLostRetransmit", "TcpExtTCPTimeouts").CombinedOutput()
				t.Logf("xlb-stats %v\n%s\n%s", nz, es, ns)
			}
			off, steered := xs["xdp.redirect_offload"], xs["xdp.redirect"]
			t.Logf("offload %s: XDP forwarded %d frames itself, steered %d to the workers", mode, off, steered)
			if mode == "off" && off != 0 {
				t.Errorf("offload off: redirect_offload = %d, want 0", off)
			}
			// Each connection's first 8 frames (dataplane.offloadAfter)
			// and its SYN and FIN go through a worker.
			if mode == "on" && off <= steered {
				t.Errorf("offload on: XDP forwarded %d frames, the workers %d: want most by XDP", off, steered)
			}

			// -L -c: the keep-alive connections are ESTABLISHED, their
			// timers restarted by their (offloaded) frames.
			establishedRunning(t, d, "", 3)

			// Weight 0: the connection continues; removal with
			// expire_nodest_conn: it stops, the others continue.
			owner := func(k *keepAlive) int {
				for i, r := range env.Reals {
					if r.Name == k.owner {
						return i
					}
				}
				t.Fatalf("no real server %q", k.owner)
				return -1
			}
			if _, err := d.ctl("-e", "-t", vip80.String(), "-r", rs(owner(kas[0]), 80), "-g", "-w", "0"); err != nil {
				t.Fatal(err)
			}
			if _, err := d.ctl("sysctl", "net.ipv4.vs.expire_nodest_conn=1"); err != nil {
				t.Fatal(err)
			}
			if _, err := d.ctl("-d", "-t", vip80.String(), "-r", rs(owner(kas[1]), 80)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // the workers take the new configuration
			for i := range 5 {
				if _, err := kas[0].get(3 * time.Second); err != nil {
					t.Errorf("request %d on the connection of a weight-0 real server: %v", i, err)
				}
				if _, err := kas[2].get(3 * time.Second); err != nil {
					t.Errorf("request %d on another connection: %v", i, err)
				}
			}
			if _, err := kas[1].get(time.Second); err == nil {
				t.Errorf("the connection of a removed real server still answered with expire_nodest_conn on")
			}
			// Leave nothing for the next subtest's xlb, whose counters
			// the client's are compared with: the dead connection would
			// retransmit its last request to it. Reset that one, close
			// the others while this xlb still forwards their FINs.
			if tc, ok := kas[1].c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			for _, k := range kas {
				k.c.Close()
			}
			waitClosed(t, env, vip80)
			if err := d.stop(); err != nil {
				t.Fatalf("xlb exit: %v\n%s", err, d.Output.String())
			}
		})
	}
}

// NAT with the offload on: both directions go through XDP (the client's
// to the real server, the replies back to the client), a 4 MiB transfer
// each way arrives intact (hash-checked), and --stats counts exactly the
// packets and bytes the client sent.
func TestOffloadNAT(t *testing.T) {
	testenv.RequireRoot(t)
	opts := testenv.DefaultOptions()
	opts.Reals = testenv.RealNAT
	env := testenv.New(t, opts)
	if err := env.EnableXDPTx(); err != nil {
		t.Fatal(err)
	}
	nft := newNFTCountersPort(t, env.Client, 8080)
	c := modeCases[1]
	d := startXLB(t, env, modeRules(env, c, false, 8080), "--offload=on", "--xdp-mode", "native")
	if err := addTransferService(d, env, c, false, env.VIP, 9000); err != nil {
		t.Fatal(err)
	}
	nft.read(t, "tcp80", true)
	nft.read(t, "udp53", true)
	vip := netip.AddrPortFrom(env.VIP, 8080)
	keepAliveTraffic(t, env, d, vip, 3, 40, nil)
	uc, err := env.Client.UDPConn(netip.AddrPortFrom(env.VIP, 53))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	for i := range 40 {
		if _, err := testenv.ExchangeUDP(uc, 3*time.Second); err != nil {
			t.Fatalf("UDP query %d: %v", i, err)
		}
	}
	statsMatchClient(t, d, nft, vip, netip.AddrPortFrom(env.VIP, 53))
	xs := daemonStats(t, d)
	off, steered := xs["xdp.redirect_offload"], xs["xdp.redirect"]+xs["xdp.redirect_reply"]
	t.Logf("XDP forwarded %d frames itself, steered %d to the workers", off, steered)
	if off < 3*steered {
		t.Errorf("XDP forwarded %d frames, the workers %d: want most by XDP", off, steered)
	}
	// The transfer protocol's download follows the client's FIN: out of
	// ESTABLISHED, it is the workers' (the upload is offloaded).
	if _, err := env.Client.Transfer(netip.AddrPortFrom(env.VIP, 9000), 4<<20, 4<<20, 60*time.Second); err != nil {
		t.Errorf("4 MiB each way: %v", err)
	}
}

// TUN (ipip, decapsulated by the real servers' xlb decap) and FULLNAT
// with the offload on: XDP forwards most frames itself (TUN the client's,
// encapsulated; FULLNAT both directions, to and from the local address),
// --stats counts exactly the packets and bytes the client sent, -L -c
// lists the keep-alive connections ESTABLISHED, fresh connections go
// through the workers without delay, and a 4 MiB transfer each way
// arrives intact (hash-checked).
func TestOffloadMethods(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range []modeCase{modeCases[2], modeCases[3]} {
		t.Run(c.name, func(t *testing.T) {
			opts := testenv.DefaultOptions()
			opts.Reals, opts.XLB = c.reals, xlbBin
			env := testenv.New(t, opts)
			if err := env.EnableXDPTx(); err != nil {
				t.Fatal(err)
			}
			nft := newNFTCounters(t, env.Client)
			d := startXLB(t, env, modeRules(env, c, false, 80), "--offload=on")
			if err := addTransferService(d, env, c, false, env.VIP, 9000); err != nil {
				t.Fatal(err)
			}
			nft.read(t, "tcp80", true)
			nft.read(t, "udp53", true)
			vip := netip.AddrPortFrom(env.VIP, 80)
			keepAliveTraffic(t, env, d, vip, 3, 40, func() string { return stats(d) })
			uc, err := env.Client.UDPConn(netip.AddrPortFrom(env.VIP, 53))
			if err != nil {
				t.Fatal(err)
			}
			defer uc.Close()
			for i := range 40 {
				if _, err := testenv.ExchangeUDP(uc, 3*time.Second); err != nil {
					t.Fatalf("UDP query %d: %v\n%s", i, err, stats(d))
				}
			}
			statsMatchClient(t, d, nft, vip, netip.AddrPortFrom(env.VIP, 53))
			xs := daemonStats(t, d)
			off, steered := xs["xdp.redirect_offload"], xs["xdp.redirect"]+xs["xdp.redirect_reply"]
			t.Logf("%s: XDP forwarded %d frames itself, steered %d to the workers", c.name, off, steered)
			if off < 2*steered {
				t.Errorf("XDP forwarded %d frames, the workers %d: want most by XDP", off, steered)
			}
			establishedRunning(t, d, ":80", 3)
			// Fresh connections, too short to be offloaded, are not held
			// up by the offloaded ones (a SYN retransmitted after 1 s
			// would show).
			fresh := env.Client.HTTPClient(false, 3*time.Second)
			start := time.Now()
			for i := range 30 {
				if _, err := testenv.Get(fresh, fmt.Sprintf("http://%v/", vip)); err != nil {
					t.Fatalf("fresh request %d: %v", i, err)
				}
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("30 fresh requests took %v, want well under 2 s", el)
			} else {
				t.Logf("30 fresh requests in %v", el)
			}
			if _, err := env.Client.Transfer(netip.AddrPortFrom(env.VIP, 9000), 4<<20, 4<<20, 60*time.Second); err != nil {
				t.Errorf("4 MiB each way: %v\n%s", err, stats(d))
			}
		})
	}
}

// waitClosed waits, at most 3 s, until the client has no TCP socket to
// vip other than in TIME_WAIT: every FIN has been sent and answered.
func waitClosed(t *testing.T, env *testenv.Env, vip netip.AddrPort) {
	t.Helper()
	var out []byte
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var err error
		out, err = env.Client.Command("ss", "-Htn", "exclude", "time-wait", "dst", vip.String()).CombinedOutput()
		if err != nil {
			t.Fatalf("ss: %v: %s", err, out)
		}
		if len(bytes.TrimSpace(out)) == 0 {
			return
		}
	}
	t.Fatalf("connections to %v still open after 3 s:\n%s", vip, out)
}
