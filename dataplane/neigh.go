//go:build linux

package dataplane

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
)

// neighbours finds the MAC address to send a destination's frames to: the
// destination's own when it is on-link (DR must be), else its gateway's.
// It reads the kernel's neighbour table over netlink and, when an entry
// is missing or failed, makes the kernel resolve it by sending one empty
// UDP datagram to the discard port, so ARP/ND runs in the kernel and no
// worker ever waits for it.
type neighbours struct {
	ifindex int
	// probed remembers when an address was last probed, so a dead real
	// server is probed once a second, not on every pass.
	probed map[netip.Addr]time.Time
	// lastErr is the last resolution error logged per address ("" when
	// resolved), so a dead real server is reported once, not every second.
	lastErr map[netip.Addr]string
}

// lookup returns the next-hop MAC for dst, or ok=false when unknown (a
// probe is sent then).
func (n *neighbours) lookup(dst netip.Addr) (mac [6]byte, ok bool, err error) {
	hop := dst
	routes, err := netlink.RouteGet(dst.AsSlice())
	if err != nil {
		return mac, false, fmt.Errorf("route to %v: %w", dst, err)
	}
	if len(routes) > 0 && routes[0].Gw != nil {
		if gw, ok := netip.AddrFromSlice(routes[0].Gw); ok {
			hop = gw.Unmap()
		}
	}
	family := netlink.FAMILY_V4
	if hop.Is6() {
		family = netlink.FAMILY_V6
	}
	neighs, err := netlink.NeighList(n.ifindex, family)
	if err != nil {
		return mac, false, fmt.Errorf("list neighbours: %w", err)
	}
	for _, ne := range neighs {
		ip, _ := netip.AddrFromSlice(ne.IP)
		if ip.Unmap() != hop || len(ne.HardwareAddr) != 6 {
			continue
		}
		if ne.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0 {
			copy(mac[:], ne.HardwareAddr)
			if ne.State&netlink.NUD_STALE != 0 {
				n.probe(hop) // keep it fresh; the MAC stays usable meanwhile
			}
			return mac, true, nil
		}
	}
	n.probe(hop)
	return mac, false, nil
}

func (n *neighbours) probe(hop netip.Addr) {
	if time.Since(n.probed[hop]) < time.Second {
		return
	}
	n.probed[hop] = time.Now()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(hop, 9)))
	if err != nil {
		return
	}
	c.Write(nil)
	c.Close()
}
