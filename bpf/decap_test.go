//go:build linux

package bpf_test

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/bpf"
)

// Addresses of the decap golden frames: the real server (local), another
// host (not local), a client and the VIP on the real server's lo.
var (
	dcLocal4  = netip.MustParseAddr("198.18.0.11")
	dcOther4  = netip.MustParseAddr("198.18.0.12")
	dcDir4    = netip.MustParseAddr("198.18.0.1")
	dcClient4 = netip.MustParseAddr("198.18.1.2")
	dcVIP4    = netip.MustParseAddr("198.18.0.100")
	dcLocal6  = netip.MustParseAddr("2001:db8::11")
	dcOther6  = netip.MustParseAddr("2001:db8::12")
	dcDir6    = netip.MustParseAddr("2001:db8::1")
	dcClient6 = netip.MustParseAddr("2001:db8:1::2")
	dcVIP6    = netip.MustParseAddr("2001:db8::100")
)

const dcGUEPort = 6080

var (
	dcSrcMAC = net.HardwareAddr{0x02, 0x18, 0, 0, 0, 1}
	dcDstMAC = net.HardwareAddr{0x02, 0x18, 0, 0, 0, 11}
)

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func dcIP(src, dst netip.Addr, p layers.IPProtocol) gopacket.SerializableLayer {
	if src.Is4() {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 7, Flags: layers.IPv4DontFragment, Protocol: p,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	}
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: p, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// inner is a client's UDP datagram or TCP SYN to the VIP, from IP header on.
func inner(tb testing.TB, client, vip netip.Addr, tcp bool) []byte {
	tb.Helper()
	if tcp {
		ip := dcIP(client, vip, layers.IPProtocolTCP)
		th := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1, SYN: true, Window: 64240}
		th.SetNetworkLayerForChecksum(ip.(gopacket.NetworkLayer))
		return serialize(tb, ip, th)
	}
	ip := dcIP(client, vip, layers.IPProtocolUDP)
	uh := &layers.UDP{SrcPort: 40000, DstPort: 8053}
	uh.SetNetworkLayerForChecksum(ip.(gopacket.NetworkLayer))
	return serialize(tb, ip, uh, gopacket.Payload("who"))
}

func ethType(a netip.Addr) layers.EthernetType {
	if a.Is4() {
		return layers.EthernetTypeIPv4
	}
	return layers.EthernetTypeIPv6
}

func ipProto(a netip.Addr) layers.IPProtocol {
	if a.Is4() {
		return layers.IPProtocolIPv4
	}
	return layers.IPProtocolIPv6
}

// encap frames in: the director (outer src) tunnels in to dst.
func encap(tb testing.TB, dir, dst netip.Addr, in []byte) []byte {
	tb.Helper()
	v := netip.AddrFrom4([4]byte{})
	if len(in) > 0 && in[0]>>4 == 6 {
		v = netip.IPv6Unspecified()
	}
	return serialize(tb, &layers.Ethernet{SrcMAC: dcSrcMAC, DstMAC: dcDstMAC, EthernetType: ethType(dir)},
		dcIP(dir, dst, ipProto(v)), gopacket.Payload(in))
}

// gueEncap frames in in UDP to the GUE port (GUE variant 1).
func gueEncap(tb testing.TB, dir, dst netip.Addr, port uint16, in []byte) []byte {
	tb.Helper()
	ip := dcIP(dir, dst, layers.IPProtocolUDP)
	uh := &layers.UDP{SrcPort: 33333, DstPort: layers.UDPPort(port)}
	uh.SetNetworkLayerForChecksum(ip.(gopacket.NetworkLayer))
	return serialize(tb, &layers.Ethernet{SrcMAC: dcSrcMAC, DstMAC: dcDstMAC, EthernetType: ethType(dir)},
		ip, uh, gopacket.Payload(in))
}

