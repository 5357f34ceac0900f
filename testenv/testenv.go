//go:build linux

package testenv

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Options describe a topology.
type Options struct {
	// Name prefixes every namespace; it must be short (namespace and
	// interface names derive from it). Default: "xlb" + the process ID.
	Name string
	// RealServers is the number of real servers (default 3).
	RealServers int
	// HTTPPort and UDPPort are where real servers listen (80 and 53).
	HTTPPort, UDPPort uint16
	// HashPort is where real servers run the transfer sink that
	// Host.Transfer talks to (default 9000).
	HashPort uint16
	// Servers starts the HTTP, UDP and transfer servers on the real
	// servers (default true through DefaultOptions).
	Servers bool
	// Reals is how the real servers are set up for the director's
	// forwarding method (default RealDR: the VIP on lo).
	Reals RealKind
	// IPv6 gives every host an IPv6 address beside its IPv4 one
	// (2001:db8::/64, and 2001:db8:1::/64 on the server side of a
	// two-armed director), the director an IPv6 VIP (VIP6), and makes the
	// servers listen on IPv6 too.
	IPv6 bool
	// TwoArmed puts the real servers on a bridge of their own, behind the
	// director's eth1 (ServerPrefix): the client side and the server side
	// are different interfaces of the director, which routes between
	// them (ip_forward=1). Real servers route through it (RealFullNAT
	// excepted, whose real servers need no route to clients).
	TwoArmed bool
	// PathMTU, if not 0, puts the client behind a router (host "rt") whose
	// route towards the client has this MTU: packets from real servers
	// and the director to the client that are larger and have DF set are
	// answered with ICMP fragmentation needed / packet too big. The
	// client's own link keeps MTU 1500, so it still advertises a full MSS.
	PathMTU int
	// XLB is the path of an xlb binary. With RealTUN, real servers then
	// run `xlb decap --iface eth0`; without it the decapsulation program
	// is attached from the test process itself (the same program).
	XLB string
	// GUEPort, if not 0, makes RealTUN real servers also decapsulate GUE
	// (variant 1, IP directly in UDP) sent to this UDP port, as ipvsadm's
	// --tun-type gue --tun-port expects.
	GUEPort uint16
	// DirectorQueues, if above 1, gives the director's eth0 veth (both
	// ends) this many RX and TX queues; every other veth has one. veth
	// delivers a frame to the RX queue numbered as the TX queue its peer
	// sent it on, and the bridge-side peer picks that by flow hash
	// (netdev_pick_tx, no XPS here): flows spread over the queues as RSS
	// spreads them on a NIC.
	DirectorQueues int
	// ClientQueues, if above 1, gives the client's eth0 veth (both ends)
	// this many RX and TX queues. A frame XDP_REDIRECTed into a veth goes
	// to the peer's RX queue numbered by the sending CPU, whose NAPI runs
	// on that CPU: with a queue per CPU, senders on several CPUs each
	// feed a ring of their own, drained between their own batches
	// (bench's xdp generator).
	ClientQueues int
}

// RealKind is how a real server is set up, after the forwarding method
// its director uses for it (ipvsadm -g, -m, -i, --fullnat).
type RealKind int

const (
	// RealDR: the VIP on lo, ARP for it ignored (SetupDRReal).
	RealDR RealKind = iota
	// RealNAT: default route via the director, no VIP (SetupNATReal).
	RealNAT
	// RealTUN: the VIP on lo, rp_filter off, tunnel packets decapsulated
	// by xlb's decap program on eth0 (SetupTunReal).
	RealTUN
	// RealFullNAT: nothing but a route to the director's local addresses,
	// which are on-link here (SetupFullNATReal).
	RealFullNAT
)

// String returns "dr", "nat", "tun" or "fullnat".
func (k RealKind) String() string {
	switch k {
	case RealDR:
		return "dr"
	case RealNAT:
		return "nat"
	case RealTUN:
		return "tun"
	case RealFullNAT:
		return "fullnat"
	}
	return fmt.Sprintf("RealKind(%d)", int(k))
}

// DefaultOptions: three real servers running HTTP on port 80 and UDP echo
// on port 53.
func DefaultOptions() Options {
	return Options{RealServers: 3, HTTPPort: 80, UDPPort: 53, HashPort: 9000, Servers: true}
}

