package modes

import (
	"encoding/binary"

	"github.com/xlbproject/xlb/internal/packet"
)

// Encapsulation header lengths.
const (
	udpLen     = 8 // RFC 768
	gueLen     = 4 // GUE variant 0 base header, no options
	greLen     = 4 // RFC 2784: flags, version, protocol type
	greCsumLen = 4 // checksum and reserved1, when C is set
)

// tunIn encapsulates a client's frame for a tunnel real server
// (ip_vs_tunnel_xmit): the packet, TTL decremented, gets an outer IPv4 or
// IPv6 header from Encap.Src to the real server pushed in front of it, in
// the headroom, with a GUE or GRE header between if the plan says so. The
// real server decapsulates and answers the client directly, so TUN has no
// Out. The inner and outer families may differ (IPv4 in IPv6 and IPv6 in
// IPv4), as IPVS allows for tunnels.
//
//	before:            | L2 | inner IP packet |
//	after:  | L2 | outer IP | GUE/GRE | inner IP packet |
//	        ^ Off - Overhead()
//
// Outer header fields follow IPVS (ip_vs_prepare_tunneled_skb): TTL/hop
// limit = the inner one after the decrement; DSCP copied and ECN by
// RFC 6040's normal mode (CE becomes ECT(0)); DF = the inner IPv4 DF,
// clear for IPv6 inside IPv4; IPv4 identification = the inner one (IPv6
// inner: a hash of the flow and the first L4 bytes); IPv6 flow label 0.
// Ethernet padding after the inner packet is dropped.
func tunIn(f *Frame, m *packet.Meta, p *Plan) Verdict {
	inner := ip(f, m)
	if inner == nil {
		return Malformed
	}
	// The plan's family and overhead, derived once here (Overhead and
	// family each test the 12-byte IPv4-mapped prefix again).
	v4 := packet.IsIPv4Mapped(&p.RS)
	if packet.IsIPv4Mapped(&p.Encap.Src) != v4 || p.Encap.Type > GRE {
		return Unsupported
	}
	hl, et := 40, uint16(packet.EtherTypeIPv6)
	if v4 {
		hl, et = 20, packet.EtherTypeIPv4
	}
	push := hl + encapLen[p.Encap.Type]
	if p.Encap.Type == GRE && p.Encap.Csum {
		push += greCsumLen
	}
	// The inner header's fields through an array view: ip checked its
	// length, and the view costs one bounds check instead of one per field.
	var ttl, ds uint8
	var id uint16
	df := false
	innerProto, innerType := uint8(packet.ProtoIPIP), uint16(packet.EtherTypeIPv4)
	if m.Version == 4 {
		h := (*[20]byte)(inner)
		if ttl = h[8]; ttl <= 1 {
			return TTLExceeded
		}
		df = h[6]&0x40 != 0
		if p.MTU > 0 && m.IPLen+push > p.MTU {
			if df {
				return TooBig
			}
			return NeedFrag
		}
		if f.Off < push {
			return NoRoom
		}
		packet.DecrementTTLWithChecksumUpdate(h[:], 4)
		ttl--
		ds, id = h[1], uint16(h[4])<<8|uint16(h[5])
	} else {
		h := (*[40]byte)(inner)
		if ttl = h[7]; ttl <= 1 {
			return TTLExceeded
		}
		if p.MTU > 0 && m.IPLen+push > p.MTU {
			return TooBig
		}
		if f.Off < push {
			return NoRoom
		}
		ttl--
		h[7] = ttl
		ds = h[0]<<4 | h[1]>>4
		innerProto, innerType = packet.ProtoIPv6, packet.EtherTypeIPv6
		if v4 {
			// Only an outer IPv4 header has an identification: the
			// hash of 48 bytes is 3-4% of an IPv6-in-IPv6 frame's
			// worker samples when made for nothing.
			id = innerID6(inner)
		}
	}
	ds = ecnEncap(ds)

	l2 := m.L3Off
	off := f.Off - push
	tot := push + m.IPLen
	b := f.Buf[off : off+l2+tot]
	// Of the L2 header only a VLAN tag moves: setEth writes the MACs and
	// the EtherType is written below (no memmove call for 14 bytes).
	if l2 > 14 {
		copy(b[12:l2-2], f.Buf[f.Off+12:f.Off+l2-2])
	}
	setEth(b, p)
	binary.BigEndian.PutUint16(b[l2-2:], et)
	h := b[l2:]
	proto := innerProto
	switch p.Encap.Type {
	case GUE:
		proto = packet.ProtoUDP
	case GRE:
		proto = packet.ProtoGRE
	}
	if v4 {
		packet.PutIPv4Header(h, ds, tot, id, df, ttl, proto, &p.Encap.Src, &p.RS)
	} else {
		packet.PutIPv6Header(h, ds, tot-40, proto, ttl, &p.Encap.Src, &p.RS)
	}
	switch p.Encap.Type {
	case GUE:
		ov := uint8(6)
		if v4 {
			ov = 4
		}
		putGUE(h[hl:tot], h, ov, innerProto, m, p)
	case GRE:
		putGRE(h[hl:tot], innerType, p.Encap.Csum)
	}
	f.Off, f.Len = off, l2+tot
	return OK
}

