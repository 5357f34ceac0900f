//go:build linux

package dataplane

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	pt "github.com/xlbproject/xlb/internal/packet/packettest"
	"github.com/xlbproject/xlb/modes"
)

// serverMAC is the director's second interface's, towards the real
// servers.
var serverMAC = [6]byte{0x02, 0xd1, 0, 0, 0, 0x02}

// twoArmed gives w a second socket, on the real servers' interface
// (slot 1, MAC serverMAC, MTU 9000), sharing the first one's UMEM, and
// routes every destination out of it.
func twoArmed(t testing.TB, w *worker, k0 *fakeKernel) *fakeKernel {
	return twoArmedUMEM(t, w, k0, true)
}

// twoArmedUMEM is twoArmed, the second socket with a UMEM of its own (1024
// frames) unless shared.
func twoArmedUMEM(t testing.TB, w *worker, k0 *fakeKernel, shared bool) *fakeKernel {
	t.Helper()
	k1, q1 := newSharedFakeKernel(k0, w.q, 256)
	if !shared {
		k1, q1 = newFakeKernel(1024, 2048, 256)
	}
	w.qs = []*queue{w.q, q1}
	w.ifs = []ifaceParams{{mac: directorMAC, mtu: 1500}, {mac: serverMAC, mtu: 9000}}
	fwd := *w.dp.fwd.Load()
	for i := range fwd {
		fwd[i].slot = 1
	}
	return k1
}

// A two-armed director on the fake kernel: the client's SYN, in on
// interface 0, leaves on interface 1 with that interface's MAC, without
// a copy (the same UMEM frame); the real server's reply, in on interface
// 1, leaves on interface 0, where the client's frames came in, with
// interface 0's MAC. The frames come back to the one free stack from
// both completion rings. Without a shared UMEM (the fallback), the same
// with a copy into a free frame of the egress socket's UMEM, each UMEM
// keeping its frames.
func TestWorkerTwoArmed(t *testing.T) {
	for _, shared := range []bool{true, false} {
		name := "shared"
		if !shared {
			name = "copy"
		}
		t.Run(name, func(t *testing.T) { testWorkerTwoArmed(t, shared) })
	}
}

func testWorkerTwoArmed(t *testing.T, shared bool) {
	rs := netip.MustParseAddr("198.18.0.11")
	for _, m := range []modes.Method{modes.Route, modes.Masq, modes.FullNAT} {
		t.Run(m.String(), func(t *testing.T) {
			w, k0 := methodWorker(t, m)
			k1 := twoArmedUMEM(t, w, k0, shared)
			w.q.refill()
			w.qs[1].refill()
			k0.deliver(tcpTo(40000, 80, syn))
			rxAddr := k0.rx.descs[0].Addr
			if n := w.poll(1); n != 1 || len(k0.sent) != 0 || len(k1.sent) != 1 {
				t.Fatalf("poll = %d, sent %d on interface 0 and %d on 1; want 1, 0, 1 (counters %v)",
					n, len(k0.sent), len(k1.sent), w.stats.local)
			}
			if got := k1.tx.descs[0].Addr &^ 2047; shared && got != rxAddr&^2047 {
				t.Errorf("sent from UMEM frame %#x, received into %#x: want the same frame (no copy)", got, rxAddr&^2047)
			}
			if want := uint64(0); !shared {
				want = 1
				if w.stats.local[Copied] != want {
					t.Errorf("copied = %d, want %d", w.stats.local[Copied], want)
				}
			} else if w.stats.local[Copied] != want {
				t.Errorf("copied = %d with a shared UMEM, want 0", w.stats.local[Copied])
			}
			f := k1.sent[0]
			if !bytes.Equal(f[6:12], serverMAC[:]) || !bytes.Equal(f[0:6], realMACs[0][:]) {
				t.Errorf("in: MACs %x → %x, want %x → %x (the egress interface's)", f[6:12], f[0:6], serverMAC, realMACs[0])
			}
			if m == modes.Route {
				return
			}
			ip, tcp := decode(t, f)
			src, _ := netip.AddrFromSlice(ip.SrcIP)
			reply := pt.Packet{SrcMAC: realMACs[0][:], DstMAC: serverMAC[:], Src: rs, Dst: src.Unmap(),
				SrcPort: 8080, DstPort: uint16(tcp.SrcPort), Flags: syn | ack, Payload: []byte("ok")}.Frame()
			k1.deliver(reply)
			if n := w.poll(2); n != 1 || len(k0.sent) != 1 || len(k1.sent) != 1 {
				t.Fatalf("reply: poll = %d, sent %d on interface 0 and %d on 1; want 1, 1, 1 (counters %v)",
					n, len(k0.sent), len(k1.sent), w.stats.local)
			}
			f = k0.sent[0]
			if !bytes.Equal(f[6:12], directorMAC[:]) || !bytes.Equal(f[0:6], clientMAC) {
				t.Errorf("out: MACs %x → %x, want %x → %x (the ingress interface's, to the client's hop)",
					f[6:12], f[0:6], directorMAC, clientMAC)
			}
			ip, tcp = decode(t, f)
			if got, _ := netip.AddrFromSlice(ip.SrcIP); got != testVIP || tcp.SrcPort != layers.TCPPort(80) {
				t.Errorf("out: source %v:%d, want %v:80", got, tcp.SrcPort, testVIP)
			}
			for _, q := range w.qs {
				q.reap()
			}
			if shared {
				if got := len(*w.q.free) + k0.inFlight() + k1.inFlight(); got != 1024 {
					t.Errorf("frames accounted for: %d, want 1024 (one UMEM, one free stack)", got)
				}
			} else {
				for i, k := range []*fakeKernel{k0, k1} {
					if got := len(*w.qs[i].free) + k.inFlight(); got != 1024 {
						t.Errorf("frames of UMEM %d accounted for: %d, want 1024", i, got)
					}
				}
				if w.stats.local[Copied] != 2 {
					t.Errorf("copied = %d, want 2 (each way)", w.stats.local[Copied])
				}
			}
		})
	}
}