// greEncap frames in in GRE with the given flags (C, K, S add their
// 4-byte fields) and payload type.
func greEncap(tb testing.TB, dir, dst netip.Addr, flags, proto uint16, in []byte) []byte {
	tb.Helper()
	g := []byte{byte(flags >> 8), byte(flags), byte(proto >> 8), byte(proto)}
	for _, bit := range []uint16{0x8000, 0x2000, 0x1000} { // C, K, S: in this order (RFC 2890)
		if flags&bit != 0 {
			g = append(g, 0xaa, 0xbb, 0xcc, 0xdd) // checksum is not verified
		}
	}
	return serialize(tb, &layers.Ethernet{SrcMAC: dcSrcMAC, DstMAC: dcDstMAC, EthernetType: ethType(dir)},
		dcIP(dir, dst, layers.IPProtocolGRE), gopacket.Payload(append(g, in...)))
}

// decapped is what the host stack must get: the frame's Ethernet
// addresses, the inner packet's type, and the inner packet.
func decapped(tb testing.TB, in []byte) []byte {
	tb.Helper()
	t := layers.EthernetTypeIPv4
	if in[0]>>4 == 6 {
		t = layers.EthernetTypeIPv6
	}
	// By hand: gopacket would pad a short frame to 60 bytes, and the
	// program only ever shortens a frame.
	b := append(append(append([]byte(nil), dcDstMAC...), dcSrcMAC...), byte(t>>8), byte(t))
	return append(b, in...)
}

func loadDecap(tb testing.TB) *bpf.Decap {
	tb.Helper()
	d, err := bpf.LoadDecap()
	skipIfNotPermitted(tb, err)
	tb.Cleanup(func() {
		if err := d.Close(); err != nil {
			tb.Error(err)
		}
	})
	for _, a := range []netip.Addr{dcLocal4, dcLocal6} {
		if err := d.AddLocal(a); err != nil {
			tb.Fatal(err)
		}
	}
	if err := d.SetGUEPort(dcGUEPort); err != nil {
		tb.Fatal(err)
	}
	return d
}

