package dataplane

import (
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/modes"
)

// maxBatch is the most frames a worker takes from the RX ring at once.
const maxBatch = 64

// txRetries bounds how often one transmit call kicks the kernel and reaps
// completions while the TX ring is full. Frames that still do not fit stay
// in the queue's backlog for the next call; none is dropped. In copy mode
// each kick sends synchronously, so one retry normally suffices.
const txRetries = 8

// backlogHigh is the backlog size above which the worker stops taking
// frames from the RX ring, so that a TX ring the kernel drains too slowly
// pushes back to the RX ring, where the kernel counts what it drops,
// instead of the worker holding every UMEM frame.
const backlogHigh = 2 * maxBatch

// kernel is the part of an AF_XDP socket a queue needs besides its
// shared memory: the syscalls. It is called once per batch, never per
// frame. Tests replace it with an in-memory fake.
type kernel interface {
	kick() error
	wake()
	wait(timeoutMs int) error
}

// queue drives the four rings of one AF_XDP socket: it keeps the fill
// ring stocked, takes received frames in batches, sends frames on the TX
// ring and recycles completed ones. Every UMEM frame that is not on a
// ring is on a free stack. The queues of one worker's sockets on several
// interfaces share one UMEM and one free stack (newSharedQueue): a frame
// received on one can be sent on another, and comes back to the stack
// from the completion ring of the socket that sent it. Not safe for
// concurrent use: the stack has one owner, the worker.
type queue struct {
	umem      []byte
	frameSize uint64
	frameMask uint64 // ^(frameSize-1): turns a descriptor address into its frame's base
	fill      addrRing
	comp      addrRing
	rx        descRing
	tx        descRing
	free      *[]uint64 // frame base addresses owned by this side, shared by the worker's queues
	sys       kernel
	// busy: the socket busy-polls, and the worker's syscalls are what
	// runs the interface's NAPI, so an empty RX ring calls for one.
	busy bool
	// filled and completed count the frames posted to the fill ring and
	// taken back from the completion ring (per batch, never per frame).
	filled, completed uint64

	batch [maxBatch]unix.XDPDesc // frames to transmit, reused every batch
	nb    int                    // frames in batch
	// backlog holds frames to transmit that did not fit on the TX ring,
	// oldest first. Its capacity is the number of UMEM frames, which it
	// can never exceed, so appending to it never allocates.
	backlog []unix.XDPDesc
	badDesc uint64 // descriptors pointing outside UMEM
	kickErr uint64 // failed sendto(2) calls
	netDown uint64 // sendto(2) calls refused because the interface is down
	down    bool   // the last kick was refused so
}

// newQueue sets up the free stack with every frame of the UMEM.
func newQueue(umem []byte, frameSize, numFrames uint32, fill, comp addrRing, rx, tx descRing, sys kernel) *queue {
	free := make([]uint64, 0, numFrames)
	for i := uint32(0); i < numFrames; i++ {
		free = append(free, uint64(i)*uint64(frameSize))
	}
	return &queue{
		umem: umem, frameSize: uint64(frameSize), frameMask: ^uint64(frameSize - 1),
		fill: fill, comp: comp, rx: rx, tx: tx, sys: sys,
		free:    &free,
		backlog: make([]unix.XDPDesc, 0, numFrames),
	}
}

// newSharedQueue is a queue on another socket bound to owner's UMEM
// (XDP_SHARED_UMEM), drawing on and returning to owner's free stack.
// Its backlog can hold every frame too, so it never allocates.
func newSharedQueue(owner *queue, fill, comp addrRing, rx, tx descRing, sys kernel) *queue {
	return &queue{
		umem: owner.umem, frameSize: owner.frameSize, frameMask: owner.frameMask,
		fill: fill, comp: comp, rx: rx, tx: tx, sys: sys,
		free:    owner.free,
		backlog: make([]unix.XDPDesc, 0, cap(*owner.free)),
	}
}

