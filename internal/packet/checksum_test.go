package packet_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/packet"
)

// checksum is a plain RFC 1071 Internet checksum, the reference.
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

func TestChecksumUpdateRFC1624(t *testing.T) {
	// RFC 1624 section 4: eqn. 3 gives 0x0000 where eqn. 2 gave -0.
	if got := packet.ChecksumUpdate16(0xdd2f, 0x5555, 0x3285); got != 0x0000 {
		t.Errorf("ChecksumUpdate16(0xdd2f, 0x5555, 0x3285) = %#04x, want 0x0000", got)
	}
}

// TestChecksumUpdateRandom changes 16-, 32- and 128-bit fields of random
// data and compares the incremental update with a recomputation.
func TestChecksumUpdateRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1624, 1071))
	for i := range 20000 {
		b := make([]byte, 2*(8+rng.IntN(64)))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		// Bias toward the edge values that exercise end-around carry.
		if i%4 == 0 {
			for j := range b {
				b[j] = []byte{0, 0xff}[rng.IntN(2)]
			}
		}
		sum := checksum(b)
		var got uint16
		switch width := []int{2, 4, 16}[i%3]; width {
		case 2:
			off := 2 * rng.IntN(len(b)/2)
			old, new := binary.BigEndian.Uint16(b[off:]), uint16(rng.Uint32())
			binary.BigEndian.PutUint16(b[off:], new)
			got = packet.ChecksumUpdate16(sum, old, new)
		case 4:
			off := 2 * rng.IntN(len(b)/2-1)
			old, new := binary.BigEndian.Uint32(b[off:]), rng.Uint32()
			binary.BigEndian.PutUint32(b[off:], new)
			got = packet.ChecksumUpdate32(sum, old, new)
		case 16:
			off := 2 * rng.IntN(len(b)/2-7)
			old := [16]byte(b[off:])
			var new [16]byte
			for j := range new {
				new[j] = byte(rng.Uint32())
			}
			copy(b[off:], new[:])
			got = packet.ChecksumUpdate128(sum, &old, &new)
		}
		if want := checksum(b); got != want {
			t.Fatalf("update of %x: got %#04x, want %#04x", b, got, want)
		}
	}
}

// flowFrame is the input of buildFlow: one TCP or UDP packet.
type flowFrame struct {
	v6, tcp    bool
	src, dst   netip.Addr
	sport      uint16
	dport      uint16
	id, window uint16
	seq        uint32
	ttl        uint8
	payload    []byte
}

// buildFlow serializes f with gopacket, checksums computed in full.
func buildFlow(t testing.TB, f flowFrame) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	var nl gopacket.NetworkLayer
	var ip gopacket.SerializableLayer
	proto := layers.IPProtocolUDP
	if f.tcp {
		proto = layers.IPProtocolTCP
	}
	if f.v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		h := &layers.IPv6{Version: 6, HopLimit: f.ttl, NextHeader: proto, SrcIP: f.src.AsSlice(), DstIP: f.dst.AsSlice()}
		nl, ip = h, h
	} else {
		eth.EthernetType = layers.EthernetTypeIPv4
		h := &layers.IPv4{Version: 4, TTL: f.ttl, Id: f.id, Protocol: proto, SrcIP: f.src.AsSlice(), DstIP: f.dst.AsSlice()}
		nl, ip = h, h
	}
	var l4 gopacket.SerializableLayer
	if f.tcp {
		h := &layers.TCP{SrcPort: layers.TCPPort(f.sport), DstPort: layers.TCPPort(f.dport), Seq: f.seq, Window: f.window, ACK: true, PSH: true}
		if err := h.SetNetworkLayerForChecksum(nl); err != nil {
			t.Fatal(err)
		}
		l4 = h
	} else {
		h := &layers.UDP{SrcPort: layers.UDPPort(f.sport), DstPort: layers.UDPPort(f.dport)}
		if err := h.SetNetworkLayerForChecksum(nl); err != nil {
			t.Fatal(err)
		}
		l4 = h
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, l4, gopacket.Payload(f.payload)); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if !f.tcp {
		// gopacket leaves a computed 0 as is; RFC 768 sends it as 0xffff.
		l4off := 14 + 20
		if f.v6 {
			l4off = 14 + 40
		}
		if binary.BigEndian.Uint16(b[l4off+6:]) == 0 {
			binary.BigEndian.PutUint16(b[l4off+6:], 0xffff)
		}
	}
	return b
}

