//go:build linux

package dataplane

import (
	"runtime"
	"testing"

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
