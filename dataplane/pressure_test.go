//go:build linux

package dataplane

import (
	"errors"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/bpf"
)

const ms = int64(1_000_000)

// The pressure level rises at once on overload, to level 2 only if the
// rings stay overloaded for escalateNs at level 1, never to 2 on
// evictions alone, and falls one level per holdNs without overload; every
// change, and only a change, is published.
func TestSYNLevels(t *testing.T) {
	var published []bpf.SYNLevel
	g := synGuard{set: func(l bpf.SYNLevel) error { published = append(published, l); return nil }}
	steps := []struct {
		over, flooded bool
		at            int64
		want          bpf.SYNLevel
	}{
		{false, false, 1 * ms, bpf.SYNAdmit},
		{true, false, 2 * ms, bpf.SYNLimit},
		{true, false, 3 * ms, bpf.SYNLimit},       // not yet escalateNs at level 1
		{false, true, 100 * ms, bpf.SYNLimit},     // evictions never escalate
		{true, false, 120 * ms, bpf.SYNKnownOnly}, // ring still overloaded
		{true, false, 400 * ms, bpf.SYNKnownOnly},
		{false, false, 800 * ms, bpf.SYNKnownOnly}, // calm for less than holdNs
		{false, false, 901 * ms, bpf.SYNLimit},
		{false, false, 1300 * ms, bpf.SYNLimit},
		{false, false, 1402 * ms, bpf.SYNAdmit},
		{false, true, 1500 * ms, bpf.SYNLimit}, // a flood the worker keeps up with
		{false, false, 1900 * ms, bpf.SYNLimit},
		{false, true, 1950 * ms, bpf.SYNLimit}, // holds the level
		{false, false, 2451 * ms, bpf.SYNAdmit},
	}
	for i, s := range steps {
		g.check(s.over, s.flooded, s.at)
		if g.level != s.want {
			t.Fatalf("step %d (over %v, flooded %v, %d ms): level %d, want %d", i, s.over, s.flooded, s.at/ms, g.level, s.want)
		}
	}
	want := []bpf.SYNLevel{1, 2, 1, 0, 1, 0}
	if len(published) != len(want) {
		t.Fatalf("published %v, want %v", published, want)
	}
	for i := range want {
		if published[i] != want[i] {
			t.Fatalf("published %v, want %v", published, want)
		}
	}
	if g.raises != 3 {
		t.Errorf("raises = %d, want 3", g.raises)
	}

	// Level 1 stays while the XDP program refuses a flood's SYNs.
	refused := uint64(0)
	h := synGuard{refused: func() (uint64, error) { return refused, nil }}
	h.check(true, false, 1*ms) // level 1; counting starts at 0
	refused += refusedFlood + 1
	h.check(false, false, 600*ms)
	if h.level != bpf.SYNLimit {
		t.Fatalf("refusing %d SYNs per hold: level %d, want 1", refusedFlood+1, h.level)
	}
	refused += refusedFlood
	h.check(false, false, 1200*ms)
	if h.level != bpf.SYNAdmit {
		t.Fatalf("refusing %d SYNs per hold: level %d, want 0", refusedFlood, h.level)
	}

	// A failed publication keeps the old level and is retried.
	fail := synGuard{set: func(bpf.SYNLevel) error { return errors.New("no map") }}
	fail.check(true, false, ms)
	if fail.level != bpf.SYNAdmit || fail.errs != 1 {
		t.Errorf("after a failed publication: level %d, errs %d; want 0, 1", fail.level, fail.errs)
	}
}

func TestSYNGuardFlooded(t *testing.T) {
	var g synGuard
	if g.flooded(evictBurst, 1*ms) {
		t.Error("evictBurst evictions: flooded, want not")
	}
	if !g.flooded(evictBurst+1, 2*ms) {
		t.Error("evictBurst+1 evictions within the window: not flooded")
	}
	// A slow trickle of evictions never adds up to a flood.
	n := uint64(evictBurst + 1)
	for at := 3 * ms; at < 1000*ms; at += evictWindowNs / 4 {
		n += evictBurst / 8
		if g.flooded(n, at) {
			t.Fatalf("%d evictions per %d ms: flooded at %d ms", evictBurst/8, evictWindowNs/4/ms, at/ms)
		}
	}
}

