//go:build linux

package dataplane

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/modes"
)

// BenchmarkWorkerNewConn is the worker's cost per new connection, on the
// fake kernel, for each forwarding method and IP version: batches of 64
// SYNs from fresh client ports, each a lookup miss, a scheduling
// decision, an insert (and for FULLNAT a local port), and the rewrite. SYN_RECV lasts 50 ms and
// the clock moves 1 ms per batch, so the table holds ~3200 entries and
// the batch's Expire removes as many as it inserts: the steady state of a
// director taking new connections, not a table filling up.
func BenchmarkWorkerNewConn(b *testing.B) {
	for _, fam := range benchFamilies {
		for _, m := range []modes.Method{modes.Route, modes.Masq, modes.Tunnel, modes.FullNAT} {
			b.Run(m.String()+"/"+fam.name, func(b *testing.B) {
				benchNewConn(b, fam.worker, fam.tcp, m)
			})
		}
	}
}

// benchNewConn is BenchmarkWorkerNewConn for one method and IP version.
func benchNewConn(b *testing.B, worker func(testing.TB, modes.Method) (*worker, *fakeKernel),
	tcp func(sport, dport uint16, flags uint8) []byte, m modes.Method) {
	w, k := worker(b, m)
	k.keep = false
	to := w.dp.ctSettings.Timeouts()
	to.TCP[conntrack.StateSynRecv] = 50 * time.Millisecond
	w.dp.ctSettings.SetAllTimeouts(to)
	frames := make([][]byte, maxBatch)
	for i := range frames {
		frames[i] = tcp(1024, 80, syn)
	}
	var meta packet.Meta
	if packet.Parse(frames[0], &meta) != packet.OK {
		b.Fatal("SYN does not parse")
	}
	sport := meta.L4Off
	csum := meta.L4Off + 16
	port := uint16(1024)
	now := int64(time.Millisecond)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startThreadCPU(b)
	var pt pollTimer
	n := 0
	for b.Loop() {
		for _, f := range frames {
			// The next client port, with the TCP checksum kept right.
			old := binary.BigEndian.Uint16(f[sport:])
			if port++; port == 0 {
				port = 1024
			}
			binary.BigEndian.PutUint16(f[sport:], port)
			sum := binary.BigEndian.Uint16(f[csum:])
			binary.BigEndian.PutUint16(f[csum:], packet.ChecksumUpdate16(sum, old, port))
			k.deliver(f)
		}
		n += pt.poll(w, now)
		now += int64(time.Millisecond)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/conn")
	cpu.report(n, "conn")
	pt.report(b, "conn")
	s := &w.stats.local
	if s[ConnNew] < uint64(n) || s[TxFrames] < uint64(n) {
		b.Fatalf("%d frames: %d new connections, %d sent (counters %v)", n, s[ConnNew], s[TxFrames], *s)
	}
}

// TestWorkerNewConnAllocs: new connections, every method and IP
// version, allocate nothing per frame either.
func TestWorkerNewConnAllocs(t *testing.T) {
	for _, fam := range benchFamilies {
		for _, m := range []modes.Method{modes.Route, modes.Masq, modes.Tunnel, modes.FullNAT} {
			w, k := fam.worker(t, m)
			k.keep = false
			port := uint16(1024)
			frames := make([][]byte, maxBatch)
			for i := range frames {
				frames[i] = fam.tcp(port+uint16(i), 80, syn)
			}
			var meta packet.Meta
			if packet.Parse(frames[0], &meta) != packet.OK {
				t.Fatal("SYN does not parse")
			}
			w.poll(1)
			n := 0
			got := testing.AllocsPerRun(50, func() {
				for i := range frames {
					port++
					binary.BigEndian.PutUint16(frames[i][meta.L4Off:], port) // the TCP source port
					k.deliver(frames[i])
				}
				n += w.poll(2)
			})
			if got != 0 {
				t.Errorf("%v %s: %.1f allocations per batch of new connections, want 0", m, fam.name, got)
			}
			if w.stats.local[ConnNew] < uint64(n) {
				t.Errorf("%v %s: %d new connections for %d frames", m, fam.name, w.stats.local[ConnNew], n)
			}
		}
	}
}
