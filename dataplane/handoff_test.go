//go:build linux

package dataplane

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"
	"time"
)

// The ring keeps order, refuses a push when full until the consumer
// releases, and shows nothing before publish.
func TestHandoffRing(t *testing.T) {
	r := newHandoffRing(4, 64, nil)
	for i := 0; i < 4; i++ {
		if !r.push([]byte{byte(i), 1, 2}, 256+i, uint16(i)) {
			t.Fatalf("push %d refused on a ring with room", i)
		}
	}
	if r.push([]byte{9}, 0, 0) {
		t.Fatal("push on a full ring succeeded")
	}
	if r.push(make([]byte, 65), 0, 0) {
		t.Fatal("push of a frame larger than a slot succeeded")
	}
	if n := r.peek(); n != 0 {
		t.Fatalf("peek before publish = %d, want 0", n)
	}
	if !r.publish() || r.publish() {
		t.Fatal("publish: want true once, then false with nothing new")
	}
	if n := r.peek(); n != 4 {
		t.Fatalf("peek = %d, want 4", n)
	}
	for i := uint32(0); i < 4; i++ {
		b, m := r.slot(i)
		if !bytes.Equal(b, []byte{byte(i), 1, 2}) || m.off != 256+i || m.in != uint16(i) {
			t.Errorf("slot %d = %v %+v, want [%d 1 2] off %d in %d", i, b, m, i, 256+i, i)
		}
	}
	r.release(2)
	if !r.push([]byte{7}, 0, 0) || !r.push([]byte{8}, 0, 0) || r.push([]byte{9}, 0, 0) {
		t.Fatal("after releasing 2: want 2 pushes, then full")
	}
	r.publish()
	if n := r.peek(); n != 4 {
		t.Fatalf("peek = %d, want 4", n)
	}
	if b, _ := r.slot(3); !bytes.Equal(b, []byte{8}) {
		t.Errorf("slot 3 = %v, want [8] (wrapped)", b)
	}
}

// A producer and a consumer on two goroutines, as two workers: every
// frame arrives once, in order, intact, whatever the interleaving (run
// under -race: the atomics must order the slots).
func TestHandoffRingConcurrent(t *testing.T) {
	const total = 50_000
	wk := &wakeup{fd: -1}
	r := newHandoffRing(64, 32, wk)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var b [16]byte
		for i := uint64(0); i < total; {
			// A batch of up to 8, then publish, as a worker's batch edge.
			for j := 0; j < 8 && i < total; j++ {
				binary.LittleEndian.PutUint64(b[:], i)
				binary.LittleEndian.PutUint64(b[8:], ^i)
				if !r.push(b[:], int(i%512), uint16(i%3)) {
					break
				}
				i++
			}
			r.publish()
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	next := uint64(0)
	for next < total {
		if time.Now().After(deadline) {
			t.Fatalf("consumer stuck at %d of %d", next, total)
		}
		n := r.peek()
		for i := uint32(0); i < n; i++ {
			b, m := r.slot(i)
			if len(b) != 16 || binary.LittleEndian.Uint64(b) != next || binary.LittleEndian.Uint64(b[8:]) != ^next ||
				m.off != uint32(next%512) || m.in != uint16(next%3) {
				t.Fatalf("frame %d: got %x %+v", next, b, m)
			}
			next++
		}
		r.release(n)
	}
	wg.Wait()
	if r.peek() != 0 {
		t.Errorf("frames left after %d", total)
	}
}

// A consumer that declares it sleeps is poked once by a publish; one that
// is awake costs the producer nothing.
func TestHandoffWakeup(t *testing.T) {
	ws := []*worker{{id: 0}, {id: 1}}
	connectHandoff(ws, 64)
	p, c := ws[0], ws[1]
	p.ho.out[1].push([]byte{1}, 0, 0)
	p.publishHandoff()
	if got := c.ho.wake.pokes.Load(); got != 0 {
		t.Errorf("pokes of an awake consumer = %d, want 0", got)
	}
	if c.sleep() {
		t.Error("sleep with a frame waiting: want false")
	}
	c.ho.in[0].release(c.ho.in[0].peek())
	if !c.sleep() {
		t.Fatal("sleep with nothing waiting: want true")
	}
	p.ho.out[1].push([]byte{2}, 0, 0)
	p.ho.out[1].push([]byte{3}, 0, 0)
	p.publishHandoff()
	p.ho.out[1].push([]byte{4}, 0, 0)
	p.publishHandoff()
	if got := c.ho.wake.pokes.Load(); got != 1 {
		t.Errorf("pokes of a sleeping consumer = %d, want 1", got)
	}
	c.woke()
	if c.ho.wake.asleep.Load() {
		t.Error("asleep after woke")
	}
}
