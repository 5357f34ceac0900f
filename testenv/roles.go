//go:build linux

package testenv

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/bpf"
)

// IP runs `ip args...` inside h's namespace.
func (h *Host) IP(args ...string) error {
	out, err := h.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s in %s: %w: %s", strings.Join(args, " "), h.NSName, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// sysctlIfExists is Sysctl for a key that a kernel may lack (IPv6 off).
func (h *Host) sysctlIfExists(key, value string) error {
	return h.Do(func() error {
		if _, err := os.Stat("/proc/sys/" + key); err != nil {
			return nil
		}
		if err := os.WriteFile("/proc/sys/"+key, []byte(value), 0o644); err != nil {
			return fmt.Errorf("set %s=%s in %s: %w", key, value, h.NSName, err)
		}
		return nil
	})
}

func (h *Host) sysctls(kvs ...string) error {
	for i := 0; i+1 < len(kvs); i += 2 {
		if err := h.Sysctl(kvs[i], kvs[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "-4"
	}
	return "-6"
}

// SetupNATReal makes h a real server for NAT (ipvsadm -m): its default
// route goes through gw, the director (one address per family: an IPv4
// and, with IPv6, an IPv6 gateway). h's own address on eth0 becomes a host
// route (/32, /128) with only the gateway on-link, so that replies to a
// client on the same segment (one-armed NAT) also go through the director
// instead of straight to the client, who would drop them (they come from
// the real server's address, not the VIP). ICMP redirects, which would
// send h straight to the client, are ignored.
func (h *Host) SetupNATReal(gws ...netip.Addr) error {
	for _, gw := range gws {
		if !gw.IsValid() {
			continue
		}
		own := h.Addr
		if gw.Is6() {
			own = h.Addr6
		}
		if !own.IsValid() {
			return fmt.Errorf("setup nat real %s: no %v address for gateway %v", h.Name, family(gw), gw)
		}
		if err := h.hostRouteOnly(own, gw); err != nil {
			return err
		}
		if err := h.IP(family(gw), "route", "replace", "default", "via", gw.String(), "dev", h.Ifname); err != nil {
			return err
		}
	}
	if err := h.sysctls(
		"net/ipv4/conf/all/accept_redirects", "0",
		"net/ipv4/conf/"+h.Ifname+"/accept_redirects", "0",
	); err != nil {
		return err
	}
	if err := h.sysctlIfExists("net/ipv6/conf/all/accept_redirects", "0"); err != nil {
		return err
	}
	return h.sysctlIfExists("net/ipv6/conf/"+h.Ifname+"/accept_redirects", "0")
}

// hostRouteOnly replaces own's subnet on eth0 by own alone, with a link
// route to gw.
func (h *Host) hostRouteOnly(own, gw netip.Addr) error {
	done := false
	err := h.Do(func() error {
		l, err := netlink.LinkByName(h.Ifname)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", h.Ifname, h.NSName, err)
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("list addresses of %s in %s: %w", h.Ifname, h.NSName, err)
		}
		for _, a := range addrs {
			ip, _ := netip.AddrFromSlice(a.IP)
			if ip.Unmap() != own {
				continue
			}
			if ones, bits := a.Mask.Size(); ones == bits {
				done = true // already a host route
				return nil
			}
			if err := netlink.AddrDel(l, &a); err != nil {
				return fmt.Errorf("delete %v from %s in %s: %w", a.IPNet, h.Ifname, h.NSName, err)
			}
		}
		return nil
	})
	if err != nil || done {
		return err
	}
	if err := h.AddAddr(h.Ifname, netip.PrefixFrom(own, own.BitLen())); err != nil {
		return err
	}
	return h.IP(family(gw), "route", "replace", netip.PrefixFrom(gw, gw.BitLen()).String(), "dev", h.Ifname)
}

// SetupTunReal makes h a real server for IP tunnelling (ipvsadm -i): the
// VIP on lo with the DR ARP settings (the decapsulated packet is
// addressed to the VIP), and the decapsulation program on eth0 for h's
// eth0 addresses (once per host; a second call adds only the VIP). With
// Options.XLB set it runs `xlb decap --iface eth0`; otherwise it attaches
// the same program from the test process.
//
// rp_filter goes off (all, default and eth0; the kernel applies the
// larger of "all" and the interface's value). The decapsulated packet
// arrives on eth0 with the client as its source: with a route to the
// client through eth0 strict mode passes it, but with none (measured)
// rp_filter=1 and 2 both drop it where 0 delivers it, and with a route by
// another interface strict mode drops it. ipvs.sh clears rp_filter too,
// also on tunl0, where the kernel's ipip delivers the inner packet. IPv6
// has no reverse-path filter.
func (h *Host) SetupTunReal(vip netip.Addr) error {
	if err := h.SetupDRReal(vip); err != nil {
		return err
	}
	if err := h.sysctls(
		"net/ipv4/conf/all/rp_filter", "0",
		"net/ipv4/conf/default/rp_filter", "0",
		"net/ipv4/conf/"+h.Ifname+"/rp_filter", "0",
	); err != nil {
		return err
	}
	if h.decap {
		return nil
	}
	if err := h.startDecap(); err != nil {
		return err
	}
	h.decap = true
	return nil
}

func (h *Host) startDecap() error {
	env := h.env
	if env.opts.XLB != "" {
		p, err := h.Start(env.opts.XLB, "decap", "--iface", h.Ifname, "--gue-port", fmt.Sprint(env.opts.GUEPort))
		if err != nil {
			return err
		}
		h.DecapProc = p
		env.closers = append(env.closers, func() error {
			if err := p.Stop(syscall.SIGTERM, 5*time.Second); err != nil {
				return fmt.Errorf("stop xlb decap in %s: %w\n%s", h.NSName, err, p.Output.String())
			}
			return nil
		})
		// It prints "running" once attached; bounded wait.
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.Output.String(), "running"); {
			if p.Exited() || time.Now().After(deadline) {
				return fmt.Errorf("xlb decap in %s did not start: %v\n%s", h.NSName, p.Err(), p.Output.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	}
	d, err := bpf.LoadDecap()
	if err != nil {
		return err
	}
	for _, a := range []netip.Addr{h.Addr, h.Addr6} {
		if a.IsValid() {
			if err := d.AddLocal(a); err != nil {
				d.Close()
				return err
			}
		}
	}
	if err := d.SetGUEPort(env.opts.GUEPort); err != nil {
		d.Close()
		return err
	}
	var closeLink func() error
	err = h.Do(func() error {
		l, err := netlink.LinkByName(h.Ifname)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", h.Ifname, h.NSName, err)
		}
		lk, _, err := d.Attach(l.Attrs().Index)
		if err != nil {
			return err
		}
		closeLink = lk.Close
		return nil
	})
	if err != nil {
		d.Close()
		return err
	}
	env.closers = append(env.closers, func() error {
		return errors.Join(closeLink(), d.Close())
	})
	return nil
}

// SetupFullNATReal makes h a real server for FULLNAT: it needs no route
// to clients, only to the director's local addresses, which it reaches
// through via unless they are on-link (pass no nets then).
func (h *Host) SetupFullNATReal(via netip.Addr, nets ...netip.Prefix) error {
	for _, n := range nets {
		if err := h.IP(family(n.Addr()), "route", "replace", n.String(), "via", via.String()); err != nil {
			return err
		}
	}
	return nil
}

// setupDirector prepares the director's kernel for the topology: routing
// when two-armed or for NAT, and what replies passing through it need.
func (env *Env) setupDirector() error {
	d := env.Director
	if env.opts.TwoArmed || env.opts.Reals == RealNAT {
		// ip_forward for replies that xlb does not rewrite (DR and TUN
		// replies through a two-armed director, and plain routing).
		// send_redirects=0: one-armed, a forwarded reply leaves by the
		// interface it came in on, and a redirect would send the real
		// server straight to the client.
		if err := d.sysctls(
			"net/ipv4/ip_forward", "1",
			"net/ipv4/conf/all/send_redirects", "0",
			"net/ipv4/conf/eth0/send_redirects", "0",
		); err != nil {
			return err
		}
		if err := d.sysctlIfExists("net/ipv6/conf/all/forwarding", "1"); err != nil {
			return err
		}
	}
	if env.opts.TwoArmed {
		// A DR or TUN real server's reply comes from the VIP, which is
		// the director's own: without accept_local the kernel drops it as
		// a martian source before forwarding it.
		if err := d.sysctls(
			"net/ipv4/conf/eth1/send_redirects", "0",
			"net/ipv4/conf/all/accept_local", "1",
			"net/ipv4/conf/eth1/accept_local", "1",
			"net/ipv4/conf/all/rp_filter", "0",
			"net/ipv4/conf/eth1/rp_filter", "0",
		); err != nil {
			return err
		}
	}
	if env.opts.Reals == RealFullNAT {
		side := env.DirectorIfaces[len(env.DirectorIfaces)-1]
		for _, a := range []netip.Addr{env.LAddr, env.LAddr6} {
			if a.IsValid() {
				if err := d.AddAddr(side, netip.PrefixFrom(a, a.BitLen())); err != nil {
					return err
				}
			}
		}
	}
	if env.Router != nil {
		if err := env.routeRemote(d); err != nil {
			return err
		}
	}
	if env.opts.TwoArmed {
		// The client side reaches the server side's own addresses (health
		// checks, plain routing) through the director; the client behind
		// the PathMTU router does through its default route.
		via := env.Client
		if env.Router != nil {
			via = env.Router
		}
		if err := via.IP("-4", "route", "replace", ServerPrefix.String(), "via", DirectorAddr.String()); err != nil {
			return err
		}
		if env.opts.IPv6 {
			if err := via.IP("-6", "route", "replace", ServerPrefix6.String(), "via", DirectorAddr6.String()); err != nil {
				return err
			}
		}
	}
	return nil
}

// routeRemote routes h to the client behind the PathMTU router.
func (env *Env) routeRemote(h *Host) error {
	if err := h.IP("-4", "route", "replace", RemotePrefix.String(), "via", RouterAddr.String()); err != nil {
		return err
	}
	if env.opts.IPv6 {
		return h.IP("-6", "route", "replace", RemotePrefix6.String(), "via", RouterAddr6.String())
	}
	return nil
}

// setupReal applies Options.Reals to h.
func (env *Env) setupReal(h *Host) error {
	vips := []netip.Addr{env.VIP}
	gws := []netip.Addr{env.Gateway}
	if env.opts.IPv6 {
		vips = append(vips, env.VIP6)
		gws = append(gws, env.Gateway6)
	}
	switch env.opts.Reals {
	case RealNAT:
		return h.SetupNATReal(gws...)
	case RealFullNAT:
		return h.SetupFullNATReal(netip.Addr{})
	}
	for _, vip := range vips {
		var err error
		if env.opts.Reals == RealTUN {
			err = h.SetupTunReal(vip)
		} else {
			err = h.SetupDRReal(vip)
		}
		if err != nil {
			return err
		}
	}
	if env.opts.TwoArmed {
		// Replies go to the client through the director.
		for _, gw := range gws {
			if err := h.IP(family(gw), "route", "replace", "default", "via", gw.String()); err != nil {
				return err
			}
		}
	} else if env.Router != nil {
		return env.routeRemote(h)
	}
	return nil
}

// addRouter builds the PathMTU router "rt" on br0 and the client behind
// it, on a veth of its own.
func (env *Env) addRouter(v6 func(netip.Addr) netip.Addr) error {
	rt, err := env.newHost("rt", "br0", RouterAddr, v6(RouterAddr6))
	if err != nil {
		return err
	}
	env.Router = rt
	cli, err := env.newNS("cli")
	if err != nil {
		return err
	}
	env.Client = cli
	if err := pair(rt, "eth1", []netip.Prefix{pfx(RouterRemoteAddr, RemotePrefix), pfx(v6(RouterRemoteAddr6), RemotePrefix6)},
		cli, "eth0", []netip.Prefix{pfx(RemoteClientAddr, RemotePrefix), pfx(v6(RemoteClientAddr6), RemotePrefix6)}); err != nil {
		return err
	}
	if err := cli.IP("-4", "route", "replace", "default", "via", RouterRemoteAddr.String()); err != nil {
		return err
	}
	if err := rt.sysctls(
		"net/ipv4/ip_forward", "1",
		// Every frag-needed matters to a test: no per-peer rate limit.
		"net/ipv4/icmp_ratelimit", "0",
	); err != nil {
		return err
	}
	mtu := fmt.Sprint(env.opts.PathMTU)
	// A host route with a smaller MTU than the link's: the router
	// forwards to the client only what fits (a forwarded packet always
	// honours the route's MTU, ip_dst_mtu_maybe_forward) and answers
	// bigger DF packets with frag-needed; the client's link stays at 1500
	// so its own MSS is the full 1460.
	if err := rt.IP("-4", "route", "replace", RemoteClientAddr.String()+"/32", "dev", "eth1", "mtu", mtu); err != nil {
		return err
	}
	if env.opts.IPv6 {
		if err := cli.IP("-6", "route", "replace", "default", "via", RouterRemoteAddr6.String()); err != nil {
			return err
		}
		if err := rt.sysctls("net/ipv6/conf/all/forwarding", "1", "net/ipv6/icmp/ratelimit", "0"); err != nil {
			return err
		}
		if err := rt.IP("-6", "route", "replace", RemoteClientAddr6.String()+"/128", "dev", "eth1", "mtu", mtu); err != nil {
			return err
		}
	}
	return nil
}

func pfx(a netip.Addr, p netip.Prefix) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(a, p.Bits())
}

// pair links a's aIf and b's bIf with a veth (one queue each way), gives
// each end its prefixes (invalid ones are skipped) and brings both up.
func pair(a *Host, aIf string, aAddrs []netip.Prefix, b *Host, bIf string, bAddrs []netip.Prefix) error {
	mac := func(ps []netip.Prefix) []byte {
		x := ps[0].Addr().As4()
		return []byte{0x02, 0x18, x[1], 0, x[2], x[3]}
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name: aIf, HardwareAddr: mac(aAddrs), NumTxQueues: 1, NumRxQueues: 1,
			Namespace: netlink.NsFd(int(a.NS)),
		},
		PeerName:         bIf,
		PeerNamespace:    netlink.NsFd(int(b.NS)),
		PeerHardwareAddr: mac(bAddrs),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s/%s-%s/%s: %w", a.NSName, aIf, b.NSName, bIf, err)
	}
	for _, end := range []struct {
		h     *Host
		ifn   string
		addrs []netip.Prefix
	}{{a, aIf, aAddrs}, {b, bIf, bAddrs}} {
		if err := end.h.Do(func() error { return setUp(end.ifn) }); err != nil {
			return err
		}
		for _, p := range end.addrs {
			if !p.IsValid() {
				continue
			}
			if err := end.h.AddAddr(end.ifn, p); err != nil {
				return err
			}
		}
		if end.ifn == "eth0" {
			end.h.Addr = end.addrs[0].Addr()
			if len(end.addrs) > 1 && end.addrs[1].IsValid() {
				end.h.Addr6 = end.addrs[1].Addr()
			}
			end.h.MAC = mac(end.addrs)
		}
	}
	return nil
}
