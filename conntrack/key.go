package conntrack

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// IP protocol numbers the table knows by name.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
	ProtoSCTP   uint8 = 132
)

// Key identifies one direction of a flow: protocol, source and destination
// address and port. IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d),
// so one fixed 40-byte comparable value covers both families. For ICMP
// echo flows the dataplane puts the echo identifier in SrcPort.
//
// The forward key of a connection is client → virtual service
// (Src = client, Dst = VIP); the reply key of a NAT connection is
// real server → client (Masq) or real server → local address (FullNAT).
type Key struct {
	Src     [16]byte
	Dst     [16]byte
	SrcPort uint16
	DstPort uint16
	Proto   uint8
	kind    uint8 // kindConn, or kindTemplate for persistence templates
	_       [2]byte
}

const (
	kindConn     uint8 = 0
	kindTemplate uint8 = 1
)

// KeyFrom builds a key from control-plane addresses; IPv4 addresses (and
// IPv4-mapped ones) are stored mapped.
func KeyFrom(proto uint8, src netip.AddrPort, dst netip.AddrPort) Key {
	return Key{
		Src: src.Addr().As16(), SrcPort: src.Port(),
		Dst: dst.Addr().As16(), DstPort: dst.Port(),
		Proto: proto,
	}
}

// SetFlow makes k the connection key of the flow src:sport → dst:dport
// of protocol proto, as KeyFrom does from 16-byte addresses. It copies
// the addresses as 8-byte words, the width packet.Parse writes them in
// and the hash reads them in: a 16-byte copy of an address stored as two
// words a moment ago stalls on store-to-load forwarding (about 8 ns a
// frame in the dataplane's BenchmarkWorkerMethods).
func (k *Key) SetFlow(src, dst *[16]byte, sport, dport uint16, proto uint8) {
	le := binary.LittleEndian
	le.PutUint64(k.Src[0:8], le.Uint64(src[0:8]))
	le.PutUint64(k.Src[8:16], le.Uint64(src[8:16]))
	le.PutUint64(k.Dst[0:8], le.Uint64(dst[0:8]))
	le.PutUint64(k.Dst[8:16], le.Uint64(dst[8:16]))
	k.SrcPort, k.DstPort, k.Proto, k.kind = sport, dport, proto, kindConn
}

// equal compares the significant fields (not the padding) without a
// call to the runtime's memequal, which a 40-byte struct comparison
// makes.
func (k *Key) equal(o *Key) bool {
	return k.Src == o.Src && k.Dst == o.Dst &&
		k.SrcPort == o.SrcPort && k.DstPort == o.DstPort && k.Proto == o.Proto && k.kind == o.kind
}

// Template reports whether k is the key of a persistence template.
func (k *Key) Template() bool { return k.kind == kindTemplate }

// SrcAddr and DstAddr return the addresses as netip values (IPv4 unmapped).
func (k *Key) SrcAddr() netip.Addr { return addrOf(k.Src) }
func (k *Key) DstAddr() netip.Addr { return addrOf(k.Dst) }

// Reverse returns the key of the opposite direction (as seen in the header
// embedded in an ICMP error, for instance).
func (k Key) Reverse() Key {
	k.Src, k.Dst = k.Dst, k.Src
	k.SrcPort, k.DstPort = k.DstPort, k.SrcPort
	return k
}

func addrOf(a [16]byte) netip.Addr { return netip.AddrFrom16(a).Unmap() }

// v4mappedPrefix is ::ffff:0:0/96.
var v4mappedPrefix = [12]byte{10: 0xff, 11: 0xff}

func isV4(a *[16]byte) bool { return [12]byte(a[:12]) == v4mappedPrefix }

// maskAddr keeps the first bits of a (IPv4 bits counted from the IPv4
// part when a is IPv4-mapped) and clears the rest.
func maskAddr(a [16]byte, v4bits, v6bits int) [16]byte {
	n := v6bits
	if isV4(&a) {
		n = 96 + v4bits
	}
	for i := range a {
		switch {
		case n >= 8:
			n -= 8
		case n <= 0:
			a[i] = 0
		default:
			a[i] &= byte(0xff << (8 - n))
			n = 0
		}
	}
	return a
}

// seed is the per-table hash seed; New draws it from crypto-quality
// randomness so flows cannot be chosen to collide.
type seed [6]uint64

// hash is a seeded multiply-fold hash of the 37 significant bytes of k
// (the wyhash construction: 64×64→128-bit multiplies folded by xor). It
// costs about 3 ns against about 10 ns for xxhash.Sum64 over 40 bytes,
// and reads the fields, never the padding.
func (s *seed) hash(k *Key) uint64 {
	a := binary.LittleEndian.Uint64(k.Src[0:8])
	b := binary.LittleEndian.Uint64(k.Src[8:16])
	c := binary.LittleEndian.Uint64(k.Dst[0:8])
	d := binary.LittleEndian.Uint64(k.Dst[8:16])
	e := uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.Proto)<<32 | uint64(k.kind)<<40
	h := mum(a^s[0], b^s[1]) ^ mum(c^s[2], d^s[3])
	return mum(h^s[4], e^s[5])
}

// replyHash is hash(&e.replyKey()) without building the key: a 40-byte
// copy of fields just written, read back in 8-byte words, costs a store
// forwarding stall (addReply's replyKey was 3% of a FULLNAT connection's
// ~280 ns in BenchmarkWorkerNewConn). TestReplyHash holds it to hash.
func (s *seed) replyHash(e *Entry) uint64 {
	a := binary.LittleEndian.Uint64(e.daddr[0:8])
	b := binary.LittleEndian.Uint64(e.daddr[8:16])
	c := binary.LittleEndian.Uint64(e.laddr[0:8])
	d := binary.LittleEndian.Uint64(e.laddr[8:16])
	x := uint64(e.dport) | uint64(e.lport)<<16 | uint64(e.key.Proto)<<32 | uint64(kindConn)<<40
	h := mum(a^s[0], b^s[1]) ^ mum(c^s[2], d^s[3])
	return mum(h^s[4], x^s[5])
}

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}
