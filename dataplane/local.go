//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// Local destinations.
//
// A real server on one of the director's own addresses is the director
// itself: IPVS (__ip_vs_update_dest) makes such a destination
// IP_VS_CONN_F_LOCALNODE when it is added or edited, whatever method was
// asked for, and delivers its connections' packets to the local stack
// unchanged (ip_vs_null_xmit): to the VIP and the virtual port, which the
// director owns. ipvsadm lists it as "Local" and saves it as "-g".
//
// An AF_XDP socket cannot hand a frame back to the kernel, so the workers
// inject those frames through a TAP device that the dataplane owns
// (LocalTapName): write(2) of the frame, its destination MAC set to the
// tap's, makes the kernel receive it on the tap as from a wire. The tap
// has no address (the VIP it delivers to is local already) and loose
// reverse-path filtering (the client is routed by another interface);
// the local server's replies leave by the kernel's normal routing, as
// they do behind IPVS. Every client frame of a Local connection takes
// this path, one write(2) each (see docs/ARCHITECTURE.md for its cost).

// LocalTapName is the TAP device through which frames of connections to
// Local destinations reach the director's own stack. The dataplane
// creates it when a configuration first has a Local destination, in its
// network namespace, and it disappears when the dataplane closes.
const LocalTapName = "xlb-local"

// localTap is the open TAP device. Its fd is written by every worker
// (write(2) on a tap is safe from several threads; each call is one
// frame).
type localTap struct {
	f   *os.File // keeps fd open; nil for a test's pipe
	fd  int
	mac [6]byte
	// rpFilter is net.ipv4.conf.all.rp_filter when the tap was set up:
	// 1 (strict) drops every IPv4 frame it delivers.
	rpFilter string
}

// openLocalTap creates the TAP device name and brings it up, ready to
// receive frames for the local stack of up to mtu bytes of IP (0: the
// device's default, 1500).
func openLocalTap(name string, mtu int) (*localTap, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open local delivery tap: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open local delivery tap %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create local delivery tap %s: %w", name, err)
	}
	t := &localTap{f: os.NewFile(uintptr(fd), "/dev/net/tun"), fd: fd}
	if err := t.setUp(name, mtu); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// tapAddr is given to the tap when reverse-path filtering is on for
// every interface (net.ipv4.conf.all.rp_filter, which the kernel combines
// with the tap's own by taking the larger): the kernel fails an
// interface without an IPv4 address in any rp_filter mode
// (__fib_validate_source, no_addr), and with one it passes loose mode (2).
// A /32 link-local address of the tap alone; the VIPs it delivers to
// are the director's already.
var tapAddr = netip.MustParsePrefix("169.254.0.1/32")

// setUp configures the tap as local delivery needs it. Frames the kernel
// sends out by the tap (none is routed there) would queue on its fd,
// which nobody reads, and be dropped there.
func (t *localTap) setUp(name string, mtu int) error {
	// The client is reached by another interface: no reverse-path
	// filter on the tap. IPv6 stays enabled (ipv6_rcv drops frames on a
	// device with disable_ipv6), without router solicitations.
	for _, kv := range [][2]string{
		{"net/ipv4/conf/" + name + "/rp_filter", "0"},
		{"net/ipv6/conf/" + name + "/disable_ipv6", "0"},
		{"net/ipv6/conf/" + name + "/accept_ra", "0"},
		{"net/ipv6/conf/" + name + "/router_solicitations", "0"},
	} {
		if err := os.WriteFile("/proc/sys/"+kv[0], []byte(kv[1]), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("configure local delivery tap: set %s: %w", kv[0], err)
		}
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("configure local delivery tap %s: %w", name, err)
	}
	if err := netlink.LinkSetARPOff(l); err != nil {
		return fmt.Errorf("configure local delivery tap %s: arp off: %w", name, err)
	}
	if mtu > 0 {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("configure local delivery tap %s: mtu %d: %w", name, mtu, err)
		}
	}
	t.rpFilter = readSysctl("net/ipv4/conf/all/rp_filter")
	if t.rpFilter != "0" && t.rpFilter != "" {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: tapAddr.Addr().AsSlice(), Mask: net.CIDRMask(tapAddr.Bits(), 32)},
			Scope: unix.RT_SCOPE_LINK}
		if err := netlink.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("configure local delivery tap %s: add %v: %w", name, tapAddr, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set local delivery tap %s up: %w", name, err)
	}
	if len(l.Attrs().HardwareAddr) != 6 {
		return fmt.Errorf("configure local delivery tap %s: no Ethernet address", name)
	}
	copy(t.mac[:], l.Attrs().HardwareAddr)
	return nil
}

