package main

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/testenv"
)

func TestDecapBadArgs(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"decap"}, "--iface is required"},
		{[]string{"decap", "--iface", "eth0", "extra"}, `unexpected argument "extra"`},
		{[]string{"decap", "--iface", "eth0", "--gue-port", "70000"}, "invalid --gue-port 70000"},
		{[]string{"decap", "--iface", "eth0", "--addr", "nonsense"}, "invalid value"},
		{[]string{"decap", "--iface", "xlb-no-such-if"}, "find interface xlb-no-such-if"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(c.args, nil, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("xlb %s = exit %d, stderr %q; want exit 1 and %q", strings.Join(c.args, " "), code, stderr.String(), c.want)
		}
	}
}

// awaitSynAck reads TCP segments from a raw socket in h until a SYN-ACK
// from src to dst acknowledging seq arrives, or timeout.
func awaitSynAck(t *testing.T, h *testenv.Host, src, dst netip.AddrPort, seq uint32, timeout time.Duration) (func() error, error) {
	t.Helper()
	var fd int
	err := h.Do(func() (err error) {
		af := unix.AF_INET6
		if src.Addr().Is4() {
			af = unix.AF_INET
		}
		fd, err = unix.Socket(af, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		return err
	})
	if err != nil {
		return nil, err
	}
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return func() error {
		defer unix.Close(fd)
		buf := make([]byte, 2048)
		for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // timeout: look again
			}
			seg := buf[:n]
			var fromAddr netip.Addr
			switch sa := from.(type) {
			case *unix.SockaddrInet4:
				fromAddr = netip.AddrFrom4(sa.Addr)
				if n < 20 {
					continue
				}
				seg = seg[(seg[0]&0xf)*4:] // IPv4 raw sockets include the IP header
			case *unix.SockaddrInet6:
				fromAddr = netip.AddrFrom16(sa.Addr) // IPv6 raw sockets do not
			}
			if len(seg) < 20 || fromAddr != src.Addr() {
				continue
			}
			sport, dport := binary.BigEndian.Uint16(seg[0:]), binary.BigEndian.Uint16(seg[2:])
			ack, flags := binary.BigEndian.Uint32(seg[8:]), seg[13]
			if sport == src.Port() && dport == dst.Port() && flags&0x12 == 0x12 && ack == seq+1 {
				return nil
			}
		}
		return syscall.ETIMEDOUT
	}, nil
}

// A TUN real server running `xlb decap` receives IPIP and IPv6-in-IPv6
// tunnelled UDP datagrams and TCP SYNs for the VIP on its lo, and answers
// the client directly from the VIP; when xlb decap stops, it prints its
// counters and tunnel packets are no longer decapsulated.
func TestDecapE2E(t *testing.T) {
	testenv.RequireRoot(t)
	opts := testenv.DefaultOptions()
	opts.RealServers = 1
	opts.IPv6 = true
	opts.Reals = testenv.RealTUN
	opts.XLB = xlbBin
	opts.GUEPort = 6080
	env := testenv.New(t, opts)
	rs := env.Reals[0]
	if rs.DecapProc == nil {
		t.Fatal("SetupTunReal started no xlb decap")
	}
	udp := func(outer, client, vip netip.Addr, port uint16, gue bool) error {
		c, err := env.Client.UDPListen(netip.AddrPortFrom(client, port))
		if err != nil {
			return err
		}
		defer c.Close()
		in, err := testenv.InnerUDP(netip.AddrPortFrom(client, port), netip.AddrPortFrom(vip, 53), []byte("who"))
		if err != nil {
			return err
		}
		if gue {
			err = env.Director.SendGUE(netip.AddrPortFrom(outer, 6080), in)
		} else {
			err = env.Director.SendTunnel(outer, in)
		}
		if err != nil {
			return err
		}
		buf := make([]byte, 64)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		if got := string(buf[:n]); got != rs.Name || from.Addr().Unmap() != vip {
			t.Errorf("tunnelled query answered %q from %v, want %q from %v", got, from, rs.Name, vip)
		}
		return nil
	}
	if err := udp(rs.Addr, testenv.ClientAddr, env.VIP, 7100, false); err != nil {
		t.Errorf("ipip udp: %v", err)
	}
	if err := udp(rs.Addr6, testenv.ClientAddr6, env.VIP6, 7101, false); err != nil {
		t.Errorf("ip6ip6 udp: %v", err)
	}
	if err := udp(rs.Addr6, testenv.ClientAddr, env.VIP, 7104, true); err != nil {
		t.Errorf("gue (4 in udp6): %v", err)
	}
	for _, c := range []struct {
		name          string
		outer, client netip.Addr
		vip           netip.Addr
	}{
		{"ipip syn", rs.Addr, testenv.ClientAddr, env.VIP},
		{"ip6ip6 syn", rs.Addr6, testenv.ClientAddr6, env.VIP6},
	} {
		src, dst := netip.AddrPortFrom(c.client, 7102), netip.AddrPortFrom(c.vip, 80)
		wait, err := awaitSynAck(t, env.Client, dst, src, 1000, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		in, err := testenv.InnerSYN(src, dst, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Director.SendTunnel(c.outer, in); err != nil {
			t.Fatal(err)
		}
		if err := wait(); err != nil {
			t.Errorf("%s: no SYN-ACK from %v: %v", c.name, dst, err)
		}
	}

	t.Logf("xlb decap: %s", rs.DecapProc.Output.String())
	if err := rs.DecapProc.Stop(syscall.SIGTERM, 5*time.Second); err != nil {
		t.Fatalf("stop xlb decap: %v\n%s", err, rs.DecapProc.Output.String())
	}
	out := rs.DecapProc.Stdout.String()
	for _, want := range []string{"decap_4in4 2\n", "decap_6in6 2\n", "decap_gue 1\n", "drop_inner 0\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("xlb decap counters lack %q:\n%s", want, out)
		}
	}
	if out, err := rs.Command("ip", "link", "show", "eth0").CombinedOutput(); err != nil || strings.Contains(string(out), "xdp") {
		t.Errorf("eth0 after xlb decap stopped: %v\n%s", err, out)
	}
	if err := udp(rs.Addr, testenv.ClientAddr, env.VIP, 7103, false); err == nil {
		t.Errorf("a tunnelled query was answered after xlb decap stopped")
	}
}
