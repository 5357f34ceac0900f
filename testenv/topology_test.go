//go:build linux

package testenv

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// listenUDP opens a UDP socket in h bound to a.
func listenUDP(t *testing.T, h *Host, a netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := h.Do(func() (err error) {
		c, err = net.ListenUDP(udpNetwork(a.Addr()), net.UDPAddrFromAddrPort(a))
		return err
	}); err != nil {
		t.Fatalf("listen on udp %v in %s: %v", a, h.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recvFrom waits for one datagram on c and returns it and its source.
func recvFrom(t *testing.T, c *net.UDPConn, timeout time.Duration) (string, netip.AddrPort, error) {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(timeout))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	return string(buf[:n]), netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), err
}

// sendFrom sends one datagram from a socket in h bound to src: a real
// server answering from the VIP.
func sendFrom(t *testing.T, h *Host, src, dst netip.AddrPort, msg string) {
	t.Helper()
	c := listenUDP(t, h, src)
	if _, err := c.WriteToUDPAddrPort([]byte(msg), dst); err != nil {
		t.Fatalf("send udp %v > %v from %s: %v", src, dst, h.Name, err)
	}
}

// checkReals checks HTTP, UDP and a transfer to every real server's own
// addresses from the client.
func checkReals(t *testing.T, env *Env) {
	t.Helper()
	c := env.Client.HTTPClient(false, 3*time.Second)
	for _, rs := range env.Reals {
		for _, a := range []netip.Addr{rs.Addr, rs.Addr6} {
			if !a.IsValid() {
				continue
			}
			name, err := Get(c, fmt.Sprintf("http://%v/", netip.AddrPortFrom(a, 80)))
			if err != nil || name != rs.Name {
				t.Errorf("GET %v = %q, %v; want %q", a, name, err, rs.Name)
			}
			got, err := env.Client.QueryUDP(netip.AddrPortFrom(a, 53), 2*time.Second)
			if err != nil || got != rs.Name {
				t.Errorf("UDP query to %v = %q, %v; want %q", a, got, err, rs.Name)
			}
			got, err = env.Client.Transfer(netip.AddrPortFrom(a, 9000), 256<<10, 256<<10, 10*time.Second)
			if err != nil || got != rs.Name {
				t.Errorf("Transfer to %v = %q, %v; want %q", a, got, err, rs.Name)
			}
		}
	}
}

func TestTopologyIPv6(t *testing.T) {
	RequireRoot(t)
	opts := DefaultOptions()
	opts.IPv6 = true
	opts.RealServers = 2
	env := New(t, opts)
	if env.VIP6 != VIP6 || env.Reals[1].Addr6 != RealAddr6(1) || env.Client.Addr6 != ClientAddr6 {
		t.Fatalf("addresses: VIP6 %v, rs2 %v, client %v", env.VIP6, env.Reals[1].Addr6, env.Client.Addr6)
	}
	checkReals(t, env)
	// The VIP6 is the director's: it answers ping and neighbour
	// solicitations, the real servers (VIP6 on lo) do not.
	if out, err := env.Client.Command("ping", "-6", "-c1", "-W2", VIP6.String()).CombinedOutput(); err != nil {
		t.Errorf("ping %v: %v\n%s", VIP6, err, out)
	}
	out, err := env.Client.Command("ip", "-6", "neigh", "show", VIP6.String()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), env.Director.MAC.String()) {
		t.Errorf("neighbour of %v = %q, %v; want the director's MAC %v", VIP6, out, err, env.Director.MAC)
	}
	// A DR real server answers from the VIP6 straight to the client.
	cl := listenUDP(t, env.Client, netip.AddrPortFrom(ClientAddr6, 7000))
	sendFrom(t, env.Reals[0], netip.AddrPortFrom(VIP6, 7000), netip.AddrPortFrom(ClientAddr6, 7000), "from vip")
	if msg, from, err := recvFrom(t, cl, 2*time.Second); err != nil || msg != "from vip" || from.Addr() != VIP6 {
		t.Errorf("reply from the VIP6 = %q from %v, %v", msg, from, err)
	}
	// IPv4 still works beside it.
	if _, err := env.Client.Transfer(netip.AddrPortFrom(RealAddr(0), 9000), 1<<20, 0, 5*time.Second); err != nil {
		t.Error(err)
	}
}

