package dataplane

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// With need_wakeup, a TX batch is kicked only while the kernel's flag on
// the TX ring asks for it (a zero-copy driver whose NAPI is sending
// clears it); without the flag word (bound without need_wakeup) every
// batch is.
func TestQueueKicksOnlyWhenTheKernelNeedsIt(t *testing.T) {
	k, q := newFakeKernel(64, 2048, 16)
	q.refill()
	send := func() {
		if !k.deliver([]byte("frame")) {
			t.Fatal("fake kernel could not deliver")
		}
		echo(q)
	}
	send()
	if k.kicks != 1 {
		t.Fatalf("without a flag word: %d kicks for one batch, want 1", k.kicks)
	}
	var flags uint32
	q.tx.flags = &flags
	send()
	if k.kicks != 1 {
		t.Errorf("flag clear: %d kicks, want still 1 (no sendto while the kernel is sending)", k.kicks)
	}
	k.kick() // the driver's NAPI sends it
	atomic.StoreUint32(&flags, unix.XDP_RING_NEED_WAKEUP)
	send()
	if k.kicks != 3 {
		t.Errorf("flag set: %d kicks, want 3", k.kicks)
	}
	if len(k.sent) != 3 {
		t.Errorf("kernel sent %d frames, want 3", len(k.sent))
	}
}

// An empty RX ring costs a recvfrom only when the kernel needs one: the
// fill ring's need_wakeup flag, or a busy-polling socket, whose NAPI the
// worker's syscalls run.
func TestQueuePeekWakes(t *testing.T) {
	k, q := newFakeKernel(64, 2048, 16)
	q.refill()
	if n := q.peek(); n != 0 || k.wakes != 0 {
		t.Fatalf("no flag word, not busy: peek = %d with %d wakes, want 0, 0", n, k.wakes)
	}
	var flags uint32
	q.fill.flags = &flags
	q.peek()
	if k.wakes != 0 {
		t.Errorf("fill flag clear: %d wakes, want 0", k.wakes)
	}
	atomic.StoreUint32(&flags, unix.XDP_RING_NEED_WAKEUP)
	q.peek()
	if k.wakes != 1 {
		t.Errorf("fill flag set: %d wakes, want 1", k.wakes)
	}
	atomic.StoreUint32(&flags, 0)
	q.busy = true
	q.peek()
	if k.wakes != 2 {
		t.Errorf("busy polling: %d wakes, want 2", k.wakes)
	}
	k.deliver([]byte("frame"))
	if n := q.peek(); n != 1 || k.wakes != 2 {
		t.Errorf("frames waiting: peek = %d with %d wakes, want 1 and no new wake", n, k.wakes)
	}
}

// The spin policy: a flood and request/response traffic whose frames come
// closer together than the spin limit keep the worker polling; a trickle
// makes it sleep after each frame; one long pause does not stop it from
// spinning for long once frames come close together again; a worker that
// slept (whose wake-up makes every gap it sees look longer) spins again
// as soon as request/response traffic comes.
func TestSpinner(t *testing.T) {
	const us = int64(1000)
	max := 50 * us
	// run feeds frames every gap ns for count frames, polling empty every
	// µs in between as the loop would while it spins, and returns the
	// share of the time spent spinning between frames. A worker that
	// sleeps finds the next frame wake ns after it came.
	run := func(s *spinner, now *int64, gap, wake int64, count int) float64 {
		spun := int64(0)
		for i := 0; i < count; i++ {
			s.found(*now)
			next := *now + gap
			t := *now + us
			for ; t < next; t += us {
				if !s.spin(t) {
					next += wake // sleeps until the next frame, and wakes up
					break
				}
				spun += us
			}
			*now = next
		}
		return float64(spun) / float64(gap*int64(count))
	}
	s := newSpinner(time.Duration(max))
	now := int64(1)
	if got := run(&s, &now, 1000*us, 0, 100); got > 0.01 {
		t.Errorf("1k pps: spun %.0f%% of the time, want ~0", 100*got)
	}
	if got := run(&s, &now, 30*us, 0, 200); got < 0.9 {
		t.Errorf("request/response every 30 µs: spun %.0f%% of the time, want ~100%%", 100*got)
	}
	if got := run(&s, &now, 2*us, 0, 200); got < 0.4 {
		t.Errorf("flood: spun %.0f%% of the time, want about half (polls every µs, frames every 2)", 100*got)
	}
	// Bursts of 50 frames 5 µs apart every 2 ms: spins through each
	// burst, and about half a window after it.
	for range 20 {
		if got := run(&s, &now, 5*us, 0, 50); got < 0.75 {
			t.Errorf("within a burst: spun %.0f%% of the time, want most", 100*got)
			break
		}
		now += 2000 * us
	}
	run(&s, &now, 10_000_000*us, 0, 1) // a 10 s pause
	if got := run(&s, &now, 30*us, 0, 20); got < 0.5 {
		t.Errorf("after a pause, 20 frames 30 µs apart: spun %.0f%% of the time, want most", 100*got)
	}
	// With wake-ups of 40 µs: a trickle sleeps, 100 µs gaps (beyond the
	// spin) too, and round trips 30 µs apart after the trickle spin
	// again at once rather than pay the wake-up each.
	if got := run(&s, &now, 1000*us, 40*us, 100); got > 0.01 {
		t.Errorf("1k pps, 40 µs wake-ups: spun %.0f%% of the time, want ~0", 100*got)
	}
	if got := run(&s, &now, 100*us, 40*us, 100); got > 0.05 {
		t.Errorf("10k pps, 40 µs wake-ups: spun %.0f%% of the time, want ~0", 100*got)
	}
	if got := run(&s, &now, 30*us, 40*us, 100); got < 0.9 {
		t.Errorf("round trips every 30 µs after a trickle, 40 µs wake-ups: spun %.0f%% of the time, want ~100%%", 100*got)
	}
	// A trickle with catch-up pairs (every fifth frame 1 ms late, then
	// another 3 µs after it): a pair buys one spin, not also the
	// halvings after it.
	spun, total := 0.0, int64(0)
	for range 50 {
		spun += run(&s, &now, 1000*us, 40*us, 4) * float64(4*1000*us)
		spun += run(&s, &now, 3*us, 40*us, 1) * float64(3*us)
		total += 4*1000*us + 3*us
	}
	if got := spun / float64(total); got > 0.015 {
		t.Errorf("1k pps with catch-up pairs: spun %.2f%% of the time, want < 1.5%% (one 50 µs spin per pair)", 100*got)
	}
	off := newSpinner(0)
	if off.spin(now) {
		t.Error("spin limit 0: spins, want never")
	}
}

func TestSocketOptionsTuning(t *testing.T) {
	for _, c := range []struct {
		o    func(*SocketOptions)
		want string
	}{
		{func(o *SocketOptions) { o.TxBudget = 16 }, "invalid TX budget 16"},
		{func(o *SocketOptions) { o.TxBudget = 4096 }, "invalid TX budget 4096"},
		{func(o *SocketOptions) { o.BusyPoll = -1 }, "invalid busy polling -1"},
		{func(o *SocketOptions) { o.BusyPoll, o.BusyPollBudget = 20, 1<<16 }, "invalid busy polling 20"},
		{func(o *SocketOptions) { o.TxBudget, o.BusyPoll = 0, 20 }, ""},
	} {
		o := DefaultSocketOptions()
		c.o(&o)
		err := o.validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("validate(%+v) = %v, want %q", o, err, c.want)
		}
	}
}
