package packettest

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/packet"
)

// build serializes ls with lengths and checksums computed; Ethernet pads the
// frame to the 60-byte minimum as a NIC does.
func build(ls ...gopacket.SerializableLayer) []byte {
	var nl gopacket.NetworkLayer
	for _, l := range ls {
		if n, ok := l.(gopacket.NetworkLayer); ok {
			nl = n
		}
	}
	for _, l := range ls {
		switch t := l.(type) {
		case *layers.TCP:
			must(t.SetNetworkLayerForChecksum(nl))
		case *layers.UDP:
			must(t.SetNetworkLayerForChecksum(nl))
		}
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	must(gopacket.SerializeLayers(buf, opts, ls...))
	return buf.Bytes()
}

func must(err error) {
	if err != nil {
		panic("packettest: " + err.Error())
	}
}

func eth(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC, EthernetType: t}
}

func ip4(src, dst netip.Addr, p layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{
		Version:  4,
		TTL:      64,
		Id:       0x1234,
		Flags:    layers.IPv4DontFragment,
		Protocol: p,
		SrcIP:    src.AsSlice(),
		DstIP:    dst.AsSlice(),
	}
}

// ip4Options is a TCP packet header with a 4-byte Router Alert option
// (RFC 2113), so IHL is 6.
func ip4Options(src, dst netip.Addr) *layers.IPv4 {
	h := ip4(src, dst, layers.IPProtocolTCP)
	h.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}}
	return h
}

func fragment(h *layers.IPv4, flags layers.IPv4Flag, offset8 uint16) *layers.IPv4 {
	h.Flags = flags
	h.FragOffset = offset8
	return h
}

func ip6(src, dst netip.Addr, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{
		Version:    6,
		HopLimit:   64,
		NextHeader: next,
		SrcIP:      src.AsSlice(),
		DstIP:      dst.AsSlice(),
	}
}

type tcpFlags int

const (
	syn tcpFlags = iota
	synAck
)

func tcp(sport, dport uint16, f tcpFlags) *layers.TCP {
	t := &layers.TCP{
		SrcPort: layers.TCPPort(sport),
		DstPort: layers.TCPPort(dport),
		Seq:     1000,
		Window:  64240,
		SYN:     true,
	}
	if f == synAck {
		t.ACK = true
		t.Ack = 1001
	}
	return t
}

// tcpBytes is a 20-byte TCP header with a zero checksum.
func tcpBytes(sport, dport uint16, f tcpFlags) []byte {
	buf := gopacket.NewSerializeBuffer()
	must(tcp(sport, dport, f).SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}))
	return buf.Bytes()
}

func udp(sport, dport uint16) *layers.UDP {
	return &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
}

// dnsQuery is a DNS query for "a." IN A, 19 bytes (RFC 1035 section 4.1).
var dnsQuery = gopacket.Payload{
	0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // id 0x1234, RD, 1 question
	1, 'a', 0, // QNAME a.
	0, 1, 0, 1, // QTYPE A, QCLASS IN
}

func arpRequest() []gopacket.SerializableLayer {
	return []gopacket.SerializableLayer{
		&layers.Ethernet{SrcMAC: clientMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{
			AddrType:          layers.LinkTypeEthernet,
			Protocol:          layers.EthernetTypeIPv4,
			HwAddressSize:     6,
			ProtAddressSize:   4,
			Operation:         layers.ARPRequest,
			SourceHwAddress:   clientMAC,
			SourceProtAddress: Client4.AsSlice(),
			DstHwAddress:      make([]byte, 6),
			DstProtAddress:    VIP4.AsSlice(),
		},
	}
}

// hopByHopTCP is an IPv6 TCP SYN behind an 8-byte Hop-by-Hop Options header
// holding only padding (RFC 8200 section 4.3).
func hopByHopTCP() []byte {
	ext := []byte{byte(layers.IPProtocolTCP), 0, 1, 4, 0, 0, 0, 0} // next TCP, 8 bytes, PadN
	seg := tcpBytes(ClientPort, HTTPS, syn)
	return build(eth(layers.EthernetTypeIPv6), ip6(Client6, VIP6, layers.IPProtocolIPv6HopByHop), gopacket.Payload(append(ext, seg...)))
}

func icmp6Echo() []byte {
	ip := ip6(Client6, VIP6, layers.IPProtocolICMPv6)
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
	must(icmp.SetNetworkLayerForChecksum(ip))
	return build(eth(layers.EthernetTypeIPv6), ip, icmp, &layers.ICMPv6Echo{Identifier: 1, SeqNumber: 1})
}

func setByte(b []byte, off int, v byte) []byte {
	b[off] = v
	return b
}

func setBE16(b []byte, off int, v uint16) []byte {
	binary.BigEndian.PutUint16(b[off:], v)
	return b
}

func meta4(l3, l4, iplen int, proto uint8, src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags uint8) packet.Meta {
	return packet.Meta{
		L3Off: l3, L4Off: l4, IPLen: iplen,
		Version: 4, Proto: proto, TCPFlags: flags,
		Src: src.As16(), Dst: dst.As16(),
		SrcPort: sport, DstPort: dport,
	}
}

func meta6(l3, l4, iplen int, proto uint8, src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags uint8) packet.Meta {
	m := meta4(l3, l4, iplen, proto, src, sport, dst, dport, flags)
	m.Version = 6
	return m
}
