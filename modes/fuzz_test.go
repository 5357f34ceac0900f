package modes

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/xlbproject/xlb/internal/packet"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
)

// fuzzPlans are a plan of every method and direction, for each family,
// and every tunnel encapsulation to real servers of either family.
func fuzzPlans() (ps []struct {
	p   Plan
	dir Dir
}) {
	add := func(p Plan, dir Dir) {
		ps = append(ps, struct {
			p   Plan
			dir Dir
		}{p, dir})
	}
	for _, fam := range families {
		for _, m := range []Method{Masq, Local, Route, FullNAT} {
			add(fam.plan(m, pt.RealMAC), In)
			add(fam.plan(m, pt.RouterMAC), Out)
		}
		for _, e := range []EncapType{IPIP, GUE, GRE, GRE + 1} {
			for _, csum := range []bool{false, true} {
				add(fam.tun(e, csum, fam.real, fam.director), In)
				add(fam.tun(e, csum, fam.xreal, fam.x), In)
			}
		}
		add(fam.tun(IPIP, false, fam.real, fam.director), Out)
	}
	return ps
}

const guard = 64 // canary bytes each side of the chunk

// FuzzXmit feeds arbitrary frames, at arbitrary headroom and MTU, through
// every method's rewrite in both directions, the ICMP replies and the ICMP
// error translation with offsets found the way a parser would and with
// arbitrary ones. Nothing may panic or write outside the chunk (the chunk
// slice's capacity runs on into canary bytes that must stay intact); a
// verdict other than OK changes nothing; an OK output parses, keeps valid
// checksums valid, and has its TTL one lower.
func FuzzXmit(f *testing.F) {
	for _, c := range goldenCases() {
		f.Add(c.in.Frame(), uint16(c.room&0xff), uint16(1500), uint32(0))
	}
	for _, c := range pt.Cases() {
		f.Add(c.Frame, uint16(256), uint16(1500), uint32(0))
	}
	f.Add(icmpErr{pt.RouterMAC, pt.DirectorMAC, pt.Client4, pt.VIP4, 64,
		quote(pt.Packet{Src: pt.VIP4, Dst: pt.Client4, SrcPort: 80, DstPort: 40000}, 28)}.frame(), uint16(256), uint16(1500), uint32(0))
	f.Add(icmpErr{pt.RouterMAC, pt.DirectorMAC, pt.Client6, pt.VIP6, 64,
		quote(pt.Packet{Src: pt.VIP6, Dst: pt.Client6, SrcPort: 80, DstPort: 40000, UDP: true}, 0)}.frame(), uint16(256), uint16(1280), uint32(0x01020304))
	plans := fuzzPlans()
	backing := make([]byte, guard+chunk+guard)
	f.Fuzz(func(t *testing.T, data []byte, room, mtu uint16, offs uint32) {
		r := int(room) % 320
		if len(data) > chunk-r {
			data = data[:chunk-r]
		}
		var m0 packet.Meta
		parsed := packet.Parse(data, &m0) == packet.OK
		for i := range plans {
			p := plans[i].p
			p.MTU = int(mtu) % 2000
			buf := reset(backing, data, r)
			if parsed {
				fr, m := Frame{Buf: buf, Off: r, Len: len(data)}, m0
				v := Xmit(&fr, &m, &p, plans[i].dir)
				checkOut(t, backing, &fr, data, &m0, &p, v)
				if v == TooBig || v == TTLExceeded {
					m = m0
					src := p.VIP
					if m.Version == 6 {
						src = pt.VIP6.As16()
					}
					var w Verdict
					if v == TooBig {
						w = ReplyTooBig(&fr, &m, p.ReportMTU(), &src)
					} else {
						w = ReplyTimeExceeded(&fr, &m, &src)
					}
					checkChunk(t, backing, &fr)
					if w == OK {
						checkICMPReply(t, fr.Bytes())
					}
				}
			}
			// ICMP errors: offsets as a parser would find them, Parse's
			// own, then arbitrary.
			for _, e := range []packet.ICMPError{icmpOffsets(data), m0.ICMP, arbitrary(offs, data)} {
				buf = reset(backing, data, r)
				fr := Frame{Buf: buf, Off: r, Len: len(data)}
				v := XmitICMP(&fr, &e, &p, plans[i].dir)
				checkChunk(t, backing, &fr)
				if v != OK && (fr.Off != r || fr.Len != len(data) || !bytes.Equal(fr.Bytes(), data)) {
					t.Fatalf("XmitICMP(%v %v) = %v and changed the frame", p.Method, plans[i].dir, v)
				}
				if v == OK && parsed && m0.IsICMP() && e == m0.ICMP && p.Method != Tunnel {
					checkICMPOut(t, data, fr.Bytes(), &m0)
				}
			}
		}
	})
}

// reset fills backing with canaries and the chunk with data at r.
func reset(backing, data []byte, r int) []byte {
	for i := range backing {
		backing[i] = 0xa5
	}
	buf := backing[guard : guard+chunk] // capacity runs into the tail canary
	copy(buf[r:], data)
	return buf
}

// checkChunk fails if the canaries changed or the descriptor left the chunk.
func checkChunk(t *testing.T, backing []byte, f *Frame) {
	t.Helper()
	for i := 0; i < guard; i++ {
		if backing[i] != 0xa5 || backing[guard+chunk+i] != 0xa5 {
			t.Fatalf("write outside the chunk at %d", i)
		}
	}
	if f.Off < 0 || f.Len < 0 || f.Off+f.Len > chunk {
		t.Fatalf("descriptor %d+%d outside the %d-byte chunk", f.Off, f.Len, chunk)
	}
}

