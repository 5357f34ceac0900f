//go:build linux

package dataplane

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
	"github.com/xlbproject/xlb/laddr"
	"github.com/xlbproject/xlb/modes"
	"github.com/xlbproject/xlb/sched"
)

var (
	testVIP      = netip.MustParseAddr("198.18.0.100")
	testClient   = netip.MustParseAddr("198.18.0.2")
	directorMAC  = [6]byte{0x02, 0x18, 0, 0, 0, 0x01}
	clientMAC    = net.HardwareAddr{0x02, 0x18, 0, 0, 0, 0x02}
	realMACs     = [][6]byte{{0x02, 0x18, 0, 0, 0, 0x0b}, {0x02, 0x18, 0, 0, 0, 0x0c}, {0x02, 0x18, 0, 0, 0, 0x0d}}
	testServices = []ipvs.ServiceKey{
		{Proto: ipvs.TCP, Addr: testVIP, Port: 80},
		{Proto: ipvs.UDP, Addr: testVIP, Port: 53},
	}
)

// testWorker is a worker on a fake kernel with rr services on VIP:80/tcp
// and VIP:53/udp over three real servers whose MACs are resolved.
func testWorker(t testing.TB) (*worker, *fakeKernel) {
	t.Helper()
	d := &Dataplane{reg: sched.NewRegistry(16), ctSettings: conntrack.NewSettings(conntrack.DefaultTimeouts())}
	fwd := make([]destFwd, 17)
	cfg := &workerConfig{services: map[svcKey]*workerService{}}
	for i, k := range testServices {
		rr, err := sched.New("rr", sched.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		var dests []*sched.Dest
		for j := range realMACs {
			dst := sched.NewDest(netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + j)}), k.Port, 1)
			if err := d.reg.Add(dst); err != nil {
				t.Fatal(err)
			}
			fwd[dst.ID] = destFwd{mac: realMACs[j], macOK: true, method: modes.Route, addr: dst.Addr, port: dst.Port}
			dests = append([]*sched.Dest{dst}, dests...) // newest first
		}
		rr.Update(dests)
		spec := ipvs.Service{Key: k, Sched: "rr", Netmask: 32}
		pol, err := servicePolicy(&spec, rr, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.services[makeSvcKey(k)] = &workerService{id: uint32(i + 1), ct: pol}
	}
	d.fwd.Store(&fwd)
	copts := conntrack.DefaultOptions()
	copts.Capacity = 1 << 12
	copts.Registry = d.reg
	copts.Settings = d.ctSettings
	ct, err := conntrack.New(copts)
	if err != nil {
		t.Fatal(err)
	}
	k, q := newFakeKernel(1024, 2048, 256)
	pool, err := laddr.New(laddr.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{dp: d, q: q, ct: ct, mac: directorMAC, mtu: 1500, ds: newDestStats(17), pool: pool}
	w.cfg.Store(cfg)
	q.refill()
	return w, k
}

// tcpTo and udpTo build client → VIP frames with the packettest builder.
func tcpTo(sport, dport uint16, flags uint8) []byte {
	return pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
		SrcPort: sport, DstPort: dport, Flags: flags, Payload: []byte("xlb")}.Frame()
}

func udpTo(sport, dport uint16) []byte {
	return pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
		SrcPort: sport, DstPort: dport, UDP: true, Payload: []byte("xlb")}.Frame()
}

const (
	syn = packet.TCPFlagSYN
	ack = packet.TCPFlagACK
)

