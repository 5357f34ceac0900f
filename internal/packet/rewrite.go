package packet

import "encoding/binary"

// Offsets of checksums and addresses from the start of their header.
const (
	ipv4ChecksumOff = 10
	ipv4SrcOff      = 12
	ipv4DstOff      = 16
	ipv6SrcOff      = 8
	ipv6DstOff      = 24
	tcpChecksumOff  = 16
	udpChecksumOff  = 6
)

// SetSourceWithChecksumUpdate rewrites the source address and port of the
// frame m describes (m from Parse returning OK on frame), updates the IPv4
// header checksum and the TCP or UDP checksum incrementally, and updates m.
// addr must be IPv4-mapped for an IPv4 frame and not for an IPv6 one: the
// family cannot change in place, and a mismatch panics as a caller bug.
//
// A UDP checksum of 0 over IPv4 (none computed) stays 0. Checksums are
// updated, not verified: a wrong one stays wrong by the same amount.
func SetSourceWithChecksumUpdate(frame []byte, m *Meta, addr [16]byte, port uint16) {
	setAddrPort(frame, m, &m.Src, addr, ipv4SrcOff, ipv6SrcOff, 0, port)
	m.SrcPort = port
}

// SetDestinationWithChecksumUpdate is SetSourceWithChecksumUpdate for the
// destination address and port.
func SetDestinationWithChecksumUpdate(frame []byte, m *Meta, addr [16]byte, port uint16) {
	setAddrPort(frame, m, &m.Dst, addr, ipv4DstOff, ipv6DstOff, 2, port)
	m.DstPort = port
}

// setAddrPort rewrites the address at ipv4Off or ipv6Off in the IP header
// and the port at portOff in the TCP/UDP header, whose old values are in
// *cur and the frame.
func setAddrPort(frame []byte, m *Meta, cur *[16]byte, addr [16]byte, ipv4Off, ipv6Off, portOff int, port uint16) {
	var d ChecksumDelta
	ip := frame[m.L3Off:]
	if m.Version == 4 {
		if !isIPv4Mapped(&addr) {
			panic("packet: IPv6 address for an IPv4 frame")
		}
		a := ip[ipv4Off : ipv4Off+4]
		old, new := binary.BigEndian.Uint32(a), binary.BigEndian.Uint32(addr[12:])
		d.Update32(old, new)
		binary.BigEndian.PutUint32(a, new)
		// The IPv4 header checksum covers the header only: no port.
		c := ip[ipv4ChecksumOff:]
		binary.BigEndian.PutUint16(c, d.Apply(binary.BigEndian.Uint16(c)))
	} else {
		if isIPv4Mapped(&addr) {
			panic("packet: IPv4-mapped address for an IPv6 frame")
		}
		a := (*[16]byte)(ip[ipv6Off : ipv6Off+16])
		d.Update128(a, &addr)
		*a = addr
	}
	*cur = addr

	l4 := frame[m.L4Off:]
	p := l4[portOff:]
	d.Update16(binary.BigEndian.Uint16(p), port)
	binary.BigEndian.PutUint16(p, port)
	if m.Proto == ProtoTCP {
		c := l4[tcpChecksumOff:]
		binary.BigEndian.PutUint16(c, d.Apply(binary.BigEndian.Uint16(c)))
	} else {
		c := l4[udpChecksumOff:]
		binary.BigEndian.PutUint16(c, d.ApplyUDP(binary.BigEndian.Uint16(c)))
	}
}

func isIPv4Mapped(a *[16]byte) bool {
	return *(*[12]byte)(a[:12]) == [12]byte{10: 0xff, 11: 0xff}
}

// Offsets of further IPv4 and IPv6 header fields (RFC 791 section 3.1,
// RFC 8200 section 3).
const (
	ipv4TOSOff      = 1
	ipv4TotLenOff   = 2
	ipv4IDOff       = 4
	ipv4FlagsOff    = 6
	ipv4TTLOff      = 8
	ipv4ProtoOff    = 9
	ipv6PayloadOff  = 4
	ipv6NextOff     = 6
	ipv6HopLimitOff = 7
	ipv4FlagDF      = 0x4000
)

// IP protocol numbers of encapsulations and ICMP.
const (
	ProtoICMP   = 1
	ProtoIPIP   = 4 // IPv4 in IP (RFC 2003)
	ProtoIPv6   = 41
	ProtoGRE    = 47
	ProtoICMPv6 = 58
)