// TestDecapGolden runs golden frames through the decapsulation program
// with BPF_PROG_RUN: each must come out as want (nil: unchanged) with
// verdict and exactly one count of reason.
func TestDecapGolden(t *testing.T) {
	d := loadDecap(t)
	udp4 := inner(t, dcClient4, dcVIP4, false)
	syn4 := inner(t, dcClient4, dcVIP4, true)
	udp6 := inner(t, dcClient6, dcVIP6, false)
	syn6 := inner(t, dcClient6, dcVIP6, true)
	ipip := encap(t, dcDir4, dcLocal4, udp4)

	// A frame with one 802.1Q tag: IPIP inside VLAN 10.
	vlanIPIP := serialize(t, &layers.Ethernet{SrcMAC: dcSrcMAC, DstMAC: dcDstMAC, EthernetType: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeIPv4},
		dcIP(dcDir4, dcLocal4, layers.IPProtocolIPv4), gopacket.Payload(udp4))
	vlanWant := append(append(append([]byte(nil), dcDstMAC...), dcSrcMAC...), 0x81, 0x00, 0x00, 10, 0x08, 0x00)
	vlanWant = append(vlanWant, udp4...)

	// ip6ip6 with the Tunnel Encapsulation Limit destination option that
	// Linux's ip6_tunnel adds (RFC 2473 section 5.1): 8 bytes, next header 41.
	encapLimit := serialize(t,
		&layers.Ethernet{SrcMAC: dcSrcMAC, DstMAC: dcDstMAC, EthernetType: layers.EthernetTypeIPv6},
		&layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Destination,
			SrcIP: dcDir6.AsSlice(), DstIP: dcLocal6.AsSlice()},
		gopacket.Payload(append([]byte{41, 0, 4, 1, 4, 1, 0, 0}, udp6...)))

	// An outer IPv4 fragment of an IPIP packet (MF set).
	frag := encap(t, dcDir4, dcLocal4, udp4)
	frag[14+6] |= 0x20

	// IPIP whose inner header says IPv6.
	badInner := encap(t, dcDir4, dcLocal4, udp4)
	badInner[14+20] = 0x65

	// IPIP with an inner IPv4 total length beyond the frame.
	longInner := encap(t, dcDir4, dcLocal4, udp4)
	longInner[14+20+2], longInner[14+20+3] = 0x05, 0xdc

	cases := []struct {
		name    string
		in      []byte
		want    []byte // nil: the frame must come out unchanged
		verdict uint32
		reason  bpf.DecapReason
	}{
		// 198.18.0.1 > 198.18.0.11: 198.18.1.2.40000 > 198.18.0.100.8053: UDP, length 3 (ipip-proto-4)
		{"ipip udp", ipip, decapped(t, udp4), xdpPass, bpf.Decap4in4},
		// 198.18.0.1 > 198.18.0.11: 198.18.1.2.40000 > 198.18.0.100.80: Flags [S] (ipip-proto-4)
		{"ipip syn", encap(t, dcDir4, dcLocal4, syn4), decapped(t, syn4), xdpPass, bpf.Decap4in4},
		// 198.18.0.1 > 198.18.0.11: IP6 2001:db8:1::2.40000 > 2001:db8::100.8053: UDP (6in4)
		{"6in4", encap(t, dcDir4, dcLocal4, udp6), decapped(t, udp6), xdpPass, bpf.Decap6in4},
		// 2001:db8::1 > 2001:db8::11: IP6 2001:db8:1::2.40000 > 2001:db8::100.80: Flags [S] (ip6ip6)
		{"ip6ip6", encap(t, dcDir6, dcLocal6, syn6), decapped(t, syn6), xdpPass, bpf.Decap6in6},
		// 2001:db8::1 > 2001:db8::11: DSTOPT IP6 2001:db8:1::2.40000 > 2001:db8::100.8053: UDP
		{"ip6ip6 encap limit", encapLimit, decapped(t, udp6), xdpPass, bpf.Decap6in6},
		// 2001:db8::1 > 2001:db8::11: 198.18.1.2.40000 > 198.18.0.100.8053: UDP (4in6)
		{"4in6", encap(t, dcDir6, dcLocal6, udp4), decapped(t, udp4), xdpPass, bpf.Decap4in6},
		// 198.18.0.1.33333 > 198.18.0.11.6080: UDP, 198.18.1.2.40000 > 198.18.0.100.80: Flags [S]
		{"gue4 syn", gueEncap(t, dcDir4, dcLocal4, dcGUEPort, syn4), decapped(t, syn4), xdpPass, bpf.DecapGUE},
		// 2001:db8::1.33333 > 2001:db8::11.6080: UDP, IP6 2001:db8:1::2.40000 > 2001:db8::100.8053
		{"gue6 udp6", gueEncap(t, dcDir6, dcLocal6, dcGUEPort, udp6), decapped(t, udp6), xdpPass, bpf.DecapGUE},
		// 198.18.0.1.33333 > 198.18.0.11.6080: UDP, IP6 ... (GUE mixed family)
		{"gue4 udp6", gueEncap(t, dcDir4, dcLocal4, dcGUEPort, udp6), decapped(t, udp6), xdpPass, bpf.DecapGUE},
		// GUE variant 0 (a GUE header: version 0, Hlen 0, proto 4 or 41), as
		// --tun-type gue sends it; with one word of options; a control message.
		{"gue0 syn4", gueEncap(t, dcDir4, dcLocal4, dcGUEPort, append([]byte{0, 4, 0, 0}, syn4...)), decapped(t, syn4), xdpPass, bpf.DecapGUE},
		{"gue0 udp6 in v6", gueEncap(t, dcDir6, dcLocal6, dcGUEPort, append([]byte{0, 41, 0, 0}, udp6...)), decapped(t, udp6), xdpPass, bpf.DecapGUE},
		{"gue0 option word", gueEncap(t, dcDir4, dcLocal4, dcGUEPort, append([]byte{1, 4, 0, 0, 9, 9, 9, 9}, udp4...)), decapped(t, udp4), xdpPass, bpf.DecapGUE},
		{"gue0 wrong proto", gueEncap(t, dcDir4, dcLocal4, dcGUEPort, append([]byte{0, 41, 0, 0}, udp4...)), nil, xdpDrop, bpf.DecapDropInner},
		{"gue0 control", gueEncap(t, dcDir4, dcLocal4, dcGUEPort, append([]byte{0x20, 0, 0, 0}, udp4...)), nil, xdpPass, bpf.DecapPassNotTunnel},
		{"vlan ipip", vlanIPIP, vlanWant, xdpPass, bpf.Decap4in4},
		// 198.18.0.1 > 198.18.0.11: GREv0, proto IPv4, 198.18.1.2.40000 > 198.18.0.100.80: Flags [S]
		{"gre4", greEncap(t, dcDir4, dcLocal4, 0, 0x0800, syn4), decapped(t, syn4), xdpPass, bpf.DecapGRE},
		// 198.18.0.1 > 198.18.0.11: GREv0, csum, proto IPv6, IP6 ... UDP (ipvsadm --tun-csum)
		{"gre4 csum 6", greEncap(t, dcDir4, dcLocal4, 0x8000, 0x86dd, udp6), decapped(t, udp6), xdpPass, bpf.DecapGRE},
		// 2001:db8::1 > 2001:db8::11: GREv0, key, seq, proto IPv6, IP6 ... Flags [S]
		{"gre6 key seq", greEncap(t, dcDir6, dcLocal6, 0x3000, 0x86dd, syn6), decapped(t, syn6), xdpPass, bpf.DecapGRE},
		// 2001:db8::1 > 2001:db8::11: GREv0, csum, key, seq, proto IPv4, ... UDP
		{"gre6 all fields 4", greEncap(t, dcDir6, dcLocal6, 0xb000, 0x0800, udp4), decapped(t, udp4), xdpPass, bpf.DecapGRE},
		{"gre pptp v1", greEncap(t, dcDir4, dcLocal4, 0x2001, 0x880b, udp4), nil, xdpPass, bpf.DecapPassNotTunnel},
		{"gre ethernet", greEncap(t, dcDir4, dcLocal4, 0, 0x6558, udp4), nil, xdpPass, bpf.DecapPassNotTunnel},
		{"gre routing bit", greEncap(t, dcDir4, dcLocal4, 0x4000, 0x0800, udp4), nil, xdpPass, bpf.DecapPassNotTunnel},
		{"gre not local", greEncap(t, dcDir4, dcOther4, 0, 0x0800, udp4), nil, xdpPass, bpf.DecapPassNotLocal},
		{"gre truncated", serialize(t, &layers.Ethernet{SrcMAC: dcSrcMAC, DstMAC: dcDstMAC, EthernetType: layers.EthernetTypeIPv4},
			dcIP(dcDir4, dcLocal4, layers.IPProtocolGRE), gopacket.Payload([]byte{0, 0})), nil, xdpPass, bpf.DecapPassMalformed},
		{"gue udp truncated", serialize(t, &layers.Ethernet{SrcMAC: dcSrcMAC, DstMAC: dcDstMAC, EthernetType: layers.EthernetTypeIPv4},
			dcIP(dcDir4, dcLocal4, layers.IPProtocolUDP), gopacket.Payload([]byte{0x82, 0x5a, 0x17, 0xc0})), nil, xdpPass, bpf.DecapPassMalformed},
		{"ip6 dstopts beyond payload", serialize(t, &layers.Ethernet{SrcMAC: dcSrcMAC, DstMAC: dcDstMAC, EthernetType: layers.EthernetTypeIPv6},
			&layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Destination, SrcIP: dcDir6.AsSlice(), DstIP: dcLocal6.AsSlice()},
			gopacket.Payload([]byte{41, 0, 1, 0})), nil, xdpPass, bpf.DecapPassMalformed},
		{"gre inner wrong version", greEncap(t, dcDir4, dcLocal4, 0, 0x0800, udp6), nil, xdpDrop, bpf.DecapDropInner},

		// Not for us: passed untouched.
		{"ipip not local", encap(t, dcDir4, dcOther4, udp4), nil, xdpPass, bpf.DecapPassNotLocal},
		{"ip6ip6 not local", encap(t, dcDir6, dcOther6, syn6), nil, xdpPass, bpf.DecapPassNotLocal},
		{"plain udp to us", serialize(t, &layers.Ethernet{SrcMAC: dcSrcMAC, DstMAC: dcDstMAC, EthernetType: layers.EthernetTypeIPv4},
			gopacket.Payload(udp4)), nil, xdpPass, bpf.DecapPassNotTunnel},
		{"udp other port", gueEncap(t, dcDir4, dcLocal4, 53, syn4), nil, xdpPass, bpf.DecapPassNotTunnel},
		{"arp", serialize(t, &layers.Ethernet{SrcMAC: dcSrcMAC, DstMAC: dcDstMAC, EthernetType: layers.EthernetTypeARP},
			&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
				Operation: layers.ARPRequest, SourceHwAddress: dcSrcMAC, SourceProtAddress: dcDir4.AsSlice(),
				DstHwAddress: make([]byte, 6), DstProtAddress: dcLocal4.AsSlice()}), nil, xdpPass, bpf.DecapPassNotIP},
		{"outer fragment", frag, nil, xdpPass, bpf.DecapPassFragment},

		// Truncated or inconsistent.
		{"ethernet header only", ipip[:14], nil, xdpPass, bpf.DecapPassMalformed},
		{"truncated outer ipv4", ipip[:14+12], nil, xdpPass, bpf.DecapPassMalformed},
		{"outer length beyond frame", ipip[:len(ipip)-4], nil, xdpPass, bpf.DecapPassMalformed},
		{"truncated outer ipv6", encap(t, dcDir6, dcLocal6, syn6)[:14+30], nil, xdpPass, bpf.DecapPassMalformed},
		{"inner version wrong", badInner, nil, xdpDrop, bpf.DecapDropInner},
		{"inner length beyond frame", longInner, nil, xdpDrop, bpf.DecapDropInner},
		{"inner missing", encap(t, dcDir4, dcLocal4, nil), nil, xdpDrop, bpf.DecapDropInner},
		{"gue inner garbage", gueEncap(t, dcDir4, dcLocal4, dcGUEPort, []byte{0, 1, 2, 3}), nil, xdpDrop, bpf.DecapDropInner},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, err := d.Counters()
			if err != nil {
				t.Fatal(err)
			}
			out := make([]byte, len(c.in)+256)
			opts := &ebpf.RunOptions{Data: c.in, DataOut: out}
			verdict, err := d.Program().Run(opts)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if verdict != c.verdict {
				t.Errorf("verdict = %d, want %d", verdict, c.verdict)
			}
			got := opts.DataOut
			want := c.want
			if want == nil {
				want = c.in
			}
			if verdict != xdpDrop && !bytes.Equal(got, want) {
				t.Errorf("frame out:\n%x\nwant:\n%x", got, want)
			}
			if c.want != nil {
				// The stack must parse what comes out: decode it and
				// check the inner checksums survived.
				p := gopacket.NewPacket(got, layers.LayerTypeEthernet, gopacket.Default)
				if el := p.ErrorLayer(); el != nil {
					t.Errorf("decode output: %v", el.Error())
				}
				if p.TransportLayer() == nil {
					t.Errorf("output has no transport layer: %v", p)
				}
			}
			after, err := d.Counters()
			if err != nil {
				t.Fatal(err)
			}
			for r := range bpf.DecapReason(bpf.NumDecapReasons) {
				want := before[r]
				if r == c.reason {
					want++
				}
				if after[r] != want {
					t.Errorf("counter %v = %d, want %d", r, after[r]-before[r], want-before[r])
				}
			}
		})
	}
}

