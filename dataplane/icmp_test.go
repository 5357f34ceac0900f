//go:build linux

package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
	"github.com/xlbproject/xlb/modes"
)

var (
	testRS     = netip.MustParseAddr("198.18.0.11")
	testRouter = netip.MustParseAddr("198.18.0.1")
	testDirIP  = netip.MustParseAddr("198.18.0.254")
)

// icmpFromClientSide is a router's fragmentation needed (MTU 1400), to
// the VIP, about the packet VIP:80 → client:cport (a NAT or FULLNAT reply
// the director sent, or a DR or TUN real server's own reply).
func icmpFromClientSide(cport uint16) []byte {
	q := pt.Quote(0, pt.IPv4(testVIP, testClient, layers.IPProtocolTCP), pt.TCP(80, cport, packet.TCPFlagACK))
	return pt.ICMPError(clientMAC, directorMAC[:], testRouter, testVIP, 3, 4, 1400, q)
}

// icmpFromRealSide is the real server's port unreachable about the packet
// src:sport → RS:8080 the director sent it.
func icmpFromRealSide(src netip.Addr, sport uint16) []byte {
	q := pt.Quote(0, pt.IPv4(src, testRS, layers.IPProtocolTCP), pt.TCP(sport, 8080, packet.TCPFlagACK))
	return pt.ICMPError(realMACs[0][:], directorMAC[:], testRS, src, 3, 3, 0, q)
}

// icmpView is a sent ICMP error, checked: outer IPv4 header, ICMP and
// quoted IPv4 checksums.
type icmpView struct {
	dstMAC         [6]byte
	src, dst       netip.Addr
	ttl            uint8
	qsrc, qdst     netip.Addr
	qsport, qdport uint16
	typ, code      uint8
}

func viewICMP(t *testing.T, f []byte) icmpView {
	t.Helper()
	var m packet.Meta
	if r := packet.Parse(f, &m); r != packet.OK || !m.IsICMP() {
		t.Fatalf("sent frame %x is not an ICMP error: %v", f, r)
	}
	e := m.ICMP
	if packet.Checksum(f[e.L3Off:e.ICMPOff], 0) != 0 {
		t.Errorf("sent frame: bad outer IPv4 header checksum")
	}
	if packet.Checksum(f[e.ICMPOff:e.End], 0) != 0 {
		t.Errorf("sent frame: bad ICMP checksum")
	}
	if packet.Checksum(f[e.InnerL3Off:e.InnerL4Off], 0) != 0 {
		t.Errorf("sent frame: bad quoted IPv4 header checksum")
	}
	a4 := func(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b)) }
	return icmpView{
		dstMAC: [6]byte(f[0:6]), src: a4(f[e.L3Off+12:]), dst: a4(f[e.L3Off+16:]), ttl: f[e.L3Off+8],
		qsrc: a4(f[e.InnerL3Off+12:]), qdst: a4(f[e.InnerL3Off+16:]),
		qsport: binary.BigEndian.Uint16(f[e.InnerL4Off:]), qdport: binary.BigEndian.Uint16(f[e.InnerL4Off+2:]),
		typ: f[e.ICMPOff], code: f[e.ICMPOff+1],
	}
}

// icmpWorker is methodWorker with one connection client:40000 → VIP:80
// established; it returns the connection's FULLNAT local port (or the
// client's port).
func icmpWorker(t testing.TB, m modes.Method) (*worker, *fakeKernel, uint16) {
	t.Helper()
	w, k := methodWorker(t, m)
	if m == modes.Tunnel {
		fwd := *w.dp.fwd.Load()
		for i := range fwd {
			fwd[i].encap = modes.Encap{Type: modes.IPIP, Src: testDirIP.As16()}
		}
	}
	k.deliver(tcpTo(40000, 80, syn))
	if w.poll(1); len(k.sent) != 1 {
		t.Fatalf("%v: SYN not forwarded (counters %v)", m, w.stats.local)
	}
	lport := uint16(40000)
	if m == modes.FullNAT {
		var pm packet.Meta
		if packet.Parse(k.sent[0], &pm) != packet.OK {
			t.Fatalf("FULLNAT SYN sent does not parse")
		}
		lport = pm.SrcPort
	}
	k.sent = k.sent[:0]
	return w, k, lport
}

