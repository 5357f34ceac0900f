//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
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

// serveHTTPName runs an HTTP server on h, on every address, port port,
// that answers every request with name. It stops in t.Cleanup.
func serveHTTPName(t *testing.T, h *testenv.Host, name string, port uint16) {
	t.Helper()
	var ln net.Listener
	err := h.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("listen on port %d in %s: %v", port, h.NSName, err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) }),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// A real server on the director's own address is Local, as IPVS makes
// it whatever method it was given: -L -n lists it as Local, -S saves it
// as -g, and its connections reach a server on the director itself
// (through xlb's tap into the director's stack) while rr alternates with
// a remote real server: 0 failures, DR (IPv4 and IPv6) and NAT.
func TestLocalRealServer(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range []struct {
		name  string
		reals testenv.RealKind
		opt   string
		vport uint16
		rport uint16 // the remote real server's port
		// rpFilter, if set, is the director's net.ipv4.conf.all.rp_filter
		// (distributions set 2, loose).
		rpFilter string
	}{
		{"dr", testenv.RealDR, "-g", 80, 80, ""},
		{"nat", testenv.RealNAT, "-m", 8080, 80, ""},
		{"dr rp_filter loose", testenv.RealDR, "-g", 80, 80, "2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := testenv.DefaultOptions()
			opts.Reals, opts.RealServers = c.reals, 1
			opts.IPv6 = c.reals == testenv.RealDR && c.rpFilter == ""
			env := testenv.New(t, opts)
			if c.rpFilter != "" {
				if err := env.Director.Sysctl("net/ipv4/conf/all/rp_filter", c.rpFilter); err != nil {
					t.Fatal(err)
				}
			}
			// The director's own server, on the virtual port: IPVS
			// leaves a Local connection's packets as they came, to
			// VIP:vport.
			serveHTTPName(t, env.Director, "director", c.vport)
			type svc struct{ vip, own, remote netip.Addr }
			svcs := []svc{{env.VIP, testenv.DirectorAddr, env.Reals[0].Addr}}
			if opts.IPv6 {
				svcs = append(svcs, svc{env.VIP6, testenv.DirectorAddr6, env.Reals[0].Addr6})
			}
			var rules strings.Builder
			for _, s := range svcs {
				v := netip.AddrPortFrom(s.vip, c.vport)
				fmt.Fprintf(&rules, "-A -t %v -s rr\n", v)
				fmt.Fprintf(&rules, "-a -t %v -r %v %s -w 1\n", v, netip.AddrPortFrom(s.remote, c.rport), c.opt)
				fmt.Fprintf(&rules, "-a -t %v -r %v %s -w 1\n", v, netip.AddrPortFrom(s.own, c.vport), c.opt)
			}
			d := startXLB(t, env, rules.String())

			list, err := d.ctl("-L", "-n")
			if err != nil {
				t.Fatal(err)
			}
			save, err := d.ctl("-S", "-n")
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range svcs {
				own := netip.AddrPortFrom(s.own, c.vport).String()
				if !lineHas(list, "-> "+own+" ", " Local ") {
					t.Errorf("-L -n does not list %s as Local:\n%s", own, list)
				}
				want := fmt.Sprintf("-a -t %v -r %s -g -w 1", netip.AddrPortFrom(s.vip, c.vport), own)
				if !strings.Contains(save, want+"\n") {
					t.Errorf("-S -n lacks %q:\n%s", want, save)
				}
			}

			hc := env.Client.HTTPClient(false, 3*time.Second)
			for _, s := range svcs {
				url := "http://" + netip.AddrPortFrom(s.vip, c.vport).String() + "/"
				got := map[string]int{}
				took := map[string]time.Duration{}
				for i := 0; i < 100; i++ {
					start := time.Now()
					name, err := testenv.Get(hc, url)
					took[name] += time.Since(start)
					if err != nil {
						// The kernel's counters tell a drop on the tap
						// (TcpExtIPReversePathFilter, IpInAddrErrors).
						nstat, _ := env.Director.Command("nstat", "-az").CombinedOutput()
						t.Fatalf("request %d to %s: %v\n%s\n%s\n%s", i, url, err, stats(d), d.Output.String(), nstat)
					}
					got[name]++
				}
				// For the record (docs/ARCHITECTURE.md): a request on a
				// new connection, Local against remote.
				for n, d := range took {
					t.Logf("%s: %d requests answered by %s, %v each on average", url, got[n], n, d/time.Duration(max(got[n], 1)))
				}
				if got["director"] != 50 || got[env.Reals[0].Name] != 50 {
					t.Errorf("%s: answers %v, want 50 from the director and 50 from %s", url, got, env.Reals[0].Name)
				}
			}
			// -e looks again (Local whatever it asks), and the saved
			// rules restore Local.
			own := netip.AddrPortFrom(svcs[0].own, c.vport)
			vs := netip.AddrPortFrom(svcs[0].vip, c.vport)
			if _, err := d.ctl("-e", "-t", vs.String(), "-r", own.String(), c.opt, "-w", "2"); err != nil {
				t.Fatal(err)
			}
			if list, _ := d.ctl("-L", "-n"); !lineHas(list, "-> "+own.String()+" ", " Local ", " 2 ") {
				t.Errorf("after -e -w 2, -L -n does not list %s as Local with weight 2:\n%s", own, list)
			}
			if _, err := d.ctl("-C"); err != nil {
				t.Fatal(err)
			}
			restore := exec.Command(xlbBin, "--socket", d.sock, "-R")
			restore.Stdin = strings.NewReader(save)
			if out, err := restore.CombinedOutput(); err != nil {
				t.Fatalf("-R of the saved rules: %v: %s", err, out)
			}
			if list, _ := d.ctl("-L", "-n"); !lineHas(list, "-> "+own.String()+" ", " Local ") {
				t.Errorf("after -C and -R of the saved rules, -L -n does not list %s as Local:\n%s", own, list)
			}
			st := stats(d)
			if n := counter(st, "local_injected"); n < 50*len(svcs)*3 {
				t.Errorf("local_injected = %d, want ≥ %d (3+ client frames per Local connection)\n%s", n, 50*len(svcs)*3, st)
			}
			if n := counter(st, "local_dropped"); n != 0 {
				t.Errorf("local_dropped = %d, want 0", n)
			}
		})
	}
}

// lineHas says whether a line of text contains every one of subs.
func lineHas(text string, subs ...string) bool {
	for _, l := range strings.Split(text, "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			return true
		}
	}
	return false
}
