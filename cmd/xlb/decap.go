//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os/signal"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/bpf"
)

// addrList is a repeatable --addr flag.
type addrList []netip.Addr

func (l *addrList) String() string {
	s := make([]string, len(*l))
	for i, a := range *l {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func (l *addrList) Set(v string) error {
	a, err := netip.ParseAddr(v)
	if err != nil {
		return err
	}
	*l = append(*l, a)
	return nil
}

// decap runs `xlb decap`: the tunnel decapsulation program of a TUN real
// server, attached to one interface until SIGINT or SIGTERM.
func decap(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("xlb decap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: xlb decap --iface IF [--addr A ...] [--gue-port N]

Strips the outer header of tunnel packets (IPIP, 6in4, 4in6, 6in6, GRE, and
GUE with --gue-port) sent to one of this host's addresses on IF, as a TUN
(ipvsadm -i) real server needs, and passes the inner packet to the kernel. Runs until SIGINT or
SIGTERM, then detaches and prints its counters.

`)
		fs.PrintDefaults()
	}
	iface := fs.String("iface", "", "interface to attach to (required)")
	var addrs addrList
	fs.Var(&addrs, "addr", "outer destination to decapsulate, repeatable (default: IF's addresses, link-local excepted)")
	guePort := fs.Uint("gue-port", 0, "UDP port of GUE tunnels (ipvsadm --tun-port); 0: GUE off")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *iface == "" {
		return errors.New("decap: --iface is required")
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("decap: unexpected argument %q", fs.Arg(0))
	}
	if *guePort > 65535 {
		return fmt.Errorf("decap: invalid --gue-port %d: must be 0-65535", *guePort)
	}
	l, err := netlink.LinkByName(*iface)
	if err != nil {
		return fmt.Errorf("find interface %s: %w", *iface, err)
	}
	if len(addrs) == 0 {
		if addrs, err = linkAddrs(l); err != nil {
			return err
		}
		if len(addrs) == 0 {
			return fmt.Errorf("decap: %s has no address: give --addr", *iface)
		}
	}
	if len(addrs) > bpf.MaxDecapLocals {
		return fmt.Errorf("decap: %d addresses: at most %d", len(addrs), bpf.MaxDecapLocals)
	}

	d, err := bpf.LoadDecap()
	if err != nil {
		return err
	}
	defer d.Close()
	for _, a := range addrs {
		if err := d.AddLocal(a.Unmap()); err != nil {
			return err
		}
	}
	if err := d.SetGUEPort(uint16(*guePort)); err != nil {
		return err
	}
	lk, mode, err := d.Attach(l.Attrs().Index)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stderr, "xlb decap: running on %s (%v), local %s, gue port %d\n", *iface, mode, addrs.String(), *guePort)
	<-ctx.Done()
	if err := lk.Close(); err != nil {
		return fmt.Errorf("detach decap from %s: %w", *iface, err)
	}
	c, err := d.Counters()
	if err != nil {
		return err
	}
	for r := range bpf.DecapReason(bpf.NumDecapReasons) {
		fmt.Fprintf(stdout, "%s %d\n", r, c[r])
	}
	return nil
}

// linkAddrs returns l's IPv4 and IPv6 addresses except link-local ones,
// which no director tunnels to.
func linkAddrs(l netlink.Link) ([]netip.Addr, error) {
	list, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	var out []netip.Addr
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap().IsLinkLocalUnicast() {
			continue
		}
		out = append(out, ip.Unmap())
	}
	return out, nil
}