func TestWorkerForwardsDR(t *testing.T) {
	w, k := testWorker(t)
	// Three new connections (rr: one per real server), then a second
	// packet of each, which must follow its first.
	var in [][]byte
	for i := 0; i < 3; i++ {
		in = append(in, tcpTo(uint16(40000+i), 80, syn))
	}
	for i := 0; i < 3; i++ {
		in = append(in, tcpTo(uint16(40000+i), 80, ack))
	}
	in = append(in, tcpTo(40000, 22, syn)) // not a service
	in = append(in, udpTo(5353, 53))
	in = append(in, in[0][:30])            // truncated
	in = append(in, tcpTo(41000, 80, ack)) // not a SYN, no entry
	for _, f := range in {
		if !k.deliver(f) {
			t.Fatal("fake kernel could not deliver")
		}
	}
	if n := w.poll(1); n != len(in) {
		t.Fatalf("poll took %d frames, want %d", n, len(in))
	}
	if len(k.sent) != 7 {
		t.Fatalf("sent %d frames, want 7 (6 TCP, 1 UDP)", len(k.sent))
	}
	dsts := map[[6]byte]bool{}
	for i := 0; i < 3; i++ {
		var first, second [6]byte
		copy(first[:], k.sent[i][:6])
		copy(second[:], k.sent[i+3][:6])
		if first != second {
			t.Errorf("flow %d: first packet to %x, second to %x", i, first, second)
		}
		dsts[first] = true
		if !bytes.Equal(k.sent[i][6:12], directorMAC[:]) {
			t.Errorf("flow %d: source MAC %x, want the director's", i, k.sent[i][6:12])
		}
		// DR changes nothing in the IP packet but the TTL, which every
		// IPVS method decrements (decrement_ttl, Linux 4.10 on).
		want := bytes.Clone(in[i])
		packet.DecrementTTLWithChecksumUpdate(want[14:], 4)
		if !bytes.Equal(k.sent[i][12:], want[12:]) {
			t.Errorf("flow %d: DR sent IP packet\n%x\nwant\n%x", i, k.sent[i][12:], want[12:])
		}
	}
	if len(dsts) != 3 {
		t.Errorf("rr sent 3 new connections to %d real servers, want 3", len(dsts))
	}
	var want [numCounters]uint64
	want[RxFrames], want[TxFrames], want[ConnNew], want[ConnHit] = 10, 7, 4, 3
	want[NoService], want[Malformed], want[NotNew] = 1, 1, 1
	// The ring counters depend on the fake kernel's pace; the fill ring
	// was stocked at least once.
	if w.stats.local[FillPosted] == 0 {
		t.Error("no frame counted as posted to the fill ring")
	}
	want[FillPosted], want[Completed] = w.stats.local[FillPosted], w.stats.local[Completed]
	if w.stats.local != want {
		for c := Counter(0); c < numCounters; c++ {
			if w.stats.local[c] != want[c] {
				t.Errorf("counter %v = %d, want %d", c, w.stats.local[c], want[c])
			}
		}
	}
	w.q.reap()
	if got := len(*w.q.free) + k.inFlight(); got != 1024 {
		t.Errorf("frames accounted for = %d, want 1024", got)
	}
}

// The per-packet path, receive → parse → lookup → rewrite → transmit,
// allocates nothing: neither for packets of known connections nor for new
// ones.
func TestWorkerPollAllocs(t *testing.T) {
	w, k := testWorker(t)
	k.keep = false
	var known, fresh [][]byte
	for i := 0; i < 32; i++ {
		syn := tcpTo(uint16(20000+i), 80, syn)
		k.deliver(syn)
		known = append(known, tcpTo(uint16(20000+i), 80, ack))
	}
	w.poll(1)
	port := uint16(30000)
	for i := 0; i < 32; i++ {
		fresh = append(fresh, tcpTo(0, 80, syn))
	}
	allocs := testing.AllocsPerRun(200, func() {
		for _, f := range known {
			k.deliver(f)
		}
		w.poll(2)
	})
	if allocs != 0 {
		t.Errorf("poll of 32 known-connection frames: %v allocations, want 0", allocs)
	}
	allocs = testing.AllocsPerRun(200, func() {
		for _, f := range fresh {
			port++
			f[14+20], f[14+21] = byte(port>>8), byte(port) // new source port: new connection
			k.deliver(f)
		}
		w.poll(3)
	})
	if allocs != 0 {
		t.Errorf("poll of 32 new-connection frames: %v allocations, want 0", allocs)
	}
	if w.stats.local[TxFrames] != w.stats.local[RxFrames] {
		t.Errorf("tx %d != rx %d: frames were dropped", w.stats.local[TxFrames], w.stats.local[RxFrames])
	}
}

// BenchmarkWorkerPoll: ns per frame through the worker for packets of
// established connections, batches of 64, on the fake kernel (no
// syscalls): the userspace cost of forwarding one frame.
func BenchmarkWorkerPoll(b *testing.B) {
	w, k := testWorker(b)
	k.keep = false
	var frames [][]byte
	for i := 0; i < maxBatch; i++ {
		k.deliver(tcpTo(uint16(20000+i), 80, syn))
		frames = append(frames, tcpTo(uint16(20000+i), 80, ack))
	}
	w.poll(1)
	benchFrames(b, w, k, frames)
}