// Fixed addressing inside every topology. 198.18.0.0/15 is reserved for
// benchmarking (RFC 2544) and 2001:db8::/32 for documentation (RFC 3849);
// neither leaves the namespaces.
var (
	Prefix       = netip.MustParsePrefix("198.18.0.0/24")
	DirectorAddr = netip.MustParseAddr("198.18.0.1")
	ClientAddr   = netip.MustParseAddr("198.18.0.2")
	VIP          = netip.MustParseAddr("198.18.0.100")
	// LAddr is the director's FULLNAT local address on the real servers'
	// side (with RealFullNAT): on eth0, or eth1 when two-armed (ServerLAddr).
	LAddr = netip.MustParseAddr("198.18.0.200")

	Prefix6       = netip.MustParsePrefix("2001:db8::/64")
	DirectorAddr6 = netip.MustParseAddr("2001:db8::1")
	ClientAddr6   = netip.MustParseAddr("2001:db8::2")
	VIP6          = netip.MustParseAddr("2001:db8::100")
	LAddr6        = netip.MustParseAddr("2001:db8::200")

	// The server side of a two-armed director.
	ServerPrefix        = netip.MustParsePrefix("198.18.1.0/24")
	DirectorServerAddr  = netip.MustParseAddr("198.18.1.1")
	ServerLAddr         = netip.MustParseAddr("198.18.1.200")
	ServerPrefix6       = netip.MustParsePrefix("2001:db8:1::/64")
	DirectorServerAddr6 = netip.MustParseAddr("2001:db8:1::1")
	ServerLAddr6        = netip.MustParseAddr("2001:db8:1::200")

	// The client behind the PathMTU router, and the router.
	RemotePrefix      = netip.MustParsePrefix("198.18.2.0/24")
	RemoteClientAddr  = netip.MustParseAddr("198.18.2.2")
	RouterAddr        = netip.MustParseAddr("198.18.0.254")
	RouterRemoteAddr  = netip.MustParseAddr("198.18.2.1")
	RemotePrefix6     = netip.MustParsePrefix("2001:db8:2::/64")
	RemoteClientAddr6 = netip.MustParseAddr("2001:db8:2::2")
	RouterAddr6       = netip.MustParseAddr("2001:db8::fe")
	RouterRemoteAddr6 = netip.MustParseAddr("2001:db8:2::1")
)

// RealAddr returns the address of real server i (0-based) of a one-armed
// topology: 198.18.0.11+i. Use Env.Reals[i].Addr for any topology.
func RealAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)})
}

// RealAddr6 is the IPv6 address of real server i of a one-armed
// topology: 2001:db8::11+i (hexadecimal).
func RealAddr6(i int) netip.Addr {
	return addr6(Prefix6, 0x11+i)
}

func realAddrs(p4, p6 netip.Prefix, i int) (netip.Addr, netip.Addr) {
	b := p4.Addr().As4()
	b[3] = byte(11 + i)
	return netip.AddrFrom4(b), addr6(p6, 0x11+i)
}

// addr6 is host n of an IPv6 /64.
func addr6(p netip.Prefix, n int) netip.Addr {
	b := p.Addr().As16()
	b[14], b[15] = byte(n>>8), byte(n)
	return netip.AddrFrom16(b)
}

// Env is a running topology.
type Env struct {
	Name     string
	Bridge   *Host // holds br0 (client side) and, two-armed, br1 (server side)
	Client   *Host
	Director *Host
	Reals    []*Host
	// Router is the PathMTU router between the client and br0, or nil.
	Router *Host

	// VIP and VIP6 (invalid without Options.IPv6) are on the director's eth0.
	VIP, VIP6 netip.Addr
	// DirectorIfaces are the interfaces xlb serves: eth0, and eth1 when
	// two-armed (client side first).
	DirectorIfaces []string
	// Gateway and Gateway6 are the director's addresses on the real
	// servers' side: what RealNAT servers route through.
	Gateway, Gateway6 netip.Addr
	// LAddr and LAddr6 are the director's FULLNAT local addresses on the
	// real servers' side, configured with RealFullNAT.
	LAddr, LAddr6 netip.Addr

	opts    Options
	closers []func() error
}

