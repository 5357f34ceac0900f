//go:build linux

package dataplane

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
	"github.com/xlbproject/xlb/laddr"
	"github.com/xlbproject/xlb/modes"
	"github.com/xlbproject/xlb/sched"
)

var testLaddr = netip.MustParseAddr("198.18.0.200")

// methodWorker is a worker on a fake kernel with one rr TCP service on
// VIP:80 over one real server, 198.18.0.11:8080, forwarded by method m
// (a FULLNAT service has the local address testLaddr).
func methodWorker(t testing.TB, m modes.Method) (*worker, *fakeKernel) {
	t.Helper()
	return methodWorkerAt(t, m, testServices[0], netip.MustParseAddr("198.18.0.11"), testLaddr)
}

// methodWorkerAt is methodWorker with service k over real server rs:8080,
// and local address la for FULLNAT.
func methodWorkerAt(t testing.TB, m modes.Method, k ipvs.ServiceKey, rs, la netip.Addr) (*worker, *fakeKernel) {
	t.Helper()
	d := &Dataplane{reg: sched.NewRegistry(16), ctSettings: conntrack.NewSettings(conntrack.DefaultTimeouts())}
	fwd := make([]destFwd, 17)
	rr, err := sched.New("rr", sched.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	dst := sched.NewDest(rs, 8080, 1)
	if err := d.reg.Add(dst); err != nil {
		t.Fatal(err)
	}
	fwd[dst.ID] = destFwd{mac: realMACs[0], macOK: true, method: m, addr: dst.Addr, port: dst.Port}
	rr.Update([]*sched.Dest{dst})
	spec := ipvs.Service{Key: k, Sched: "rr", Netmask: 32}
	methods := make([]uint8, dst.ID+1)
	methods[dst.ID] = uint8(m)
	pol, err := servicePolicy(&spec, rr, methods)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &workerConfig{services: map[svcKey]*workerService{}}
	ws := &workerService{id: 1, ct: pol}
	if m == modes.FullNAT {
		ws.laddrs = [][16]byte{la.As16()}
		cfg.laddrs = []netip.Addr{la}
	}
	cfg.services[makeSvcKey(k)] = ws
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
	copts.LocalReleased = func(la [16]byte, lport uint16, rs [16]byte, rport uint16) { w.pool.Release(la, rs, rport, lport) }
	if w.ct, err = conntrack.New(copts); err != nil {
		t.Fatal(err)
	}
	w.cfg.Store(cfg)
	q.refill()
	return w, kern
}

// decode parses a sent frame, checking every checksum gopacket can.
func decode(t *testing.T, f []byte) (ip *layers.IPv4, tcp *layers.TCP) {
	t.Helper()
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	ip, _ = p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ = p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if ip == nil || tcp == nil {
		t.Fatalf("sent frame is not IPv4 TCP: %v", p)
	}
	var m packet.Meta
	if r := packet.Parse(f, &m); r != packet.OK {
		t.Fatalf("sent frame does not parse: %v", r)
	}
	if !packet.L4ChecksumOK(f, &m) {
		t.Errorf("sent frame has a bad TCP checksum")
	}
	if packet.Checksum(f[m.L3Off:m.L3Off+int(ip.IHL)*4], 0) != 0 {
		t.Errorf("sent frame has a bad IPv4 header checksum")
	}
	return ip, tcp
}

// NAT and FULLNAT through the worker: a client's SYN is rewritten to the
// real server (port mapping 80 → 8080) and the real server's SYN-ACK,
// matched by the reply key, back to the client from the VIP; the method
// is the connection's, bound when it was created.
func TestWorkerNATAndFullNAT(t *testing.T) {
	rs := netip.MustParseAddr("198.18.0.11")
	for _, m := range []modes.Method{modes.Masq, modes.FullNAT} {
		t.Run(m.String(), func(t *testing.T) {
			w, k := methodWorker(t, m)
			k.deliver(tcpTo(40000, 80, syn))
			if n := w.poll(1); n != 1 || len(k.sent) != 1 {
				t.Fatalf("poll = %d, sent %d; want 1, 1 (counters %v)", n, len(k.sent), w.stats.local)
			}
			ip, tcp := decode(t, k.sent[0])
			wantSrc, wantSport := testClient, layers.TCPPort(40000)
			if m == modes.FullNAT {
				wantSrc = testLaddr
			}
			if got, _ := netip.AddrFromSlice(ip.DstIP); got != rs || tcp.DstPort != 8080 {
				t.Errorf("in: destination %v:%d, want %v:8080", got, tcp.DstPort, rs)
			}
			if got, _ := netip.AddrFromSlice(ip.SrcIP); got != wantSrc.Unmap() || (m == modes.Masq && tcp.SrcPort != wantSport) {
				t.Errorf("in: source %v:%d, want %v", got, tcp.SrcPort, wantSrc)
			}
			if ip.TTL != 63 {
				t.Errorf("in: TTL %d, want 63", ip.TTL)
			}
			lport := uint16(tcp.SrcPort)

			// The real server answers the address and port it saw.
			reply := pt.Packet{SrcMAC: realMACs[0][:], DstMAC: directorMAC[:], Src: rs, Dst: wantSrc,
				SrcPort: 8080, DstPort: lport, Flags: syn | ack, Payload: []byte("ok")}.Frame()
			k.deliver(reply)
			if n := w.poll(2); n != 1 || len(k.sent) != 2 {
				t.Fatalf("reply: poll = %d, sent %d; want 1, 2 (counters %v)", n, len(k.sent), w.stats.local)
			}
			ip, tcp = decode(t, k.sent[1])
			if got, _ := netip.AddrFromSlice(ip.SrcIP); got != testVIP || tcp.SrcPort != 80 {
				t.Errorf("out: source %v:%d, want %v:80", got, tcp.SrcPort, testVIP)
			}
			if got, _ := netip.AddrFromSlice(ip.DstIP); got != testClient || tcp.DstPort != 40000 {
				t.Errorf("out: destination %v:%d, want %v:40000", got, tcp.DstPort, testClient)
			}
			if got := k.sent[1][:6]; string(got) != string(clientMAC) {
				t.Errorf("out: to MAC %x, want the client's %x (the hop its SYN came from)", got, clientMAC)
			}
			if w.stats.local[ReplyHit] != 1 {
				t.Errorf("reply_hit = %d, want 1", w.stats.local[ReplyHit])
			}

			// A reply for no connection is dropped.
			k.deliver(pt.Packet{SrcMAC: realMACs[0][:], DstMAC: directorMAC[:], Src: rs, Dst: wantSrc,
				SrcPort: 8080, DstPort: lport + 1, Flags: ack}.Frame())
			w.poll(3)
			if len(k.sent) != 2 {
				t.Errorf("a reply for no connection was sent")
			}
			if m == modes.FullNAT {
				if st := w.pool.Stats(); st.Allocs != 1 || st.Releases != 0 {
					t.Errorf("pool stats %+v, want 1 alloc", st)
				}
				// Expiry gives the port back.
				w.ct.Expire(1<<62, 1<<20)
				if st := w.pool.Stats(); st.Releases != 1 {
					t.Errorf("after expiry pool stats %+v, want 1 release", st)
				}
			}
		})
	}
}

// A FULLNAT service without a local address drops new connections,
// counted, and keeps no entry.
func TestWorkerFullNATNoLocalAddress(t *testing.T) {
	w, k := methodWorker(t, modes.FullNAT)
	cfg := w.cfg.Load()
	for _, s := range cfg.services {
		s.laddrs = nil
	}
	cfg.laddrs = nil
	k.deliver(tcpTo(40000, 80, syn))
	w.poll(1)
	if len(k.sent) != 0 || w.stats.local[NoLocalPort] != 1 || w.ct.Len() != 0 {
		t.Errorf("sent %d, no_local_port %d, entries %d; want 0, 1, 0", len(k.sent), w.stats.local[NoLocalPort], w.ct.Len())
	}
}

// A frame whose L4 checksum was left to the NIC (CHECKSUM_PARTIAL: the
// field holds the pseudo-header sum) is completed before NAT, so the real
// server gets a valid checksum.
func TestWorkerCompletesPartialChecksum(t *testing.T) {
	w, k := methodWorker(t, modes.Masq)
	f := tcpTo(40000, 80, syn)
	var m packet.Meta
	if packet.Parse(f, &m) != packet.OK {
		t.Fatal("test frame does not parse")
	}
	ip := f[m.L3Off : m.L3Off+m.IPLen]
	ps := packet.PseudoHeaderSum(ip, 4, packet.ProtoTCP, m.L4Len())
	c := packet.Checksum(nil, ps) // ^fold(ps)
	f[m.L4Off+16], f[m.L4Off+17] = byte(^c>>8), byte(^c)
	k.deliver(f)
	w.poll(1)
	if len(k.sent) != 1 {
		t.Fatalf("sent %d frames, want 1", len(k.sent))
	}
	decode(t, k.sent[0])
	if w.stats.local[CsumCompleted] != 1 {
		t.Errorf("csum_completed = %d, want 1", w.stats.local[CsumCompleted])
	}
}

// NAT and FULLNAT allocate nothing per frame, in either direction.
func TestWorkerNATAllocs(t *testing.T) {
	rs := netip.MustParseAddr("198.18.0.11")
	for _, m := range []modes.Method{modes.Masq, modes.FullNAT} {
		w, k := methodWorker(t, m)
		k.deliver(tcpTo(40000, 80, syn))
		w.poll(1)
		if len(k.sent) != 1 {
			t.Fatalf("%v: SYN not forwarded", m)
		}
		_, tcp := decode(t, k.sent[0])
		k.keep = false
		dst, lport := testClient, uint16(tcp.SrcPort)
		if m == modes.FullNAT {
			dst = testLaddr
		}
		in := tcpTo(40000, 80, ack)
		out := pt.Packet{SrcMAC: realMACs[0][:], DstMAC: directorMAC[:], Src: rs, Dst: dst,
			SrcPort: 8080, DstPort: lport, Flags: ack}.Frame()
		if allocs := pollAllocs(w, k, in, out); allocs != 0 {
			t.Errorf("%v: %v allocations per batch, want 0", m, allocs)
		}
		if w.stats.local[ReplyHit] < 100 {
			t.Errorf("%v: reply_hit = %d, want ≥ 100", m, w.stats.local[ReplyHit])
		}
	}
}

// BenchmarkWorkerMethods is the worker's cost per frame, on the fake
// kernel, for each forwarding method, direction and IP version: batches
// of 64 established-connection frames (client → real server, and for NAT
// and FULLNAT the real server's replies), from the RX ring to the TX
// ring. The fake kernel's share (its copy of each frame into the UMEM and
// its TX drain, with the rings) is BenchmarkQueueEcho's.
func BenchmarkWorkerMethods(b *testing.B) {
	for _, fam := range benchFamilies {
		for _, m := range []modes.Method{modes.Route, modes.Masq, modes.Tunnel, modes.FullNAT} {
			for _, dir := range []modes.Dir{modes.In, modes.Out} {
				if dir == modes.Out && (m == modes.Route || m == modes.Tunnel) {
					continue // replies bypass the director
				}
				b.Run(m.String()+"/"+dir.String()+"/"+fam.name, func(b *testing.B) {
					w, k := fam.worker(b, m)
					var frames [][]byte
					for i := 0; i < maxBatch; i++ {
						k.deliver(fam.tcp(uint16(20000+i), 80, syn))
					}
					w.poll(1)
					if len(k.sent) != maxBatch {
						b.Fatalf("set-up: %d of %d SYNs forwarded", len(k.sent), maxBatch)
					}
					for i, s := range k.sent {
						if dir == modes.In {
							frames = append(frames, fam.tcp(uint16(20000+i), 80, ack))
							continue
						}
						var meta packet.Meta
						if packet.Parse(s, &meta) != packet.OK {
							b.Fatal("set-up: forwarded SYN does not parse")
						}
						frames = append(frames, pt.Packet{SrcMAC: realMACs[0][:], DstMAC: directorMAC[:], Src: fam.rs,
							Dst: meta.SrcAddr(), SrcPort: 8080, DstPort: meta.SrcPort, Flags: ack, Payload: []byte("xlb")}.Frame())
					}
					k.keep = false
					n := benchFrames(b, w, k, frames)
					if w.stats.local[TxFrames] < uint64(n) {
						b.Fatalf("sent %d of %d frames (counters %v)", w.stats.local[TxFrames], n, w.stats.local)
					}
				})
			}
		}
	}
}

// benchFamilies are the IP versions the worker benchmarks run in: a
// worker for method m over one real server (fam.rs:8080, TUN with an
// IPIP encapsulation) and the client's frames to its TCP service on
// port 80.
var benchFamilies = []struct {
	name   string
	rs     netip.Addr
	worker func(testing.TB, modes.Method) (*worker, *fakeKernel)
	tcp    func(sport, dport uint16, flags uint8) []byte
}{
	{"ipv4", netip.MustParseAddr("198.18.0.11"), func(t testing.TB, m modes.Method) (*worker, *fakeKernel) {
		w, k := methodWorker(t, m)
		if m == modes.Tunnel {
			fwd := *w.dp.fwd.Load()
			fwd[1].encap = modes.Encap{Type: modes.IPIP, Src: netip.MustParseAddr("198.18.0.1").As16()}
		}
		return w, k
	}, tcpTo},
	{"ipv6", testRS6, func(t testing.TB, m modes.Method) (*worker, *fakeKernel) {
		w, k := methodWorkerAt(t, m, ipvs.ServiceKey{Proto: ipvs.TCP, Addr: testVIP6, Port: 80}, testRS6, testLaddr6)
		if m == modes.Tunnel {
			fwd := *w.dp.fwd.Load()
			fwd[1].encap = modes.Encap{Type: modes.IPIP, Src: testDirIP6.As16()}
		}
		return w, k
	}, func(sport, dport uint16, flags uint8) []byte {
		return pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient6, Dst: testVIP6,
			SrcPort: sport, DstPort: dport, Flags: flags, Payload: []byte("xlb")}.Frame()
	}},
}