func randAddr(rng *rand.Rand, v6 bool) netip.Addr {
	var a [16]byte
	for i := range a {
		a[i] = byte(rng.Uint32())
	}
	if v6 {
		a[0] = 0x20 // not IPv4-mapped
		return netip.AddrFrom16(a)
	}
	return netip.AddrFrom4([4]byte(a[:4]))
}

// TestSetWithChecksumUpdate rewrites source, destination or both of random
// TCP/UDP frames in place and compares them byte for byte with gopacket's
// serialization of the rewritten packet, checksums recomputed in full.
func TestSetWithChecksumUpdate(t *testing.T) {
	rng := rand.New(rand.NewPCG(768, 793))
	for i := range 4000 {
		f := flowFrame{
			v6: rng.IntN(2) == 1, tcp: rng.IntN(2) == 1,
			sport: uint16(rng.Uint32()), dport: uint16(rng.Uint32()),
			id: uint16(rng.Uint32()), window: uint16(rng.Uint32()), seq: rng.Uint32(), ttl: uint8(rng.Uint32()),
			payload: make([]byte, rng.IntN(300)),
		}
		f.src, f.dst = randAddr(rng, f.v6), randAddr(rng, f.v6)
		for j := range f.payload {
			f.payload[j] = byte(rng.Uint32())
		}
		frame := buildFlow(t, f)
		var m packet.Meta
		if r := packet.Parse(frame, &m); r != packet.OK {
			t.Fatalf("Parse(%x) = %v, want ok", frame, r)
		}
		g := f
		which := i % 3
		if which != 1 {
			g.src, g.sport = randAddr(rng, f.v6), uint16(rng.Uint32())
			packet.SetSourceWithChecksumUpdate(frame, &m, g.src.As16(), g.sport)
		}
		if which != 0 {
			g.dst, g.dport = randAddr(rng, f.v6), uint16(rng.Uint32())
			packet.SetDestinationWithChecksumUpdate(frame, &m, g.dst.As16(), g.dport)
		}
		want := buildFlow(t, g)
		if !bytes.Equal(frame, want) {
			t.Fatalf("rewrite %+v to %+v:\n got %x\nwant %x", f, g, frame, want)
		}
		var wm packet.Meta
		packet.Parse(want, &wm)
		if m != wm {
			t.Fatalf("rewrite %+v to %+v: meta %+v, want %+v", f, g, m, wm)
		}
	}
}

func TestSetWithChecksumUpdateUDPZero(t *testing.T) {
	f := flowFrame{
		src: netip.MustParseAddr("198.51.100.7"), dst: netip.MustParseAddr("192.0.2.10"),
		sport: 40000, dport: 53, ttl: 64, payload: []byte("query"),
	}
	frame := buildFlow(t, f)
	binary.BigEndian.PutUint16(frame[14+20+6:], 0) // no checksum (RFC 768)
	var m packet.Meta
	if r := packet.Parse(frame, &m); r != packet.OK {
		t.Fatalf("Parse = %v", r)
	}
	packet.SetDestinationWithChecksumUpdate(frame, &m, netip.MustParseAddr("203.0.113.20").As16(), 5353)
	if got := binary.BigEndian.Uint16(frame[14+20+6:]); got != 0 {
		t.Errorf("UDP checksum after rewrite = %#04x, want 0 (none)", got)
	}
	if got := checksum(frame[14 : 14+20]); got != 0 {
		t.Errorf("IPv4 header checksum does not verify after rewrite: residue %#04x", got)
	}
}