// The egress interface's MTU is the one checked: 1640-byte packets fit the
// second interface's 9000 but not the first's 1500.
func TestWorkerTwoArmedMTU(t *testing.T) {
	w, k0 := methodWorker(t, modes.Masq)
	k1 := twoArmed(t, w, k0)
	w.qs[1].refill()
	big := pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
		SrcPort: 40000, DstPort: 80, Flags: syn, Payload: make([]byte, 1600)}.Frame()
	k0.deliver(big)
	if w.poll(1); len(k1.sent) != 1 || w.stats.local[TooBigSent] != 0 {
		t.Errorf("1600-byte payload to a 9000-MTU egress: sent %d, too_big %d; want 1, 0", len(k1.sent), w.stats.local[TooBigSent])
	}
	// With a 1500-byte egress the same frame is answered with
	// fragmentation needed, back out of the interface it came in on.
	w.ifs[1].mtu = 1500
	big2 := pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
		SrcPort: 40001, DstPort: 80, Flags: syn, Payload: make([]byte, 1600)}.Frame()
	k0.deliver(big2)
	if w.poll(2); len(k1.sent) != 1 || len(k0.sent) != 1 || w.stats.local[TooBigSent] != 1 {
		t.Fatalf("1600-byte payload to a 1500-MTU egress: sent %d on 0, %d on 1, too_big %d; want 1, 1, 1",
			len(k0.sent), len(k1.sent), w.stats.local[TooBigSent])
	}
	if f := k0.sent[0]; !bytes.Equal(f[0:6], clientMAC) || !bytes.Equal(f[6:12], directorMAC[:]) {
		t.Errorf("ICMP error MACs %x → %x, want %x → %x", f[6:12], f[0:6], directorMAC, clientMAC)
	}
}

// Both directions across two interfaces allocate nothing per frame, with
// a shared UMEM or copying.
func TestWorkerTwoArmedAllocs(t *testing.T) {
	for _, shared := range []bool{true, false} {
		testWorkerTwoArmedAllocs(t, shared)
	}
}

func testWorkerTwoArmedAllocs(t *testing.T, shared bool) {
	rs := netip.MustParseAddr("198.18.0.11")
	w, k0 := methodWorker(t, modes.Masq)
	k1 := twoArmedUMEM(t, w, k0, shared)
	w.qs[1].refill()
	k0.deliver(tcpTo(40000, 80, syn))
	w.poll(1)
	if len(k1.sent) != 1 {
		t.Fatal("SYN not forwarded on interface 1")
	}
	k0.keep, k1.keep = false, false
	in := tcpTo(40000, 80, ack)
	out := pt.Packet{SrcMAC: realMACs[0][:], DstMAC: serverMAC[:], Src: rs, Dst: testClient,
		SrcPort: 8080, DstPort: 40000, Flags: ack}.Frame()
	now := int64(2)
	allocs := testing.AllocsPerRun(100, func() {
		k0.deliver(in)
		k1.deliver(out)
		w.poll(now)
		now++
	})
	if allocs != 0 {
		t.Errorf("shared UMEM %v: %v allocations per batch, want 0", shared, allocs)
	}
	if w.stats.local[ReplyHit] < 100 || w.stats.local[ConnHit] < 100 {
		t.Errorf("reply_hit %d, conn_hit %d; want ≥ 100 each", w.stats.local[ReplyHit], w.stats.local[ConnHit])
	}
}

