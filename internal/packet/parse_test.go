package packet_test

import (
	"testing"

	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/internal/packet/packettest"
)

func TestParseGolden(t *testing.T) {
	for _, c := range packettest.Cases() {
		t.Run(c.Name, func(t *testing.T) {
			var m packet.Meta
			got := packet.Parse(c.Frame, &m)
			if got != c.Reason {
				t.Fatalf("Parse(%x) = %v, want %v\ntcpdump: %s", c.Frame, got, c.Reason, c.Tcpdump)
			}
			if got != packet.OK {
				if m != (packet.Meta{}) {
					t.Errorf("Parse(%x) = %v and wrote meta %+v, want it untouched", c.Frame, got, m)
				}
				return
			}
			if m != c.Meta {
				t.Errorf("Parse(%x) meta = %+v, want %+v\ntcpdump: %s", c.Frame, m, c.Meta, c.Tcpdump)
			}
			if s := packettest.Lookup(&m); s != c.Steer {
				t.Errorf("Lookup(%+v) = %v, want %v", m, s, c.Steer)
			}
			if c.Steer == packettest.NoService {
				return
			}
			if got := packettest.Filter().Admit(c.Frame, &m); got != c.Admit {
				t.Errorf("Admit(%x) = %v, want %v\ntcpdump: %s", c.Frame, got, c.Admit, c.Tcpdump)
			}
		})
	}
}

// TestParseTruncated cuts every accepted golden frame at every length: a
// frame is Malformed until it holds the whole IP packet, then parses as the
// uncut frame does (what follows the IP packet is link-layer padding).
func TestParseTruncated(t *testing.T) {
	for _, c := range packettest.Cases() {
		if c.Reason != packet.OK {
			continue
		}
		end := c.Meta.L3Off + c.Meta.IPLen
		for n := range len(c.Frame) + 1 {
			var m packet.Meta
			got := packet.Parse(c.Frame[:n], &m)
			switch {
			case n < end && got != packet.Malformed:
				t.Errorf("%s: Parse(frame[:%d]) = %v, want %v", c.Name, n, got, packet.Malformed)
			case n >= end && (got != packet.OK || m != c.Meta):
				t.Errorf("%s: Parse(frame[:%d]) = %v %+v, want %v %+v", c.Name, n, got, m, packet.OK, c.Meta)
			}
		}
	}
}

func TestParseRunt(t *testing.T) {
	for n := range 14 {
		var m packet.Meta
		if got := packet.Parse(make([]byte, n), &m); got != packet.Malformed {
			t.Errorf("Parse(%d zero bytes) = %v, want %v", n, got, packet.Malformed)
		}
	}
}

func TestReasonString(t *testing.T) {
	seen := map[string]bool{}
	for r := range packet.Reason(packet.NumReasons) {
		s := r.String()
		if s == "" || seen[s] {
			t.Errorf("Reason(%d).String() = %q: empty or duplicate", r, s)
		}
		seen[s] = true
	}
	if got, want := packet.Reason(200).String(), "Reason(200)"; got != want {
		t.Errorf("Reason(200).String() = %q, want %q", got, want)
	}
}

func TestParseAllocs(t *testing.T) {
	cases := packettest.Cases()
	var m packet.Meta
	allocs := testing.AllocsPerRun(100, func() {
		for _, c := range cases {
			packet.Parse(c.Frame, &m)
		}
	})
	if allocs != 0 {
		t.Errorf("Parse allocates %v times per run of %d frames, want 0", allocs, len(cases))
	}
}

func BenchmarkParse(b *testing.B) {
	for _, name := range []string{"tcp syn to vip:80", "ipv6 tcp syn to [vip6]:443", "vlan 100, tcp syn to vip:80", "ipv6 hop-by-hop, routing, 16-byte dstopts, ah, then tcp to [vip6]:443"} {
		var frame []byte
		for _, c := range packettest.Cases() {
			if c.Name == name {
				frame = c.Frame
			}
		}
		if frame == nil {
			b.Fatalf("no golden case %q", name)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			var m packet.Meta
			for b.Loop() {
				if packet.Parse(frame, &m) != packet.OK {
					b.Fatal("Parse rejected the frame")
				}
			}
		})
	}
}
