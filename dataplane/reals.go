//go:build linux

package dataplane

import (
	"net/netip"
	"slices"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/modes"
)

// Reply steering: which frames from real servers the XDP program hands to
// the workers (the reals map, keyed by the real server's address, port and
// protocol; bpf/xdp.c looks a frame's source up exactly, then with port
// 0, as lookup_port0 does).
//
// A NAT or FULLNAT destination of an address-and-port service answers
// from its own port (a port-0 one, of a port-0 service, from any: port 0
// is the wildcard) over the service's protocol: one key.
//
// A firewall-mark service has no protocol or port: its frames are those
// its mark's rules classify (MarkRule), TCP, UDP or both. A destination
// of port p answers from p, over each protocol of the rules; a
// destination of port 0 takes the client's destination port
// (ip_vs_nat_xmit with cp->dport), any port of the rules, and answers
// from it. Such a destination gets a key per port of its rules while
// they hold at most markRealPorts ports of a protocol, else the wildcard.
// Exact keys leave alone the real server's other traffic through the
// director (its own connections from ephemeral ports, when the director
// is its gateway), which no worker could forward: the wildcard steers
// all of it to the workers, which find no connection for it and drop it
// (no_service). The reals map holds two keys per destination ID
// (bpf.Options.MaxReals), what every destination needs with wildcards;
// exact keys take what is left, and when the whole set does not fit, all
// firewall-mark destinations fall back to wildcards.
//
// The keys follow the rules: a rule taken from a live service's mark
// (xlb mark del) stops steering the replies of the connections it
// brought, as it stops steering their requests (the XDP program finds a
// frame's service by its mark, and IPVS its connection by the tuple
// alone, so IPVS keeps them). A deleted service keeps the reply ports it
// last had while its connections last.

// markRealPorts is the most ports of one protocol that a port-0
// destination of a firewall-mark service is steered from one by one:
// 80+443 or 80+9000 take 2 keys, a range of 1000 ports one wildcard.
const markRealPorts = 64

// replyPorts are the ports a firewall-mark service's port-0 destinations
// answer from over one protocol: those of its mark's rules, or, past
// markRealPorts of them, wild (every port).
type replyPorts struct {
	proto ipvs.Proto
	ports []uint16 // sorted, without 0
	wild  bool
}

// markReplyPorts are the reply ports of the firewall-mark service k, for
// each protocol its rules (of its mark and address family) classify,
// TCP first. Computed once per Apply, not per destination.
func markReplyPorts(k ipvs.ServiceKey, rules []ipvs.MarkRule) []replyPorts {
	var out []replyPorts
	for _, proto := range []ipvs.Proto{ipvs.TCP, ipvs.UDP} {
		rp, has := replyPorts{proto: proto}, false
		for _, r := range rules {
			if r.Mark != k.FWMark || r.Prefix.Addr().Is6() != k.IPv6() || r.Proto != proto {
				continue
			}
			has = true
			// Port by port, until more than markRealPorts distinct
			// ones: a range of 0-65535 stops at once.
			for q := int(r.PortLo); q <= int(r.PortHi) && !rp.wild; q++ {
				if q == 0 { // no frame has port 0; the key would be the wildcard
					continue
				}
				if i, found := slices.BinarySearch(rp.ports, uint16(q)); !found {
					rp.ports = slices.Insert(rp.ports, i, uint16(q))
					rp.wild = len(rp.ports) > markRealPorts
				}
			}
		}
		if rp.wild {
			rp.ports = nil
		}
		if has {
			out = append(out, rp)
		}
	}
	return out
}

// realPlan collects the reals map's keys: exact ones, and for each
// port-0 destination of a firewall-mark service, by address and
// protocol (port 0), the reply ports of its services (usually one).
type realPlan struct {
	exact  map[bpf.ServiceKey]bool
	marked map[bpf.ServiceKey][]*replyPorts
}

func newRealPlan() *realPlan {
	return &realPlan{exact: map[bpf.ServiceKey]bool{}, marked: map[bpf.ServiceKey][]*replyPorts{}}
}

// add plans the keys of destination addr:port with method m of service
// k; rps are the service's reply ports (markReplyPorts) for a
// firewall-mark service. It keeps rps.
func (p *realPlan) add(k ipvs.ServiceKey, rps []replyPorts, addr netip.Addr, port uint16, m modes.Method) {
	if m != modes.Masq && m != modes.FullNAT {
		return
	}
	if !k.IsFWMark() {
		p.exact[bpf.ServiceKey{Addr: addr, Port: port, Proto: uint8(k.Proto)}] = true
		return
	}
	for i := range rps {
		key := bpf.ServiceKey{Addr: addr, Port: port, Proto: uint8(rps[i].proto)}
		if port != 0 {
			p.exact[key] = true
			continue
		}
		if !slices.Contains(p.marked[key], &rps[i]) {
			p.marked[key] = append(p.marked[key], &rps[i])
		}
	}
}

// unionPorts is the union of rps, or wild.
func unionPorts(rps []*replyPorts) (ports []uint16, wild bool) {
	if len(rps) == 1 {
		return rps[0].ports, rps[0].wild
	}
	for _, rp := range rps {
		if rp.wild {
			return nil, true
		}
		for _, q := range rp.ports {
			if !slices.Contains(ports, q) {
				ports = append(ports, q)
			}
		}
	}
	return ports, len(ports) > markRealPorts
}

// keys is the plan's key set for a map of capacity keys: the exact
// ports of firewall-mark destinations when everything fits, wildcards
// for them otherwise.
func (p *realPlan) keys(capacity int) map[bpf.ServiceKey]bool {
	want := make(map[bpf.ServiceKey]bool, len(p.exact)+len(p.marked))
	for k := range p.exact {
		want[k] = true
	}
	type marked struct {
		k     bpf.ServiceKey
		ports []uint16
		wild  bool
	}
	ms := make([]marked, 0, len(p.marked))
	n := len(want)
	for k, rps := range p.marked {
		ports, wild := unionPorts(rps)
		ms = append(ms, marked{k, ports, wild})
		if wild {
			n++
		} else {
			n += len(ports)
		}
	}
	allWild := n > capacity
	for _, m := range ms {
		if allWild || m.wild {
			want[m.k] = true
			continue
		}
		for _, q := range m.ports {
			want[bpf.ServiceKey{Addr: m.k.Addr, Port: q, Proto: m.k.Proto}] = true
		}
	}
	return want
}
