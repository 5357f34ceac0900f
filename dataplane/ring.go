package dataplane

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ring is the index half of an AF_XDP single-producer single-consumer ring
// shared with the kernel (or, in tests, with a fake kernel).
//
// The producer and consumer words live in memory the other side reads and
// writes concurrently, so every access to them is atomic. Each side keeps
// a cached copy of the other side's index and touches the shared words
// only at the edges of a batch (gVisor pkg/xdp does the same); the cached
// copies are owned by the one goroutine that uses the ring.
type ring struct {
	producer *uint32 // shared: written by the producer side
	consumer *uint32 // shared: written by the consumer side
	// flags is the kernel's word of ring flags (XDP_RING_NEED_WAKEUP),
	// nil for a socket bound without XDP_USE_NEED_WAKEUP (and the fake
	// kernel's rings).
	flags *uint32
	mask  uint32
	size  uint32

	cachedProd uint32 // owned by this side
	cachedCons uint32 // owned by this side
}

// consumerPeek returns how many entries (at most n) are ready to be
// consumed, starting at index cachedCons.
func (r *ring) consumerPeek(n uint32) uint32 {
	avail := r.cachedProd - r.cachedCons
	if avail < n {
		r.cachedProd = atomic.LoadUint32(r.producer)
		avail = r.cachedProd - r.cachedCons
	}
	return min(avail, n)
}

// consumerRelease hands n consumed entries back to the producer.
func (r *ring) consumerRelease(n uint32) {
	r.cachedCons += n
	atomic.StoreUint32(r.consumer, r.cachedCons)
}

// producerFree returns how many entries (at most n) may be produced,
// starting at index cachedProd.
func (r *ring) producerFree(n uint32) uint32 {
	free := r.size - (r.cachedProd - r.cachedCons)
	if free < n {
		r.cachedCons = atomic.LoadUint32(r.consumer)
		free = r.size - (r.cachedProd - r.cachedCons)
	}
	return min(free, n)
}

// producerSubmit publishes n produced entries to the consumer.
func (r *ring) producerSubmit(n uint32) {
	r.cachedProd += n
	atomic.StoreUint32(r.producer, r.cachedProd)
}

// needWakeup says whether the kernel asked for a syscall to go on with
// this ring (XDP_RING_NEED_WAKEUP); false without the flag word.
func (r *ring) needWakeup() bool {
	return r.flags != nil && atomic.LoadUint32(r.flags)&unix.XDP_RING_NEED_WAKEUP != 0
}

// addrRing is a fill or completion ring: UMEM frame addresses.
type addrRing struct {
	ring
	addrs []uint64
}

// descRing is an RX or TX ring: descriptors of frames in UMEM.
type descRing struct {
	ring
	descs []unix.XDPDesc
}
