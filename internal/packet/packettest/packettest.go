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
	// Router4 and Router6 are routers on the client's path, which send
	// ICMP errors about the packets they cannot forward.
	Router4 = netip.MustParseAddr("198.51.100.1")
	Router6 = netip.MustParseAddr("2001:db8:1::1")
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
	Admit   packet.Reason // Filter().Admit's verdict when Steer is not NoService
}

var (
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	lbMAC     = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	otherMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x03}
)

// LBMAC is the director's MAC address, the destination of the cases' frames.
var LBMAC = [6]byte(lbMAC)

// VLANs are the VLAN IDs the director serves in the cases.
var VLANs = []uint16{100}

// Filter is the director's filter of the cases: LBMAC, VLANs.
func Filter() *packet.Filter { return packet.NewFilter(LBMAC, VLANs) }

// Cases returns the golden frames, built afresh so callers may modify them.
func Cases() []Case {
	cases := []Case{
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
			Frame:   ext6(tcp(ClientPort, HTTPS, syn), hopByHop),
			Meta:    meta6(14, 62, 68, packet.ProtoTCP, Client6, ClientPort, VIP6, HTTPS, packet.TCPFlagSYN),
			Steer:   ToService,
		},
		{
			Name:    "ipv6 destination options then udp to [vip6]:443",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 70: 2001:db8:1::7 > 2001:db8::10: DSTOPT 40000 > 443: UDP, length 0",
			Frame:   ext6(udp(ClientPort, HTTPS), dstOpts),
			Meta:    meta6(14, 62, 56, packet.ProtoUDP, Client6, ClientPort, VIP6, HTTPS, 0),
			Steer:   NoService,
		},
		{
			Name:    "ipv6 hop-by-hop, routing, 16-byte dstopts, ah, then tcp to [vip6]:443",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 118: 2001:db8:1::7 > 2001:db8::10: HBH srcrt (len=0, type=4, segleft=0[|srcrt]",
			Frame:   ext6(tcp(ClientPort, HTTPS, syn), hopByHop, routing, dstOpts16, ah),
			Meta:    meta6(14, 98, 104, packet.ProtoTCP, Client6, ClientPort, VIP6, HTTPS, packet.TCPFlagSYN),
			Steer:   ToService,
		},
		{
			Name:    "ipv6 atomic fragment (offset 0, M clear), tcp to [vip6]:443",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 82: 2001:db8:1::7 > 2001:db8::10: frag (0|20) 40000 > 443: Flags [S], seq 1000, win 64240, length 0",
			Frame:   ext6(tcp(ClientPort, HTTPS, syn), fragHdr(0, false)),
			Meta:    meta6(14, 62, 68, packet.ProtoTCP, Client6, ClientPort, VIP6, HTTPS, packet.TCPFlagSYN),
			Steer:   ToService,
		},
		{
			Name:    "ipv6 first fragment (offset 0, M), tcp to [vip6]:443",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 82: 2001:db8:1::7 > 2001:db8::10: frag (0|20) 40000 > 443: Flags [S], seq 1000, win 64240, length 0",
			Frame:   ext6(tcp(ClientPort, HTTPS, syn), fragHdr(0, true)),
			Reason:  packet.Fragment,
		},
		{
			Name:    "ipv6 last fragment (offset 1448), to [vip6]",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 82: 2001:db8:1::7 > 2001:db8::10: frag (1448|20)",
			Frame:   ext6(tcp(ClientPort, HTTPS, syn), fragHdr(1448, false)),
			Reason:  packet.Fragment,
		},
		{
			Name:    "ipv6 hop-by-hop not first",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 90: 2001:db8:1::7 > 2001:db8::10: DSTOPT HBH 40000 > 443: Flags [S], seq 1000, win 64240, length 0",
			Frame:   ext6(tcp(ClientPort, HTTPS, syn), dstOpts, hopByHop),
			Reason:  packet.Malformed,
		},
		{
			Name:    "ipv6 nine destination options headers",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 146: 2001:db8:1::7 > 2001:db8::10: DSTOPT DSTOPT DSTOPT DSTOPT DSTOPT DSTOPT DSTOPT DSTOPT DSTOPT 40000 > 443: Flags [S], seq 1000, win 64240, length 0",
			Frame:   ext6(tcp(ClientPort, HTTPS, syn), dstOpts, dstOpts, dstOpts, dstOpts, dstOpts, dstOpts, dstOpts, dstOpts, dstOpts),
			Reason:  packet.IPv6Ext,
		},
		{
			Name:    "ipv6 mobility header",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 62: 2001:db8:1::7 > 2001:db8::10: mobility: BRR seq#=0",
			Frame:   build(eth(layers.EthernetTypeIPv6), ip6(Client6, VIP6, 135), gopacket.Payload{59, 0, 0, 0, 0, 0, 0, 0}),
			Reason:  packet.IPv6Ext,
		},
		{
			Name:    "ipv6 destination options longer than the payload",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 82: 2001:db8:1::7 > 2001:db8::10: DSTOPT [|dstopt]",
			Frame:   setByte(ext6(tcp(ClientPort, HTTPS, syn), dstOpts), 14+40+1, 3),
			Reason:  packet.Malformed,
		},
		{
			Name:    "ipv6 hop-by-hop longer than the payload",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 82: 2001:db8:1::7 > 2001:db8::10: HBH [|hbhopt]",
			Frame:   setByte(hopByHopTCP(), 14+40+1, 3),
			Reason:  packet.Malformed,
		},
		{
			Name:    "vlan 200 (not served), tcp syn to vip:80",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype 802.1Q (0x8100), length 60: vlan 200, p 0, ethertype IPv4 (0x0800), 198.51.100.7.40000 > 192.0.2.10.80: Flags [S], seq 1000, win 64240, length 0",
			Frame:   build(eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 200, Type: layers.EthernetTypeIPv4}, ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn)),
			Meta:    vlan(meta4(18, 38, 40, packet.ProtoTCP, Client4, ClientPort, VIP4, HTTP, packet.TCPFlagSYN), 200),
			Steer:   ToService,
			Admit:   packet.VLAN,
		},
		{
			Name:    "vlan 0 (priority tag), tcp syn to vip:80",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype 802.1Q (0x8100), length 60: vlan 0, p 5, ethertype IPv4 (0x0800), 198.51.100.7.40000 > 192.0.2.10.80: Flags [S], seq 1000, win 64240, length 0",
			Frame:   build(eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{Priority: 5, Type: layers.EthernetTypeIPv4}, ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn)),
			Meta:    meta4(18, 38, 40, packet.ProtoTCP, Client4, ClientPort, VIP4, HTTP, packet.TCPFlagSYN),
			Steer:   ToService,
		},
		{
			Name:    "qinq: vlan 100 in s-vlan 100, tcp syn to vip:80",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype 802.1Q-QinQ (0x88a8), length 64: vlan 100, p 0, ethertype 802.1Q, vlan 100, p 0, ethertype IPv4 (0x0800), 198.51.100.7.40000 > 192.0.2.10.80: Flags [S], seq 1000, win 64240, length 0",
			Frame:   build(eth(layers.EthernetTypeQinQ), &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeDot1Q}, &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}, ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn)),
			Reason:  packet.NotIP,
		},
		{
			Name:    "tcp syn to vip:80, broadcast mac",
			Tcpdump: "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype IPv4 (0x0800), length 60: 198.51.100.7.40000 > 192.0.2.10.80: Flags [S], seq 1000, win 64240, length 0",
			Frame:   toMAC(build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn)), layers.EthernetBroadcast),
			Meta:    meta4(14, 34, 40, packet.ProtoTCP, Client4, ClientPort, VIP4, HTTP, packet.TCPFlagSYN),
			Steer:   ToService,
			Admit:   packet.L2Multicast,
		},
		{
			Name:    "udp to vip:53, multicast mac",
			Tcpdump: "02:00:00:00:00:01 > 01:00:5e:00:00:fb, ethertype IPv4 (0x0800), length 61: 198.51.100.7.40000 > 192.0.2.10.53: 4660+ A? a. (19)",
			Frame:   toMAC(build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolUDP), udp(ClientPort, DNS), dnsQuery), net.HardwareAddr{0x01, 0, 0x5e, 0, 0, 0xfb}),
			Meta:    meta4(14, 34, 47, packet.ProtoUDP, Client4, ClientPort, VIP4, DNS, 0),
			Steer:   ToService,
			Admit:   packet.L2Multicast,
		},
		{
			Name:    "tcp syn to vip:80, another host's mac (flooded)",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:03, ethertype IPv4 (0x0800), length 60: 198.51.100.7.40000 > 192.0.2.10.80: Flags [S], seq 1000, win 64240, length 0",
			Frame:   toMAC(build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn)), otherMAC),
			Meta:    meta4(14, 34, 40, packet.ProtoTCP, Client4, ClientPort, VIP4, HTTP, packet.TCPFlagSYN),
			Steer:   ToService,
			Admit:   packet.OtherHost,
		},
		{
			Name:    "syn-ack from real, another host's mac",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:03, ethertype IPv4 (0x0800), length 60: 203.0.113.20.8080 > 198.51.100.7.40000: Flags [S.], seq 1000, ack 1001, win 64240, length 0",
			Frame:   toMAC(build(eth(layers.EthernetTypeIPv4), ip4(Real4, Client4, layers.IPProtocolTCP), tcp(RealPort, ClientPort, synAck)), otherMAC),
			Meta:    meta4(14, 34, 40, packet.ProtoTCP, Real4, RealPort, Client4, ClientPort, packet.TCPFlagSYN|packet.TCPFlagACK),
			Steer:   FromReal,
			Admit:   packet.OtherHost,
		},
		{
			Name:    "tcp to vip:22 (no service), broadcast mac",
			Tcpdump: "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype IPv4 (0x0800), length 60: 198.51.100.7.40000 > 192.0.2.10.22: Flags [S], seq 1000, win 64240, length 0",
			Frame:   toMAC(build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, SSH, syn)), layers.EthernetBroadcast),
			Meta:    meta4(14, 34, 40, packet.ProtoTCP, Client4, ClientPort, VIP4, SSH, packet.TCPFlagSYN),
			Steer:   NoService,
		},
		{
			Name:    "tcp syn to vip:80, bad ipv4 header checksum",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: 198.51.100.7.40000 > 192.0.2.10.80: Flags [S], seq 1000, win 64240, length 0 (bad ip cksum)",
			Frame:   setByte(build(eth(layers.EthernetTypeIPv4), ip4(Client4, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn)), 14+8, 63),
			Meta:    meta4(14, 34, 40, packet.ProtoTCP, Client4, ClientPort, VIP4, HTTP, packet.TCPFlagSYN),
			Steer:   ToService,
			Admit:   packet.BadChecksum,
		},
		{
			Name:    "ipv4 options, bad header checksum, tcp syn to vip:80",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: 198.51.100.7.40000 > 192.0.2.10.80: Flags [S], seq 1000, win 64240, length 0 (bad ip cksum)",
			Frame:   setByte(build(eth(layers.EthernetTypeIPv4), ip4Options(Client4, VIP4), tcp(ClientPort, HTTP, syn)), 14+22, 1),
			Meta:    meta4(14, 38, 44, packet.ProtoTCP, Client4, ClientPort, VIP4, HTTP, packet.TCPFlagSYN),
			Steer:   ToService,
			Admit:   packet.BadChecksum,
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
			Meta:    vlan(meta4(18, 38, 40, packet.ProtoTCP, Client4, ClientPort, VIP4, HTTP, packet.TCPFlagSYN), 100),
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
	cases = append(cases, martians()...)
	cases = append(cases, icmpErrors()...)
	return cases
}

