//go:build linux

package dataplane

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
	"github.com/xlbproject/xlb/laddr"
	"github.com/xlbproject/xlb/modes"
	"github.com/xlbproject/xlb/sched"
)

// queuePair is two workers of one dataplane, each on a fake kernel (one
// RX queue each), with an rr TCP service VIP:80 over three real servers
// 198.18.0.11-13:8080 forwarded by method m, persistent with netmask
// /mask if persistent, and hand-off rings between them (own: the
// ownership rules; false leaves them out, as before hand-off existed).
func queuePair(t testing.TB, m modes.Method, persistent bool, mask int, own bool) ([]*worker, []*fakeKernel) {
	t.Helper()
	d := &Dataplane{reg: sched.NewRegistry(16), ctSettings: conntrack.NewSettings(conntrack.DefaultTimeouts())}
	fwd := make([]destFwd, 17)
	spec := ipvs.Service{Key: testServices[0], Sched: "rr", Netmask: mask, Persistent: persistent}
	var dests []*sched.Dest
	methods := make([]uint8, 17)
	for j := range realMACs {
		dst := sched.NewDest(netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + j)}), 8080, 1)
		if err := d.reg.Add(dst); err != nil {
			t.Fatal(err)
		}
		fwd[dst.ID] = destFwd{mac: realMACs[j], macOK: true, method: m, addr: dst.Addr, port: dst.Port}
		methods[dst.ID] = uint8(m)
		dests = append([]*sched.Dest{dst}, dests...)
		f := map[modes.Method]ipvs.Fwd{modes.Route: ipvs.FwdRoute, modes.Masq: ipvs.FwdMasq, modes.FullNAT: ipvs.FwdFullNAT}[m]
		spec.Dests = append(spec.Dests, ipvs.Dest{Addr: dst.Addr, Port: 8080, Fwd: f, Weight: 1})
	}
	if m == modes.FullNAT {
		spec.LocalAddrs = []ipvs.LocalAddr{{Addr: testLaddr}}
	}
	d.fwd.Store(&fwd)
	var o *ownership
	if own {
		if o = newOwnership([]*ipvs.Service{&spec}, nil, 2); o == nil {
			t.Fatal("newOwnership = nil for an owned service")
		}
	}
	var ws []*worker
	var ks []*fakeKernel
	for i := 0; i < 2; i++ {
		rr, err := sched.New("rr", sched.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		rr.Update(dests)
		pol, err := servicePolicy(&spec, rr, methods)
		if err != nil {
			t.Fatal(err)
		}
		cfg := &workerConfig{services: map[svcKey]*workerService{}, own: o}
		ws1 := &workerService{id: 1, ct: pol}
		if m == modes.FullNAT {
			ws1.laddrs = [][16]byte{testLaddr.As16()}
			cfg.laddrs = []netip.Addr{testLaddr}
		}
		cfg.services[makeSvcKey(spec.Key)] = ws1
		lo := laddr.DefaultOptions()
		lo.Worker, lo.Workers = i, 2
		pool, err := laddr.New(lo)
		if err != nil {
			t.Fatal(err)
		}
		kern, q := newFakeKernel(1024, 2048, 256)
		w := &worker{id: i, dp: d, q: q, mac: directorMAC, mtu: 1500, ds: newDestStats(17), pool: pool}
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
		ws = append(ws, w)
		ks = append(ks, kern)
	}
	d.workers = ws
	connectHandoff(ws, 2048)
	return ws, ks
}

// pollPair polls both workers twice, so that frames handed either way
// are forwarded, and returns what both sent, clearing it.
func pollPair(ws []*worker, ks []*fakeKernel, now int64) [][]byte {
	for range 2 {
		ws[0].poll(now)
		ws[1].poll(now)
	}
	var sent [][]byte
	for _, k := range ks {
		sent = append(sent, k.sent...)
		k.sent = nil
	}
	return sent
}

func clientAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 1, byte(10 + i)}) }

