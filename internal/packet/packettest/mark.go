package packettest

import (
	"net/netip"

	"github.com/xlbproject/xlb/internal/packet"
)

// MarkRules are the firewall-mark classifier rules of MarkCases: nested
// IPv4 and IPv6 prefixes, single ports and ranges, both protocols, and
// the /0 of each family.
var MarkRules = []packet.MarkRule{
	{Mark: 1, Proto: packet.ProtoTCP, Prefix: netip.MustParsePrefix("10.1.0.0/16"), PortLo: 80, PortHi: 80},
	{Mark: 1, Proto: packet.ProtoTCP, Prefix: netip.MustParsePrefix("10.1.0.0/16"), PortLo: 443, PortHi: 443},
	{Mark: 2, Proto: packet.ProtoTCP, Prefix: netip.MustParsePrefix("10.1.2.0/24"), PortLo: 1000, PortHi: 2000},
	{Mark: 3, Proto: packet.ProtoTCP, Prefix: netip.MustParsePrefix("10.1.2.3/32"), PortLo: 80, PortHi: 80},
	{Mark: 4, Proto: packet.ProtoUDP, Prefix: netip.MustParsePrefix("10.1.0.0/16"), PortLo: 53, PortHi: 53},
	{Mark: 5, Proto: packet.ProtoTCP, Prefix: netip.MustParsePrefix("0.0.0.0/0"), PortLo: 8000, PortHi: 8999},
	{Mark: 6, Proto: packet.ProtoTCP, Prefix: netip.MustParsePrefix("2001:db8:100::/48"), PortLo: 80, PortHi: 80},
	{Mark: 6, Proto: packet.ProtoTCP, Prefix: netip.MustParsePrefix("2001:db8:100::/48"), PortLo: 443, PortHi: 443},
	{Mark: 7, Proto: packet.ProtoTCP, Prefix: netip.MustParsePrefix("2001:db8:100:1::/64"), PortLo: 0, PortHi: 65535},
	{Mark: 8, Proto: packet.ProtoUDP, Prefix: netip.MustParsePrefix("::/0"), PortLo: 5353, PortHi: 5353},
}

// MarkCase is a frame and the mark MarkRules give it.
type MarkCase struct {
	Name  string
	Frame []byte // a TCP SYN or UDP datagram from Client4 or Client6
	Proto uint8
	Dst   netip.Addr
	Port  uint16
	Mark  uint32 // 0: none
}

// MarkCases are the golden frames of the classifier: the edges of every
// range and prefix, the most specific rule winning, the protocol and the
// family telling rules apart.
func MarkCases() []MarkCase {
	cases := []struct {
		name string
		udp  bool
		dst  string
		port uint16
		mark uint32
	}{
		{"v4 /16 port 80", false, "10.1.9.9", 80, 1},
		{"v4 /16 port 443", false, "10.1.9.9", 443, 1},
		{"v4 /16 port 79", false, "10.1.9.9", 79, 0},
		{"v4 /16 port 81", false, "10.1.9.9", 81, 0},
		{"v4 /16 port 442", false, "10.1.9.9", 442, 0},
		{"v4 /16 port 444", false, "10.1.9.9", 444, 0},
		{"v4 /16 first address", false, "10.1.0.0", 80, 1},
		{"v4 /16 last address", false, "10.1.255.255", 443, 1},
		{"v4 outside /16", false, "10.2.0.0", 80, 0},
		{"v4 below /16", false, "10.0.255.255", 80, 0},
		{"v4 /24 range start", false, "10.1.2.9", 1000, 2},
		{"v4 /24 range end", false, "10.1.2.9", 2000, 2},
		{"v4 /24 below range", false, "10.1.2.9", 999, 0},
		{"v4 /24 above range", false, "10.1.2.9", 2001, 0},
		{"v4 /24 takes the /16's port", false, "10.1.2.9", 80, 1},
		{"v4 /32 wins", false, "10.1.2.3", 80, 3},
		{"v4 /32 takes the /16's other port", false, "10.1.2.3", 443, 1},
		{"v4 /32 takes the /24's range", false, "10.1.2.3", 1500, 2},
		{"v4 /32 neighbour", false, "10.1.2.4", 80, 1},
		{"v4 /0 range start", false, "10.2.0.1", 8000, 5},
		{"v4 /0 range end", false, "192.0.2.99", 8999, 5},
		{"v4 /0 above range", false, "10.2.0.1", 9000, 0},
		{"v4 /0 under a /32", false, "10.1.2.3", 8500, 5},
		{"v4 udp 53", true, "10.1.0.1", 53, 4},
		{"v4 tcp 53", false, "10.1.0.1", 53, 0},
		{"v4 udp 80", true, "10.1.9.9", 80, 0},
		{"v4 udp 5353 is not the v6 /0", true, "10.0.0.1", 5353, 0},
		{"v6 /48 port 80", false, "2001:db8:100:2::1", 80, 6},
		{"v6 /48 port 443", false, "2001:db8:100:ffff:ffff:ffff:ffff:ffff", 443, 6},
		{"v6 /48 port 444", false, "2001:db8:100:2::1", 444, 0},
		{"v6 /64 port 1", false, "2001:db8:100:1::5", 1, 7},
		{"v6 /64 port 65535", false, "2001:db8:100:1:ffff:ffff:ffff:ffff", 65535, 7},
		{"v6 /64 port 80 is its own", false, "2001:db8:100:1::5", 80, 7},
		{"v6 outside /48", false, "2001:db8:101::1", 80, 0},
		{"v6 udp ::/0", true, "2001:db8::1", 5353, 8},
		{"v6 udp ::/0 port 5354", true, "2001:db8::1", 5354, 0},
		{"v6 tcp 8000 is not the v4 /0", false, "2001:db8::1", 8000, 0},
	}
	out := make([]MarkCase, 0, len(cases))
	for _, c := range cases {
		dst := netip.MustParseAddr(c.dst)
		p := Packet{Src: Client4, Dst: dst, SrcPort: ClientPort, DstPort: c.port, UDP: c.udp}
		if dst.Is6() {
			p.Src = Client6
		}
		proto := uint8(packet.ProtoUDP)
		if !c.udp {
			p.Flags = packet.TCPFlagSYN
			proto = packet.ProtoTCP
		}
		out = append(out, MarkCase{Name: c.name, Frame: p.Frame(), Proto: proto, Dst: dst, Port: c.port, Mark: c.mark})
	}
	return out
}
