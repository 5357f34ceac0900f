// Package packettest holds the golden frames that both the XDP program
// (bpf) and the Go parser (internal/packet) are tested against, so that the
// two classifications cannot drift apart.
//
// Frames are built with gopacket. Each case carries the line tcpdump -nn -e
// prints for it (for tcpdump's version of what the bytes are, not ours).
package packettest

import (
	"net"
	"net/netip"
	"strconv"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/packet"
)

// Addresses of the cases, from the documentation prefixes of RFC 5737 and
// RFC 3849.
var (
	Client4 = netip.MustParseAddr("198.51.100.7")
	VIP4    = netip.MustParseAddr("192.0.2.10")
	Real4   = netip.MustParseAddr("203.0.113.20")
	Client6 = netip.MustParseAddr("2001:db8:1::7")
	VIP6    = netip.MustParseAddr("2001:db8::10")
)

// Ports of the cases.
const (
	ClientPort = 40000
	HTTP       = 80
	DNS        = 53
	SSH        = 22
	HTTPS      = 443
	RealPort   = 8080
)

// Endpoint is an address, port and IP protocol.
type Endpoint struct {
	Addr  netip.Addr
	Port  uint16
	Proto uint8
}

// Services are the virtual services the cases are classified against.
var Services = []Endpoint{
	{VIP4, HTTP, packet.ProtoTCP},
	{VIP4, DNS, packet.ProtoUDP},
	{VIP6, HTTPS, packet.ProtoTCP},
}

// Reals are the real servers whose replies are steered.
var Reals = []Endpoint{
	{Real4, RealPort, packet.ProtoTCP},
}

// Steer is what the XDP program's lookup does with a frame Parse accepts.
type Steer int

const (
	NoService Steer = iota // neither to a service nor from a real: pass
	ToService              // destination is in Services: redirect
	FromReal               // source is in Reals: redirect as a reply
)

// Case is one golden frame.
type Case struct {
	Name    string
	Tcpdump string        // tcpdump -nn -e
	Frame   []byte        // Ethernet frame, as the NIC delivers it
	Reason  packet.Reason // Parse's verdict
	Meta    packet.Meta   // Parse's result when Reason is OK
	Steer   Steer         // the XDP lookup's result when Reason is OK
}

var (
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	lbMAC     = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
)

