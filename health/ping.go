package health

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ICMP echo types (RFC 792, RFC 4443 §4).
const (
	icmpEchoRequest   = 8
	icmpEchoReply     = 0
	icmp6EchoRequest  = 128
	icmp6EchoReply    = 129
	pingHeaderLen     = 8
	pingPayload       = "xlb health check"
	pingPayloadOffset = pingHeaderLen
)

var pingSeq atomic.Uint32

// ping sends one ICMP (ICMPv6 for an IPv6 address) echo request to dst
// and waits for the reply until ctx's deadline. It uses an unprivileged
// ping socket (SOCK_DGRAM, IPPROTO_ICMP: allowed by
// net.ipv4.ping_group_range, which covers both families) and, when that
// is refused, a raw socket (root or CAP_NET_RAW).
func (c *Check) ping(ctx context.Context, dst netip.Addr) error {
	dst = dst.Unmap()
	conn, raw, err := c.listenICMP(dst.Is6())
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(deadlineOf(ctx, c.ConnectTimeout))

	id := uint16(rand.Uint32())
	seq := uint16(pingSeq.Add(1))
	msg := make([]byte, pingHeaderLen+len(pingPayload))
	msg[0] = icmpEchoRequest
	if dst.Is6() {
		msg[0] = icmp6EchoRequest
	}
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], seq)
	copy(msg[pingPayloadOffset:], pingPayload)
	if !dst.Is6() {
		// The kernel fills in ICMPv6 checksums (RFC 4443 §2.3 needs the
		// pseudo-header) and ping sockets fill in ICMP ones; a raw
		// IPv4 socket sends what it is given.
		binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg))
	}
	var to net.Addr = &net.UDPAddr{IP: dst.AsSlice()}
	if raw {
		to = &net.IPAddr{IP: dst.AsSlice()}
	}
	if _, err := conn.WriteTo(msg, to); err != nil {
		return fmt.Errorf("send echo request to %s: %w", dst, unwrapOp(err))
	}
	want := byte(icmpEchoReply)
	if dst.Is6() {
		want = icmp6EchoReply
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("wait for echo reply from %s: %w", dst, unwrapOp(err))
		}
		r := buf[:n]
		if n < pingHeaderLen || r[0] != want || binary.BigEndian.Uint16(r[6:]) != seq {
			continue
		}
		// A ping socket's kernel replaces the id with its own and
		// delivers only replies to it; a raw socket sees every reply.
		if raw && (binary.BigEndian.Uint16(r[4:]) != id || addrOf(from) != dst) {
			continue
		}
		return nil
	}
}

func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.IPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	}
	ad, _ := netip.AddrFromSlice(ip)
	return ad.Unmap()
}

// listenICMP opens a ping socket or, failing that, a raw ICMP socket,
// bound to bindto, bind_if and marked with fwmark.
func (c *Check) listenICMP(v6 bool) (net.PacketConn, bool, error) {
	family, proto := unix.AF_INET, unix.IPPROTO_ICMP
	if v6 {
		family, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err == nil {
		conn, err := c.pingSocket(fd, v6)
		return conn, false, err
	}
	if !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
		return nil, false, fmt.Errorf("open ping socket: %w", err)
	}
	network, laddr := "ip4:icmp", ""
	if v6 {
		network = "ip6:ipv6-icmp"
	}
	if c.BindTo.IsValid() {
		laddr = c.BindTo.String()
	}
	lc := net.ListenConfig{Control: c.control}
	conn, err := lc.ListenPacket(context.Background(), network, laddr)
	if err != nil {
		return nil, false, fmt.Errorf("open raw icmp socket (a ping socket was refused by net.ipv4.ping_group_range): %w", unwrapOp(err))
	}
	return conn, true, nil
}

func (c *Check) pingSocket(fd int, v6 bool) (net.PacketConn, error) {
	fail := func(what string, err error) (net.PacketConn, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if c.BindIf != "" {
		if err := unix.BindToDevice(fd, c.BindIf); err != nil {
			return fail("bind to device "+c.BindIf, err)
		}
	}
	if c.FWMark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(c.FWMark)); err != nil {
			return fail("set fwmark", err)
		}
	}
	if c.BindTo.IsValid() {
		var sa unix.Sockaddr
		if v6 {
			sa = &unix.SockaddrInet6{Addr: c.BindTo.As16()}
		} else {
			sa = &unix.SockaddrInet4{Addr: c.BindTo.Unmap().As4()}
		}
		if err := unix.Bind(fd, sa); err != nil {
			return fail("bind ping socket to "+c.BindTo.String(), err)
		}
	}
	f := os.NewFile(uintptr(fd), "ping")
	defer f.Close()
	conn, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("open ping socket: %w", err)
	}
	return conn, nil
}

// icmpChecksum is the Internet checksum of b (RFC 1071).
func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