// TestWorkerICMP: an ICMP error about a connection, from either side,
// finds the connection through the flow it quotes and goes to the other
// party, for every method: a router's fragmentation needed about a reply
// to the client goes to the real server (DR: as it is, to its MAC; TUN:
// encapsulated; NAT, FULLNAT: translated to the real server's addresses),
// a real server's port unreachable goes, translated, to the client.
func TestWorkerICMP(t *testing.T) {
	type want struct {
		mac            [6]byte
		src, dst       netip.Addr
		qsrc, qdst     netip.Addr
		qsport, qdport uint16
	}
	for _, c := range []struct {
		method modes.Method
		real   bool // the error comes from the real server's side
		want   want // of the sent frame; for TUN, of the encapsulated packet
	}{
		{modes.Route, false, want{realMACs[0], testRouter, testVIP, testVIP, testClient, 80, 40000}},
		{modes.Tunnel, false, want{realMACs[0], testRouter, testVIP, testVIP, testClient, 80, 40000}},
		{modes.Masq, false, want{realMACs[0], testRouter, testRS, testRS, testClient, 8080, 40000}},
		{modes.FullNAT, false, want{realMACs[0], testLaddr, testRS, testRS, testLaddr, 8080, 0}},
		{modes.Masq, true, want{[6]byte(clientMAC), testVIP, testClient, testClient, testVIP, 40000, 80}},
		{modes.FullNAT, true, want{[6]byte(clientMAC), testVIP, testClient, testClient, testVIP, 40000, 80}},
	} {
		side := "client side"
		if c.real {
			side = "real side"
		}
		t.Run(c.method.String()+" "+side, func(t *testing.T) {
			w, k, lport := icmpWorker(t, c.method)
			frame := icmpFromClientSide(40000)
			if c.real {
				src := testClient
				if c.method == modes.FullNAT {
					src = testLaddr
				}
				frame = icmpFromRealSide(src, lport)
			}
			k.deliver(frame)
			w.poll(2)
			if len(k.sent) != 1 || w.stats.local[ICMPForwarded] != 1 {
				t.Fatalf("sent %d, icmp_forwarded %d; want 1, 1 (counters %v, verdicts %v)",
					len(k.sent), w.stats.local[ICMPForwarded], w.stats.local, w.verdicts)
			}
			sent := k.sent[0]
			if c.method == modes.Tunnel {
				if sent[12] != 0x08 || sent[14+9] != 4 {
					t.Fatalf("TUN: sent %x is not IPv4-in-IPv4", sent)
				}
				if got := netip.AddrFrom4([4]byte(sent[14+16:])); got != testRS {
					t.Errorf("TUN: outer destination %v, want %v", got, testRS)
				}
				if packet.Checksum(sent[14:34], 0) != 0 {
					t.Errorf("TUN: bad outer IPv4 header checksum")
				}
				// Check the inner packet as if it were a frame of its own.
				sent = append(append([]byte(nil), sent[:14]...), sent[34:]...)
			}
			got := viewICMP(t, sent)
			wt := c.want
			if c.method == modes.FullNAT && !c.real {
				wt.qdport = lport
			}
			if got.dstMAC != wt.mac {
				t.Errorf("to MAC %x, want %x", got.dstMAC, wt.mac)
			}
			if got.src != wt.src || got.dst != wt.dst {
				t.Errorf("outer %v > %v, want %v > %v", got.src, got.dst, wt.src, wt.dst)
			}
			if got.qsrc != wt.qsrc || got.qdst != wt.qdst || got.qsport != wt.qsport || got.qdport != wt.qdport {
				t.Errorf("quoted %v:%d > %v:%d, want %v:%d > %v:%d", got.qsrc, got.qsport, got.qdst, got.qdport,
					wt.qsrc, wt.qsport, wt.qdst, wt.qdport)
			}
			wantType, wantCode := uint8(3), uint8(4)
			if c.real {
				wantCode = 3
			}
			if got.typ != wantType || got.code != wantCode || got.ttl != 63 {
				t.Errorf("type %d code %d ttl %d, want %d %d 63", got.typ, got.code, got.ttl, wantType, wantCode)
			}
			if c.method == modes.Route || c.method == modes.Tunnel {
				// Forwarded as it is: only the TTL and the header checksum change.
				o := icmpFromClientSide(40000)
				if string(sent[34:]) != string(o[34:len(sent)]) {
					t.Errorf("DR/TUN changed the ICMP message:\n got %x\nwant %x", sent[34:], o[34:])
				}
			}
			if n := w.ct.Len(); n != 1 {
				t.Errorf("%d connection entries after the error, want 1", n)
			}
		})
	}
}

