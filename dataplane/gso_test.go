//go:build linux

package dataplane

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
	"github.com/xlbproject/xlb/modes"
)

// skbContext is struct __sk_buff (linux/bpf.h, 192 bytes) for
// BPF_PROG_RUN of a tc program: test_run takes mark, priority, the
// ifindexes, cb, tstamp, wire_len, gso_segs, gso_size and hwtstamp from
// it and wants every other field 0.
type skbContext struct {
	Len, PktType, Mark, QueueMapping, Protocol, VLANPresent, VLANTCI, VLANProto uint32
	Priority, IngressIfindex, Ifindex, TCIndex                                  uint32
	CB                                                                          [5]uint32
	Hash, TCClassid, Data, DataEnd, NAPIID, Family, RemoteIP4, LocalIP4         uint32
	RemoteIP6, LocalIP6                                                         [4]uint32
	RemotePort, LocalPort, DataMeta                                             uint32
	FlowKeys                                                                    uint64
	Tstamp                                                                      uint64
	WireLen, GSOSegs                                                            uint32
	SK                                                                          uint64
	GSOSize                                                                     uint32
	_                                                                           uint32
	HWTstamp                                                                    uint64
}

// tc actions (linux/pkt_cls.h).
const (
	tcActShot     = 2
	tcActRedirect = 7
)

// runTC runs the tc program p on frame as a GSO skb of segs segments of
// size payload bytes each, and returns its action and the frame it left.
func runTC(t testing.TB, p *ebpf.Program, frame []byte, segs, size uint32) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(frame)+256)
	ctx := skbContext{GSOSegs: segs, GSOSize: size}
	opts := ebpf.RunOptions{Data: frame, DataOut: out, Context: ctx}
	act, err := p.Run(&opts)
	if err != nil {
		t.Fatal(err)
	}
	return act, opts.DataOut
}