func TestSetWithChecksumUpdateFamilyMismatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		v6   bool
		addr netip.Addr
	}{
		{"ipv6 address into ipv4 frame", false, netip.MustParseAddr("2001:db8::1")},
		{"ipv4-mapped address into ipv6 frame", true, netip.MustParseAddr("192.0.2.1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := flowFrame{v6: tc.v6, tcp: true, sport: 1, dport: 2, ttl: 64}
			f.src, f.dst = randAddr(rand.New(rand.NewPCG(1, 1)), tc.v6), randAddr(rand.New(rand.NewPCG(2, 2)), tc.v6)
			frame := buildFlow(t, f)
			var m packet.Meta
			packet.Parse(frame, &m)
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			packet.SetDestinationWithChecksumUpdate(frame, &m, tc.addr.As16(), 80)
		})
	}
}

func TestSetWithChecksumUpdateAllocs(t *testing.T) {
	f := flowFrame{v6: true, tcp: true, src: netip.MustParseAddr("2001:db8:1::7"), dst: netip.MustParseAddr("2001:db8::10"), sport: 40000, dport: 443, ttl: 64}
	frame := buildFlow(t, f)
	var m packet.Meta
	packet.Parse(frame, &m)
	a, b := netip.MustParseAddr("2001:db8::20").As16(), netip.MustParseAddr("2001:db8::10").As16()
	allocs := testing.AllocsPerRun(100, func() {
		packet.SetDestinationWithChecksumUpdate(frame, &m, a, 8080)
		packet.SetDestinationWithChecksumUpdate(frame, &m, b, 443)
	})
	if allocs != 0 {
		t.Errorf("SetDestinationWithChecksumUpdate allocates %v times per run, want 0", allocs)
	}
}

func BenchmarkSetDestinationWithChecksumUpdate(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		f := flowFrame{tcp: true, src: netip.MustParseAddr("198.51.100.7"), dst: netip.MustParseAddr("192.0.2.10"), sport: 40000, dport: 80, ttl: 64}
		real := netip.MustParseAddr("203.0.113.20").As16()
		if v6 {
			name = "ipv6"
			f = flowFrame{v6: true, tcp: true, src: netip.MustParseAddr("2001:db8:1::7"), dst: netip.MustParseAddr("2001:db8::10"), sport: 40000, dport: 443, ttl: 64}
			real = netip.MustParseAddr("2001:db8::20").As16()
		}
		frame := buildFlow(b, f)
		var m packet.Meta
		packet.Parse(frame, &m)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				packet.SetDestinationWithChecksumUpdate(frame, &m, real, 8080)
			}
		})
	}
}

func TestApplyUDP(t *testing.T) {
	var d packet.ChecksumDelta
	d.Update16(0x5555, 0x3285) // the RFC 1624 section 4 change: result 0x0000
	if got := d.Apply(0xdd2f); got != 0 {
		t.Fatalf("Apply(0xdd2f) = %#04x, want 0", got)
	}
	if got := d.ApplyUDP(0xdd2f); got != 0xffff {
		t.Errorf("ApplyUDP(0xdd2f) = %#04x, want 0xffff (RFC 768: computed 0 is sent as all ones)", got)
	}
	if got := d.ApplyUDP(0); got != 0 {
		t.Errorf("ApplyUDP(0) = %#04x, want 0 (no checksum stays none)", got)
	}
}

// TestPseudoHeaderSumFolds: PseudoHeaderSum adds 32-bit words without
// end-around carry; folded, it must equal the RFC 1071 sum of the
// pseudo-header's bytes.
func TestPseudoHeaderSumFolds(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for i := 0; i < 10000; i++ {
		ip := make([]byte, 40)
		for j := range ip {
			ip[j] = byte(rng.Uint32())
		}
		if i%7 == 0 {
			for j := range ip {
				ip[j] = 0xff
			}
		}
		v := uint8(4)
		addrs := ip[12:20]
		if i%2 == 1 {
			v, addrs = 6, ip[8:40]
		}
		proto := uint8(rng.IntN(256))
		l4len := rng.IntN(65536)
		want := packet.Checksum(addrs, uint64(proto)+uint64(l4len))
		if got := packet.Checksum(nil, packet.PseudoHeaderSum(ip, v, proto, l4len)); got != want {
			t.Fatalf("IPv%d % x proto %d len %d: checksum of PseudoHeaderSum = %#04x, want %#04x", v, addrs, proto, l4len, got, want)
		}
	}
}
