//go:build linux

package dataplane

import (
	"bytes"
	"net"
	"net/netip"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/ipvs"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
	"github.com/xlbproject/xlb/modes"
	"github.com/xlbproject/xlb/testenv"
)

// A destination on one of the director's addresses becomes Local when it
// is added or edited, whatever method was asked for, as
// __ip_vs_update_dest decides it; one that did not change keeps the
// method it had, and undo puts every mark back.
func TestMarkLocal(t *testing.T) {
	own := netip.MustParseAddr("198.18.0.1")
	own6 := netip.MustParseAddr("2001:db8::1")
	remote := netip.MustParseAddr("198.18.0.11")
	isLocal := func(a netip.Addr) bool { return a == own || a == own6 }
	svc := func(ds ...ipvs.Dest) ipvs.Service {
		return ipvs.Service{Key: ipvs.ServiceKey{Proto: ipvs.TCP, Addr: testVIP, Port: 80}, Sched: "rr", Dests: ds}
	}
	dr := func(a netip.Addr, w int32) ipvs.Dest {
		return ipvs.Dest{Addr: a, Port: 80, Fwd: ipvs.FwdRoute, Weight: w}
	}

	next := &ipvs.Config{Services: []ipvs.Service{
		svc(dr(own, 1), dr(remote, 1), ipvs.Dest{Addr: own, Port: 8080, Fwd: ipvs.FwdMasq, Weight: 1}),
		{Key: ipvs.ServiceKey{Proto: ipvs.TCP, Addr: netip.MustParseAddr("2001:db8::100"), Port: 80},
			Dests: []ipvs.Dest{{Addr: own6, Port: 80, Fwd: ipvs.FwdTunnel, Weight: 1}}},
	}}
	undo := markLocal(nil, next, isLocal)
	want := []ipvs.Fwd{ipvs.FwdLocal, ipvs.FwdRoute, ipvs.FwdLocal}
	for i, w := range want {
		if got := next.Services[0].Dests[i].Fwd; got != w {
			t.Errorf("dest %d: Fwd %v, want %v", i, got, w)
		}
	}
	if got := next.Services[1].Dests[0].Fwd; got != ipvs.FwdLocal {
		t.Errorf("IPv6 dest: Fwd %v, want Local", got)
	}
	undo()
	if got := next.Services[0].Dests[0].Fwd; got != ipvs.FwdRoute {
		t.Errorf("after undo: Fwd %v, want Route", got)
	}

	// An unchanged destination is not looked at again: a remote one that
	// has since become local stays Route (IPVS decides at add and edit
	// only), an edited one (new weight) is Local.
	prev := &ipvs.Config{Services: []ipvs.Service{svc(dr(own, 1), dr(remote, 1))}}
	next = &ipvs.Config{Services: []ipvs.Service{svc(dr(own, 1), dr(remote, 2))}}
	markLocal(prev, next, func(netip.Addr) bool { return true })
	if got := next.Services[0].Dests[0].Fwd; got != ipvs.FwdRoute {
		t.Errorf("unchanged dest: Fwd %v, want Route", got)
	}
	if got := next.Services[0].Dests[1].Fwd; got != ipvs.FwdLocal {
		t.Errorf("edited dest: Fwd %v, want Local", got)
	}
}

// tapPair is a local delivery tap whose frames land on the other end of
// a datagram socket pair, one frame per read.
func tapPair(t testing.TB) (*localTap, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return &localTap{fd: fds[0], mac: [6]byte{0x02, 0x7a, 0, 0, 0, 0x01}}, fds[1]
}

// readFrames reads every frame waiting on fd.
func readFrames(t *testing.T, fd int) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			return out
		}
		out = append(out, bytes.Clone(buf[:n]))
	}
}

