package modes

import "github.com/xlbproject/xlb/internal/packet"

// natIn forwards a client's frame to a NAT real server (ip_vs_nat_xmit):
// destination VIP:vport := RS:rport, TTL decremented, IP and L4 checksums
// updated incrementally, Ethernet rewritten for the next hop.
func natIn(f *Frame, m *packet.Meta, p *Plan) Verdict {
	b := l4Packet(f, m)
	if b == nil {
		return Malformed
	}
	if family(&p.RS) != m.Version {
		return Unsupported // IPVS NAT does not translate families either
	}
	if v := check(b[m.L3Off:], m, p, 0); v != OK {
		return v
	}
	packet.ForwardAddrPortsWithChecksumUpdate(b, m, &m.Src, m.SrcPort, &p.RS, p.RPort)
	setEth(b, p)
	return OK
}

// natOut forwards a NAT real server's reply to the client (ip_vs_out's
// handle_response, then ip_forward): source RS:rport := VIP:vport, TTL
// decremented, checksums updated, Ethernet rewritten for the client's
// next hop.
func natOut(f *Frame, m *packet.Meta, p *Plan) Verdict {
	b := l4Packet(f, m)
	if b == nil {
		return Malformed
	}
	if family(&p.VIP) != m.Version {
		return Unsupported
	}
	if v := check(b[m.L3Off:], m, p, 0); v != OK {
		return v
	}
	packet.ForwardAddrPortsWithChecksumUpdate(b, m, &p.VIP, p.VPort, &m.Dst, m.DstPort)
	setEth(b, p)
	return OK
}
