package modes

import (
	"encoding/binary"

	"github.com/xlbproject/xlb/internal/packet"
)

// ICMP types and codes of the replies.
const (
	icmpDestUnreach  = 3  // RFC 792
	icmpFragNeeded   = 4  // code of icmpDestUnreach (RFC 1191)
	icmpTimeExceeded = 11 // code 0: TTL exceeded in transit
	icmp6TooBig      = 2  // RFC 4443 section 3.2
	icmp6TimeExceed  = 3  // code 0: hop limit exceeded in transit

	icmpHeaderLen = 8
	// icmpTOS is what Linux's icmp_send sets (IPTOS_PREC_INTERNETCONTROL).
	icmpTOS = 0xc0
	// icmpTTL is the TTL and hop limit of replies, Linux's default.
	icmpTTL = 64
	// minMTU6 is the IPv6 minimum link MTU (RFC 8200 section 5): no
	// ICMPv6 error exceeds it and no Packet Too Big reports less.
	minMTU6 = 1280
	// minMTU4 is the smallest MTU an IPv4 link may have (RFC 791).
	minMTU4 = 68
)

// ReplyTooBig turns f, a TCP or UDP frame Xmit returned TooBig for, into
// the reply to its sender in place: ICMP "fragmentation needed" (type 3
// code 4, RFC 1191) for IPv4, ICMPv6 "packet too big" (type 2, RFC 4443
// section 3.2) for IPv6, reporting mtu, usually p.ReportMTU(). This is
// Katran's send_icmp4_too_big: the MACs are swapped, so the reply goes
// back out of the interface the frame came in on, to the previous hop; a
// new IP and ICMP header are pushed into the headroom in front of the
// original IP header, which is quoted with 8 bytes of its TCP or UDP
// header for IPv4 (RFC 792) and with as much of the packet as fits in
// 1280 bytes for IPv6 (RFC 4443 section 2.4 (c)); the rest is cut off.
//
// src is the reply's source address: the VIP (m.Dst for a client's
// frame), as Katran does, or the director's own address. The MTU is
// raised to 68 (IPv4) or 1280 (IPv6) if below: an IPv6 sender does not go
// under 1280, so a tunnel whose path cannot carry that needs the outer
// packet fragmented (IPv6 inside IPv4 without DF). It returns NoRoom if
// the headroom is short, Malformed or Unsupported (not TCP or UDP: never
// answer an ICMP error with one, RFC 1122 section 3.2.2) and changes
// nothing then.
func ReplyTooBig(f *Frame, m *packet.Meta, mtu int, src *[16]byte) Verdict {
	if m.Version == 4 {
		return reply(f, m, src, icmpDestUnreach, icmpFragNeeded, uint32(min(max(mtu, minMTU4), 0xffff)))
	}
	return reply(f, m, src, icmp6TooBig, 0, uint32(max(mtu, minMTU6)))
}

// ReplyTimeExceeded turns f, a frame Xmit returned TTLExceeded for, into
// the ICMP "time exceeded in transit" (type 11 code 0) or ICMPv6 "hop
// limit exceeded" (type 3 code 0) reply to its sender, in place, as a
// router does (IPVS's decrement_ttl sends it). src should be the
// director's own address: the error names a hop, not the service.
// Verdicts are ReplyTooBig's.
func ReplyTimeExceeded(f *Frame, m *packet.Meta, src *[16]byte) Verdict {
	if m.Version == 4 {
		return reply(f, m, src, icmpTimeExceeded, 0, 0)
	}
	return reply(f, m, src, icmp6TimeExceed, 0, 0)
}

// reply builds an ICMP or ICMPv6 error with the given type, code and
// second word, quoting f's IP packet, in place:
//
//	before:              | L2 | IP | TCP/UDP ...        |
//	after:   | L2' | IP' | ICMP | IP | 8 bytes (IPv4) or up to 1280 (IPv6) |
//	         ^ Off - 28 (IPv4) or 48 (IPv6)
func reply(f *Frame, m *packet.Meta, src *[16]byte, typ, code uint8, word uint32) Verdict {
	orig := ip(f, m)
	if orig == nil || !l4ok(m) {
		if orig != nil && m.Proto != packet.ProtoTCP && m.Proto != packet.ProtoUDP {
			return Unsupported
		}
		return Malformed
	}
	if family(src) != m.Version {
		return Unsupported
	}
	hl, proto := 20, uint8(packet.ProtoICMP)
	quote := m.L4Off - m.L3Off + 8
	if m.Version == 6 {
		hl, proto = 40, packet.ProtoICMPv6
		quote = min(m.IPLen, minMTU6-hl-icmpHeaderLen)
	}
	push := hl + icmpHeaderLen
	if f.Off < push {
		return NoRoom
	}
	dst := m.Src
	l2 := m.L3Off
	old := f.Buf[f.Off : f.Off+l2]
	var dmac, smac [6]byte = [6]byte(old[6:12]), [6]byte(old[0:6])
	off := f.Off - push
	copy(f.Buf[off:off+l2], old)
	b := f.Buf[off : off+l2+push+quote]
	*(*[6]byte)(b[0:6]), *(*[6]byte)(b[6:12]) = dmac, smac
	h := b[l2:]
	icmp := h[hl:]
	icmp[0], icmp[1], icmp[2], icmp[3] = typ, code, 0, 0
	binary.BigEndian.PutUint32(icmp[4:], word)
	var sum uint64
	if m.Version == 4 {
		binary.BigEndian.PutUint16(b[l2-2:], packet.EtherTypeIPv4)
		packet.PutIPv4Header(h, icmpTOS, push+quote, 0, false, icmpTTL, proto, src, &dst)
	} else {
		binary.BigEndian.PutUint16(b[l2-2:], packet.EtherTypeIPv6)
		packet.PutIPv6Header(h, 0, icmpHeaderLen+quote, proto, icmpTTL, src, &dst)
		sum = packet.PseudoHeaderSum(h, 6, proto, icmpHeaderLen+quote)
	}
	binary.BigEndian.PutUint16(icmp[2:], packet.Checksum(icmp, sum))
	f.Off, f.Len = off, len(b)
	return OK
}

