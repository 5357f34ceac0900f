package packet_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/internal/packet/packettest"
)

// TestForwardAddrPortsWithChecksumUpdate decrements the TTL and rewrites
// both ends of random TCP/UDP frames, some ends unchanged, and compares
// them byte for byte with gopacket's serialization of the forwarded
// packet, checksums recomputed from scratch; and with the two-step
// DecrementTTLWithChecksumUpdate + SetAddrPortsWithChecksumUpdate.
func TestForwardAddrPortsWithChecksumUpdate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1624, 9293))
	for i := range 6000 {
		f := flowFrame{
			v6: rng.IntN(2) == 1, tcp: rng.IntN(2) == 1,
			sport: uint16(rng.Uint32()), dport: uint16(rng.Uint32()),
			id: uint16(rng.Uint32()), window: uint16(rng.Uint32()), seq: rng.Uint32(), ttl: uint8(2 + rng.IntN(254)),
			payload: make([]byte, rng.IntN(300)),
		}
		f.src, f.dst = randAddr(rng, f.v6), randAddr(rng, f.v6)
		for j := range f.payload {
			f.payload[j] = byte(rng.Uint32())
		}
		if i%5 == 0 { // edge words: end-around carries
			f.id, f.sport, f.dport = []uint16{0, 0xffff}[rng.IntN(2)], 0xffff, 0
		}
		frame := buildFlow(t, f)
		var m packet.Meta
		if r := packet.Parse(frame, &m); r != packet.OK {
			t.Fatalf("Parse(%x) = %v, want ok", frame, r)
		}
		g := f
		g.ttl--
		switch i % 4 { // 0: both ends change; 1: the source (NAT out); 2: the destination (NAT in); 3: none
		case 0:
			g.src, g.sport, g.dst, g.dport = randAddr(rng, f.v6), uint16(rng.Uint32()), randAddr(rng, f.v6), uint16(rng.Uint32())
		case 1:
			g.src, g.sport = randAddr(rng, f.v6), uint16(rng.Uint32())
		case 2:
			g.dst, g.dport = randAddr(rng, f.v6), uint16(rng.Uint32())
		}
		two := bytes.Clone(frame)
		var m2 packet.Meta
		packet.Parse(two, &m2)
		src, dst := g.src.As16(), g.dst.As16()
		packet.ForwardAddrPortsWithChecksumUpdate(frame, &m, &src, g.sport, &dst, g.dport)
		want := buildFlow(t, g)
		if !bytes.Equal(frame, want) {
			t.Fatalf("forward %+v to %+v:\n got %x\nwant %x", f, g, frame, want)
		}
		var wm packet.Meta
		packet.Parse(want, &wm)
		if m != wm {
			t.Fatalf("forward %+v to %+v: meta %+v, want %+v", f, g, m, wm)
		}
		packet.DecrementTTLWithChecksumUpdate(two[m2.L3Off:], m2.Version)
		packet.SetAddrPortsWithChecksumUpdate(two, &m2, src, g.sport, dst, g.dport)
		if !bytes.Equal(frame, two) {
			t.Fatalf("forward %+v to %+v: one pass\n %x\ntwo passes\n %x", f, g, frame, two)
		}
	}
}

