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

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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
	// Servers starts the HTTP and UDP servers on the real servers
	// (default true through DefaultOptions).
	Servers bool
}

// DefaultOptions: three real servers running HTTP on port 80 and UDP echo
// on port 53.
func DefaultOptions() Options {
	return Options{RealServers: 3, HTTPPort: 80, UDPPort: 53, Servers: true}
}

// Fixed addressing inside every topology.
var (
	Prefix       = netip.MustParsePrefix("198.18.0.0/24")
	DirectorAddr = netip.MustParseAddr("198.18.0.1")
	ClientAddr   = netip.MustParseAddr("198.18.0.2")
	VIP          = netip.MustParseAddr("198.18.0.100")
)

// RealAddr returns the address of real server i (0-based): 198.18.0.11+i.
func RealAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)})
}

// Env is a running topology.
type Env struct {
	Name     string
	Bridge   *Host
	Client   *Host
	Director *Host
	Reals    []*Host

	opts    Options
	closers []func() error
}

// Host is one namespace of a topology.
type Host struct {
	Name   string // host name, e.g. "rs1"
	NSName string // namespace name, e.g. "xlb123-rs1"
	NS     netns.NsHandle
	Addr   netip.Addr       // address on eth0 (invalid for the bridge)
	MAC    net.HardwareAddr // MAC of eth0
	Ifname string           // "eth0"
	// Peer is the name of the bridge-side end of this host's veth.
	Peer string

	ports atomic.Uint32 // source ports handed out by nextPort
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
	if len(opts.Name) > 9 {
		return nil, fmt.Errorf("invalid topology name %q: at most 9 characters", opts.Name)
	}
	env = &Env{Name: opts.Name, opts: opts}
	defer func() {
		if err != nil {
			env.Close()
		}
	}()

	if env.Bridge, err = env.newHost("br", netip.Addr{}); err != nil {
		return env, err
	}
	if err := env.Bridge.Do(func() error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge: %w", err)
		}
		return netlink.LinkSetUp(br)
	}); err != nil {
		return env, err
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
	if env.Director, err = env.newHost("dir", DirectorAddr); err != nil {
		return env, err
	}
	if env.Client, err = env.newHost("cli", ClientAddr); err != nil {
		return env, err
	}
	for i := 0; i < opts.RealServers; i++ {
		h, err := env.newHost(fmt.Sprintf("rs%d", i+1), RealAddr(i))
		if err != nil {
			return env, err
		}
		env.Reals = append(env.Reals, h)
	}

	// The director owns the VIP on its interface.
	if err := env.Director.AddAddr("eth0", netip.PrefixFrom(VIP, 32)); err != nil {
		return env, err
	}
	for _, h := range append([]*Host{env.Client}, env.Reals...) {
		if err := h.Ethtool("-K", h.Ifname, "tx", "off"); err != nil {
			return env, err
		}
	}
	for _, h := range env.Reals {
		if err := h.SetupDRReal(VIP); err != nil {
			return env, err
		}
	}
	if opts.Servers {
		for _, h := range env.Reals {
			if err := env.startServers(h, VIP); err != nil {
				return env, err
			}
		}
	}
	return env, nil
}

// newHost makes a namespace; with a valid addr it also makes the host's
// veth, puts the peer on the bridge and brings both up.
func (env *Env) newHost(name string, addr netip.Addr) (*Host, error) {
	h := &Host{Name: name, NSName: env.Name + "-" + name, Addr: addr, Ifname: "eth0", NS: -1}
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
	if !addr.IsValid() {
		return h, nil
	}

	h.Peer = "v-" + name
	h.MAC = net.HardwareAddr{0x02, 0x18, 0, 0, 0, addr.As4()[3]}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name: h.Ifname, HardwareAddr: h.MAC, NumTxQueues: 1, NumRxQueues: 1,
			Namespace: netlink.NsFd(int(ns)),
		},
		PeerName:         h.Peer,
		PeerNamespace:    netlink.NsFd(int(env.Bridge.NS)),
		PeerHardwareAddr: net.HardwareAddr{0x02, 0x19, 0, 0, 0, addr.As4()[3]},
	}
	// veth's peer queue counts are set with the same attributes.
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("add veth for %s: %w", h.NSName, err)
	}
	if err := env.Bridge.Do(func() error {
		l, err := netlink.LinkByName(h.Peer)
		if err != nil {
			return fmt.Errorf("find %s: %w", h.Peer, err)
		}
		br, err := netlink.LinkByName("br0")
		if err != nil {
			return fmt.Errorf("find br0: %w", err)
		}
		if err := netlink.LinkSetMaster(l, br); err != nil {
			return fmt.Errorf("attach %s to br0: %w", h.Peer, err)
		}
		return netlink.LinkSetUp(l)
	}); err != nil {
		return nil, err
	}
	if err := h.AddAddr(h.Ifname, netip.PrefixFrom(addr, Prefix.Bits())); err != nil {
		return nil, err
	}
	if err := h.Do(func() error { return setUp(h.Ifname) }); err != nil {
		return nil, err
	}
	return h, nil
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
		if err := netlink.AddrAdd(l, a); err != nil {
			return fmt.Errorf("add %v to %s in %s: %w", p, ifname, h.NSName, err)
		}
		return nil
	})
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
