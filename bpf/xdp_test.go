//go:build linux

package bpf_test

import (
	"errors"
	"net/netip"
	"os"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/internal/packet/packettest"
	"github.com/xlbproject/xlb/testenv"
)

// XDP actions (enum xdp_action in linux/bpf.h).
const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

// skipIfNotPermitted skips the test if loading BPF failed for lack of a
// kernel feature or of privileges, and fails it on any other error.
func skipIfNotPermitted(tb testing.TB, err error) {
	tb.Helper()
	switch {
	case err == nil:
	case errors.Is(err, ebpf.ErrNotSupported):
		testenv.SkipUnlessRequired(tb, "kernel lacks a feature: %v", err)
	case errors.Is(err, os.ErrPermission):
		testenv.SkipUnlessRequired(tb, "BPF not permitted (need root or CAP_BPF+CAP_NET_ADMIN): %v", err)
	default:
		tb.Fatal(err)
	}
}

// load loads the objects, closed at the end of the test, with the
// packettest services and reals configured.
func load(tb testing.TB) *bpf.Objects {
	tb.Helper()
	o, err := bpf.Load(bpf.Options{MAC: packettest.LBMAC, VLANs: packettest.VLANs})
	skipIfNotPermitted(tb, err)
	tb.Cleanup(func() {
		if err := o.Close(); err != nil {
			tb.Error(err)
		}
	})
	for i, s := range packettest.Services {
		if err := o.AddService(bpf.ServiceKey(s), uint32(i+1)); err != nil {
			tb.Fatal(err)
		}
	}
	for _, r := range packettest.Reals {
		if err := o.AddReal(bpf.ServiceKey(r)); err != nil {
			tb.Fatal(err)
		}
	}
	return o
}

// xdpReason is the counter the XDP program bumps for a frame that Parse
// classifies as r and, if r is OK, whose lookup is s and, if s steers,
// which Filter.Admit classifies as a. It states the contract between the
// two classifiers.
func xdpReason(r packet.Reason, s packettest.Steer, a packet.Reason) bpf.Reason {
	switch r {
	case packet.OK:
		if s != packettest.NoService && a != packet.OK {
			return xdpReason(a, s, packet.OK)
		}
		switch s {
		case packettest.ToService:
			return bpf.Redirect
		case packettest.FromReal:
			return bpf.RedirectReply
		}
		return bpf.PassNoService
	case packet.NotIP:
		return bpf.PassNotIP
	case packet.ARP:
		return bpf.PassARP
	case packet.NotTCPUDP:
		return bpf.PassNotTCPUDP
	case packet.Fragment:
		return bpf.PassFragment
	case packet.IPv6Ext:
		return bpf.PassIPv6Ext
	case packet.Malformed:
		return bpf.Malformed
	case packet.VLAN:
		return bpf.PassVLAN
	case packet.OtherHost:
		return bpf.DropOtherHost
	case packet.L2Multicast:
		return bpf.DropL2Multicast
	case packet.BadChecksum:
		return bpf.DropBadChecksum
	case packet.Martian:
		return bpf.DropMartian
	}
	panic("unknown packet.Reason " + r.String())
}

// run runs the program once on frame with BPF_PROG_RUN and returns its
// action and the one counter that moved.
func run(tb testing.TB, o *bpf.Objects, frame []byte) (action uint32, reason bpf.Reason) {
	tb.Helper()
	before, err := o.Counters()
	if err != nil {
		tb.Fatal(err)
	}
	action, err = o.Program().Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		tb.Fatalf("run xdp on %x: %v", frame, err)
	}
	after, err := o.Counters()
	if err != nil {
		tb.Fatal(err)
	}
	reason = bpf.Reason(bpf.NumReasons)
	for r, n := range after.All() {
		switch d := n - before[r]; {
		case d == 0:
		case d == 1 && reason == bpf.Reason(bpf.NumReasons):
			reason = r
		default:
			tb.Fatalf("run xdp on %x: counter %v moved by %d (first mover %v), want one counter moved by 1", frame, r, d, reason)
		}
	}
	if reason == bpf.Reason(bpf.NumReasons) {
		tb.Fatalf("run xdp on %x: no counter moved", frame)
	}
	return action, reason
}

