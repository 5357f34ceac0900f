//go:build linux

package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/internal/packet/packettest"
)

// loadGSO loads the program with the sockets' frame limit of 2048-byte
// frames and HTTP on VIP4 as a service, closed at the end of the test.
func loadGSO(t *testing.T) *Objects {
	t.Helper()
	o, err := Load(Options{MAC: packettest.LBMAC, Offload: true, MaxFlows: 16, MaxReals: 4, MaxFrame: MaxFrameFor(2048)})
	if errors.Is(err, os.ErrPermission) || errors.Is(err, ebpf.ErrNotSupported) {
		skipUnlessRequired(t, "cannot load BPF: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	if err := o.AddService(ServiceKey{Addr: packettest.VIP4, Port: packettest.HTTP, Proto: 6}, 1); err != nil {
		t.Fatal(err)
	}
	return o
}

// gsoFrame is an ACK with n bytes of payload from the client to HTTP on
// VIP4.
func gsoFrame(n int) []byte {
	return packettest.Packet{Src: packettest.Client4, Dst: packettest.VIP4, SrcPort: packettest.ClientPort,
		DstPort: packettest.HTTP, Flags: 0x10, Payload: make([]byte, n)}.Frame()
}

// runOne runs p on frame and returns its action, what it left from the
// metadata on, and the one counter that moved (NumReasons if none).
func runOne(t *testing.T, o *Objects, p *ebpf.Program, frame []byte) (uint32, []byte, Reason) {
	t.Helper()
	c0, err := o.Counters()
	if err != nil {
		t.Fatal(err)
	}
	opts := ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256)}
	act, err := p.Run(&opts)
	if err != nil {
		t.Fatal(err)
	}
	c1, err := o.Counters()
	if err != nil {
		t.Fatal(err)
	}
	moved := Reason(NumReasons)
	for r := range c1 {
		if c1[r] != c0[r] {
			if moved != Reason(NumReasons) {
				t.Fatalf("counters %v and %v both moved", moved, Reason(r))
			}
			moved = Reason(r)
		}
	}
	return act, opts.DataOut, moved
}