// encapLen is the bytes an encapsulation adds between the outer IP header
// and the inner packet (GRE's checksum word aside).
var encapLen = [...]int{IPIP: 0, GUE: udpLen + gueLen, GRE: greLen}

// putGUE writes the UDP and GUE headers at e, which runs to the end of the
// outer packet h.
//
//	UDP: sport | dport (--tun-port) | length | checksum
//	GUE variant 0 (draft-ietf-intarea-gue section 3.1):
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|0 0|C|  Hlen=0 |  Proto/ctype  |             Flags=0           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Variant 0 with no options is what IPVS's ipvs_gue_encap sends and what
// Linux's fou (ip fou add port N gue) receives. Katran sends variant 1,
// the inner IP header right after UDP; Linux receives both.
//
// The source port is a hash of the inner flow in 49152-65535, as Linux's
// udp_flow_src_port does, so that ECMP and the real server's RSS spread
// tunnels by flow. The checksum is computed over the whole packet when
// Encap.Csum is set and is 0 otherwise (IPVS's --tun-nocsum; over IPv6
// that needs RFC 6935's zero-checksum allowance, udp6zerocsumrx).
func putGUE(e, h []byte, ov, innerProto uint8, m *packet.Meta, p *Plan) {
	binary.BigEndian.PutUint16(e[0:], gueSrcPort(m))
	binary.BigEndian.PutUint16(e[2:], p.Encap.Port)
	binary.BigEndian.PutUint16(e[4:], uint16(len(e)))
	e[6], e[7] = 0, 0
	e[8], e[9], e[10], e[11] = 0, innerProto, 0, 0
	if p.Encap.Csum {
		c := packet.Checksum(e, packet.PseudoHeaderSum(h, ov, packet.ProtoUDP, len(e)))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(e[6:], c)
	}
}

// gueSrcPort returns the GUE source port of m's flow: a hash of its
// addresses and ports in 49152-65535.
func gueSrcPort(m *packet.Meta) uint16 {
	h := uint32(m.SrcPort)<<16 | uint32(m.DstPort)
	h = uint32(packet.Sum(m.Src[:], packet.Sum(m.Dst[:], uint64(h)))) * 0x9e3779b1
	return 49152 | uint16(h>>18)
}

// innerID6 returns the outer IPv4 identification for an IPv6 packet ip: a
// hash of its addresses and first 8 L4 bytes (ports and the TCP sequence
// number), so that the fragments of different packets, should a router
// fragment the outer one, do not share an ID.
func innerID6(ip []byte) uint16 {
	return uint16(uint32(packet.Sum(ip[8:min(48, len(ip))], 0)) * 0x9e3779b1 >> 16)
}

// putGRE writes the GRE header at e, which runs to the end of the outer
// packet (RFC 2784 section 2; no key or sequence, RFC 2890):
//
//	|C|   reserved0   | ver=0 |   protocol type (inner EtherType)   |
//	|     checksum (if C)       |          reserved1 (if C)         |
//
// The checksum covers the GRE header and the payload.
func putGRE(e []byte, innerType uint16, csum bool) {
	e[0], e[1] = 0, 0
	binary.BigEndian.PutUint16(e[2:], innerType)
	if csum {
		e[0] = 0x80
		e[4], e[5], e[6], e[7] = 0, 0, 0, 0
		binary.BigEndian.PutUint16(e[4:], packet.Checksum(e, 0))
	}
}

// ecnEncap returns the outer DS field for an inner one: DSCP copied, ECN
// copied except CE, which becomes ECT(0) (RFC 6040 section 4.1, normal
// mode; Linux's INET_ECN_encapsulate).
func ecnEncap(ds uint8) uint8 {
	if ds&3 == 3 {
		return ds&^3 | 2
	}
	return ds
}
