//go:build linux

package conntrack

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU is the calling thread's CPU time. The benchmarks lock their
// goroutine to its thread and report CPU ns/op next to wall ns/op: the
// machine is shared, and wall time then also counts the time other
// processes had the core.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
