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
// brought, which then fail, where IPVS, which finds replies by their
// connection alone, keeps them. A deleted service keeps the rules it last
// had while its connections last.

// markRealPorts is the most ports of one protocol that a port-0
// destination of a firewall-mark service is steered from one by one:
// 80+443 or 80+9000 take 2 keys, a range of 1000 ports one wildcard.
const markRealPorts = 64

// markRules are the rules that classify frames into the firewall-mark
// service k: its mark, of its address family.
func markRules(k ipvs.ServiceKey, rules []ipvs.MarkRule) []ipvs.MarkRule {
	var out []ipvs.MarkRule
	for _, r := range rules {
		if r.Mark == k.FWMark && r.Prefix.Addr().Is6() == k.IPv6() {
			out = append(out, r)
		}
	}
	return out
}

// realPlan collects the reals map's keys: exact ones, and for each
// port-0 destination of a firewall-mark service, by address and
// protocol (port 0), its ports.
type realPlan struct {
	exact  map[bpf.ServiceKey]bool
	marked map[bpf.ServiceKey]*markPorts
}

// markPorts are the ports a port-0 firewall-mark destination answers
// from over one protocol, or wild: too many, the wildcard.
type markPorts struct {
	ports []uint16
	wild  bool
}

func newRealPlan() *realPlan {
	return &realPlan{exact: map[bpf.ServiceKey]bool{}, marked: map[bpf.ServiceKey]*markPorts{}}
}

// add plans the keys of destination addr:port with method m of service
// k; rules are the service's mark rules (markRules) for a firewall-mark
// service.
func (p *realPlan) add(k ipvs.ServiceKey, rules []ipvs.MarkRule, addr netip.Addr, port uint16, m modes.Method) {
	if m != modes.Masq && m != modes.FullNAT {
		return
	}
	if !k.IsFWMark() {
		p.exact[bpf.ServiceKey{Addr: addr, Port: port, Proto: uint8(k.Proto)}] = true
		return
	}
	for _, proto := range []ipvs.Proto{ipvs.TCP, ipvs.UDP} {
		n, has := 0, false // ports of proto in the rules; has: a rule of proto
		for _, r := range rules {
			if r.Proto == proto {
				has = true
				n += int(r.PortHi) - int(r.PortLo) + 1
			}
		}
		if !has {
			continue
		}
		key := bpf.ServiceKey{Addr: addr, Port: port, Proto: uint8(proto)}
		if port != 0 {
			p.exact[key] = true
			continue
		}
		mp := p.marked[key]
		if mp == nil {
			mp = &markPorts{}
			p.marked[key] = mp
		}
		if mp.wild || len(mp.ports)+n > markRealPorts {
			mp.wild, mp.ports = true, nil
			continue
		}
		for _, r := range rules {
			if r.Proto != proto {
				continue
			}
			for q := int(r.PortLo); q <= int(r.PortHi); q++ {
				if q != 0 && !slices.Contains(mp.ports, uint16(q)) { // port 0 would be the wildcard
					mp.ports = append(mp.ports, uint16(q))
				}
			}
		}
	}
}

// keys is the plan's key set for a map of capacity keys: the exact
// ports of firewall-mark destinations when everything fits, wildcards
// for them otherwise.
func (p *realPlan) keys(capacity int) map[bpf.ServiceKey]bool {
	want := make(map[bpf.ServiceKey]bool, len(p.exact)+len(p.marked))
	for k := range p.exact {
		want[k] = true
	}
	n := len(want)
	for _, mp := range p.marked {
		if mp.wild {
			n++
		} else {
			n += len(mp.ports)
		}
	}
	wild := n > capacity
	for k, mp := range p.marked {
		if wild || mp.wild {
			want[k] = true
			continue
		}
		for _, q := range mp.ports {
			want[bpf.ServiceKey{Addr: k.Addr, Port: q, Proto: k.Proto}] = true
		}
	}
	return want
}