// Host is one namespace of a topology.
type Host struct {
	Name   string // host name, e.g. "rs1"
	NSName string // namespace name, e.g. "xlb123-rs1"
	NS     netns.NsHandle
	Addr   netip.Addr       // address on eth0 (invalid for the bridge)
	Addr6  netip.Addr       // IPv6 address on eth0, if the topology has IPv6
	MAC    net.HardwareAddr // MAC of eth0
	Ifname string           // "eth0"
	// Peer is the name of the bridge-side end of this host's veth.
	Peer string

	// DecapProc is the `xlb decap` that SetupTunReal started on this
	// host with Options.XLB set (nil otherwise). The topology stops it on
	// Close; a test may stop it earlier to read its counters.
	DecapProc *Proc

	env   *Env
	ports atomic.Uint32 // source ports handed out by nextPort
	decap bool          // the decapsulation program runs on eth0
}

// New builds a topology for a test and removes it in t.Cleanup, also when
// the test fails. It fails the test when the topology cannot be built.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	if opts.Name == "" {
		opts.Name = fmt.Sprintf("xt%d", os.Getpid()%100000)
	}
	env, err := Setup(opts)
	if env != nil {
		t.Cleanup(func() {
			if err := env.Close(); err != nil {
				t.Errorf("tear down %s: %v", opts.Name, err)
			}
		})
	}
	if err != nil {
		t.Fatalf("build topology: %v", err)
	}
	return env
}