// The resolver gives each destination the slot of the served interface
// its route names, and reports one routed out of an interface xlb does
// not serve as unresolved, with that reason, rather than sending it out
// of another.
func TestResolverServedInterfaces(t *testing.T) {
	e := newResolverEnv(t, 3)
	e.r = newResolver(e.net, e.r.log, fakeIfindex, 7) // two-armed: slots 0 and 1
	e.r.polling = false
	e.r.now = func() time.Time { return e.now }
	e.net.addRoute("10.0.0.1/32", "", fakeIfindex)
	e.net.addRoute("10.0.0.2/32", "", 7)
	e.net.addRoute("10.0.0.3/32", "", 9)
	for i := 1; i <= 3; i++ {
		e.net.arp[destAddr(i)] = mac(i)
	}
	e.round()
	e.round()
	if f := e.fwd[1]; !f.macOK || f.slot != 0 || f.mac != mac(1) {
		t.Errorf("dest 1 (route via the first interface): %+v, want resolved, slot 0", f)
	}
	if f := e.fwd[2]; !f.macOK || f.slot != 1 || f.mac != mac(2) {
		t.Errorf("dest 2 (route via the second interface): %+v, want resolved, slot 1", f)
	}
	st := e.r.snapshot()
	if f := e.fwd[3]; f.macOK || st.Unresolved != 1 || len(st.List) != 1 ||
		!strings.Contains(st.List[0].Reason, "route via interface 9, which xlb does not serve") {
		t.Errorf("dest 3 (route via an interface not served): %+v, stats %+v; want unresolved, saying why", f, st)
	}
}

// Copying with no free frame in the egress UMEM drops the frame, counted,
// and gives it back to its own UMEM.
func TestWorkerTwoArmedCopyNoFrame(t *testing.T) {
	w, k0 := methodWorker(t, modes.Masq)
	k1 := twoArmedUMEM(t, w, k0, false)
	w.qs[1].refill()
	*w.qs[1].free = (*w.qs[1].free)[:0] // every frame of UMEM 1 is on its fill ring
	k0.deliver(tcpTo(40000, 80, syn))
	w.poll(1)
	if len(k1.sent) != 0 || w.stats.local[CopyNoFrame] != 1 {
		t.Errorf("sent %d, copy_no_frame %d; want 0, 1", len(k1.sent), w.stats.local[CopyNoFrame])
	}
	w.q.reap()
	if got := len(*w.q.free) + k0.inFlight(); got != 1024 {
		t.Errorf("frames of UMEM 0 accounted for: %d, want 1024", got)
	}
}

// BenchmarkWorkerTwoArmed: ns per frame through a two-armed NAT worker on
// the fake kernel, 64 client frames in on interface 0 and out on 1 per
// batch, with the UMEM shared (no copy) and without (a copy per frame).
func BenchmarkWorkerTwoArmed(b *testing.B) {
	for _, shared := range []bool{true, false} {
		name := "shared"
		if !shared {
			name = "copy"
		}
		b.Run(name, func(b *testing.B) {
			w, k0 := methodWorker(b, modes.Masq)
			k1 := twoArmedUMEM(b, w, k0, shared)
			w.qs[1].refill()
			k0.keep, k1.keep = false, false
			var frames [][]byte
			for i := 0; i < maxBatch; i++ {
				k0.deliver(tcpTo(uint16(20000+i), 80, syn))
				frames = append(frames, pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
					SrcPort: uint16(20000 + i), DstPort: 80, Flags: ack, Payload: make([]byte, 1400)}.Frame())
			}
			w.poll(1)
			b.ReportAllocs()
			b.ResetTimer()
			n := 0
			for b.Loop() {
				for _, f := range frames {
					k0.deliver(f)
				}
				n += w.poll(2)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/frame")
		})
	}
}