// With plain kernel forwarding on the director and no xlb, the client
// reaches the real servers' own addresses behind the second arm, and a
// DR real server's reply from the VIP (the director's own address) is
// forwarded to the client, not dropped as a martian.
func TestTopologyTwoArmed(t *testing.T) {
	RequireRoot(t)
	opts := DefaultOptions()
	opts.IPv6 = true
	opts.TwoArmed = true
	opts.RealServers = 2
	env := New(t, opts)
	if got := strings.Join(env.DirectorIfaces, ","); got != "eth0,eth1" {
		t.Errorf("DirectorIfaces = %s, want eth0,eth1", got)
	}
	if env.Gateway != DirectorServerAddr || env.Reals[0].Addr != netip.MustParseAddr("198.18.1.11") ||
		env.Reals[0].Addr6 != netip.MustParseAddr("2001:db8:1::11") {
		t.Fatalf("gateway %v, rs1 %v %v", env.Gateway, env.Reals[0].Addr, env.Reals[0].Addr6)
	}
	checkReals(t, env)
	// The bulk check, across the director's two arms.
	if name, err := env.Client.Transfer(netip.AddrPortFrom(env.Reals[0].Addr, 9000), BulkBytes, 0, 20*time.Second); err != nil || name != env.Reals[0].Name {
		t.Errorf("16 MiB to %v = %q, %v", env.Reals[0].Addr, name, err)
	}
	for _, c := range []struct{ vip, client netip.Addr }{{VIP, ClientAddr}, {VIP6, ClientAddr6}} {
		cl := listenUDP(t, env.Client, netip.AddrPortFrom(c.client, 7000))
		sendFrom(t, env.Reals[1], netip.AddrPortFrom(c.vip, 7000), netip.AddrPortFrom(c.client, 7000), "from vip")
		if msg, from, err := recvFrom(t, cl, 2*time.Second); err != nil || msg != "from vip" || from.Addr() != c.vip {
			t.Errorf("reply from %v through the director = %q from %v, %v", c.vip, msg, from, err)
		}
	}
}

// One-armed NAT: the real servers share the client's segment but route
// everything, the client included, through the director.
func TestTopologyNATOneArmed(t *testing.T) {
	RequireRoot(t)
	opts := DefaultOptions()
	opts.IPv6 = true
	opts.Reals = RealNAT
	opts.RealServers = 2
	env := New(t, opts)
	for _, a := range []netip.Addr{ClientAddr, ClientAddr6} {
		out, err := env.Reals[0].Command("ip", "route", "get", a.String()).CombinedOutput()
		gw := DirectorAddr
		if a.Is6() {
			gw = DirectorAddr6
		}
		if err != nil || !strings.Contains(string(out), "via "+gw.String()) {
			t.Errorf("rs1's route to %v = %q, %v; want via %v", a, out, err, gw)
		}
	}
	// No VIP on the real servers.
	if out, _ := env.Reals[0].Command("ip", "addr", "show", "dev", "lo").CombinedOutput(); strings.Contains(string(out), VIP.String()) {
		t.Errorf("NAT real server has the VIP on lo:\n%s", out)
	}
	// Reachable directly, replies forwarded by the director's kernel.
	checkReals(t, env)
}

