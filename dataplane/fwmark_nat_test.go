//go:build linux

package dataplane

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
	"github.com/xlbproject/xlb/modes"
	"github.com/xlbproject/xlb/sched"
)

// natMarkRules mark TCP and UDP to VIP:80 and VIP:9000 with mark 1.
func natMarkRules(vip netip.Addr) []ipvs.MarkRule {
	var rules []ipvs.MarkRule
	for _, proto := range []ipvs.Proto{ipvs.TCP, ipvs.UDP} {
		for _, port := range []uint16{80, 9000} {
			rules = append(rules, ipvs.MarkRule{Mark: 1, Proto: proto, Prefix: netip.PrefixFrom(vip, vip.BitLen()), PortLo: port, PortHi: port})
		}
	}
	return rules
}

// TestRealPlan: the reals map's keys for NAT and FULLNAT destinations of
// address services (one exact key) and of firewall-mark services (each
// protocol of the mark's rules; a port-0 destination each port of them,
// or the wildcard when they are many or do not fit).
func TestRealPlan(t *testing.T) {
	rs := netip.MustParseAddr("198.18.0.21")
	rs6 := netip.MustParseAddr("2001:db8::21")
	vip := netip.MustParseAddr("198.18.0.100")
	fwm := ipvs.FWMarkKey(1, false)
	tcp := ipvs.ServiceKey{Proto: ipvs.TCP, Addr: vip, Port: 80}
	key := func(a netip.Addr, port uint16, proto ipvs.Proto) bpf.ServiceKey {
		return bpf.ServiceKey{Addr: a, Port: port, Proto: uint8(proto)}
	}
	wide := []ipvs.MarkRule{{Mark: 1, Proto: ipvs.TCP, Prefix: netip.PrefixFrom(vip, 32), PortLo: 1000, PortHi: 1999}}
	all := []ipvs.MarkRule{{Mark: 1, Proto: ipvs.UDP, Prefix: netip.PrefixFrom(vip, 32), PortLo: 0, PortHi: 65535}}
	tcpOnly := natMarkRules(vip)[:2]
	type dest struct {
		k     ipvs.ServiceKey
		rules []ipvs.MarkRule
		addr  netip.Addr
		port  uint16
		m     modes.Method
	}
	for _, c := range []struct {
		name     string
		dests    []dest
		capacity int
		want     []bpf.ServiceKey
	}{
		{"address service", []dest{{tcp, nil, rs, 8080, modes.Masq}}, 8,
			[]bpf.ServiceKey{key(rs, 8080, ipvs.TCP)}},
		{"direct routing and tunneling: none", []dest{{fwm, natMarkRules(vip), rs, 0, modes.Route}, {fwm, natMarkRules(vip), rs, 0, modes.Tunnel}}, 8, nil},
		{"fwmark, port 0: each port of each protocol", []dest{{fwm, natMarkRules(vip), rs, 0, modes.Masq}}, 8,
			[]bpf.ServiceKey{key(rs, 80, ipvs.TCP), key(rs, 9000, ipvs.TCP), key(rs, 80, ipvs.UDP), key(rs, 9000, ipvs.UDP)}},
		{"fwmark, port 8080: that port over each protocol", []dest{{fwm, natMarkRules(vip), rs, 8080, modes.FullNAT}}, 8,
			[]bpf.ServiceKey{key(rs, 8080, ipvs.TCP), key(rs, 8080, ipvs.UDP)}},
		{"fwmark, TCP rules only", []dest{{fwm, tcpOnly, rs, 0, modes.Masq}}, 8,
			[]bpf.ServiceKey{key(rs, 80, ipvs.TCP), key(rs, 9000, ipvs.TCP)}},
		{"fwmark, no rules", []dest{{fwm, nil, rs, 0, modes.Masq}}, 8, nil},
		{"fwmark, 1000 ports: the wildcard", []dest{{fwm, wide, rs, 0, modes.Masq}}, 8,
			[]bpf.ServiceKey{key(rs, 0, ipvs.TCP)}},
		{"fwmark, every port (0-65535): the wildcard", []dest{{fwm, all, rs, 0, modes.Masq}}, 8,
			[]bpf.ServiceKey{key(rs, 0, ipvs.UDP)}},
		{"two services share a real server", []dest{{fwm, tcpOnly, rs, 0, modes.Masq}, {tcp, nil, rs, 80, modes.Masq}}, 8,
			[]bpf.ServiceKey{key(rs, 80, ipvs.TCP), key(rs, 9000, ipvs.TCP)}},
		{"too many exact keys: wildcards", []dest{{fwm, natMarkRules(vip), rs, 0, modes.Masq}, {tcp, nil, rs6, 80, modes.Masq}}, 4,
			[]bpf.ServiceKey{key(rs, 0, ipvs.TCP), key(rs, 0, ipvs.UDP), key(rs6, 80, ipvs.TCP)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newRealPlan()
			for _, d := range c.dests {
				p.add(d.k, markReplyPorts(d.k, d.rules), d.addr, d.port, d.m)
			}
			got := slices.SortedFunc(maps.Keys(p.keys(c.capacity)), cmpRealKey)
			want := slices.SortedFunc(slices.Values(c.want), cmpRealKey)
			if !slices.Equal(got, want) {
				t.Errorf("keys = %v, want %v", got, want)
			}
		})
	}
	// Only the mark's rules of the service's family are its; ports are
	// sorted and counted once.
	r := append(natMarkRules(vip), ipvs.MarkRule{Mark: 2, Proto: ipvs.TCP, Prefix: netip.PrefixFrom(vip, 32), PortLo: 443, PortHi: 443},
		ipvs.MarkRule{Mark: 1, Proto: ipvs.TCP, Prefix: netip.MustParsePrefix("2001:db8::/64"), PortLo: 443, PortHi: 443},
		ipvs.MarkRule{Mark: 1, Proto: ipvs.TCP, Prefix: netip.MustParsePrefix("198.18.1.0/24"), PortLo: 80, PortHi: 80})
	for _, c := range []struct {
		k    ipvs.ServiceKey
		want string
	}{
		{fwm, "[{6 [80 9000] false} {17 [80 9000] false}]"},
		{ipvs.FWMarkKey(1, true), "[{6 [443] false}]"},
		{ipvs.FWMarkKey(2, false), "[{6 [443] false}]"},
		{ipvs.FWMarkKey(3, false), "[]"},
	} {
		if got := fmt.Sprint(markReplyPorts(c.k, r)); got != c.want {
			t.Errorf("markReplyPorts(%s) = %s, want %s", c.k.String(), got, c.want)
		}
	}
	// 64 distinct ports over several rules are exact, 65 the wildcard.
	var many []ipvs.MarkRule
	for i := range 8 {
		many = append(many, ipvs.MarkRule{Mark: 1, Proto: ipvs.UDP, Prefix: netip.PrefixFrom(vip, 32), PortLo: uint16(1000 + 8*i), PortHi: uint16(1007 + 8*i)},
			ipvs.MarkRule{Mark: 1, Proto: ipvs.UDP, Prefix: netip.MustParsePrefix("198.18.1.0/24"), PortLo: uint16(1000 + 8*i), PortHi: uint16(1007 + 8*i)})
	}
	if rp := markReplyPorts(fwm, many); len(rp) != 1 || rp[0].wild || len(rp[0].ports) != 64 {
		t.Errorf("64 ports in 16 rules: %v, want 64 exact ports", rp)
	}
	many = append(many, ipvs.MarkRule{Mark: 1, Proto: ipvs.UDP, Prefix: netip.PrefixFrom(vip, 32), PortLo: 2000, PortHi: 2000})
	if rp := markReplyPorts(fwm, many); len(rp) != 1 || !rp[0].wild || rp[0].ports != nil {
		t.Errorf("65 ports: %v, want the wildcard", rp)
	}
	// Two services on one real server: the union of their ports.
	p := newRealPlan()
	f2 := ipvs.FWMarkKey(2, false)
	p.add(fwm, markReplyPorts(fwm, tcpOnly), rs, 0, modes.Masq)
	p.add(f2, markReplyPorts(f2, r), rs, 0, modes.Masq)
	got := slices.SortedFunc(maps.Keys(p.keys(8)), cmpRealKey)
	if want := []bpf.ServiceKey{key(rs, 80, ipvs.TCP), key(rs, 443, ipvs.TCP), key(rs, 9000, ipvs.TCP)}; !slices.Equal(got, want) {
		t.Errorf("-f 1 and -f 2 on one real server: keys %v, want %v", got, want)
	}
}