// With -p over two queues, every connection of a client reaches the same
// real server, whichever queue RSS put it on: its frames go to the one
// worker that owns the client, and one template. Without the ownership
// rules the two workers' rr rounds place some client on two servers.
func TestTwoWorkersPersistence(t *testing.T) {
	const clients, conns = 16, 6
	run := func(own bool) (split int, ws []*worker) {
		ws, ks := queuePair(t, modes.Route, true, 32, own)
		server := map[netip.Addr]map[[6]byte]bool{}
		now := int64(1)
		for j := 0; j < conns; j++ {
			for c := 0; c < clients; c++ {
				f := pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: clientAddr(c), Dst: testVIP,
					SrcPort: uint16(20000 + j), DstPort: 80, Flags: syn}.Frame()
				if !ks[(c+j)%2].deliver(f) {
					t.Fatal("fake kernel could not deliver")
				}
			}
			sent := pollPair(ws, ks, now)
			if len(sent) != clients {
				t.Fatalf("round %d: %d frames sent, want %d (counters %v / %v)", j, len(sent), clients, ws[0].stats.local, ws[1].stats.local)
			}
			for _, s := range sent {
				ip, _ := decode(t, s)
				src, _ := netip.AddrFromSlice(ip.SrcIP)
				if server[src] == nil {
					server[src] = map[[6]byte]bool{}
				}
				server[src][[6]byte(s[:6])] = true
			}
			now++
		}
		for _, s := range server {
			if len(s) > 1 {
				split++
			}
		}
		return split, ws
	}
	split, ws := run(true)
	if split != 0 {
		t.Errorf("%d of %d clients reached more than one real server with -p", split, clients)
	}
	for _, w := range ws {
		if w.stats.local[RxFrames] == 0 || w.stats.local[HandedOff] == 0 || w.stats.local[HandoffRx] == 0 {
			t.Errorf("worker %d: rx %d, handed off %d, handed to it %d; want all > 0 (the test must use both)",
				w.id, w.stats.local[RxFrames], w.stats.local[HandedOff], w.stats.local[HandoffRx])
		}
		if w.stats.local[HandoffFull] != 0 || w.stats.local[HandoffNoMem] != 0 {
			t.Errorf("worker %d: hand-off drops %d full, %d no frame", w.id, w.stats.local[HandoffFull], w.stats.local[HandoffNoMem])
		}
	}
	if got := ws[0].ct.Stats().Templates + ws[1].ct.Stats().Templates; got != clients {
		t.Errorf("templates over both workers = %d, want %d (one per client)", got, clients)
	}
	if split, _ := run(false); split == 0 {
		t.Error("without ownership no client was split: the test cannot tell the difference")
	}
}

// A NAT or FULLNAT reply that RSS puts on the other queue than its
// connection's still finds the connection: it is handed to the owner.
func TestTwoWorkersNATReplies(t *testing.T) {
	for _, m := range []modes.Method{modes.Masq, modes.FullNAT} {
		t.Run(m.String(), func(t *testing.T) {
			ws, ks := queuePair(t, m, false, 32, true)
			const conns = 24
			now := int64(1)
			for j := 0; j < conns; j++ {
				c, sport := clientAddr(j%5), uint16(30000+j)
				ks[j%2].deliver(pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: c, Dst: testVIP,
					SrcPort: sport, DstPort: 80, Flags: syn}.Frame())
				sent := pollPair(ws, ks, now)
				if len(sent) != 1 {
					t.Fatalf("conn %d: SYN: %d frames sent, want 1", j, len(sent))
				}
				ip, tcp := decode(t, sent[0])
				rs, _ := netip.AddrFromSlice(ip.DstIP)
				src, _ := netip.AddrFromSlice(ip.SrcIP)
				// The reply arrives on both queues in turn, whoever owns it.
				ks[(j/2)%2].deliver(pt.Packet{SrcMAC: realMACs[0][:], DstMAC: directorMAC[:], Src: rs, Dst: src,
					SrcPort: 8080, DstPort: uint16(tcp.SrcPort), Flags: syn | ack, Payload: []byte("ok")}.Frame())
				sent = pollPair(ws, ks, now)
				if len(sent) != 1 {
					t.Fatalf("conn %d: reply: %d frames sent, want 1 (counters %v / %v)", j, len(sent), ws[0].stats.local, ws[1].stats.local)
				}
				ip, tcp = decode(t, sent[0])
				if got, _ := netip.AddrFromSlice(ip.SrcIP); got != testVIP || tcp.SrcPort != 80 {
					t.Errorf("conn %d: reply from %v:%d, want %v:80", j, got, tcp.SrcPort, testVIP)
				}
				if got, _ := netip.AddrFromSlice(ip.DstIP); got != c || tcp.DstPort != layers.TCPPort(sport) {
					t.Errorf("conn %d: reply to %v:%d, want %v:%d", j, got, tcp.DstPort, c, sport)
				}
				now++
			}
			var hits, handed uint64
			for _, w := range ws {
				hits += w.stats.local[ReplyHit]
				handed += w.stats.local[HandedOff]
				if w.stats.local[RxFrames] == 0 {
					t.Errorf("worker %d received nothing", w.id)
				}
			}
			if hits != conns || handed == 0 {
				t.Errorf("reply_hit %d, handed_off %d; want %d, > 0", hits, handed, conns)
			}
		})
	}
}