// FuzzWorker feeds arbitrary frames through the whole per-packet path:
// no input may panic a worker, every frame is either transmitted or
// counted as dropped, and no UMEM frame is lost.
func FuzzWorker(f *testing.F) {
	f.Add(tcpTo(40000, 80, syn), uint8(0))
	f.Add(tcpTo(40000, 80, ack), uint8(1))
	f.Add(udpTo(5353, 53), uint8(2))
	f.Add(tcpTo(40000, 22, syn)[:40], uint8(3))
	f.Fuzz(func(t *testing.T, b []byte, cut uint8) {
		w, k := testWorker(t)
		k.keep = false
		if len(b) > 2000 {
			b = b[:2000]
		}
		// The frame, a copy cut short, and the frame again: the second
		// copy meets any connection entry the first made.
		for _, fr := range [][]byte{b, b[:int(cut)%(len(b)+1)], b} {
			if !k.deliver(fr) {
				t.Fatal("fake kernel could not deliver")
			}
		}
		n := w.poll(1)
		if n != 3 {
			t.Fatalf("poll took %d frames, want 3", n)
		}
		s := &w.stats.local
		dropped := s[Malformed] + s[NoService] + s[NoDest] + s[NotNew] + s[NoNeighbour]
		if s[TxFrames]+dropped != 3 {
			t.Errorf("tx %d + dropped %d != 3 received (%v)", s[TxFrames], dropped, *s)
		}
		w.q.reap()
		if got := len(*w.q.free) + len(w.q.backlog) + k.inFlight(); got != 1024 {
			t.Errorf("frames accounted for = %d, want 1024", got)
		}
	})
}

// BenchmarkWorkerPollTable: ns per frame through the worker for packets
// of established connections picked at random among n, on the fake
// kernel. With a table far larger than the caches the cost is DRAM
// latency, which LookupBatch overlaps across the batch.
func BenchmarkWorkerPollTable(b *testing.B) {
	for _, n := range []int{1e3, 1e5, 1e6} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			w, k := testWorker(b)
			copts := conntrack.DefaultOptions()
			copts.Capacity = 2 * n
			copts.Registry = w.dp.reg
			copts.Settings = w.dp.ctSettings
			ct, err := conntrack.New(copts)
			if err != nil {
				b.Fatal(err)
			}
			w.ct = ct
			k.keep = false
			dst := w.dp.reg.Get(1)
			tmpl := tcpTo(0, 80, ack)
			// Flow i: client 10.x.y.z (from i), port 1024+i%50000.
			setFlow := func(f []byte, i int) {
				f[26], f[27], f[28], f[29] = 10, byte(i>>16), byte(i>>8), byte(i)
				port := 1024 + i%50000
				f[34], f[35] = byte(port>>8), byte(port)
			}
			var m packet.Meta
			for i := 0; i < n; i++ {
				setFlow(tmpl, i)
				packet.Parse(tmpl, &m)
				key := conntrack.Key{Src: m.Src, Dst: m.Dst, SrcPort: m.SrcPort, DstPort: m.DstPort, Proto: m.Proto}
				if _, ok := ct.Insert(&key, dst, conntrack.FwdRoute, 80, 1); !ok {
					b.Fatalf("insert flow %d failed", i)
				}
			}
			frames := make([][]byte, 4096)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range frames {
				frames[i] = append([]byte(nil), tmpl...)
				setFlow(frames[i], rng.IntN(n))
			}
			b.ReportAllocs()
			b.ResetTimer()
			sent, j := 0, 0
			for b.Loop() {
				for range maxBatch {
					k.deliver(frames[j%len(frames)])
					j++
				}
				sent += w.poll(2)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent), "ns/frame")
			if w.stats.local[ConnHit] == 0 || w.stats.local[TxFrames] != w.stats.local[RxFrames] {
				b.Fatalf("frames not forwarded as hits: %v", w.stats.local)
			}
		})
	}
}

// benchFrames delivers frames to w and polls it, over and over, for b,
// and reports the ns, CPU-ns and worker-ns per frame; it returns the
// frames polled.
func benchFrames(b *testing.B, w *worker, k *fakeKernel, frames [][]byte) int {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startThreadCPU(b)
	var pt pollTimer
	n := 0
	for b.Loop() {
		for _, f := range frames {
			k.deliver(f)
		}
		n += pt.poll(w, 2)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/frame")
	cpu.report(n, "frame")
	pt.report(b, "frame")
	return n
}
