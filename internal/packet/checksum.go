package packet

import "encoding/binary"

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
