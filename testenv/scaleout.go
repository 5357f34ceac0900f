package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
)

// The scale-out topology: directors that announce a VIP over BGP to an
// upstream router running FRR, which spreads the client's flows over
// them by ECMP.
//
//	client 10.200.0.2 ──c0── router (FRR bgpd+zebra, AS 65000) ──d1── director 1 10.201.1.2
//	                         10.200.0.1                        ──d2── director 2 10.201.2.2
//	                                                           ──d3── director 3 10.201.3.2
//
// Each director has its own point-to-point link (10.201.i.0/24, router
// .1, director .2), so every ECMP nexthop is a distinct interface and
// address. The router's kernel FIB, where zebra installs what bgpd
// selects, is the ground truth the tests read (`ip route show VIP`).
//
// With ScaleOutOptions.RealServers, a server LAN joins them, a bridge
// in the router's namespace that the router (10.203.0.1) and every
// director (eth1, 10.203.0.10+i) sit on, with the real servers
// (10.203.0.100+j) as DR real servers: the VIP on lo, ARP for it
// ignored, default route via the router. A request goes client → router
// (ECMP) → director i eth0 → (xlb, DR: MAC rewrite) eth1 → real server;
// the reply goes real server → router → client, past every director:
//
//	                          eth0             eth1
//	                        ┌─ d1 ─ dir1 10.201.1.2 ─┐
//	client ─ c0 ─ router ───┼─ d2 ─ dir2 10.201.2.2 ─┼─ sbr ─┬─ rs1 10.203.0.101
//	10.200.0.2    FRR bgpd  └─ d3 ─ dir3 10.201.3.2 ─┘       ├─ rs2 10.203.0.102
//	              AS 65000    AS 65001, xlb run --bgp-…      └─ rs3 10.203.0.103
//	                │                                    │     VIP 10.202.0.100 on lo
//	                └────────────────────────────────────┘
//	                    DR replies: real server → router (10.203.0.1) → client
var (
	ScaleOutClientAddr = netip.MustParseAddr("10.200.0.2")
	ScaleOutRouterAddr = netip.MustParseAddr("10.200.0.1")
	ScaleOutVIP        = netip.MustParseAddr("10.202.0.100")
	// ScaleOutServerPrefix is the server LAN; the router is .1 on it.
	ScaleOutServerPrefix     = netip.MustParsePrefix("10.203.0.0/24")
	ScaleOutRouterServerAddr = netip.MustParseAddr("10.203.0.1")
)

// ScaleOutDirectorServerAddr is director i's (1-based) address on the
// server LAN (its eth1).
func ScaleOutDirectorServerAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 203, 0, byte(10 + i)})
}

// ScaleOutRealAddr is real server j's (1-based) address on the server LAN.
func ScaleOutRealAddr(j int) netip.Addr { return netip.AddrFrom4([4]byte{10, 203, 0, byte(100 + j)}) }

// ScaleOutDirectorAddr is director i's (1-based) address on its link to
// the router, and ScaleOutRouterLinkAddr the router's end.
func ScaleOutDirectorAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 201, byte(i), 2}) }

// ScaleOutRouterLinkAddr is the router's address on its link to director i.
func ScaleOutRouterLinkAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 201, byte(i), 1}) }

// ScaleOutOptions configure NewScaleOut.
type ScaleOutOptions struct {
	Name      string // namespace prefix; default from the PID
	Directors int    // 1-8, default 3
	RouterAS  uint32 // default 65000
	// DirectorAS is the AS the router expects from director i (0-based
	// index); nil means 65001 for all. Different ASes need FRR's
	// multipath-relax, which the router configures anyway.
	DirectorAS func(i int) uint32
	// HoldTime is the router's hold time (FRR `timers bgp`), default 3 s;
	// the session uses the smaller of it and the director's.
	HoldTime time.Duration
	// RealServers, 0-8, adds the server LAN with that many DR real
	// servers for ScaleOutVIP, each running testenv's HTTP (port 80),
	// UDP echo (53, answering from the VIP) and transfer (9000) servers,
	// and gives each director an eth1 on it. 0 keeps the BGP-only
	// topology.
	RealServers int
	// ClientAddrs, 0-200, gives the client that many more addresses
	// (10.200.0.10, .11, ...) beside ScaleOutClientAddr, for tests that
	// spread flows over source addresses too (see ScaleOutExtraClientAddr).
	ClientAddrs int
}