// readSysctl is the value of a sysctl, "" if it cannot be read.
func readSysctl(key string) string {
	b, err := os.ReadFile("/proc/sys/" + key)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (t *localTap) close() error {
	if t.f == nil {
		return nil
	}
	return t.f.Close()
}

// write hands one frame to the kernel. It is the per-packet path: one
// write(2), no allocation.
func (t *localTap) write(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	// unix.Write, but without the race detector's and the runtime's
	// checks that are per call: one raw syscall.
	_, _, e := unix.Syscall(unix.SYS_WRITE, uintptr(t.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return e == 0
}

// deliverLocal hands a client's frame b of a Local connection, whose IP
// header is at l3, to the director's stack through the tap, as
// ip_vs_null_xmit leaves it to the stack: the IP packet unchanged (not
// even the TTL), in an untagged Ethernet frame to the tap's MAC. The
// frame's descriptor is free afterwards: it returns false, as for a frame
// not transmitted.
func (w *worker) deliverLocal(b []byte, l3, ipLen int, id uint32) bool {
	tap := w.tap
	if tap == nil || l3 < 14 || l3 > len(b) {
		w.stats.local[LocalDropped]++
		return false
	}
	// The EtherType is right before the IP header, tag or no tag: move
	// the source MAC next to it and write the frame from 14 bytes before
	// the IP header.
	copy(b[l3-8:l3-2], b[6:12])
	copy(b[l3-14:l3-8], tap.mac[:])
	if !tap.write(b[l3-14:]) {
		w.stats.local[LocalDropped]++
		return false
	}
	w.stats.local[LocalInjected]++
	w.ds.in(id, ipLen)
	return false
}

// openLocalTap opens the local delivery tap the first time cfg has a
// Local destination. Called with d.mu held.
func (d *Dataplane) openLocalTap(cfg *ipvs.Config) error {
	if d.tap != nil {
		return nil
	}
	for i := range cfg.Services {
		for _, ds := range cfg.Services[i].Dests {
			if ds.Fwd != ipvs.FwdLocal {
				continue
			}
			// As large as the largest served interface's: a frame
			// that came in whole must go in whole.
			mtu := 0
			for _, si := range d.ifaces {
				mtu = max(mtu, si.mtu)
			}
			t, err := openLocalTap(LocalTapName, mtu)
			if err != nil {
				return fmt.Errorf("service %v destination %v: local delivery: %w", netip.AddrPortFrom(cfg.Services[i].Key.Addr, cfg.Services[i].Key.Port), netip.AddrPortFrom(ds.Addr, ds.Port), err)
			}
			d.tap = t
			d.opts.Logger.Info("local delivery tap created", "interface", LocalTapName)
			if t.rpFilter == "1" {
				d.opts.Logger.Warn("net.ipv4.conf.all.rp_filter is 1 (strict): the kernel drops the IPv4 frames of connections to Local destinations; set it to 2 (loose) or 0",
					"interface", LocalTapName)
			}
			return nil
		}
	}
	return nil
}

// markLocal makes every destination of next on one of the director's own
// addresses Local, as IPVS decides it when a destination is added or
// edited: a destination that is exactly as in prev keeps the method it
// had (IPVS does not look again), any other is looked at. It returns a
// function that undoes the marks.
func markLocal(prev, next *ipvs.Config, isLocal func(netip.Addr) bool) (undo func()) {
	type mark struct {
		d   *ipvs.Dest
		was ipvs.Fwd
	}
	var marks []mark
	for i := range next.Services {
		s := &next.Services[i]
		var old map[netip.AddrPort]*ipvs.Dest // prev's destinations of s, by address
		if prev != nil {
			if o := prev.Service(s.Key); o != nil {
				old = make(map[netip.AddrPort]*ipvs.Dest, len(o.Dests))
				for k := range o.Dests {
					old[o.Dests[k].AddrPort()] = &o.Dests[k]
				}
			}
		}
		for j := range s.Dests {
			d := &s.Dests[j]
			if o := old[d.AddrPort()]; d.Fwd == ipvs.FwdLocal || o != nil && *o == *d {
				continue
			}
			if isLocal(d.Addr) {
				marks = append(marks, mark{d, d.Fwd})
				d.Fwd = ipvs.FwdLocal
			}
		}
	}
	return func() {
		for _, m := range marks {
			m.d.Fwd = m.was
		}
	}
}

// kernelLocal returns a function that says whether the kernel routes an
// address to this host, as IPVS asks inet_addr_type (RTN_LOCAL) and, for
// IPv6, a route lookup: whether a local route of the local table (the
// host's addresses, 127.0.0.0/8, ::1, local routes an operator added)
// covers it. It reads the table once, at its first call; on an error it
// logs and answers false (the destination keeps its method).
func (d *Dataplane) kernelLocal() func(netip.Addr) bool {
	if d.isLocal != nil {
		return d.isLocal
	}
	var local []netip.Prefix
	read := false
	return func(a netip.Addr) bool {
		if !read {
			read = true
			filter := &netlink.Route{Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_LOCAL}
			rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_TYPE)
			if err != nil {
				d.opts.Logger.Warn("list the director's local routes: destinations on its own addresses are not seen as local", "err", err)
			}
			for i := range rs {
				if p := routePrefix(&rs[i]); p.IsValid() {
					local = append(local, p)
				}
			}
		}
		a = a.Unmap()
		for _, p := range local {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
}
