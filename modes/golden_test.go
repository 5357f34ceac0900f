package modes

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/packet"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
)

// The golden in → out frames of every forwarding method, testFamily and
// direction, after Katran's KatranBaseTestFixtures.h: each case names the
// plan, the input frame, the expected output frame (built independently
// with gopacket, lengths and checksums computed from scratch) and the
// verdict. An OK output must equal the expected frame byte for byte, so
// every incrementally updated checksum equals a full recomputation; it is
// also decoded with gopacket and every checksum in it verified with a
// plain RFC 1071 sum. A frame with any other verdict must be left as it
// was, unless the case answers it (then), e.g. with ICMP too big.

const (
	lport    = 5000 // FULLNAT local port
	gueport  = 6080 // --tun-port
	chunk    = 2048 // AF_XDP chunk size
	headroom = 256  // XDP_PACKET_HEADROOM
	// noHeadroom places the frame at the start of its chunk.
	noHeadroom = -1
)

type testFamily struct {
	name                                  string
	client, vip, real, laddr, director, x netip.Addr // x: the other testFamily's director address
	xreal                                 netip.Addr // the other testFamily's real server
}

var families = []testFamily{
	{"v4", pt.Client4, pt.VIP4, pt.Real4, pt.Laddr4, pt.Director4, pt.Director6, pt.Real6},
	{"v6", pt.Client6, pt.VIP6, pt.Real6, pt.Laddr6, pt.Director6, pt.Director4, pt.Real4},
}

func mac(h net.HardwareAddr) [6]byte { return [6]byte(h) }

// toReal is the Ethernet of a frame from the director to a real server,
// toClient of one to the router towards clients.
var (
	fromClient = pt.Packet{SrcMAC: pt.RouterMAC, DstMAC: pt.DirectorMAC}
	fromReal   = pt.Packet{SrcMAC: pt.RealMAC, DstMAC: pt.DirectorMAC}
)

// plan returns fam's plan for method m, next hop dst.
func (fam testFamily) plan(m Method, dst net.HardwareAddr) Plan {
	return Plan{
		Method: m, MTU: 1500, DstMAC: mac(dst), SrcMAC: mac(pt.DirectorMAC),
		Client: fam.client.As16(), ClientPort: pt.ClientPort,
		VIP: fam.vip.As16(), VPort: pt.HTTP,
		RS: fam.real.As16(), RPort: pt.RealPort,
		Laddr: fam.laddr.As16(), Lport: lport,
	}
}

// tun returns fam's TUN plan to a real server at rs, from director.
func (fam testFamily) tun(encap EncapType, csum bool, rs, director netip.Addr) Plan {
	p := fam.plan(Tunnel, pt.RealMAC)
	p.RS = rs.As16()
	p.Encap = Encap{Type: encap, Src: director.As16(), Port: gueport, Csum: csum}
	return p
}

// syn is the client's SYN to VIP:80 as it reaches the director.
func (fam testFamily) syn() pt.Packet {
	p := fromClient
	p.Src, p.Dst, p.SrcPort, p.DstPort, p.Flags = fam.client, fam.vip, pt.ClientPort, pt.HTTP, packet.TCPFlagSYN
	return p
}

// synAck is a real server's SYN-ACK to src:sport, as it reaches the director.
func (fam testFamily) synAck(dst netip.Addr, dport uint16) pt.Packet {
	p := fromReal
	p.Src, p.Dst, p.SrcPort, p.DstPort, p.Flags = fam.real, dst, pt.RealPort, dport, packet.TCPFlagSYN|packet.TCPFlagACK
	return p
}

// fwd returns p as the director forwards it to next hop dst: TTL
// decremented, source MAC the director's.
func fwd(p pt.Packet, dst net.HardwareAddr) pt.Packet {
	p.SrcMAC, p.DstMAC = pt.DirectorMAC, dst
	if p.TTL == 0 {
		p.TTL = 64
	}
	p.TTL--
	return p
}

func frame(p pt.Packet) func(*packet.Meta) []byte {
	return func(*packet.Meta) []byte { return p.Frame() }
}

type golden struct {
	name    string // testdata/golden.tcpdump has tcpdump's reading of its input and output
	plan    Plan
	dir     Dir
	in      pt.Packet
	want    func(m *packet.Meta) []byte // m is Parse's of the input
	room    int                         // headroom: 0 for XDP's 256, noHeadroom for none
	verdict Verdict
	then    func(f *Frame, m *packet.Meta, p *Plan) Verdict // answers a verdict other than OK
}