// TestForwardAddrPortsUDP: a UDP checksum of 0 over IPv4 (none) stays 0,
// and one that comes out 0 is sent as 0xffff (RFC 768).
func TestForwardAddrPortsUDP(t *testing.T) {
	f := flowFrame{
		src: netip.MustParseAddr("198.51.100.7"), dst: netip.MustParseAddr("192.0.2.10"),
		sport: 40000, dport: 53, ttl: 64, payload: []byte("query"),
	}
	frame := buildFlow(t, f)
	binary.BigEndian.PutUint16(frame[14+20+6:], 0)
	var m packet.Meta
	if r := packet.Parse(frame, &m); r != packet.OK {
		t.Fatalf("Parse = %v", r)
	}
	src, dst := m.Src, netip.MustParseAddr("203.0.113.20").As16()
	packet.ForwardAddrPortsWithChecksumUpdate(frame, &m, &src, m.SrcPort, &dst, 5353)
	if got := binary.BigEndian.Uint16(frame[14+20+6:]); got != 0 {
		t.Errorf("UDP checksum after forward = %#04x, want 0 (none)", got)
	}
	if got := checksum(frame[14 : 14+20]); got != 0 {
		t.Errorf("IPv4 header checksum does not verify after forward: residue %#04x", got)
	}
	// Find a destination port whose rewrite computes a UDP checksum of 0.
	frame = buildFlow(t, f)
	packet.Parse(frame, &m)
	c := binary.BigEndian.Uint16(frame[14+20+6:])
	// The TTL is not in the pseudo-header: the port is the only change.
	for port := range 1 << 16 {
		var p packet.ChecksumDelta
		p.Update16(53, uint16(port))
		if p.Apply(c) == 0 {
			g := bytes.Clone(frame)
			var gm packet.Meta
			packet.Parse(g, &gm)
			src, dst := gm.Src, gm.Dst
			packet.ForwardAddrPortsWithChecksumUpdate(g, &gm, &src, gm.SrcPort, &dst, uint16(port))
			if got := binary.BigEndian.Uint16(g[14+20+6:]); got != 0xffff {
				t.Errorf("port %d: UDP checksum %#04x, want 0xffff", port, got)
			}
			if !packet.L4ChecksumOK(g, &gm) {
				t.Errorf("port %d: UDP checksum does not verify", port)
			}
			return
		}
	}
	t.Fatal("no port gives a computed UDP checksum of 0")
}

func TestForwardAddrPortsFamilyMismatch(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		f := flowFrame{v6: v6, tcp: true, sport: 1, dport: 2, ttl: 64}
		f.src, f.dst = randAddr(rand.New(rand.NewPCG(1, 1)), v6), randAddr(rand.New(rand.NewPCG(2, 2)), v6)
		frame := buildFlow(t, f)
		var m packet.Meta
		packet.Parse(frame, &m)
		wrong := netip.MustParseAddr("2001:db8::1").As16()
		if v6 {
			wrong = netip.MustParseAddr("192.0.2.1").As16()
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("v6 %v: no panic", v6)
				}
			}()
			src := m.Src
			packet.ForwardAddrPortsWithChecksumUpdate(frame, &m, &src, 1, &wrong, 80)
		}()
	}
}

func TestForwardAddrPortsAllocs(t *testing.T) {
	frame := buildFlow(t, flowFrame{tcp: true, src: netip.MustParseAddr("198.51.100.7"), dst: netip.MustParseAddr("192.0.2.10"), sport: 40000, dport: 80, ttl: 255})
	var m packet.Meta
	packet.Parse(frame, &m)
	src, dst := m.Src, netip.MustParseAddr("203.0.113.20").As16()
	if n := testing.AllocsPerRun(100, func() {
		frame[14+8] = 255
		packet.ForwardAddrPortsWithChecksumUpdate(frame, &m, &src, 40000, &dst, 8080)
	}); n != 0 {
		t.Errorf("ForwardAddrPortsWithChecksumUpdate allocates %v times per run, want 0", n)
	}
}

