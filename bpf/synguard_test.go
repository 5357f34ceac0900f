//go:build linux

package bpf_test

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/internal/packet/packettest"
)

// tcpFrame builds a TCP segment from src:40000 to dst:dport with the SYN
// and ACK flags given.
func tcpFrame(t *testing.T, src, dst netip.Addr, dport uint16, syn, ack bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: layers.TCPPort(dport), SYN: syn, ACK: ack, Window: 1000}
	var l3 gopacket.SerializableLayer
	if src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		tcp.SetNetworkLayerForChecksum(ip)
		l3 = ip
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		tcp.SetNetworkLayerForChecksum(ip)
		l3 = ip
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, l3, tcp); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Under pressure the program drops only pure SYNs to services: at level 1
// those of a source prefix beyond its burst (other prefixes still get
// through), at level 2 also those of prefixes that sent no ACK; SYN-ACKs,
// ACKs and SYNs to ports that are not services are handled as without
// pressure. BPF_PROG_RUN runs on queue 0.
func TestXDPSYNGuard(t *testing.T) {
	o := load(t)
	mustRun := func(frame []byte, wantAction uint32, want bpf.Reason) {
		t.Helper()
		action, got := run(t, o, frame)
		if action != wantAction || got != want {
			t.Errorf("xdp(%x) = action %d, counter %v; want action %d, counter %v", frame, action, got, wantAction, want)
		}
	}
	src1 := netip.MustParseAddr("203.0.113.7")
	src1b := netip.MustParseAddr("203.0.113.200") // same /24
	src2 := netip.MustParseAddr("198.51.100.7")
	src6 := netip.MustParseAddr("2001:db8:1:2::7")
	src6b := netip.MustParseAddr("2001:db8:1:2:ffff::1") // same /64
	src6c := netip.MustParseAddr("2001:db8:1:3::7")
	syn := func(src netip.Addr) []byte {
		dst, port := packettest.VIP4, uint16(packettest.HTTP)
		if src.Is6() {
			dst, port = packettest.VIP6, packettest.HTTPS
		}
		return tcpFrame(t, src, dst, port, true, false)
	}
	ack := tcpFrame(t, src1, packettest.VIP4, packettest.HTTP, false, true)
	synAck := tcpFrame(t, src1, packettest.VIP4, packettest.HTTP, true, true)
	sshSyn := tcpFrame(t, src1, packettest.VIP4, packettest.SSH, true, false)

	// Level 0 (the map's initial state): everything is steered.
	for range 10 {
		mustRun(syn(src1), xdpPass, bpf.Redirect)
	}

	// Level 1, 1 SYN/s in bursts of 3: a prefix's fourth SYN within the
	// second is dropped; another prefix, and non-SYN segments, still pass.
	if err := o.SYNGuard(0, bpf.SYNLimit, 1, 3, 0); err != nil {
		t.Fatal(err)
	}
	for _, src := range []netip.Addr{src1, src6} {
		same := src1b
		if src.Is6() {
			same = src6b
		}
		mustRun(syn(src), xdpPass, bpf.Redirect)
		mustRun(syn(src), xdpPass, bpf.Redirect)
		mustRun(syn(same), xdpPass, bpf.Redirect)
		mustRun(syn(same), xdpDrop, bpf.DropSYNRate)
		mustRun(syn(src), xdpDrop, bpf.DropSYNRate)
	}
	mustRun(syn(src2), xdpPass, bpf.Redirect)
	mustRun(syn(src6c), xdpPass, bpf.Redirect)
	mustRun(ack, xdpPass, bpf.Redirect)
	mustRun(synAck, xdpPass, bpf.Redirect)
	mustRun(sshSyn, xdpPass, bpf.PassNoService)

	// Level 2: SYNs of prefixes that sent no ACK are dropped; src1's
	// prefix sent one above, src2's did not. A prefix's first ACK makes
	// its SYNs welcome. Nothing else changes.
	if err := o.SYNGuard(0, bpf.SYNKnownOnly, 1000, 2000, 0); err != nil {
		t.Fatal(err)
	}
	mustRun(syn(src2), xdpDrop, bpf.DropSYNPressure)
	mustRun(syn(netip.MustParseAddr("192.0.2.99")), xdpDrop, bpf.DropSYNPressure)
	mustRun(syn(src6c), xdpDrop, bpf.DropSYNPressure)
	mustRun(syn(src1), xdpDrop, bpf.DropSYNRate) // known, but 3 s ahead of its rate, 2 s allowed
	mustRun(ack, xdpPass, bpf.Redirect)
	mustRun(synAck, xdpPass, bpf.Redirect)
	mustRun(sshSyn, xdpPass, bpf.PassNoService)
	mustRun(tcpFrame(t, src2, packettest.VIP4, packettest.HTTP, false, true), xdpPass, bpf.Redirect)
	mustRun(syn(src2), xdpPass, bpf.Redirect)
	fresh := netip.MustParseAddr("192.0.2.200") // a prefix seen first with an ACK
	mustRun(syn(fresh), xdpDrop, bpf.DropSYNPressure)
	mustRun(tcpFrame(t, fresh, packettest.VIP4, packettest.HTTP, false, true), xdpPass, bpf.Redirect)
	mustRun(syn(fresh), xdpPass, bpf.Redirect)

	// Back to level 0: the dropped prefix is admitted again.
	if err := o.SYNGuard(0, bpf.SYNAdmit, 1, 3, 0); err != nil {
		t.Fatal(err)
	}
	mustRun(syn(src1), xdpPass, bpf.Redirect)

	// Every refusal above was counted on queue 0: 2 per prefix at level
	// 1 (src1, src6), 5 at level 2.
	if n, err := o.SYNRefused(0); err != nil || n != 9 {
		t.Errorf("SYNRefused(0) = %d, %v; want 9", n, err)
	}
	if n, err := o.SYNRefused(1); err != nil || n != 0 {
		t.Errorf("SYNRefused(1) = %d, %v; want 0", n, err)
	}
	if _, err := o.SYNRefused(bpf.MaxQueues); err == nil {
		t.Errorf("SYNRefused(%d) = nil error, want one", bpf.MaxQueues)
	}

	// Another queue's level does not apply to queue 0.
	if err := o.SYNGuard(1, bpf.SYNKnownOnly, 1, 3, 0); err != nil {
		t.Fatal(err)
	}
	mustRun(syn(src2), xdpPass, bpf.Redirect)
}

