package packettest

import (
	"encoding/binary"
	"net"
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

// Exported builders, for the golden frames of other packages (modes,
// dataplane). The unexported ones above build this package's cases.

// MACs of the frames: the client's (or the previous hop's) and the
// director's.
var (
	ClientMAC   = clientMAC
	DirectorMAC = lbMAC
)

// Build serializes ls into a frame, lengths and checksums computed (TCP
// and UDP over the last network layer before them); Ethernet pads the
// frame to the 60-byte minimum as a NIC does. It panics on a layer
// gopacket cannot serialize: a bug in the test.
func Build(ls ...gopacket.SerializableLayer) []byte { return build(ls...) }

// Ether is an Ethernet header from src to dst.
func Ether(src, dst net.HardwareAddr, t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: t}
}

// IPv4 is an IPv4 header, TTL 64, identification 0x1234, DF set.
func IPv4(src, dst netip.Addr, p layers.IPProtocol) *layers.IPv4 { return ip4(src, dst, p) }

// IPv6 is an IPv6 header, hop limit 64.
func IPv6(src, dst netip.Addr, next layers.IPProtocol) *layers.IPv6 { return ip6(src, dst, next) }

// TCP is a TCP header with the given packet.TCPFlag* bits, seq 1000, ack
// 1001 if ACK is set, window 64240.
func TCP(sport, dport uint16, flags uint8) *layers.TCP {
	return &layers.TCP{
		SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport),
		Seq: 1000, Ack: uint32(flags>>4&1) * 1001, Window: 64240,
		FIN: flags&packet.TCPFlagFIN != 0, SYN: flags&packet.TCPFlagSYN != 0,
		RST: flags&packet.TCPFlagRST != 0, PSH: flags&packet.TCPFlagPSH != 0,
		ACK: flags&packet.TCPFlagACK != 0, URG: flags&packet.TCPFlagURG != 0,
		ECE: flags&packet.TCPFlagECE != 0, CWR: flags&packet.TCPFlagCWR != 0,
	}
}

// UDP is a UDP header.
func UDP(sport, dport uint16) *layers.UDP { return udp(sport, dport) }

// Packet describes a TCP or UDP frame, for tables of frames that differ in
// a few fields: copy one and change what a rewrite changes. The zero value
// of a field is its default.
type Packet struct {
	SrcMAC, DstMAC   net.HardwareAddr // default ClientMAC → DirectorMAC
	VLAN             uint16           // an 802.1Q tag with this VLAN ID, if not 0
	Src, Dst         netip.Addr       // the family of Src is the packet's
	SrcPort, DstPort uint16
	UDP              bool   // UDP, not TCP
	Flags            uint8  // TCP flags (packet.TCPFlag*)
	TTL              uint8  // TTL or hop limit; default 64
	TOS              uint8  // IPv4 TOS or IPv6 traffic class
	ID               uint16 // IPv4 identification; default 0x1234
	NoDF             bool   // IPv4 DF clear
	Options          bool   // an IPv4 Router Alert option (RFC 2113): IHL 6
	Payload          []byte
	NoUDPChecksum    bool    // UDP checksum 0 (none computed; IPv4)
	Tunnel           *Tunnel // if set, the packet inside this tunnel
}

// Tunnel is the outer headers of an encapsulated Packet.
type Tunnel struct {
	Src, Dst netip.Addr // outer addresses; the family of Src is the outer one
	Encap    string     // "ipip" (default), "gue" or "gre"
	SrcPort  uint16     // GUE: UDP source port
	Port     uint16     // GUE: UDP destination port
	Csum     bool       // GUE: UDP checksum; GRE: checksum present
	TTL      uint8      // default 64
	TOS      uint8
	ID       uint16 // outer IPv4 identification
	DF       bool   // outer IPv4 DF
}

// Frame builds the frame p describes.
func (p Packet) Frame() []byte {
	src, dst := p.SrcMAC, p.DstMAC
	if src == nil {
		src = ClientMAC
	}
	if dst == nil {
		dst = DirectorMAC
	}
	var ls []gopacket.SerializableLayer
	et := layers.EthernetTypeIPv4
	if p.Tunnel != nil && p.Tunnel.Src.Is6() || p.Tunnel == nil && p.Src.Is6() {
		et = layers.EthernetTypeIPv6
	}
	if p.VLAN != 0 {
		ls = append(ls, Ether(src, dst, layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: p.VLAN, Type: et})
	} else {
		ls = append(ls, Ether(src, dst, et))
	}
	if p.Tunnel != nil {
		ls = append(ls, p.Tunnel.layers(p.Src.Is6(), p.IP())...)
		return Build(ls...)
	}
	ls = append(ls, p.layers()...)
	b := Build(ls...)
	if p.NoUDPChecksum {
		l4 := 14 + 20
		if p.VLAN != 0 {
			l4 += 4
		}
		if p.Options {
			l4 += 4
		}
		if p.Src.Is6() {
			l4 += 20
		}
		b[l4+6], b[l4+7] = 0, 0
	}
	return b
}

// IP builds the IP packet of p alone, without Ethernet or padding.
func (p Packet) IP() []byte {
	q := p
	q.Tunnel, q.VLAN = nil, 0
	b := q.Frame()
	n := 14 + int(binary.BigEndian.Uint16(b[16:18]))
	if p.Src.Is6() {
		n = 14 + 40 + int(binary.BigEndian.Uint16(b[18:20]))
	}
	return b[14:n]
}