func goldenCases() []golden {
	var cs []golden
	for _, fam := range families {
		syn, v := fam.syn(), fam.name+" "
		natIn := syn
		natIn.Dst, natIn.DstPort = fam.real, pt.RealPort
		fnIn := natIn
		fnIn.Src, fnIn.SrcPort = fam.laddr, lport
		natOut := fam.synAck(fam.client, pt.ClientPort)
		natOutWant := natOut
		natOutWant.Src, natOutWant.SrcPort = fam.vip, pt.HTTP
		fnOut := fam.synAck(fam.laddr, lport)
		udp := syn
		udp.UDP, udp.Flags, udp.DstPort, udp.Payload = true, 0, pt.DNS, pt.DNSQuery
		udpWant := udp
		udpWant.Dst, udpWant.DstPort = fam.real, pt.DNS
		udpPlan := fam.plan(Masq, pt.RealMAC)
		udpPlan.RPort = pt.DNS
		big := syn
		big.Flags, big.Payload = packet.TCPFlagACK, make([]byte, 1500-20-20-20*int(fam.vip.BitLen()/128))
		ttl1 := syn
		ttl1.TTL = 1

		cs = append(cs, []golden{
			{name: v + "dr in", plan: fam.plan(Route, pt.RealMAC), in: syn, want: frame(fwd(syn, pt.RealMAC))},
			{name: v + "dr out: not seen", plan: fam.plan(Route, pt.RealMAC), dir: Out, in: natOut, verdict: Unsupported},
			{name: v + "dr in, no headroom", plan: fam.plan(Route, pt.RealMAC), in: syn, want: frame(fwd(syn, pt.RealMAC)), room: noHeadroom},
			{name: v + "nat in, port mapping 80 → 8080", plan: fam.plan(Masq, pt.RealMAC), in: syn, want: frame(fwd(natIn, pt.RealMAC))},
			{name: v + "nat out", plan: fam.plan(Masq, pt.RouterMAC), dir: Out, in: natOut, want: frame(fwd(natOutWant, pt.RouterMAC))},
			{name: v + "nat in, udp", plan: udpPlan, in: udp, want: frame(fwd(udpWant, pt.RealMAC))},
			{name: v + "nat in, no headroom", plan: fam.plan(Masq, pt.RealMAC), in: syn, want: frame(fwd(natIn, pt.RealMAC)), room: noHeadroom},
			{name: v + "nat in, real server of the other testFamily", plan: func() Plan { p := fam.plan(Masq, pt.RealMAC); p.RS = fam.xreal.As16(); return p }(), in: syn, verdict: Unsupported},
			{name: v + "fullnat in", plan: fam.plan(FullNAT, pt.RealMAC), in: syn, want: frame(fwd(fnIn, pt.RealMAC))},
			{name: v + "fullnat out", plan: fam.plan(FullNAT, pt.RouterMAC), dir: Out, in: fnOut, want: frame(fwd(natOutWant, pt.RouterMAC))},
			{name: v + "local: not forwarded", plan: fam.plan(Local, pt.RealMAC), in: syn, verdict: Unsupported},
			{name: v + "tun out: not seen", plan: fam.tun(IPIP, false, fam.real, fam.director), dir: Out, in: natOut, verdict: Unsupported},
			{name: v + "ttl 1: time exceeded", plan: fam.plan(Masq, pt.RealMAC), in: ttl1, verdict: TTLExceeded,
				then: func(f *Frame, m *packet.Meta, p *Plan) Verdict {
					d := fam.director.As16()
					return ReplyTimeExceeded(f, m, &d)
				},
				want: func(*packet.Meta) []byte { return icmpReply(ttl1, fam.director, 11, 0, 0) }},
			{name: v + "nat in, mtu 1280 < 1500: too big", plan: func() Plan { p := fam.plan(Masq, pt.RealMAC); p.MTU = 1280; return p }(), in: big, verdict: TooBig,
				then: func(f *Frame, m *packet.Meta, p *Plan) Verdict { return ReplyTooBig(f, m, p.ReportMTU(), &m.Dst) },
				want: func(*packet.Meta) []byte { return icmpReply(big, fam.vip, 3, 4, 1280) }},
		}...)

		// TUN: every encapsulation, to a real server of each testFamily.
		for _, outer := range []struct {
			name           string
			real, director netip.Addr
		}{{fam.name, fam.real, fam.director}, {map[string]string{"v4": "v6", "v6": "v4"}[fam.name], fam.xreal, fam.x}} {
			for _, e := range []struct {
				encap EncapType
				csum  bool
				name  string
			}{{IPIP, false, "ipip"}, {GUE, false, "gue"}, {GUE, true, "gue csum"}, {GRE, false, "gre"}, {GRE, true, "gre csum"}} {
				p := fam.tun(e.encap, e.csum, outer.real, outer.director)
				cs = append(cs, golden{
					name: v + "tun " + e.name + " in " + outer.name, plan: p, in: syn,
					want: func(m *packet.Meta) []byte { return tunFrame(syn, p, m) },
				})
			}
		}
		tunBig := fam.tun(IPIP, false, fam.real, fam.director)
		noDF := big
		noDF.NoDF = true
		cs = append(cs, []golden{
			{name: v + "tun, no headroom", plan: fam.tun(IPIP, false, fam.real, fam.director), in: syn, room: noHeadroom, verdict: NoRoom},
			{name: v + "tun, 19 bytes of headroom", plan: fam.tun(IPIP, false, fam.real, fam.director), in: syn, room: 19, verdict: NoRoom},
			{name: v + "tun, 1500 bytes on a 1500 path: too big", plan: tunBig, in: big, verdict: TooBig,
				then: func(f *Frame, m *packet.Meta, p *Plan) Verdict { return ReplyTooBig(f, m, p.ReportMTU(), &m.Dst) },
				want: func(*packet.Meta) []byte { return icmpReply(big, fam.vip, 3, 4, 1500-tunBig.Overhead()) }},
		}...)
		if fam.name == "v4" {
			udp0 := udp
			udp0.NoUDPChecksum = true
			udp0Want := udpWant
			udp0Want.NoUDPChecksum = true
			opts := syn
			opts.Options = true
			optsWant := natIn
			optsWant.Options = true
			vlan := syn
			vlan.VLAN = 100
			vlanWant := natIn
			vlanWant.VLAN = 100
			cs = append(cs, []golden{
				{name: v + "nat in, udp checksum 0 stays 0", plan: udpPlan, in: udp0, want: frame(fwd(udp0Want, pt.RealMAC))},
				{name: v + "nat in, ip options", plan: fam.plan(Masq, pt.RealMAC), in: opts, want: frame(fwd(optsWant, pt.RealMAC))},
				{name: v + "fullnat in, ip options", plan: fam.plan(FullNAT, pt.RealMAC), in: opts,
					want: func(*packet.Meta) []byte { w := fnIn; w.Options = true; return fwd(w, pt.RealMAC).Frame() }},
				{name: v + "tun in, ip options", plan: fam.tun(IPIP, false, fam.real, fam.director), in: opts,
					want: func(m *packet.Meta) []byte { return tunFrame(opts, fam.tun(IPIP, false, fam.real, fam.director), m) }},
				{name: v + "nat in, vlan 100", plan: fam.plan(Masq, pt.RealMAC), in: vlan, want: frame(fwd(vlanWant, pt.RealMAC))},
				{name: v + "tun in, vlan 100", plan: fam.tun(GUE, true, fam.real, fam.director), in: vlan,
					want: func(m *packet.Meta) []byte { return tunFrame(vlan, fam.tun(GUE, true, fam.real, fam.director), m) }},
				{name: v + "tun, 1500 bytes, DF clear: would need fragmenting", plan: tunBig, in: noDF, verdict: NeedFrag},
				{name: v + "dr, ecn ce, tos kept", plan: fam.plan(Route, pt.RealMAC), in: withTOS(syn, 0xbb), want: frame(fwd(withTOS(syn, 0xbb), pt.RealMAC))},
			}...)
		}
		cs = append(cs, golden{name: v + "tun, dscp and ecn ce: outer ect(0)", plan: fam.tun(IPIP, false, fam.real, fam.director), in: withTOS(syn, 0xbb),
			want: func(m *packet.Meta) []byte {
				return tunFrame(withTOS(syn, 0xbb), fam.tun(IPIP, false, fam.real, fam.director), m)
			}})
	}
	return cs
}