// DR without -p never moves a frame: owner is the receiving worker.
func TestTwoWorkersDRStays(t *testing.T) {
	spec := ipvs.Service{Key: testServices[0], Sched: "rr", Netmask: 32,
		Dests: []ipvs.Dest{{Addr: netip.MustParseAddr("198.18.0.11"), Port: 80, Fwd: ipvs.FwdRoute, Weight: 1}}}
	if o := newOwnership([]*ipvs.Service{&spec}, nil, 2); o != nil {
		t.Errorf("ownership of a DR service without -p = %+v, want nil (nothing to hand off)", o)
	}
	spec.Dests[0].Fwd = ipvs.FwdMasq
	o := newOwnership([]*ipvs.Service{&spec}, nil, 2)
	if o == nil || !o.nat {
		t.Fatalf("ownership of a NAT service = %+v, want nat", o)
	}
	// The forward frame's owner is its source's; the reply's, its
	// destination's: the same client, the same worker.
	for i := 0; i < 64; i++ {
		c := clientAddr(i).As16()
		rs := netip.MustParseAddr("198.18.0.11").As16()
		fwdM := packet.Meta{Src: c, Dst: testVIP.As16(), SrcPort: 40000, DstPort: 80, Proto: packet.ProtoTCP}
		repM := packet.Meta{Src: rs, Dst: c, SrcPort: 80, DstPort: 40000, Proto: packet.ProtoTCP}
		if a, b := o.owner(&fwdM, 7), o.owner(&repM, 7); a != b || a > 1 {
			t.Errorf("client %d: forward owner %d, reply owner %d", i, a, b)
		}
	}
}

// Handing off and draining allocate nothing.
func TestTwoWorkersAllocs(t *testing.T) {
	ws, ks := queuePair(t, modes.Masq, true, 24, true)
	syn := pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
		SrcPort: 40000, DstPort: 80, Flags: syn}.Frame()
	tc := testClient.As16()
	owner := ws[0].cfg.Load().own.client(&tc)
	other := 1 - owner
	ks[other].deliver(syn)
	if sent := pollPair(ws, ks, 1); len(sent) != 1 {
		t.Fatalf("SYN: %d sent, want 1", len(sent))
	}
	ack := pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
		SrcPort: 40000, DstPort: 80, Flags: ack}.Frame()
	ks[0].keep, ks[1].keep = false, false
	now := int64(2)
	allocs := testing.AllocsPerRun(100, func() {
		ks[other].deliver(ack)
		ws[other].poll(now)
		ws[owner].poll(now)
		now++
	})
	if allocs != 0 {
		t.Errorf("%v allocations per hand-off batch, want 0", allocs)
	}
	if got := ws[other].stats.local[HandedOff]; got < 100 {
		t.Errorf("handed_off = %d, want ≥ 100", got)
	}
}

