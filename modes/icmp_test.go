package modes

import (
	"bytes"
	"encoding/hex"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/packet"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
)

// icmpErr is an ICMP port unreachable (ICMPv6: type 1 code 4) from src to
// dst, TTL ttl, quoting q.
type icmpErr struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.Addr
	ttl            uint8
	q              []byte
}

func (e icmpErr) frame() []byte {
	if e.src.Is4() {
		ip := pt.IPv4(e.src, e.dst, layers.IPProtocolICMPv4)
		ip.TTL = e.ttl
		return pt.Build(pt.Ether(e.srcMAC, e.dstMAC, layers.EthernetTypeIPv4), ip,
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(e.q))
	}
	ip := pt.IPv6(e.src, e.dst, layers.IPProtocolICMPv6)
	ip.HopLimit = e.ttl
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(1, 4)}
	if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
		panic(err)
	}
	return pt.Build(pt.Ether(e.srcMAC, e.dstMAC, layers.EthernetTypeIPv6), ip, icmp, gopacket.Payload(append(make([]byte, 4), e.q...)))
}

// offsets locates e in its frame as the parser will.
func (e icmpErr) offsets() packet.ICMPError {
	hl, v := 20, uint8(4)
	if e.src.Is6() {
		hl, v = 40, 6
	}
	qhl := hl
	if v == 4 {
		qhl = int(e.q[0]&0xf) * 4
	}
	return packet.ICMPError{L3Off: 14, ICMPOff: 14 + hl, InnerL3Off: 14 + hl + 8, InnerL4Off: 14 + hl + 8 + qhl,
		End: 14 + hl + 8 + len(e.q), Version: v, InnerProto: e.q[9-3*int(v/6)]}
}

// quote is the IP packet of p cut to n bytes (0: whole).
func quote(p pt.Packet, n int) []byte {
	b := p.IP()
	if n > 0 {
		b = b[:n]
	}
	return b
}