func withTOS(p pt.Packet, tos uint8) pt.Packet {
	p.TOS = tos
	return p
}

// tunFrame is in as tunIn sends it on plan p: the inner packet forwarded
// (TTL decremented) inside the outer headers doc.go describes.
func tunFrame(in pt.Packet, p Plan, m *packet.Meta) []byte {
	inner := fwd(in, pt.RealMAC)
	src, dst := netip.AddrFrom16(p.Encap.Src).Unmap(), netip.AddrFrom16(p.RS).Unmap()
	t := &pt.Tunnel{Src: src, Dst: dst, Encap: p.Encap.Type.String(), Port: p.Encap.Port, Csum: p.Encap.Csum,
		TTL: inner.TTL, TOS: in.TOS&^3 | 2, DF: in.Src.Is4() && !in.NoDF}
	if in.TOS&3 != 3 {
		t.TOS = in.TOS
	}
	if p.Encap.Type == GUE {
		t.SrcPort = gueSrcPort(m)
	}
	if in.Src.Is4() {
		t.ID = 0x1234
	} else if src.Is4() {
		t.ID = innerID6(inner.IP())
	}
	inner.Tunnel = t
	return inner.Frame()
}

// icmpReply is the ICMP error (type, code, MTU) about in, from src to
// in's source, as ReplyTooBig and ReplyTimeExceeded build it: MACs
// swapped, quoting in's IP header and 8 bytes (IPv4) or up to 1232 bytes
// (IPv6).
func icmpReply(in pt.Packet, src netip.Addr, typ, code uint8, mtu int) []byte {
	q := in.IP()
	eth := pt.Ether(in.DstMAC, in.SrcMAC, layers.EthernetTypeIPv4)
	if in.Src.Is4() {
		q = q[:int(q[0]&0xf)*4+8]
		ip := pt.IPv4(src, in.Src, layers.IPProtocolICMPv4)
		ip.TOS, ip.Id, ip.Flags = 0xc0, 0, 0
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Seq: uint16(mtu)}
		return pt.Build(eth, ip, icmp, gopacket.Payload(q))
	}
	typ, code = 2, 0 // ICMPv6 packet too big
	if mtu == 0 {
		typ = 3 // time exceeded
	}
	q = q[:min(len(q), 1232)]
	eth.EthernetType = layers.EthernetTypeIPv6
	ip := pt.IPv6(src, in.Src, layers.IPProtocolICMPv6)
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
		panic(err)
	}
	body := binary.BigEndian.AppendUint32(nil, uint32(mtu))
	return pt.Build(eth, ip, icmp, gopacket.Payload(append(body, q...)))
}