// A frame to a service larger than a socket takes is dropped, counted,
// without the tc companion, and passed to it, marked in its metadata,
// with it; a frame that fits is steered as before. xlb_tc leaves an skb
// the XDP program did not mark alone.
func TestXDPOversize(t *testing.T) {
	o := loadGSO(t)
	big, fits := gsoFrame(3000), gsoFrame(MaxFrameFor(2048)-54)
	if len(fits) != MaxFrameFor(2048) {
		t.Fatalf("frame of %d bytes, want %d", len(fits), MaxFrameFor(2048))
	}
	const xdpDrop, xdpPass = 1, 2
	if act, _, r := runOne(t, o, o.objs.XlbXdp, big); act != xdpDrop || r != DropOversize {
		t.Errorf("frame of %d bytes without the tc companion: action %d, counter %v; want %d, %v", len(big), act, r, xdpDrop, DropOversize)
	}
	if act, _, r := runOne(t, o, o.objs.XlbXdp, fits); act != xdpPass || r != Redirect {
		t.Errorf("frame of %d bytes: action %d, counter %v; want %d (no socket: the redirect's fallback), %v", len(fits), act, r, xdpPass, Redirect)
	}
	// BPF_PROG_RUN runs XDP as if on loopback.
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	k, one := uint32(lo.Attrs().Index), uint32(lo.Attrs().MTU)
	if err := o.gsoTc.Update(&k, &one, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	act, out, r := runOne(t, o, o.objs.XlbXdp, big)
	if act != xdpPass || r != PassGSO {
		t.Errorf("frame of %d bytes with the tc companion: action %d, counter %v; want %d, %v", len(big), act, r, xdpPass, PassGSO)
	}
	// BPF_PROG_RUN's output starts at the metadata.
	if len(out) != 4+len(big) || binary.NativeEndian.Uint32(out) != 0x67626c78 || !bytes.Equal(out[4:], big) {
		t.Errorf("passed %d bytes starting %x, want the mark \"xlbg\" and the frame unchanged", len(out), out[:min(len(out), 8)])
	}
	if act, _, r := runOne(t, o, o.objs.XlbXdp, fits); act != xdpPass || r != Redirect {
		t.Errorf("frame of %d bytes with the tc companion: action %d, counter %v; want %d, %v", len(fits), act, r, xdpPass, Redirect)
	}
	const tcActUnspec = 0xffffffff // TC_ACT_UNSPEC, tcx's next
	if act, out, r := runOne(t, o, o.objs.XlbTc, big); act != tcActUnspec || r != Reason(NumReasons) || !bytes.Equal(out, big) {
		t.Errorf("xlb_tc on an unmarked skb: action %#x, counter %v; want %#x, none, the frame unchanged", act, r, uint32(tcActUnspec))
	}
}

// Attach in generic mode attaches xlb_tc to tcx ingress and enables it
// for the XDP program; closing the link undoes both. Native mode (veth
// has it) attaches no companion.
func TestAttachGSOCompanion(t *testing.T) {
	l := vethInNewNetns(t)
	idx := l.Attrs().Index
	o := loadGSO(t)
	tcx := func() int {
		r, err := link.QueryPrograms(link.QueryOptions{Target: idx, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			t.Fatal(err)
		}
		return len(r.Programs)
	}
	enabled := func() bool { // with the interface's MTU, for the XDP program
		var v uint32
		k := uint32(idx)
		return o.gsoTc.Lookup(&k, &v) == nil && v == uint32(l.Attrs().MTU)
	}

	lk, mode, err := o.AttachAs(idx, Generic)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := o.GSOCompanion(); mode != Generic || !ok || err != nil || tcx() != 1 || !enabled() {
		t.Errorf("generic: mode %v, companion %v (%v), tcx programs %d, enabled %v; want generic, true, 1, true", mode, ok, err, tcx(), enabled())
	}
	if err := lk.Close(); err != nil {
		t.Fatal(err)
	}
	if tcx() != 0 || enabled() {
		t.Errorf("after close: tcx programs %d, enabled %v; want 0, false", tcx(), enabled())
	}

	lk, mode, err = o.AttachAs(idx, Native)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	if ok, _ := o.GSOCompanion(); mode != Native || ok || tcx() != 0 || enabled() {
		t.Errorf("native: mode %v, companion %v, tcx programs %d, enabled %v; want native, false, 0, false", mode, ok, tcx(), enabled())
	}
}

// A FlowPartial flow's frames go to the tc companion, marked, when the
// interface has it (one path with the flow's GSO skbs), and to the
// worker otherwise; a TTL of 1 goes to the worker (time exceeded) in
// either case.
func TestXDPPartialFlow(t *testing.T) {
	o := loadGSO(t)
	frame := gsoFrame(100)
	k := MakeFlowKey(packettest.Client4.As16(), packettest.ClientPort, packettest.VIP4.As16(), packettest.HTTP, 6)
	v := Flow{Op: FlowDR, Flags: FlowPartial, MTU: 1500, Ifindex: 1, Dest: 1}
	if err := o.PutFlow(&k, &v); err != nil {
		t.Fatal(err)
	}
	ttl1 := packettest.Packet{Src: packettest.Client4, Dst: packettest.VIP4, SrcPort: packettest.ClientPort,
		DstPort: packettest.HTTP, Flags: 0x10, TTL: 1, Payload: make([]byte, 100)}.Frame()
	const xdpPass = 2
	if act, _, r := runOne(t, o, o.objs.XlbXdp, frame); act != xdpPass || r != Redirect {
		t.Errorf("without the tc companion: action %d, counter %v; want %d, %v (to the worker)", act, r, xdpPass, Redirect)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	idx, one := uint32(lo.Attrs().Index), uint32(lo.Attrs().MTU)
	if err := o.gsoTc.Update(&idx, &one, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	act, out, r := runOne(t, o, o.objs.XlbXdp, frame)
	if act != xdpPass || r != PassPartial || len(out) != 4+len(frame) || binary.NativeEndian.Uint32(out) != 0x67626c78 || !bytes.Equal(out[4:], frame) {
		t.Errorf("with the tc companion: action %d, counter %v, %d bytes; want %d, %v, the mark and the frame unchanged", act, r, len(out), xdpPass, PassPartial)
	}
	if act, _, r := runOne(t, o, o.objs.XlbXdp, ttl1); act != xdpPass || r != Redirect {
		t.Errorf("TTL 1 with the tc companion: action %d, counter %v; want %d, %v (to the worker)", act, r, xdpPass, Redirect)
	}
}

// An offloaded flow's frame larger than its egress MTU but small enough
// for a socket goes to the tc companion if it is larger than the ingress
// interface's MTU too (only GSO makes such a frame), and to the worker,
// which answers it as too big, otherwise or without the companion.
func TestXDPTooBig(t *testing.T) {
	o := loadGSO(t)
	k := MakeFlowKey(packettest.Client4.As16(), packettest.ClientPort, packettest.VIP4.As16(), packettest.HTTP, 6)
	v := Flow{Op: FlowDR, MTU: 1500, Ifindex: 1, Dest: 1}
	if err := o.PutFlow(&k, &v); err != nil {
		t.Fatal(err)
	}
	frame := gsoFrame(1700) // 1754 bytes: 1740 of IP, within MaxFrameFor(2048)
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	idx := uint32(lo.Attrs().Index)
	const xdpPass = 2
	for _, c := range []struct {
		name       string
		ingressMTU uint32 // 0: no companion
		want       Reason
	}{
		{"no companion", 0, Redirect},
		{"ingress mtu 1500", 1500, PassGSO},
		{"ingress mtu 9000", 9000, Redirect},
	} {
		if c.ingressMTU == 0 {
			o.gsoTc.Delete(&idx)
		} else if err := o.gsoTc.Update(&idx, &c.ingressMTU, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
		if act, _, r := runOne(t, o, o.objs.XlbXdp, frame); act != xdpPass || r != c.want {
			t.Errorf("%s: action %d, counter %v; want %d, %v", c.name, act, r, xdpPass, c.want)
		}
	}
}
