package dataplane

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// echo forwards every received frame back out, as a worker does with
// frames it rewrites, and returns how many it took.
func echo(q *queue) int {
	q.reap()
	q.refill()
	if len(q.backlog) > backlogHigh {
		q.transmit(nil)
		return 0
	}
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
	if got := len(*q.free) + k.inFlight(); got != frames {
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
	q.transmit(numbered(q, 0, 20))
	if len(q.backlog) != 0 {
		t.Errorf("backlog = %d, want 0", len(q.backlog))
	}
	for k.tx.consumerPeek(1) > 0 { // drain what is left on the ring
		k.kick()
	}
	checkSent(t, k, 20)
}

// A kernel that stops draining TX: frames wait in the backlog, in order,
// none is lost, and they go out once the kernel drains again.
func TestQueueTransmitBacklog(t *testing.T) {
	const frames, ring = 64, 4
	k, q := newFakeKernel(frames, 2048, ring)
	stuck := &stuckKernel{}
	q.sys = stuck
	q.transmit(numbered(q, 0, 10))
	if len(q.backlog) != 6 {
		t.Errorf("backlog = %d, want 6 (ring of 4 full)", len(q.backlog))
	}
	if stuck.kicks != txRetries+1 {
		t.Errorf("kicks = %d, want %d", stuck.kicks, txRetries+1)
	}
	if got := len(*q.free) + len(q.backlog) + k.inFlight(); got != frames {
		t.Errorf("frames accounted for = %d, want %d", got, frames)
	}
	q.sys = k
	q.transmit(numbered(q, 10, 5))
	for len(q.backlog) > 0 || k.tx.consumerPeek(1) > 0 {
		q.transmit(nil)
		k.kick()
	}
	checkSent(t, k, 15)
}

// numbered takes n free frames and writes "first", "first+1", ... in them.
func numbered(q *queue, first, n int) []unix.XDPDesc {
	descs := make([]unix.XDPDesc, n)
	for i := range descs {
		addr := (*q.free)[len(*q.free)-1]
		*q.free = (*q.free)[:len(*q.free)-1]
		s := fmt.Sprint(first + i)
		copy(q.umem[addr:], s)
		descs[i] = unix.XDPDesc{Addr: addr, Len: uint32(len(s))}
	}
	return descs
}

func checkSent(t *testing.T, k *fakeKernel, n int) {
	t.Helper()
	if len(k.sent) != n {
		t.Fatalf("kernel sent %d frames, want %d", len(k.sent), n)
	}
	for i, f := range k.sent {
		if string(f) != fmt.Sprint(i) {
			t.Errorf("frame %d = %q, want %q (order)", i, f, fmt.Sprint(i))
		}
	}
}

type stuckKernel struct{ kicks int }

func (s *stuckKernel) kick() error    { s.kicks++; return nil }
func (s *stuckKernel) wait(int) error { return nil }
func (s *stuckKernel) wake()          {}

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
// queue's ring protocol the way the real kernel exercises it. A kick only
// yields, as a syscall would give the kernel's side a chance to run.
type concurrentKernel struct{ *fakeKernel }

func (concurrentKernel) kick() error { runtime.Gosched(); return nil }

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
	deadline := time.Now().Add(30 * time.Second)
	for forwarded < total || len(q.backlog) > 0 {
		forwarded += echo(q)
		if time.Now().After(deadline) {
			t.Fatalf("stuck: forwarded %d, backlog %d", forwarded, len(q.backlog))
		}
	}
	// Keep reaping, as a worker does, so the kernel can complete the
	// last frames on the TX ring.
	for {
		select {
		case sent := <-done:
			if sent != total {
				t.Errorf("kernel sent %d, want %d", sent, total)
			}
			return
		default:
			q.reap()
			runtime.Gosched()
			if time.Now().After(deadline) {
				t.Fatalf("kernel side stuck after the worker finished")
			}
		}
	}
}
