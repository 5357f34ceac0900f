package conntrack

import (
	"context"
	"sync"
	"testing"
	"time"
)

// slowWorker is a dataplane worker with no traffic at the pace the
// daemon's idle loop had before Dumping existed: one Expire of budget 64
// every 100 ms. What the table does for a Dump and for expiry must not
// depend on the worker calling it more often.
func slowWorker(t *Table, clk func() int64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			t.Expire(clk(), 64)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// flood fills f's table with n UDP entries inserted at now.
func (f *fixture) flood(tb testing.TB, n int, now int64) {
	tb.Helper()
	for i := range uint32(n) {
		k := clientKey(ProtoUDP, i, 53)
		if e, ok := f.t.Insert(&k, f.dests[i%uint32(len(f.dests))], FwdRoute, 53, now); !ok {
			tb.Fatalf("insert %d: %v", i, e)
		}
	}
}

// TestDumpAfterFloodIdle is issue 12's finding: after the table once held
// 100k entries and they expired, a listing scanned to the high-water mark
// at 2,048 entries per Expire call, one call per 100 ms on an idle worker,
// and ran into its deadline with 0 entries to list.
func TestDumpAfterFloodIdle(t *testing.T) {
	for _, live := range []int{0, 1, 300} {
		f := newFixture(t, 100_000, 3, nil)
		f.flood(t, 100_000, f.clk.now)
		now := f.clk.advance(301 * time.Second) // past the UDP timeout
		for f.t.Len() > 0 {
			f.t.Expire(now, 1<<20)
		}
		if live > 0 {
			// A few entries high in the array: the free list hands out the
			// most recently freed, the top of the table, first.
			for i := range uint32(live) {
				k := clientKey(ProtoUDP, 200_000+i, 53)
				f.t.Insert(&k, f.dests[0], FwdRoute, 53, now)
			}
		}
		f.checkCounts(t)
		stop := slowWorker(f.t, func() int64 { return now })
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		start := time.Now()
		n := 0
		err := f.t.Dump(ctx, func(*Entry, int64) error { n++; return nil })
		took := time.Since(start)
		cancel()
		stop()
		if err != nil || n != live {
			t.Fatalf("%d live after 100k: Dump = %v with %d entries after %v, want %d entries", live, err, n, took, live)
		}
		t.Logf("%d live after 100k: listed in %v", live, took)
	}
}

// TestIdleSweepExpiresWithinOnePass: Expire calls adding up to SweepCost
// examine every entry, however sparse the table, so an idle worker that
// makes them once per pass removes every dead entry from its destination's
// counts within a pass of its timeout.
func TestIdleSweepExpiresWithinOnePass(t *testing.T) {
	f := newFixture(t, 1<<17, 3, func(o *Options) {
		o.Timeouts = DefaultTimeouts()
		o.Timeouts.UDP = time.Second
	})
	start := f.clk.now
	f.flood(t, 100_000, start)
	// A sparse table: the even entries end, the odd ones get a packet
	// 10 s later and live on.
	now := f.clk.advance(10 * time.Second)
	for i := uint32(1); i < 100_000; i += 2 {
		k := clientKey(ProtoUDP, i, 53)
		e, _ := f.t.Lookup(&k, start) // found, not yet expired at start
		f.t.Update(e, DirInput, 0, 100, now)
	}
	// Half a second before the timeout of the odd ones, 9.5 s past the
	// even ones': one pass in idle chunks takes exactly the even ones.
	now = f.clk.advance(500 * time.Millisecond)
	sweep := func() (calls int) {
		for left := f.t.SweepCost(); left > 0; left -= 4096 {
			f.t.Expire(now, min(left, 4096))
			calls++
		}
		return calls
	}
	calls := sweep()
	if f.t.Len() != 50_000 {
		t.Fatalf("after one pass (%d calls): %d entries, want 50000", calls, f.t.Len())
	}
	f.checkCounts(t)
	var inact int32
	for _, d := range f.dests {
		inact += d.InactConns()
	}
	if inact != 50_000 {
		t.Fatalf("inactive connections %d, want 50000", inact)
	}
	now = f.clk.advance(600 * time.Millisecond)
	calls = sweep()
	if f.t.Len() != 0 {
		t.Fatalf("after the second pass (%d calls): %d entries, want 0", calls, f.t.Len())
	}
	f.checkCounts(t)
	// An empty table once full costs a pass of Capacity/64 words.
	if c := f.t.SweepCost(); c > 1<<17/64+1 {
		t.Errorf("SweepCost of an empty table = %d, want ≤ %d", c, 1<<17/64+1)
	}
}

// BenchmarkDumpAfterFlood measures a listing of an empty table that once
// held all its entries, and an idle pass over it.
func BenchmarkDumpAfterFlood(b *testing.B) {
	for _, size := range []int{100_000, 1_000_000} {
		b.Run(itoa(size), func(b *testing.B) {
			f := newFixture(b, size, 3, nil)
			f.flood(b, size, f.clk.now)
			now := f.clk.advance(301 * time.Second)
			start := time.Now()
			for left := f.t.SweepCost(); left > 0; left -= 4096 {
				f.t.Expire(now, min(left, 4096))
			}
			expired := float64(time.Since(start).Nanoseconds()) / float64(size)
			if f.t.Len() != 0 {
				b.Fatalf("%d entries left after one pass", f.t.Len())
			}
			stop := worker(f.t, now)
			defer stop()
			b.ResetTimer()
			for range b.N {
				if err := f.t.Dump(context.Background(), func(*Entry, int64) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(expired, "ns/expired")
		})
	}
}

func itoa(n int) string {
	if n >= 1_000_000 {
		return string(rune('0'+n/1_000_000)) + "M"
	}
	return string(rune('0'+n/100_000)) + "00k"
}