// icmpErrors are ICMP and ICMPv6 errors: those quoting a packet of a
// service's or a real's flow are OK with the quoted flow reversed in Meta,
// and steered; the others go to the kernel.
func icmpErrors() []Case {
	q4 := func(n int, ls ...gopacket.SerializableLayer) []byte { return Quote(n, ls...) }
	vipReply := func() []byte { return q4(0, ip4(VIP4, Client4, layers.IPProtocolTCP), tcp(HTTP, ClientPort, synAck)) }
	toVIP := func(typ, code uint8, word uint32, quote []byte) []byte {
		return ICMPError(clientMAC, lbMAC, Router4, VIP4, typ, code, word, quote)
	}
	echo := build(ip4(VIP4, Client4, layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0), Id: 1, Seq: 1})
	return []Case{
		{
			Name:    "icmp frag needed to vip, quoting vip:80 > client (a dr real's reply)",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 82: 198.51.100.1 > 192.0.2.10: ICMP 198.51.100.7 unreachable - need to frag (mtu 1400), length 48",
			Frame:   toVIP(3, 4, 1400, vipReply()),
			Meta:    icmpMeta(4, 20, 20, 20, packet.ProtoTCP, Client4, ClientPort, VIP4, HTTP),
			Steer:   ToService,
		},
		{
			Name:    "icmp port unreachable from real, quoting client > real:8080 (nat)",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 82: 203.0.113.20 > 198.51.100.7: ICMP 203.0.113.20 tcp port 8080 unreachable, length 48",
			Frame:   ICMPError(clientMAC, lbMAC, Real4, Client4, 3, 3, 0, q4(0, ip4(Client4, Real4, layers.IPProtocolTCP), tcp(ClientPort, RealPort, syn))),
			Meta:    icmpMeta(4, 20, 20, 20, packet.ProtoTCP, Real4, RealPort, Client4, ClientPort),
			Steer:   FromReal,
		},
		{
			Name:    "icmp time exceeded to vip, quoting vip:53 > client udp",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 70: 198.51.100.1 > 192.0.2.10: ICMP time exceeded in-transit, length 36",
			Frame:   toVIP(11, 0, 0, q4(0, ip4(VIP4, Client4, layers.IPProtocolUDP), udp(DNS, ClientPort))),
			Meta:    icmpMeta(4, 20, 20, 8, packet.ProtoUDP, Client4, ClientPort, VIP4, DNS),
			Steer:   ToService,
		},
		{
			Name:    "icmp parameter problem to vip, quoting vip:80 > client with ip options, cut after 8 tcp bytes",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 74: 198.51.100.1 > 192.0.2.10: ICMP parameter problem - octet 0, length 40",
			Frame:   toVIP(12, 0, 0, q4(32, ip4Options(VIP4, Client4), tcp(HTTP, ClientPort, synAck))),
			Meta:    icmpMeta(4, 20, 24, 8, packet.ProtoTCP, Client4, ClientPort, VIP4, HTTP),
			Steer:   ToService,
		},
		{
			Name:    "icmp frag needed to vip, quoting vip:22 > client, not a service",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 70: 198.51.100.1 > 192.0.2.10: ICMP 198.51.100.7 unreachable - need to frag (mtu 1400), length 36",
			Frame:   toVIP(3, 4, 1400, q4(28, ip4(VIP4, Client4, layers.IPProtocolTCP), tcp(SSH, ClientPort, synAck))),
			Meta:    icmpMeta(4, 20, 20, 8, packet.ProtoTCP, Client4, ClientPort, VIP4, SSH),
			Steer:   NoService,
		},
		{
			Name:    "icmp frag needed to vip, bad ipv4 header checksum",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 70: 198.51.100.1 > 192.0.2.10: ICMP 198.51.100.7 unreachable - need to frag (mtu 1400), length 36",
			Frame:   setByte(toVIP(3, 4, 1400, q4(28, ip4(VIP4, Client4, layers.IPProtocolTCP), tcp(HTTP, ClientPort, synAck))), 14+8, 63),
			Meta:    icmpMeta(4, 20, 20, 8, packet.ProtoTCP, Client4, ClientPort, VIP4, HTTP),
			Steer:   ToService,
			Admit:   packet.BadChecksum,
		},
		{
			Name:    "icmp frag needed to vip from martian 127.0.0.1",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 70: 127.0.0.1 > 192.0.2.10: ICMP 198.51.100.7 unreachable - need to frag (mtu 1400), length 36",
			Frame:   ICMPError(clientMAC, lbMAC, netip.MustParseAddr("127.0.0.1"), VIP4, 3, 4, 1400, q4(28, ip4(VIP4, Client4, layers.IPProtocolTCP), tcp(HTTP, ClientPort, synAck))),
			Meta:    icmpMeta(4, 20, 20, 8, packet.ProtoTCP, Client4, ClientPort, VIP4, HTTP),
			Steer:   ToService,
			Admit:   packet.Martian,
		},
		{
			Name:    "icmp frag needed to vip, quote cut inside the tcp ports",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 66: 198.51.100.1 > 192.0.2.10: ICMP 198.51.100.7 unreachable - need to frag (mtu 1400), length 32",
			Frame:   toVIP(3, 4, 1400, q4(24, ip4(VIP4, Client4, layers.IPProtocolTCP), tcp(HTTP, ClientPort, synAck))),
			Reason:  packet.Malformed,
		},
		{
			Name:    "icmp frag needed to vip, quoted ihl 4",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 70: 198.51.100.1 > 192.0.2.10: ICMP 198.51.100.7 unreachable - need to frag (mtu 1400), length 36",
			Frame:   setByte(toVIP(3, 4, 1400, q4(28, ip4(VIP4, Client4, layers.IPProtocolTCP), tcp(HTTP, ClientPort, synAck))), 42, 0x44),
			Reason:  packet.Malformed,
		},
		{
			Name:    "icmp message of 4 bytes",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: 198.51.100.1 > 192.0.2.10:  [|icmp]",
			Frame:   build(eth(layers.EthernetTypeIPv4), ip4(Router4, VIP4, layers.IPProtocolICMPv4), gopacket.Payload{3, 4, 0xfc, 0xfb}),
			Reason:  packet.Malformed,
		},
		{
			Name:    "icmp port unreachable to vip, quoting an icmp echo reply",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 70: 198.51.100.7 > 192.0.2.10: ICMP 198.51.100.7 protocol 1 unreachable, length 36",
			Frame:   ICMPError(clientMAC, lbMAC, Client4, VIP4, 3, 2, 0, echo),
			Reason:  packet.NotTCPUDP,
		},
		{
			Name:    "icmp redirect to vip, quoting vip:80 > client",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 70: 198.51.100.1 > 192.0.2.10: ICMP redirect 198.51.100.7 to host 0.0.0.0, length 36",
			Frame:   toVIP(5, 1, 0, q4(28, ip4(VIP4, Client4, layers.IPProtocolTCP), tcp(HTTP, ClientPort, synAck))),
			Reason:  packet.NotTCPUDP,
		},
		{
			Name:    "icmp frag needed to vip, quoting a non-first fragment",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 70: 198.51.100.1 > 192.0.2.10: ICMP 198.51.100.7 unreachable - need to frag (mtu 1400), length 36",
			Frame:   toVIP(3, 4, 1400, q4(0, fragment(ip4(VIP4, Client4, layers.IPProtocolTCP), 0, 185), gopacket.Payload(tcpBytes(HTTP, ClientPort, synAck)[:8]))),
			Reason:  packet.NotTCPUDP,
		},
		{
			Name:    "icmp frag needed to vip, itself a fragment",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 70: 198.51.100.1 > 192.0.2.10: ICMP 198.51.100.7 unreachable - need to frag (mtu 1400), length 36",
			Frame:   setBE16(toVIP(3, 4, 1400, q4(28, ip4(VIP4, Client4, layers.IPProtocolTCP), tcp(HTTP, ClientPort, synAck))), 14+6, 0x2000),
			Reason:  packet.NotTCPUDP,
		},
		{
			Name:    "icmpv6 packet too big to vip6, quoting [vip6]:443 > client6",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 122: 2001:db8:1::1 > 2001:db8::10: ICMP6, packet too big, mtu 1280, length 68",
			Frame:   ICMPError(clientMAC, lbMAC, Router6, VIP6, 2, 0, 1280, Quote(0, ip6(VIP6, Client6, layers.IPProtocolTCP), tcp(HTTPS, ClientPort, synAck))),
			Meta:    icmpMeta(6, 40, 40, 20, packet.ProtoTCP, Client6, ClientPort, VIP6, HTTPS),
			Steer:   ToService,
		},
		{
			Name:    "icmpv6 time exceeded to vip6, quoting [vip6]:443 > client6 udp, cut after 8 udp bytes",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 110: 2001:db8:1::1 > 2001:db8::10: ICMP6, time exceeded in-transit for 2001:db8:1::7, length 56",
			Frame:   ICMPError(clientMAC, lbMAC, Router6, VIP6, 3, 0, 0, Quote(48, ip6(VIP6, Client6, layers.IPProtocolUDP), udp(HTTPS, ClientPort), dnsQuery)),
			Meta:    icmpMeta(6, 40, 40, 8, packet.ProtoUDP, Client6, ClientPort, VIP6, HTTPS),
			Steer:   NoService,
		},
		{
			Name:    "icmpv6 destination unreachable to vip6, quote with an extension header",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 118: 2001:db8:1::1 > 2001:db8::10: ICMP6, destination unreachable, unreachable port, 2001:db8:1::7 tcp port 40000, length 64",
			Frame:   ICMPError(clientMAC, lbMAC, Router6, VIP6, 1, 4, 0, Quote(56, ip6(VIP6, Client6, layers.IPProtocolIPv6Destination), gopacket.Payload(append([]byte{6, 0, 1, 4, 0, 0, 0, 0}, tcpBytes(HTTPS, ClientPort, synAck)...)))),
			Reason:  packet.NotTCPUDP,
		},
		{
			Name:    "icmpv6 packet too big to vip6, quote cut in the ipv6 header",
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 92: 2001:db8:1::1 > 2001:db8::10: ICMP6, packet too big, mtu 1280, length 38",
			Frame:   ICMPError(clientMAC, lbMAC, Router6, VIP6, 2, 0, 1280, Quote(30, ip6(VIP6, Client6, layers.IPProtocolTCP), tcp(HTTPS, ClientPort, synAck))),
			Reason:  packet.Malformed,
		},
	}
}

