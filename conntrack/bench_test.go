package conntrack

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/xlbproject/xlb/sched"
)

// Benchmark sizes. The 10^7-entry runs allocate about 1.5 GB and take
// seconds to fill, so they only run when XLB_BENCH_HUGE=1 is set:
//
//	XLB_BENCH_HUGE=1 go test -run '^$' -bench . -benchtime 2000000x -count 3 ./conntrack/
//
// CI's `go test -bench . -benchtime=1x` runs 10^3..10^6.
func benchSizes() []int {
	s := []int{1e3, 1e5, 1e6}
	if os.Getenv("XLB_BENCH_HUGE") == "1" {
		s = append(s, 1e7)
	}
	return s
}

// benchKey is the forward key of flow i: a bijection of i onto IPv4
// client addresses, so all keys differ.
func benchKey(i uint32) Key {
	var k Key
	k.Src = [16]byte{10: 0xff, 11: 0xff}
	binary.BigEndian.PutUint32(k.Src[12:], i*0x9E3779B1)
	k.Dst = vip.As16()
	k.SrcPort = uint16(1024 + i&0x7fff)
	k.DstPort = 80
	k.Proto = ProtoTCP
	return k
}

// benchTable returns a table of the given capacity holding fill Masq
// entries (two keys each: the index at its fullest) and the heap bytes it
// took per entry of capacity.
func benchTable(b *testing.B, capacity, fill int) (*Table, *sched.Dest, float64) {
	b.Helper()
	reg := sched.NewRegistry(4)
	d := sched.NewDest(vip, 8080, 1)
	if err := reg.Add(d); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	o := DefaultOptions()
	o.Capacity, o.Registry = capacity, reg
	t, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < fill; i++ {
		k := benchKey(uint32(i))
		e, ok := t.Insert(&k, d, FwdMasq, 8080, 1)
		if !ok {
			b.Fatalf("fill %d/%d failed", i, fill)
		}
		t.Update(e, DirInput, TCPAck, 60, 1)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	return t, d, float64(m1.HeapAlloc-m0.HeapAlloc) / float64(capacity)
}

// cpuClock accumulates the benchmark thread's CPU time while running.
type cpuClock struct {
	b     *testing.B
	start time.Duration
	total time.Duration
}

func startCPU(b *testing.B) *cpuClock {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	return &cpuClock{b: b, start: threadCPU()}
}

func (c *cpuClock) pause()  { c.total += threadCPU() - c.start }
func (c *cpuClock) resume() { c.start = threadCPU() }

// report adds cpu-ns/op (and, with per > 1, cpu-ns/entry).
func (c *cpuClock) report(per int) {
	c.pause()
	if c.b.N == 0 {
		return
	}
	if per > 1 {
		c.b.ReportMetric(float64(c.total)/float64(c.b.N)/float64(per), "cpu-ns/entry")
		return
	}
	c.b.ReportMetric(float64(c.total)/float64(c.b.N), "cpu-ns/op")
}

// spread maps i onto [0, n) in a scattered order, so lookups miss the
// CPU caches as a real traffic mix does instead of walking memory.
func spread(i uint64, n int) uint32 {
	return uint32((uint64(uint32(i*0x9E3779B97F4A7C15>>32)) * uint64(n)) >> 32)
}

func BenchmarkLookupHit(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			t, _, perEntry := benchTable(b, n, n)
			b.ReportAllocs()
			var i uint64
			cpu := startCPU(b)
			for b.Loop() {
				k := benchKey(spread(i, n))
				if e, _ := t.Lookup(&k, 2); e == nil {
					b.Fatal("miss")
				}
				i++
			}
			cpu.report(1)
			b.ReportMetric(perEntry, "B/entry") // after b.Loop, which resets metrics
		})
	}
}

// BenchmarkLookupHitBatch is the dataplane's way: build the keys of a
// batch of 64 packets and resolve them with one LookupBatch. ns/op is per
// packet, key building included.
func BenchmarkLookupHitBatch(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			t, _, _ := benchTable(b, n, n)
			b.ReportAllocs()
			var keys [64]Key
			var hits [64]Hit
			var i uint64
			cpu := startCPU(b)
			defer cpu.report(1)
			for b.Loop() {
				j := i % 64
				if j == 0 {
					for x := range keys {
						keys[x] = benchKey(spread(i+uint64(x), n))
					}
					t.LookupBatch(keys[:], 2, hits[:])
				}
				if hits[j].Entry == nil {
					b.Fatal("miss")
				}
				i++
			}
		})
	}
}

// BenchmarkLookupReply looks NAT entries up by their reply key.
func BenchmarkLookupReply(b *testing.B) {
	for _, n := range benchSizes()[:2] {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			t, d, _ := benchTable(b, n, n)
			b.ReportAllocs()
			var i uint64
			cpu := startCPU(b)
			defer cpu.report(1)
			for b.Loop() {
				k := benchKey(spread(i, n))
				rk := Key{Src: d.Addr.As16(), SrcPort: 8080, Dst: k.Src, DstPort: k.SrcPort, Proto: ProtoTCP}
				if e, dir := t.Lookup(&rk, 2); e == nil || dir != DirOutput {
					b.Fatal("miss")
				}
				i++
			}
		})
	}
}

