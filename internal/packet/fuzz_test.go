package packet_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/internal/packet/packettest"
)

// FuzzParse checks, for any input, that Parse and Filter.Admit do not
// panic or write to the frame, that an accepted frame's offsets are in range and its fields
// are the frame's bytes, that the fields re-encoded by gopacket parse the
// same, and that a rewrite keeps checksums that verified verifying.
//
// The seed corpus is the golden table, in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, c := range packettest.Cases() {
		f.Add(c.Frame)
	}
	filter := packettest.Filter()
	f.Fuzz(func(t *testing.T, frame []byte) {
		orig := bytes.Clone(frame)
		var m packet.Meta
		r := packet.Parse(frame, &m)
		if !bytes.Equal(frame, orig) {
			t.Fatalf("Parse(%x) modified the frame", orig)
		}
		if int(r) >= packet.NumReasons {
			t.Fatalf("Parse(%x) = %v, not a defined reason", frame, r)
		}
		if r != packet.OK {
			if m != (packet.Meta{}) {
				t.Fatalf("Parse(%x) = %v and wrote %+v", frame, r, m)
			}
			return
		}
		if m.IsICMP() {
			checkICMP(t, frame, &m)
		} else {
			checkInRange(t, frame, &m)
		}
		if a := filter.Admit(frame, &m); a != packet.OK && (a < packet.VLAN || int(a) >= packet.NumReasons) {
			t.Fatalf("Admit(%x) = %v, not OK or one of its reasons", frame, a)
		}
		if !bytes.Equal(frame, orig) {
			t.Fatalf("Admit(%x) modified the frame", orig)
		}
		if !m.IsICMP() {
			checkReencode(t, frame, &m)
			checkRewrite(t, frame, &m)
		}
	})
}

// checkICMP checks the Meta of an ICMP error: offsets in range, the flow
// fields the quote's reversed, and that RewriteICMPError keeps an ICMP
// checksum that verified verifying.
func checkICMP(t *testing.T, frame []byte, m *packet.Meta) {
	t.Helper()
	e := &m.ICMP
	hl := 20
	if m.Version == 6 {
		hl = 40
	}
	switch {
	case m.L3Off != 14 && m.L3Off != 18, e.L3Off != m.L3Off, e.ICMPOff != m.L4Off, e.End != m.L3Off+m.IPLen,
		e.Version != m.Version, e.InnerProto != m.Proto, m.TCPFlags != 0,
		m.Proto != packet.ProtoTCP && m.Proto != packet.ProtoUDP,
		e.ICMPOff < e.L3Off+hl, e.InnerL3Off != e.ICMPOff+8, e.InnerL4Off < e.InnerL3Off+hl,
		e.InnerL4Off+8 > e.End, e.End > len(frame):
		t.Fatalf("Parse(%x) = ok with icmp meta out of range: %+v", frame, m)
	}
	q := frame[e.InnerL3Off:]
	var qsrc, qdst [16]byte
	if m.Version == 4 {
		qsrc, qdst = mapped(q[12:16]), mapped(q[16:20])
	} else {
		qsrc, qdst = [16]byte(q[8:24]), [16]byte(q[24:40])
	}
	l4 := frame[e.InnerL4Off:]
	if m.Src != qdst || m.Dst != qsrc || m.SrcPort != binary.BigEndian.Uint16(l4[2:]) || m.DstPort != binary.BigEndian.Uint16(l4[0:]) {
		t.Fatalf("Parse(%x): icmp flow %+v is not the quote reversed", frame, m)
	}
	b := bytes.Clone(frame)
	msg := func() []byte {
		if m.Version == 6 {
			return nil // the ICMPv6 checksum covers a pseudo-header: checked in modes
		}
		return b[e.ICMPOff:e.End]
	}
	before := msg() != nil && checksum(msg()) == 0
	a := m.Src
	a[15] ^= 0x5a
	if !packet.RewriteICMPError(b, e, &a, &m.Dst, &m.Dst, 1, &a, 2) {
		t.Fatalf("RewriteICMPError(%x, %+v) refused what Parse accepted", frame, e)
	}
	if before && checksum(msg()) != 0 {
		t.Fatalf("RewriteICMPError(%x) broke the icmp checksum: %x", frame, b)
	}
}