// icmpMeta is the Meta of an ICMP or ICMPv6 error in an untagged frame,
// with an outer IP header of hl bytes, a quoted one of qhl bytes and q4
// quoted bytes of TCP or UDP, reversed: src:sport is the quoted
// destination.
func icmpMeta(version uint8, hl, qhl, q4 int, proto uint8, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) packet.Meta {
	icmp := 14 + hl
	end := icmp + 8 + qhl + q4
	m := meta4(14, icmp, end-14, proto, src, sport, dst, dport, 0)
	m.Version = version
	m.ICMP = packet.ICMPError{L3Off: 14, ICMPOff: icmp, InnerL3Off: icmp + 8, InnerL4Off: icmp + 8 + qhl, End: end,
		Version: version, InnerProto: proto}
	return m
}

// martians are frames to vip:80 or [vip6]:443 from martian sources.
func martians() []Case {
	var cs []Case
	for _, src := range []string{"0.0.0.0", "0.1.2.3", "127.0.0.1", "224.0.0.1", "239.1.2.3", "240.0.0.1", "255.255.255.255", "192.0.2.10"} {
		a := netip.MustParseAddr(src)
		cs = append(cs, Case{
			Name:    "tcp syn to vip:80 from martian " + src,
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: " + src + ".40000 > 192.0.2.10.80: Flags [S], seq 1000, win 64240, length 0",
			Frame:   build(eth(layers.EthernetTypeIPv4), ip4(a, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn)),
			Meta:    meta4(14, 34, 40, packet.ProtoTCP, a, ClientPort, VIP4, HTTP, packet.TCPFlagSYN),
			Steer:   ToService,
			Admit:   packet.Martian,
		})
	}
	for _, src := range []string{"::", "::1", "ff02::1", "::ffff:198.51.100.7", "2001:db8::10"} {
		a := netip.MustParseAddr(src)
		cs = append(cs, Case{
			Name:    "ipv6 tcp syn to [vip6]:443 from martian " + src,
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 74: " + src + ".40000 > 2001:db8::10.443: Flags [S], seq 1000, win 64240, length 0",
			Frame:   build(eth(layers.EthernetTypeIPv6), ip6(a, VIP6, layers.IPProtocolTCP), tcp(ClientPort, HTTPS, syn)),
			Meta:    meta6m(meta6(14, 54, 60, packet.ProtoTCP, a, ClientPort, VIP6, HTTPS, packet.TCPFlagSYN), a),
			Steer:   ToService,
			Admit:   packet.Martian,
		})
	}
	// Not martian, just next to: 1.0.0.1, 126.255.255.255, 223.255.255.255, ::2.
	for _, src := range []string{"1.0.0.1", "126.255.255.255", "223.255.255.255"} {
		a := netip.MustParseAddr(src)
		cs = append(cs, Case{
			Name:    "tcp syn to vip:80 from " + src,
			Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 60: " + src + ".40000 > 192.0.2.10.80: Flags [S], seq 1000, win 64240, length 0",
			Frame:   build(eth(layers.EthernetTypeIPv4), ip4(a, VIP4, layers.IPProtocolTCP), tcp(ClientPort, HTTP, syn)),
			Meta:    meta4(14, 34, 40, packet.ProtoTCP, a, ClientPort, VIP4, HTTP, packet.TCPFlagSYN),
			Steer:   ToService,
		})
	}
	a := netip.MustParseAddr("::2")
	cs = append(cs, Case{
		Name:    "ipv6 tcp syn to [vip6]:443 from ::2",
		Tcpdump: "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 74: ::2.40000 > 2001:db8::10.443: Flags [S], seq 1000, win 64240, length 0",
		Frame:   build(eth(layers.EthernetTypeIPv6), ip6(a, VIP6, layers.IPProtocolTCP), tcp(ClientPort, HTTPS, syn)),
		Meta:    meta6(14, 54, 60, packet.ProtoTCP, a, ClientPort, VIP6, HTTPS, packet.TCPFlagSYN),
		Steer:   ToService,
	})
	return cs
}