// TestXmitICMP: ICMP errors about a connection's packets, from either
// side, for every method: the outer and the quoted headers translated as
// IPVS's ip_vs_nat_icmp does, all checksums updated, compared with frames
// built from scratch.
func TestXmitICMP(t *testing.T) {
	type tc struct {
		name      string
		plan      Plan
		dir       Dir
		in, want  icmpErr
		wantFrame func() []byte // when not an icmpErr (TUN)
	}
	var cs []tc
	for _, fam := range families {
		v := fam.name + " "
		hl := 20
		if fam.name == "v6" {
			hl = 40
		}
		// Replies the director sent to the client, as the client's side quotes them.
		replyTCP := pt.Packet{Src: fam.vip, Dst: fam.client, SrcPort: pt.HTTP, DstPort: pt.ClientPort, Flags: packet.TCPFlagACK, Payload: []byte("data"), TTL: 60}
		replyUDP := replyTCP
		replyUDP.UDP, replyUDP.Flags, replyUDP.Payload = true, 0, pt.DNSQuery
		// Packets the director sent to the real server, as its side quotes them.
		toRealNAT := pt.Packet{Src: fam.client, Dst: fam.real, SrcPort: pt.ClientPort, DstPort: pt.RealPort, Flags: packet.TCPFlagACK, TTL: 60}
		toRealFN := toRealNAT
		toRealFN.Src, toRealFN.SrcPort = fam.laddr, lport
		fromClientSide := func(q []byte) icmpErr {
			return icmpErr{pt.RouterMAC, pt.DirectorMAC, fam.client, fam.vip, 64, q}
		}
		fromRealSide := func(dst netip.Addr, q []byte) icmpErr {
			return icmpErr{pt.RealMAC, pt.DirectorMAC, fam.real, dst, 64, q}
		}
		toReal := func(src netip.Addr, q []byte) icmpErr {
			return icmpErr{pt.DirectorMAC, pt.RealMAC, src, fam.real, 63, q}
		}
		toClient := func(q []byte) icmpErr {
			return icmpErr{pt.DirectorMAC, pt.RouterMAC, fam.vip, fam.client, 63, q}
		}
		with := func(p pt.Packet, f func(*pt.Packet)) pt.Packet { f(&p); return p }
		udpPlan := fam.plan(Masq, pt.RealMAC)
		udpPlan.RPort = pt.DNS

		cs = append(cs, []tc{
			{name: v + "nat in, tcp quoted whole", plan: fam.plan(Masq, pt.RealMAC), in: fromClientSide(quote(replyTCP, 0)),
				want: toReal(fam.client, quote(with(replyTCP, func(p *pt.Packet) { p.Src, p.SrcPort = fam.real, pt.RealPort }), 0))},
			{name: v + "nat in, tcp quoted 8 bytes", plan: fam.plan(Masq, pt.RealMAC), in: fromClientSide(quote(replyTCP, hl+8)),
				want: toReal(fam.client, quote(with(replyTCP, func(p *pt.Packet) { p.Src, p.SrcPort = fam.real, pt.RealPort }), hl+8))},
			{name: v + "nat in, tcp quoted 17 bytes (checksum cut)", plan: fam.plan(Masq, pt.RealMAC), in: fromClientSide(quote(replyTCP, hl+17)),
				// The half of the checksum quoted is left as it was.
				want: toReal(fam.client, func() []byte {
					q := quote(with(replyTCP, func(p *pt.Packet) { p.Src, p.SrcPort = fam.real, pt.RealPort }), hl+17)
					q[hl+16] = quote(replyTCP, 0)[hl+16]
					return q
				}())},
			{name: v + "nat in, udp quoted whole", plan: udpPlan, in: fromClientSide(quote(replyUDP, 0)),
				want: toReal(fam.client, quote(with(replyUDP, func(p *pt.Packet) { p.Src, p.SrcPort = fam.real, pt.DNS }), 0))},
			{name: v + "nat out", plan: fam.plan(Masq, pt.RouterMAC), dir: Out, in: fromRealSide(fam.client, quote(toRealNAT, 0)),
				want: toClient(quote(with(toRealNAT, func(p *pt.Packet) { p.Dst, p.DstPort = fam.vip, pt.HTTP }), 0))},
			{name: v + "fullnat in", plan: fam.plan(FullNAT, pt.RealMAC), in: fromClientSide(quote(replyTCP, 0)),
				want: toReal(fam.laddr, quote(with(replyTCP, func(p *pt.Packet) {
					p.Src, p.SrcPort, p.Dst, p.DstPort = fam.real, pt.RealPort, fam.laddr, lport
				}), 0))},
			{name: v + "fullnat out", plan: fam.plan(FullNAT, pt.RouterMAC), dir: Out, in: fromRealSide(fam.laddr, quote(toRealFN, 0)),
				want: toClient(quote(with(toRealFN, func(p *pt.Packet) {
					p.Src, p.SrcPort, p.Dst, p.DstPort = fam.client, pt.ClientPort, fam.vip, pt.HTTP
				}), 0))},
			{name: v + "dr in: forwarded as it is", plan: fam.plan(Route, pt.RealMAC), in: fromClientSide(quote(replyTCP, 0)),
				want: toReal(fam.client, quote(replyTCP, 0))},
		}...)
		// The original destination (the VIP) stays: toReal would rewrite it.
		cs[len(cs)-1].want.dst = fam.vip
		p := fam.tun(IPIP, false, fam.real, fam.director)
		in := fromClientSide(quote(replyTCP, 0))
		cs = append(cs, tc{name: v + "tun in: encapsulated", plan: p, in: in, wantFrame: func() []byte {
			inner := in
			inner.ttl = 63
			ipb := inner.frame()[14:]
			outer := pt.IPv4(fam.director, fam.real, layers.IPProtocolIPv4)
			et := layers.EthernetTypeIPv4
			if fam.name == "v6" {
				return pt.Build(pt.Ether(pt.DirectorMAC, pt.RealMAC, layers.EthernetTypeIPv6),
					func() *layers.IPv6 {
						h := pt.IPv6(fam.director, fam.real, layers.IPProtocolIPv6)
						h.HopLimit = 63
						return h
					}(), gopacket.Payload(ipb))
			}
			outer.TTL, outer.Id = 63, 0x1234
			return pt.Build(pt.Ether(pt.DirectorMAC, pt.RealMAC, et), outer, gopacket.Payload(ipb))
		}})
	}
	for _, c := range cs {
		t.Run(c.name, func(t *testing.T) {
			f, _ := placeICMP(c.in.frame())
			e := c.in.offsets()
			p := c.plan
			if v := XmitICMP(&f, &e, &p, c.dir); v != OK {
				t.Fatalf("XmitICMP = %v, want ok", v)
			}
			want := c.want.frame
			if c.wantFrame != nil {
				want = c.wantFrame
			}
			got, w := f.Bytes(), want()
			if !bytes.Equal(got, w) {
				t.Errorf("output differs from the golden frame\n got: %s\nwant: %s\n got:\n%s\nwant:\n%s",
					hex.EncodeToString(got), hex.EncodeToString(w), dump(got), dump(w))
			}
			verifyFrame(t, got)
		})
	}
}