func TestDecapLocals(t *testing.T) {
	d := loadDecap(t)
	for _, bad := range []netip.Addr{{}, netip.MustParseAddr("::ffff:198.18.0.1"), netip.MustParseAddr("fe80::1%eth0")} {
		if err := d.AddLocal(bad); err == nil {
			t.Errorf("AddLocal(%v) = nil, want an error", bad)
		}
	}
	got, err := d.Locals()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Errorf("Locals() = %v, want %v and %v", got, dcLocal4, dcLocal6)
	}
	if err := d.DeleteLocal(dcLocal4); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteLocal(dcLocal4); err == nil {
		t.Errorf("second DeleteLocal(%v) = nil, want an error", dcLocal4)
	}
	// The deleted address is no longer decapsulated.
	udp4 := inner(t, dcClient4, dcVIP4, false)
	in := encap(t, dcDir4, dcLocal4, udp4)
	verdict, err := d.Program().Run(&ebpf.RunOptions{Data: in})
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if verdict != xdpPass || c[bpf.DecapPassNotLocal] != 1 || c.Decapsulated() != 0 {
		t.Errorf("after DeleteLocal: verdict %d, counters %v; want pass, one pass_not_local", verdict, c)
	}
	// GUE off: UDP to the old GUE port is not a tunnel.
	if err := d.SetGUEPort(0); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Program().Run(&ebpf.RunOptions{Data: gueEncap(t, dcDir6, dcLocal6, dcGUEPort, udp4)}); err != nil {
		t.Fatal(err)
	}
	if c, _ := d.Counters(); c[bpf.DecapPassNotTunnel] != 1 {
		t.Errorf("GUE off: pass_not_tunnel = %d, want 1", c[bpf.DecapPassNotTunnel])
	}
}

