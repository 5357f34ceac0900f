//go:build linux

package dataplane

import (
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/modes"
)

// handleICMP forwards an ICMP or ICMPv6 error that Parse matched to a
// flow (m.IsICMP: the flow fields are its quote's, reversed), as IPVS's
// ip_vs_in_icmp and ip_vs_out_icmp do. LookupBatch found the connection
// by its forward key when the error came from the client's side (it
// quotes a packet the director sent to the client: a NAT or FULLNAT reply
// from the VIP, or a DR or TUN real server's own reply, which a router on
// the client's path could not forward), and then it goes to the
// connection's real server: NAT and FULLNAT translate it, DR rewrites the
// MACs, TUN encapsulates it. It found the connection by its reply key when
// the error came from the real server's side (it quotes a NAT or FULLNAT
// packet the director sent to the real server), and then it goes,
// translated, to the client. This is how PMTU discovery works through the
// director: a router's fragmentation-needed about a DR real server's
// reply arrives at the VIP and must reach that real server.
//
// An error is never answered, nor does it create, refresh or change the
// state of a connection (RFC 1122 section 3.2.2; IPVS only looks it up).
// XDP steers an error only when its quoted flow names a service or a real,
// and AF_XDP cannot hand a frame back to the kernel: an error about no
// connection is dropped and counted (icmp_no_conn), as are those whose
// real server's MAC is not resolved (no_neighbour: an error is not worth
// holding) and those the rewrite refuses (xmit_dropped, by verdict).
//
// Limit: connection tables are per worker, and the NIC's RSS hashes an
// ICMP error by its outer addresses, not by the quoted flow, so with more
// than one RX queue an error may reach a worker that does not hold its
// connection and be counted icmp_no_conn, as NAT replies may (see
// docs/ARCHITECTURE.md). One queue per interface, as testenv sets up,
// finds them all.
func (w *worker) handleICMP(f *modes.Frame, m *packet.Meta, hit conntrack.Hit, fwd []destFwd) bool {
	e := hit.Entry
	if e == nil {
		w.stats.local[ICMPNoConn]++
		return false
	}
	id := e.DestID()
	p := &w.plan
	p.Method = modes.Method(e.Fwd())
	var out uint16 // the egress interface's slot, as xmit chooses it
	if hit.Dir == conntrack.DirOutput {
		k := e.Key()
		out = e.HopIface()
		p.DstMAC = e.Hop()
		p.Client, p.ClientPort, p.VIP, p.VPort = k.Src, k.SrcPort, k.Dst, k.DstPort
	} else {
		if p.Method == modes.Local {
			// About the local stack's reply (a router's fragmentation
			// needed): the stack that sent it takes it.
			return w.deliverLocal(f.Bytes(), m.ICMP.L3Off, m.ICMP.End-m.ICMP.L3Off, id)
		}
		if int(id) >= len(fwd) || !fwd[id].macOK {
			w.stats.local[NoNeighbour]++
			return false
		}
		fd := &fwd[id]
		out = fd.slot
		p.DstMAC, p.Encap = fd.mac, fd.encap
		p.RS, p.RPort = e.DestAddr16(), e.DestPort()
		p.Laddr, p.Lport = e.LocalAddr16(), e.LocalPort()
	}
	if int(out) >= len(w.ifs) {
		w.stats.local[NoNeighbour]++
		return false
	}
	p.MTU, p.SrcMAC = w.ifs[out].mtu, w.ifs[out].mac
	w.out = out
	if v := modes.XmitICMP(f, &m.ICMP, p, modes.Dir(hit.Dir)); v != modes.OK {
		w.stats.local[XmitDropped]++
		w.verdicts[v]++
		return false
	}
	w.stats.local[ICMPForwarded]++
	return true
}
