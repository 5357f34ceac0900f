package packet

import (
	"encoding/binary"
	"math/bits"
)

// ChecksumDelta accumulates changes to data covered by an Internet checksum
// (RFC 1071) so that the checksum can be updated without reading the rest
// of the data, as RFC 1624 section 3 describes:
//
//	HC' = ~(~HC + ~m + m')      (eqn. 3)
//
// where HC is the checksum as stored, m a 16-bit word before and m' after
// the change, and + is one's-complement addition. Eqn. 3, unlike the
// earlier eqn. 2 of RFC 1141, never turns a correct checksum into 0xffff
// ("-0"), so the result equals a full recomputation bit for bit.
//
// Words are in network byte order, as read with binary.BigEndian at an even
// offset from the start of the covered data. Changing an address updates
// both the IPv4 header checksum and the TCP/UDP checksum, whose
// pseudo-header (RFC 9293 section 3.1, RFC 8200 section 8.1) covers it:
// accumulate once, apply twice. The zero value is no change.
type ChecksumDelta struct {
	sum uint64 // unfolded: 2^47 words before it could overflow
}

// Update16 records that a 16-bit word changed from old to new.
func (d *ChecksumDelta) Update16(old, new uint16) {
	d.sum += uint64(^old) + uint64(new)
}

// Update32 records that a 32-bit field (two words, e.g. an IPv4 address)
// changed from old to new.
func (d *ChecksumDelta) Update32(old, new uint32) {
	d.Update16(uint16(old>>16), uint16(new>>16))
	d.Update16(uint16(old), uint16(new))
}

// Update128 records that a 128-bit field (eight words, an IPv6 address)
// changed from old to new.
func (d *ChecksumDelta) Update128(old, new *[16]byte) {
	for i := 0; i < 16; i += 2 {
		d.Update16(binary.BigEndian.Uint16(old[i:]), binary.BigEndian.Uint16(new[i:]))
	}
}

// Apply returns checksum sum, as stored in a header, updated for the
// recorded changes.
func (d ChecksumDelta) Apply(sum uint16) uint16 {
	return ^fold(uint64(^sum) + d.sum)
}

// ApplyUDP is Apply for a UDP checksum (RFC 768): a stored 0 means the
// sender computed none (allowed over IPv4 only) and stays 0; a computed 0
// is sent as 0xffff.
func (d ChecksumDelta) ApplyUDP(sum uint16) uint16 {
	if sum == 0 {
		return 0
	}
	if s := d.Apply(sum); s != 0 {
		return s
	}
	return 0xffff
}

// fold adds the carries of s back in (end-around carry) down to 16 bits.
func fold(s uint64) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// ChecksumUpdate16 returns checksum sum updated for a 16-bit word of the
// covered data changing from old to new (RFC 1624 eqn. 3).
func ChecksumUpdate16(sum, old, new uint16) uint16 {
	var d ChecksumDelta
	d.Update16(old, new)
	return d.Apply(sum)
}

// ChecksumUpdate32 returns checksum sum updated for a 32-bit field changing
// from old to new.
func ChecksumUpdate32(sum uint16, old, new uint32) uint16 {
	var d ChecksumDelta
	d.Update32(old, new)
	return d.Apply(sum)
}

// ChecksumUpdate128 returns checksum sum updated for a 128-bit field
// changing from old to new.
func ChecksumUpdate128(sum uint16, old, new *[16]byte) uint16 {
	var d ChecksumDelta
	d.Update128(old, new)
	return d.Apply(sum)
}

// Checksum returns the Internet checksum (RFC 1071) of b, with initial, an
// unfolded partial sum such as PseudoHeaderSum's, added in: the value to
// store in a header whose checksum field was zero while b was summed.
func Checksum(b []byte, initial uint64) uint16 {
	return ^fold(Sum(b, initial))
}

// Sum returns the one's-complement sum of b added to s, unfolded; an odd
// last byte is padded with zero (RFC 1071 section 4.1). It adds eight bytes
// at a time with end-around carry: the 16-bit one's-complement sum is the
// 64-bit one folded, since 2^16 ≡ 1 (mod 2^16-1).
func Sum(b []byte, s uint64) uint64 {
	var c uint64
	for len(b) >= 32 {
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b), c)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[8:]), c)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[16:]), c)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[24:]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	s, c = bits.Add64(s, c, 0)
	s += c // s was at most 2^64-1 before adding the carry: no second carry
	// Fold to 32 bits so the tail cannot overflow.
	s = s>>32 + s&0xffffffff
	for len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

