//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// serveNamePorts makes h answer every TCP connection to one of ports, on
// any of its addresses, with "NAME:PORT", PORT being the one the
// connection reached. The listeners close in t.Cleanup.
func serveNamePorts(t *testing.T, h *testenv.Host, name string, ports ...uint16) {
	t.Helper()
	for _, p := range ports {
		var ln net.Listener
		err := h.Do(func() (err error) {
			ln, err = net.Listen("tcp", fmt.Sprintf(":%d", p))
			return err
		})
		if err != nil {
			t.Fatalf("listen on port %d in %s: %v", p, h.NSName, err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				port := c.LocalAddr().(*net.TCPAddr).Port
				c.SetDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprintf(c, "%s:%d", name, port)
				c.Close()
			}
		}()
	}
}

// askFrom opens a TCP connection from src, an address of h, to dst and
// returns what the server says before it closes.
func askFrom(h *testenv.Host, src netip.Addr, dst netip.AddrPort) (string, error) {
	var out []byte
	err := h.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err := d.DialContext(ctx, "tcp", dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		out, err = io.ReadAll(c)
		return err
	})
	return string(out), err
}

// A port-0 persistent service (-A -t VIP:0 -p), direct routing, IPv4 and
// IPv6: connections from one client to three different ports of the VIP
// all reach one real server (one template per client, for every port),
// each on the port the client asked for (-r RS:0, as -r RS, is the
// client's port); rr gives the next client the next real server.
func TestPortZeroPersistent(t *testing.T) {
	testenv.RequireRoot(t)
	opts := testenv.DefaultOptions()
	opts.IPv6 = true
	env := testenv.New(t, opts)
	ports := []uint16{8081, 8082, 8443}
	for _, rs := range env.Reals {
		serveNamePorts(t, rs, rs.Name, ports...)
	}
	var rules strings.Builder
	for _, vip := range []netip.Addr{env.VIP, env.VIP6} {
		svc := netip.AddrPortFrom(vip, 0)
		fmt.Fprintf(&rules, "-A -t %v -s rr -p 60\n", svc)
		for _, rs := range env.Reals {
			a := rs.Addr
			if vip.Is6() {
				a = rs.Addr6
			}
			fmt.Fprintf(&rules, "-a -t %v -r %v -g\n", svc, a)
		}
	}
	// Three clients per family: the client's own address and two more.
	clients := map[bool][]netip.Addr{
		false: {env.Client.Addr, netip.MustParseAddr("198.18.0.3"), netip.MustParseAddr("198.18.0.4")},
		true:  {env.Client.Addr6, netip.MustParseAddr("2001:db8::3"), netip.MustParseAddr("2001:db8::4")},
	}
	for _, a := range append(clients[false][1:], clients[true][1:]...) {
		if err := env.Client.AddAddr("eth0", netip.PrefixFrom(a, map[bool]int{false: 24, true: 64}[a.Is6()])); err != nil {
			t.Fatal(err)
		}
	}
	d := startXLB(t, env, rules.String())
	list, err := d.ctl("-L", "-n")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list, "TCP  "+env.VIP.String()+":0 rr persistent 60") {
		t.Errorf("-L -n does not list the port-0 service:\n%s", list)
	}
	for _, v6 := range []bool{false, true} {
		vip := env.VIP
		if v6 {
			vip = env.VIP6
		}
		got := map[string]bool{} // real server names, one per client
		for _, c := range clients[v6] {
			server := ""
			for round := 0; round < 2; round++ {
				for _, p := range ports {
					ans, err := askFrom(env.Client, c, netip.AddrPortFrom(vip, p))
					if err != nil {
						t.Fatalf("%v → %v:%d: %v\n%s", c, vip, p, err, stats(d))
					}
					name, port, _ := strings.Cut(ans, ":")
					if port != fmt.Sprint(p) {
						t.Errorf("%v → %v:%d answered on port %s, want %d", c, vip, p, port, p)
					}
					if server == "" {
						server = name
					} else if name != server {
						t.Errorf("%v → %v:%d reached %s, but its first connection reached %s: not persistent across ports", c, vip, p, name, server)
					}
				}
			}
			got[server] = true
		}
		if len(got) != len(clients[v6]) {
			t.Errorf("%d clients of %v:0 reached %v, want one real server each (rr)", len(clients[v6]), vip, got)
		}
	}
	if n := counter(stats(d), "no_service"); n != 0 {
		t.Errorf("no_service = %d, want 0\n%s", n, stats(d))
	}
}
