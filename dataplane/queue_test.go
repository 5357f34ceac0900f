package dataplane

import (
	"bytes"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// echo forwards every received frame back out, as a worker does with
// frames it rewrites, and returns how many it took.
func echo(q *queue) int {
	q.reap()
	q.refill()
	n := q.rx.consumerPeek(maxBatch)
	for i := uint32(0); i < n; i++ {
		q.batch[i] = q.rx.descs[(q.rx.cachedCons+i)&q.rx.mask]
	}
	q.rx.consumerRelease(n)
	q.transmit(q.batch[:n])
	return int(n)
}

func TestQueueForwardsAndRecyclesFrames(t *testing.T) {
	const frames, ring = 64, 16
	k, q := newFakeKernel(frames, 2048, ring)
	q.refill()
	sent := 0
	// Far more frames than the UMEM holds: frames must come back through
	// the completion ring and be reused.
	for round := 0; round < 100; round++ {
		for i := 0; i < 10; i++ {
			f := []byte(fmt.Sprintf("frame %d/%d", round, i))
			if !k.deliver(f) {
				t.Fatalf("round %d: kernel had no frame to receive into (fill ring starved)", round)
			}
		}
		sent += echo(q)
	}
	if sent != 1000 || len(k.sent) != 1000 {
		t.Fatalf("forwarded %d, kernel sent %d, want 1000", sent, len(k.sent))
	}
	if want := []byte("frame 99/9"); !bytes.Equal(k.sent[999], want) {
		t.Errorf("last frame = %q, want %q", k.sent[999], want)
	}
	q.reap()
	if got := len(q.free) + k.inFlight(); got != frames {
		t.Errorf("frames accounted for = %d, want %d (leak)", got, frames)
	}
}

// When the kernel drains the TX ring slower than the worker fills it,
// transmit must kick and retry rather than drop frames (asavie/xdp's
// Transmit returns early and loses them).
func TestQueueTransmitRetriesWhenTXRingFull(t *testing.T) {
	const frames, ring = 256, 8
	k, q := newFakeKernel(frames, 2048, ring)
	k.txLimit = 3
	descs := make([]unix.XDPDesc, 20)
	for i := range descs {
		addr := q.free[len(q.free)-1]
		q.free = q.free[:len(q.free)-1]
		copy(q.umem[addr:], fmt.Sprint(i))
		descs[i] = unix.XDPDesc{Addr: addr, Len: uint32(len(fmt.Sprint(i)))}
	}
	q.transmit(descs)
	if q.txLost != 0 {
		t.Errorf("txLost = %d, want 0", q.txLost)
	}
	for k.tx.consumerPeek(1) > 0 { // drain what is left on the ring
		k.kick()
	}
	if len(k.sent) != 20 {
		t.Fatalf("kernel sent %d frames, want 20", len(k.sent))
	}
	for i, f := range k.sent {
		if string(f) != fmt.Sprint(i) {
			t.Errorf("frame %d = %q, want %q (order)", i, f, fmt.Sprint(i))
		}
	}
}

// A kernel that never drains TX: transmit gives up after txRetries
// rounds, counts the loss and keeps the frames (no leak).
func TestQueueTransmitGivesUpWithoutLeak(t *testing.T) {
	const frames, ring = 64, 4
	k, q := newFakeKernel(frames, 2048, ring)
	stuck := &stuckKernel{}
	q.sys = stuck
	descs := make([]unix.XDPDesc, 10)
	for i := range descs {
		descs[i] = unix.XDPDesc{Addr: q.free[len(q.free)-1], Len: 60}
		q.free = q.free[:len(q.free)-1]
	}
	q.transmit(descs)
	if q.txLost != 6 {
		t.Errorf("txLost = %d, want 6 (ring of 4 full)", q.txLost)
	}
	if stuck.kicks != txRetries+1 {
		t.Errorf("kicks = %d, want %d", stuck.kicks, txRetries+1)
	}
	if got := len(q.free) + k.inFlight(); got != frames {
		t.Errorf("frames accounted for = %d, want %d", got, frames)
	}
}

type stuckKernel struct{ kicks int }

func (s *stuckKernel) kick() error    { s.kicks++; return nil }
func (s *stuckKernel) wait(int) error { return nil }

func TestQueueFrameBounds(t *testing.T) {
	_, q := newFakeKernel(4, 2048, 4)
	if f := q.frame(&unix.XDPDesc{Addr: 4*2048 - 10, Len: 20}); f != nil || q.badDesc != 1 {
		t.Errorf("frame outside UMEM = %d bytes, badDesc %d; want nil, 1", len(f), q.badDesc)
	}
	if f := q.frame(&unix.XDPDesc{Addr: 2048 + 256, Len: 60}); len(f) != 60 || cap(f) != 60 {
		t.Errorf("frame len/cap = %d/%d, want 60/60", len(f), cap(f))
	}
}

// concurrentKernel runs the kernel's side in its own goroutine, touching
// the rings only through their index words, so that -race checks the
// queue's ring protocol the way the real kernel exercises it.
type concurrentKernel struct{ *fakeKernel }

func (concurrentKernel) kick() error { return nil }

func TestQueueConcurrentKernel(t *testing.T) {
	const frames, ring, total = 128, 32, 20000
	k, q := newFakeKernel(frames, 2048, ring)
	k.keep = false
	q.sys = concurrentKernel{k}
	q.refill()
	done := make(chan int)
	go func() { // the kernel
		delivered, sent := 0, 0
		var f [64]byte
		for sent < total {
			if delivered < total {
				f[0] = byte(delivered)
				if k.deliver(f[:]) {
					delivered++
				}
			}
			before := k.tx.cachedCons
			k.kick()
			sent += int(k.tx.cachedCons - before)
		}
		done <- sent
	}()
	forwarded := 0
	for forwarded < total {
		forwarded += echo(q)
	}
	if sent := <-done; sent != total {
		t.Errorf("kernel sent %d, want %d", sent, total)
	}
}