// FuzzForwardAddrPorts: for any frame Parse accepts as TCP or UDP with a
// TTL above 1, its checksums first made right, the one-pass forward
// equals setting the fields and recomputing both checksums from scratch.
// The seed corpus is the golden table, in testdata/fuzz.
func FuzzForwardAddrPorts(f *testing.F) {
	for _, c := range packettest.Cases() {
		f.Add(c.Frame, make([]byte, 32), uint16(40000), uint16(8080))
	}
	f.Fuzz(func(t *testing.T, frame, addrs []byte, sport, dport uint16) {
		var m packet.Meta
		if packet.Parse(frame, &m) != packet.OK || m.IsICMP() || packet.TTL(frame[m.L3Off:], m.Version) <= 1 {
			return
		}
		var src, dst [16]byte
		for i := range 16 {
			src[i], dst[i] = m.Src[i], m.Dst[i]
			if i < len(addrs) {
				src[i] ^= addrs[i]
			}
			if 16+i < len(addrs) {
				dst[i] ^= addrs[16+i]
			}
		}
		if m.Version == 4 { // keep the family
			copy(src[:12], m.Src[:12])
			copy(dst[:12], m.Dst[:12])
		} else {
			src[0], dst[0] = 0x20, 0x20
		}
		fix := func(b []byte, mm *packet.Meta) {
			if mm.Version == 4 {
				hl := int(b[mm.L3Off]&0xf) * 4
				h := b[mm.L3Off : mm.L3Off+hl]
				h[10], h[11] = 0, 0
				binary.BigEndian.PutUint16(h[10:], checksum(h))
			}
			packet.SetL4Checksum(b, mm)
		}
		fix(frame, &m)
		want := bytes.Clone(frame)
		var wm packet.Meta
		packet.Parse(want, &wm)
		ip := want[wm.L3Off:]
		if wm.Version == 4 {
			ip[8]--
			copy(ip[12:16], src[12:])
			copy(ip[16:20], dst[12:])
		} else {
			ip[7]--
			copy(ip[8:24], src[:])
			copy(ip[24:40], dst[:])
		}
		binary.BigEndian.PutUint16(want[wm.L4Off:], sport)
		binary.BigEndian.PutUint16(want[wm.L4Off+2:], dport)
		wm.Src, wm.Dst, wm.SrcPort, wm.DstPort = src, dst, sport, dport
		fix(want, &wm)

		packet.ForwardAddrPortsWithChecksumUpdate(frame, &m, &src, sport, &dst, dport)
		if !bytes.Equal(frame, want) {
			t.Fatalf("forward to %x:%d %x:%d:\n got %x\nwant %x", src, sport, dst, dport, frame, want)
		}
		if m != wm {
			t.Fatalf("meta %+v, want %+v", m, wm)
		}
	})
}

// putIPv4HeaderRef is PutIPv4Header as RFC 791 section 3.1 lays the
// header out, its checksum computed over the written bytes (RFC 1071).
func putIPv4HeaderRef(h []byte, tos uint8, tot int, id uint16, df bool, ttl, proto uint8, src, dst *[16]byte) {
	h[0], h[1] = 0x45, tos
	binary.BigEndian.PutUint16(h[2:], uint16(tot))
	binary.BigEndian.PutUint16(h[4:], id)
	h[6], h[7] = 0, 0
	if df {
		h[6] = 0x40
	}
	h[8], h[9], h[10], h[11] = ttl, proto, 0, 0
	copy(h[12:16], src[12:])
	copy(h[16:20], dst[12:])
	binary.BigEndian.PutUint16(h[10:], checksum(h[:20]))
}

// TestPutIPv4Header: the checksum PutIPv4Header computes from the field
// values equals one computed from scratch over the header, for random
// fields and the all-zero and all-ones edges.
func TestPutIPv4Header(t *testing.T) {
	rng := rand.New(rand.NewPCG(791, 1071))
	for i := range 20000 {
		var src, dst [16]byte
		src[10], src[11], dst[10], dst[11] = 0xff, 0xff, 0xff, 0xff
		binary.BigEndian.PutUint32(src[12:], rng.Uint32())
		binary.BigEndian.PutUint32(dst[12:], rng.Uint32())
		tos, tot, id, df, ttl, proto := uint8(rng.Uint32()), rng.IntN(1<<16), uint16(rng.Uint32()), rng.IntN(2) == 1, uint8(rng.Uint32()), uint8(rng.Uint32())
		switch i % 5 {
		case 0:
			tos, tot, id, ttl, proto = 0xff, 0xffff, 0xffff, 0xff, 0xff
			copy(src[12:], []byte{0xff, 0xff, 0xff, 0xff})
			copy(dst[12:], []byte{0xff, 0xff, 0xff, 0xff})
		case 1:
			tos, tot, id, ttl, proto = 0, 0, 0, 0, 0
			copy(src[12:], []byte{0, 0, 0, 0})
			copy(dst[12:], []byte{0, 0, 0, 0})
		}
		got, want := make([]byte, 20), make([]byte, 20)
		for j := range got {
			got[j] = byte(rng.Uint32()) // whatever the chunk held before
		}
		packet.PutIPv4Header(got, tos, tot, id, df, ttl, proto, &src, &dst)
		putIPv4HeaderRef(want, tos, tot, id, df, ttl, proto, &src, &dst)
		if !bytes.Equal(got, want) {
			t.Fatalf("PutIPv4Header(tos %#x tot %d id %#x df %v ttl %d proto %d %x %x) = % x, want % x",
				tos, tot, id, df, ttl, proto, src[12:], dst[12:], got, want)
		}
	}
}

