//go:build linux

package dataplane

import (
	"bytes"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/packet"
)

// frame builds a client → VIP TCP or UDP frame with the packettest
// builder.
func frame(t testing.TB, proto layers.IPProtocol, sport, dport uint16, syn, ack bool) []byte {
	t.Helper()
	var flags uint8
	if syn {
		flags |= packet.TCPFlagSYN
	}
	if ack {
		flags |= packet.TCPFlagACK
	}
	if proto == layers.IPProtocolTCP {
		return tcpTo(sport, dport, flags)
	}
	return udpTo(sport, dport)
}

// setResolved publishes a forwarding table with every destination's MAC
// resolved or not.
func setResolved(w *worker, ok bool) {
	fwd := slices.Clone(*w.dp.fwd.Load())
	for i := range fwd {
		if fwd[i].addr.IsValid() {
			fwd[i].macOK = ok
		}
	}
	w.dp.fwd.Store(&fwd)
}

// Frames for a destination whose MAC is not known yet are held, sent as
// soon as it resolves (the worker sees it at a batch's start), and a
// worker nudges the resolver once for it.
func TestWorkerHoldsUntilResolved(t *testing.T) {
	w, k := testWorker(t)
	w.dp.nudge = make(chan struct{}, 1)
	w.dp.want = make([]atomic.Uint64, 1)
	setResolved(w, false)
	var in [][]byte
	for i := 0; i < 3; i++ { // rr: one SYN to each real server
		in = append(in, frame(t, layers.IPProtocolTCP, uint16(40000+i), 80, true, false))
	}
	for _, f := range in {
		k.deliver(f)
	}
	w.poll(1)
	if len(k.sent) != 0 || w.stats.local[Held] != 3 || w.held.n != 3 {
		t.Fatalf("unresolved: sent %d, held %d (%d); want 0 sent, 3 held", len(k.sent), w.stats.local[Held], w.held.n)
	}
	select {
	case <-w.dp.nudge:
	default:
		t.Error("holding frames did not nudge the resolver")
	}
	if got := w.dp.want[0].Load(); got != 1<<1|1<<2|1<<3 {
		t.Errorf("want bits = %b, want destinations 1, 2, 3", got)
	}
	// Still unresolved: nothing goes, nothing expires.
	w.poll(2)
	if len(k.sent) != 0 || w.held.n != 3 {
		t.Fatalf("still unresolved: sent %d, %d held", len(k.sent), w.held.n)
	}
	setResolved(w, true)
	w.poll(3) // no new frame: the batch edge alone sends them
	if len(k.sent) != 3 || w.held.n != 0 || w.stats.local[HeldSent] != 3 || w.stats.local[TxFrames] != 3 {
		t.Fatalf("resolved: sent %d, %d still held, held_sent %d; want all 3 sent", len(k.sent), w.held.n, w.stats.local[HeldSent])
	}
	seen := map[[6]byte]bool{}
	for i, f := range k.sent {
		var dst [6]byte
		copy(dst[:], f[:6])
		seen[dst] = true
		want := bytes.Clone(in[i])
		packet.DecrementTTLWithChecksumUpdate(want[14:], 4) // as every IPVS method does
		if !bytes.Equal(f[6:12], directorMAC[:]) || !bytes.Equal(f[12:], want[12:]) {
			t.Errorf("held frame %d not rewritten for DR: %x", i, f[:14])
		}
	}
	for _, m := range realMACs {
		if !seen[m] {
			t.Errorf("no held frame went to %x; sent to %v", m, seen)
		}
	}
	if w.stats.local[NoNeighbour] != 0 {
		t.Errorf("no_neighbour = %d, want 0", w.stats.local[NoNeighbour])
	}
	w.q.reap()
	if got := len(*w.q.free) + k.inFlight(); got != 1024 {
		t.Errorf("frames accounted for = %d, want 1024", got)
	}
}

// The hold is bounded per destination, and held frames expire after
// holdTimeout; both are counted, and no UMEM frame is lost.
func TestWorkerHoldBoundedAndExpires(t *testing.T) {
	w, k := testWorker(t)
	setResolved(w, false)
	k.deliver(frame(t, layers.IPProtocolUDP, 5353, 53, false, false))
	w.poll(1) // the flow's entry, its destination chosen
	for i := 0; i < 9; i++ {
		k.deliver(frame(t, layers.IPProtocolUDP, 5353, 53, false, false))
	}
	w.poll(2)
	if w.held.n != holdPerDest || w.stats.local[HoldFull] != 10-holdPerDest {
		t.Errorf("10 frames of one flow: %d held, %d overflowed; want %d, %d", w.held.n, w.stats.local[HoldFull], holdPerDest, 10-holdPerDest)
	}
	w.poll(1 + holdTimeout - 1)
	if w.held.n != holdPerDest {
		t.Errorf("before the timeout: %d held, want %d", w.held.n, holdPerDest)
	}
	w.poll(2 + holdTimeout)
	if w.held.n != 0 || w.stats.local[HoldExpired] != holdPerDest {
		t.Errorf("after the timeout: %d held, %d expired; want 0, %d", w.held.n, w.stats.local[HoldExpired], holdPerDest)
	}
	if got, want := w.stats.local[NoNeighbour], uint64(10); got != want {
		t.Errorf("no_neighbour = %d, want %d (overflowed + expired)", got, want)
	}
	if len(k.sent) != 0 {
		t.Errorf("sent %d frames to an unresolved destination", len(k.sent))
	}
	if got := len(*w.q.free) + k.inFlight(); got != 1024 {
		t.Errorf("frames accounted for = %d, want 1024", got)
	}
	if w.waitMs() != idleWaitMs {
		t.Errorf("with nothing held the worker sleeps %d ms, want %d", w.waitMs(), idleWaitMs)
	}
}

