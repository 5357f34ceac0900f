//go:build linux

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// pmtuEnv is a one-real-server topology of kind reals with the client
// behind the PathMTU router (MTU 1400 towards the client), and xlb
// serving vip:9000 (the transfer sink) over the real server's port 9000
// by method opt.
func pmtuEnv(t *testing.T, reals testenv.RealKind, opt string, v6 bool) (*testenv.Env, *xlbProc, netip.AddrPort) {
	t.Helper()
	opts := testenv.DefaultOptions()
	opts.Reals, opts.IPv6, opts.XLB = reals, v6, xlbBin
	opts.RealServers = 1
	opts.PathMTU = 1400
	env := testenv.New(t, opts)
	vip, rs := env.VIP, env.Reals[0].Addr
	if v6 {
		vip, rs = env.VIP6, env.Reals[0].Addr6
	}
	svc := netip.AddrPortFrom(vip, 9000)
	d := startXLB(t, env, fmt.Sprintf("-A -t %v -s rr\n-a -t %v -r %v %s -w 1\n", svc, svc, netip.AddrPortFrom(rs, 9000), opt))
	return env, d, svc
}

// learntMTU returns the MTU h's route cache holds towards dst ("mtu N"
// in ip route get), or 0.
func learntMTU(t *testing.T, h *testenv.Host, dst netip.Addr) int {
	t.Helper()
	out, err := h.Command("ip", "route", "get", dst.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ip route get %v in %s: %v\n%s", dst, h.Name, err, out)
	}
	return statField(string(out), "mtu")
}

func families(t *testing.T, f func(t *testing.T, v6 bool)) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) { f(t, v6) })
	}
}

// PMTU discovery through a TUN director, both ways, on one connection:
// the client's full-size segments do not fit the tunnel, so xlb answers
// them with fragmentation needed / packet too big carrying the MTU less
// the outer header and the client lowers its MSS; the real server's
// full-size replies do not fit the router's 1400-byte path to the client,
// so the router's error goes to the VIP, and xlb tunnels it to the real
// server, which lowers its path MTU. 2 MiB each way arrive intact.
func TestICMPPathMTUTunnel(t *testing.T) {
	testenv.RequireRoot(t)
	families(t, func(t *testing.T, v6 bool) {
		env, d, svc := pmtuEnv(t, testenv.RealTUN, "-i", v6)
		if _, err := env.Client.Transfer(svc, 2<<20, 2<<20, 20*time.Second); err != nil {
			t.Fatalf("2 MiB each way through %v: %v\n%s", svc, err, stats(d))
		}
		st := stats(d)
		outer := 20
		client, rs := env.Client.Addr, env.Reals[0]
		if v6 {
			outer, client = 40, env.Client.Addr6
		}
		if n := statField(st, "too_big_sent"); n < 1 {
			t.Errorf("too_big_sent = %d, want ≥ 1\n%s", n, st)
		}
		if got, want := learntMTU(t, env.Client, svc.Addr()), 1500-outer; got != want {
			t.Errorf("client's path MTU to the VIP = %d, want %d (the tunnel's)", got, want)
		}
		if n := statField(st, "icmp_forwarded"); n < 1 {
			t.Errorf("icmp_forwarded = %d, want ≥ 1 (the router's error tunnelled to the real server)\n%s", n, st)
		}
		if got := learntMTU(t, rs, client); got != 1400 {
			t.Errorf("%s's path MTU to the client = %d, want 1400 (the router's, learnt through xlb)", rs.Name, got)
		}
	})
}

// PMTU discovery for a DR real server's replies: the router on the
// client's path sends fragmentation needed / packet too big about them to
// their source, the VIP, which is the director's; xlb finds the
// connection through the quoted reply and forwards the error to the real
// server, which lowers its path MTU, and a 4 MiB download completes.
// Without this, the download stalls: every full-size segment is dropped.
func TestICMPPathMTUDirectRouting(t *testing.T) {
	testenv.RequireRoot(t)
	families(t, func(t *testing.T, v6 bool) {
		env, d, svc := pmtuEnv(t, testenv.RealDR, "-g", v6)
		if _, err := env.Client.Transfer(svc, 1<<10, 4<<20, 20*time.Second); err != nil {
			t.Fatalf("4 MiB down through %v: %v\n%s", svc, err, stats(d))
		}
		st := stats(d)
		client, rs := env.Client.Addr, env.Reals[0]
		if v6 {
			client = env.Client.Addr6
		}
		if n := statField(st, "icmp_forwarded"); n < 1 {
			t.Errorf("icmp_forwarded = %d, want ≥ 1\n%s", n, st)
		}
		if n := statField(st, "icmp_no_conn"); n != 0 {
			t.Errorf("icmp_no_conn = %d, want 0\n%s", n, st)
		}
		if got := learntMTU(t, rs, client); got != 1400 {
			t.Errorf("%s's path MTU to the client = %d, want 1400 (the router's, learnt through xlb)", rs.Name, got)
		}
	})
}

// A NAT or FULLNAT real server's port unreachable for a UDP flow reaches
// the client translated, its quoted packet rewritten to client → VIP:port:
// the client's connected UDP socket gets ECONNREFUSED, which it would not
// with the quote still naming the real server (or, for FULLNAT, the local
// address). Echo to the VIP is still answered by the director's kernel.
func TestICMPNATPortUnreachable(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range []modeCase{modeCases[1], modeCases[3]} {
		t.Run(c.name, func(t *testing.T) {
			families(t, func(t *testing.T, v6 bool) {
				opts := testenv.DefaultOptions()
				opts.Reals, opts.IPv6, opts.XLB = c.reals, v6, xlbBin
				opts.RealServers = 1
				env := testenv.New(t, opts)
				vip, rs, laddr := env.VIP, env.Reals[0].Addr, env.LAddr
				if v6 {
					vip, rs, laddr = env.VIP6, env.Reals[0].Addr6, env.LAddr6
				}
				// Nothing listens on the real server's port 5400; port
				// mapping too: VIP:54 → RIP:5400.
				svc := netip.AddrPortFrom(vip, 54)
				rules := fmt.Sprintf("-A -u %v -s rr\n-a -u %v -r %v %s -w 1\n", svc, svc, netip.AddrPortFrom(rs, 5400), c.opt)
				if c.reals == testenv.RealFullNAT {
					rules += fmt.Sprintf("-P -u %v -z %v\n", svc, laddr)
				}
				d := startXLB(t, env, rules)
				conn, err := env.Client.UDPConn(svc)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_, err = testenv.ExchangeUDP(conn, 3*time.Second)
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Fatalf("query to %v = %v, want ECONNREFUSED (the real server's port unreachable, translated)\n%s", svc, err, stats(d))
				}
				// ICMP echo to the VIP is the kernel's to answer, not steered.
				if out, err := env.Client.Command("ping", "-c1", "-W2", vip.String()).CombinedOutput(); err != nil {
					t.Errorf("ping %v with xlb running: %v\n%s", vip, err, out)
				}
				st := stats(d)
				if n := statField(st, "icmp_forwarded"); n != 1 {
					t.Errorf("icmp_forwarded = %d, want 1\n%s", n, st)
				}
			})
		})
	}
}
