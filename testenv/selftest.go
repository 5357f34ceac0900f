//go:build linux

package testenv

import (
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"
)

// The kernel's IPVS selftest topology
// (tools/testing/selftests/net/netfilter/ipvs.sh), with this package's
// address ranges:
//
//	client                director ("lvs")                 server
//	eth0 198.18.0.2/24 --- eth0 198.18.0.1/24
//	default via .0.1       lo   198.19.100.1 (VIP)
//	                       eth1 198.19.0.1/24 ------------- eth0 198.19.0.2/24
//	                                                       default via 198.19.0.1
//
// The client sits on one interface of the director, the real server on
// another, and the VIP on neither (on lo), so the director must forward out
// the interface the route to the real server names. ipvs.sh sends random
// bytes to VIP:8080 with nc and compares them with cmp; here the server
// runs the transfer sink on 8080 and Selftest.Check compares SHA-256.
var (
	SelftestClientAddr         = netip.MustParseAddr("198.18.0.2")
	SelftestDirectorClientAddr = netip.MustParseAddr("198.18.0.1")
	SelftestDirectorServerAddr = netip.MustParseAddr("198.19.0.1")
	SelftestServerAddr         = netip.MustParseAddr("198.19.0.2")
	SelftestVIP                = netip.MustParseAddr("198.19.100.1")
	// SelftestLAddr is the director's FULLNAT local address (on eth1),
	// configured for RealFullNAT.
	SelftestLAddr = netip.MustParseAddr("198.19.0.200")

	// IPv6 beside it (ipvs.sh is IPv4 only): the same shape with
	// 2001:db8:10::/64 on the client side, 2001:db8:20::/64 on the server
	// side and the VIP6 on the director's lo.
	SelftestClientAddr6         = netip.MustParseAddr("2001:db8:10::2")
	SelftestDirectorClientAddr6 = netip.MustParseAddr("2001:db8:10::1")
	SelftestDirectorServerAddr6 = netip.MustParseAddr("2001:db8:20::1")
	SelftestServerAddr6         = netip.MustParseAddr("2001:db8:20::2")
	SelftestVIP6                = netip.MustParseAddr("2001:db8:100::1")
	SelftestLAddr6              = netip.MustParseAddr("2001:db8:20::200")
)

// SelftestPort is where ipvs.sh's server listens, and so the transfer
// sink here.
const SelftestPort = 8080

// Selftest is a running ipvs.sh topology.
type Selftest struct {
	Kind                     RealKind
	Client, Director, Server *Host
	// ClientIface and ServerIface are the director's interfaces towards
	// the client and the server: what `xlb run --iface` serves.
	ClientIface, ServerIface string
	VIP, VIP6                netip.Addr
	ServerAddr, ServerAddr6  netip.Addr
	ClientAddr, ClientAddr6  netip.Addr
	// DirectorServerAddr is the server's gateway (NAT), LAddr the FULLNAT
	// local address (RealFullNAT only); the 6 fields are the IPv6 ones.
	DirectorServerAddr, DirectorServerAddr6 netip.Addr
	LAddr, LAddr6                           netip.Addr
	Port                                    uint16

	env *Env
}