// refill moves free frames onto the fill ring, so the kernel has somewhere
// to put received frames.
func (q *queue) refill() {
	free := *q.free
	n := q.fill.producerFree(uint32(len(free)))
	if n == 0 {
		return
	}
	top := len(free)
	for i := uint32(0); i < n; i++ {
		q.fill.addrs[(q.fill.cachedProd+i)&q.fill.mask] = free[top-1-int(i)]
	}
	*q.free = free[:top-int(n)]
	q.fill.producerSubmit(n)
	q.filled += uint64(n)
}

// reap takes transmitted frames back from the completion ring.
func (q *queue) reap() {
	n := q.comp.consumerPeek(q.comp.size)
	free := *q.free
	for i := uint32(0); i < n; i++ {
		free = append(free, q.comp.addrs[(q.comp.cachedCons+i)&q.comp.mask]&q.frameMask)
	}
	*q.free = free
	if n > 0 {
		q.comp.consumerRelease(n)
		q.completed += uint64(n)
	}
}

// frame returns the bytes a descriptor points at, or nil if it points
// outside the UMEM (a broken kernel invariant we count rather than trust).
func (q *queue) frame(d *unix.XDPDesc) []byte {
	end := d.Addr + uint64(d.Len)
	if end > uint64(len(q.umem)) || end < d.Addr {
		q.badDesc++
		return nil
	}
	return q.umem[d.Addr:end:end]
}

// view returns the frame a descriptor points at inside its UMEM chunk,
// with the chunk's headroom before it and tailroom after, so that a
// rewrite can grow the frame (modes.Frame); false if the descriptor
// leaves the UMEM or crosses its chunk's end (counted in badDesc).
func (q *queue) view(d *unix.XDPDesc, f *modes.Frame) bool {
	base := d.Addr & q.frameMask
	end := base + q.frameSize
	if end > uint64(len(q.umem)) || d.Addr+uint64(d.Len) > end || d.Addr+uint64(d.Len) < d.Addr {
		q.badDesc++
		return false
	}
	f.Buf = q.umem[base:end:end]
	f.Off = int(d.Addr - base)
	f.Len = int(d.Len)
	return true
}

// release returns a frame that will not be transmitted to the free stack.
func (q *queue) release(addr uint64) {
	*q.free = append(*q.free, addr&q.frameMask)
}

// needKick says whether the kernel needs a sendto(2) to send what is
// on the TX ring: always, unless the socket was bound with need_wakeup
// and the kernel cleared the ring's flag.
func (q *queue) needKick() bool {
	return q.tx.flags == nil || q.tx.needWakeup()
}

// peek returns how many received frames (at most maxBatch) wait on the
// RX ring. When there are none and the kernel needs a syscall to receive
// more (busy polling, or the fill ring's need_wakeup flag), it makes one,
// recvfrom(2), and looks again.
func (q *queue) peek() uint32 {
	n := q.rx.consumerPeek(maxBatch)
	if n == 0 && (q.busy || q.fill.needWakeup()) {
		q.sys.wake()
		n = q.rx.consumerPeek(maxBatch)
	}
	return n
}

// transmit puts descs on the TX ring behind any backlog, in order, and
// kicks the kernel. While the ring is full it kicks, reaps completions and
// tries again, up to txRetries times; what still does not fit waits in the
// backlog for the next call. Frames are never dropped here.
func (q *queue) transmit(descs []unix.XDPDesc) {
	q.backlog = append(q.backlog, descs...)
	for try := 0; len(q.backlog) > 0; try++ {
		n := q.tx.producerFree(uint32(len(q.backlog)))
		for i := uint32(0); i < n; i++ {
			q.tx.descs[(q.tx.cachedProd+i)&q.tx.mask] = q.backlog[i]
		}
		if n > 0 {
			q.tx.producerSubmit(n)
			q.backlog = q.backlog[:copy(q.backlog, q.backlog[n:])]
		}
		if !q.needKick() {
			// A zero-copy driver's NAPI is sending: no syscall.
			q.down = false
			return
		}
		err := q.sys.kick()
		q.down = err == errNetDown
		if q.down {
			// Retrying now is pointless: the frames wait on the ring.
			q.netDown++
			return
		} else if err != nil {
			q.kickErr++
		}
		if len(q.backlog) == 0 || try == txRetries {
			return
		}
		q.reap()
	}
}