func TestXDPGolden(t *testing.T) {
	o := load(t)
	for _, c := range packettest.Cases() {
		t.Run(c.Name, func(t *testing.T) {
			want := xdpReason(c.Reason, c.Steer, c.Admit)
			// No AF_XDP socket is bound, so a redirect falls back to
			// XDP_PASS: every frame but those dropped is passed, and the
			// counter tells.
			action, got := run(t, o, c.Frame)
			if action != wantAction(want) || got != want {
				t.Errorf("xdp(%x) = action %d, counter %v; want action %d, counter %v\ntcpdump: %s",
					c.Frame, action, got, wantAction(want), want, c.Tcpdump)
			}
		})
	}
}

// TestXDPAgreesWithParse runs XDP and Parse over the golden frames cut at
// every length and with every header byte replaced by a few values: the
// counter XDP bumps must be the one Parse's verdict implies.
func TestXDPAgreesWithParse(t *testing.T) {
	o := load(t)
	filter := packettest.Filter()
	check := func(name string, frame []byte) {
		t.Helper()
		var m packet.Meta
		r := packet.Parse(frame, &m)
		s, a := packettest.NoService, packet.OK
		if r == packet.OK {
			s = packettest.Lookup(&m)
			if s != packettest.NoService {
				a = filter.Admit(frame, &m)
			}
		}
		want := xdpReason(r, s, a)
		action, got := run(t, o, frame)
		if action != wantAction(want) || got != want {
			t.Errorf("%s: xdp(%x) = action %d, counter %v; Parse = %v, %v, %v: want action %d, counter %v",
				name, frame, action, got, r, s, a, wantAction(want), want)
		}
	}
	runs := 0
	for _, c := range packettest.Cases() {
		// BPF_PROG_RUN refuses XDP input shorter than an Ethernet header.
		for n := 14; n < len(c.Frame); n++ {
			check(c.Name+" cut", c.Frame[:n])
			runs++
		}
		hdr := min(len(c.Frame), 14+4+60+60) // Ethernet, VLAN, IPv4 with options, TCP
		if c.Frame[12] == 0x86 && c.Frame[13] == 0xdd {
			hdr = min(len(c.Frame), 14+40+9*8+20) // Ethernet, IPv6, extension headers, TCP
		}
		// From byte 0: the destination MAC matters now.
		for i := 0; i < hdr; i++ {
			for _, v := range []byte{0x00, 0xff, c.Frame[i] ^ 0x01, c.Frame[i] ^ 0x40} {
				f := append([]byte(nil), c.Frame...)
				f[i] = v
				check(c.Name+" mutated", f)
				runs++
			}
		}
	}
	t.Logf("%d frames agreed", runs)
}

// wantAction is the XDP action of a frame that bumps counter r when no
// AF_XDP socket is bound.
func wantAction(r bpf.Reason) uint32 {
	switch r {
	case bpf.DropOtherHost, bpf.DropL2Multicast, bpf.DropBadChecksum, bpf.DropMartian:
		return xdpDrop
	}
	return xdpPass
}

