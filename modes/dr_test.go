package modes

import (
	"bytes"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/packet"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
)

// DR, the worker's call until it moves to Xmit: 02:00:00:00:00:01 >
// 02:00:00:00:00:02, 198.51.100.7.40000 > 192.0.2.10.80: Flags [S] becomes
// 02:00:00:00:00:02 > 02:00:00:00:00:20, the same IP packet.
func TestDR(t *testing.T) {
	in := pt.Packet{Src: pt.Client4, Dst: pt.VIP4, SrcPort: pt.ClientPort, DstPort: pt.HTTP, Flags: packet.TCPFlagSYN}.Frame()
	frame := append([]byte(nil), in...)
	dst, src := mac(pt.RealMAC), mac(pt.DirectorMAC)
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
