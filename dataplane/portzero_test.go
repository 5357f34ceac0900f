//go:build linux

package dataplane

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/ipvs"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
	"github.com/xlbproject/xlb/laddr"
	"github.com/xlbproject/xlb/modes"
	"github.com/xlbproject/xlb/sched"
)

// portZeroWorker is a worker on a fake kernel with a persistent rr
// service vip:0/tcp (ipvsadm -A -t vip:0 -p) over real servers rss, each
// with port 0 (the client's destination port) and method m, and an exact
// non-persistent service vip:80/tcp over one more real server, exact (its
// MAC is realMACs[len(rss)]).
func portZeroWorker(t testing.TB, m modes.Method, vip netip.Addr, rss []netip.Addr, exact netip.Addr) (*worker, *fakeKernel) {
	t.Helper()
	d := &Dataplane{reg: sched.NewRegistry(16), ctSettings: conntrack.NewSettings(conntrack.DefaultTimeouts())}
	fwd := make([]destFwd, 17)
	cfg := &workerConfig{services: map[svcKey]*workerService{}}
	add := func(id uint32, spec ipvs.Service, addrs []netip.Addr, port uint16, macs [][6]byte) {
		rr, err := sched.New("rr", sched.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		var dests []*sched.Dest
		var methods []uint8
		for i, a := range addrs {
			dst := sched.NewDest(a, port, 1)
			if err := d.reg.Add(dst); err != nil {
				t.Fatal(err)
			}
			fwd[dst.ID] = destFwd{mac: macs[i], macOK: true, method: m, addr: a, port: port}
			dests = append([]*sched.Dest{dst}, dests...)
			for len(methods) <= int(dst.ID) {
				methods = append(methods, conntrack.FwdRoute)
			}
			methods[dst.ID] = uint8(m)
		}
		rr.Update(dests)
		pol, err := servicePolicy(&spec, rr, methods)
		if err != nil {
			t.Fatal(err)
		}
		cfg.services[makeSvcKey(spec.Key)] = &workerService{id: id, ct: pol}
	}
	add(1, ipvs.Service{Key: ipvs.ServiceKey{Proto: ipvs.TCP, Addr: vip}, Sched: "rr", Persistent: true, Timeout: 300, Netmask: vip.BitLen()}, rss, 0,
		realMACs[:len(rss)])
	add(2, ipvs.Service{Key: ipvs.ServiceKey{Proto: ipvs.TCP, Addr: vip, Port: 80}, Sched: "rr"}, []netip.Addr{exact}, 80,
		realMACs[len(rss):])
	d.fwd.Store(&fwd)
	pool, err := laddr.New(laddr.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	kern, q := newFakeKernel(1024, 2048, 256)
	w := &worker{dp: d, q: q, mac: directorMAC, mtu: 1500, ds: newDestStats(17), pool: pool}
	copts := conntrack.DefaultOptions()
	copts.Capacity = 1 << 12
	copts.Registry = d.reg
	copts.Settings = d.ctSettings
	if w.ct, err = conntrack.New(copts); err != nil {
		t.Fatal(err)
	}
	w.cfg.Store(cfg)
	q.refill()
	return w, kern
}

// sentTCP decodes a sent frame's destination MAC, IP addresses and TCP
// ports.
func sentTCP(t *testing.T, f []byte) (mac [6]byte, src, dst netip.Addr, sport, dport uint16) {
	t.Helper()
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tcp == nil || p.NetworkLayer() == nil {
		t.Fatalf("sent frame is not TCP: %v", p)
	}
	nf := p.NetworkLayer().NetworkFlow()
	src, _ = netip.AddrFromSlice(nf.Src().Raw())
	dst, _ = netip.AddrFromSlice(nf.Dst().Raw())
	return [6]byte(f[:6]), src, dst, uint16(tcp.SrcPort), uint16(tcp.DstPort)
}

// A port-0 persistent service takes every port of its VIP that has no
// service of its own, as ip_vs_service_find: one client's connections to
// several ports share its template and so its real server, the next
// client gets the next one (rr), and the exact VIP:80 service keeps its
// own port. DR leaves the ports alone; IPv4 and IPv6.
func TestWorkerPortZeroDR(t *testing.T) {
	for _, fam := range []struct {
		name           string
		vip, c1, c2    netip.Addr
		rs1, rs2, rsEx netip.Addr
	}{
		{"ipv4", testVIP, testClient, netip.MustParseAddr("198.18.0.3"),
			netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.12"), netip.MustParseAddr("198.18.0.13")},
		{"ipv6", netip.MustParseAddr("2001:db8::100"), netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::3"),
			netip.MustParseAddr("2001:db8::11"), netip.MustParseAddr("2001:db8::12"), netip.MustParseAddr("2001:db8::13")},
	} {
		t.Run(fam.name, func(t *testing.T) {
			w, k := portZeroWorker(t, modes.Route, fam.vip, []netip.Addr{fam.rs1, fam.rs2}, fam.rsEx)
			type flow struct {
				client netip.Addr
				sport  uint16
				dport  uint16
			}
			flows := []flow{
				{fam.c1, 40000, 443}, {fam.c1, 40001, 8443}, {fam.c1, 40002, 22},
				{fam.c2, 40000, 443}, {fam.c2, 40001, 5000},
				{fam.c1, 40003, 80}, // the exact service
			}
			for _, f := range flows {
				k.deliver(pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: f.client, Dst: fam.vip,
					SrcPort: f.sport, DstPort: f.dport, Flags: syn}.Frame())
			}
			if n := w.poll(1); n != len(flows) || len(k.sent) != len(flows) {
				t.Fatalf("poll = %d, sent %d; want %d, %d (counters %v)", n, len(k.sent), len(flows), len(flows), w.stats.local)
			}
			macs := make([][6]byte, len(flows))
			for i, f := range flows {
				mac, _, dst, _, dport := sentTCP(t, k.sent[i])
				macs[i] = mac
				if dst != fam.vip || dport != f.dport {
					t.Errorf("flow %d: DR sent to %v, want %v", i, netip.AddrPortFrom(dst, dport), netip.AddrPortFrom(fam.vip, f.dport))
				}
			}
			if macs[0] != macs[1] || macs[0] != macs[2] {
				t.Errorf("client 1's connections to ports 443, 8443, 22 went to %x %x %x, want one real server", macs[0], macs[1], macs[2])
			}
			if macs[3] != macs[4] || macs[3] == macs[0] {
				t.Errorf("client 2's connections went to %x %x (client 1's: %x), want one real server, the other one", macs[3], macs[4], macs[0])
			}
			if macs[5] != realMACs[2] {
				t.Errorf("port 80 went to %x, want the exact service's real server %x", macs[5], realMACs[2])
			}
			if w.stats.local[NoService] != 0 {
				t.Errorf("no_service = %d, want 0", w.stats.local[NoService])
			}
			// A UDP frame to the VIP finds no UDP service, port 0 or not.
			k.deliver(pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: fam.c1, Dst: fam.vip,
				SrcPort: 40000, DstPort: 443, UDP: true}.Frame())
			w.poll(2)
			if w.stats.local[NoService] != 1 || len(k.sent) != len(flows) {
				t.Errorf("udp to vip:443: no_service = %d, sent %d; want 1, %d", w.stats.local[NoService], len(k.sent), len(flows))
			}
		})
	}
}

// NAT to a port-0 real server of a port-0 service sends each connection
// to the real server's address on the client's destination port, as
// IPVS does for -a -t VIP:0 -r RS -m, and its replies back from that
// port of the VIP.
func TestWorkerPortZeroNAT(t *testing.T) {
	rs := netip.MustParseAddr("198.18.0.11")
	w, k := portZeroWorker(t, modes.Masq, testVIP, []netip.Addr{rs}, netip.MustParseAddr("198.18.0.13"))
	for i, port := range []uint16{443, 8443} {
		sport := uint16(40000 + i)
		k.deliver(tcpTo(sport, port, syn))
		if w.poll(int64(2*i + 1)); len(k.sent) != 2*i+1 {
			t.Fatalf("port %d: SYN not forwarded (counters %v)", port, w.stats.local)
		}
		_, src, dst, _, dport := sentTCP(t, k.sent[2*i])
		if dst != rs || dport != port || src != testClient {
			t.Errorf("port %d: NAT sent %v → %v:%d, want %v → %v:%d", port, src, dst, dport, testClient, rs, port)
		}
		k.deliver(pt.Packet{SrcMAC: realMACs[0][:], DstMAC: directorMAC[:], Src: rs, Dst: testClient,
			SrcPort: port, DstPort: sport, Flags: syn | ack}.Frame())
		if w.poll(int64(2*i + 2)); len(k.sent) != 2*i+2 {
			t.Fatalf("port %d: reply not forwarded (counters %v)", port, w.stats.local)
		}
		_, src, dst, sp, dp := sentTCP(t, k.sent[2*i+1])
		if src != testVIP || sp != port || dst != testClient || dp != sport {
			t.Errorf("port %d: reply %v:%d → %v:%d, want %v:%d → %v:%d", port, src, sp, dst, dp, testVIP, port, testClient, sport)
		}
	}
}
