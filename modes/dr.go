package modes

import "github.com/xlbproject/xlb/internal/packet"

// drIn forwards a client's frame to a real server that holds the VIP
// (direct routing, ip_vs_dr_xmit): the Ethernet destination becomes the
// next hop's MAC and the source the egress interface's; in the IP header
// only the TTL changes. The real server answers the client directly, so
// DR has no Out.
func drIn(f *Frame, m *packet.Meta, p *Plan) Verdict {
	ip := ip(f, m)
	if ip == nil {
		return Malformed
	}
	if v := check(ip, m, p, 0); v != OK {
		return v
	}
	packet.DecrementTTLWithChecksumUpdate(ip, m.Version)
	setEth(f.Buf[f.Off:f.Off+f.Len], p)
	return OK
}

// DR rewrites frame for direct routing: the destination MAC becomes the
// real server's and the source MAC the director's. The IP packet is left
// alone. frame must hold at least an Ethernet header; the caller parsed it.
//
// It is the worker's call until the worker moves to Xmit, whose DR also
// decrements the TTL as IPVS does; it goes then.
func DR(frame []byte, dst, src *[6]byte) {
	_ = frame[11]
	copy(frame[0:6], dst[:])
	copy(frame[6:12], src[:])
}