// IPv6 extension headers of the cases, each with a Next Header of 0 that
// ext6 fills in.
var (
	hopByHop  = []byte{0, 0, 1, 4, 0, 0, 0, 0}                          // PadN, RFC 8200 section 4.3
	dstOpts   = []byte{0, 0, 1, 4, 0, 0, 0, 0}                          // PadN
	dstOpts16 = []byte{0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} // PadN, 16 bytes
	routing   = []byte{0, 0, 4, 0, 0, 0, 0, 0}                          // type 4 (SRH) shape, segments left 0
	ah        = []byte{0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2}              // payload len 1: 12 bytes, SPI 1, seq 2, no ICV
)

func fragHdr(offset uint16, more bool) []byte {
	b := []byte{0, 0, 0, 0, 0, 0, 0x12, 0x34}
	v := offset &^ 7
	if more {
		v |= 1
	}
	b[2], b[3] = byte(v>>8), byte(v)
	return b
}

// ext6 is an IPv6 packet from Client6 to VIP6 with the extension headers
// exts, in order, then the TCP or UDP header l4, its checksum computed over
// the final pseudo-header.
func ext6(l4 gopacket.SerializableLayer, exts ...[]byte) []byte {
	ipl := ip6(Client6, VIP6, layers.IPProtocolTCP)
	proto := layers.IPProtocolTCP
	if u, ok := l4.(*layers.UDP); ok {
		proto = layers.IPProtocolUDP
		ipl.NextHeader = proto
		must(u.SetNetworkLayerForChecksum(ipl))
	} else {
		must(l4.(*layers.TCP).SetNetworkLayerForChecksum(ipl))
	}
	seg := gopacket.NewSerializeBuffer()
	must(gopacket.SerializeLayers(seg, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, l4))
	var chain []byte
	first := proto
	for i := len(exts) - 1; i >= 0; i-- {
		e := append([]byte(nil), exts[i]...)
		e[0] = byte(first)
		first = extType(exts[i])
		chain = append(e, chain...)
	}
	return build(eth(layers.EthernetTypeIPv6), ip6(Client6, VIP6, first), gopacket.Payload(append(chain, seg.Bytes()...)))
}

// extType names an extension header of the cases by identity.
func extType(e []byte) layers.IPProtocol {
	switch &e[0] {
	case &hopByHop[0]:
		return layers.IPProtocolIPv6HopByHop
	case &dstOpts[0], &dstOpts16[0]:
		return layers.IPProtocolIPv6Destination
	case &routing[0]:
		return layers.IPProtocolIPv6Routing
	case &ah[0]:
		return layers.IPProtocolAH
	}
	return layers.IPProtocolIPv6Fragment
}

func toMAC(b []byte, mac net.HardwareAddr) []byte {
	copy(b[0:6], mac)
	return b
}

func vlan(m packet.Meta, vid uint16) packet.Meta {
	m.VLAN = vid
	return m
}

// meta6m fixes up a meta6 whose source is IPv4-mapped: Meta keeps the 16
// bytes as they are on the wire.
func meta6m(m packet.Meta, src netip.Addr) packet.Meta {
	m.Src = src.As16()
	return m
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
