//go:build linux

package dataplane

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// handoffRing carries frames from one worker (the producer) to another
// (the consumer, the frames' owner; see owner.go): a single-producer
// single-consumer ring of fixed-size slots, each a copy of one frame with
// its offset in its UMEM chunk and the interface slot it came in on.
// It is DPVS's per-(core, peer) rte_ring of ip_vs_redirect.c, with the
// frame's bytes copied instead of a pointer passed, because each worker
// has its own UMEM (socket.go) and a UMEM frame must go back to the
// socket it came from.
//
// Only head and tail are shared, and each has one writer:
//
//	head  written by the producer (Store in publish), read by the consumer (peek)
//	tail  written by the consumer (Store in release), read by the producer (push, when full)
//
// A slot is written by the producer before the head Store that publishes
// it and read by the consumer after the head Load that sees it, and not
// written again before the consumer's tail Store gives it back: the
// atomics order the plain slot accesses (Go's memory model, and the race
// detector, treat them as synchronising). The producer publishes once per
// batch and the consumer releases once per drain: atomics at batch edges
// only, as on the AF_XDP rings (ring.go).
type handoffRing struct {
	_    [64]byte
	head atomic.Uint32
	_    [60]byte
	tail atomic.Uint32
	_    [60]byte
	// The producer's: prod is its head, published or not; seenTail its
	// last look at tail; pub the head it last published.
	prod, seenTail, pub uint32
	_                   [52]byte
	// The consumer's: cons is its tail, seenHead its last look at head.
	cons, seenHead uint32
	_              [56]byte

	size, mask uint32
	slotSize   int
	meta       []handoffMeta
	data       []byte // size slots of slotSize bytes
	// wake is the consumer's, poked after a publish while it sleeps.
	wake *wakeup
}

// handoffMeta describes the frame in a slot.
type handoffMeta struct {
	off uint32 // the frame's offset in its UMEM chunk (its headroom)
	len uint32
	in  uint16 // the interface slot it came in on
}

// newHandoffRing makes a ring of size slots (a power of two) of slotSize
// bytes each.
func newHandoffRing(size uint32, slotSize int, wake *wakeup) *handoffRing {
	return &handoffRing{size: size, mask: size - 1, slotSize: slotSize,
		meta: make([]handoffMeta, size), data: make([]byte, int(size)*slotSize), wake: wake}
}

// push copies frame b, at offset off in its chunk, received on interface
// slot in, into the next slot; false when the ring is full (the caller
// counts the drop) or b does not fit a slot. Producer only; the frame is
// visible to the consumer after the next publish.
func (r *handoffRing) push(b []byte, off int, in uint16) bool {
	if len(b) > r.slotSize || off < 0 {
		return false
	}
	if r.prod-r.seenTail == r.size {
		if r.seenTail = r.tail.Load(); r.prod-r.seenTail == r.size {
			return false
		}
	}
	i := r.prod & r.mask
	copy(r.data[int(i)*r.slotSize:], b)
	r.meta[i] = handoffMeta{off: uint32(off), len: uint32(len(b)), in: in}
	r.prod++
	return true
}

// publish makes the pushed frames visible to the consumer, and wakes it
// if it sleeps; true if there was anything to publish. Producer only,
// once per batch.
func (r *handoffRing) publish() bool {
	if r.prod == r.pub {
		return false
	}
	r.pub = r.prod
	r.head.Store(r.prod)
	if r.wake != nil {
		r.wake.poke()
	}
	return true
}

// peek returns how many published frames wait: one atomic load, once
// per drain. Consumer only.
func (r *handoffRing) peek() uint32 {
	r.seenHead = r.head.Load()
	return r.seenHead - r.cons
}

// pending says whether frames wait. Consumer only.
func (r *handoffRing) pending() bool { return r.peek() != 0 }

// slot returns the i-th waiting frame (i < peek()) and its metadata.
// Consumer only; valid until release.
func (r *handoffRing) slot(i uint32) ([]byte, handoffMeta) {
	j := (r.cons + i) & r.mask
	m := r.meta[j]
	start := int(j) * r.slotSize
	return r.data[start : start+int(m.len)], m
}

// release gives n frames' slots back to the producer. Consumer only.
func (r *handoffRing) release(n uint32) {
	if n == 0 {
		return
	}
	r.cons += n
	r.tail.Store(r.cons)
}

// wakeup lets producers wake a consumer that sleeps in poll(2): an
// eventfd among the consumer's poll descriptors, written only when the
// consumer said it sleeps, so a busy consumer costs its producers no
// system call.
//
// The consumer stores asleep = true and then looks at its rings once
// more (handoff.sleep); a producer stores head and then loads asleep
// (publish, poke). Go's atomics are sequentially consistent, so at least
// one of the two sees the other's store: either the consumer finds the
// frame and does not sleep, or the producer finds it asleep and writes
// the eventfd. No hand-off waits for the idle timeout.
type wakeup struct {
	asleep atomic.Bool
	fd     int // eventfd; -1 for none (tests)
	pokes  atomic.Uint64
}

// one is the eventfd increment, a package variable so that writing it
// allocates nothing.
var one = [8]byte{1}

// poke wakes the consumer if it sleeps; the first producer to see it
// asleep writes the eventfd, the others need not.
func (w *wakeup) poke() {
	if w.asleep.Load() && w.asleep.CompareAndSwap(true, false) {
		w.pokes.Add(1)
		if w.fd >= 0 {
			unix.Write(w.fd, one[:]) // EAGAIN: the counter is already non-zero, the consumer wakes anyway
		}
	}
}