func FuzzPutIPv4Header(f *testing.F) {
	f.Add(uint8(0), uint16(60), uint16(1), true, uint8(64), uint8(4), uint32(0xc0000201), uint32(0xcb007114))
	f.Add(uint8(0xff), uint16(0xffff), uint16(0xffff), false, uint8(0xff), uint8(0xff), uint32(0xffffffff), uint32(0xffffffff))
	f.Fuzz(func(t *testing.T, tos uint8, tot, id uint16, df bool, ttl, proto uint8, s, d uint32) {
		var src, dst [16]byte
		src[10], src[11], dst[10], dst[11] = 0xff, 0xff, 0xff, 0xff
		binary.BigEndian.PutUint32(src[12:], s)
		binary.BigEndian.PutUint32(dst[12:], d)
		got, want := make([]byte, 20), make([]byte, 20)
		packet.PutIPv4Header(got, tos, int(tot), id, df, ttl, proto, &src, &dst)
		putIPv4HeaderRef(want, tos, int(tot), id, df, ttl, proto, &src, &dst)
		if !bytes.Equal(got, want) {
			t.Fatalf("PutIPv4Header = % x, want % x", got, want)
		}
		if checksum(got) != 0 {
			t.Fatalf("PutIPv4Header = % x: checksum does not verify", got)
		}
	})
}

// TestCompleteL4ChecksumRandom: CompleteL4Checksum's own pseudo-header
// sum agrees with PseudoHeaderSum on random TCP/UDP frames of both
// families: a field holding the folded pseudo-header sum (a partial
// checksum) is completed to a checksum that verifies, and a complete
// checksum is left alone.
func TestCompleteL4ChecksumRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1071, 9293))
	for range 4000 {
		f := flowFrame{
			v6: rng.IntN(2) == 1, tcp: rng.IntN(2) == 1,
			sport: uint16(rng.Uint32()), dport: uint16(rng.Uint32()), ttl: 64,
			payload: make([]byte, rng.IntN(300)),
		}
		f.src, f.dst = randAddr(rng, f.v6), randAddr(rng, f.v6)
		for j := range f.payload {
			f.payload[j] = byte(rng.Uint32())
		}
		b := buildFlow(t, f)
		var m packet.Meta
		if r := packet.Parse(b, &m); r != packet.OK {
			t.Fatalf("Parse = %v", r)
		}
		if packet.CompleteL4Checksum(b, &m) {
			t.Fatalf("%+v: CompleteL4Checksum changed a complete checksum", f)
		}
		off := m.L4Off + 16
		if !f.tcp {
			off = m.L4Off + 6
		}
		ps := packet.PseudoHeaderSum(b[m.L3Off:], m.Version, m.Proto, m.L4Len())
		for ps > 0xffff {
			ps = ps>>16 + ps&0xffff
		}
		want := binary.BigEndian.Uint16(b[off:])
		binary.BigEndian.PutUint16(b[off:], uint16(ps))
		if uint16(ps) == want {
			continue // the 1 in 65536 frame whose checksum is its pseudo-header sum
		}
		if !packet.CompleteL4Checksum(b, &m) || binary.BigEndian.Uint16(b[off:]) != want {
			t.Fatalf("%+v: partial %#04x completed to %#04x, want %#04x", f, ps, binary.BigEndian.Uint16(b[off:]), want)
		}
	}
}