// A worker whose RX ring fills beyond a quarter raises its level at the
// next batch edge, and it counts so.
func TestWorkerRaisesSYNGuard(t *testing.T) {
	w, k := testWorker(t)
	var published []bpf.SYNLevel
	w.guard.set = func(l bpf.SYNLevel) error { published = append(published, l); return nil }
	w.poll(1)
	if len(published) != 0 {
		t.Fatalf("idle worker published %v", published)
	}
	f := frame(t, layers.IPProtocolTCP, 40000, 80, true, false)
	for i := uint32(0); i <= k.rx.size/4; i++ {
		if !k.deliver(f) {
			t.Fatal("fake kernel could not deliver")
		}
	}
	w.poll(2)
	if len(published) != 1 || published[0] != bpf.SYNLimit {
		t.Fatalf("after a quarter ring: published %v, want [1]", published)
	}
	var q QueueStats
	w.stats.snapshot(&q)
	st := q.Counters
	if st[SYNLevel] != 1 || st[SYNRaises] != 1 {
		t.Errorf("counters: level %d, raises %d; want 1, 1", st[SYNLevel], st[SYNRaises])
	}
}

// Ring overload from bulk traffic on established connections does not
// raise the level; overload while the frames are handshakes does.
func TestSYNGuardBulkLoad(t *testing.T) {
	var g synGuard
	if g.bulkLoad(0, 0, 1*ms) {
		t.Fatal("no history: bulk, want not")
	}
	// 10k frames, 10 connections opened (an iperf3 stream).
	if !g.bulkLoad(10_000, 10, 12*ms) {
		t.Fatal("10k frames opening 10 connections: not bulk")
	}
	// Within the window the verdict stays.
	if !g.bulkLoad(10_000, 5_000, 15*ms) {
		t.Fatal("verdict changed within a window")
	}
	// The next window: 10k frames, half of them SYNs.
	if g.bulkLoad(20_000, 5_010, 23*ms) {
		t.Fatal("10k frames opening 5k connections: bulk, want not")
	}
	// A few frames are no evidence either way: overload counts.
	if g.bulkLoad(20_010, 5_010, 34*ms) {
		t.Fatal("10 frames: bulk, want not")
	}
	// Non-keep-alive HTTP (one connection per 5 frames) is not bulk.
	if g.bulkLoad(20_510, 5_110, 45*ms) {
		t.Fatal("one connection per 5 frames: bulk, want not")
	}
}

// A worker whose ring fills with frames of established connections,
// after a window of the same, leaves the SYN level alone.
func TestWorkerBulkKeepsSYNLevel(t *testing.T) {
	w, k := testWorker(t)
	var published []bpf.SYNLevel
	w.guard.set = func(l bpf.SYNLevel) error { published = append(published, l); return nil }
	syn := frame(t, layers.IPProtocolTCP, 40000, 80, true, false)
	ack := frame(t, layers.IPProtocolTCP, 40000, 80, false, true)
	k.deliver(syn)
	w.poll(1)
	for i := 0; i < 8; i++ { // established traffic the worker keeps up with
		for j := 0; j < 32; j++ {
			k.deliver(ack)
		}
		w.poll(int64(i+2) * ms)
	}
	for round := int64(0); round < 3; round++ {
		for i := uint32(0); i <= k.rx.size/4; i++ {
			if !k.deliver(ack) {
				t.Fatal("fake kernel could not deliver")
			}
		}
		now := (round + 2) * mixWindowNs
		for i := 0; i < 100 && w.poll(now) > 0; i++ {
		}
	}
	if w.stats.local[ConnHit] == 0 {
		t.Fatal("no frame matched the connection")
	}
	if len(published) != 0 {
		t.Fatalf("bulk traffic published SYN levels %v", published)
	}
}
