package modes

import (
	"bytes"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func tcpFrame(t testing.TB) []byte {
	t.Helper()
	eth := &layers.Ethernet{
		SrcMAC:       net.HardwareAddr{0x02, 0x18, 0, 0, 0, 2},
		DstMAC:       net.HardwareAddr{0x02, 0x18, 0, 0, 0, 1},
		EthernetType: layers.EthernetTypeIPv4,
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: net.IP{198, 18, 0, 2}, DstIP: net.IP{198, 18, 0, 100}}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Seq: 1}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, tcp, gopacket.Payload("hello")); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// 02:18:00:00:00:02 > 02:18:00:00:00:01, 198.18.0.2.40000 > 198.18.0.100.80: Flags [S]
// becomes
// 02:18:00:00:00:01 > 02:18:00:00:00:0b, the same IP packet.
func TestDR(t *testing.T) {
	in := tcpFrame(t)
	frame := append([]byte(nil), in...)
	dst := [6]byte{0x02, 0x18, 0, 0, 0, 0x0b}
	src := [6]byte{0x02, 0x18, 0, 0, 0, 0x01}
	DR(frame, &dst, &src)

	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if !bytes.Equal(eth.DstMAC, dst[:]) || !bytes.Equal(eth.SrcMAC, src[:]) {
		t.Errorf("DR: MACs %v > %v, want %v > %v", eth.SrcMAC, eth.DstMAC, net.HardwareAddr(src[:]), net.HardwareAddr(dst[:]))
	}
	if !bytes.Equal(frame[12:], in[12:]) {
		t.Errorf("DR changed the packet after the MACs")
	}
	if p.ErrorLayer() != nil {
		t.Errorf("DR output does not decode: %v", p.ErrorLayer().Error())
	}
	if n := testing.AllocsPerRun(100, func() { DR(frame, &dst, &src) }); n != 0 {
		t.Errorf("DR allocates %v times per frame, want 0", n)
	}
}

func BenchmarkDR(b *testing.B) {
	frame := tcpFrame(b)
	dst, src := [6]byte{1, 2, 3, 4, 5, 6}, [6]byte{6, 5, 4, 3, 2, 1}
	b.ReportAllocs()
	for b.Loop() {
		DR(frame, &dst, &src)
	}
}