// Cases returns the golden frames, built afresh so callers may modify them.
func Cases() []Case {
	return []Case{
		{
			Name:    "tcp syn to vip:80",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: 198.51.100.7.40000 > 192.0.2.10.80: Flags [S], seq 1000, win 64240, length 0",
			Frame:   build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn)),
			Meta:    meta4(14, 34, 40, packet.ProtoTCP, Client4, ClientPort, VIP4, HTTP, packet.TCPFlagSYN),
			Steer:   ToService,
		},
		{
			Name:    "udp to vip:53",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 61: 198.51.100.7.40000 > 192.0.2.10.53: 4660+ A? a. (19)",
			Frame:   build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolUDP), udp(ClientPort, DNS), dnsQuery),
			Meta:    meta4(14, 34, 47, packet.ProtoUDP, Client4, ClientPort, VIP4, DNS, 0),
			Steer:   ToService,
		},
		{
			Name:    "tcp to vip:22, not a service",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: 198.51.100.7.40000 > 192.0.2.10.22: Flags [S], seq 1000, win 64240, length 0",
			Frame:   build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, SSH, syn)),
			Meta:    meta4(14, 34, 40, packet.ProtoTCP, Client4, ClientPort, VIP4, SSH, packet.TCPFlagSYN),
			Steer:   NoService,
		},
		{
			Name:    "tcp to udp service port vip:53",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: 198.51.100.7.40000 > 192.0.2.10.53: Flags [S], seq 1000, win 64240, length 0",
			Frame:   build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, DNS, syn)),
			Meta:    meta4(14, 34, 40, packet.ProtoTCP, Client4, ClientPort, VIP4, DNS, packet.TCPFlagSYN),
			Steer:   NoService,
		},
		{
			Name:    "arp who-has vip",
			Tcpdump: "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 60: Request who-has 192.0.2.10 tell 198.51.100.7, length 46",
			Frame:   build(arpRequest()...),
			Reason:  packet.ARP,
		},
		{
			Name:    "icmp echo to vip",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: 198.51.100.7 > 192.0.2.10: ICMP echo request, id 1, seq 1, length 8",
			Frame:   build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 1, Seq: 1}),
			Reason:  packet.NotTCPUDP,
		},
		{
			Name:    "lldp, not ip",
			Tcpdump: "02:00:00:00:00:01 > 01:80:c2:00:00:0e, ethertype LLDP (0x88cc), length 60: LLDP, length 46",
			Frame:   build(&layers.Ethernet{SrcMAC: clientMAC, DstMAC: net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0x0e}, EthernetType: layers.EthernetTypeLinkLayerDiscovery}),
			Reason:  packet.NotIP,
		},
		{
			Name:    "ipv6 tcp syn to [vip6]:443",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 74: 2001:db8:1::7.40000 > 2001:db8::10.443: Flags [S], seq 1000, win 64240, length 0",
			Frame:   build(eth(layers.EthernetTypeIPv6), ip6(Client6, VIP6, layers.IPProtocolTCP), tcp(ClientPort, HTTPS, syn)),
			Meta:    meta6(14, 54, 60, packet.ProtoTCP, Client6, ClientPort, VIP6, HTTPS, packet.TCPFlagSYN),
			Steer:   ToService,
		},
		{
			Name:    "ipv6 udp to [vip6]:443, tcp-only service",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 62: 2001:db8:1::7.40000 > 2001:db8::10.443: UDP, length 0",
			Frame:   build(eth(layers.EthernetTypeIPv6), ip6(Client6, VIP6, layers.IPProtocolUDP), udp(ClientPort, HTTPS)),
			Meta:    meta6(14, 54, 48, packet.ProtoUDP, Client6, ClientPort, VIP6, HTTPS, 0),
			Steer:   NoService,
		},
		{
			Name:    "ipv6 hop-by-hop then tcp to [vip6]:443",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 82: 2001:db8:1::7 > 2001:db8::10: HBH 40000 > 443: Flags [S], seq 1000, win 64240, length 0",
			Frame:   hopByHopTCP(),
			Reason:  packet.IPv6Ext,
		},
		{
			Name:    "icmpv6 echo to vip6",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 62: 2001:db8:1::7 > 2001:db8::10: ICMP6, echo request, id 1, seq 1, length 8",
			Frame:   icmp6Echo(),
			Reason:  packet.NotTCPUDP,
		},
		{
			Name:    "ipv4 options (router alert), tcp syn to vip:80",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: 198.51.100.7.40000 > 192.0.2.10.80: Flags [S], seq 1000, win 64240, length 0",
			Frame:   build(eth(layers.EthernetTypeIPv4), ip4Options(Client4, VIP4), tcp(ClientPort, HTTP, syn)),
			Meta:    meta4(14, 38, 44, packet.ProtoTCP, Client4, ClientPort, VIP4, HTTP, packet.TCPFlagSYN),
			Steer:   ToService,
		},
		{
			Name:    "vlan 100, tcp syn to vip:80",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype 802.1Q (0x8100), length 60: vlan 100, p 0, ethertype IPv4 (0x0800), 198.51.100.7.40000 > 192.0.2.10.80: Flags [S], seq 1000, win 64240, length 0",
			Frame:   build(eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}, ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn)),
			Meta:    meta4(18, 38, 40, packet.ProtoTCP, Client4, ClientPort, VIP4, HTTP, packet.TCPFlagSYN),
			Steer:   ToService,
		},
		{
			Name:    "syn-ack from real 203.0.113.20:8080",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: 203.0.113.20.8080 > 198.51.100.7.40000: Flags [S.], seq 1000, ack 1001, win 64240, length 0",
			Frame:   build(eth(layers.EthernetTypeIPv4), ip4(Real4, Client4, layers.IPProtocolTCP), tcp(RealPort, ClientPort, synAck)),
			Meta:    meta4(14, 34, 40, packet.ProtoTCP, Real4, RealPort, Client4, ClientPort, packet.TCPFlagSYN|packet.TCPFlagACK),
			Steer:   FromReal,
		},
		{
			Name:    "tcp from real's address, other port",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: 203.0.113.20.22 > 198.51.100.7.40000: Flags [S.], seq 1000, ack 1001, win 64240, length 0",
			Frame:   build(eth(layers.EthernetTypeIPv4), ip4(Real4, Client4, layers.IPProtocolTCP), tcp(SSH, ClientPort, synAck)),
			Meta:    meta4(14, 34, 40, packet.ProtoTCP, Real4, SSH, Client4, ClientPort, packet.TCPFlagSYN|packet.TCPFlagACK),
			Steer:   NoService,
		},
		{
			Name:    "ipv4 first fragment (MF, offset 0), udp to vip:53",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 61: 198.51.100.7.40000 > 192.0.2.10.53: 4660+ A? a. (19)",
			Frame:   build(eth(layers.EthernetTypeIPv4), fragment(ip4(Client4, VIP4, layers.IPProtocolUDP), layers.IPv4MoreFragments, 0), udp(ClientPort, DNS), dnsQuery),
			Reason:  packet.Fragment,
		},
		{
			Name:    "ipv4 non-first fragment (offset 1480), udp to vip",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: 198.51.100.7 > 192.0.2.10: ip-proto-17",
			Frame:   build(eth(layers.EthernetTypeIPv4), fragment(ip4(Client4, VIP4, layers.IPProtocolUDP), 0, 185), gopacket.Payload("last bytes")),
			Reason:  packet.Fragment,
		},
		{
			Name:    "truncated tcp header: 10 bytes in ip, padding after",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: 198.51.100.7.40000 > 192.0.2.10.80:  [|tcp]",
			Frame:   build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolTCP), gopacket.Payload(tcpBytes(ClientPort, HTTP, syn)[:10])),
			Reason:  packet.Malformed,
		},
		{
			Name:    "tcp data offset 4 (< 5)",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: 198.51.100.7.40000 > 192.0.2.10.80:  tcp 4 [bad hdr length 16 - too short, < 20]",
			Frame:   setByte(build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn)), 34+12, 0x40),
			Reason:  packet.Malformed,
		},
		{
			Name:    "tcp data offset beyond the segment",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: 198.51.100.7.40000 > 192.0.2.10.80: Flags [S] [bad hdr length 24 - too long, > 20]",
			Frame:   setByte(build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn)), 34+12, 0x60),
			Reason:  packet.Malformed,
		},
		{
			Name:    "ipv4 ihl 4 (< 5)",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: bad-hlen 16",
			Frame:   setByte(build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn)), 14, 0x44),
			Reason:  packet.Malformed,
		},
		{
			Name:    "ipv4 total length beyond the frame",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: truncated-ip - 54 bytes missing! 198.51.100.7.40000 > 192.0.2.10.80: Flags [S], seq 1000:1060, win 64240, length 60: HTTP",
			Frame:   setBE16(build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn)), 14+2, 100),
			Reason:  packet.Malformed,
		},
		{
			Name:    "ipv4 total length below ihl",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: bad-len 19",
			Frame:   setBE16(build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn)), 14+2, 19),
			Reason:  packet.Malformed,
		},
		{
			Name:    "ethertype ipv4, version 6",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: IP6, wrong link-layer encapsulation (invalid)",
			Frame:   setByte(build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn)), 14, 0x65),
			Reason:  packet.Malformed,
		},
		{
			Name:    "ipv4 header cut by the frame end",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 30:  [|ip]",
			Frame:   build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn))[:30],
			Reason:  packet.Malformed,
		},
		{
			Name:    "udp length beyond the ip payload",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 61: 198.51.100.7.40000 > 192.0.2.10.53: 4660+ A? a. (19)",
			Frame:   setBE16(build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolUDP), udp(ClientPort, DNS), dnsQuery), 34+4, 100),
			Reason:  packet.Malformed,
		},
		{
			Name:    "udp length 7 (< 8)",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 61: 198.51.100.7.40000 > 192.0.2.10.53: truncated-udplength 7",
			Frame:   setBE16(build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolUDP), udp(ClientPort, DNS), dnsQuery), 34+4, 7),
			Reason:  packet.Malformed,
		},
		{
			Name:    "ipv6 payload length beyond the frame",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 74: truncated-ip6 - 80 bytes missing!2001:db8:1::7.40000 > 2001:db8::10.443: Flags [S], seq 1000:1080, win 64240, length 80",
			Frame:   setBE16(build(eth(layers.EthernetTypeIPv6), ip6(Client6, VIP6, layers.IPProtocolTCP), tcp(ClientPort, HTTPS, syn)), 14+4, 100),
			Reason:  packet.Malformed,
		},
		{
			Name:    "ipv6 header cut by the frame end",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 50:  [|ip6]",
			Frame:   build(eth(layers.EthernetTypeIPv6), ip6(Client6, VIP6, layers.IPProtocolTCP), tcp(ClientPort, HTTPS, syn))[:50],
			Reason:  packet.Malformed,
		},
		{
			Name:    "vlan tag cut by the frame end",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02,  [|vlan]",
			Frame:   build(eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}, ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn))[:16],
			Reason:  packet.Malformed,
		},
	}
}

// Lookup is the XDP program's lookup over Services and Reals, for a frame
// Parse accepted: the destination is tried first, then the source.
func Lookup(m *packet.Meta) Steer {
	dst := Endpoint{m.DstAddr(), m.DstPort, m.Proto}
	src := Endpoint{m.SrcAddr(), m.SrcPort, m.Proto}
	for _, s := range Services {
		if s == dst {
			return ToService
		}
	}
	for _, r := range Reals {
		if r == src {
			return FromReal
		}
	}
	return NoService
}

func (s Steer) String() string {
	switch s {
	case NoService:
		return "no service"
	case ToService:
		return "to service"
	case FromReal:
		return "from real"
	}
	return "Steer(" + strconv.Itoa(int(s)) + ")"
}