func checkOut(t *testing.T, backing []byte, f *Frame, in []byte, m0 *packet.Meta, p *Plan, v Verdict) {
	t.Helper()
	checkChunk(t, backing, f)
	if v != OK {
		if f.Len != len(in) || !bytes.Equal(f.Bytes(), in) {
			t.Fatalf("Xmit(%v) = %v and changed the frame", p.Method, v)
		}
		return
	}
	out := f.Bytes()
	l3 := m0.L3Off
	if p.Method == Tunnel {
		// The inner packet follows the outer headers, TTL one lower.
		l3 += p.Overhead()
		if p.Overhead() == 20 && refSum(0, out[m0.L3Off:m0.L3Off+20]) != 0xffff {
			t.Fatalf("outer IPv4 header checksum does not verify")
		}
	}
	inIP, outIP := in[m0.L3Off:m0.L3Off+m0.IPLen], out[l3:l3+m0.IPLen]
	if packet.TTL(outIP, m0.Version) != packet.TTL(inIP, m0.Version)-1 {
		t.Fatalf("TTL %d → %d", packet.TTL(inIP, m0.Version), packet.TTL(outIP, m0.Version))
	}
	if m0.Version == 4 && refSum(0, inIP[:m0.L4Off-m0.L3Off]) == 0xffff && refSum(0, outIP[:m0.L4Off-m0.L3Off]) != 0xffff {
		t.Fatalf("valid IPv4 header checksum made invalid")
	}
	if p.Method == Tunnel {
		return
	}
	var m packet.Meta
	if r := packet.Parse(out, &m); r != packet.OK {
		t.Fatalf("output does not parse: %v", r)
	}
	if packet.L4ChecksumOK(in, m0) && !packet.L4ChecksumOK(out, &m) {
		t.Fatalf("valid %d checksum made invalid", m0.Proto)
	}
}

// checkICMPOut checks an ICMP error XmitICMP forwarded as Parse found
// it: it still parses as one, and an IPv4 header and ICMP checksum that
// verified still do.
func checkICMPOut(t *testing.T, in, out []byte, m0 *packet.Meta) {
	t.Helper()
	var m packet.Meta
	if r := packet.Parse(out, &m); r != packet.OK || !m.IsICMP() {
		t.Fatalf("forwarded ICMP error does not parse as one: %v", r)
	}
	if m0.Version != 4 {
		return
	}
	e := &m0.ICMP
	for _, h := range [][2]int{{e.L3Off, e.ICMPOff}, {e.ICMPOff, e.End}} {
		if refSum(0, in[h[0]:h[1]]) == 0xffff && refSum(0, out[h[0]:h[1]]) != 0xffff {
			t.Fatalf("valid checksum over [%d:%d] made invalid", h[0], h[1])
		}
	}
}

// checkICMPReply verifies the checksums of an ICMP reply's headers.
func checkICMPReply(t *testing.T, b []byte) {
	t.Helper()
	var m packet.Meta
	l3 := 14
	if et := binary.BigEndian.Uint16(b[12:]); et == 0x8100 {
		l3 = 18
	}
	_ = m
	if b[l3]>>4 == 4 {
		if refSum(0, b[l3:l3+20]) != 0xffff || refSum(0, b[l3+20:]) != 0xffff {
			t.Fatalf("ICMP reply checksums do not verify")
		}
		return
	}
	ip := b[l3:]
	s := refSum(refSum(uint32(58)+uint32(len(ip)-40), ip[8:24]), ip[24:40])
	if refSum(s, ip[40:]) != 0xffff {
		t.Fatalf("ICMPv6 reply checksum does not verify")
	}
}

// icmpOffsets locates an ICMP error in b as a parser would, without
// checking anything: XmitICMP must.
func icmpOffsets(b []byte) packet.ICMPError {
	var e packet.ICMPError
	if len(b) < 14+40+8+40 {
		return e
	}
	e.L3Off = 14
	if b[14]>>4 == 4 {
		e.Version, e.ICMPOff = 4, 14+int(b[14]&0xf)*4
		e.End = 14 + int(binary.BigEndian.Uint16(b[16:]))
		e.InnerL3Off = e.ICMPOff + 8
		e.InnerL4Off = e.InnerL3Off + int(b[e.InnerL3Off]&0xf)*4
		e.InnerProto = b[e.InnerL3Off+9]
	} else {
		e.Version, e.ICMPOff = 6, 14+40
		e.End = 14 + 40 + int(binary.BigEndian.Uint16(b[18:]))
		e.InnerL3Off, e.InnerL4Off = e.ICMPOff+8, e.ICMPOff+8+40
		e.InnerProto = b[e.InnerL3Off+6]
	}
	return e
}

// arbitrary builds offsets from the fuzzer's bits, near the frame's size.
func arbitrary(x uint32, b []byte) packet.ICMPError {
	n := len(b) + 16
	e := packet.ICMPError{L3Off: int(x&0xf) + 10, Version: uint8(4 + 2*(x>>4&1)), InnerProto: []uint8{6, 17}[x>>5&1]}
	e.ICMPOff = e.L3Off + int(x>>6&0x3f)
	e.InnerL3Off = e.ICMPOff + 8 - int(x>>12&1)
	e.InnerL4Off = e.InnerL3Off + int(x>>13&0x3f)
	e.End = int(x>>19) % n
	return e
}
