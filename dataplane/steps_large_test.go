package dataplane

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xlbproject/xlb/sched"
)

// TestKernelStepsLarge: restoring a service of 50,000 destinations (a
// rules file at start-up) replays the kernel's sequential adds in linear
// time and memory; the quadratic version took minutes and gigabytes.
func TestKernelStepsLarge(t *testing.T) {
	const n = 50000
	next := make([]*sched.Dest, n)
	for i := range next {
		next[i] = sched.NewDest(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 80, int32(1+i%7))
	}
	for _, name := range []string{"wrr", "rr"} {
		s, err := sched.New(name, sched.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		steps := kernelSteps(nil, next)
		if len(steps) != n {
			t.Fatalf("%d steps, want %d", len(steps), n)
		}
		sched.UpdateSteps(s, steps)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s: %d sequential adds took %v", name, n, took)
		}
	}
}