// Setup builds a topology. On error it returns whatever it managed to
// build, already torn down, and the error.
func Setup(opts Options) (env *Env, err error) {
	if opts.Name == "" {
		opts.Name = fmt.Sprintf("xlb%d", os.Getpid()%100000)
	}
	if opts.RealServers <= 0 {
		opts.RealServers = 3
	}
	if opts.HTTPPort == 0 {
		opts.HTTPPort = 80
	}
	if opts.UDPPort == 0 {
		opts.UDPPort = 53
	}
	if opts.HashPort == 0 {
		opts.HashPort = 9000
	}
	if len(opts.Name) > 9 {
		return nil, fmt.Errorf("invalid topology name %q: at most 9 characters", opts.Name)
	}
	if opts.RealServers > 200 {
		return nil, fmt.Errorf("invalid real server count %d: at most 200", opts.RealServers)
	}
	if opts.PathMTU != 0 && (opts.PathMTU < 1280 || opts.PathMTU > 1500) {
		return nil, fmt.Errorf("invalid path MTU %d: must be 1280-1500", opts.PathMTU)
	}
	if opts.Reals < RealDR || opts.Reals > RealFullNAT {
		return nil, fmt.Errorf("invalid real server kind %d: must be RealDR, RealNAT, RealTUN or RealFullNAT", opts.Reals)
	}
	env = &Env{Name: opts.Name, opts: opts, VIP: VIP, DirectorIfaces: []string{"eth0"}}
	defer func() {
		if err != nil {
			env.Close()
		}
	}()
	if opts.IPv6 {
		env.VIP6 = VIP6
	}

	if env.Bridge, err = env.newNS("br"); err != nil {
		return env, err
	}
	bridges := []string{"br0"}
	if opts.TwoArmed {
		bridges = append(bridges, "br1")
	}
	for _, name := range bridges {
		if err := env.Bridge.Do(func() error {
			// No multicast snooping: IPv6 neighbour solicitations go to
			// solicited-node groups, and a bridge that missed a host's MLD
			// report (sent as its address was added, maybe before the
			// port was up) would not forward them to it.
			off := false
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}, MulticastSnooping: &off}
			if err := netlink.LinkAdd(br); err != nil {
				return fmt.Errorf("add bridge %s: %w", name, err)
			}
			return netlink.LinkSetUp(br)
		}); err != nil {
			return env, err
		}
	}
	// Kernels with br_netfilter built in run bridged IP through
	// netfilter, which validates (and drops) malformed IP headers and
	// costs time: make the bridge a plain switch.
	for _, k := range []string{"iptables", "ip6tables", "arptables"} {
		key := "net/bridge/bridge-nf-call-" + k
		if err := env.Bridge.Do(func() error {
			if _, err := os.Stat("/proc/sys/" + key); err != nil {
				return nil // no br_netfilter: nothing to turn off
			}
			return os.WriteFile("/proc/sys/"+key, []byte("0"), 0o644)
		}); err != nil {
			return env, fmt.Errorf("turn off %s in %s: %w", key, env.Bridge.NSName, err)
		}
	}

	v6 := func(a netip.Addr) netip.Addr {
		if opts.IPv6 {
			return a
		}
		return netip.Addr{}
	}
	if env.Director, err = env.newHost("dir", "br0", DirectorAddr, v6(DirectorAddr6)); err != nil {
		return env, err
	}
	env.Gateway, env.Gateway6 = DirectorAddr, v6(DirectorAddr6)
	env.LAddr, env.LAddr6 = LAddr, v6(LAddr6)
	realPrefix, realPrefix6, realBridge := Prefix, Prefix6, "br0"
	if opts.TwoArmed {
		if err := env.plug(env.Director, "eth1", "br1", DirectorServerAddr, v6(DirectorServerAddr6), ServerPrefix, ServerPrefix6); err != nil {
			return env, err
		}
		env.DirectorIfaces = append(env.DirectorIfaces, "eth1")
		env.Gateway, env.Gateway6 = DirectorServerAddr, v6(DirectorServerAddr6)
		env.LAddr, env.LAddr6 = ServerLAddr, v6(ServerLAddr6)
		realPrefix, realPrefix6, realBridge = ServerPrefix, ServerPrefix6, "br1"
	}
	if opts.PathMTU != 0 {
		if err := env.addRouter(v6); err != nil {
			return env, err
		}
	} else if env.Client, err = env.newHost("cli", "br0", ClientAddr, v6(ClientAddr6)); err != nil {
		return env, err
	}
	for i := 0; i < opts.RealServers; i++ {
		a4, a6 := realAddrs(realPrefix, realPrefix6, i)
		h, err := env.newHost(fmt.Sprintf("rs%d", i+1), realBridge, a4, v6(a6))
		if err != nil {
			return env, err
		}
		env.Reals = append(env.Reals, h)
	}

	// The director owns the VIP on its client-side interface.
	for _, vip := range []netip.Addr{env.VIP, env.VIP6} {
		if vip.IsValid() {
			if err := env.Director.AddAddr("eth0", netip.PrefixFrom(vip, vip.BitLen())); err != nil {
				return env, err
			}
		}
	}
	if err := env.setupDirector(); err != nil {
		return env, err
	}
	for _, h := range append([]*Host{env.Client}, env.Reals...) {
		if err := h.Ethtool("-K", h.Ifname, "tx", "off"); err != nil {
			return env, err
		}
	}
	for _, h := range env.Reals {
		if err := env.setupReal(h); err != nil {
			return env, err
		}
	}
	if opts.Servers {
		for _, h := range env.Reals {
			var vips []netip.Addr
			if opts.Reals == RealDR || opts.Reals == RealTUN {
				vips = []netip.Addr{env.VIP, env.VIP6}
			}
			if err := env.startServers(h, vips...); err != nil {
				return env, err
			}
		}
	}
	return env, nil
}