func TestXDPServiceChanges(t *testing.T) {
	o := load(t)
	var syn []byte
	for _, c := range packettest.Cases() {
		if c.Name == "tcp to vip:22, not a service" {
			syn = c.Frame
		}
	}
	if syn == nil {
		t.Fatal("golden case missing")
	}
	ssh := bpf.ServiceKey{Addr: packettest.VIP4, Port: packettest.SSH, Proto: bpf.ProtoTCP}
	if _, got := run(t, o, syn); got != bpf.PassNoService {
		t.Fatalf("before AddService: counter %v, want %v", got, bpf.PassNoService)
	}
	if err := o.AddService(ssh, 7); err != nil {
		t.Fatal(err)
	}
	if _, got := run(t, o, syn); got != bpf.Redirect {
		t.Fatalf("after AddService: counter %v, want %v", got, bpf.Redirect)
	}
	// A draining service passes new connections (SYN without ACK) to the
	// kernel and keeps steering every other segment.
	ack := slices.Clone(syn)
	ack[14+int(ack[14]&0xf)*4+13] = 0x10 // TCP flags: ACK
	synAck := slices.Clone(ack)
	synAck[14+int(synAck[14]&0xf)*4+13] = 0x12
	if err := o.DrainService(ssh, 7); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		frame []byte
		want  bpf.Reason
	}{{"syn", syn, bpf.PassNoService}, {"ack", ack, bpf.Redirect}, {"syn+ack", synAck, bpf.Redirect}} {
		if _, got := run(t, o, c.frame); got != c.want {
			t.Errorf("draining, %s: counter %v, want %v", c.name, got, c.want)
		}
	}
	if err := o.AddService(ssh, 7); err != nil {
		t.Fatal(err)
	}
	if _, got := run(t, o, syn); got != bpf.Redirect {
		t.Fatalf("after AddService of a draining service: counter %v, want %v", got, bpf.Redirect)
	}
	if err := o.DeleteService(ssh); err != nil {
		t.Fatal(err)
	}
	if _, got := run(t, o, syn); got != bpf.PassNoService {
		t.Fatalf("after DeleteService: counter %v, want %v", got, bpf.PassNoService)
	}
	if err := o.DrainService(ssh, 7); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("DrainService(%v) of no service = %v, want ErrKeyNotExist", ssh, err)
	}
	if err := o.DeleteService(ssh); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("DeleteService(%v) twice = %v, want ErrKeyNotExist", ssh, err)
	}

	real := bpf.ServiceKey(packettest.Reals[0])
	if err := o.DeleteReal(real); err != nil {
		t.Fatal(err)
	}
	if err := o.DeleteReal(real); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("DeleteReal(%v) twice = %v, want ErrKeyNotExist", real, err)
	}
}

func TestServiceKeyInvalid(t *testing.T) {
	o := load(t)
	for _, k := range []bpf.ServiceKey{
		{},
		{Addr: packettest.VIP4, Port: 80, Proto: 1},
		{Addr: netipMapped(packettest.VIP4), Port: 80, Proto: bpf.ProtoTCP},
		{Addr: packettest.VIP6.WithZone("eth0"), Port: 80, Proto: bpf.ProtoTCP},
	} {
		if err := o.AddService(k, 1); err == nil {
			t.Errorf("AddService(%v) = nil, want an error", k)
		} else {
			t.Logf("AddService(%v) = %v", k, err)
		}
		if err := o.AddReal(k); err == nil {
			t.Errorf("AddReal(%v) = nil, want an error", k)
		}
	}
}

