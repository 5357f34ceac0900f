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
