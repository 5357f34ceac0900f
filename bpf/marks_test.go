//go:build linux

package bpf_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/internal/packet/packettest"
)

func markTable(t *testing.T, rules []packet.MarkRule) *packet.MarkTable {
	t.Helper()
	tbl, err := packet.NewMarkTable(rules)
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

// TestXDPMarkGolden runs the classifier's golden frames through the XDP
// program once per mark, with a firewall-mark service for that mark alone
// (both families): a frame is steered exactly when its golden mark is that
// one, so the program gives every frame the mark internal/packet's
// MarkTable gives it (TestMarkTableGolden).
func TestXDPMarkGolden(t *testing.T) {
	o := load(t)
	if err := o.SetMarks(markTable(t, packettest.MarkRules)); err != nil {
		t.Fatal(err)
	}
	var marks []uint32
	for _, r := range packettest.MarkRules {
		if !slices.Contains(marks, r.Mark) {
			marks = append(marks, r.Mark)
		}
	}
	marks = append(marks, 99) // a service whose mark no rule gives
	cases := packettest.MarkCases()
	for _, m := range marks {
		for _, v6 := range []bool{false, true} {
			if err := o.AddMarkService(m, v6, 100+m); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range cases {
			want := bpf.PassNoService
			if c.Mark == m {
				want = bpf.Redirect
			}
			if _, got := run(t, o, c.Frame); got != want {
				t.Errorf("%s (-f %d): xdp = %v, want %v", c.Name, m, got, want)
			}
		}
		for _, v6 := range []bool{false, true} {
			if err := o.DeleteMarkService(m, v6); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestXDPMarkFamily: -f 1 is IPv4's, -6 -f 1 IPv6's.
func TestXDPMarkFamily(t *testing.T) {
	o := load(t)
	if err := o.SetMarks(markTable(t, packettest.MarkRules)); err != nil {
		t.Fatal(err)
	}
	if err := o.AddMarkService(8, false, 1); err != nil { // mark 8 is a v6 rule's
		t.Fatal(err)
	}
	v6 := packettest.Packet{Src: packettest.Client6, Dst: netip.MustParseAddr("2001:db8::1"), SrcPort: 1, DstPort: 5353, UDP: true}.Frame()
	if _, got := run(t, o, v6); got != bpf.PassNoService {
		t.Errorf("IPv6 frame of mark 8 with only -f 8 (IPv4): xdp = %v, want %v", got, bpf.PassNoService)
	}
	if err := o.AddMarkService(8, true, 2); err != nil {
		t.Fatal(err)
	}
	if _, got := run(t, o, v6); got != bpf.Redirect {
		t.Errorf("IPv6 frame of mark 8 with -6 -f 8: xdp = %v, want %v", got, bpf.Redirect)
	}
}

// TestXDPMarkBeforeService: a marked frame goes to its fwmark service
// first; when that service drains, its SYNs fall back to the address and
// port service, as in the kernel, whose deleted service is not found.
func TestXDPMarkBeforeService(t *testing.T) {
	o := load(t)
	vip := packettest.VIP4 // a packettest service on port 80
	rules := []packet.MarkRule{{Mark: 1, Proto: packet.ProtoTCP, Prefix: netip.PrefixFrom(vip, 32), PortLo: 80, PortHi: 81}}
	if err := o.SetMarks(markTable(t, rules)); err != nil {
		t.Fatal(err)
	}
	frame := func(port uint16, flags uint8) []byte {
		return packettest.Packet{Src: packettest.Client4, Dst: vip, SrcPort: packettest.ClientPort, DstPort: port, Flags: flags}.Frame()
	}
	syn80, syn81, ack81 := frame(80, packet.TCPFlagSYN), frame(81, packet.TCPFlagSYN), frame(81, packet.TCPFlagACK)
	if _, got := run(t, o, syn81); got != bpf.PassNoService {
		t.Fatalf("SYN to marked port 81 without -f 1: xdp = %v, want %v", got, bpf.PassNoService)
	}
	if err := o.AddMarkService(1, false, 7); err != nil {
		t.Fatal(err)
	}
	for _, f := range [][]byte{syn80, syn81, ack81} {
		if _, got := run(t, o, f); got != bpf.Redirect {
			t.Errorf("frame %x to -f 1: xdp = %v, want %v", f[14+20:14+20+4], got, bpf.Redirect)
		}
	}
	if err := o.DrainMarkService(1, false, 7); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		want  bpf.Reason
	}{
		{"SYN to 80: the address and port service", syn80, bpf.Redirect},
		{"SYN to 81: no service", syn81, bpf.PassNoService},
		{"ACK to 81: the draining service's connection", ack81, bpf.Redirect},
	} {
		if _, got := run(t, o, tc.frame); got != tc.want {
			t.Errorf("draining -f 1, %s: xdp = %v, want %v", tc.name, got, tc.want)
		}
	}
	if err := o.SetMarks(nil); err != nil {
		t.Fatal(err)
	}
	if p, err := o.MarkPrefixes(); err != nil || len(p) != 0 {
		t.Errorf("after SetMarks(nil): prefixes %v, %v; want none", p, err)
	}
}

// TestSetMarksReplaces: SetMarks leaves exactly the new table's prefixes.
func TestSetMarksReplaces(t *testing.T) {
	o := load(t)
	if err := o.SetMarks(markTable(t, packettest.MarkRules)); err != nil {
		t.Fatal(err)
	}
	next := []packet.MarkRule{
		{Mark: 3, Proto: packet.ProtoTCP, Prefix: netip.MustParsePrefix("10.1.2.3/32"), PortLo: 80, PortHi: 80},
		{Mark: 9, Proto: packet.ProtoTCP, Prefix: netip.MustParsePrefix("10.9.0.0/16"), PortLo: 1, PortHi: 2},
	}
	if err := o.SetMarks(markTable(t, next)); err != nil {
		t.Fatal(err)
	}
	got, err := o.MarkPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Prefix][]packet.MarkRange{
		netip.MustParsePrefix("10.1.2.3/32"): {{Lo: 80, Hi: 80, Mark: 3}},
		netip.MustParsePrefix("10.9.0.0/16"): {{Lo: 1, Hi: 2, Mark: 9}},
	}
	if len(got) != len(want) {
		t.Fatalf("MarkPrefixes = %v, want %v", got, want)
	}
	for p, r := range want {
		if !slices.Equal(got[p], r) {
			t.Errorf("MarkPrefixes[%v] = %v, want %v", p, got[p], r)
		}
	}
	if err := o.AddMarkService(0, false, 1); err == nil {
		t.Error("AddMarkService(0) succeeded, want an error")
	}
}

// BenchmarkXDPMarks times the program per frame with the golden mark rules
// and a service for each mark: a frame the trie marks (its mark's service
// found), and one to an address the trie does not hold.
func BenchmarkXDPMarks(b *testing.B) {
	o := load(b)
	tbl, err := packet.NewMarkTable(packettest.MarkRules)
	if err != nil {
		b.Fatal(err)
	}
	if err := o.SetMarks(tbl); err != nil {
		b.Fatal(err)
	}
	for _, r := range packettest.MarkRules {
		if err := o.AddMarkService(r.Mark, r.Prefix.Addr().Is6(), r.Mark); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range packettest.MarkCases() {
		switch c.Name {
		case "v4 /32 wins", "v6 /64 port 1", "v4 outside /16":
		default:
			continue
		}
		b.Run(c.Name, func(b *testing.B) {
			action, per, err := o.Program().Benchmark(c.Frame, b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			if action != xdpPass {
				b.Fatalf("action %d, want %d", action, xdpPass)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/frame")
		})
	}
}
