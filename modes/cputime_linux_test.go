//go:build linux

package modes

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestXmitCPUTime prints each rewrite's thread CPU time per frame, a
// figure that a loaded machine inflates less than BenchmarkXmit's wall
// time. Run with XLB_CPUTIME=1 go test -run TestXmitCPUTime -v ./modes.
func TestXmitCPUTime(t *testing.T) {
	if os.Getenv("XLB_CPUTIME") == "" {
		t.Skip("set XLB_CPUTIME=1 to measure")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := func() int64 {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
			t.Fatal(err)
		}
		return ts.Nano()
	}
	const n = 1 << 20
	var copyNs float64
	for _, c := range append([]golden{{name: "copy only"}}, goldenCases()...) {
		if c.name != "copy only" && (c.verdict != OK || strings.Contains(c.name, ",") && !strings.Contains(c.name, "port mapping")) {
			continue
		}
		in := families[0].syn().Frame()
		if c.name != "copy only" {
			in = c.in.Frame()
		}
		f0, m0 := place(t, in, c.room)
		p := c.plan
		best := 1e9
		for range 5 {
			start := cpu()
			for range n {
				copy(f0.Buf[f0.Off:], in)
				f, m := f0, m0
				if c.name != "copy only" {
					Xmit(&f, &m, &p, c.dir)
				}
			}
			best = min(best, float64(cpu()-start)/n)
		}
		if c.name == "copy only" {
			copyNs = best
		}
		t.Logf("%-45s %5.1f ns/frame (%5.1f less the copy)", c.name, best, best-copyNs)
	}
}