// ScaleOutExtraClientAddr is the client's k-th (0-based) extra address.
func ScaleOutExtraClientAddr(k int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 200, 0, byte(10 + k)})
}

// ScaleOut is a running scale-out topology.
type ScaleOut struct {
	Router    *Host
	Client    *Host
	Directors []*Host
	// Reals are the real servers (RealServers), rs1, rs2, ...; nil
	// without the server LAN.
	Reals    []*Host
	RouterAS uint32
	// DirectorAS[i] is director i's AS as the router is configured.
	DirectorAS []uint32
	// Zebra and Bgpd are FRR's daemons in the router's namespace.
	Zebra, Bgpd *Proc

	env *Env
	dir string // FRR's config, pid files and sockets
}

// FRRBin is where Debian's frr package puts its daemons.
var FRRBin = "/usr/lib/frr"

// NewScaleOut builds the topology, starts FRR in the router and removes
// everything in t.Cleanup. It skips t (see SkipUnlessRequired) without
// root or without FRR installed.
func NewScaleOut(t testing.TB, opts ScaleOutOptions) *ScaleOut {
	t.Helper()
	RequireRoot(t)
	if _, err := os.Stat(filepath.Join(FRRBin, "bgpd")); err != nil {
		SkipUnlessRequired(t, "needs FRR (apt-get install frr): %v", err)
	}
	so, err := SetupScaleOut(opts, "")
	if so != nil {
		t.Cleanup(func() {
			if err := so.Close(); err != nil {
				t.Errorf("tear down scale-out topology: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("build scale-out topology: %v", err)
	}
	return so
}

// SetupScaleOut builds the topology with FRR's files in dir (a new
// temporary directory when ""). On error it returns what it built, for
// the caller to Close.
func SetupScaleOut(opts ScaleOutOptions, dir string) (*ScaleOut, error) {
	if opts.Name == "" {
		opts.Name = fmt.Sprintf("xs%d", os.Getpid()%100000)
	}
	if opts.Directors == 0 {
		opts.Directors = 3
	}
	if opts.Directors < 1 || opts.Directors > 8 {
		return nil, fmt.Errorf("scale-out topology: %d directors: must be 1-8", opts.Directors)
	}
	if opts.RouterAS == 0 {
		opts.RouterAS = 65000
	}
	if opts.DirectorAS == nil {
		opts.DirectorAS = func(int) uint32 { return 65001 }
	}
	if opts.HoldTime == 0 {
		opts.HoldTime = 3 * time.Second
	}
	if opts.RealServers < 0 || opts.RealServers > 8 {
		return nil, fmt.Errorf("scale-out topology: %d real servers: must be 0-8", opts.RealServers)
	}
	if opts.ClientAddrs < 0 || opts.ClientAddrs > 200 {
		return nil, fmt.Errorf("scale-out topology: %d extra client addresses: must be 0-200", opts.ClientAddrs)
	}
	env := &Env{Name: opts.Name, opts: Options{HTTPPort: 80, UDPPort: 53, HashPort: 9000}}
	so := &ScaleOut{env: env, dir: dir, RouterAS: opts.RouterAS}
	if dir == "" {
		d, err := frrDir()
		if err != nil {
			return nil, err
		}
		so.dir = d
		so.env.closers = append(so.env.closers, func() error { return os.RemoveAll(d) })
	}
	var err error
	if so.Router, err = so.env.newNS("router"); err != nil {
		return so, err
	}
	if so.Client, err = so.env.newNS("client"); err != nil {
		return so, err
	}
	if err := pair(so.Client, "eth0", []netip.Prefix{netip.PrefixFrom(ScaleOutClientAddr, 24)},
		so.Router, "c0", []netip.Prefix{netip.PrefixFrom(ScaleOutRouterAddr, 24)}); err != nil {
		return so, err
	}
	if err := so.Client.IP("route", "add", "default", "via", ScaleOutRouterAddr.String()); err != nil {
		return so, err
	}
	for k := range opts.ClientAddrs {
		if err := so.Client.AddAddr("eth0", netip.PrefixFrom(ScaleOutExtraClientAddr(k), 24)); err != nil {
			return so, err
		}
	}
	for i := 1; i <= opts.Directors; i++ {
		d, err := so.env.newNS(fmt.Sprintf("dir%d", i))
		if err != nil {
			return so, err
		}
		so.Directors = append(so.Directors, d)
		so.DirectorAS = append(so.DirectorAS, opts.DirectorAS(i-1))
		if err := pair(d, "eth0", []netip.Prefix{netip.PrefixFrom(ScaleOutDirectorAddr(i), 24)},
			so.Router, fmt.Sprintf("d%d", i), []netip.Prefix{netip.PrefixFrom(ScaleOutRouterLinkAddr(i), 24)}); err != nil {
			return so, err
		}
		// Replies to the client go back through the router.
		if err := d.IP("route", "add", "default", "via", ScaleOutRouterLinkAddr(i).String()); err != nil {
			return so, err
		}
	}
	// Forward, and hash flows over the ECMP nexthops by their ports too
	// (policy 1, L4), as a router in front of directors would.
	if err := so.Router.sysctls("net/ipv4/ip_forward", "1", "net/ipv4/fib_multipath_hash_policy", "1"); err != nil {
		return so, err
	}
	if err := so.hashByPacket("c0"); err != nil {
		return so, err
	}
	if opts.RealServers > 0 {
		if err := so.setupServerLAN(opts.RealServers); err != nil {
			return so, err
		}
	}
	if err := so.startFRR(opts); err != nil {
		return so, err
	}
	return so, nil
}

// hashByPacket makes the router's ECMP hash the packet's five tuple, as
// a router on another machine does. Across a veth the skb keeps the
// hash the client's socket gave it (sk_txhash, random per socket, and
// chosen anew on every retransmission timeout, net.core.txrehash), and
// fib_multipath_hash takes an L4 hash already on the skb as it is: flows
// would spread by a random number, and a flow that retransmits would
// jump to another director. A tcx ingress program on ifname calls
// bpf_set_hash_invalid, so the kernel dissects the headers instead (and
// `ip route get ... sport ... dport`, RouteFlows, predicts the choice).
func (so *ScaleOut) hashByPacket(ifname string) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SchedCLS,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.FnSetHashInvalid.Call(), // r1 is the skb already
			asm.Mov.Imm(asm.R0, 0),      // TC_ACT_OK (TCX_NEXT is -1)
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("load the router's hash-invalidating program: %w", err)
	}
	defer prog.Close()
	return so.Router.Do(func() error {
		l, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", ifname, so.Router.NSName, err)
		}
		tl, err := link.AttachTCX(link.TCXOptions{Interface: l.Index, Program: prog, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return fmt.Errorf("attach tcx ingress to %s in %s: %w", ifname, so.Router.NSName, err)
		}
		so.env.closers = append(so.env.closers, tl.Close)
		return nil
	})
}

// setupServerLAN builds the bridge sbr in the router's namespace, plugs
// every director's eth1 and n real servers into it, and starts the real
// servers' servers.
func (so *ScaleOut) setupServerLAN(n int) error {
	r := so.Router
	if err := r.IP("link", "add", "sbr", "type", "bridge"); err != nil {
		return err
	}
	if err := r.IP("link", "set", "sbr", "up"); err != nil {
		return err
	}
	if err := r.AddAddr("sbr", netip.PrefixFrom(ScaleOutRouterServerAddr, ScaleOutServerPrefix.Bits())); err != nil {
		return err
	}
	// DR replies come from the VIP, whose route points at the directors,
	// in on sbr: no reverse path filter may drop them.
	if err := r.sysctls("net/ipv4/conf/all/rp_filter", "0", "net/ipv4/conf/sbr/rp_filter", "0"); err != nil {
		return err
	}
	for i, d := range so.Directors {
		if err := so.plugServerLAN(d, "eth1", fmt.Sprintf("s%d", i+1), ScaleOutDirectorServerAddr(i+1)); err != nil {
			return err
		}
	}
	for j := 1; j <= n; j++ {
		h, err := so.env.newNS(fmt.Sprintf("rs%d", j))
		if err != nil {
			return err
		}
		so.Reals = append(so.Reals, h)
		if err := so.plugServerLAN(h, "eth0", fmt.Sprintf("r%d", j), ScaleOutRealAddr(j)); err != nil {
			return err
		}
		if err := h.IP("route", "add", "default", "via", ScaleOutRouterServerAddr.String()); err != nil {
			return err
		}
		if err := h.SetupDRReal(ScaleOutVIP); err != nil {
			return err
		}
		if err := so.env.startServers(h, ScaleOutVIP); err != nil {
			return err
		}
	}
	return nil
}

// plugServerLAN gives h an interface ifname with addr on the server LAN,
// a veth whose router end (peer) is a port of sbr.
func (so *ScaleOut) plugServerLAN(h *Host, ifname, peer string, addr netip.Addr) error {
	b := addr.As4()
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name: ifname, HardwareAddr: net.HardwareAddr{0x02, 0x18, b[1], 0, b[2], b[3]}, NumTxQueues: 1, NumRxQueues: 1,
			Namespace: netlink.NsFd(int(h.NS)),
		},
		PeerName:         peer,
		PeerNamespace:    netlink.NsFd(int(so.Router.NS)),
		PeerHardwareAddr: net.HardwareAddr{0x02, 0x19, b[1], 0, b[2], b[3]},
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s/%s-%s/%s: %w", h.NSName, ifname, so.Router.NSName, peer, err)
	}
	if err := so.Router.IP("link", "set", peer, "master", "sbr", "up"); err != nil {
		return err
	}
	if err := h.Do(func() error { return setUp(ifname) }); err != nil {
		return err
	}
	if err := h.AddAddr(ifname, netip.PrefixFrom(addr, ScaleOutServerPrefix.Bits())); err != nil {
		return err
	}
	if ifname == "eth0" {
		h.Addr, h.MAC = addr, veth.HardwareAddr
	}
	return nil
}