// gsoProgram is o's tc companion without its check of the XDP mark.
func gsoProgram(t testing.TB, o *bpf.Objects) *ebpf.Program {
	t.Helper()
	p, err := o.GSOTestProgram()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// gsoSegs is the number of segments and the payload bytes per segment of
// the GSO skbs TestOffloadGSOEquivalence gives the tc program.
const (
	gsoSegs = 3
	gsoSize = 400
)

// The tc companion forwards an offloaded flow's GSO skb as the worker
// forwards the same frame, byte for byte (the rewrite and its
// checksums, for a skb whose checksums are complete: BPF_PROG_RUN's are
// never CHECKSUM_PARTIAL), and counts it as the worker counts the
// segments it carries, each with its own headers: the destination's and
// the connection's counters (after the fold) with the tc program match
// those of a worker that saw the segments one by one. DR, NAT and
// FULLNAT, both directions, IPv4 and IPv6, TCP and UDP.
func TestOffloadGSOEquivalence(t *testing.T) {
	for _, m := range []modes.Method{modes.Route, modes.Masq, modes.FullNAT} {
		for _, v6 := range []bool{false, true} {
			for _, udp := range []bool{false, true} {
				name := fmt.Sprintf("%v/ipv4", m)
				if v6 {
					name = fmt.Sprintf("%v/ipv6", m)
				}
				if udp {
					name += "/udp"
				} else {
					name += "/tcp"
				}
				t.Run(name, func(t *testing.T) { testOffloadGSO(t, m, v6, udp) })
			}
		}
	}
}

func testOffloadGSO(t *testing.T, m modes.Method, v6, udp bool) {
	vip, client, rs, la := testVIP, testClient, netip.MustParseAddr("198.18.0.11"), testLaddr
	if v6 {
		vip, client, rs, la = testVIP6, testClient6, testRS6, testLaddr6
	}
	k := ipvs.ServiceKey{Proto: ipvs.TCP, Addr: vip, Port: 80}
	if udp {
		k.Proto, k.Port = ipvs.UDP, 53
	}
	o := loadOffload(t)
	switch m {
	case modes.FullNAT:
		addFULLNAT(t, o, k, 9, rs, la)
	case modes.Masq:
		if err := o.AddReal(bpf.ServiceKey{Addr: rs, Port: 8080, Proto: uint8(k.Proto)}); err != nil {
			t.Fatal(err)
		}
		fallthrough
	default:
		if err := o.AddService(bpf.ServiceKey{Addr: k.Addr, Port: k.Port, Proto: uint8(k.Proto)}, 9); err != nil {
			t.Fatal(err)
		}
	}
	tc := gsoProgram(t, o)
	on, kon, off, koff := methodPair(t, o, m, k, rs, la)
	seg, kseg := methodWorkerAt(t, m, k, rs, la) // sees the segments
	ws := []*worker{on, off, seg}
	ks := []*fakeKernel{kon, koff, kseg}

	in := func(flags uint8, payload []byte) []byte {
		return pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: client, Dst: vip,
			SrcPort: 40000, DstPort: k.Port, Flags: flags, UDP: udp, Payload: payload}.Frame()
	}
	var lport uint16 = 40000 // NAT: the client's port; FULLNAT: the connection's local port
	replySrc, replyDst := rs, client
	if m == modes.FullNAT {
		replyDst = la
	}
	out := func(flags uint8, payload []byte) []byte {
		return pt.Packet{SrcMAC: realMACs[0][:], DstMAC: directorMAC[:], Src: replySrc, Dst: replyDst,
			SrcPort: 8080, DstPort: lport, Flags: flags, UDP: udp, Payload: payload}.Frame()
	}
	now := int64(10)
	step := func(f []byte, to ...int) {
		for _, i := range to {
			ks[i].deliver(f)
			ws[i].poll(now)
		}
		now++
	}
	all := []int{0, 1, 2}
	first := in(syn, nil)
	if udp {
		first = in(0, []byte("q"))
	}
	step(first, all...)
	if m == modes.FullNAT {
		e0, e1, e2 := entryOf(t, on, first, now), entryOf(t, off, first, now), entryOf(t, seg, first, now)
		if e0 == nil || e1 == nil || e2 == nil || e0.LocalPort() != e1.LocalPort() || e0.LocalPort() != e2.LocalPort() {
			t.Fatalf("entries %v, %v, %v: want one each, with the same local port", e0, e1, e2)
		}
		lport = e0.LocalPort()
	}
	var hs [][]byte
	switch {
	case m == modes.Route && udp:
	case m == modes.Route:
		hs = [][]byte{in(ack, nil)}
	case udp:
		hs = [][]byte{out(0, []byte("a"))}
	default:
		hs = [][]byte{out(syn|ack, nil), in(ack, nil), out(ack, []byte("hello"))}
	}
	for _, h := range hs {
		step(h, all...)
	}
	e := entryOf(t, on, first, now)
	if e == nil || !e.Offloaded() {
		t.Fatalf("flow not offloaded after its handshake (%v)", e)
	}
	id := e.DestID()
	var before bpf.DestCounters
	if err := o.DestCounters(id, &before); err != nil {
		t.Fatal(err)
	}
	c0, err := o.Counters()
	if err != nil {
		t.Fatal(err)
	}

	// One GSO skb each way (DR: in only), gsoSegs segments of gsoSize.
	payload := make([]byte, gsoSegs*gsoSize)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	dirs := []func(uint8, []byte) []byte{in}
	if m != modes.Route {
		dirs = append(dirs, out)
	}
	flags := uint8(ack | packet.TCPFlagPSH)
	if udp {
		flags = 0
	}
	for d, mk := range dirs {
		f := mk(flags, payload)
		act, got := runTC(t, tc, f, gsoSegs, gsoSize)
		step(f, 1)
		want := koff.sent[len(koff.sent)-1]
		if act != tcActRedirect || !bytes.Equal(got, want) {
			t.Fatalf("direction %d: tc action %d sent\n%x\nworker without offload sent\n%x", d, act, got, want)
		}
		for i := 0; i < gsoSegs; i++ {
			step(mk(flags, payload[i*gsoSize:(i+1)*gsoSize]), 2)
		}
	}
	c1, err := o.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if n := c1[bpf.RedirectGSO] - c0[bpf.RedirectGSO]; n != uint64(len(dirs)) {
		t.Errorf("redirect_gso moved by %d, want %d (one per skb)", n, len(dirs))
	}
	var after bpf.DestCounters
	if err := o.DestCounters(id, &after); err != nil {
		t.Fatal(err)
	}
	if dp := after.InPkts - before.InPkts; dp != gsoSegs {
		t.Errorf("program counted %d packets in for the destination, want %d (one per segment)", dp, gsoSegs)
	}
	sameDestCounters(t, on, seg, id, after)
	on.off.pass = -foldEveryNs
	on.off.step(on, now+foldEveryNs, -1)
	eseg := entryOf(t, seg, first, now)
	a, b, c, d := e.Counters()
	wa, wb, wc, wd := eseg.Counters()
	if a != wa || b != wb || c != wc || d != wd {
		t.Errorf("entry counters after the fold: %d %d %d %d, worker that saw the segments %d %d %d %d", a, b, c, d, wa, wb, wc, wd)
	}
}