// Ethernet types of IPv4 and IPv6.
const (
	EtherTypeIPv4 = etherTypeIPv4
	EtherTypeIPv6 = etherTypeIPv6
)

// IsIPv4Mapped reports whether a is an IPv4-mapped address ::ffff:a.b.c.d,
// the form Meta and the rewrites carry IPv4 addresses in.
func IsIPv4Mapped(a *[16]byte) bool { return isIPv4Mapped(a) }

// TTL returns the IPv4 TTL or IPv6 hop limit of the packet at ip.
func TTL(ip []byte, version uint8) uint8 {
	if version == 4 {
		return ip[ipv4TTLOff]
	}
	return ip[ipv6HopLimitOff]
}

// DecrementTTLWithChecksumUpdate decrements the IPv4 TTL, updating the
// header checksum (the TTL is its high byte of word 4, as Linux's
// ip_decrease_ttl has it), or the IPv6 hop limit (no checksum) of the
// packet at ip. The caller checked that it is above 1.
func DecrementTTLWithChecksumUpdate(ip []byte, version uint8) {
	if version != 4 {
		ip[ipv6HopLimitOff]--
		return
	}
	// The word | TTL | protocol | less 0x100: a change of ^w + (w-0x100)
	// = 0xfeff whatever w (RFC 1624 eqn. 3), so the old word need not be
	// read, and the function is small enough to inline (DR and TUN call
	// it on every frame).
	ip[ipv4TTLOff]--
	c := ip[ipv4ChecksumOff : ipv4ChecksumOff+2]
	binary.BigEndian.PutUint16(c, ^fold(uint64(^binary.BigEndian.Uint16(c))+0xfeff))
}

// DF reports whether an IPv4 packet at ip has Don't Fragment set.
func DF(ip []byte) bool {
	return binary.BigEndian.Uint16(ip[ipv4FlagsOff:])&ipv4FlagDF != 0
}

// SetAddrPortsWithChecksumUpdate rewrites both addresses and both ports of
// the frame m describes (m from Parse returning OK on frame) and updates
// the IPv4 header checksum and the TCP or UDP checksum incrementally, each
// once for all the changes, and updates m: what NAT does in one direction
// and FULLNAT in both. Unchanged words cost a compare. The family rules of
// SetSourceWithChecksumUpdate apply to src and dst.
func SetAddrPortsWithChecksumUpdate(frame []byte, m *Meta, src [16]byte, sport uint16, dst [16]byte, dport uint16) {
	var d ChecksumDelta
	ip := frame[m.L3Off:]
	if m.Version == 4 {
		if !isIPv4Mapped(&src) || !isIPv4Mapped(&dst) {
			panic("packet: IPv6 address for an IPv4 frame")
		}
		put32(ip[ipv4SrcOff:], binary.BigEndian.Uint32(src[12:]), &d)
		put32(ip[ipv4DstOff:], binary.BigEndian.Uint32(dst[12:]), &d)
		c := ip[ipv4ChecksumOff:]
		binary.BigEndian.PutUint16(c, d.Apply(binary.BigEndian.Uint16(c)))
	} else {
		if isIPv4Mapped(&src) || isIPv4Mapped(&dst) {
			panic("packet: IPv4-mapped address for an IPv6 frame")
		}
		put128(ip[ipv6SrcOff:], &src, &d)
		put128(ip[ipv6DstOff:], &dst, &d)
	}
	m.Src, m.Dst = src, dst
	l4 := frame[m.L4Off:]
	put16(l4[0:], sport, &d)
	put16(l4[2:], dport, &d)
	m.SrcPort, m.DstPort = sport, dport
	if m.Proto == ProtoTCP {
		c := l4[tcpChecksumOff:]
		binary.BigEndian.PutUint16(c, d.Apply(binary.BigEndian.Uint16(c)))
	} else {
		c := l4[udpChecksumOff:]
		binary.BigEndian.PutUint16(c, d.ApplyUDP(binary.BigEndian.Uint16(c)))
	}
}

