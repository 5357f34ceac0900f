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
	VIP                      netip.Addr
	ServerAddr               netip.Addr
	// DirectorServerAddr is the server's gateway (NAT), LAddr the FULLNAT
	// local address (RealFullNAT only).
	DirectorServerAddr, LAddr netip.Addr
	Port                      uint16

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
	env := &Env{Name: name, VIP: SelftestVIP, DirectorIfaces: []string{"eth0", "eth1"},
		Gateway: SelftestDirectorServerAddr,
		opts:    Options{Name: name, HTTPPort: 80, UDPPort: 53, HashPort: SelftestPort, Reals: kind, XLB: xlb}}
	s = &Selftest{Kind: kind, ClientIface: "eth0", ServerIface: "eth1", VIP: SelftestVIP,
		ServerAddr: SelftestServerAddr, DirectorServerAddr: SelftestDirectorServerAddr,
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
	if err := pair(s.Client, "eth0", []netip.Prefix{netip.PrefixFrom(SelftestClientAddr, 24)},
		s.Director, "eth0", []netip.Prefix{netip.PrefixFrom(SelftestDirectorClientAddr, 24)}); err != nil {
		return s, err
	}
	if err := pair(s.Director, "eth1", []netip.Prefix{netip.PrefixFrom(SelftestDirectorServerAddr, 24)},
		s.Server, "eth0", []netip.Prefix{netip.PrefixFrom(SelftestServerAddr, 24)}); err != nil {
		return s, err
	}
	if err := s.Client.IP("route", "replace", "default", "via", SelftestDirectorClientAddr.String()); err != nil {
		return s, err
	}
	if kind != RealFullNAT {
		if err := s.Server.IP("route", "replace", "default", "via", SelftestDirectorServerAddr.String()); err != nil {
			return s, err
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
	if err := s.Director.AddAddr("lo", netip.PrefixFrom(SelftestVIP, 32)); err != nil {
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
	switch kind {
	case RealDR:
		err = s.Server.SetupDRReal(SelftestVIP)
	case RealTUN:
		err = s.Server.SetupTunReal(SelftestVIP)
	case RealNAT:
		err = s.Server.SetupNATReal(SelftestDirectorServerAddr)
	case RealFullNAT:
		s.LAddr, env.LAddr = SelftestLAddr, SelftestLAddr
		if err = s.Director.AddAddr("eth1", netip.PrefixFrom(SelftestLAddr, 32)); err == nil {
			err = s.Server.SetupFullNATReal(netip.Addr{})
		}
	}
	if err != nil {
		return s, err
	}
	var vips []netip.Addr
	if kind == RealDR || kind == RealTUN {
		vips = []netip.Addr{SelftestVIP}
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

// Close removes the topology; it is safe to call more than once.
func (s *Selftest) Close() error {
	return s.env.Close()
}