func (so *ScaleOut) bgpdConf(opts ScaleOutOptions) string {
	hold := int(opts.HoldTime / time.Second)
	var b strings.Builder
	fmt.Fprintf(&b, "hostname %s-router\nlog stdout informational\n!\n", so.env.Name)
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %v\n", so.RouterAS, ScaleOutRouterAddr)
	// Accept and select the directors' routes without route maps
	// (FRR's default for eBGP since 7.4 is to require a policy), spread
	// over directors in different ASes too.
	b.WriteString(" no bgp ebgp-requires-policy\n no bgp network import-check\n bgp bestpath as-path multipath-relax\n")
	fmt.Fprintf(&b, " timers bgp %d %d\n", max(hold/3, 1), hold)
	for i := range so.Directors {
		n := ScaleOutDirectorAddr(i + 1)
		// Passive: the directors dial (they do not listen); no
		// minimum advertisement interval, so withdrawals go out at once.
		fmt.Fprintf(&b, " neighbor %v remote-as %d\n neighbor %v passive\n neighbor %v advertisement-interval 0\n neighbor %v timers %d %d\n",
			n, so.DirectorAS[i], n, n, n, max(hold/3, 1), hold)
	}
	b.WriteString(" address-family ipv4 unicast\n  maximum-paths 8\n exit-address-family\n!\n")
	return b.String()
}