// BenchmarkMissInsert is the first packet of a connection: a Lookup that
// misses and an Insert, in a table holding n entries. When the extra room
// (n/4) is used up the benchmark removes what it added, off the clock.
func BenchmarkMissInsert(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			room := max(n/4, 1024)
			t, d, _ := benchTable(b, n+room, n)
			b.ReportAllocs()
			next, added := uint32(n), 0
			cpu := startCPU(b)
			defer cpu.report(1)
			for b.Loop() {
				if added == room {
					removeAdded(b, cpu, t, next, added)
					added = 0
				}
				k := benchKey(next)
				if e, _ := t.Lookup(&k, 2); e != nil {
					b.Fatal("hit")
				}
				if _, ok := t.Insert(&k, d, FwdMasq, 8080, 2); !ok {
					b.Fatal("full")
				}
				next++
				added++
			}
		})
	}
}

// removeAdded removes, off the clock, the added entries keyed
// next-added..next-1, so a miss benchmark keeps its table at n entries.
func removeAdded(b *testing.B, cpu *cpuClock, t *Table, next uint32, added int) {
	cpu.pause()
	b.StopTimer()
	for j := next - uint32(added); j < next; j++ {
		k := benchKey(j)
		e, _ := t.Lookup(&k, 2)
		t.Remove(e)
	}
	b.StartTimer()
	cpu.resume()
}

// BenchmarkMissNewConn is the same through NewConn: scheduling (a
// trivial round robin) and binding included.
func BenchmarkMissNewConn(b *testing.B) {
	for _, n := range benchSizes()[:3] {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			room := max(n/4, 1024)
			t, d, _ := benchTable(b, n+room, n)
			svc, err := NewService(ServiceOptions{Scheduler: &testRR{dests: []*sched.Dest{d}}, Proto: ProtoTCP, Port: 80, Netmask: 32, DefaultFwd: FwdMasq})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			next, added := uint32(n), 0
			cpu := startCPU(b)
			defer cpu.report(1)
			for b.Loop() {
				if added == room {
					removeAdded(b, cpu, t, next, added)
					added = 0
				}
				k := benchKey(next)
				if e, _ := t.Lookup(&k, 2); e != nil {
					b.Fatal("hit")
				}
				if _, v := t.NewConn(svc, &k, TCPSyn, 2); v != VerdictNew {
					b.Fatal(v)
				}
				next++
				added++
			}
		})
	}
}

// BenchmarkInsertFull is a new connection into a full table of
// unestablished entries: eviction plus insert (the SYN-flood steady
// state).
func BenchmarkInsertFull(b *testing.B) {
	for _, n := range benchSizes()[:3] {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			t, d, _ := benchTable(b, n, 0)
			for i := 0; i < n; i++ {
				k := benchKey(uint32(i))
				t.Insert(&k, d, FwdMasq, 8080, 1) // state NONE: evictable
			}
			b.ReportAllocs()
			next := uint32(n)
			cpu := startCPU(b)
			defer cpu.report(1)
			for b.Loop() {
				k := benchKey(next)
				if _, ok := t.Insert(&k, d, FwdMasq, 8080, 2); !ok {
					b.Fatal("full")
				}
				next++
			}
		})
	}
}

func BenchmarkUpdate(b *testing.B) {
	t, _, _ := benchTable(b, 1000, 1000)
	k := benchKey(7)
	e, _ := t.Lookup(&k, 2)
	b.ReportAllocs()
	cpu := startCPU(b)
	defer cpu.report(1)
	for b.Loop() {
		t.Update(e, DirInput, TCPAck, 1500, 3)
	}
}

// BenchmarkExpire removes n expired entries with one Expire call; the
// metric ns/entry is the cost per expired entry (unhashing both keys,
// unbinding the destination). BenchmarkSweepLive is the cost per live
// entry the sweep looks at and keeps.
func BenchmarkExpire(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			t, d, _ := benchTable(b, n, 0)
			b.ReportAllocs()
			var entries int
			cpu := startCPU(b)
			for b.Loop() {
				cpu.pause()
				b.StopTimer()
				for i := 0; i < n; i++ {
					k := benchKey(uint32(i))
					e, _ := t.Insert(&k, d, FwdMasq, 8080, 1)
					t.Update(e, DirInput, TCPAck, 60, 1)
				}
				b.StartTimer()
				cpu.resume()
				if got := t.Expire(int64(time.Hour)+2, n); got != n {
					b.Fatalf("expired %d, want %d", got, n)
				}
				entries += n
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(entries), "ns/entry")
			cpu.report(n)
		})
	}
}

func BenchmarkSweepLive(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			t, _, _ := benchTable(b, n, n)
			b.ReportAllocs()
			cpu := startCPU(b)
			for b.Loop() {
				if got := t.Expire(3, 1024); got != 0 {
					b.Fatal(got)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1024, "ns/entry")
			cpu.report(1024)
		})
	}
}

// BenchmarkHash compares the table's hash with xxhash over the same key.
func BenchmarkHash(b *testing.B) {
	var s seed
	for i := range s {
		s[i] = uint64(i+1) * 0x9E3779B97F4A7C15
	}
	b.Run("mum", func(b *testing.B) {
		var x uint64
		i := uint32(0)
		for b.Loop() {
			k := benchKey(i)
			x += s.hash(&k)
			i++
		}
		sink = x
	})
	b.Run("xxhash", func(b *testing.B) {
		var x uint64
		i := uint32(0)
		for b.Loop() {
			k := benchKey(i)
			x += xxhash.Sum64((*[40]byte)(unsafe.Pointer(&k))[:37])
			i++
		}
		sink = x
	})
}

var sink uint64