func checkInRange(t *testing.T, frame []byte, m *packet.Meta) {
	t.Helper()
	l4min := 8
	if m.Proto == packet.ProtoTCP {
		l4min = 20
	} else if m.Proto != packet.ProtoUDP {
		t.Fatalf("Parse(%x) = ok with proto %d", frame, m.Proto)
	}
	iphlen := m.L4Off - m.L3Off
	switch {
	case m.L3Off != 14 && m.L3Off != 18,
		m.Version == 4 && (iphlen < 20 || iphlen > 60 || iphlen%4 != 0),
		m.Version == 6 && (iphlen < 40 || iphlen%4 != 0),
		m.Version != 4 && m.Version != 6,
		m.L4Len() < l4min,
		m.L3Off+m.IPLen > len(frame):
		t.Fatalf("Parse(%x) = ok with meta out of range: %+v", frame, m)
	}
	if m.Version != frame[m.L3Off]>>4 {
		t.Fatalf("Parse(%x): version %d, frame says %d", frame, m.Version, frame[m.L3Off]>>4)
	}
	l4 := frame[m.L4Off:]
	if m.SrcPort != binary.BigEndian.Uint16(l4[0:]) || m.DstPort != binary.BigEndian.Uint16(l4[2:]) {
		t.Fatalf("Parse(%x): ports %d > %d, not the frame's", frame, m.SrcPort, m.DstPort)
	}
	if m.Proto == packet.ProtoTCP && m.TCPFlags != l4[13] || m.Proto == packet.ProtoUDP && m.TCPFlags != 0 {
		t.Fatalf("Parse(%x): TCP flags %#x, not the frame's", frame, m.TCPFlags)
	}
	ip := frame[m.L3Off:]
	var src, dst [16]byte
	if m.Version == 4 {
		src, dst = mapped(ip[12:16]), mapped(ip[16:20])
	} else {
		src, dst = [16]byte(ip[8:24]), [16]byte(ip[24:40])
	}
	if m.Src != src || m.Dst != dst {
		t.Fatalf("Parse(%x): addresses %v > %v, not the frame's", frame, m.SrcAddr(), m.DstAddr())
	}
}

func mapped(v4 []byte) [16]byte {
	var a [16]byte
	a[10], a[11] = 0xff, 0xff
	copy(a[12:], v4)
	return a
}

// checkReencode serializes m's fields with gopacket, without IP options,
// the rest of the segment as payload, and parses the result.
func checkReencode(t *testing.T, frame []byte, m *packet.Meta) {
	t.Helper()
	hw := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	eth := &layers.Ethernet{SrcMAC: hw, DstMAC: hw}
	ls := []gopacket.SerializableLayer{eth}
	ipType := layers.EthernetTypeIPv4
	if m.Version == 6 {
		ipType = layers.EthernetTypeIPv6
	}
	if m.L3Off == 18 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: m.VLAN, Type: ipType})
	} else {
		eth.EthernetType = ipType
	}
	proto := layers.IPProtocol(m.Proto)
	src, dst := m.SrcAddr().AsSlice(), m.DstAddr().AsSlice()
	if m.Version == 6 { // an IPv4-mapped IPv6 address stays 16 bytes
		src, dst = m.Src[:], m.Dst[:]
	}
	var nl gopacket.NetworkLayer
	if m.Version == 4 {
		h := &layers.IPv4{Version: 4, TTL: 1, Protocol: proto, SrcIP: src, DstIP: dst}
		nl = h
		ls = append(ls, h)
	} else {
		h := &layers.IPv6{Version: 6, HopLimit: 1, NextHeader: proto, SrcIP: src, DstIP: dst}
		nl = h
		ls = append(ls, h)
	}
	seg := frame[m.L4Off : m.L3Off+m.IPLen]
	var rest []byte
	if m.Proto == packet.ProtoTCP {
		h := &layers.TCP{
			SrcPort: layers.TCPPort(m.SrcPort), DstPort: layers.TCPPort(m.DstPort),
			FIN: m.TCPFlags&packet.TCPFlagFIN != 0, SYN: m.TCPFlags&packet.TCPFlagSYN != 0,
			RST: m.TCPFlags&packet.TCPFlagRST != 0, PSH: m.TCPFlags&packet.TCPFlagPSH != 0,
			ACK: m.TCPFlags&packet.TCPFlagACK != 0, URG: m.TCPFlags&packet.TCPFlagURG != 0,
			ECE: m.TCPFlags&packet.TCPFlagECE != 0, CWR: m.TCPFlags&packet.TCPFlagCWR != 0,
		}
		if err := h.SetNetworkLayerForChecksum(nl); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, h)
		rest = seg[20:]
	} else {
		h := &layers.UDP{SrcPort: layers.UDPPort(m.SrcPort), DstPort: layers.UDPPort(m.DstPort)}
		if err := h.SetNetworkLayerForChecksum(nl); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, h)
		rest = seg[8:]
	}
	ls = append(ls, gopacket.Payload(rest))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		if m.Version == 4 && 20+len(seg) > 0xffff {
			return // options removed, but the segment alone is too long for IPv4: impossible to re-encode
		}
		t.Fatalf("re-encode %+v: %v", m, err)
	}
	var got packet.Meta
	if r := packet.Parse(buf.Bytes(), &got); r != packet.OK {
		t.Fatalf("Parse(%x) = ok, Parse of its re-encoding %x = %v", frame, buf.Bytes(), r)
	}
	want := *m
	want.L4Off = m.L3Off + 20
	if m.Version == 6 {
		want.L4Off = m.L3Off + 40
	}
	want.IPLen = want.L4Off - m.L3Off + len(seg)
	if got != want {
		t.Fatalf("Parse(%x) = %+v, Parse of its re-encoding %x = %+v", frame, want, buf.Bytes(), got)
	}
}

