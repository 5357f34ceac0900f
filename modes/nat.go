package modes

import "github.com/xlbproject/xlb/internal/packet"

// natIn is how a client's frame goes to a NAT real server
// (ip_vs_nat_xmit): destination VIP:vport := RS:rport, the source as it
// is. Xmit applies it: TTL decremented, IP and L4 checksums updated
// incrementally, Ethernet rewritten for the next hop.
func natIn(m *packet.Meta, p *Plan) (src *[16]byte, sport uint16, dst *[16]byte, dport uint16) {
	return &m.Src, m.SrcPort, &p.RS, p.RPort
}

// natOut is how a NAT real server's reply goes to the client (ip_vs_out's
// handle_response, then ip_forward): source RS:rport := VIP:vport, the
// destination as it is. Xmit applies it as natIn's, with Ethernet
// rewritten for the client's next hop.
func natOut(m *packet.Meta, p *Plan) (src *[16]byte, sport uint16, dst *[16]byte, dport uint16) {
	return &p.VIP, p.VPort, &m.Dst, m.DstPort
}