// startFRR runs zebra and bgpd in the router's namespace with their own
// config, pid files and sockets under so.dir, so they do not meet a
// system FRR or another test's.
func (so *ScaleOut) startFRR(opts ScaleOutOptions) error {
	zconf := filepath.Join(so.dir, "zebra.conf")
	bconf := filepath.Join(so.dir, "bgpd.conf")
	zsock := filepath.Join(so.dir, "zserv.api")
	if err := os.WriteFile(zconf, []byte("hostname "+so.env.Name+"-router\nlog stdout informational\n"), 0o644); err != nil {
		return fmt.Errorf("write zebra config: %w", err)
	}
	if err := os.WriteFile(bconf, []byte(so.bgpdConf(opts)), 0o644); err != nil {
		return fmt.Errorf("write bgpd config: %w", err)
	}
	common := []string{"--vty_socket", so.dir, "-P", "0", "--log", "stdout"}
	var err error
	so.Zebra, err = so.Router.Start(filepath.Join(FRRBin, "zebra"),
		append([]string{"-f", zconf, "-i", filepath.Join(so.dir, "zebra.pid"), "-z", zsock}, common...)...)
	if err != nil {
		return err
	}
	so.env.closers = append(so.env.closers, func() error { return stopFRR(so.Zebra) })
	// bgpd connects to zebra's socket: wait for it.
	if err := waitFile(zsock, so.Zebra, 10*time.Second); err != nil {
		return fmt.Errorf("start zebra: %w: %s", err, so.Zebra.Output.String())
	}
	so.Bgpd, err = so.Router.Start(filepath.Join(FRRBin, "bgpd"),
		append([]string{"-f", bconf, "-i", filepath.Join(so.dir, "bgpd.pid"), "-z", zsock, "-p", "179"}, common...)...)
	if err != nil {
		return err
	}
	so.env.closers = append(so.env.closers, func() error { return stopFRR(so.Bgpd) })
	if err := waitFile(filepath.Join(so.dir, "bgpd.vty"), so.Bgpd, 10*time.Second); err != nil {
		return fmt.Errorf("start bgpd: %w: %s", err, so.Bgpd.Output.String())
	}
	return nil
}