// A TUN real server decapsulates IPIP, 6in4, 4in6 and 6in6 sent to its
// own address and answers the client from the VIP directly: a stand-in
// director (raw sockets) and the in-process decap program, no xlb.
func TestTopologyTUNDecap(t *testing.T) {
	RequireRoot(t)
	opts := DefaultOptions()
	opts.IPv6 = true
	opts.Reals = RealTUN
	opts.RealServers = 1
	opts.GUEPort = 6080
	env := New(t, opts)
	rs := env.Reals[0]
	for _, c := range []struct {
		name        string
		outer       netip.Addr
		client, vip netip.Addr
		clientPort  uint16
	}{
		{"ipip", rs.Addr, ClientAddr, VIP, 7001},
		{"6in4", rs.Addr, ClientAddr6, VIP6, 7002},
		{"4in6", rs.Addr6, ClientAddr, VIP, 7003},
		{"6in6", rs.Addr6, ClientAddr6, VIP6, 7004},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := listenUDP(t, env.Client, netip.AddrPortFrom(c.client, c.clientPort))
			in, err := InnerUDP(netip.AddrPortFrom(c.client, c.clientPort), netip.AddrPortFrom(c.vip, 53), []byte("who"))
			if err != nil {
				t.Fatal(err)
			}
			if err := env.Director.SendTunnel(c.outer, in); err != nil {
				t.Fatal(err)
			}
			msg, from, err := recvFrom(t, cl, 2*time.Second)
			if err != nil || msg != rs.Name || from != netip.AddrPortFrom(c.vip, 53) {
				t.Errorf("answer to the tunnelled query = %q from %v, %v; want %q from %v", msg, from, err, rs.Name, netip.AddrPortFrom(c.vip, 53))
			}
		})
	}
	for i, c := range []struct{ outer, client, vip netip.Addr }{
		{rs.Addr, ClientAddr, VIP}, {rs.Addr6, ClientAddr6, VIP6}, {rs.Addr, ClientAddr6, VIP6},
	} {
		port := uint16(7010 + i)
		cl := listenUDP(t, env.Client, netip.AddrPortFrom(c.client, port))
		in, err := InnerUDP(netip.AddrPortFrom(c.client, port), netip.AddrPortFrom(c.vip, 53), []byte("who"))
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Director.SendGUE(netip.AddrPortFrom(c.outer, 6080), in); err != nil {
			t.Fatal(err)
		}
		if msg, from, err := recvFrom(t, cl, 2*time.Second); err != nil || msg != rs.Name || from.Addr() != c.vip {
			t.Errorf("GUE to %v, inner %v > %v: answer %q from %v, %v", c.outer, c.client, c.vip, msg, from, err)
		}
	}
	for i, c := range []struct {
		outer, client, vip netip.Addr
		csum               bool
	}{
		{rs.Addr, ClientAddr, VIP, false}, {rs.Addr6, ClientAddr6, VIP6, true}, {rs.Addr, ClientAddr6, VIP6, true},
	} {
		port := uint16(7020 + i)
		cl := listenUDP(t, env.Client, netip.AddrPortFrom(c.client, port))
		in, err := InnerUDP(netip.AddrPortFrom(c.client, port), netip.AddrPortFrom(c.vip, 53), []byte("who"))
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Director.SendGRE(c.outer, in, c.csum); err != nil {
			t.Fatal(err)
		}
		if msg, from, err := recvFrom(t, cl, 2*time.Second); err != nil || msg != rs.Name || from.Addr() != c.vip {
			t.Errorf("GRE to %v, inner %v > %v: answer %q from %v, %v", c.outer, c.client, c.vip, msg, from, err)
		}
	}
	// Tunnel packets to another address are not decapsulated.
	cl := listenUDP(t, env.Client, netip.AddrPortFrom(ClientAddr, 7005))
	in, err := InnerUDP(netip.AddrPortFrom(ClientAddr, 7005), netip.AddrPortFrom(VIP, 53), []byte("who"))
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Director.SendTunnel(env.Client.Addr, in); err != nil {
		t.Fatal(err)
	}
	if msg, from, err := recvFrom(t, cl, 300*time.Millisecond); err == nil {
		t.Errorf("tunnel to the client itself was answered: %q from %v", msg, from)
	}
	// Plain traffic to the real server is untouched.
	checkReals(t, env)
}

// Behind the PathMTU router, a real server's large segments to the client
// draw frag-needed / packet-too-big from the router; the real server
// learns the path MTU and the download completes.
func TestTopologyPathMTU(t *testing.T) {
	RequireRoot(t)
	opts := DefaultOptions()
	opts.IPv6 = true
	opts.PathMTU = 1400
	opts.RealServers = 1
	env := New(t, opts)
	if env.Router == nil || env.Client.Addr != RemoteClientAddr || env.Client.Addr6 != RemoteClientAddr6 {
		t.Fatalf("router %v, client %v %v", env.Router, env.Client.Addr, env.Client.Addr6)
	}
	rs := env.Reals[0]
	for _, c := range []struct{ server, client netip.Addr }{{rs.Addr, RemoteClientAddr}, {rs.Addr6, RemoteClientAddr6}} {
		if _, err := env.Client.Transfer(netip.AddrPortFrom(c.server, 9000), 1<<10, 2<<20, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		out, err := rs.Command("ip", "route", "get", c.client.String()).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "mtu 1400") {
			t.Errorf("%s's route to %v after the download = %q, %v; want a learnt mtu 1400", rs.Name, c.client, out, err)
		}
	}
	// The director reaches the client through the router too.
	if out, err := env.Director.Command("ping", "-c1", "-W2", RemoteClientAddr.String()).CombinedOutput(); err != nil {
		t.Errorf("ping client from the director: %v\n%s", err, out)
	}
}

// The variants combine: a two-armed NAT director with the client behind
// the PathMTU router, both families.
func TestTopologyCombined(t *testing.T) {
	RequireRoot(t)
	opts := DefaultOptions()
	opts.IPv6 = true
	opts.TwoArmed = true
	opts.Reals = RealNAT
	opts.PathMTU = 1400
	opts.RealServers = 1
	env := New(t, opts)
	checkReals(t, env)
}