// checkRewrite rewrites a copy of the frame's destination and checks that
// the IP header and L4 checksums verify afterwards if they did before.
func checkRewrite(t *testing.T, frame []byte, m *packet.Meta) {
	t.Helper()
	b := bytes.Clone(frame)
	mm := *m
	ipOK, l4OK := verify(b, &mm)
	addr := mm.Dst
	addr[15] ^= 0x5a
	addr[3] ^= 0xa5
	if mm.Version == 4 {
		addr = mapped(addr[12:])
	}
	packet.SetDestinationWithChecksumUpdate(b, &mm, addr, mm.DstPort^0x1234)
	if mm.Dst != addr || mm.DstPort != m.DstPort^0x1234 {
		t.Fatalf("SetDestinationWithChecksumUpdate left meta %+v", mm)
	}
	var re packet.Meta
	if r := packet.Parse(b, &re); r != packet.OK || re != mm {
		t.Fatalf("after rewrite Parse(%x) = %v %+v, want ok %+v", b, r, re, mm)
	}
	ipOK2, l4OK2 := verify(b, &mm)
	if ipOK && !ipOK2 || l4OK && !l4OK2 {
		t.Fatalf("rewrite of %x broke a checksum: ip %v->%v, l4 %v->%v\n%x", frame, ipOK, ipOK2, l4OK, l4OK2, b)
	}
}

// verify reports whether the IPv4 header checksum (true for IPv6) and the
// TCP/UDP checksum verify; a UDP checksum of 0 (none) counts as failing.
func verify(b []byte, m *packet.Meta) (ip, l4 bool) {
	ip = true
	var ph []byte
	seg := b[m.L4Off : m.L3Off+m.IPLen]
	if m.Version == 4 {
		ip = checksum(b[m.L3Off:m.L4Off]) == 0
		ph = append(append(ph, m.Src[12:]...), m.Dst[12:]...)
		ph = append(ph, 0, m.Proto)
		ph = binary.BigEndian.AppendUint16(ph, uint16(len(seg)))
	} else {
		ph = append(append(ph, m.Src[:]...), m.Dst[:]...)
		ph = binary.BigEndian.AppendUint32(ph, uint32(len(seg)))
		ph = append(ph, 0, 0, 0, m.Proto)
	}
	if m.Proto == packet.ProtoUDP && binary.BigEndian.Uint16(seg[6:]) == 0 {
		return ip, false
	}
	return ip, checksum(append(ph, seg...)) == 0
}

// TestRewriteGoldenChecksums makes sure checkRewrite's property is not
// vacuous: every accepted golden frame verifies before and after.
func TestRewriteGoldenChecksums(t *testing.T) {
	for _, c := range packettest.Cases() {
		if c.Reason != packet.OK || c.Admit == packet.BadChecksum || c.Meta.IsICMP() {
			continue
		}
		m := c.Meta
		if ip, l4 := verify(c.Frame, &m); !ip || !l4 {
			t.Fatalf("%s: golden checksums verify: ip %v, l4 %v", c.Name, ip, l4)
		}
		checkRewrite(t, c.Frame, &m)
		b := bytes.Clone(c.Frame)
		packet.SetSourceWithChecksumUpdate(b, &m, m.Dst, 1)
		if ip, l4 := verify(b, &m); !ip || !l4 {
			t.Errorf("%s: after SetSourceWithChecksumUpdate: ip %v, l4 %v", c.Name, ip, l4)
		}
	}
}
