//go:build linux

package testenv

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// SendTunnel sends inner, a whole IPv4 or IPv6 packet, from h to outer
// in an IP-in-IP tunnel: an outer IPv4 header with protocol 4 (inner IPv4)
// or 41 (inner IPv6) if outer is IPv4, an outer IPv6 header with next
// header 4 or 41 if it is IPv6. The kernel builds the outer header (a raw
// socket of that protocol), so this needs no tunnel module: it stands in
// for a TUN director in tests of the real-server side.
func (h *Host) SendTunnel(outer netip.Addr, inner []byte) error {
	if len(inner) == 0 {
		return fmt.Errorf("send tunnel to %v: empty inner packet", outer)
	}
	proto := unix.IPPROTO_IPIP
	if inner[0]>>4 == 6 {
		proto = unix.IPPROTO_IPV6
	}
	return h.sendRaw(outer, proto, inner)
}

// SendGRE sends inner, a whole IPv4 or IPv6 packet, from h to outer in
// GRE version 0 (RFC 2784) with the payload type of inner's family, and a
// checksum if csum (IPVS's --tun-type gre [--tun-csum]).
func (h *Host) SendGRE(outer netip.Addr, inner []byte, csum bool) error {
	if len(inner) == 0 {
		return fmt.Errorf("send gre to %v: empty inner packet", outer)
	}
	proto := uint16(layers.EthernetTypeIPv4)
	if inner[0]>>4 == 6 {
		proto = uint16(layers.EthernetTypeIPv6)
	}
	g := []byte{0, 0, byte(proto >> 8), byte(proto)}
	if csum {
		g = []byte{0x80, 0, byte(proto >> 8), byte(proto), 0, 0, 0, 0}
	}
	b := append(g, inner...)
	if csum {
		// RFC 2784 section 2.2: the one's complement sum of the GRE
		// header and payload, with the checksum field 0.
		var sum uint32
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		b[4], b[5] = byte(^sum>>8), byte(^sum)
	}
	return h.sendRaw(outer, unix.IPPROTO_GRE, b)
}

// sendRaw sends payload from h to dst from a raw socket of protocol
// proto: the kernel builds the IP header.
func (h *Host) sendRaw(outer netip.Addr, proto int, inner []byte) error {
	return h.Do(func() error {
		af := unix.AF_INET6
		var sa unix.Sockaddr = &unix.SockaddrInet6{Addr: outer.As16()}
		if outer.Is4() {
			af, sa = unix.AF_INET, &unix.SockaddrInet4{Addr: outer.As4()}
		}
		fd, err := unix.Socket(af, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return fmt.Errorf("open raw socket for protocol %d in %s: %w", proto, h.NSName, err)
		}
		defer unix.Close(fd)
		if err := unix.Sendto(fd, inner, 0, sa); err != nil {
			return fmt.Errorf("send tunnel packet to %v from %s: %w", outer, h.NSName, err)
		}
		return nil
	})
}

// SendGUE sends inner, a whole IPv4 or IPv6 packet, from h to outer:port
// in GUE variant 1 (the inner packet directly as the UDP payload, which
// Katran and ipvsadm --tun-type gue use), from an ordinary UDP socket.
func (h *Host) SendGUE(outer netip.AddrPort, inner []byte) error {
	return h.Do(func() error {
		c, err := net.DialUDP(udpNetwork(outer.Addr()), nil, net.UDPAddrFromAddrPort(outer))
		if err != nil {
			return fmt.Errorf("dial gue %v from %s: %w", outer, h.NSName, err)
		}
		defer c.Close()
		if _, err := c.Write(inner); err != nil {
			return fmt.Errorf("send gue to %v from %s: %w", outer, h.NSName, err)
		}
		return nil
	})
}

// InnerUDP builds an IPv4 or IPv6 UDP datagram from src to dst with
// valid checksums, for SendTunnel.
func InnerUDP(src, dst netip.AddrPort, payload []byte) ([]byte, error) {
	ip, err := innerIP(src.Addr(), dst.Addr(), layers.IPProtocolUDP)
	if err != nil {
		return nil, err
	}
	uh := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	uh.SetNetworkLayerForChecksum(ip.(gopacket.NetworkLayer))
	return serializeInner(ip, uh, gopacket.Payload(payload))
}

// InnerSYN builds an IPv4 or IPv6 TCP SYN from src to dst (sequence
// number seq, MSS 1460) with valid checksums, for SendTunnel.
func InnerSYN(src, dst netip.AddrPort, seq uint32) ([]byte, error) {
	ip, err := innerIP(src.Addr(), dst.Addr(), layers.IPProtocolTCP)
	if err != nil {
		return nil, err
	}
	th := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq, SYN: true,
		Window: 64240, Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}}}
	th.SetNetworkLayerForChecksum(ip.(gopacket.NetworkLayer))
	return serializeInner(ip, th)
}

func innerIP(src, dst netip.Addr, p layers.IPProtocol) (gopacket.SerializableLayer, error) {
	switch {
	case src.Is4() && dst.Is4():
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: p,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}, nil
	case src.Is6() && dst.Is6() && !src.Is4In6() && !dst.Is4In6():
		return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: p, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}, nil
	}
	return nil, fmt.Errorf("build inner packet %v > %v: addresses must be both IPv4 or both IPv6", src, dst)
}

func serializeInner(ls ...gopacket.SerializableLayer) ([]byte, error) {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, fmt.Errorf("build inner packet: %w", err)
	}
	return buf.Bytes(), nil
}