// BenchmarkHandoff is the cost of a frame that reaches the wrong worker:
// batches of 64 established NAT frames (client → VIP) delivered to the
// worker that does not own the client, handed off and forwarded by the
// owner, against the same frames delivered to the owner ("direct"). The
// difference is the hand-off's price per frame: the copy into the ring,
// the copy into the owner's UMEM, and a second parse.
func BenchmarkHandoff(b *testing.B) {
	for _, direct := range []bool{true, false} {
		name := "handed"
		if direct {
			name = "direct"
		}
		b.Run(name, func(b *testing.B) {
			ws, ks := queuePair(b, modes.Masq, false, 32, true)
			tc := testClient.As16()
			owner := ws[0].cfg.Load().own.client(&tc)
			rx := 1 - owner
			if direct {
				rx = owner
			}
			var frames [][]byte
			for i := 0; i < maxBatch; i++ {
				ks[rx].deliver(tcpTo(uint16(20000+i), 80, syn))
				frames = append(frames, tcpTo(uint16(20000+i), 80, ack))
			}
			if sent := pollPair(ws, ks, 1); len(sent) != maxBatch {
				b.Fatalf("set-up: %d of %d SYNs forwarded", len(sent), maxBatch)
			}
			ks[0].keep, ks[1].keep = false, false
			b.ReportAllocs()
			b.ResetTimer()
			n := 0
			for b.Loop() {
				for _, f := range frames {
					ks[rx].deliver(f)
				}
				ws[rx].poll(2)
				if !direct {
					ws[owner].poll(2)
				}
				n += len(frames)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/frame")
			if got := ws[owner].stats.local[TxFrames]; got < uint64(n) {
				b.Fatalf("sent %d of %d frames", got, n)
			}
		})
	}
}

// BenchmarkWorkersParallel runs 1 and 2 workers at once, each on its own
// goroutine (as each worker has its own core) and fake kernel, forwarding
// established DR frames: the aggregate rate, in Mframes/s, shows how the
// worker pipeline scales with cores when nothing is shared (DR without
// -p never hands off). On a loaded 2-core machine the figure for 2 is a
// floor.
func BenchmarkWorkersParallel(b *testing.B) {
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			type wk struct {
				w      *worker
				k      *fakeKernel
				frames [][]byte
			}
			var all []wk
			for range n {
				w, k := methodWorker(b, modes.Route)
				var frames [][]byte
				for i := 0; i < maxBatch; i++ {
					k.deliver(tcpTo(uint16(20000+i), 80, syn))
					frames = append(frames, tcpTo(uint16(20000+i), 80, ack))
				}
				w.poll(1)
				k.keep = false
				all = append(all, wk{w, k, frames})
			}
			batches := b.N/maxBatch + 1
			b.ResetTimer()
			var wg sync.WaitGroup
			for _, x := range all {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range batches {
						for _, f := range x.frames {
							x.k.deliver(f)
						}
						x.w.poll(2)
					}
				}()
			}
			wg.Wait()
			frames := float64(n * batches * maxBatch)
			b.ReportMetric(frames/b.Elapsed().Seconds()/1e6, "Mframes/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())*float64(n)/frames, "core-ns/frame")
		})
	}
}

// Two workers polling on their own goroutines, as in Run, each receiving
// frames half of which the other owns: every frame is forwarded once by
// its owner, or counted as a hand-off drop (run under -race: the rings
// and the wake-up flag are all the workers share).
func TestTwoWorkersConcurrent(t *testing.T) {
	ws, ks := queuePair(t, modes.Route, true, 32, true)
	const batches, per = 20, 32
	var wg sync.WaitGroup
	var done sync.WaitGroup
	done.Add(2)
	for i := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			now := int64(1)
			for b := 0; b < batches; b++ {
				for j := 0; j < per; j++ {
					ks[i].deliver(pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: clientAddr(j % 16), Dst: testVIP,
						SrcPort: uint16(10000 + i*5000 + b*per + j), DstPort: 80, Flags: syn}.Frame())
				}
				ws[i].poll(now)
				now++
			}
			done.Done()
			// Drain what the peer hands over until it is done too.
			finished := make(chan struct{})
			go func() { done.Wait(); close(finished) }()
			for {
				select {
				case <-finished:
					for range 4 {
						ws[i].poll(now)
					}
					return
				default:
					ws[i].poll(now)
				}
			}
		}()
	}
	wg.Wait()
	// A last round on this goroutine: anything published after a
	// worker's final poll.
	for range 2 {
		ws[0].poll(1000)
		ws[1].poll(1000)
	}
	var sent, dropped, handed uint64
	for i, w := range ws {
		sent += uint64(len(ks[i].sent))
		dropped += w.stats.local[HandoffFull] + w.stats.local[HandoffNoMem]
		handed += w.stats.local[HandedOff]
	}
	if sent+dropped != 2*batches*per || handed == 0 {
		t.Errorf("sent %d + hand-off drops %d, want %d; handed off %d, want > 0", sent, dropped, 2*batches*per, handed)
	}
}