// An ICMP error about no connection is dropped and counted: XDP steered
// it because its quoted flow names a service or a real, and it cannot go
// back to the kernel. So is one from the real server's side in DR, which
// has no reply key.
func TestWorkerICMPNoConnection(t *testing.T) {
	for _, m := range []modes.Method{modes.Route, modes.Tunnel, modes.Masq, modes.FullNAT} {
		t.Run(m.String(), func(t *testing.T) {
			w, k, _ := icmpWorker(t, m)
			k.deliver(icmpFromClientSide(40001))           // another client port
			k.deliver(icmpFromRealSide(testClient, 40001)) // no such connection either
			w.poll(2)
			if len(k.sent) != 0 || w.stats.local[ICMPNoConn] != 2 || w.stats.local[ICMPForwarded] != 0 {
				t.Errorf("sent %d, icmp_no_conn %d, icmp_forwarded %d; want 0, 2, 0",
					len(k.sent), w.stats.local[ICMPNoConn], w.stats.local[ICMPForwarded])
			}
			if w.stats.local[ConnNew] != 1 || w.ct.Len() != 1 {
				t.Errorf("conn_new %d, entries %d: an ICMP error created a connection", w.stats.local[ConnNew], w.ct.Len())
			}
		})
	}
}

// An ICMP error with TTL 1 is dropped as the rewrite's ttl_exceeded, never
// answered with another ICMP error (RFC 1122 section 3.2.2).
func TestWorkerICMPNotAnswered(t *testing.T) {
	w, k, _ := icmpWorker(t, modes.Route)
	f := icmpFromClientSide(40000)
	f[14+8] = 1
	f[14+10], f[14+11] = 0, 0
	binary.BigEndian.PutUint16(f[14+10:], packet.Checksum(f[14:34], 0))
	k.deliver(f)
	w.poll(2)
	if len(k.sent) != 0 || w.verdicts[modes.TTLExceeded] != 1 || w.stats.local[TTLExceeded] != 0 {
		t.Errorf("sent %d, ttl_exceeded verdicts %d, ttl_exceeded replies %d; want 0, 1, 0",
			len(k.sent), w.verdicts[modes.TTLExceeded], w.stats.local[TTLExceeded])
	}
}

// ICMP errors allocate nothing per frame, in either direction.
func TestWorkerICMPAllocs(t *testing.T) {
	for _, m := range []modes.Method{modes.Route, modes.Tunnel, modes.Masq, modes.FullNAT} {
		w, k, lport := icmpWorker(t, m)
		k.keep = false
		in := icmpFromClientSide(40000)
		src := testClient
		if m == modes.FullNAT {
			src = testLaddr
		}
		out := icmpFromRealSide(src, lport)
		if allocs := pollAllocs(w, k, in, out); allocs != 0 {
			t.Errorf("%v: %v allocations per batch, want 0", m, allocs)
		}
		if w.stats.local[ICMPForwarded] < 100 {
			t.Errorf("%v: icmp_forwarded = %d, want ≥ 100", m, w.stats.local[ICMPForwarded])
		}
	}
}

// BenchmarkWorkerICMP is the worker's cost per ICMP error forwarded, one
// from each side per batch (DR and TUN: the client side's only).
func BenchmarkWorkerICMP(b *testing.B) {
	for _, m := range []modes.Method{modes.Route, modes.Tunnel, modes.Masq, modes.FullNAT} {
		b.Run(m.String(), func(b *testing.B) {
			w, k, lport := icmpWorker(b, m)
			k.keep = false
			in := icmpFromClientSide(40000)
			src := testClient
			if m == modes.FullNAT {
				src = testLaddr
			}
			out := icmpFromRealSide(src, lport)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k.deliver(in)
				if m == modes.Masq || m == modes.FullNAT {
					k.deliver(out)
				}
				w.poll(int64(i + 2))
			}
		})
	}
}

var (
	testVIP6    = netip.MustParseAddr("2001:db8:18::100")
	testClient6 = netip.MustParseAddr("2001:db8:18::2")
	testRS6     = netip.MustParseAddr("2001:db8:18::11")
	testLaddr6  = netip.MustParseAddr("2001:db8:18::200")
	testRouter6 = netip.MustParseAddr("2001:db8:18::1")
	testDirIP6  = netip.MustParseAddr("2001:db8:18::fe")
)

