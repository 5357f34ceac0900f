//go:build linux

package bpf_test

import (
	"net"
	"testing"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/internal/packet/packettest"
)

// BenchmarkXDPOffload times the program's offload path in the kernel
// (BPF_PROG_RUN's repeat loop, per frame): an established DR flow's UDP
// frame, rewritten and sent by XDP_TX, its counters added. The flow's
// rewrite gives the frame back its own MACs, so that each repeat sees
// the same frame but for the TTL, which drops by one a run: a call
// repeats at most 250 times from a TTL of 255.
func BenchmarkXDPOffload(b *testing.B) {
	o, err := bpf.Load(bpf.Options{MAC: packettest.LBMAC, Offload: true, MaxFlows: 1024})
	skipIfNotPermitted(b, err)
	b.Cleanup(func() { o.Close() })
	svc := packettest.Services[1] // UDP
	if svc.Proto != packet.ProtoUDP {
		b.Fatalf("service %v is not UDP", svc)
	}
	if err := o.AddService(bpf.ServiceKey(svc), 1); err != nil {
		b.Fatal(err)
	}
	client := packettest.Client4
	frame := packettest.Packet{DstMAC: net.HardwareAddr(packettest.LBMAC[:]), Src: client, Dst: svc.Addr,
		SrcPort: 5353, DstPort: svc.Port, UDP: true, TTL: 255, Payload: []byte("xlb")}.Frame()
	k := bpf.MakeFlowKey(client.As16(), 5353, svc.Addr.As16(), svc.Port, packet.ProtoUDP)
	f := bpf.Flow{DstMAC: packettest.LBMAC, Ifindex: 1, Dest: 1, Op: bpf.FlowDR}
	copy(f.SrcMAC[:], packettest.ClientMAC)
	if err := o.PutFlow(&k, &f); err != nil {
		b.Fatal(err)
	}
	before, err := o.Counters()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var total time.Duration
	for done := 0; done < b.N; {
		n := min(b.N-done, 250)
		act, per, err := o.Program().Benchmark(frame, n, nil)
		if err != nil {
			b.Fatal(err)
		}
		if act != xdpTX {
			b.Fatalf("action %d, want XDP_TX (%d)", act, xdpTX)
		}
		total += per * time.Duration(n)
		done += n
	}
	b.StopTimer()
	after, err := o.Counters()
	if err != nil {
		b.Fatal(err)
	}
	// At least: a repeat loop a signal interrupts is run again whole.
	if got := after[bpf.RedirectOffload] - before[bpf.RedirectOffload]; got < uint64(b.N) {
		b.Fatalf("%d frames offloaded, want %d", got, b.N)
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/frame")
}