func cmpRealKey(a, b bpf.ServiceKey) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if a.Proto != b.Proto {
		return int(a.Proto) - int(b.Proto)
	}
	return int(a.Port) - int(b.Port)
}

// xdpReason runs the XDP program on frame and returns the one counter it
// moved.
func xdpReason(t *testing.T, o *bpf.Objects, frame []byte) bpf.Reason {
	t.Helper()
	before, err := o.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Program().Run(&ebpf.RunOptions{Data: frame}); err != nil {
		t.Fatal(err)
	}
	after, err := o.Counters()
	if err != nil {
		t.Fatal(err)
	}
	moved := bpf.Reason(bpf.NumReasons)
	for r, n := range after.All() {
		if n != before[r] {
			if moved != bpf.Reason(bpf.NumReasons) {
				t.Fatalf("counters %v and %v moved, want one", moved, r)
			}
			moved = r
		}
	}
	if moved == bpf.Reason(bpf.NumReasons) {
		t.Fatal("no counter moved")
	}
	return moved
}

// TestApplyFWMarkNAT: a firewall-mark service with NAT destinations of
// port 0 and FULLNAT ones of port 8080 is applied (no longer refused),
// and the XDP program steers its real servers' replies from the ports and
// protocols of the mark's rules, not their other traffic. A deleted
// service's keys stay while its destinations are in the trash; changed
// rules change the keys.
func TestApplyFWMarkNAT(t *testing.T) {
	d, _ := testDataplane(t, 16)
	rs1, rs2 := netip.MustParseAddr("198.18.0.21"), netip.MustParseAddr("198.18.0.22")
	la := netip.MustParseAddr("198.18.0.200")
	svc := ipvs.Service{Key: ipvs.FWMarkKey(1, false), Sched: "rr", Netmask: 32, Dests: []ipvs.Dest{
		{Addr: rs1, Fwd: ipvs.FwdMasq, Weight: 1},
		{Addr: rs2, Port: 8080, Fwd: ipvs.FwdFullNAT, Weight: 1},
	}, LocalAddrs: []ipvs.LocalAddr{{Addr: la}}}
	cfg := &ipvs.Config{Services: []ipvs.Service{svc}, Marks: natMarkRules(testVIP), Timeouts: ipvs.DefaultTimeouts}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(cfg); err != nil {
		t.Fatalf("Apply of -f 1 with NAT and FULLNAT destinations: %v", err)
	}
	from := func(src netip.Addr, sport uint16, udp bool) []byte {
		// testDataplane's XDP program has MAC 0.
		return pt.Packet{DstMAC: make([]byte, 6), Src: src, Dst: testClient, SrcPort: sport, DstPort: 40000,
			UDP: udp, Flags: packet.TCPFlagSYN | packet.TCPFlagACK}.Frame()
	}
	type probe struct {
		name  string
		frame []byte
		want  bpf.Reason
	}
	replies := []probe{
		{"tcp from rs1:80", from(rs1, 80, false), bpf.RedirectReply},
		{"tcp from rs1:9000", from(rs1, 9000, false), bpf.RedirectReply},
		{"udp from rs1:80", from(rs1, 80, true), bpf.RedirectReply},
		{"udp from rs1:9000", from(rs1, 9000, true), bpf.RedirectReply},
		{"tcp from rs2:8080", from(rs2, 8080, false), bpf.RedirectReply},
		{"udp from rs2:8080", from(rs2, 8080, true), bpf.RedirectReply},
	}
	others := []probe{
		{"tcp from rs1:22, not a marked port", from(rs1, 22, false), bpf.PassNoService},
		{"udp from rs1:45000, its own query", from(rs1, 45000, true), bpf.PassNoService},
		{"tcp from rs2:80, not its port", from(rs2, 80, false), bpf.PassNoService},
	}
	check := func(when string, ps []probe, want *bpf.Reason) {
		t.Helper()
		for _, p := range ps {
			w := p.want
			if want != nil {
				w = *want
			}
			if got := xdpReason(t, d.objs, p.frame); got != w {
				t.Errorf("%s: %s: %v, want %v", when, p.name, got, w)
			}
		}
	}
	check("applied", replies, nil)
	check("applied", others, nil)
	if len(d.state.reals) != 6 {
		t.Errorf("reals %v, want 6 keys", d.state.reals)
	}
	wc := d.workers[0].cfg.Load()
	if ws := wc.fwmarks[fwmKey{1, false}]; ws == nil || len(ws.laddrs) != 1 || len(wc.laddrs) != 1 {
		t.Errorf("worker's -f 1: %+v, laddrs %v; want the service with its local address", ws, wc.laddrs)
	}

	// Mark 1 loses VIP:9000: its ports go.
	cfg2 := cfg.Clone()
	cfg2.Marks = slices.DeleteFunc(cfg2.Marks, func(r ipvs.MarkRule) bool { return r.PortLo == 9000 })
	if err := d.Apply(cfg2); err != nil {
		t.Fatal(err)
	}
	pass := bpf.PassNoService
	check("without the 9000 rules", []probe{replies[1], replies[3]}, &pass)
	check("without the 9000 rules", []probe{replies[0], replies[2], replies[4], replies[5]}, nil)

	// Deleted with a connection on rs1: its keys stay while the
	// connection lasts (the dying service's rules, though the rules are
	// gone too), rs2's until the resolver releases its ID, then all go.
	dst := d.state.services[svc.Key].dests[netip.AddrPortFrom(rs1, 0)]
	dst.Bind(false)
	if err := d.Apply(&ipvs.Config{Timeouts: ipvs.DefaultTimeouts}); err != nil {
		t.Fatal(err)
	}
	d.reapServices()
	check("deleted, rs1 with a connection", []probe{replies[0], replies[2], replies[4], replies[5]}, nil)
	d.destSnapshot(0) // releases rs2's ID
	d.reapServices()
	check("deleted, rs1 with a connection, rs2 released", []probe{replies[0], replies[2]}, nil)
	check("deleted, rs1 with a connection, rs2 released", []probe{replies[4], replies[5]}, &pass)
	dst.Unbind(false, false)
	d.destSnapshot(0)
	d.reapServices()
	check("deleted, drained", replies, &pass)
	if len(d.state.reals) != 0 || len(d.state.dying) != 0 {
		t.Errorf("after the last connection: reals %v, dying %d; want none", d.state.reals, len(d.state.dying))
	}
}

