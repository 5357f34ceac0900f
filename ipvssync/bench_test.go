package ipvssync

import (
	"net/netip"
	"testing"
)

func benchConns() []Conn {
	cs := make([]Conn, 256)
	for i := range cs {
		c := connV4
		c.Client = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), uint16(i))
		if i%3 == 0 {
			c.SetMethod(MethodFullNAT)
			c.Local = netip.AddrPortFrom(c.Dest.Addr(), uint16(30000+i))
		}
		cs[i] = c
	}
	return cs
}

// TestAllocs: encoding and decoding records without PE data allocate
// nothing once the Builder and the Decoder have grown.
func TestAllocs(t *testing.T) {
	cs := benchConns()
	b, _ := NewBuilder(1472, 1)
	var d Decoder
	fill := func() {
		b.Reset()
		for i := range cs {
			if ok, _ := b.Add(&cs[i]); !ok {
				break
			}
		}
	}
	fill()
	d.Decode(b.Bytes())
	if n := testing.AllocsPerRun(100, fill); n != 0 {
		t.Errorf("Builder.Add: %v allocs per message", n)
	}
	msg := b.Bytes()
	if n := testing.AllocsPerRun(100, func() { d.Decode(msg) }); n != 0 {
		t.Errorf("Decoder.Decode: %v allocs per message", n)
	}
}

func BenchmarkBuilderAdd(b *testing.B) {
	cs := benchConns()
	bl, _ := NewBuilder(1472, 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if ok, _ := bl.Add(&cs[i%len(cs)]); !ok {
			bl.Reset()
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkDecode(b *testing.B) {
	cs := benchConns()
	bl, _ := NewBuilder(1472, 1)
	n := 0
	for i := range cs {
		if ok, _ := bl.Add(&cs[i]); !ok {
			break
		}
		n++
	}
	msg := bl.Bytes()
	var d Decoder
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if r := d.Decode(msg); len(r.Conns) != n {
			b.Fatalf("decoded %d of %d", len(r.Conns), n)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
}