// ForwardAddrPortsWithChecksumUpdate is what NAT and FULLNAT do to a
// frame they forward, in one pass over the headers: it decrements the IPv4
// TTL or IPv6 hop limit (the caller checked that it is above 1), rewrites
// both addresses and both ports of the frame m describes (m from Parse
// returning OK on frame), updates m, and updates the IPv4 header checksum
// once for the TTL and the addresses together and the TCP or UDP checksum
// once for the addresses and ports (RFC 1624 eqn. 3). The family rules of
// SetSourceWithChecksumUpdate apply to src and dst; a UDP checksum of 0
// over IPv4 stays 0.
//
// It costs 4-8 ns less a frame than DecrementTTLWithChecksumUpdate and
// SetAddrPortsWithChecksumUpdate in turn (TestXmitCPUTime): one IPv4
// checksum update instead of two, and the changes summed as 32-bit words
// (an address, both ports) with no per-word compare. A word that does not
// change adds ^w + w, one's-complement -0, which changes no checksum a
// full recomputation can give (IPv4 and TCP checksums are never 0xffff,
// and UDP's 0xffff, a computed 0, stays 0xffff); only a wrong checksum of
// 0xffff may come out as its equal, 0.
//
//	IPv4 header word 4: | TTL | protocol |  TTL-1: the word less 0x100,
//	a change of ^w + (w - 0x100) = 0xfeff, whatever w.
func ForwardAddrPortsWithChecksumUpdate(frame []byte, m *Meta, src *[16]byte, sport uint16, dst *[16]byte, dport uint16) {
	be := binary.BigEndian
	var d uint64 // unfolded changes to the pseudo-header's addresses
	if m.Version == 4 {
		if !isIPv4Mapped(src) || !isIPv4Mapped(dst) {
			panic("packet: IPv6 address for an IPv4 frame")
		}
		ip := frame[m.L3Off : m.L3Off+ipv4MinLen]
		s, t := be.Uint32(src[12:]), be.Uint32(dst[12:])
		d = uint64(^be.Uint32(ip[ipv4SrcOff:])) + uint64(s) + uint64(^be.Uint32(ip[ipv4DstOff:])) + uint64(t)
		be.PutUint32(ip[ipv4SrcOff:], s)
		be.PutUint32(ip[ipv4DstOff:], t)
		ip[ipv4TTLOff]--
		c := ip[ipv4ChecksumOff:]
		be.PutUint16(c, ^fold(uint64(^be.Uint16(c))+d+0xfeff))
	} else {
		if isIPv4Mapped(src) || isIPv4Mapped(dst) {
			panic("packet: IPv4-mapped address for an IPv6 frame")
		}
		ip := frame[m.L3Off : m.L3Off+ipv6HeaderLen]
		d = sum128(ip[ipv6SrcOff:], src) + sum128(ip[ipv6DstOff:], dst)
		*(*[16]byte)(ip[ipv6SrcOff:]) = *src
		*(*[16]byte)(ip[ipv6DstOff:]) = *dst
		ip[ipv6HopLimitOff]--
	}
	m.Src, m.Dst = *src, *dst
	l4 := frame[m.L4Off : m.L4Off+udpChecksumOff+2]
	ports := uint32(sport)<<16 | uint32(dport)
	d += uint64(^be.Uint32(l4)) + uint64(ports)
	be.PutUint32(l4, ports)
	m.SrcPort, m.DstPort = sport, dport
	if m.Proto == ProtoTCP {
		c := frame[m.L4Off+tcpChecksumOff : m.L4Off+tcpChecksumOff+2]
		be.PutUint16(c, ^fold(uint64(^be.Uint16(c))+d))
		return
	}
	c := l4[udpChecksumOff:]
	if old := be.Uint16(c); old != 0 {
		if s := ^fold(uint64(^old) + d); s != 0 {
			be.PutUint16(c, s)
		} else {
			be.PutUint16(c, 0xffff)
		}
	}
}

// sum128 returns the unfolded one's-complement change of the 16 bytes at
// b becoming v, as 32-bit words: below 2^36.
func sum128(b []byte, v *[16]byte) uint64 {
	be := binary.BigEndian
	b = b[:16]
	return uint64(^be.Uint32(b[0:])) + uint64(be.Uint32(v[0:])) +
		uint64(^be.Uint32(b[4:])) + uint64(be.Uint32(v[4:])) +
		uint64(^be.Uint32(b[8:])) + uint64(be.Uint32(v[8:])) +
		uint64(^be.Uint32(b[12:])) + uint64(be.Uint32(v[12:]))
}

