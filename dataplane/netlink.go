//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netlinkKernel is netKernel over rtnetlink, in the calling process's
// network namespace. Route lookups and dumps go through one kept socket
// (a netlink.Handle), not one socket per request.
type netlinkKernel struct {
	h          *netlink.Handle
	udp4, udp6 *net.UDPConn // unconnected: one probe is one sendto(2)
}

func newNetlinkKernel() (*netlinkKernel, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	k := &netlinkKernel{h: h}
	// Either family may be missing (an IPv6-less kernel): probing that
	// family then fails, and its destinations stay unresolved.
	k.udp4, _ = net.ListenUDP("udp4", nil)
	k.udp6, _ = net.ListenUDP("udp6", nil)
	return k, nil
}

func (k *netlinkKernel) routeGet(dst netip.Addr) (route, error) {
	rs, err := k.h.RouteGet(dst.AsSlice())
	if err != nil {
		return route{}, err
	}
	if len(rs) == 0 {
		return route{}, errNoRoute
	}
	r := rs[0]
	if r.Type == unix.RTN_LOCAL {
		return route{}, errors.New("the address is local to this host")
	}
	hop := dst
	if gw, ok := netip.AddrFromSlice(r.Gw); ok && r.Gw != nil {
		hop = gw.Unmap()
	}
	return route{hop: hop, ifindex: r.LinkIndex}, nil
}

func (k *netlinkKernel) neighbours() ([]neighbour, error) {
	ns, err := k.h.NeighList(0, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	out := make([]neighbour, 0, len(ns))
	for i := range ns {
		if n, ok := convNeigh(&ns[i]); ok {
			out = append(out, n)
		}
	}
	return out, nil
}

func convNeigh(ne *netlink.Neigh) (neighbour, bool) {
	a, ok := netip.AddrFromSlice(ne.IP)
	if !ok || (ne.Family != unix.AF_INET && ne.Family != unix.AF_INET6) {
		return neighbour{}, false
	}
	n := neighbour{ifindex: ne.LinkIndex, addr: a.Unmap(), state: ne.State}
	if len(ne.HardwareAddr) == 6 {
		copy(n.mac[:], ne.HardwareAddr)
		n.hasMAC = true
	}
	return n, true
}

// probe sends an empty UDP datagram to hop's discard port: the kernel
// resolves hop to send it, and nothing listens there.
func (k *netlinkKernel) probe(hop netip.Addr, ifindex int) error {
	c := k.udp4
	if hop.Is6() {
		c = k.udp6
		if hop.IsLinkLocalUnicast() {
			hop = hop.WithZone(strconv.Itoa(ifindex))
		}
	}
	if c == nil {
		return fmt.Errorf("probe %v: no socket of its family", hop)
	}
	_, err := c.WriteToUDPAddrPort(nil, netip.AddrPortFrom(hop, 9))
	return err
}

// subscribeBuffer is the receive buffer of each subscription socket: a
// flap of many neighbours at once must not overflow it (the kernel then
// drops events and says ENOBUFS, and the resolver resynchronises).
const subscribeBuffer = 4 << 20

func (k *netlinkKernel) subscribe(done <-chan struct{}, ev chan<- netEvent) error {
	neighs := make(chan netlink.NeighUpdate, 1024)
	routes := make(chan netlink.RouteUpdate, 256)
	links := make(chan netlink.LinkUpdate, 64)
	lost := make(chan error, 3)
	cb := func(err error) {
		select {
		case lost <- err:
		default:
		}
	}
	stop := make(chan struct{})
	var once sync.Once
	var drains []func()
	quit := func() {
		once.Do(func() {
			close(stop)
			// netlink's readers close their channel once the socket is
			// closed; drain them so that none blocks on a send.
			for _, d := range drains {
				go d()
			}
		})
	}
	if err := netlink.NeighSubscribeWithOptions(neighs, stop, netlink.NeighSubscribeOptions{
		ErrorCallback: cb, ReceiveBufferSize: subscribeBuffer, ReceiveBufferForceSize: true}); err != nil {
		quit()
		return fmt.Errorf("subscribe to neighbour changes: %w", err)
	}
	drains = append(drains, func() {
		for range neighs {
		}
	})
	if err := netlink.RouteSubscribeWithOptions(routes, stop, netlink.RouteSubscribeOptions{
		ErrorCallback: cb, ReceiveBufferSize: subscribeBuffer, ReceiveBufferForceSize: true}); err != nil {
		quit()
		return fmt.Errorf("subscribe to route changes: %w", err)
	}
	drains = append(drains, func() {
		for range routes {
		}
	})
	if err := netlink.LinkSubscribeWithOptions(links, stop, netlink.LinkSubscribeOptions{
		ErrorCallback: cb}); err != nil {
		quit()
		return fmt.Errorf("subscribe to link changes: %w", err)
	}
	drains = append(drains, func() {
		for range links {
		}
	})
	go func() {
		defer quit()
		send := func(e netEvent) bool {
			select {
			case ev <- e:
				return true
			case <-done:
				return false
			}
		}
		for {
			var e netEvent
			select {
			case <-done:
				return
			case err := <-lost:
				send(netEvent{kind: evLost, err: err})
				return
			case u, ok := <-neighs:
				if !ok {
					send(netEvent{kind: evLost, err: errors.New("neighbour subscription closed")})
					return
				}
				n, ok := convNeigh(&u.Neigh)
				if !ok {
					continue
				}
				e = netEvent{kind: evNeigh, neigh: n}
				if u.Type == unix.RTM_DELNEIGH {
					e.kind = evNeighDel
				}
			case u, ok := <-routes:
				if !ok {
					send(netEvent{kind: evLost, err: errors.New("route subscription closed")})
					return
				}
				e = netEvent{kind: evRoute, prefix: routePrefix(&u.Route)}
			case u, ok := <-links:
				if !ok {
					send(netEvent{kind: evLost, err: errors.New("link subscription closed")})
					return
				}
				up := u.IfInfomsg.Flags&unix.IFF_UP != 0 && u.IfInfomsg.Flags&unix.IFF_LOWER_UP != 0
				e = netEvent{kind: evLink, link: int(u.IfInfomsg.Index), up: up, gone: u.Header.Type == unix.RTM_DELLINK}
			}
			if !send(e) {
				return
			}
		}
	}()
	return nil
}

// routePrefix is the destination prefix of r: 0/0 of its family for a
// default route, invalid when it cannot be told.
func routePrefix(r *netlink.Route) netip.Prefix {
	if r.Dst == nil {
		switch r.Family {
		case unix.AF_INET:
			return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		case unix.AF_INET6:
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		return netip.Prefix{}
	}
	a, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, bits := r.Dst.Mask.Size()
	if a.Is4In6() && bits == 128 {
		ones -= 96
	}
	a = a.Unmap()
	p, err := a.Prefix(ones)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

func (k *netlinkKernel) close() error {
	k.h.Close()
	if k.udp4 != nil {
		k.udp4.Close()
	}
	if k.udp6 != nil {
		k.udp6.Close()
	}
	return nil
}