// A port-0 service (ipvsadm -A -t VIP:0 -p) catches every port of its
// protocol and address that has no service of its own, as
// ip_vs_service_find looks up the exact service first and then port 0;
// and a real server of port 0 (NAT, -r RS:0 -m) is steered from any port.
func TestXDPPortZero(t *testing.T) {
	o := load(t)
	vip6 := netip.MustParseAddr("2001:db8::20")
	real6 := netip.MustParseAddr("2001:db8:2::20")
	for _, k := range []bpf.ServiceKey{
		{Addr: packettest.VIP4, Port: 0, Proto: bpf.ProtoTCP},
		{Addr: vip6, Port: 0, Proto: bpf.ProtoUDP},
	} {
		if err := o.AddService(k, 9); err != nil {
			t.Fatalf("AddService(%v) = %v", k, err)
		}
	}
	for _, k := range []bpf.ServiceKey{
		{Addr: packettest.Real4, Port: 0, Proto: bpf.ProtoUDP},
		{Addr: real6, Port: 0, Proto: bpf.ProtoTCP},
	} {
		if err := o.AddReal(k); err != nil {
			t.Fatalf("AddReal(%v) = %v", k, err)
		}
	}
	client4, client6 := packettest.Client4, packettest.Client6
	for _, c := range []struct {
		name     string
		src, dst netip.Addr
		sp, dp   uint16
		udp      bool
		want     bpf.Reason
	}{
		{"tcp vip4:80, its own service", client4, packettest.VIP4, 40000, 80, false, bpf.Redirect},
		{"tcp vip4:22, the port-0 service", client4, packettest.VIP4, 40000, 22, false, bpf.Redirect},
		{"tcp vip4:65535, the port-0 service", client4, packettest.VIP4, 40000, 65535, false, bpf.Redirect},
		{"udp vip4:123, no udp port-0 service", client4, packettest.VIP4, 40000, 123, true, bpf.PassNoService},
		{"udp vip6:123, the port-0 service", client6, vip6, 40000, 123, true, bpf.Redirect},
		{"tcp vip6:123, no tcp port-0 service", client6, vip6, 40000, 123, false, bpf.PassNoService},
		{"tcp other vip6:22, no service", client6, packettest.VIP6, 40000, 22, false, bpf.PassNoService},
		{"udp from real4:5000, port-0 real", packettest.Real4, client4, 5000, 40000, true, bpf.RedirectReply},
		{"tcp from real4:5000, no tcp port-0 real", packettest.Real4, client4, 5000, 40000, false, bpf.PassNoService},
		{"tcp from real6:443, port-0 real", real6, client6, 443, 40000, false, bpf.RedirectReply},
	} {
		f := packettest.Packet{DstMAC: packettest.LBMAC[:], Src: c.src, Dst: c.dst, SrcPort: c.sp, DstPort: c.dp,
			UDP: c.udp, Flags: packet.TCPFlagSYN}.Frame()
		if _, got := run(t, o, f); got != c.want {
			t.Errorf("%s: counter %v, want %v", c.name, got, c.want)
		}
	}
	// The exact service's flags decide, not the port-0 one's: a draining
	// VIP:0 leaves VIP:80's SYNs alone.
	if err := o.DrainService(bpf.ServiceKey{Addr: packettest.VIP4, Port: 0, Proto: bpf.ProtoTCP}, 9); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		port uint16
		want bpf.Reason
	}{{80, bpf.Redirect}, {22, bpf.PassNoService}} {
		f := packettest.Packet{DstMAC: packettest.LBMAC[:], Src: client4, Dst: packettest.VIP4, SrcPort: 40000, DstPort: c.port,
			Flags: packet.TCPFlagSYN}.Frame()
		if _, got := run(t, o, f); got != c.want {
			t.Errorf("draining vip4:0, syn to port %d: counter %v, want %v", c.port, got, c.want)
		}
	}
}

func TestSetSocketInvalid(t *testing.T) {
	o := load(t)
	for _, q := range []int{-1, bpf.MaxQueues} {
		if err := o.SetSocket(q, 0); err == nil {
			t.Errorf("SetSocket(%d, 0) = nil, want an error", q)
		}
	}
	// Only AF_XDP sockets go in an XSKMAP.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := o.SetSocket(0, int(r.Fd())); err == nil {
		t.Errorf("SetSocket(0, pipe) = nil, want an error")
	}
	if err := o.DeleteSocket(0); err != nil {
		t.Errorf("DeleteSocket(0) on an empty slot = %v, want nil", err)
	}
}