// FuzzDecap runs arbitrary frames through the decapsulation program. It
// must never abort, and a frame is either passed unchanged, dropped, or
// decapsulated: the Ethernet addresses kept and the rest a strict suffix
// of the input (only outer headers removed), with one decap counter more.
func FuzzDecap(f *testing.F) {
	udp4 := inner(f, dcClient4, dcVIP4, false)
	udp6 := inner(f, dcClient6, dcVIP6, false)
	f.Add(encap(f, dcDir4, dcLocal4, udp4))
	f.Add(encap(f, dcDir6, dcLocal6, udp6))
	f.Add(encap(f, dcDir4, dcLocal4, udp6))
	f.Add(encap(f, dcDir6, dcLocal6, udp4))
	f.Add(gueEncap(f, dcDir4, dcLocal4, dcGUEPort, udp4))
	f.Add(gueEncap(f, dcDir6, dcLocal6, dcGUEPort, udp6))
	f.Add(encap(f, dcDir4, dcOther4, udp4))
	f.Add(greEncap(f, dcDir4, dcLocal4, 0xb000, 0x0800, udp4))
	f.Add(greEncap(f, dcDir6, dcLocal6, 0x8000, 0x86dd, udp6))
	d := loadDecap(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 || len(in) > 4096 {
			return // BPF_PROG_RUN needs an Ethernet header; XDP frames fit a page
		}
		before, err := d.Counters()
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, len(in)+256)
		opts := &ebpf.RunOptions{Data: in, DataOut: out}
		verdict, err := d.Program().Run(opts)
		if err != nil {
			t.Fatal(err)
		}
		after, err := d.Counters()
		if err != nil {
			t.Fatal(err)
		}
		decapped := after.Decapsulated() - before.Decapsulated()
		got := opts.DataOut
		switch {
		case verdict == xdpDrop:
			if decapped != 0 {
				t.Errorf("dropped frame counted as decapsulated")
			}
		case verdict != xdpPass:
			t.Fatalf("verdict %d, want pass or drop", verdict)
		case decapped == 0:
			if !bytes.Equal(got, in) {
				t.Errorf("passed frame changed without a decap count:\n%x\nto\n%x", in, got)
			}
		default:
			l2 := 14 // the Ethernet type (the VLAN's inner type) changes, not the rest
			if in[12] == 0x81 && in[13] == 0x00 || in[12] == 0x88 && in[13] == 0xa8 {
				l2 = 18
			}
			if decapped != 1 || len(got) >= len(in) || len(got) < l2 ||
				!bytes.Equal(got[:l2-2], in[:l2-2]) || !bytes.HasSuffix(in, got[l2:]) {
				t.Errorf("decapsulated frame is not the input minus outer headers:\n%x\nto\n%x", in, got)
			}
		}
	})
}