// A connection to a Local destination goes to the director's stack: its
// frames, TCP and the ICMP errors about it, are written to the tap as
// they came but for the destination MAC (the tap's) and a VLAN tag
// (removed), not transmitted, and nothing waits for a neighbour.
func TestWorkerLocalDelivery(t *testing.T) {
	w, k := methodWorker(t, modes.Local)
	fwd := *w.dp.fwd.Load()
	for i := range fwd {
		fwd[i].macOK = false // a Local destination has no next hop
	}
	tap, peer := tapPair(t)
	cfg := *w.cfg.Load()
	cfg.local = tap
	w.cfg.Store(&cfg)

	frames := [][]byte{tcpTo(40000, 80, syn), tcpTo(40000, 80, ack)}
	tagged := pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], VLAN: 7, Src: testClient, Dst: testVIP,
		SrcPort: 40001, DstPort: 80, Flags: syn, Payload: []byte("xlb")}.Frame()
	frames = append(frames, tagged)
	for _, f := range frames {
		k.deliver(f)
	}
	if w.poll(1); len(k.sent) != 0 {
		t.Fatalf("sent %d frames, want 0: Local connections are not forwarded", len(k.sent))
	}
	got := readFrames(t, peer)
	if len(got) != len(frames) {
		t.Fatalf("tap got %d frames, want %d (counters %v)", len(got), len(frames), w.stats.local)
	}
	for i, f := range frames {
		want := bytes.Clone(f)
		if i == 2 { // untagged
			want = append(bytes.Clone(f[:12]), f[16:]...)
		}
		copy(want[:6], tap.mac[:])
		if !bytes.Equal(got[i], want) {
			t.Errorf("frame %d on the tap:\n%x\nwant\n%x", i, got[i], want)
		}
	}
	if w.stats.local[LocalInjected] != 3 || w.stats.local[ConnNew] != 2 || w.stats.local[Held] != 0 {
		t.Errorf("local_injected %d, conn_new %d, held %d; want 3, 2, 0", w.stats.local[LocalInjected],
			w.stats.local[ConnNew], w.stats.local[Held])
	}

	// A router's fragmentation needed about the stack's reply (VIP:80 →
	// client) belongs to the connection: the stack gets it.
	icmp := icmpFromClientSide(40000)
	k.deliver(icmp)
	w.poll(2)
	if got := readFrames(t, peer); len(got) != 1 || !bytes.Equal(got[0][6:], icmp[6:]) {
		t.Errorf("ICMP error about a Local connection: tap got %d frames, want it (counters %v)", len(got), w.stats.local)
	}

	// Without a tap the frame is dropped and counted.
	none := cfg
	none.local = nil
	w.cfg.Store(&none)
	k.deliver(tcpTo(40000, 80, ack))
	w.poll(3)
	if w.stats.local[LocalDropped] != 1 {
		t.Errorf("local_dropped = %d, want 1", w.stats.local[LocalDropped])
	}
}

// Delivering to the tap allocates nothing.
func TestWorkerLocalAllocs(t *testing.T) {
	w, k := methodWorker(t, modes.Local)
	k.keep = false
	tap, peer := tapPair(t)
	cfg := *w.cfg.Load()
	cfg.local = tap
	w.cfg.Store(&cfg)
	k.deliver(tcpTo(40000, 80, syn))
	w.poll(1)
	f := tcpTo(40000, 80, ack)
	buf := make([]byte, 4096)
	allocs := testing.AllocsPerRun(200, func() {
		k.deliver(f)
		w.poll(2)
		unix.Read(peer, buf)
	})
	if allocs != 0 {
		t.Errorf("poll of a Local connection's frame: %v allocations, want 0", allocs)
	}
	if w.stats.local[LocalInjected] < 200 {
		t.Errorf("local_injected = %d, want ≥ 200", w.stats.local[LocalInjected])
	}
}