// The tc companion forwards an offloaded flow's skbs, GSO or not, up to
// the MTU per segment, and drops, with a reason, those it cannot forward:
// those of a flow that is not offloaded, and those of an offloaded flow
// that the worker would have to handle (FIN, TTL 1, a segment larger
// than the egress MTU).
func TestOffloadGSODrops(t *testing.T) {
	o := loadOffload(t)
	tc := gsoProgram(t, o)
	on, kon := offloadWorker(t, o)
	on.off.kt0 = 0
	on.ports()
	on.ifs[0].index = 1
	now := int64(10)
	for _, h := range [][]byte{tcpTo(40000, 80, syn), tcpTo(40000, 80, ack)} {
		kon.deliver(h)
		on.poll(now)
		now++
	}
	if e := entryOf(t, on, tcpTo(40000, 80, ack), now); e == nil || !e.Offloaded() {
		t.Fatalf("flow not offloaded after its handshake (%v)", e)
	}
	frame := func(sport uint16, flags, ttl uint8, n int) []byte {
		return pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
			SrcPort: sport, DstPort: 80, Flags: flags, TTL: ttl, Payload: make([]byte, n)}.Frame()
	}
	for _, c := range []struct {
		name       string
		frame      []byte
		segs, size uint32
		act        uint32
		reason     bpf.Reason
	}{
		{"offloaded", frame(40000, ack, 0, 2000), 2, 1000, tcActRedirect, bpf.RedirectGSO},
		{"not offloaded", frame(40001, ack, 0, 2000), 2, 1000, tcActShot, bpf.DropGSONoFlow},
		{"fin", frame(40000, ack|packet.TCPFlagFIN, 0, 2000), 2, 1000, tcActShot, bpf.DropGSOUnfit},
		{"ttl 1", frame(40000, ack, 1, 2000), 2, 1000, tcActShot, bpf.DropGSOUnfit},
		// 1461 bytes of payload behind 40 of headers: one more than the MTU.
		{"segment over the mtu", frame(40000, ack, 0, 2922), 2, 1461, tcActShot, bpf.DropGSOUnfit},
		{"segment at the mtu", frame(40000, ack, 0, 2920), 2, 1460, tcActRedirect, bpf.RedirectGSO},
		// A FlowPartial flow's frames come to the companion whatever
		// their size: a pure ACK is shorter than the headers it pulls.
		{"pure ack, not gso", frame(40000, ack, 0, 0), 0, 0, tcActRedirect, bpf.RedirectGSO},
		{"not gso", frame(40000, ack, 0, 100), 0, 0, tcActRedirect, bpf.RedirectGSO},
	} {
		t.Run(c.name, func(t *testing.T) {
			c0, err := o.Counters()
			if err != nil {
				t.Fatal(err)
			}
			act, _ := runTC(t, tc, c.frame, c.segs, c.size)
			c1, err := o.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if act != c.act || c1[c.reason] != c0[c.reason]+1 {
				t.Errorf("tc action %d, %v moved by %d; want %d and 1", act, c.reason, c1[c.reason]-c0[c.reason], c.act)
			}
		})
	}
}

// partial turns frame's TCP checksum into what a sender that leaves it
// to the NIC puts there (CHECKSUM_PARTIAL): the pseudo-header sum.
func partial(t *testing.T, f []byte) []byte {
	t.Helper()
	var m packet.Meta
	if packet.Parse(f, &m) != packet.OK {
		t.Fatal("test frame does not parse")
	}
	ip := f[m.L3Off : m.L3Off+m.IPLen]
	c := packet.Checksum(nil, packet.PseudoHeaderSum(ip, 4, packet.ProtoTCP, m.L4Len())) // ^fold(ps)
	f[m.L4Off+16], f[m.L4Off+17] = byte(^c>>8), byte(^c)
	return f
}

// A flow whose sender leaves its checksums to the NIC is installed only
// with the tc companion (generic mode), at once (its data comes in GSO
// skbs, which cannot wait for offloadAfter frames), marked
// bpf.FlowPartial; the XDP program then passes its frames to the
// companion (bpf's TestXDPPartialFlow), and where there is none, as
// under BPF_PROG_RUN here, to the worker, which completes their
// checksums.
func TestOffloadPartialFlow(t *testing.T) {
	for _, gso := range []bool{false, true} {
		t.Run(fmt.Sprintf("gso=%v", gso), func(t *testing.T) {
			o := loadOffload(t)
			w, k := offloadWorker(t, o)
			w.off.kt0 = 0
			w.off.gso = gso
			w.ports()
			w.ifs[0].index = 1
			now := int64(10)
			for _, h := range [][]byte{tcpTo(40000, 80, syn), tcpTo(40000, 80, ack)} {
				k.deliver(partial(t, h))
				w.poll(now)
				now++
			}
			data := pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
				SrcPort: 40000, DstPort: 80, Flags: ack, Payload: []byte("xlb")}.Frame()
			e := entryOf(t, w, data, now)
			if e == nil || e.Offloaded() != gso {
				t.Fatalf("after the handshake: entry %v offloaded %v, want %v", e, e != nil && e.Offloaded(), gso)
			}
			if !gso {
				return
			}
			var v bpf.Flow
			key := flowKeyOf(data)
			if err := o.LookupFlow(&key, &v); err != nil || v.Flags != bpf.FlowPartial {
				t.Fatalf("flow in the map: %+v (%v), want flags %v", v, err, bpf.FlowPartial)
			}
			if act, _ := runXDP(t, o, partial(t, data)); act != xdpPass { // no socket: the redirect's fallback
				t.Errorf("frame of a partial flow: xdp action %d, want %d (to the worker)", act, xdpPass)
			}
		})
	}
}
