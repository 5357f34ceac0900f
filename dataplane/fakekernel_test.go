package dataplane

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// fakeKernel is the kernel's side of an AF_XDP socket in memory: it takes
// frames from the fill ring to deliver received frames on the RX ring, and
// drains the TX ring into the completion ring when kicked. Its ring views
// share the index words with the queue's, exactly as the mmapped rings do.
type fakeKernel struct {
	umem      []byte
	frameSize uint32
	fill      addrRing // kernel consumes
	comp      addrRing // kernel produces
	rx        descRing // kernel produces
	tx        descRing // kernel consumes

	sent  [][]byte // frames taken from the TX ring, copied
	kicks int
	wakes int // recvfrom calls
	// txLimit, when >0, is the most frames one kick takes from TX, to
	// model a kernel that lags behind.
	txLimit int
	// keep, when false, stops copying sent frames (benchmarks).
	keep bool
}

func newFakeKernel(numFrames, frameSize, ringSize uint32) (*fakeKernel, *queue) {
	return newFakeSocket(make([]byte, numFrames*frameSize), frameSize, numFrames, ringSize, nil)
}

// newSharedFakeKernel is a second socket, on another interface, bound to
// owner's UMEM (XDP_SHARED_UMEM): its own four rings, owner's frames and
// free stack.
func newSharedFakeKernel(owner *fakeKernel, oq *queue, ringSize uint32) (*fakeKernel, *queue) {
	return newFakeSocket(owner.umem, owner.frameSize, 0, ringSize, oq)
}

func newFakeSocket(umem []byte, frameSize, numFrames, ringSize uint32, owner *queue) (*fakeKernel, *queue) {
	k := &fakeKernel{umem: umem, frameSize: frameSize, keep: true}
	var user [4]ring
	var kern [4]ring
	for i := range user {
		var p, c uint32
		user[i] = ring{producer: &p, consumer: &c, mask: ringSize - 1, size: ringSize}
		kern[i] = user[i]
	}
	addrs := [2][]uint64{make([]uint64, ringSize), make([]uint64, ringSize)}
	descs := [2][]unix.XDPDesc{make([]unix.XDPDesc, ringSize), make([]unix.XDPDesc, ringSize)}
	k.fill = addrRing{kern[0], addrs[0]}
	k.comp = addrRing{kern[1], addrs[1]}
	k.rx = descRing{kern[2], descs[0]}
	k.tx = descRing{kern[3], descs[1]}
	fill, comp := addrRing{user[0], addrs[0]}, addrRing{user[1], addrs[1]}
	rx, tx := descRing{user[2], descs[0]}, descRing{user[3], descs[1]}
	if owner != nil {
		return k, newSharedQueue(owner, fill, comp, rx, tx, k)
	}
	return k, newQueue(k.umem, frameSize, numFrames, fill, comp, rx, tx, k)
}

// deliver receives frame as the NIC would: into a frame from the fill
// ring, at the XDP headroom offset. It reports false when the fill ring or
// the RX ring is empty or full (the kernel would count a drop).
func (k *fakeKernel) deliver(frame []byte) bool {
	if k.fill.consumerPeek(1) == 0 || k.rx.producerFree(1) == 0 {
		return false
	}
	const headroom = 256
	addr := k.fill.addrs[k.fill.cachedCons&k.fill.mask] + headroom
	k.fill.consumerRelease(1)
	n := copy(k.umem[addr:addr+uint64(k.frameSize)-headroom], frame)
	k.rx.descs[k.rx.cachedProd&k.rx.mask] = unix.XDPDesc{Addr: addr, Len: uint32(n)}
	k.rx.producerSubmit(1)
	return true
}

// kick transmits what the TX ring holds and completes it.
func (k *fakeKernel) kick() error {
	k.kicks++
	n := k.tx.consumerPeek(k.tx.size)
	if k.txLimit > 0 && n > uint32(k.txLimit) {
		n = uint32(k.txLimit)
	}
	n = min(n, k.comp.producerFree(n))
	for i := uint32(0); i < n; i++ {
		d := k.tx.descs[(k.tx.cachedCons+i)&k.tx.mask]
		if k.keep {
			k.sent = append(k.sent, append([]byte(nil), k.umem[d.Addr:d.Addr+uint64(d.Len)]...))
		}
		k.comp.addrs[(k.comp.cachedProd+i)&k.comp.mask] = d.Addr
	}
	k.tx.consumerRelease(n)
	k.comp.producerSubmit(n)
	return nil
}

func (k *fakeKernel) wait(int) error { return nil }

func (k *fakeKernel) wake() { k.wakes++ }

// inFlight counts frames the kernel holds on its rings.
func (k *fakeKernel) inFlight() int {
	ld := func(r *ring) uint32 { return atomic.LoadUint32(r.producer) - atomic.LoadUint32(r.consumer) }
	return int(ld(&k.fill.ring) + ld(&k.rx.ring) + ld(&k.tx.ring) + ld(&k.comp.ring))
}