// PseudoHeaderSum returns the unfolded sum of the TCP/UDP/ICMPv6
// pseudo-header (RFC 9293 section 3.1, RFC 8200 section 8.1) of an IP
// packet ip of the given version: its addresses, protocol proto and
// upper-layer length l4len. ip must hold the IP header (20 bytes for
// IPv4, 40 for IPv6).
func PseudoHeaderSum(ip []byte, version uint8, proto uint8, l4len int) uint64 {
	// 32-bit words added into 64 bits cannot carry out, so no Sum loop
	// with end-around carry: its fold is the same. Every forwarded frame
	// pays this once (CompleteL4Checksum), 3-4 ns less than with Sum.
	s := uint64(proto) + uint64(l4len)
	be := binary.BigEndian
	if version == 4 {
		a := ip[ipv4SrcOff : ipv4SrcOff+8]
		return s + uint64(be.Uint32(a[0:4])) + uint64(be.Uint32(a[4:8]))
	}
	a := ip[ipv6SrcOff : ipv6SrcOff+32]
	return s + uint64(be.Uint32(a[0:4])) + uint64(be.Uint32(a[4:8])) +
		uint64(be.Uint32(a[8:12])) + uint64(be.Uint32(a[12:16])) +
		uint64(be.Uint32(a[16:20])) + uint64(be.Uint32(a[20:24])) +
		uint64(be.Uint32(a[24:28])) + uint64(be.Uint32(a[28:32]))
}

// l4ChecksumOff returns the offset of the checksum in a TCP or UDP header.
func l4ChecksumOff(proto uint8) int {
	if proto == ProtoTCP {
		return tcpChecksumOff
	}
	return udpChecksumOff
}

// L4ChecksumOK reports whether the TCP or UDP checksum of the frame m
// describes verifies (a UDP checksum of 0 over IPv4, none computed, does).
// It reads the whole segment.
func L4ChecksumOK(frame []byte, m *Meta) bool {
	ip := frame[m.L3Off : m.L3Off+m.IPLen]
	seg := frame[m.L4Off : m.L3Off+m.IPLen]
	if m.Proto == ProtoUDP && m.Version == 4 && binary.BigEndian.Uint16(seg[udpChecksumOff:]) == 0 {
		return true
	}
	return fold(Sum(seg, PseudoHeaderSum(ip, m.Version, m.Proto, len(seg)))) == 0xffff
}

// SetL4Checksum computes the TCP or UDP checksum of the frame m describes
// over the whole segment and stores it (a computed 0 is stored as 0xffff
// for UDP, RFC 768). It costs a pass over the segment, about 0.1 ns a byte.
func SetL4Checksum(frame []byte, m *Meta) {
	ip := frame[m.L3Off : m.L3Off+m.IPLen]
	seg := frame[m.L4Off : m.L3Off+m.IPLen]
	c := seg[l4ChecksumOff(m.Proto):]
	c[0], c[1] = 0, 0
	sum := Checksum(seg, PseudoHeaderSum(ip, m.Version, m.Proto, len(seg)))
	if sum == 0 && m.Proto == ProtoUDP {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(c, sum)
}

// CompleteL4Checksum finishes the TCP or UDP checksum of a frame whose
// sender left it for the NIC to complete (Linux CHECKSUM_PARTIAL: the
// field holds the folded pseudo-header sum, not the checksum) and reports
// whether it did. Such frames come from senders on the same host (veth,
// bridges, tap) when checksum offload is on; forwarded as they are, the
// receiver drops them.
//
// It first compares the field with the pseudo-header sum, which costs a
// few nanoseconds and no pass over the payload; only on a match (a partial
// checksum, or a complete one equal to it by a 1 in 65536 chance) does it
// verify the segment and, if that fails, recompute. A frame with a wrong
// checksum that is not the pseudo-header sum is left alone.
func CompleteL4Checksum(frame []byte, m *Meta) bool {
	ip := frame[m.L3Off : m.L3Off+m.IPLen]
	seg := frame[m.L4Off : m.L3Off+m.IPLen]
	c := binary.BigEndian.Uint16(seg[l4ChecksumOff(m.Proto):])
	if c != fold(PseudoHeaderSum(ip, m.Version, m.Proto, len(seg))) || L4ChecksumOK(frame, m) {
		return false
	}
	SetL4Checksum(frame, m)
	return true
}