func (p Packet) layers() []gopacket.SerializableLayer {
	proto := layers.IPProtocolTCP
	if p.UDP {
		proto = layers.IPProtocolUDP
	}
	ttl := p.TTL
	if ttl == 0 {
		ttl = 64
	}
	var ls []gopacket.SerializableLayer
	if p.Src.Is6() {
		h := IPv6(p.Src, p.Dst, proto)
		h.HopLimit, h.TrafficClass = ttl, p.TOS
		ls = append(ls, h)
	} else {
		h := IPv4(p.Src, p.Dst, proto)
		if p.Options {
			h = ip4Options(p.Src, p.Dst)
			h.Protocol = proto
		}
		h.TTL, h.TOS = ttl, p.TOS
		if p.ID != 0 {
			h.Id = p.ID
		}
		if p.NoDF {
			h.Flags = 0
		}
		ls = append(ls, h)
	}
	if p.UDP {
		ls = append(ls, UDP(p.SrcPort, p.DstPort))
	} else {
		ls = append(ls, TCP(p.SrcPort, p.DstPort, p.Flags))
	}
	if len(p.Payload) > 0 {
		ls = append(ls, gopacket.Payload(p.Payload))
	}
	return ls
}

func (t *Tunnel) layers(inner6 bool, inner []byte) []gopacket.SerializableLayer {
	innerProto, innerType := layers.IPProtocolIPv4, layers.EthernetTypeIPv4
	if inner6 {
		innerProto, innerType = layers.IPProtocolIPv6, layers.EthernetTypeIPv6
	}
	proto := innerProto
	switch t.Encap {
	case "gue":
		proto = layers.IPProtocolUDP
	case "gre":
		proto = layers.IPProtocolGRE
	}
	ttl := t.TTL
	if ttl == 0 {
		ttl = 64
	}
	var ls []gopacket.SerializableLayer
	if t.Src.Is6() {
		h := IPv6(t.Src, t.Dst, proto)
		h.HopLimit, h.TrafficClass = ttl, t.TOS
		ls = append(ls, h)
	} else {
		h := IPv4(t.Src, t.Dst, proto)
		h.TTL, h.TOS, h.Id, h.Flags = ttl, t.TOS, t.ID, 0
		if t.DF {
			h.Flags = layers.IPv4DontFragment
		}
		ls = append(ls, h)
	}
	switch t.Encap {
	case "gue":
		// GUE variant 0, no options: version 0, C 0, Hlen 0, proto, flags 0.
		gue := append([]byte{0, byte(innerProto), 0, 0}, inner...)
		u := UDP(t.SrcPort, t.Port)
		must(u.SetNetworkLayerForChecksum(ls[0].(gopacket.NetworkLayer)))
		ls = append(ls, &udpNoCsum{UDP: u, zero: !t.Csum}, gopacket.Payload(gue))
	case "gre":
		ls = append(ls, &layers.GRE{ChecksumPresent: t.Csum, Protocol: innerType}, gopacket.Payload(inner))
	default:
		ls = append(ls, gopacket.Payload(inner))
	}
	return ls
}

// udpNoCsum is a UDP header whose checksum is left 0 if zero is set.
type udpNoCsum struct {
	*layers.UDP
	zero bool
}

func (u *udpNoCsum) SerializeTo(b gopacket.SerializeBuffer, opts gopacket.SerializeOptions) error {
	if err := u.UDP.SerializeTo(b, opts); err != nil {
		return err
	}
	if u.zero {
		b.Bytes()[6], b.Bytes()[7] = 0, 0
	}
	return nil
}

// More addresses for the forwarding methods' frames, from the
// documentation prefixes.
var (
	Real6     = netip.MustParseAddr("2001:db8:2::20")
	Laddr4    = netip.MustParseAddr("203.0.113.1")   // a director's FULLNAT local address
	Laddr6    = netip.MustParseAddr("2001:db8:2::1") //
	Director4 = netip.MustParseAddr("203.0.113.2")   // a director's own address, towards the real servers
	Director6 = netip.MustParseAddr("2001:db8:2::2") //
)

// MACs of next hops: a real server's and the router towards clients.
var (
	RealMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x20}
	RouterMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xfe}
)

// DNSQuery is a DNS query for "a." IN A, 19 bytes, a UDP payload gopacket
// decodes.
var DNSQuery = []byte(dnsQuery)

// ICMPError is an ICMP (IPv4 addresses) or ICMPv6 error message from src
// to dst, with type typ, code code and word as its second 32-bit word (the
// next-hop MTU of a fragmentation needed, RFC 1191, in its low 16 bits;
// the MTU of a packet too big), quoting quote, on Ethernet from srcMAC to
// dstMAC. Checksums are computed.
func ICMPError(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, typ, code uint8, word uint32, quote []byte) []byte {
	if src.Is4() {
		return build(Ether(srcMAC, dstMAC, layers.EthernetTypeIPv4), ip4(src, dst, layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Id: uint16(word >> 16), Seq: uint16(word)},
			gopacket.Payload(quote))
	}
	ip := ip6(src, dst, layers.IPProtocolICMPv6)
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	must(icmp.SetNetworkLayerForChecksum(ip))
	w := binary.BigEndian.AppendUint32(nil, word)
	return build(Ether(srcMAC, dstMAC, layers.EthernetTypeIPv6), ip, icmp, gopacket.Payload(append(w, quote...)))
}

// Quote is the IP packet ls serialize to (lengths and checksums
// computed), cut to its first n bytes if n > 0: what an ICMP error quotes.
func Quote(n int, ls ...gopacket.SerializableLayer) []byte {
	b := build(ls...)
	if n > 0 && n < len(b) {
		b = b[:n]
	}
	return b
}
