package packet_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/xlbproject/xlb/internal/packet"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
)

// TestSumRandom compares the 64-bit Sum with the plain 16-bit reference
// on random data of every length up to 300, odd ones included, and on
// all-0xff data, which carries the most.
func TestSumRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1071, 1))
	for n := 0; n < 300; n++ {
		for k := 0; k < 20; k++ {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(rng.Uint32())
				if k == 0 {
					b[i] = 0xff
				}
			}
			init := rng.Uint64() >> uint(rng.IntN(64))
			// The reference: init folded, then b in 16-bit words.
			ref := checksum(append(binary.BigEndian.AppendUint64(nil, init), b...))
			if got := packet.Checksum(b, init); got != ref {
				t.Fatalf("Checksum(%d bytes, %#x) = %#04x, want %#04x", n, init, got, ref)
			}
		}
	}
}

func frames() [][]byte {
	var fs [][]byte
	for _, p := range []pt.Packet{
		{Src: pt.Client4, Dst: pt.VIP4, SrcPort: 40000, DstPort: 80, Flags: packet.TCPFlagACK, Payload: []byte("hello, world")},
		{Src: pt.Client4, Dst: pt.VIP4, SrcPort: 40000, DstPort: 53, UDP: true, Payload: pt.DNSQuery},
		{Src: pt.Client6, Dst: pt.VIP6, SrcPort: 40000, DstPort: 443, Flags: packet.TCPFlagSYN, Payload: []byte("odd")},
		{Src: pt.Client6, Dst: pt.VIP6, SrcPort: 40000, DstPort: 53, UDP: true, Payload: pt.DNSQuery},
	} {
		fs = append(fs, p.Frame())
	}
	return fs
}

func parse(t *testing.T, b []byte) *packet.Meta {
	t.Helper()
	var m packet.Meta
	if r := packet.Parse(b, &m); r != packet.OK {
		t.Fatalf("Parse = %v", r)
	}
	return &m
}

// TestCompleteL4Checksum: a frame whose checksum field holds the folded
// pseudo-header sum, as Linux leaves a CHECKSUM_PARTIAL one for the NIC,
// is completed to the checksum a full computation gives; complete and
// wrong checksums are left alone.
func TestCompleteL4Checksum(t *testing.T) {
	for _, b := range frames() {
		m := parse(t, b)
		if !packet.L4ChecksumOK(b, m) {
			t.Fatalf("golden frame's checksum does not verify")
		}
		off := m.L4Off + 16
		if m.Proto == packet.ProtoUDP {
			off = m.L4Off + 6
		}
		want := binary.BigEndian.Uint16(b[off:])
		ip := b[m.L3Off:]
		partial := append([]byte(nil), b...)
		ps := packet.PseudoHeaderSum(ip, m.Version, m.Proto, m.L4Len())
		for ps > 0xffff {
			ps = ps>>16 + ps&0xffff
		}
		binary.BigEndian.PutUint16(partial[off:], uint16(ps))
		if packet.L4ChecksumOK(partial, m) {
			t.Fatalf("partial checksum verifies")
		}
		if !packet.CompleteL4Checksum(partial, m) || !bytes.Equal(partial, b) {
			t.Errorf("CompleteL4Checksum: checksum %#04x, want %#04x", binary.BigEndian.Uint16(partial[off:]), want)
		}
		if packet.CompleteL4Checksum(b, m) {
			t.Errorf("CompleteL4Checksum changed a complete checksum")
		}
		wrong := append([]byte(nil), b...)
		wrong[off] ^= 0x40
		if packet.CompleteL4Checksum(wrong, m) {
			t.Errorf("CompleteL4Checksum changed a wrong checksum that is not partial")
		}
		zero := append([]byte(nil), b...)
		zero[off], zero[off+1] = 0, 0
		packet.SetL4Checksum(zero, m)
		if !bytes.Equal(zero, b) {
			t.Errorf("SetL4Checksum = %#04x, want %#04x", binary.BigEndian.Uint16(zero[off:]), want)
		}
	}
	b := frames()[0]
	m := parse(t, b)
	if n := testing.AllocsPerRun(100, func() { packet.CompleteL4Checksum(b, m) }); n != 0 {
		t.Errorf("CompleteL4Checksum allocates %v times", n)
	}
}

// TestDecrementTTL: the incremental IPv4 header checksum update equals a
// recomputation for every TTL, the carries included.
func TestDecrementTTL(t *testing.T) {
	for ttl := 2; ttl < 256; ttl++ {
		for _, id := range []uint16{0, 0x1234, 0xffff, 0xfeff} {
			b := pt.Packet{Src: pt.Client4, Dst: pt.VIP4, TTL: uint8(ttl), ID: id}.Frame()
			want := pt.Packet{Src: pt.Client4, Dst: pt.VIP4, TTL: uint8(ttl - 1), ID: id}.Frame()
			packet.DecrementTTLWithChecksumUpdate(b[14:], 4)
			if !bytes.Equal(b, want) {
				t.Fatalf("TTL %d, id %#x: % x, want % x", ttl, id, b[14:34], want[14:34])
			}
		}
	}
	b := pt.Packet{Src: pt.Client6, Dst: pt.VIP6, TTL: 9}.Frame()
	packet.DecrementTTLWithChecksumUpdate(b[14:], 6)
	if b[14+7] != 8 {
		t.Errorf("hop limit 9 → %d, want 8", b[14+7])
	}
}

// TestSetAddrPortsWithChecksumUpdate: both ends rewritten at once equal
// the frame built with the new ends.
func TestSetAddrPortsWithChecksumUpdate(t *testing.T) {
	for _, udp := range []bool{false, true} {
		for _, v6 := range []bool{false, true} {
			p := pt.Packet{Src: pt.Client4, Dst: pt.VIP4, SrcPort: 40000, DstPort: 80, UDP: udp, Payload: []byte("x")}
			q := pt.Packet{Src: pt.Laddr4, Dst: pt.Real4, SrcPort: 5000, DstPort: 8080, UDP: udp, Payload: []byte("x")}
			if v6 {
				p.Src, p.Dst, q.Src, q.Dst = pt.Client6, pt.VIP6, pt.Laddr6, pt.Real6
			}
			b, want := p.Frame(), q.Frame()
			m := parse(t, b)
			packet.SetAddrPortsWithChecksumUpdate(b, m, q.Src.As16(), q.SrcPort, q.Dst.As16(), q.DstPort)
			if !bytes.Equal(b, want) {
				t.Errorf("udp %v v6 %v: % x, want % x", udp, v6, b, want)
			}
			if m.SrcAddr() != q.Src || m.DstAddr() != q.Dst || m.SrcPort != q.SrcPort || m.DstPort != q.DstPort {
				t.Errorf("Meta not updated: %+v", m)
			}
		}
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	buf := make([]byte, 1500)
	b.SetBytes(1500)
	for b.Loop() {
		packet.Checksum(buf, 0)
	}
}