// NewSelftest builds the ipvs.sh topology with the server and director set
// up for kind, as ipvs.sh's test_dr, test_nat and test_tun do (RealFullNAT
// too: the server then has no route to the client at all). xlb is the path
// of an xlb binary for `xlb decap` (RealTUN), or "" to attach the same
// program from the test process. The director does no load balancing
// itself: the caller starts xlb on it. The topology is removed in
// t.Cleanup, also when the test fails.
func NewSelftest(t testing.TB, kind RealKind, xlb string) *Selftest {
	t.Helper()
	s, err := SetupSelftest(fmt.Sprintf("xs%d", os.Getpid()%100000), kind, xlb)
	if s != nil {
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("tear down selftest topology: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("build selftest topology: %v", err)
	}
	return s
}

// SetupSelftest is NewSelftest for callers without a testing.TB; name
// prefixes the namespaces (at most 9 characters). On error it returns what
// it built, already torn down.
func SetupSelftest(name string, kind RealKind, xlb string) (s *Selftest, err error) {
	if len(name) > 9 {
		return nil, fmt.Errorf("invalid topology name %q: at most 9 characters", name)
	}
	if kind < RealDR || kind > RealFullNAT {
		return nil, fmt.Errorf("invalid real server kind %d: must be RealDR, RealNAT, RealTUN or RealFullNAT", kind)
	}
	env := &Env{Name: name, VIP: SelftestVIP, VIP6: SelftestVIP6, DirectorIfaces: []string{"eth0", "eth1"},
		Gateway: SelftestDirectorServerAddr, Gateway6: SelftestDirectorServerAddr6,
		opts: Options{Name: name, HTTPPort: 80, UDPPort: 53, HashPort: SelftestPort, Reals: kind, XLB: xlb, IPv6: true}}
	s = &Selftest{Kind: kind, ClientIface: "eth0", ServerIface: "eth1",
		VIP: SelftestVIP, VIP6: SelftestVIP6,
		ServerAddr: SelftestServerAddr, ServerAddr6: SelftestServerAddr6,
		ClientAddr: SelftestClientAddr, ClientAddr6: SelftestClientAddr6,
		DirectorServerAddr: SelftestDirectorServerAddr, DirectorServerAddr6: SelftestDirectorServerAddr6,
		Port: SelftestPort, env: env}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.Client, err = env.newNS("client"); err != nil {
		return s, err
	}
	if s.Director, err = env.newNS("lvs"); err != nil {
		return s, err
	}
	if s.Server, err = env.newNS("server"); err != nil {
		return s, err
	}
	env.Client, env.Director, env.Reals = s.Client, s.Director, []*Host{s.Server}
	p4, p6 := netip.PrefixFrom, netip.PrefixFrom
	if err := pair(s.Client, "eth0", []netip.Prefix{p4(SelftestClientAddr, 24), p6(SelftestClientAddr6, 64)},
		s.Director, "eth0", []netip.Prefix{p4(SelftestDirectorClientAddr, 24), p6(SelftestDirectorClientAddr6, 64)}); err != nil {
		return s, err
	}
	if err := pair(s.Director, "eth1", []netip.Prefix{p4(SelftestDirectorServerAddr, 24), p6(SelftestDirectorServerAddr6, 64)},
		s.Server, "eth0", []netip.Prefix{p4(SelftestServerAddr, 24), p6(SelftestServerAddr6, 64)}); err != nil {
		return s, err
	}
	for _, gw := range []netip.Addr{SelftestDirectorClientAddr, SelftestDirectorClientAddr6} {
		if err := s.Client.IP(family(gw), "route", "replace", "default", "via", gw.String()); err != nil {
			return s, err
		}
	}
	if kind != RealFullNAT {
		for _, gw := range []netip.Addr{SelftestDirectorServerAddr, SelftestDirectorServerAddr6} {
			if err := s.Server.IP(family(gw), "route", "replace", "default", "via", gw.String()); err != nil {
				return s, err
			}
		}
	}
	for _, h := range []*Host{s.Client, s.Server} {
		if err := h.Ethtool("-K", "eth0", "tx", "off"); err != nil {
			return s, err
		}
	}

	// The director: the VIP on lo in every mode, as ipvs.sh has it, and
	// routing between its two sides. send_redirects=0 as ipvs.sh sets
	// for DR and TUN; accept_local and rp_filter=0 on eth1 let a DR or TUN
	// reply, whose source is the VIP (an address of the director), be
	// forwarded instead of dropped as a martian.
	for _, vip := range []netip.Addr{SelftestVIP, SelftestVIP6} {
		if err := s.Director.AddAddr("lo", netip.PrefixFrom(vip, vip.BitLen())); err != nil {
			return s, err
		}
	}
	if err := s.Director.Sysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
		return s, err
	}
	if err := s.Director.sysctls(
		"net/ipv4/ip_forward", "1",
		"net/ipv4/conf/all/send_redirects", "0",
		"net/ipv4/conf/default/send_redirects", "0",
		"net/ipv4/conf/eth0/send_redirects", "0",
		"net/ipv4/conf/eth1/send_redirects", "0",
		"net/ipv4/conf/all/accept_local", "1",
		"net/ipv4/conf/eth1/accept_local", "1",
		"net/ipv4/conf/all/rp_filter", "0",
		"net/ipv4/conf/eth1/rp_filter", "0",
	); err != nil {
		return s, err
	}
	for _, vip := range []netip.Addr{SelftestVIP, SelftestVIP6} {
		switch kind {
		case RealDR:
			err = s.Server.SetupDRReal(vip)
		case RealTUN:
			err = s.Server.SetupTunReal(vip)
		}
		if err != nil {
			return s, err
		}
	}
	switch kind {
	case RealNAT:
		err = s.Server.SetupNATReal(SelftestDirectorServerAddr, SelftestDirectorServerAddr6)
	case RealFullNAT:
		s.LAddr, s.LAddr6 = SelftestLAddr, SelftestLAddr6
		env.LAddr, env.LAddr6 = SelftestLAddr, SelftestLAddr6
		for _, a := range []netip.Addr{SelftestLAddr, SelftestLAddr6} {
			if err = s.Director.AddAddr("eth1", netip.PrefixFrom(a, a.BitLen())); err != nil {
				return s, err
			}
		}
		err = s.Server.SetupFullNATReal(netip.Addr{})
	}
	if err != nil {
		return s, err
	}
	var vips []netip.Addr
	if kind == RealDR || kind == RealTUN {
		vips = []netip.Addr{SelftestVIP, SelftestVIP6}
	}
	if err := env.startServers(s.Server, vips...); err != nil {
		return s, err
	}
	return s, nil
}

// Check is ipvs.sh's test_service: the client sends n random bytes to
// VIP:8080 over one TCP connection and the server's hash of what it got
// must match.
func (s *Selftest) Check(n int64, timeout time.Duration) error {
	_, err := s.Client.SendRandom(netip.AddrPortFrom(s.VIP, s.Port), n, timeout)
	return err
}

// Check6 is Check through the IPv6 VIP.
func (s *Selftest) Check6(n int64, timeout time.Duration) error {
	_, err := s.Client.SendRandom(netip.AddrPortFrom(s.VIP6, s.Port), n, timeout)
	return err
}

// Close removes the topology; it is safe to call more than once.
func (s *Selftest) Close() error {
	return s.env.Close()
}