func placeICMP(frame []byte) (Frame, []byte) {
	buf := make([]byte, chunk)
	copy(buf[headroom:], frame)
	return Frame{Buf: buf, Off: headroom, Len: len(frame)}, buf
}

// TestXmitICMPRefuses: offsets that do not fit, families that do not
// match and methods without a translation change nothing.
func TestXmitICMPRefuses(t *testing.T) {
	fam := families[0]
	replyTCP := pt.Packet{Src: fam.vip, Dst: fam.client, SrcPort: pt.HTTP, DstPort: pt.ClientPort, Flags: packet.TCPFlagACK}
	in := icmpErr{pt.RouterMAC, pt.DirectorMAC, fam.client, fam.vip, 64, quote(replyTCP, 28)}
	good := in.offsets()
	for _, c := range []struct {
		name string
		e    func(*packet.ICMPError)
		p    func(*Plan)
		dir  Dir
		want Verdict
	}{
		{"end past the frame", func(e *packet.ICMPError) { e.End += 100 }, nil, In, Malformed},
		{"quoted l4 cut to 7 bytes", func(e *packet.ICMPError) { e.End = e.InnerL4Off + 7 }, nil, In, Malformed},
		{"inner l3 not after the icmp header", func(e *packet.ICMPError) { e.InnerL3Off++ }, nil, In, Malformed},
		{"icmp inside the ip header", func(e *packet.ICMPError) { e.ICMPOff = 20 }, nil, In, Malformed},
		{"quoted icmp", func(e *packet.ICMPError) { e.InnerProto = 1 }, nil, In, Malformed},
		{"version 5", func(e *packet.ICMPError) { e.Version = 5 }, nil, In, Malformed},
		{"real server of the other family", nil, func(p *Plan) { p.RS = pt.Real6.As16() }, In, Unsupported},
		{"local", nil, func(p *Plan) { p.Method = Local }, In, Unsupported},
		{"dr out", nil, func(p *Plan) { p.Method = Route }, Out, Unsupported},
		{"ttl 1", nil, nil, In, TTLExceeded},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := in
			if c.want == TTLExceeded {
				in.ttl = 1
			}
			f, _ := placeICMP(in.frame())
			orig := append([]byte(nil), f.Bytes()...)
			e := good
			if c.e != nil {
				c.e(&e)
			}
			p := fam.plan(Masq, pt.RealMAC)
			if c.p != nil {
				c.p(&p)
			}
			v := XmitICMP(&f, &e, &p, c.dir)
			if v != c.want {
				t.Fatalf("XmitICMP = %v, want %v", v, c.want)
			}
			if v != OK && !bytes.Equal(f.Bytes(), orig) {
				t.Errorf("XmitICMP returned %v and changed the frame", v)
			}
		})
	}
}