// newNS makes a host's namespace, with lo up.
func (env *Env) newNS(name string) (*Host, error) {
	h := &Host{Name: name, NSName: env.Name + "-" + name, Ifname: "eth0", NS: -1, env: env}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("get current namespace: %w", err)
	}
	defer orig.Close()
	// Remove a namespace of the same name left by a crashed run.
	_ = netns.DeleteNamed(h.NSName)
	ns, err := netns.NewNamed(h.NSName) // switches this thread into it
	if err != nil {
		netns.Set(orig)
		return nil, fmt.Errorf("create namespace %s: %w", h.NSName, err)
	}
	if err := netns.Set(orig); err != nil {
		// This thread is stuck in the new namespace: keep it locked so
		// the runtime throws it away instead of reusing it.
		runtime.LockOSThread()
		return nil, fmt.Errorf("return from namespace %s: %w", h.NSName, err)
	}
	h.NS = ns
	env.closers = append(env.closers, func() error {
		h.NS.Close()
		if err := netns.DeleteNamed(h.NSName); err != nil {
			return fmt.Errorf("delete namespace %s: %w", h.NSName, err)
		}
		return nil
	})
	if err := h.Do(func() error { return setUp("lo") }); err != nil {
		return nil, err
	}
	// IPv6 addresses are usable at once: duplicate address detection
	// would hold them tentative (unbindable) for a second or more.
	for _, k := range []string{"net/ipv6/conf/all/accept_dad", "net/ipv6/conf/default/accept_dad"} {
		if err := h.sysctlIfExists(k, "0"); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// newHost makes a namespace with an eth0 on bridge whose addresses are
// addr (with Prefix's length) and addr6 (if valid, /64).
func (env *Env) newHost(name, bridge string, addr, addr6 netip.Addr) (*Host, error) {
	h, err := env.newNS(name)
	if err != nil {
		return nil, err
	}
	p4, p6 := Prefix, Prefix6
	if bridge == "br1" {
		p4, p6 = ServerPrefix, ServerPrefix6
	}
	if err := env.plug(h, "eth0", bridge, addr, addr6, p4, p6); err != nil {
		return nil, err
	}
	return h, nil
}

// macFor derives a MAC from an IPv4 address: 02:18:00:00:c:d for a.b.c.d
// (02:19:... for the bridge end).
func macFor(a netip.Addr, bridgeEnd bool) net.HardwareAddr {
	b := a.As4()
	m := net.HardwareAddr{0x02, 0x18, 0, 0, b[2], b[3]}
	if bridgeEnd {
		m[1] = 0x19
	}
	return m
}

// plug gives h an interface ifname, a veth whose peer is on bridge in
// the bridge namespace, with addr/p4.Bits() and addr6/p6.Bits(), and
// brings both ends up. eth0 sets h.Addr, h.Addr6, h.MAC and h.Peer.
func (env *Env) plug(h *Host, ifname, bridge string, addr, addr6 netip.Addr, p4, p6 netip.Prefix) error {
	peer := "v-" + h.Name
	if ifname != "eth0" {
		peer = "v" + strings.TrimPrefix(ifname, "eth") + "-" + h.Name
	}
	mac := macFor(addr, false)
	queues := 1
	if h.Name == "dir" && ifname == "eth0" && env.opts.DirectorQueues > 1 {
		queues = env.opts.DirectorQueues
	}
	if h.Name == "cli" && ifname == "eth0" && env.opts.ClientQueues > 1 {
		queues = env.opts.ClientQueues
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name: ifname, HardwareAddr: mac, NumTxQueues: queues, NumRxQueues: queues,
			Namespace: netlink.NsFd(int(h.NS)),
		},
		PeerName:         peer,
		PeerNamespace:    netlink.NsFd(int(env.Bridge.NS)),
		PeerHardwareAddr: macFor(addr, true),
	}
	// veth's peer queue counts are set with the same attributes.
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s for %s: %w", ifname, h.NSName, err)
	}
	if ifname == "eth0" {
		h.Addr, h.Addr6, h.MAC, h.Peer = addr, addr6, mac, peer
	}
	if err := env.Bridge.Do(func() error {
		l, err := netlink.LinkByName(peer)
		if err != nil {
			return fmt.Errorf("find %s: %w", peer, err)
		}
		br, err := netlink.LinkByName(bridge)
		if err != nil {
			return fmt.Errorf("find %s: %w", bridge, err)
		}
		if err := netlink.LinkSetMaster(l, br); err != nil {
			return fmt.Errorf("attach %s to %s: %w", peer, bridge, err)
		}
		return netlink.LinkSetUp(l)
	}); err != nil {
		return err
	}
	// Up before the addresses: IPv6 ones become usable (waitLocal) only
	// on an interface that is up.
	if err := h.Do(func() error { return setUp(ifname) }); err != nil {
		return err
	}
	if err := h.AddAddr(ifname, netip.PrefixFrom(addr, p4.Bits())); err != nil {
		return err
	}
	if addr6.IsValid() {
		return h.AddAddr(ifname, netip.PrefixFrom(addr6, p6.Bits()))
	}
	return nil
}

func setUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// Do runs fn on an OS thread switched into h's namespace. Sockets fn
// creates belong to the namespace for life.
func (h *Host) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(h.NS); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", h.NSName, err)
			return
		}
		err = fn()
		if rerr := netns.Set(orig); rerr != nil {
			// Leave the thread locked: the runtime ends it with this
			// goroutine instead of reusing a thread in the wrong namespace.
			errc <- errors.Join(err, fmt.Errorf("leave namespace %s: %w", h.NSName, rerr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// AddAddr adds an address to one of h's interfaces.
func (h *Host) AddAddr(ifname string, p netip.Prefix) error {
	return h.Do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", ifname, h.NSName, err)
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD // usable at once, see newNS
		}
		if err := netlink.AddrAdd(l, a); err != nil {
			return fmt.Errorf("add %v to %s in %s: %w", p, ifname, h.NSName, err)
		}
		if p.Addr().Is6() && l.Attrs().Flags&net.FlagUp != 0 {
			return waitLocal(p.Addr(), h.NSName)
		}
		return nil
	})
}

// waitLocal waits until the kernel routes a, an IPv6 address just added
// to an interface that is up, as local. Even without DAD, addrconf
// installs the local route from a work queue after the netlink request
// returns: a packet to a in the next milliseconds is answered with
// "no route" (seen as a flaky first IPv6 packet to a VIP on lo).
func waitLocal(a netip.Addr, ns string) error {
	for deadline := time.Now().Add(2 * time.Second); ; {
		rs, err := netlink.RouteGet(a.AsSlice())
		if err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for %v to be local in %s: %v", a, ns, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Sysctl writes a sysctl inside h's namespace, e.g. "net/ipv4/ip_forward".
func (h *Host) Sysctl(key, value string) error {
	return h.Do(func() error {
		if err := os.WriteFile("/proc/sys/"+key, []byte(value), 0o644); err != nil {
			return fmt.Errorf("set %s=%s in %s: %w", key, value, h.NSName, err)
		}
		return nil
	})
}

// SetupDRReal makes h a real server for direct routing: the VIP on lo, and
// ARP settings so that only the director answers for it.
func (h *Host) SetupDRReal(vip netip.Addr) error {
	if err := h.AddAddr("lo", netip.PrefixFrom(vip, vip.BitLen())); err != nil {
		return err
	}
	for _, kv := range [][2]string{
		{"net/ipv4/conf/all/arp_ignore", "1"},
		{"net/ipv4/conf/all/arp_announce", "2"},
		{"net/ipv4/conf/" + h.Ifname + "/arp_ignore", "1"},
		{"net/ipv4/conf/" + h.Ifname + "/arp_announce", "2"},
	} {
		if err := h.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// Command returns a command that runs inside h's namespace.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.NSName, name}, args...)...)
}

// Ethtool runs ethtool inside h's namespace.
func (h *Host) Ethtool(args ...string) error {
	out, err := h.Command("ethtool", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ethtool %s in %s: %w: %s", strings.Join(args, " "), h.NSName, err, out)
	}
	return nil
}

// Close stops the servers and deletes every namespace of the topology.
// It is safe to call more than once.
func (env *Env) Close() error {
	var errs []error
	for i := len(env.closers) - 1; i >= 0; i-- {
		if err := env.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	env.closers = nil
	return errors.Join(errs...)
}

// RequireRoot skips t when it cannot create namespaces and attach XDP
// (not root), with the reason; see SkipUnlessRequired.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipUnlessRequired(t, "needs root to create network namespaces and attach XDP")
	}
}

// SkipUnlessRequired skips tb for a missing capability, with the reason.
// When XLB_REQUIRE_E2E is set, as `make test` and CI do, it fails the
// test instead: CI must never pass with a privileged test skipped.
func SkipUnlessRequired(tb testing.TB, format string, args ...any) {
	tb.Helper()
	why := fmt.Sprintf(format, args...)
	if os.Getenv("XLB_REQUIRE_E2E") != "" {
		tb.Fatalf("%s, and XLB_REQUIRE_E2E is set: this test must run here", why)
	}
	tb.Skip(why)
}
