package packet

import "encoding/binary"

// Filter holds what the XDP program knows of its interface and checks, in
// Admit, for the frames its lookup would steer: the interface's MAC and the
// VLANs served. It mirrors the configuration bpf.Load writes into the
// program.
type Filter struct {
	MAC   [6]byte
	VLANs [64]uint64 // bit v: VLAN ID v is served; bit 0 is always set
}

// NewFilter returns the filter of an interface with address mac that
// serves the tagged frames of vlans (IDs above 4094 are ignored).
func NewFilter(mac [6]byte, vlans []uint16) *Filter {
	f := &Filter{MAC: mac}
	f.VLANs[0] = 1
	for _, v := range vlans {
		if v <= 4094 {
			f.VLANs[v/64] |= 1 << (v % 64)
		}
	}
	return f
}

// Served reports whether tagged frames of VLAN vid are balanced. VID 0
// (untagged or priority-tagged) always is.
func (f *Filter) Served(vid uint16) bool {
	return f.VLANs[(vid>>6)&63]>>(vid&63)&1 != 0
}

// Admit applies, to a frame Parse accepted into m, the checks xdp.c makes
// after its lookup on frames it would steer, in the same order: the ones
// the kernel makes before it delivers a frame, and which AF_XDP bypasses.
// It returns OK or the first that fails: VLAN (passed to the kernel),
// OtherHost, L2Multicast, BadChecksum or Martian (dropped).
func (f *Filter) Admit(frame []byte, m *Meta) Reason {
	if !f.Served(m.VLAN) {
		return VLAN
	}
	if frame[0]&1 != 0 {
		return L2Multicast
	}
	if [6]byte(frame[0:6]) != f.MAC {
		return OtherHost
	}
	if m.Version == 4 && !ipv4ChecksumOK(frame[m.L3Off:m.L4Off]) {
		return BadChecksum
	}
	if m.IsICMP() {
		// An ICMP error's Src and Dst are its quote's: the martian check
		// is the outer header's, as the kernel makes it.
		var o Meta
		o.Version = m.Version
		if m.Version == 4 {
			o.Src[10], o.Src[11], o.Dst[10], o.Dst[11] = 0xff, 0xff, 0xff, 0xff
			copy(o.Src[12:], frame[m.L3Off+12:m.L3Off+16])
			copy(o.Dst[12:], frame[m.L3Off+16:m.L3Off+20])
		} else {
			o.Src, o.Dst = [16]byte(frame[m.L3Off+8:m.L3Off+24]), [16]byte(frame[m.L3Off+24:m.L3Off+40])
		}
		m = &o
	}
	if martian(m) {
		return Martian
	}
	return OK
}

// ipv4ChecksumOK reports whether the one's complement sum of the header's
// 16-bit words, checksum included, is 0xffff (RFC 1071).
func ipv4ChecksumOK(h []byte) bool {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	sum = sum&0xffff + sum>>16
	sum = sum&0xffff + sum>>16
	return sum == 0xffff
}

// martian reports a source address the kernel drops as martian: 0/8,
// 127/8, 224/4, 240/4; ::, ::1, ff00::/8, IPv4-mapped; or the destination
// itself.
func martian(m *Meta) bool {
	s := &m.Src
	if *s == m.Dst {
		return true
	}
	if m.Version == 4 {
		hi := s[12]
		return hi == 0 || hi == 127 || hi >= 224
	}
	if s[0] == 0xff {
		return true
	}
	if [10]byte(s[0:10]) == [10]byte{} {
		switch {
		case s[10] == 0 && s[11] == 0 && [3]byte(s[12:15]) == [3]byte{} && s[15] <= 1: // :: and ::1
			return true
		case s[10] == 0xff && s[11] == 0xff: // ::ffff:0:0/96
			return true
		}
	}
	return false
}