// frrDir makes a directory the FRR daemons can write to: they drop root
// for the frr user, and refuse to run as root (the frrvty group check).
func frrDir() (string, error) {
	d, err := os.MkdirTemp("", "xlb-frr-")
	if err != nil {
		return "", fmt.Errorf("make FRR directory: %w", err)
	}
	u, err := user.Lookup("frr")
	if err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		err = os.Chown(d, uid, gid)
	}
	if err == nil {
		err = os.Chmod(d, 0o755)
	}
	if err != nil {
		os.RemoveAll(d)
		return "", fmt.Errorf("make FRR directory for user frr: %w", err)
	}
	return d, nil
}

func waitFile(name string, p *Proc, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(name); err == nil {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("exited: %v", p.Err())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no %s after %v", name, limit)
}

func stopFRR(p *Proc) error {
	if p == nil || p.Exited() {
		return nil
	}
	// SIGTERM: the daemons remove their routes and sockets. Their exit
	// status after it does not matter; having to kill them does.
	if err := p.Stop(syscall.SIGTERM, 5*time.Second); err != nil && strings.Contains(err.Error(), "killed") {
		return fmt.Errorf("stop %s: %w: %s", p.Name, err, p.Output.String())
	}
	return nil
}

// Vtysh runs an FRR command (e.g. "show bgp summary") against the
// router's daemons.
func (so *ScaleOut) Vtysh(ctx context.Context, cmd string) (string, error) {
	c := so.Router.Command("vtysh", "--vty_socket", so.dir, "-c", cmd)
	c.WaitDelay = time.Second
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := runCtx(ctx, c)
	if err != nil {
		return out, fmt.Errorf("vtysh -c %q: %w: %s", cmd, err, out)
	}
	return out, nil
}

func runCtx(ctx context.Context, c *exec.Cmd) (string, error) {
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		out, err = c.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
		return string(out), err
	case <-ctx.Done():
		if c.Process != nil {
			_ = c.Process.Kill()
		}
		<-done
		return string(out), ctx.Err()
	}
}

// Nexthops returns the gateways of the router's kernel route to dst (the
// host route), sorted; none when there is no such route.
func (so *ScaleOut) Nexthops(dst netip.Addr) ([]netip.Addr, error) {
	out, err := so.Router.Command("ip", "route", "show", "exact", netip.PrefixFrom(dst, dst.BitLen()).String()).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip route show %v in %s: %w: %s", dst, so.Router.NSName, err, out)
	}
	return parseNexthops(string(out)), nil
}

// parseNexthops reads the gateways out of `ip route show` output: one
// route is "A via G dev D ...", a multipath one lists "nexthop via G dev
// D weight 1" lines.
func parseNexthops(out string) []netip.Addr {
	var nhs []netip.Addr
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] != "via" {
			continue
		}
		if a, err := netip.ParseAddr(f[i+1]); err == nil && !slices.Contains(nhs, a) {
			nhs = append(nhs, a)
		}
	}
	slices.SortFunc(nhs, netip.Addr.Compare)
	return nhs
}