// The ipvs.sh topology with the director routing (no xlb): the client
// reaches the server's own address across both interfaces of the
// director, and the reply paths each mode relies on work.
func TestSelftestPlainRouting(t *testing.T) {
	RequireRoot(t)
	for _, kind := range []RealKind{RealDR, RealNAT, RealTUN, RealFullNAT} {
		t.Run(kind.String(), func(t *testing.T) {
			s := NewSelftest(t, kind, "")
			if s.ClientIface != "eth0" || s.ServerIface != "eth1" || s.VIP != SelftestVIP {
				t.Fatalf("ifaces %s %s, VIP %v", s.ClientIface, s.ServerIface, s.VIP)
			}
			if kind == RealFullNAT {
				// No route to the client: FULLNAT's premise.
				if out, err := s.Server.Command("ip", "route", "get", SelftestClientAddr.String()).CombinedOutput(); err == nil {
					t.Errorf("FULLNAT server has a route to the client: %s", out)
				}
				return
			}
			for _, c := range []struct{ server, vip, client netip.Addr }{
				{s.ServerAddr, s.VIP, s.ClientAddr}, {s.ServerAddr6, s.VIP6, s.ClientAddr6},
			} {
				if name, err := s.Client.SendRandom(netip.AddrPortFrom(c.server, s.Port), 1<<20, 5*time.Second); err != nil || name != s.Server.Name {
					t.Errorf("send to the server's own address %v = %q, %v", c.server, name, err)
				}
				// Through the VIP without a load balancer, the director's
				// own stack answers (nothing listens): connection refused.
				if _, err := s.Client.SendRandom(netip.AddrPortFrom(c.vip, s.Port), 10, 2*time.Second); err == nil {
					t.Errorf("VIP %v answered without a load balancer", c.vip)
				}
				if kind == RealDR || kind == RealTUN {
					cl := listenUDP(t, s.Client, netip.AddrPortFrom(c.client, 7000))
					sendFrom(t, s.Server, netip.AddrPortFrom(c.vip, 7000), netip.AddrPortFrom(c.client, 7000), "from vip")
					if msg, from, err := recvFrom(t, cl, 2*time.Second); err != nil || msg != "from vip" || from.Addr() != c.vip {
						t.Errorf("reply from %v through the director = %q from %v, %v", c.vip, msg, from, err)
					}
				}
			}
			if kind == RealTUN {
				// The director tunnels a query by hand; the server
				// decapsulates it and answers from the VIP via the
				// director.
				cl := listenUDP(t, s.Client, netip.AddrPortFrom(SelftestClientAddr, 7001))
				in, err := InnerUDP(netip.AddrPortFrom(SelftestClientAddr, 7001), netip.AddrPortFrom(s.VIP, 53), []byte("who"))
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Director.SendTunnel(s.ServerAddr, in); err != nil {
					t.Fatal(err)
				}
				if msg, from, err := recvFrom(t, cl, 2*time.Second); err != nil || msg != s.Server.Name || from.Addr() != s.VIP {
					t.Errorf("tunnelled query = %q from %v, %v", msg, from, err)
				}
				cl6 := listenUDP(t, s.Client, netip.AddrPortFrom(s.ClientAddr6, 7002))
				in, err = InnerUDP(netip.AddrPortFrom(s.ClientAddr6, 7002), netip.AddrPortFrom(s.VIP6, 53), []byte("who"))
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Director.SendTunnel(s.ServerAddr6, in); err != nil {
					t.Fatal(err)
				}
				if msg, from, err := recvFrom(t, cl6, 2*time.Second); err != nil || msg != s.Server.Name || from.Addr() != s.VIP6 {
					t.Errorf("6in6 tunnelled query = %q from %v, %v", msg, from, err)
				}
			}
		})
	}
}

// A topology that fails half-way is torn down: no namespace is left.
func TestSetupFailureTearsDown(t *testing.T) {
	RequireRoot(t)
	opts := DefaultOptions()
	opts.Name = "xf" + fmt.Sprint(time.Now().UnixNano()%100000)
	opts.RealServers = 1
	opts.HashPort = opts.HTTPPort // the second listen fails
	env, err := Setup(opts)
	if err == nil {
		env.Close()
		t.Fatal("Setup with HashPort == HTTPPort succeeded, want an error")
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), opts.Name+"-") {
		t.Errorf("namespaces left after a failed Setup:\n%s", out)
	}
}

func TestExpectSum(t *testing.T) {
	h := sha256.New()
	h.Write([]byte("data"))
	sum := h.Sum(nil)
	if err := expectSum(bytes.NewReader(sum), h); err != nil {
		t.Errorf("expectSum(right hash) = %v", err)
	}
	bad := append([]byte(nil), sum...)
	bad[0] ^= 1
	if err := expectSum(bytes.NewReader(bad), h); !errors.Is(err, errHashMismatch) {
		t.Errorf("expectSum(wrong hash) = %v, want %v", err, errHashMismatch)
	}
	if err := expectSum(bytes.NewReader(sum[:10]), h); err == nil {
		t.Errorf("expectSum(short hash) = nil, want an error")
	}
}