func TestCountersAll(t *testing.T) {
	c := bpf.Counters{}
	for i := range c {
		c[i] = uint64(i * 10)
	}
	n := 0
	for r, v := range c.All() {
		if int(r) != n || v != uint64(n*10) {
			t.Errorf("All() yielded %v=%d at %d, want %v=%d", r, v, n, bpf.Reason(n), n*10)
		}
		n++
	}
	if n != bpf.NumReasons {
		t.Errorf("All() yielded %d reasons, want %d", n, bpf.NumReasons)
	}
}

// A frame from a real server is steered as a NAT reply unless it is
// addressed to the director itself (its own connection to the real
// server's port: a health check): that one goes to the kernel. Replies to
// a FULLNAT local address are steered.
func TestXDPLocalAddresses(t *testing.T) {
	o := load(t)
	real := packettest.Reals[0]
	own := netip.MustParseAddr("198.51.100.1")
	laddr := netip.MustParseAddr("198.51.100.2")
	client := netip.MustParseAddr("203.0.113.9")
	if !real.Addr.Is4() {
		t.Fatalf("test expects an IPv4 real, got %v", real.Addr)
	}
	from := func(dst netip.Addr) []byte {
		return packettest.Packet{DstMAC: packettest.LBMAC[:], Src: real.Addr, Dst: dst,
			SrcPort: real.Port, DstPort: 40000, UDP: real.Proto == bpf.ProtoUDP, Flags: packet.TCPFlagSYN | packet.TCPFlagACK}.Frame()
	}
	if err := o.SetLocal(own, false); err != nil {
		t.Fatal(err)
	}
	if err := o.SetLocal(laddr, true); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dst  netip.Addr
		want bpf.Reason
	}{{client, bpf.RedirectReply}, {own, bpf.PassLocal}, {laddr, bpf.RedirectReply}} {
		if _, got := run(t, o, from(c.dst)); got != c.want {
			t.Errorf("real → %v: counter %v, want %v", c.dst, got, c.want)
		}
	}
	got, err := o.Locals()
	if err != nil || len(got) != 2 || got[own] || !got[laddr] {
		t.Errorf("Locals() = %v, %v; want %v own, %v laddr", got, err, own, laddr)
	}
	if err := o.DeleteLocal(own); err != nil {
		t.Fatal(err)
	}
	if _, got := run(t, o, from(own)); got != bpf.RedirectReply {
		t.Errorf("after DeleteLocal: counter %v, want %v", got, bpf.RedirectReply)
	}
	if err := o.DeleteLocal(own); err != nil {
		t.Errorf("DeleteLocal twice = %v, want nil", err)
	}
}

// A real server's ICMP error about a packet the director sent it is
// steered as a reply when the quoted source is a client (NAT) or a FULLNAT
// local address, and goes to the kernel when it is the director's own
// address: the error belongs to the director's own connection (a health
// check), as its replies do.
func TestXDPICMPLocalAddresses(t *testing.T) {
	o := load(t)
	real := packettest.Reals[0]
	own := netip.MustParseAddr("198.51.100.1")
	laddr := netip.MustParseAddr("198.51.100.2")
	client := netip.MustParseAddr("203.0.113.9")
	if err := o.SetLocal(own, false); err != nil {
		t.Fatal(err)
	}
	if err := o.SetLocal(laddr, true); err != nil {
		t.Fatal(err)
	}
	about := func(src netip.Addr) []byte {
		q := packettest.Quote(0, packettest.IPv4(src, real.Addr, layers.IPProtocolTCP), packettest.TCP(40000, real.Port, packet.TCPFlagSYN))
		return packettest.ICMPError(packettest.ClientMAC, packettest.LBMAC[:], real.Addr, src, 3, 3, 0, q)
	}
	for _, c := range []struct {
		src  netip.Addr
		want bpf.Reason
	}{{client, bpf.RedirectReply}, {own, bpf.PassLocal}, {laddr, bpf.RedirectReply}} {
		if _, got := run(t, o, about(c.src)); got != c.want {
			t.Errorf("real's port unreachable about %v → real: counter %v, want %v", c.src, got, c.want)
		}
	}
}
