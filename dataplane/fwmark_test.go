//go:build linux

package dataplane

import (
	"net/netip"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
	"github.com/xlbproject/xlb/modes"
	"github.com/xlbproject/xlb/sched"
)

// fwmarkWorker is testWorker plus mark 1 on VIP:80 and VIP:443 (TCP) and a
// persistent rr service -f 1 -p 300 over two real servers of its own.
func fwmarkWorker(t testing.TB) (*worker, *fakeKernel, [][6]byte) {
	t.Helper()
	w, k := testWorker(t)
	cfg := *w.cfg.Load()
	marks, rr := marksAndRR(t, []ipvs.MarkRule{
		{Mark: 1, Proto: ipvs.TCP, Prefix: netip.PrefixFrom(testVIP, 32), PortLo: 80, PortHi: 80},
		{Mark: 1, Proto: ipvs.TCP, Prefix: netip.PrefixFrom(testVIP, 32), PortLo: 443, PortHi: 443},
	})
	fwd := *w.dp.fwd.Load()
	macs := [][6]byte{{0x02, 0x18, 0, 0, 0, 0x1b}, {0x02, 0x18, 0, 0, 0, 0x1c}}
	var dests []*sched.Dest
	for j, mac := range macs {
		dst := sched.NewDest(netip.AddrFrom4([4]byte{198, 18, 0, byte(21 + j)}), 0, 1)
		if err := w.dp.reg.Add(dst); err != nil {
			t.Fatal(err)
		}
		fwd[dst.ID] = destFwd{mac: mac, macOK: true, method: modes.Route, addr: dst.Addr}
		dests = append([]*sched.Dest{dst}, dests...)
	}
	rr.Update(dests)
	spec := ipvs.Service{Key: ipvs.FWMarkKey(1, false), Sched: "rr", Persistent: true, Timeout: 300, Netmask: 32}
	pol, err := servicePolicy(&spec, rr, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.marks = marks
	cfg.fwmarks = map[fwmKey]*workerService{{1, false}: {id: 9, ct: pol}}
	w.cfg.Store(&cfg)
	return w, k, macs
}

func tcpFrom(client netip.Addr, sport, dport uint16, flags uint8) []byte {
	return pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: client, Dst: testVIP,
		SrcPort: sport, DstPort: dport, Flags: flags, Payload: []byte("xlb")}.Frame()
}

// TestWorkerFWMarkPersistence: the usual sticky 80+443 pair. Every
// connection of one client, to either port, goes to one real server (the
// template is keyed by the mark, not the port); the next client gets the
// other one; the frame keeps its VIP:port; an unmarked port is not the
// service's.
func TestWorkerFWMarkPersistence(t *testing.T) {
	w, k, macs := fwmarkWorker(t)
	clients := []netip.Addr{netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")}
	var in [][]byte
	for _, c := range clients {
		for i, port := range []uint16{80, 443, 80, 443} {
			in = append(in, tcpFrom(c, uint16(40000+i), port, syn))
		}
	}
	in = append(in, tcpFrom(clients[0], 41000, 22, syn)) // not marked, no service
	for _, f := range in {
		k.deliver(f)
	}
	w.poll(1)
	if len(k.sent) != 8 {
		t.Fatalf("sent %d frames, want 8", len(k.sent))
	}
	got := map[[6]byte]int{}
	for c := range clients {
		first := [6]byte(k.sent[4*c][:6])
		for i := 4 * c; i < 4*c+4; i++ {
			if mac := [6]byte(k.sent[i][:6]); mac != first {
				t.Errorf("client %d connection %d went to %x, its first to %x", c, i-4*c, mac, first)
			}
			// DR: the IP packet is the client's, to its VIP:port.
			var m packet.Meta
			if r := packet.Parse(k.sent[i], &m); r != packet.OK || m.DstAddr() != testVIP || m.DstPort != []uint16{80, 443}[i%2] {
				t.Errorf("frame %d sent to %v:%d (%v), want %v:%d", i, m.DstAddr(), m.DstPort, r, testVIP, []uint16{80, 443}[i%2])
			}
		}
		got[first]++
	}
	if got[macs[0]] != 1 || got[macs[1]] != 1 {
		t.Errorf("clients went to %v, want one to each of %x", got, macs)
	}
	if w.stats.local[NoService] != 1 {
		t.Errorf("no_service = %d, want 1 (port 22)", w.stats.local[NoService])
	}
}

// TestWorkerFWMarkFallsThrough: a marked frame whose mark has no service
// of its family goes to the address and port service.
func TestWorkerFWMarkFallsThrough(t *testing.T) {
	w, k, macs := fwmarkWorker(t)
	cfg := *w.cfg.Load()
	cfg.fwmarks = map[fwmKey]*workerService{{1, true}: cfg.fwmarks[fwmKey{1, false}]} // -6 -f 1 only
	w.cfg.Store(&cfg)
	k.deliver(tcpTo(40000, 80, syn))
	k.deliver(tcpTo(40001, 443, syn)) // marked, and no VIP:443 service
	w.poll(1)
	if len(k.sent) != 1 {
		t.Fatalf("sent %d frames, want 1", len(k.sent))
	}
	if mac := [6]byte(k.sent[0][:6]); mac == macs[0] || mac == macs[1] {
		t.Errorf("port 80 went to the fwmark service's real server %x, want VIP:80's", mac)
	}
}

// TestWorkerFWMarkAllocs: classifying a new connection allocates nothing.
func TestWorkerFWMarkAllocs(t *testing.T) {
	w, k, _ := fwmarkWorker(t)
	k.keep = false
	f := tcpTo(0, 443, syn)
	port := uint16(1000)
	allocs := testing.AllocsPerRun(200, func() {
		port++
		f[14+20], f[14+21] = byte(port>>8), byte(port)
		k.deliver(f)
		w.poll(2)
	})
	if allocs != 0 {
		t.Errorf("poll of a new fwmark connection: %v allocations, want 0", allocs)
	}
}

// marksAndRR is the mark table of rules and a fresh rr scheduler, the two
// parts every firewall-mark worker test starts from.
func marksAndRR(t testing.TB, rules []ipvs.MarkRule) (*packet.MarkTable, sched.Scheduler) {
	t.Helper()
	marks, err := markTable(&ipvs.Config{Marks: rules})
	if err != nil {
		t.Fatal(err)
	}
	rr, err := sched.New("rr", sched.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return marks, rr
}