// fwmarkNATWorker is testWorker with mark 1 on TCP and UDP VIP:80 and
// VIP:9000 and the service -f 1 (persistent with -p 300 if persistent)
// over two NAT real servers of port 0.
func fwmarkNATWorker(t testing.TB, persistent bool) (*worker, *fakeKernel, []netip.Addr) {
	t.Helper()
	w, k := testWorker(t)
	cfg := *w.cfg.Load()
	marks, rr := marksAndRR(t, natMarkRules(testVIP))
	fwd := *w.dp.fwd.Load()
	rss := []netip.Addr{netip.MustParseAddr("198.18.0.21"), netip.MustParseAddr("198.18.0.22")}
	var dests []*sched.Dest
	for j, a := range rss {
		dst := sched.NewDest(a, 0, 1)
		if err := w.dp.reg.Add(dst); err != nil {
			t.Fatal(err)
		}
		fwd[dst.ID] = destFwd{mac: realMACs[j], macOK: true, method: modes.Masq, addr: a}
		dst.SetFwd(uint8(modes.Masq))
		dests = append([]*sched.Dest{dst}, dests...)
	}
	rr.Update(dests)
	spec := ipvs.Service{Key: ipvs.FWMarkKey(1, false), Sched: "rr", Netmask: 32}
	if persistent {
		spec.Persistent, spec.Timeout = true, 300
	}
	pol, err := servicePolicy(&spec, rr, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.marks = marks
	cfg.fwmarks = map[fwmKey]*workerService{{1, false}: {id: 9, ct: pol}}
	w.cfg.Store(&cfg)
	return w, k, rss
}

// TestWorkerFWMarkNAT: NAT for a firewall-mark service. A destination of
// port 0 gets each connection on the client's destination port, TCP and
// UDP alike (ip_vs_nat_xmit with the connection's dport), and its replies
// go back from that port of the VIP. Without -p, rr alternates; with -p,
// one client's connections to both ports and both protocols share one
// real server (the template keyed by the mark, protocol 0, port 0).
func TestWorkerFWMarkNAT(t *testing.T) {
	for _, persistent := range []bool{false, true} {
		name := "rr"
		if persistent {
			name = "persistent"
		}
		t.Run(name, func(t *testing.T) {
			w, k, rss := fwmarkNATWorker(t, persistent)
			type conn struct {
				udp   bool
				dport uint16
			}
			conns := []conn{{false, 80}, {false, 9000}, {true, 80}, {true, 9000}}
			var got []netip.Addr
			now := int64(1)
			for i, c := range conns {
				sport := uint16(40000 + i)
				f := tcpTo(sport, c.dport, syn)
				if c.udp {
					f = udpTo(sport, c.dport)
				}
				k.deliver(f)
				w.poll(now)
				now++
				if len(k.sent) != 2*i+1 {
					t.Fatalf("conn %d (%+v) not forwarded (counters %v)", i, c, w.stats.local)
				}
				m := parseSent(t, k.sent[2*i])
				if m.SrcAddr() != testClient || m.DstPort != c.dport || !slices.Contains(rss, m.DstAddr()) {
					t.Errorf("conn %d: NAT sent %v:%d → %v:%d, want %v → a real server:%d",
						i, m.SrcAddr(), m.SrcPort, m.DstAddr(), m.DstPort, testClient, c.dport)
				}
				got = append(got, m.DstAddr())
				rs := m.DstAddr()
				j := slices.Index(rss, rs)
				reply := pt.Packet{SrcMAC: realMACs[j][:], DstMAC: directorMAC[:], Src: rs, Dst: testClient,
					SrcPort: c.dport, DstPort: sport, UDP: c.udp, Flags: syn | ack, Payload: []byte("ok")}.Frame()
				k.deliver(reply)
				w.poll(now)
				now++
				if len(k.sent) != 2*i+2 {
					t.Fatalf("conn %d: reply not forwarded (counters %v)", i, w.stats.local)
				}
				m = parseSent(t, k.sent[2*i+1])
				if m.SrcAddr() != testVIP || m.SrcPort != c.dport || m.DstAddr() != testClient || m.DstPort != sport {
					t.Errorf("conn %d: reply %v:%d → %v:%d, want %v:%d → %v:%d",
						i, m.SrcAddr(), m.SrcPort, m.DstAddr(), m.DstPort, testVIP, c.dport, testClient, sport)
				}
			}
			if persistent {
				for i, a := range got {
					if a != got[0] {
						t.Errorf("-p: conn %d went to %v, conn 0 to %v; want one real server", i, a, got[0])
					}
				}
			} else if got[0] == got[1] || got[1] == got[2] || got[2] == got[3] {
				t.Errorf("rr: connections went to %v, want alternating real servers", got)
			}
			if w.stats.local[ReplyHit] != uint64(len(conns)) {
				t.Errorf("reply_hit = %d, want %d", w.stats.local[ReplyHit], len(conns))
			}
		})
	}
}

// parseSent parses a frame the worker sent.
func parseSent(t *testing.T, f []byte) packet.Meta {
	t.Helper()
	var m packet.Meta
	if r := packet.Parse(f, &m); r != packet.OK {
		t.Fatalf("sent frame does not parse: %v", r)
	}
	return m
}

// TestOwnershipFWMarkNAT: with several workers, a non-persistent
// firewall-mark service with a NAT destination owns its frames by client,
// and its real server's replies, to no service, have the same owner: the
// worker whose shard holds the connection.
func TestOwnershipFWMarkNAT(t *testing.T) {
	marks, err := markTable(&ipvs.Config{Marks: natMarkRules(testVIP)})
	if err != nil {
		t.Fatal(err)
	}
	rs := netip.MustParseAddr("198.18.0.21")
	svc := ipvs.Service{Key: ipvs.FWMarkKey(1, false), Netmask: 32, Dests: []ipvs.Dest{{Addr: rs, Fwd: ipvs.FwdMasq, Weight: 1}}}
	o := newOwnership([]*ipvs.Service{&svc}, marks, 4)
	if o == nil {
		t.Fatal("no ownership for a fwmark service with a NAT destination")
	}
	seen := map[int]bool{}
	for i := range 64 {
		c := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}).As16()
		for _, proto := range []uint8{packet.ProtoTCP, packet.ProtoUDP} {
			for _, port := range []uint16{80, 9000} {
				req := packet.Meta{Src: c, Dst: testVIP.As16(), SrcPort: 40000, DstPort: port, Proto: proto}
				reply := packet.Meta{Src: rs.As16(), Dst: c, SrcPort: port, DstPort: 40000, Proto: proto}
				owner := o.owner(&req, 0)
				seen[owner] = true
				for self := range 4 {
					if got := o.owner(&reply, self); got != owner {
						t.Fatalf("client %d proto %d port %d: reply on worker %d owned by %d, request by %d", i, proto, port, self, got, owner)
					}
				}
			}
		}
	}
	if len(seen) < 2 {
		t.Errorf("64 clients owned by workers %v: the hash does not spread", seen)
	}
}