// put16, put32 and put128 store a field of b, recording the change in d;
// a field that does not change is not written.
func put16(b []byte, v uint16, d *ChecksumDelta) {
	if old := binary.BigEndian.Uint16(b); old != v {
		d.Update16(old, v)
		binary.BigEndian.PutUint16(b, v)
	}
}

func put32(b []byte, v uint32, d *ChecksumDelta) {
	if old := binary.BigEndian.Uint32(b); old != v {
		d.Update32(old, v)
		binary.BigEndian.PutUint32(b, v)
	}
}

func put128(b []byte, v *[16]byte, d *ChecksumDelta) {
	a := (*[16]byte)(b[:16])
	if *a != *v {
		d.Update128(a, v)
		*a = *v
	}
}

// PutIPv4Header writes a 20-byte IPv4 header without options at h:
// total length tot, identification id, DF if df, the given TOS, TTL and
// protocol, and its checksum.
//
//	45 tos totlen | id flags/off | ttl proto csum | src | dst
func PutIPv4Header(h []byte, tos uint8, tot int, id uint16, df bool, ttl, proto uint8, src, dst *[16]byte) {
	_ = h[19]
	h[0], h[ipv4TOSOff] = 0x45, tos
	binary.BigEndian.PutUint16(h[ipv4TotLenOff:], uint16(tot))
	binary.BigEndian.PutUint16(h[ipv4IDOff:], id)
	var flags uint16
	if df {
		flags = ipv4FlagDF
	}
	binary.BigEndian.PutUint16(h[ipv4FlagsOff:], flags)
	h[ipv4TTLOff], h[ipv4ProtoOff] = ttl, proto
	s, d := binary.BigEndian.Uint32(src[12:]), binary.BigEndian.Uint32(dst[12:])
	binary.BigEndian.PutUint32(h[ipv4SrcOff:], s)
	binary.BigEndian.PutUint32(h[ipv4DstOff:], d)
	// The checksum of the values, not of the header just written: an
	// 8-byte load of bytes that 1- and 2-byte stores wrote a moment ago
	// misses store-to-load forwarding and stalls (TUN paid it per frame).
	sum := uint64(0x4500|uint16(tos)) + uint64(uint16(tot)) + uint64(id) + uint64(flags) +
		uint64(uint16(ttl)<<8|uint16(proto)) + uint64(s) + uint64(d)
	binary.BigEndian.PutUint16(h[ipv4ChecksumOff:], ^fold(sum))
}

// PutIPv6Header writes a 40-byte IPv6 header at h: traffic class tc, flow
// label 0, payload length plen, next header, hop limit and addresses.
func PutIPv6Header(h []byte, tc uint8, plen int, next, hop uint8, src, dst *[16]byte) {
	_ = h[39]
	h[0], h[1], h[2], h[3] = 0x60|tc>>4, tc<<4, 0, 0
	binary.BigEndian.PutUint16(h[ipv6PayloadOff:], uint16(plen))
	h[ipv6NextOff], h[ipv6HopLimitOff] = next, hop
	*(*[16]byte)(h[ipv6SrcOff:]) = *src
	*(*[16]byte)(h[ipv6DstOff:]) = *dst
}

// DSField returns the IPv4 TOS or IPv6 traffic class byte (DSCP and ECN)
// of the packet at ip.
func DSField(ip []byte, version uint8) uint8 {
	if version == 4 {
		return ip[ipv4TOSOff]
	}
	return ip[0]<<4 | ip[1]>>4
}

// ICMPError locates an ICMP (RFC 792) or ICMPv6 (RFC 4443) error message
// in a frame, and the start of the packet it quotes:
//
//	| L2 | outer IP | ICMP: type code csum, 4 bytes | quoted IP | quoted TCP/UDP (8+ bytes) ... |
//	     L3Off      ICMPOff                         InnerL3Off  InnerL4Off                   End
//
// The quoted packet is of the outer packet's family (ICMP quotes IPv4,
// ICMPv6 IPv6) and is usually cut short: the quoted TCP or UDP checksum is
// rewritten only if the quote holds it whole.
type ICMPError struct {
	L3Off      int   // outer IP header
	ICMPOff    int   // ICMP or ICMPv6 header, 8 bytes
	InnerL3Off int   // quoted IP header: ICMPOff + 8
	InnerL4Off int   // quoted TCP or UDP header
	End        int   // end of the outer IP packet (L3Off + its length)
	Version    uint8 // 4 or 6
	InnerProto uint8 // ProtoTCP or ProtoUDP
}