// WaitNexthops polls until the route to dst has exactly want as
// nexthops (in any order), or limit passes; it returns how long that
// took.
func (so *ScaleOut) WaitNexthops(dst netip.Addr, want []netip.Addr, limit time.Duration) (time.Duration, error) {
	want = slices.Clone(want)
	slices.SortFunc(want, netip.Addr.Compare)
	start := time.Now()
	var got []netip.Addr
	var err error
	for time.Since(start) < limit {
		if got, err = so.Nexthops(dst); err == nil && slices.Equal(got, want) {
			return time.Since(start), nil
		}
		if so.Bgpd.Exited() || so.Zebra.Exited() {
			return 0, fmt.Errorf("FRR exited: bgpd %v zebra %v: %s%s", so.Bgpd.Err(), so.Zebra.Err(), so.Bgpd.Output.String(), so.Zebra.Output.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("route to %v: nexthops %v after %v, want %v", dst, got, limit, want)
}

// Close stops FRR and deletes the namespaces. Safe to call twice.
func (so *ScaleOut) Close() error {
	if so.env == nil {
		return nil
	}
	return errors.Join(so.env.Close())
}

// ServeVIP makes every director answer HTTP on VIP:80 itself, with its
// host name ("dir1", ...): the VIP on its lo and a server in its
// namespace. It stands in for a load balancer where a test needs to see
// which director the router's ECMP chose for a flow. Stopped on Close.
func (so *ScaleOut) ServeVIP(vip netip.Addr) error {
	for _, d := range so.Directors {
		if err := d.AddAddr("lo", netip.PrefixFrom(vip, vip.BitLen())); err != nil {
			return err
		}
		var ln net.Listener
		if err := d.Do(func() (err error) {
			ln, err = net.Listen("tcp", netip.AddrPortFrom(vip, 80).String())
			return err
		}); err != nil {
			return fmt.Errorf("listen on %v:80 in %s: %w", vip, d.NSName, err)
		}
		name := d.Name
		srv := &http.Server{
			Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) }),
			ReadHeaderTimeout: 5 * time.Second,
		}
		go srv.Serve(ln)
		so.env.closers = append(so.env.closers, srv.Close)
	}
	return nil
}

// Spread opens n new connections from the client to VIP:80 (distinct
// source ports: distinct flows for the router's L4 hash) and counts the
// answers per director name; failed counts the requests that failed.
func (so *ScaleOut) Spread(vip netip.Addr, n int) (byDirector map[string]int, failed int) {
	c := so.Client.HTTPClient(false, 2*time.Second)
	defer c.CloseIdleConnections()
	byDirector = make(map[string]int)
	url := "http://" + netip.AddrPortFrom(vip, 80).String() + "/"
	for range n {
		name, err := Get(c, url)
		if err != nil {
			failed++
			continue
		}
		byDirector[name]++
	}
	return byDirector, failed
}

// RouteFlows asks the router's FIB which nexthop it picks for each flow
// from src (a client address:port) to dst:dport, as if the packet came
// in from the client (`ip route get DST from SRC iif c0 ipproto P sport S
// dport D`, one batch): with fib_multipath_hash_policy=1 the kernel
// hashes the same five tuple it hashes for a forwarded packet. A flow
// with no route gets the zero Addr.
func (so *ScaleOut) RouteFlows(proto string, dst netip.AddrPort, srcs []netip.AddrPort) ([]netip.Addr, error) {
	var in strings.Builder
	for _, s := range srcs {
		fmt.Fprintf(&in, "route get %v from %v iif c0 ipproto %s sport %d dport %d\n", dst.Addr(), s.Addr(), proto, s.Port(), dst.Port())
	}
	c := so.Router.Command("ip", "-o", "-batch", "-")
	c.Stdin = strings.NewReader(in.String())
	out, err := c.Output()
	if err != nil {
		return nil, fmt.Errorf("ip route get %d flows in %s: %w", len(srcs), so.Router.NSName, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(srcs) {
		return nil, fmt.Errorf("ip route get %d flows in %s: %d answers", len(srcs), so.Router.NSName, len(lines))
	}
	nhs := make([]netip.Addr, len(srcs))
	for i, l := range lines {
		if via := parseNexthops(l); len(via) == 1 {
			nhs[i] = via[0]
		}
	}
	return nhs, nil
}