// place copies frame into a fresh chunk at offset room and parses it.
func place(t testing.TB, frame []byte, room int) (Frame, packet.Meta) {
	t.Helper()
	switch room {
	case 0:
		room = headroom
	case noHeadroom:
		room = 0
	}
	buf := make([]byte, chunk)
	copy(buf[room:], frame)
	f := Frame{Buf: buf, Off: room, Len: len(frame)}
	var m packet.Meta
	if r := packet.Parse(f.Bytes(), &m); r != packet.OK {
		t.Fatalf("Parse(input) = %v, want ok", r)
	}
	return f, m
}

// TestGolden runs the golden cases. With XLB_GOLDEN_PCAP=dir it also
// writes each case's input and output to dir/NNN.pcap, and the case names
// to dir/names, from which testdata/golden.tcpdump is made:
//
//	XLB_GOLDEN_PCAP=/tmp/g go test -run TestGolden ./modes
//	i=0; while read n; do echo "## $n"; tcpdump -nn -e -v -r /tmp/g/$(printf %03d $i).pcap </dev/null; i=$((i+1)); done </tmp/g/names
func TestGolden(t *testing.T) {
	dir := os.Getenv("XLB_GOLDEN_PCAP")
	var names []byte
	if dir != "" {
		defer func() {
			if err := os.WriteFile(dir+"/names", names, 0o644); err != nil {
				t.Error(err)
			}
		}()
	}
	// pcap: the file header (magic, version 2.4, snaplen, Ethernet), then
	// per frame a record header (time, captured and original length).
	var pcap []byte
	write := func(b []byte) {
		if dir != "" {
			pcap = append(pcap, make([]byte, 8)...)
			pcap = binary.LittleEndian.AppendUint32(pcap, uint32(len(b)))
			pcap = binary.LittleEndian.AppendUint32(pcap, uint32(len(b)))
			pcap = append(pcap, b...)
		}
	}
	for i, c := range goldenCases() {
		if dir != "" {
			names = append(names, c.name+"\n"...)
			pcap = binary.LittleEndian.AppendUint32(pcap[:0], 0xa1b2c3d4)
			pcap = append(pcap, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0)
		}
		t.Run(c.name, func(t *testing.T) {
			in := c.in.Frame()
			write(in)
			f, m := place(t, in, c.room)
			m0, f0 := m, f
			p := c.plan
			v := Xmit(&f, &m, &p, c.dir)
			if v != c.verdict {
				t.Fatalf("Xmit(%v %v) = %v, want %v", c.plan.Method, c.dir, v, c.verdict)
			}
			if v != OK {
				if f.Off != f0.Off || f.Len != f0.Len || !bytes.Equal(f.Bytes(), in) {
					t.Fatalf("Xmit returned %v and changed the frame", v)
				}
				if c.then == nil {
					return
				}
				if v := c.then(&f, &m0, &p); v != OK {
					t.Fatalf("reply to %v: %v, want ok", c.verdict, v)
				}
			}
			got := f.Bytes()
			write(got)
			if f.Off < 0 || f.Off+f.Len > chunk {
				t.Fatalf("descriptor %d+%d outside the chunk", f.Off, f.Len)
			}
			want := c.want(&m0)
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from the golden frame\n got: %s\nwant: %s\n got:\n%s\nwant:\n%s",
					hex.EncodeToString(got), hex.EncodeToString(want), dump(got), dump(want))
			}
			verifyFrame(t, got)
		})
		if dir != "" {
			if err := os.WriteFile(fmt.Sprintf("%s/%03d.pcap", dir, i), pcap, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func dump(b []byte) string {
	return gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default).Dump()
}

// refSum is a plain RFC 1071 sum, folded, independent of package packet.
func refSum(s uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return s
}

// pseudo is the pseudo-header sum of an IP header for proto and n bytes.
func pseudo(ip gopacket.NetworkLayer, proto uint8, n int) uint32 {
	s := uint32(proto) + uint32(n)
	switch h := ip.(type) {
	case *layers.IPv4:
		return refSum(refSum(s, h.SrcIP.To4()), h.DstIP.To4())
	case *layers.IPv6:
		return refSum(refSum(s, h.SrcIP), h.DstIP)
	}
	panic("no network layer")
}

// verifyFrame decodes frame with gopacket and verifies every checksum in
// it: IPv4 headers, TCP, UDP (unless 0 over IPv4), ICMP, ICMPv6, GRE, and
// the packet inside GUE.
func verifyFrame(t *testing.T, frame []byte) {
	t.Helper()
	verifyPacket(t, gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default))
}