// The ownership mask is the shortest persistence netmask per family:
// clients in one -M prefix share an owner, and without persistence
// clients spread over the workers.
func TestOwnershipMask(t *testing.T) {
	v4 := ipvs.Service{Key: testServices[0], Persistent: true, Netmask: 24}
	v6 := ipvs.Service{Key: ipvs.ServiceKey{Proto: ipvs.TCP, Addr: netip.MustParseAddr("2001:db8::100"), Port: 80},
		Persistent: true, Netmask: 64}
	o := newOwnership([]*ipvs.Service{&v4, &v6}, nil, 4)
	owners := func(n int, f func(i int) netip.Addr) map[int]int {
		got := map[int]int{}
		for i := 0; i < n; i++ {
			a := f(i).As16()
			got[o.client(&a)]++
		}
		return got
	}
	if got := owners(200, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 7, byte(i)}) }); len(got) != 1 {
		t.Errorf("one /24 under -M 24 has owners %v, want one", got)
	}
	if got := owners(200, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, byte(i), 7, 1}) }); len(got) != 4 {
		t.Errorf("200 /24s have owners %v, want all 4 workers", got)
	}
	if got := owners(200, func(i int) netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i), 14: byte(i >> 3)})
	}); len(got) != 1 {
		t.Errorf("one /64 under -M 64 has owners %v, want one", got)
	}
	if got := owners(200, func(i int) netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 7: byte(i), 15: 1})
	}); len(got) != 4 {
		t.Errorf("200 /64s have owners %v, want all 4 workers", got)
	}
	nat := ipvs.Service{Key: testServices[0], Netmask: 32, Dests: []ipvs.Dest{{Fwd: ipvs.FwdMasq}}}
	o = newOwnership([]*ipvs.Service{&nat}, nil, 2)
	if got := owners(200, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 7, byte(i)}) }); len(got) != 2 {
		t.Errorf("NAT without -p: one /24's clients have owners %v, want both workers", got)
	}
	for _, c := range []struct{ bits, hi, lo string }{{"0", "0", "0"}, {"1", "8000000000000000", "0"}, {"64", "ffffffffffffffff", "0"},
		{"65", "ffffffffffffffff", "8000000000000000"}, {"128", "ffffffffffffffff", "ffffffffffffffff"}} {
		var bits int
		fmt.Sscan(c.bits, &bits)
		hi, lo := prefixMask128(bits)
		if fmt.Sprintf("%x", hi) != c.hi || fmt.Sprintf("%x", lo) != c.lo {
			t.Errorf("prefixMask128(%d) = %x %x, want %s %s", bits, hi, lo, c.hi, c.lo)
		}
	}
	if m := prefixMask32(24); m != 0xffffff00 {
		t.Errorf("prefixMask32(24) = %x", m)
	}
}

// TestOwnershipFWMark: the frames of a persistent firewall-mark service
// (the sticky 80+443 pair) are owned by their client, whichever port
// they go to; a non-persistent one's stay where they arrive.
func TestOwnershipFWMark(t *testing.T) {
	marks, err := markTable(&ipvs.Config{Marks: []ipvs.MarkRule{
		{Mark: 1, Proto: ipvs.TCP, Prefix: netip.PrefixFrom(testVIP, 32), PortLo: 80, PortHi: 80},
		{Mark: 1, Proto: ipvs.TCP, Prefix: netip.PrefixFrom(testVIP, 32), PortLo: 443, PortHi: 443},
		{Mark: 2, Proto: ipvs.UDP, Prefix: netip.PrefixFrom(testVIP, 32), PortLo: 53, PortHi: 53},
	}})
	if err != nil {
		t.Fatal(err)
	}
	sticky := ipvs.Service{Key: ipvs.FWMarkKey(1, false), Persistent: true, Netmask: 32}
	plain := ipvs.Service{Key: ipvs.FWMarkKey(2, false), Netmask: 32}
	o := newOwnership([]*ipvs.Service{&sticky, &plain}, marks, 2)
	if o == nil {
		t.Fatal("no ownership for a persistent fwmark service")
	}
	moved := 0
	for i := 0; i < 64; i++ {
		c := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}).As16()
		m80 := packet.Meta{Src: c, Dst: testVIP.As16(), SrcPort: 40000, DstPort: 80, Proto: packet.ProtoTCP}
		m443 := m80
		m443.DstPort, m443.SrcPort = 443, 40001
		want := o.client(&c)
		for self := 0; self < 2; self++ {
			if got := o.owner(&m80, self); got != want {
				t.Fatalf("client %d port 80 on worker %d: owner %d, want %d", i, self, got, want)
			}
			if got := o.owner(&m443, self); got != want {
				t.Fatalf("client %d port 443 on worker %d: owner %d, want %d", i, self, got, want)
			}
		}
		if want != 0 {
			moved++
		}
		dns := packet.Meta{Src: c, Dst: testVIP.As16(), SrcPort: 40000, DstPort: 53, Proto: packet.ProtoUDP}
		if got := o.owner(&dns, 1); got != 1 {
			t.Errorf("non-persistent fwmark frame moved to worker %d", got)
		}
	}
	if moved == 0 || moved == 64 {
		t.Errorf("%d of 64 clients owned by worker 1: the hash does not spread", moved)
	}
}
