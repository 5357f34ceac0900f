package modes

import "github.com/xlbproject/xlb/internal/packet"

// fullnatIn forwards a client's frame to a FULLNAT real server: source
// client:cport := laddr:lport, destination VIP:vport := RS:rport, so the
// real server answers the director whatever its routes. TTL decremented,
// checksums updated once for all four changes, Ethernet rewritten.
func fullnatIn(f *Frame, m *packet.Meta, p *Plan) Verdict {
	b := l4Packet(f, m)
	if b == nil {
		return Malformed
	}
	if family(&p.RS) != m.Version || family(&p.Laddr) != m.Version {
		return Unsupported // no NAT64: DPVS's FNAT64 is not built
	}
	if v := check(b[m.L3Off:], m, p, 0); v != OK {
		return v
	}
	packet.ForwardAddrPortsWithChecksumUpdate(b, m, &p.Laddr, p.Lport, &p.RS, p.RPort)
	setEth(b, p)
	return OK
}

// fullnatOut forwards a FULLNAT real server's reply to the client: source
// RS:rport := VIP:vport, destination laddr:lport := client:cport.
func fullnatOut(f *Frame, m *packet.Meta, p *Plan) Verdict {
	b := l4Packet(f, m)
	if b == nil {
		return Malformed
	}
	if family(&p.VIP) != m.Version || family(&p.Client) != m.Version {
		return Unsupported
	}
	if v := check(b[m.L3Off:], m, p, 0); v != OK {
		return v
	}
	packet.ForwardAddrPortsWithChecksumUpdate(b, m, &p.VIP, p.VPort, &p.Client, p.ClientPort)
	setEth(b, p)
	return OK
}