// TestWorkerICMP6 is TestWorkerICMP in IPv6: a router's packet too big
// about a reply to the client goes to the real server, a real server's
// port unreachable to the client, with the ICMPv6 checksum (which covers
// the outer addresses through its pseudo-header) right.
func TestWorkerICMP6(t *testing.T) {
	type want struct {
		mac            [6]byte
		src, dst       netip.Addr
		qsrc, qdst     netip.Addr
		qsport, qdport uint16
	}
	for _, c := range []struct {
		method modes.Method
		real   bool
		want   want
	}{
		{modes.Route, false, want{realMACs[0], testRouter6, testVIP6, testVIP6, testClient6, 80, 40000}},
		{modes.Tunnel, false, want{realMACs[0], testRouter6, testVIP6, testVIP6, testClient6, 80, 40000}},
		{modes.Masq, false, want{realMACs[0], testRouter6, testRS6, testRS6, testClient6, 8080, 40000}},
		{modes.FullNAT, false, want{realMACs[0], testLaddr6, testRS6, testRS6, testLaddr6, 8080, 0}},
		{modes.Masq, true, want{[6]byte(clientMAC), testVIP6, testClient6, testClient6, testVIP6, 40000, 80}},
		{modes.FullNAT, true, want{[6]byte(clientMAC), testVIP6, testClient6, testClient6, testVIP6, 40000, 80}},
	} {
		side := "client side"
		if c.real {
			side = "real side"
		}
		t.Run(c.method.String()+" "+side, func(t *testing.T) {
			k6 := ipvs.ServiceKey{Proto: ipvs.TCP, Addr: testVIP6, Port: 80}
			w, k := methodWorkerAt(t, c.method, k6, testRS6, testLaddr6)
			if c.method == modes.Tunnel {
				fwd := *w.dp.fwd.Load()
				for i := range fwd {
					fwd[i].encap = modes.Encap{Type: modes.IPIP, Src: testDirIP6.As16()}
				}
			}
			k.deliver(pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient6, Dst: testVIP6,
				SrcPort: 40000, DstPort: 80, Flags: syn}.Frame())
			if w.poll(1); len(k.sent) != 1 {
				t.Fatalf("SYN not forwarded (counters %v)", w.stats.local)
			}
			var sm packet.Meta
			packet.Parse(k.sent[0], &sm)
			lport := sm.SrcPort
			k.sent = k.sent[:0]

			frame := pt.ICMPError(clientMAC, directorMAC[:], testRouter6, testVIP6, 2, 0, 1280,
				pt.Quote(0, pt.IPv6(testVIP6, testClient6, layers.IPProtocolTCP), pt.TCP(80, 40000, packet.TCPFlagACK)))
			if c.real {
				src := testClient6
				if c.method == modes.FullNAT {
					src = testLaddr6
				}
				frame = pt.ICMPError(realMACs[0][:], directorMAC[:], testRS6, src, 1, 4, 0,
					pt.Quote(0, pt.IPv6(src, testRS6, layers.IPProtocolTCP), pt.TCP(lport, 8080, packet.TCPFlagACK)))
			}
			k.deliver(frame)
			w.poll(2)
			if len(k.sent) != 1 || w.stats.local[ICMPForwarded] != 1 {
				t.Fatalf("sent %d, icmp_forwarded %d; want 1, 1 (counters %v, verdicts %v)",
					len(k.sent), w.stats.local[ICMPForwarded], w.stats.local, w.verdicts)
			}
			sent := k.sent[0]
			if c.method == modes.Tunnel {
				if sent[14+6] != 41 || netip.AddrFrom16([16]byte(sent[14+24:])) != testRS6 {
					t.Fatalf("TUN: sent %x is not IPv6-in-IPv6 to %v", sent, testRS6)
				}
				sent = append(append([]byte(nil), sent[:14]...), sent[54:]...)
			}
			var m packet.Meta
			if r := packet.Parse(sent, &m); r != packet.OK || !m.IsICMP() {
				t.Fatalf("sent frame %x is not an ICMPv6 error: %v", sent, r)
			}
			e := m.ICMP
			ip := sent[e.L3Off:]
			if sum := packet.PseudoHeaderSum(ip, 6, packet.ProtoICMPv6, e.End-e.ICMPOff); packet.Checksum(sent[e.ICMPOff:e.End], sum) != 0 {
				t.Errorf("bad ICMPv6 checksum")
			}
			a16 := func(b []byte) netip.Addr { return netip.AddrFrom16([16]byte(b)) }
			wt := c.want
			if c.method == modes.FullNAT && !c.real {
				wt.qdport = lport
			}
			q := sent[e.InnerL3Off:]
			got := want{[6]byte(sent[0:6]), a16(ip[8:]), a16(ip[24:]), a16(q[8:]), a16(q[24:]),
				binary.BigEndian.Uint16(sent[e.InnerL4Off:]), binary.BigEndian.Uint16(sent[e.InnerL4Off+2:])}
			if got != wt {
				t.Errorf("sent %+v, want %+v", got, wt)
			}
			if ip[7] != 63 {
				t.Errorf("hop limit %d, want 63", ip[7])
			}
		})
	}
}