// Holding and sending held frames allocates nothing.
func TestWorkerHoldAllocs(t *testing.T) {
	w, k := testWorker(t)
	k.keep = false
	var frames [][]byte
	for i := 0; i < 12; i++ {
		frames = append(frames, frame(t, layers.IPProtocolTCP, uint16(30000+i), 80, true, false))
	}
	unresolved := slices.Clone(*w.dp.fwd.Load())
	resolved := slices.Clone(unresolved)
	for i := range unresolved {
		unresolved[i].macOK = false
	}
	port := uint16(30000)
	now := int64(1)
	allocs := testing.AllocsPerRun(100, func() {
		w.dp.fwd.Store(&unresolved)
		for _, f := range frames {
			port++
			f[14+20], f[14+21] = byte(port>>8), byte(port)
			k.deliver(f)
		}
		now++
		w.poll(now)
		w.dp.fwd.Store(&resolved)
		now++
		w.poll(now)
	})
	if allocs != 0 {
		t.Errorf("hold and release of 12 frames: %v allocations, want 0", allocs)
	}
	if w.stats.local[Held] == 0 || w.stats.local[HeldSent] != w.stats.local[Held] {
		t.Errorf("held %d, sent %d: want all held frames sent", w.stats.local[Held], w.stats.local[HeldSent])
	}
}

// downKernel is the fake kernel of an interface that is down: sendto(2)
// says ENETDOWN and takes nothing from the TX ring.
type downKernel struct {
	*fakeKernel
	down bool
}

func (k *downKernel) kick() error {
	if k.down {
		return errNetDown
	}
	return k.fakeKernel.kick()
}

// A kick refused with ENETDOWN is counted (a dead link shows), not taken
// for success, and the frames go once the link is up again.
func TestWorkerLinkDownCounted(t *testing.T) {
	w, k := testWorker(t)
	dk := &downKernel{fakeKernel: k, down: true}
	w.q.sys = dk
	k.deliver(frame(t, layers.IPProtocolTCP, 40000, 80, true, false))
	w.poll(1)
	w.publish()
	if w.stats.local[LinkDown] == 0 || len(k.sent) != 0 {
		t.Fatalf("link down: link_down %d, sent %d; want counted, nothing sent", w.stats.local[LinkDown], len(k.sent))
	}
	if w.stats.local[KickErrors] != 0 {
		t.Errorf("kick_errors = %d, want ENETDOWN counted only as link_down", w.stats.local[KickErrors])
	}
	// Enough frames to fill the TX ring (256) and make a backlog: with
	// the link down the worker must not spin on it (poll says 0, so the
	// worker sleeps in poll(2)).
	for i := 0; i < 6; i++ {
		for j := 0; j < 64; j++ {
			k.deliver(frame(t, layers.IPProtocolUDP, uint16(1000+i*64+j), 53, false, false))
		}
		w.poll(2)
	}
	if len(w.q.backlog) == 0 {
		t.Fatal("no backlog built up")
	}
	if n := w.poll(3); n != 0 {
		t.Errorf("link down with a backlog of %d: poll = %d, want 0 (nothing can progress)", len(w.q.backlog), n)
	}
	dk.down = false
	for i := 0; i < 10 && len(w.q.backlog) > 0; i++ {
		w.poll(4)
	}
	if len(k.sent) != 1+6*64 || len(w.q.backlog) != 0 {
		t.Errorf("link up again: sent %d frames, backlog %d; want all %d sent", len(k.sent), len(w.q.backlog), 1+6*64)
	}
}

// A worker holds at most holdMax frames in all; the next one is dropped
// and counted.
func TestWorkerHoldWorkerBound(t *testing.T) {
	w, k := testWorker(t)
	setResolved(w, false)
	// Fill the hold with frames of some other unresolved destination.
	for w.held.n < holdMax {
		addr := (*w.q.free)[len(*w.q.free)-1]
		*w.q.free = (*w.q.free)[:len(*w.q.free)-1]
		w.held.frames[w.held.n] = heldFrame{desc: unix.XDPDesc{Addr: addr, Len: 60}, id: 9, at: 1}
		w.held.n++
	}
	k.deliver(frame(t, layers.IPProtocolTCP, 40000, 80, true, false))
	w.poll(2)
	if w.held.n != holdMax || w.stats.local[HoldFull] != 1 || w.stats.local[NoNeighbour] != 1 {
		t.Errorf("hold full: %d held, hold_full %d, no_neighbour %d; want %d, 1, 1",
			w.held.n, w.stats.local[HoldFull], w.stats.local[NoNeighbour], holdMax)
	}
	if w.waitMs() != holdWaitMs {
		t.Errorf("holding frames, the worker sleeps %d ms, want %d", w.waitMs(), holdWaitMs)
	}
}