// valid reports whether e's offsets are consistent and lie within a frame
// of n bytes, with 8 bytes of the quoted TCP or UDP header (the ports and,
// for UDP, the checksum) inside the ICMP message.
func (e *ICMPError) valid(n int) bool {
	min := ipv4MinLen
	if e.Version == 6 {
		min = ipv6HeaderLen
	} else if e.Version != 4 {
		return false
	}
	return e.L3Off >= 0 && e.ICMPOff >= e.L3Off+min && e.InnerL3Off == e.ICMPOff+8 &&
		e.InnerL4Off >= e.InnerL3Off+min && e.InnerL4Off <= n && e.End <= n && e.InnerL4Off+8 <= e.End &&
		(e.InnerProto == ProtoTCP || e.InnerProto == ProtoUDP)
}

// RewriteICMPError rewrites the ICMP error e locates in frame: the outer
// source and destination addresses become osrc and odst, the quoted
// packet's source isrc:isport and its destination idst:idport. It updates
// every checksum the changes touch, incrementally: the outer IPv4 header's,
// the quoted IPv4 header's, the quoted TCP or UDP checksum if quoted whole
// (its pseudo-header covers the quoted addresses; a UDP checksum of 0
// stays 0), and the ICMP checksum, which covers the quoted bytes and so
// every change to them and, for ICMPv6, the outer addresses through its
// pseudo-header. It returns false, changing nothing, if e's offsets do not
// fit frame. Addresses must be of e's family (IPv4-mapped for IPv4).
func RewriteICMPError(frame []byte, e *ICMPError, osrc, odst, isrc *[16]byte, isport uint16, idst *[16]byte, idport uint16) bool {
	if !e.valid(len(frame)) || isIPv4Mapped(osrc) != (e.Version == 4) || isIPv4Mapped(odst) != (e.Version == 4) ||
		isIPv4Mapped(isrc) != (e.Version == 4) || isIPv4Mapped(idst) != (e.Version == 4) {
		return false
	}
	var outer, icmp, pseudo ChecksumDelta // outer IPv4 header; ICMP message; quoted L4's pseudo-header and ports
	ip, in := frame[e.L3Off:], frame[e.InnerL3Off:]
	l4 := frame[e.InnerL4Off:e.End]
	if e.Version == 4 {
		put32(ip[ipv4SrcOff:], binary.BigEndian.Uint32(osrc[12:]), &outer)
		put32(ip[ipv4DstOff:], binary.BigEndian.Uint32(odst[12:]), &outer)
		put32(in[ipv4SrcOff:], binary.BigEndian.Uint32(isrc[12:]), &pseudo)
		put32(in[ipv4DstOff:], binary.BigEndian.Uint32(idst[12:]), &pseudo)
		// The quoted IPv4 header checksum covers the quoted addresses; the
		// ICMP checksum covers both them and that checksum.
		c := in[ipv4ChecksumOff:]
		old := binary.BigEndian.Uint16(c)
		put16(c, pseudo.Apply(old), &icmp)
		icmp.sum += pseudo.sum
	} else {
		put128(ip[ipv6SrcOff:], osrc, &outer)
		put128(ip[ipv6DstOff:], odst, &outer)
		put128(in[ipv6SrcOff:], isrc, &pseudo)
		put128(in[ipv6DstOff:], idst, &pseudo)
		icmp.sum += outer.sum + pseudo.sum // ICMPv6 pseudo-header, quoted addresses
	}
	var ports ChecksumDelta
	put16(l4[0:], isport, &ports)
	put16(l4[2:], idport, &ports)
	icmp.sum += ports.sum
	pseudo.sum += ports.sum
	if off := l4ChecksumOff(e.InnerProto); off+2 <= len(l4) {
		c := l4[off:]
		old := binary.BigEndian.Uint16(c)
		new := pseudo.Apply(old)
		if e.InnerProto == ProtoUDP {
			new = pseudo.ApplyUDP(old)
		}
		put16(c, new, &icmp)
	}
	if e.Version == 4 {
		c := ip[ipv4ChecksumOff:]
		binary.BigEndian.PutUint16(c, outer.Apply(binary.BigEndian.Uint16(c)))
	}
	c := frame[e.ICMPOff+2:]
	binary.BigEndian.PutUint16(c, icmp.Apply(binary.BigEndian.Uint16(c)))
	return true
}
