//go:build linux

package dataplane

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU measures the CPU time of a benchmark's own thread: on a
// machine shared with other work, wall time per frame counts the time
// the benchmark waited for a CPU (2-3× on a 2-core VM at load 10), thread
// CPU time does not. startThreadCPU locks the goroutine to its thread
// until the benchmark ends.
type threadCPU struct {
	b     *testing.B
	start int64
}

func startThreadCPU(b *testing.B) *threadCPU {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	return &threadCPU{b: b, start: threadNow(b)}
}

func threadNow(b *testing.B) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return ts.Nano()
}

// report adds the metric cpu-ns/unit: the thread's CPU time since start
// over n units.
func (c *threadCPU) report(n int, unit string) {
	if n > 0 {
		c.b.ReportMetric(float64(threadNow(c.b)-c.start)/float64(n), "cpu-ns/"+unit)
	}
}

// BenchmarkQueueEcho is the floor under the worker benchmarks: the fake
// kernel delivering 64-frame batches of 60-byte frames (a copy each, as
// the kernel's copy mode makes) and draining the TX ring, and the queue's
// own ring work (refill, reap, RX and TX descriptors), with no parsing or
// forwarding decision. BenchmarkWorkerPoll less this is the worker's own
// per-frame cost.
func BenchmarkQueueEcho(b *testing.B) {
	k, q := newFakeKernel(1024, 2048, 256)
	k.keep = false
	q.refill()
	frame := tcpTo(20000, 80, ack)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startThreadCPU(b)
	n := 0
	for b.Loop() {
		for range maxBatch {
			k.deliver(frame)
		}
		n += echo(q)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/frame")
	cpu.report(n, "frame")
}

// pollTimer measures the worker's own share of a benchmark: the wall time
// of each w.poll call (parse, lookup, state, rewrite, counters, the
// rings, and the fake kernel's TX drain, which is a few ns a frame), not
// the fake kernel's delivery before it. It reports the median over the
// batches, per frame, as worker-ns/frame: the median is robust to the
// waits for a CPU that a loaded machine adds to some batches. Reading the
// clock costs ~170 ns on this VM (time.Now); the median of an empty
// window is subtracted. Not every batch is timed (pollTimerEvery). It
// does not allocate.
type pollTimer struct {
	hist   [4096]uint32 // per-frame time of a batch, in quarter ns
	empty  [4096]uint32 // an empty window, in ns
	n      int          // batches
	frames int
	calls  int
}

// pollTimerEvery is how often pollTimer times a batch: one in 8 keeps
// the clock's cost out of the benchmark's other figures (~1 ns a frame).
const pollTimerEvery = 8

// poll is w.poll(now), timed one call in pollTimerEvery.
func (t *pollTimer) poll(w *worker, now int64) int {
	if t.calls++; t.calls%pollTimerEvery != 0 {
		return w.poll(now)
	}
	t0 := time.Now()
	e := time.Since(t0)
	t1 := time.Now()
	n := w.poll(now)
	d := time.Since(t1)
	t.empty[min(int(e), len(t.empty)-1)]++
	if n > 0 {
		t.hist[min(int(4*d)/n, len(t.hist)-1)]++
		t.n++
		t.frames += n
	}
	return n
}

// report adds the metric worker-ns/unit.
func (t *pollTimer) report(b *testing.B, unit string) {
	if t.n == 0 {
		return
	}
	median := func(h []uint32) int {
		var total, seen uint64
		for _, c := range h {
			total += uint64(c)
		}
		for i, c := range h {
			if seen += uint64(c); 2*seen >= total {
				return i
			}
		}
		return len(h) - 1
	}
	perBatch := float64(t.frames) / float64(t.n)
	b.ReportMetric(float64(median(t.hist[:]))/4-float64(median(t.empty[:]))/perBatch, "worker-ns/"+unit)
}