func verifyPacket(t *testing.T, p gopacket.Packet) {
	t.Helper()
	if e := p.ErrorLayer(); e != nil {
		t.Fatalf("output does not decode: %v\n%s", e.Error(), p.Dump())
	}
	var nl gopacket.NetworkLayer
	for _, l := range p.Layers() {
		switch h := l.(type) {
		case *layers.IPv4:
			if refSum(0, h.Contents) != 0xffff {
				t.Errorf("IPv4 %v > %v: bad header checksum %#04x", h.SrcIP, h.DstIP, h.Checksum)
			}
			if h.Protocol == layers.IPProtocolICMPv4 && refSum(0, h.Payload) != 0xffff {
				t.Errorf("ICMP from %v: bad checksum", h.SrcIP)
			}
			nl = h
		case *layers.IPv6:
			if h.NextHeader == layers.IPProtocolICMPv6 && refSum(pseudo(h, 58, len(h.Payload)), h.Payload) != 0xffff {
				t.Errorf("ICMPv6 from %v: bad checksum", h.SrcIP)
			}
			nl = h
		case *layers.TCP:
			seg := append(append([]byte(nil), h.Contents...), h.Payload...)
			if refSum(pseudo(nl, 6, len(seg)), seg) != 0xffff {
				t.Errorf("TCP %d > %d: bad checksum %#04x", h.SrcPort, h.DstPort, h.Checksum)
			}
		case *layers.UDP:
			seg := append(append([]byte(nil), h.Contents...), h.Payload...)
			_, v4 := nl.(*layers.IPv4)
			// 0 is none computed, allowed over IPv4 and for tunnels (RFC 6935).
			if !(h.Checksum == 0 && (v4 || h.DstPort == gueport)) && refSum(pseudo(nl, 17, len(seg)), seg) != 0xffff {
				t.Errorf("UDP %d > %d: bad checksum %#04x", h.SrcPort, h.DstPort, h.Checksum)
			}
			if h.DstPort == gueport {
				if len(h.Payload) < 4 || h.Payload[0] != 0 {
					t.Fatalf("GUE header %x, want variant 0 without options", h.Payload)
				}
				lt := layers.LayerTypeIPv4
				if h.Payload[1] == 41 {
					lt = layers.LayerTypeIPv6
				}
				verifyPacket(t, gopacket.NewPacket(h.Payload[4:], lt, gopacket.Default))
			}
		case *layers.GRE:
			if h.ChecksumPresent && refSum(0, append(append([]byte(nil), h.Contents...), h.Payload...)) != 0xffff {
				t.Errorf("GRE: bad checksum %#04x", h.Checksum)
			}
		}
	}
}