// Apply makes a destination on the director's address Local in the
// configuration it is given, forwards it by the tap (never resolving a
// next hop for it), and undoes the mark when it refuses the whole
// configuration.
func TestApplyLocalDest(t *testing.T) {
	d, _ := testDataplane(t, 4)
	own := destAddr(1)
	d.isLocal = func(a netip.Addr) bool { return a == own }
	d.tap, _ = tapPair(t) // as if opened: no device in the test's namespace
	cfg := dpConfig(own, destAddr(2))
	cfg.Services[0].Dests[0].Fwd = ipvs.FwdMasq // any method: Local wins
	if err := d.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Services[0].Dests[0].Fwd; got != ipvs.FwdLocal {
		t.Errorf("Fwd of the director's own address after Apply = %v, want Local", got)
	}
	if got := d.Config().Services[0].Dests[1].Fwd; got != ipvs.FwdRoute {
		t.Errorf("Fwd of a remote address = %v, want Route", got)
	}
	fwd := *d.fwd.Load()
	d.mu.Lock()
	var id uint32
	for _, dst := range d.state.services[cfg.Services[0].Key].dests {
		if dst.Addr == own {
			id = dst.ID
		}
	}
	d.mu.Unlock()
	if fwd[id].method != modes.Local {
		t.Errorf("forwarding method of the Local destination = %v, want Local", fwd[id].method)
	}
	if wc := d.workers[0].cfg.Load(); wc.local != d.tap {
		t.Errorf("workers' configuration has tap %v, want the dataplane's", wc.local)
	}
	dests, _, _ := d.destSnapshot(0)
	for _, r := range dests {
		if r.addr == own {
			t.Errorf("the resolver is asked for the Local destination %v", own)
		}
	}
	if len(dests) != 1 {
		t.Errorf("resolver snapshot has %d destinations, want 1 (the remote one)", len(dests))
	}

	// Refused whole: the new Local mark is undone.
	bad := dpConfig(destAddr(1), destAddr(2), destAddr(3), destAddr(4), destAddr(5), destAddr(6))
	bad.Services[0].Dests[0].Weight = 7 // edited: looked at again
	if err := d.Apply(bad); err == nil {
		t.Fatal("Apply of 6 destinations with room for 4 succeeded")
	}
	if got := bad.Services[0].Dests[0].Fwd; got != ipvs.FwdRoute {
		t.Errorf("Fwd after a refused Apply = %v, want Route as given", got)
	}
}

// tapInNewNS opens the local delivery tap in a network namespace of its
// own, whose lo has testVIP: frames written to it travel the kernel's
// receive path up to TCP (which finds no socket for them and has no
// route for its reset). The namespace goes with the tap at cleanup.
func tapInNewNS(tb testing.TB) *localTap {
	tb.Helper()
	testenv.RequireRoot(tb)
	var tap *localTap
	err := func() error {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			return err
		}
		defer ns.Close()
		defer netns.Set(orig)
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: testVIP.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
			return err
		}
		tap, err = openLocalTap(LocalTapName, 9000)
		return err
	}()
	if err != nil {
		tb.Fatalf("tap in a new namespace: %v", err)
	}
	tb.Cleanup(func() { tap.close() })
	return tap
}

// The cost of local delivery: a batch of a Local connection's frames
// through the worker into a real tap (write(2) each, the kernel's receive
// path included), against the same frames to a datagram socket pair
// (the worker and the syscall alone) and the DR forward of
// BenchmarkWorkerMethods (a descriptor on the TX ring, no syscall per
// frame).
func BenchmarkWorkerLocal(b *testing.B) {
	for _, sink := range []string{"tap", "socketpair"} {
		b.Run(sink, func(b *testing.B) {
			w, k := methodWorker(b, modes.Local)
			var tap *localTap
			peer := -1
			if sink == "tap" {
				tap = tapInNewNS(b)
			} else {
				tap, peer = tapPair(b)
				unix.SetsockoptInt(tap.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
			}
			cfg := *w.cfg.Load()
			cfg.local = tap
			w.cfg.Store(&cfg)
			var frames [][]byte
			for i := 0; i < maxBatch; i++ {
				k.deliver(tcpTo(uint16(20000+i), 80, syn))
				frames = append(frames, tcpTo(uint16(20000+i), 80, ack))
			}
			w.poll(1)
			k.keep = false
			buf := make([]byte, 4096)
			b.ReportAllocs()
			b.ResetTimer()
			n := 0
			for b.Loop() {
				for _, f := range frames {
					k.deliver(f)
				}
				n += w.poll(2)
				if peer >= 0 {
					b.StopTimer()
					for range frames {
						unix.Recvfrom(peer, buf, unix.MSG_DONTWAIT)
					}
					b.StartTimer()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/frame")
			if w.stats.local[LocalDropped] != 0 {
				b.Fatalf("local_dropped = %d", w.stats.local[LocalDropped])
			}
		})
	}
}
