//go:build linux

package testenv

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// IPv6 addressing inside a topology, once AddIPv6 has run.
var (
	Prefix6       = netip.MustParsePrefix("2001:db8:18::/64")
	DirectorAddr6 = netip.MustParseAddr("2001:db8:18::1")
	ClientAddr6   = netip.MustParseAddr("2001:db8:18::2")
	VIP6          = netip.MustParseAddr("2001:db8:18::100")
)

// RealAddr6 returns the IPv6 address of real server i (0-based):
// 2001:db8:18::11+i (hexadecimal, as the IPv4 address's last byte).
func RealAddr6(i int) netip.Addr {
	a := DirectorAddr6.As16()
	a[15] = byte(0x11 + i)
	return netip.AddrFrom16(a)
}

// AddIPv6 adds IPv6 to a built topology: an address on every host's eth0
// (no duplicate address detection, so they work at once), VIP6 on the
// director's eth0, and the direct-routing recipe on every real server:
// VIP6 on lo, which Linux does not answer neighbour solicitations for on
// eth0. With opts.Servers it also starts IPv6 TCP (HTTP) and UDP echo
// servers on the real servers, answering their host name as the IPv4 ones
// do.
func (env *Env) AddIPv6() error {
	hosts := append([]*Host{env.Director, env.Client}, env.Reals...)
	addrs := append([]netip.Addr{DirectorAddr6, ClientAddr6}, make([]netip.Addr, len(env.Reals))...)
	for i := range env.Reals {
		addrs[2+i] = RealAddr6(i)
	}
	for i, h := range hosts {
		if err := h.addAddrNoDAD(h.Ifname, netip.PrefixFrom(addrs[i], Prefix6.Bits())); err != nil {
			return err
		}
	}
	if err := env.Director.addAddrNoDAD("eth0", netip.PrefixFrom(VIP6, 128)); err != nil {
		return err
	}
	for i, h := range env.Reals {
		if err := h.addAddrNoDAD("lo", netip.PrefixFrom(VIP6, 128)); err != nil {
			return err
		}
		if env.opts.Servers {
			if err := env.startServers6(h, RealAddr6(i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (h *Host) addAddrNoDAD(ifname string, p netip.Prefix) error {
	return h.Do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", ifname, h.NSName, err)
		}
		a := &netlink.Addr{
			IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
			Flags: unix.IFA_F_NODAD,
		}
		if err := netlink.AddrAdd(l, a); err != nil {
			return fmt.Errorf("add %v to %s in %s: %w", p, ifname, h.NSName, err)
		}
		return nil
	})
}

// startServers6 is startServers for IPv6: HTTP on [::]:HTTPPort, UDP echo
// on own:UDPPort and VIP6:UDPPort.
func (env *Env) startServers6(h *Host, own netip.Addr) error {
	var ln net.Listener
	var pcs []net.PacketConn
	err := h.Do(func() (err error) {
		if ln, err = net.Listen("tcp6", fmt.Sprintf("[::]:%d", env.opts.HTTPPort)); err != nil {
			return fmt.Errorf("listen on tcp6 port %d in %s: %w", env.opts.HTTPPort, h.NSName, err)
		}
		for _, a := range []netip.Addr{own, VIP6} {
			pc, err := net.ListenPacket("udp6", netip.AddrPortFrom(a, env.opts.UDPPort).String())
			if err != nil {
				return fmt.Errorf("listen on udp %v in %s: %w", netip.AddrPortFrom(a, env.opts.UDPPort), h.NSName, err)
			}
			pcs = append(pcs, pc)
		}
		return nil
	})
	closeUDP := func() {
		for _, pc := range pcs {
			pc.Close()
		}
	}
	if err != nil {
		closeUDP()
		if ln != nil {
			ln.Close()
		}
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, h.Name)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	for _, pc := range pcs {
		go func() {
			buf := make([]byte, 2048)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo([]byte(h.Name), from)
			}
		}()
	}
	env.closers = append(env.closers, func() error {
		closeUDP()
		return srv.Close()
	})
	return nil
}