// TestWorkerMethodsAllocs: established connections, every method,
// direction and IP version, allocate nothing per frame.
func TestWorkerMethodsAllocs(t *testing.T) {
	for _, fam := range benchFamilies {
		for _, m := range []modes.Method{modes.Route, modes.Masq, modes.Tunnel, modes.FullNAT} {
			w, k := fam.worker(t, m)
			k.deliver(fam.tcp(40000, 80, syn))
			w.poll(1)
			if len(k.sent) != 1 {
				t.Fatalf("%v %s: SYN not forwarded (counters %v)", m, fam.name, w.stats.local)
			}
			k.keep = false
			frames := [][]byte{fam.tcp(40000, 80, ack)}
			if m == modes.Masq || m == modes.FullNAT {
				// The real server's reply to the forwarded SYN.
				var sm packet.Meta
				if packet.Parse(k.sent[0], &sm) != packet.OK {
					t.Fatalf("%v %s: forwarded SYN does not parse", m, fam.name)
				}
				frames = append(frames, pt.Packet{SrcMAC: realMACs[0][:], DstMAC: directorMAC[:], Src: fam.rs,
					Dst: sm.SrcAddr(), SrcPort: 8080, DstPort: sm.SrcPort, Flags: ack}.Frame())
			}
			if allocs := pollAllocs(w, k, frames...); allocs != 0 {
				t.Errorf("%v %s: %v allocations per batch, want 0", m, fam.name, allocs)
			}
			if s := &w.stats.local; s[TxFrames] != s[RxFrames] {
				t.Errorf("%v %s: %d frames received, %d sent (counters %v)", m, fam.name, s[RxFrames], s[TxFrames], *s)
			}
		}
	}
}

// pollAllocs is the allocations per batch of w delivering frames and
// polling them, over 100 batches, at clock 2, 3, ...
func pollAllocs(w *worker, k *fakeKernel, frames ...[]byte) float64 {
	now := int64(2)
	return testing.AllocsPerRun(100, func() {
		for _, f := range frames {
			k.deliver(f)
		}
		w.poll(now)
		now++
	})
}
