//go:build linux

package dataplane

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/modes"
)

// Frames for a destination whose MAC is not resolved yet are held, as
// the kernel holds a few packets per unresolved neighbour (unres_qlen),
// instead of dropped: the first SYN to a new real server then leaves as
// soon as ARP answers, a few milliseconds later, rather than after TCP's
// one-second retransmission. The hold is bounded per destination and per
// worker, keeps the UMEM descriptor (no copy, no allocation), and is the
// worker's alone (no lock). A frame held longer than holdTimeout is
// dropped and counted: by then TCP has resent it.
const (
	holdPerDest = 4
	holdMax     = 64
	holdTimeout = int64(time.Second)
	// holdWaitMs is how long a worker that holds frames sleeps in poll(2),
	// so that it sends them within a millisecond of the resolution.
	holdWaitMs = 1
)

type heldFrame struct {
	desc  unix.XDPDesc
	in    uint16 // the interface slot it came in on
	id    uint32
	ipLen int
	at    int64
}

// holdQueue is a worker's held frames, oldest first. Not safe for
// concurrent use.
type holdQueue struct {
	frames [holdMax]heldFrame
	n      int
	// id and ipLen are handle's request to hold the frame it just
	// refused (id 0: none); poll then calls hold with the descriptor.
	id    uint32
	ipLen int
	// nudge says a destination got its first held frame this batch: the
	// resolver is told at the batch's end.
	nudge bool
}

// hold keeps d for destination w.held.id, or drops it when the hold is
// full.
func (w *worker) hold(d unix.XDPDesc, now int64) {
	h := &w.held
	id, ipLen := h.id, h.ipLen
	h.id = 0
	same := 0
	for i := range h.frames[:h.n] {
		if h.frames[i].id == id {
			same++
		}
	}
	if h.n == holdMax || same >= holdPerDest {
		w.stats.local[HoldFull]++
		w.stats.local[NoNeighbour]++
		w.qs[w.in].release(d.Addr)
		return
	}
	if same == 0 {
		if i := int(id / 64); i < len(w.dp.want) {
			w.dp.want[i].Or(1 << (id % 64))
		}
		h.nudge = true
	}
	h.frames[h.n] = heldFrame{desc: d, in: w.in, id: id, ipLen: ipLen, at: now}
	h.n++
	w.stats.local[Held]++
}

// flushHeld sends the held frames whose destination fwd now resolves and
// drops those held too long. It runs at a batch's start, before the new
// frames, so a flow's frames keep their order.
func (w *worker) flushHeld(fwd []destFwd, now int64) {
	h := &w.held
	if h.n == 0 {
		return
	}
	kept := 0
	for i := range h.frames[:h.n] {
		f := &h.frames[i]
		switch {
		case int(f.id) < len(fwd) && fwd[f.id].macOK:
			w.in = f.in
			q := w.qs[f.in] // the queue whose UMEM holds the frame
			if w.xmitHeld(q, &f.desc, f.id, fwd, now) {
				// The queues' batches are empty at a batch's start and
				// hold maxBatch >= holdMax frames.
				w.enqueue(q, f.desc)
				w.stats.local[HeldSent]++
			} else {
				q.release(f.desc.Addr)
			}
		case now-f.at >= holdTimeout:
			w.stats.local[HoldExpired]++
			w.stats.local[NoNeighbour]++
			w.qs[f.in].release(f.desc.Addr)
		default:
			h.frames[kept] = *f
			kept++
		}
	}
	h.n = kept
	w.transmitBatches()
}

// xmitHeld rewrites a held frame for destination id, now resolved: the
// frame is parsed again and its connection looked up again (the entry was
// created and updated when the frame first came), then goes through the
// same xmit step as any frame; d is left describing what to transmit.
func (w *worker) xmitHeld(q *queue, d *unix.XDPDesc, id uint32, fwd []destFwd, now int64) bool {
	f := &w.holdView
	m := &w.holdMeta
	if !q.view(d, f) || packet.Parse(f.Bytes(), m) != packet.OK {
		return false
	}
	k := conntrack.Key{Src: m.Src, Dst: m.Dst, SrcPort: m.SrcPort, DstPort: m.DstPort, Proto: m.Proto}
	method := fwd[id].method
	e, dir := w.ct.Lookup(&k, now)
	if e != nil {
		if dir != conntrack.DirInput || e.DestID() != id {
			return false // the connection went elsewhere meanwhile
		}
		method = modes.Method(e.Fwd())
	}
	if !w.xmit(f, m, e, id, method, conntrack.DirInput, fwd) {
		w.held.id = 0
		return false
	}
	d.Addr = d.Addr&q.frameMask + uint64(f.Off)
	d.Len = uint32(f.Len)
	return true
}

// nudgeResolver tells the resolver, without blocking, that destinations
// got held frames (their bits are set in Dataplane.want). Once per batch
// at most.
func (w *worker) nudgeResolver() {
	if !w.held.nudge {
		return
	}
	w.held.nudge = false
	select {
	case w.dp.nudge <- struct{}{}:
	default:
	}
}

// waitMs is how long the idle worker may sleep in poll(2).
func (w *worker) waitMs() int {
	if w.held.n > 0 {
		return holdWaitMs
	}
	// Sync records beyond one batch edge's budget wait in the install
	// ring: come back for them in a millisecond, not 100 (an idle
	// backup would install 2560 records/s and drop the rest).
	if r := w.sx.in.Load(); r != nil {
		if _, n := r.pending(); n > 0 {
			return 1
		}
	}
	return idleWaitMs
}