func TestSYNGuardInvalid(t *testing.T) {
	o := load(t)
	for _, c := range []struct {
		queue       int
		level       bpf.SYNLevel
		rate, burst int
		auto        int
	}{
		{-1, bpf.SYNLimit, 1, 1, 0},
		{bpf.MaxQueues, bpf.SYNLimit, 1, 1, 0},
		{0, bpf.SYNKnownOnly + 1, 1, 1, 0},
		{0, bpf.SYNLimit, 0, 1, 0},
		{0, bpf.SYNLimit, 1, 0, 0},
		{0, bpf.SYNLimit, 2e9, 1, 0},
		{0, bpf.SYNAdmit, 1, 1, -1},
	} {
		if err := o.SYNGuard(c.queue, c.level, c.rate, c.burst, c.auto); err == nil {
			t.Errorf("SYNGuard(%d, %d, %d, %d, %d) = nil, want an error", c.queue, c.level, c.rate, c.burst, c.auto)
		}
	}
}

// At level 0 a queue that sees more SYNs in a millisecond than its auto
// rate acts as level 1 by itself: of a burst of 1000 SYNs from one prefix
// (run back to back in the kernel, well within a millisecond), the first
// 5 pass at level 0, the next 3 within the prefix's burst, and the rest
// are refused.
func TestXDPSYNGuardAuto(t *testing.T) {
	o := load(t)
	if err := o.SYNGuard(0, bpf.SYNAdmit, 1, 3, 5000); err != nil {
		t.Fatal(err)
	}
	frame := tcpFrame(t, netip.MustParseAddr("203.0.113.9"), packettest.VIP4, packettest.HTTP, true, false)
	before, err := o.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Program().Run(&ebpf.RunOptions{Data: frame, Repeat: 1000}); err != nil {
		t.Fatal(err)
	}
	after, err := o.Counters()
	if err != nil {
		t.Fatal(err)
	}
	redirected, refused := after[bpf.Redirect]-before[bpf.Redirect], after[bpf.DropSYNRate]-before[bpf.DropSYNRate]
	if redirected != 8 || refused != 992 {
		t.Errorf("1000 SYNs at auto 5/ms: %d redirected, %d drop_syn_rate; want 8, 992", redirected, refused)
	}

	// With auto off, level 0 admits them all.
	if err := o.SYNGuard(0, bpf.SYNAdmit, 1, 3, 0); err != nil {
		t.Fatal(err)
	}
	before = after
	if _, err := o.Program().Run(&ebpf.RunOptions{Data: frame, Repeat: 1000}); err != nil {
		t.Fatal(err)
	}
	after, _ = o.Counters()
	if d := after[bpf.Redirect] - before[bpf.Redirect]; d != 1000 {
		t.Errorf("1000 SYNs with auto off: %d redirected, want 1000", d)
	}
}
