package packet_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/internal/packet/packettest"
)

// TestMarkTableGolden: the Go classifier gives each golden frame its mark;
// bpf's TestXDPMarkGolden holds the XDP program to the same table.
func TestMarkTableGolden(t *testing.T) {
	tbl, err := packet.NewMarkTable(packettest.MarkRules)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range packettest.MarkCases() {
		var m packet.Meta
		if r := packet.Parse(c.Frame, &m); r != packet.OK {
			t.Fatalf("%s: Parse = %v", c.Name, r)
		}
		got, ok := tbl.Classify(m.Proto, &m.Dst, m.DstPort)
		if got != c.Mark || ok != (c.Mark != 0) {
			t.Errorf("%s: Classify(%d, %v, %d) = %d, %v; want %d", c.Name, m.Proto, c.Dst, c.Port, got, ok, c.Mark)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		a := netip.MustParseAddr("10.1.2.3").As16()
		tbl.Classify(packet.ProtoTCP, &a, 443)
	}); n != 0 {
		t.Errorf("Classify allocates %v times per call, want 0", n)
	}
}

func TestMarkTableLimits(t *testing.T) {
	var nilTable *packet.MarkTable
	a := netip.MustParseAddr("10.0.0.1").As16()
	if _, ok := nilTable.Classify(packet.ProtoTCP, &a, 80); ok {
		t.Error("nil table classified a frame")
	}
	// 10 ranges on a /16 and 7 on a /24 inside it: the /24 would hold 17.
	var rules []packet.MarkRule
	for i := range 10 {
		rules = append(rules, packet.MarkRule{Mark: 1, Proto: packet.ProtoTCP, Prefix: netip.MustParsePrefix("10.0.0.0/16"),
			PortLo: uint16(100 * i), PortHi: uint16(100*i + 1)})
	}
	if _, err := packet.NewMarkTable(rules); err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		rules = append(rules, packet.MarkRule{Mark: 2, Proto: packet.ProtoTCP, Prefix: netip.MustParsePrefix("10.0.1.0/24"),
			PortLo: uint16(5000 + i), PortHi: uint16(5000 + i)})
	}
	if _, err := packet.NewMarkTable(rules); err == nil || !strings.Contains(err.Error(), "10.0.1.0/24: 17 port ranges") {
		t.Errorf("NewMarkTable of 17 ranges on a prefix = %v, want an error naming it", err)
	}
}

// BenchmarkClassify: the worker's cost per new connection of a marked
// frame (the /32 of three nested IPv4 prefixes) and of an unmarked one.
func BenchmarkClassify(b *testing.B) {
	tbl, err := packet.NewMarkTable(packettest.MarkRules)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		dst  string
		port uint16
	}{{"v4 /32", "10.1.2.3", 80}, {"v4 none", "10.2.0.1", 80}, {"v6 /64", "2001:db8:100:1::5", 1}} {
		a := netip.MustParseAddr(c.dst).As16()
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tbl.Classify(packet.ProtoTCP, &a, c.port)
			}
		})
	}
}