// XmitICMP forwards an ICMP or ICMPv6 error e locates in f, about a
// packet of connection p, as ip_vs_in_icmp and ip_vs_out_icmp do: dir is
// In when it comes from the client's side (it quotes a packet the
// director sent to the client) and Out from the real server's side (it
// quotes a packet the director sent to the real server). The TTL is
// decremented and the MTU checked as for any forwarded frame; TooBig and
// NeedFrag here mean drop, never answer (an ICMP error about an ICMP
// error, RFC 1122 section 3.2.2).
//
// DR and TUN forward the message as it is, Ethernet rewritten or
// encapsulated. NAT and FULLNAT translate it as they translate the
// connection, the quoted packet the other way round from the outer one:
//
//	method   dir  outer src → dst              quoted src → dst
//	NAT      In   (kept) → RS                   RS:rport → (kept)
//	NAT      Out  VIP → (kept)                  (kept) → VIP:vport
//	FULLNAT  In   laddr → RS                    RS:rport → laddr:lport
//	FULLNAT  Out  VIP → client                  client:cport → VIP:vport
//
// As in IPVS, the outer source of an error from the real server's side
// becomes the VIP even if a router on that side sent it: its address
// means nothing to the client. The checksums are updated incrementally
// (packet.RewriteICMPError).
func XmitICMP(f *Frame, e *packet.ICMPError, p *Plan, dir Dir) Verdict {
	if !f.ok() || e.End > f.Len || e.L3Off < 14 {
		return Malformed
	}
	m := packet.Meta{L3Off: e.L3Off, L4Off: e.ICMPOff, IPLen: e.End - e.L3Off, Version: e.Version, Proto: packet.ProtoICMP}
	if e.Version == 6 {
		m.Proto = packet.ProtoICMPv6
	}
	if dir > Out {
		return Unsupported
	}
	switch uint(p.Method)<<1 | uint(dir) {
	case uint(Route)<<1 | uint(In):
		return drIn(f, &m, p)
	case uint(Tunnel)<<1 | uint(In):
		return tunIn(f, &m, p)
	case uint(Masq)<<1 | uint(In), uint(Masq)<<1 | uint(Out), uint(FullNAT)<<1 | uint(In), uint(FullNAT)<<1 | uint(Out):
	default:
		return Unsupported
	}
	ip := ip(f, &m)
	if ip == nil {
		return Malformed
	}
	b := f.Buf[f.Off : f.Off+f.Len]
	if !icmpFits(b, e) {
		return Malformed
	}
	var osrc, odst, isrc, idst [16]byte
	addrs(b[e.L3Off:], e.Version, &osrc, &odst)
	addrs(b[e.InnerL3Off:], e.Version, &isrc, &idst)
	isport, idport := be16(b[e.InnerL4Off:]), be16(b[e.InnerL4Off+2:])
	switch {
	case p.Method == Masq && dir == In:
		odst, isrc, isport = p.RS, p.RS, p.RPort
	case p.Method == Masq:
		osrc, idst, idport = p.VIP, p.VIP, p.VPort
	case dir == In:
		osrc, odst, isrc, isport, idst, idport = p.Laddr, p.RS, p.RS, p.RPort, p.Laddr, p.Lport
	default:
		osrc, odst, isrc, isport, idst, idport = p.VIP, p.Client, p.Client, p.ClientPort, p.VIP, p.VPort
	}
	if family(&osrc) != e.Version || family(&odst) != e.Version || family(&isrc) != e.Version || family(&idst) != e.Version {
		return Unsupported
	}
	if v := check(ip, &m, p, 0); v != OK {
		return v
	}
	packet.DecrementTTLWithChecksumUpdate(ip, m.Version)
	packet.RewriteICMPError(b, e, &osrc, &odst, &isrc, isport, &idst, idport)
	setEth(b, p)
	return OK
}

// icmpFits reports whether e's offsets lie within b, as RewriteICMPError
// checks, before anything is changed.
func icmpFits(b []byte, e *packet.ICMPError) bool {
	min := 20
	if e.Version == 6 {
		min = 40
	}
	return e.ICMPOff >= e.L3Off+min && e.InnerL3Off == e.ICMPOff+8 && e.InnerL4Off >= e.InnerL3Off+min &&
		e.InnerL4Off+8 <= e.End && e.End <= len(b) && (e.InnerProto == packet.ProtoTCP || e.InnerProto == packet.ProtoUDP)
}

// addrs reads the source and destination of the IP header at h.
func addrs(h []byte, version uint8, src, dst *[16]byte) {
	if version == 4 {
		*src = [16]byte{10: 0xff, 11: 0xff}
		*dst = *src
		copy(src[12:], h[12:16])
		copy(dst[12:], h[16:20])
		return
	}
	*src = [16]byte(h[8:24])
	*dst = [16]byte(h[24:40])
}
