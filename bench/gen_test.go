//go:build linux

package main

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Every flow's frame is a valid 60-byte UDP frame (gopacket checks the
// IP and UDP checksums), and flows are distinct up to maxFlows.
func TestBuildFrame(t *testing.T) {
	src := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	dst := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	to := netip.MustParseAddrPort("198.18.0.100:9")
	seen := map[[2]uint64]bool{}
	for _, i := range []int{0, 1, 64511, 64512, 100000, maxFlows - 1} {
		f := make([]byte, 60)
		buildFrame(f, src, dst, i, to)
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if ip == nil || udp == nil {
			t.Fatalf("flow %d: not IPv4/UDP: %v", i, p)
		}
		saddr, sport := flowSource(i)
		if got, _ := netip.AddrFromSlice(ip.SrcIP); got != saddr || uint16(udp.SrcPort) != sport {
			t.Errorf("flow %d from %v:%d, want %v:%d", i, got, udp.SrcPort, saddr, sport)
		}
		if got, _ := netip.AddrFromSlice(ip.DstIP); got != to.Addr() || uint16(udp.DstPort) != to.Port() {
			t.Errorf("flow %d to %v:%d", i, got, udp.DstPort)
		}
		// Recompute both checksums and compare.
		want := ip.Checksum
		buf := gopacket.NewSerializeBuffer()
		udp.SetNetworkLayerForChecksum(ip)
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ip, udp, gopacket.Payload(udp.Payload)); err != nil {
			t.Fatal(err)
		}
		re := gopacket.NewPacket(buf.Bytes(), layers.LayerTypeIPv4, gopacket.Default)
		if got := re.Layer(layers.LayerTypeIPv4).(*layers.IPv4).Checksum; got != want {
			t.Errorf("flow %d: IP checksum %#x, want %#x", i, want, got)
		}
		if got := re.Layer(layers.LayerTypeUDP).(*layers.UDP).Checksum; got != udp.Checksum {
			t.Errorf("flow %d: UDP checksum %#x, want %#x", i, udp.Checksum, got)
		}
		k := [2]uint64{uint64(saddr.As4()[3]), uint64(sport)}
		if seen[k] {
			t.Errorf("flow %d repeats an earlier flow's source", i)
		}
		seen[k] = true
	}
}
