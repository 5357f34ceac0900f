//go:build linux

package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/laddr"
	"github.com/xlbproject/xlb/modes"
)

// idleWaitMs is how long an idle worker sleeps in poll(2) before it looks
// at its stop signal and expires connections again.
const idleWaitMs = 100

// dumpWaitMs replaces idleWaitMs while the control plane lists the
// connection table (ipvsadm -L -c): each page costs the listing one
// wake-up of the worker.
const dumpWaitMs = 1

// expireBudget bounds the connection entries one expiry pass looks at, so
// that expiry never stalls forwarding (about a microsecond's work).
const expireBudget = 64

// idleChunk is the expiry budget of one Expire call on the idle path:
// about 4096 entries examined (20-40 µs; 0.5-1.4 ms if all are removed,
// 130-330 ns each in 10^5 to 10^6-entry tables), then the worker checks
// its RX ring, so a frame arriving during an idle pass waits for one chunk
// at most.
const idleChunk = 4096

// idleSweepNs is how often, at most, an idle worker sweeps its whole
// table. A busy worker examines expireBudget entries per batch; an idle
// one has no batches, and at expireBudget per wake-up a 10^6-entry table
// would count dead entries as inactive connections for half an hour. A
// whole pass costs about 10 ns per live entry (10-13 ms at 10^6 live
// entries, 2-3% of a core at this pace), 130-330 ns per dead one it
// removes, and about 1 ns per 64 free ones; an entry leaves its
// destination's counts at most idleSweepNs+idleWaitMs after its timeout.
const idleSweepNs = int64(500 * time.Millisecond)

// worker serves one queue: its socket, its connection-table shard and its
// counters belong to it alone. Not safe for concurrent use; only cfg,
// the published counters and the conntrack snapshot are read from
// elsewhere.
type worker struct {
	id int
	dp *Dataplane
	// socks are the worker's AF_XDP sockets, one per served interface, by
	// slot, on queue id of each; socks[0] owns the UMEM the others share
	// (XDP_SHARED_UMEM). qs are their queues, sharing one free stack;
	// q is qs[0]. ifs are the interfaces' MACs and MTUs, by slot.
	socks []*socket
	qs    []*queue
	q     *queue
	ifs   []ifaceParams
	// in is the slot of the interface the frame being handled came in on,
	// out the one xmit chose for it to leave by.
	in, out uint16
	fds     []unix.PollFd // the sockets, for poll(2) when there are several
	ct      *conntrack.Table
	cfg     atomic.Pointer[workerConfig]
	stats   counters
	ds      destStats // per-destination counters, by destination ID
	// reasons counts malformed frames by parser reason.
	reasons [packet.NumReasons]uint64
	mac     [6]byte // the first interface's MAC and MTU (ifs[0])
	mtu     int
	// addr4 and addr6 are the director's own addresses (IPv4-mapped),
	// the source of the ICMP errors it sends as a router.
	addr4, addr6 [16]byte
	start        time.Time
	// verdicts counts the frames each rewrite verdict dropped.
	verdicts [modes.NumVerdicts]uint64
	// pool hands out FULLNAT local ports: this worker's share.
	pool *laddr.Pool
	// seen is the configuration adopt last took; plan is the rewrite's
	// input, filled per frame.
	seen *workerConfig
	plan modes.Plan
	// svcs is seen's address-and-port services, indexed for service
	// (svcindex.go); built by adopt.
	svcs svcIndex
	// tap is the local delivery tap of the configuration adopt took
	// last, or nil.
	tap *localTap
	// laddrList (set by adopt) names the local addresses whose pool
	// figures the worker publishes for -G at batch edges, laddrFigs[i]
	// the i-th one's; laddrIdx are their pool indexes.
	laddrList atomic.Pointer[[]netip.Addr]
	laddrIdx  []int32
	laddrFigs [maxPublishedLaddrs]struct{ inUse, exhausted atomic.Uint64 }
	swept     int64    // time of the latest whole-table expiry pass when idle
	guard     synGuard // SYN admission in XDP while this worker is overloaded

	// Per-batch scratch space, reused: the parsed headers and flow key of
	// each received frame, and conntrack's answers for the keys.
	metas [maxBatch]packet.Meta
	keys  [maxBatch]conntrack.Key
	hits  [maxBatch]conntrack.Hit
	kidx  [maxBatch]int8 // index into keys, or -1 for a frame not parsed
	views [maxBatch]modes.Frame
	descs [maxBatch]unix.XDPDesc // the batch's descriptors, off their ring

	held holdQueue // frames waiting for their destination's MAC
	ho   handoff   // rings to and from the other workers (owner.go)
	// holdView and holdMeta are xmitHeld's scratch space.
	holdView modes.Frame
	holdMeta packet.Meta

	sx syncExport // connection sync's rings and state (sync.go)
	// off is the flow offload (offload.go), nil when it is off; xmitV
	// is the latest verdict of modes.Xmit, for its hook, and partial
	// whether xmit completed that frame's L4 checksum (its sender left
	// it to the NIC): such a flow must stay with the worker.
	off     *offloader
	xmitV   modes.Verdict
	partial bool
}

// ifaceParams are what a rewrite needs of its egress interface.
type ifaceParams struct {
	mac   [6]byte
	mtu   int // checked by every rewrite
	index int // ifindex, for the flow offload's redirects
}

func newWorker(d *Dataplane, qid, queues int) (*worker, error) {
	w := &worker{id: qid, dp: d, mac: d.ifaces[0].mac, mtu: d.ifaces[0].mtu, start: time.Now(), ds: newDestStats(d.opts.MaxDests + 1),
		addr4: d.localAddr(true), addr6: d.localAddr(false)}
	// One UMEM for the sockets of all interfaces, with frames for each,
	// so that a frame received on one leaves on another as it is.
	o := d.opts.Socket
	o.NumFrames *= len(d.ifaces)
	if o.NoSharedUMEM {
		o = d.opts.Socket
	}
	for slot, si := range d.ifaces {
		var sock *socket
		var err error
		switch {
		case slot == 0 || o.NoSharedUMEM:
			sock, err = newSocket(si.index, qid, o)
		default:
			if sock, err = newSharedSocket(si.index, qid, o, w.socks[0]); err != nil {
				// Copy between UMEMs instead, at the cost of a copy per
				// frame that changes interface.
				d.opts.Logger.Warn("the kernel refuses to share a UMEM between interfaces: frames are copied between them",
					"interface", si.name, "queue", qid, "err", err)
				o = d.opts.Socket
				o.NoSharedUMEM = true
				sock, err = newSocket(si.index, qid, o)
			}
		}
		if err != nil {
			w.close()
			return nil, fmt.Errorf("open AF_XDP socket on %s queue %d: %w", si.name, qid, err)
		}
		w.socks = append(w.socks, sock)
		w.ifs = append(w.ifs, ifaceParams{mac: si.mac, mtu: si.mtu, index: si.index})
		w.fds = append(w.fds, unix.PollFd{Fd: int32(sock.fd), Events: unix.POLLIN})
	}
	var err error
	lo := laddr.DefaultOptions()
	lo.Worker, lo.Workers = qid, queues
	lo.Offset = d.lportOffset
	if w.pool, err = laddr.New(lo); err != nil {
		w.close()
		return nil, fmt.Errorf("local port pool of queue %d: %w", qid, err)
	}
	copts := conntrack.DefaultOptions()
	copts.Capacity = d.opts.ConnCapacity
	copts.Registry = d.reg
	copts.Settings = d.ctSettings
	copts.LocalReleased = func(la [16]byte, lport uint16, rs [16]byte, rport uint16) {
		w.pool.Release(la, rs, rport, lport)
	}
	copts.LocalReserved = func(la [16]byte, lport uint16, rs [16]byte, rport uint16) bool {
		return w.pool.Reserve(la, rs, rport, lport) // a synced FULLNAT connection's (sync.go)
	}
	if d.opts.Offload {
		w.off = newOffloader(d.objs, max(1, d.maxFlows()/queues), w.start)
		copts.OffloadRefresh = func(e *conntrack.Entry, _ int64) { w.off.refresh(w, e) }
		copts.OffloadReleased = func(e *conntrack.Entry) { w.off.released(e) }
	}
	if w.ct, err = conntrack.New(copts); err != nil {
		w.close()
		return nil, fmt.Errorf("connection table of queue %d: %w", qid, err)
	}
	s0 := w.socks[0]
	w.q = newQueue(s0.umem, s0.frameSize, s0.numFrames, s0.fill, s0.comp, s0.rx, s0.tx, s0)
	w.qs = []*queue{w.q}
	for _, s := range w.socks[1:] {
		if s.shared {
			w.qs = append(w.qs, newSharedQueue(w.q, s.fill, s.comp, s.rx, s.tx, s))
		} else {
			w.qs = append(w.qs, newQueue(s.umem, s.frameSize, s.numFrames, s.fill, s.comp, s.rx, s.tx, s))
		}
	}
	for i, q := range w.qs {
		q.busy = w.socks[i].busyPoll
	}
	// Stock the fill rings now: New puts the sockets in the XSKMAP before
	// Run starts the worker, and a frame steered meanwhile would find
	// no frame to land in (rx_dropped).
	for _, q := range w.qs {
		q.refill()
	}
	w.cfg.Store(&workerConfig{services: map[svcKey]*workerService{}})
	w.guard.set = func(l bpf.SYNLevel) error {
		return d.objs.SYNGuard(qid, l, d.opts.SYNRate, d.opts.SYNBurst, d.opts.SYNAuto)
	}
	w.guard.refused = func() (uint64, error) { return d.objs.SYNRefused(qid) }
	if err := w.guard.set(bpf.SYNAdmit); err != nil { // the rates, for the XDP program's own trigger
		w.close()
		return nil, err
	}
	return w, nil
}

// close closes the sockets, those sharing the UMEM before its owner.
func (w *worker) close() error {
	var errs []error
	w.closeHandoff()
	for i := len(w.socks) - 1; i >= 0; i-- {
		errs = append(errs, w.socks[i].close())
	}
	w.socks = nil
	return errors.Join(errs...)
}

// ports sets up a worker built without newWorker (the tests' workers,
// on one fake kernel) with its one queue and interface.
func (w *worker) ports() {
	if w.qs == nil {
		w.qs = []*queue{w.q}
		w.ifs = []ifaceParams{{mac: w.mac, mtu: w.mtu}}
	}
}

// wait sleeps in poll(2) until one of the sockets has received frames
// or timeoutMs passes.
func (w *worker) wait(timeoutMs int) {
	if len(w.fds) < 2 {
		w.q.sys.wait(timeoutMs)
		return
	}
	unix.Poll(w.fds, timeoutMs) // EINTR or an error: the loop looks again

}

// idleEveryNs is how often, at most, a worker does its idle housekeeping
// (idle) before it sleeps. At a trickle every frame ends in a sleep, and
// an idle pass before each costs an Expire call of idleChunk entries
// (20-40 µs) per frame; once a millisecond is enough for expiry, and the
// busy path's Expire runs at every batch anyway.
const idleEveryNs = int64(time.Millisecond)

// DefaultSpin is how long, at most, a worker keeps polling its rings
// after the last frame before it sleeps in poll(2). Waking from poll
// costs tens of microseconds on a VM; request/response traffic whose next
// packet comes within this window is served without that wake-up.
const DefaultSpin = 50 * time.Microsecond

// spinner is a worker's spin-before-sleep policy. Spinning for the next
// frame costs the CPU of the whole gap; sleeping costs a poll(2), a
// context switch and a wake-up, which on this 2-vCPU VM come to 60-100
// µs of CPU and tens of µs of latency (bench/RESULTS.md, "Where the time
// goes"). Spinning
// up to about that long before sleeping is the classic answer (never more
// than twice the better choice's CPU), and what a fixed 50 µs spin did;
// its waste is a trickle, whose frames come further apart than the spin:
// every frame then costs a whole spin and a wake-up.
//
// So the spin window adapts to the gaps between frames, between 0 and
// max: a gap the worker waited through (spinning or asleep) that was
// longer than its limit halves the window (below max/32 it is 0), one
// longer than 8*max (a trickle, a pause) sets it to 0, and a shorter one
// sets it back to max at once. (Growing it back step by step instead,
// by doubling, kept round trips asleep on a loaded machine: UDP RTT p50
// 100 µs against the old policy's 55; with the jump, 39-43 µs. The price
// is a trickle whose frames sometimes come in pairs, which a late
// generator sends: each pair buys one whole spin.) The limit is max
// after a spin, and 2*max after a sleep: a gap that ends in a sleep is
// measured from the worker's last empty poll to the end of its wake-up, so it
// includes the wake-up (tens of µs here, as much as max). Judged by max
// alone, request/response traffic whose next frame comes within the
// spin (UDP round trips, 20-40 µs apart at the worker) lost its spin for
// good after one late frame: from then on every gap it measured held a
// wake-up, so it never looked short again, and each round trip paid the
// wake-up (RTT p50 2-4x the kernel's). A trickle (1 ms gaps, beyond
// 8*max) stops spinning at its first frame; request/response
// traffic, bursts and floods keep the window at max. While it spins the
// worker yields its CPU at every empty poll (spin). Not safe for
// concurrent use.
type spinner struct {
	max   int64 // ns; 0: never spin
	win   int64 // the current spin window, ns
	idle  int64 // time of the first empty poll since frames came; 0: the last poll found frames
	last  int64 // time of the last poll that found frames
	slept bool  // the worker went to sleep since frames came
}

func newSpinner(max time.Duration) spinner {
	return spinner{max: max.Nanoseconds(), win: max.Nanoseconds()}
}

// found records a poll at now that found frames.
func (s *spinner) found(now int64) {
	if s.idle != 0 {
		limit := s.max
		if s.slept {
			limit = 2 * s.max
		}
		switch gap := now - s.idle; {
		case gap > 8*s.max:
			s.win = 0 // a trickle, or a pause: sleep at once from now on
		case gap > limit:
			if s.win /= 2; s.win < s.max/32 {
				s.win = 0
			}
		default:
			s.win = s.max
		}
	}
	s.idle, s.last, s.slept = 0, now, false
}

// spin records an empty poll at now and says whether to poll again
// rather than sleep; false means the worker sleeps.
func (s *spinner) spin(now int64) bool {
	if s.idle == 0 {
		s.idle = now
	}
	if now-s.last < s.win {
		// Spin politely: the client and server of a round trip often
		// wait for this CPU (2 vCPUs here), and a spin that held it made
		// their turn, and so the round trip, slower than a sleep did
		// (UDP RTT p50 106-161 µs against 58-61 µs asleep, load 5-10);
		// yielding in every empty poll, 39-43 µs against the kernel's
		// 22-28 µs. sched_yield returns at once when nothing else waits.
		unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		return true
	}
	s.slept = true
	return false
}

// run serves the queue until ctx is done.
func (w *worker) run(ctx context.Context) {
	// An atomic flag, not ctx.Err (which takes the context's mutex), is
	// what the loop checks each round.
	var stop atomic.Bool
	done := context.AfterFunc(ctx, func() { stop.Store(true) })
	defer done()
	w.ports()
	for _, q := range w.qs {
		q.refill()
	}
	sp := newSpinner(w.dp.opts.Spin)
	housekept := int64(0)
	for !stop.Load() {
		now := time.Since(w.start).Nanoseconds()
		if w.poll(now) > 0 {
			sp.found(now)
			continue
		}
		if sp.spin(now) {
			continue
		}
		if now-housekept >= idleEveryNs {
			housekept = now
			w.idle(now)
		}
		wait := w.waitMs()
		if w.ct.Dumping() {
			wait = min(wait, dumpWaitMs)
		}
		if w.sleep() { // no frames handed over meanwhile
			w.wait(wait)
			w.woke()
		}
	}
	if w.off != nil {
		w.off.flushAll(w)
	}
}

// idle is the housekeeping of a worker with no frames to forward: one
// large Expire call (which also serves a large Dump page), and every
// idleSweepNs an expiry pass over the whole table, in chunks, stopping
// early when frames arrive.
func (w *worker) idle(now int64) {
	if w.off != nil && w.ct.Dumping() {
		// A listing is served from Expire below: fold first, so that
		// its page shows the offloaded flows' timers as of now.
		w.off.idleStep(w, now)
	}
	left := idleChunk
	if now-w.swept >= idleSweepNs {
		w.swept = now
		left = w.ct.SweepCost()
	}
	for ; left > 0; left -= idleChunk {
		w.ct.Expire(now, min(left, idleChunk))
		if w.received() {
			break
		}
	}
	if w.off != nil {
		w.off.idleStep(w, now)
	}
	w.publish()
}

// received says whether a socket has frames on its RX ring.
func (w *worker) received() bool {
	for _, q := range w.qs {
		if q.rx.consumerPeek(1) > 0 {
			return true
		}
	}
	return w.handoffPending()
}

// poll forwards one batch of received frames from each interface's socket
// and returns how many it took.
func (w *worker) poll(now int64) int {
	w.ports()
	for _, q := range w.qs {
		q.reap()
	}
	for _, q := range w.qs {
		q.refill()
	}
	if w.held.n > 0 {
		w.flushHeld(*w.dp.fwd.Load(), now)
	}
	over := false
	for _, q := range w.qs {
		over = over || q.overloaded()
	}
	if over && w.guard.bulkLoad(w.stats.local[RxFrames], w.stats.local[ConnNew], now) {
		over = false // established traffic fills the ring, not handshakes
	}
	w.guard.check(over, w.guard.flooded(w.ct.Evictions(), now), now)
	if w.congested() {
		// The kernel drains TX too slowly: flush before taking more.
		return w.flush()
	}
	cfg := w.cfg.Load()
	if cfg != w.seen {
		w.adopt(cfg)
	}
	fwd := *w.dp.fwd.Load()
	w.syncEdge(cfg, now) // before the batch: synced flows' first frames find their entries
	n := 0
	if w.ho.in != nil {
		n += w.drainHandoff(cfg, fwd, now)
	}
	for slot, q := range w.qs {
		n += w.pollQueue(uint16(slot), q, cfg, fwd, now)
	}
	if w.ho.out != nil {
		w.publishHandoff()
	}
	if n == 0 {
		if w.off != nil {
			// No batch edge (step) follows: the deletes queued before
			// the batch (a sync record's eviction) are written now.
			w.off.writeDeletes()
		}
		return w.flush()
	}
	w.nudgeResolver()
	w.ct.Expire(now, expireBudget)
	if w.off != nil {
		w.off.step(w, now, foldBatch)
	}
	w.publish()
	return n
}

// congested says whether a queue's TX backlog is too long to take more
// frames: any received frame may have to leave by it.
func (w *worker) congested() bool {
	for _, q := range w.qs {
		if len(q.backlog) > backlogHigh {
			return true
		}
	}
	return false
}

// flush sends what waits in the backlogs and returns how many frames are
// still waiting on links that are up (0: nothing can progress, sleep).
func (w *worker) flush() int {
	left := 0
	for _, q := range w.qs {
		if len(q.backlog) > 0 {
			q.transmit(nil)
		}
		if !q.down {
			left += len(q.backlog)
		}
	}
	w.publish()
	return left
}

// pollQueue forwards one batch of frames received on interface slot, each
// out of the interface its route names (w.out), and returns its size.
func (w *worker) pollQueue(slot uint16, q *queue, cfg *workerConfig, fwd []destFwd, now int64) int {
	n := q.peek()
	if n == 0 {
		return 0
	}
	for i := uint32(0); i < n; i++ {
		w.descs[i] = q.rx.descs[(q.rx.cachedCons+i)&q.rx.mask]
	}
	q.rx.consumerRelease(n)
	w.stats.local[RxFrames] += uint64(n)
	w.forward(slot, q, w.descs[:n], cfg, fwd, now, cfg.own != nil)
	return int(n)
}

// forward forwards descs, frames of interface slot's queue q (received,
// or handed off by another worker: owned false, they are at their owner
// already), each out of the interface its route names (w.out).
func (w *worker) forward(slot uint16, q *queue, descs []unix.XDPDesc, cfg *workerConfig, fwd []destFwd, now int64, owned bool) {
	w.in = slot

	// Parse every frame, then look all flows up at once: in a table far
	// larger than the caches, LookupBatch overlaps the DRAM misses of the
	// whole batch instead of paying them one frame at a time.
	nk := 0
	for i := range descs {
		w.kidx[i] = -1
		d := &descs[i]
		f := &w.views[i]
		if !q.view(d, f) {
			continue
		}
		m := &w.metas[i]
		if r := packet.Parse(f.Bytes(), m); r != packet.OK {
			w.stats.local[Malformed]++
			w.reasons[r]++
			continue
		}
		if owned && w.handOff(q, d, f.Bytes(), m, cfg) {
			continue // another worker owns it: freed below
		}
		w.keys[nk].SetFlow(&m.Src, &m.Dst, m.SrcPort, m.DstPort, m.Proto)
		w.kidx[i] = int8(nk)
		nk++
	}
	w.ct.LookupBatch(w.keys[:nk], now, w.hits[:nk])

	for i, d := range descs {
		if k := w.kidx[i]; k >= 0 {
			if f := &w.views[i]; w.handle(f, &w.metas[i], &w.keys[k], w.hits[k], cfg, fwd, now) {
				// The rewrite may have moved the frame in its chunk; the
				// descriptor is valid on every socket of the shared UMEM.
				d.Addr = d.Addr&q.frameMask + uint64(f.Off)
				d.Len = uint32(f.Len)
				w.enqueue(q, d)
				continue
			}
		}
		if w.held.id != 0 {
			w.hold(d, now)
			continue
		}
		q.release(d.Addr)
	}
	w.transmitBatches()
}

// enqueue adds d, a frame of q's UMEM, to the batch of the queue it
// leaves by (w.out). When that queue has a UMEM of its own (no shared
// UMEM), the frame is copied into one of its free frames, at the same
// offset in the chunk, and d goes back to q's free stack; with no free
// frame there it is dropped and counted.
func (w *worker) enqueue(q *queue, d unix.XDPDesc) {
	eq := w.qs[w.out]
	if eq.free != q.free {
		free := *eq.free
		if len(free) == 0 {
			eq.reap()
			if free = *eq.free; len(free) == 0 {
				w.stats.local[CopyNoFrame]++
				q.release(d.Addr)
				return
			}
		}
		base := free[len(free)-1]
		*eq.free = free[:len(free)-1]
		off := d.Addr &^ q.frameMask
		copy(eq.umem[base+off:base+off+uint64(d.Len)], q.umem[d.Addr:d.Addr+uint64(d.Len)])
		q.release(d.Addr)
		d.Addr = base + off
		w.stats.local[Copied]++
	}
	eq.batch[eq.nb] = d
	eq.nb++
}

// transmitBatches puts each queue's batch on its TX ring.
func (w *worker) transmitBatches() {
	for _, q := range w.qs {
		if q.nb == 0 && len(q.backlog) == 0 {
			continue
		}
		q.transmit(q.batch[:q.nb])
		w.stats.local[TxFrames] += uint64(q.nb)
		q.nb = 0
	}
}

// publish makes the worker's counters readable by Stats.
func (w *worker) publish() {
	var backlog, bad, kick, down, filled, completed uint64
	for _, q := range w.qs {
		backlog += uint64(len(q.backlog))
		bad += q.badDesc
		kick += q.kickErr
		down += q.netDown
		filled += q.filled
		completed += q.completed
	}
	w.stats.local[FillPosted], w.stats.local[Completed] = filled, completed
	w.stats.local[TxBacklog] = backlog
	w.stats.local[BadDesc] = bad
	w.stats.local[KickErrors] = kick
	w.stats.local[LinkDown] = down
	w.stats.local[SYNLevel] = uint64(w.guard.level)
	w.stats.local[SYNRaises] = w.guard.raises
	w.stats.local[SYNErrors] = w.guard.errs
	if w.off != nil {
		w.stats.local[OffloadInstalled], w.stats.local[OffloadRemoved], w.stats.local[OffloadErrors] = w.off.installed, w.off.removed, w.off.errs
	}
	w.stats.publish(&w.reasons, &w.verdicts)
	w.ds.publish()
	for i, idx := range w.laddrIdx {
		st := w.pool.AddrStats(idx)
		storeChanged(&w.laddrFigs[i].inUse, uint64(st.InUse))
		storeChanged(&w.laddrFigs[i].exhausted, st.Exhausted)
	}
}

// localAddrStats adds the pool's figures for local address a to inUse
// and exhausted; safe from any goroutine.
func (w *worker) localAddrStats(a netip.Addr, inUse, exhausted *uint64) {
	list := w.laddrList.Load()
	if list == nil {
		return
	}
	for i, b := range *list {
		if b == a {
			*inUse += w.laddrFigs[i].inUse.Load()
			*exhausted += w.laddrFigs[i].exhausted.Load()
		}
	}
}

// handle decides the fate of one parsed frame in three steps, and
// rewrites it in place; true means transmit the descriptor f leaves:
//
//   - resolve: conntrack's answer for the frame (LookupBatch, done for
//     the whole batch), or, for a miss to a service, a new connection
//     that the scheduler places;
//   - bind, for a new connection only: what the connection keeps for its
//     life besides the method conntrack bound (the client-side next hop
//     for replies, a FULLNAT local address and port);
//   - xmit: one modes.Xmit call on the connection's method and the
//     frame's direction.
//
// This is the per-packet path: no allocation, no lock, no interface call
// but the scheduler's on a connection's first packet.
func (w *worker) handle(f *modes.Frame, m *packet.Meta, key *conntrack.Key, hit conntrack.Hit,
	cfg *workerConfig, fwd []destFwd, now int64) bool {
	if m.IsICMP() {
		return w.handleICMP(f, m, hit, fwd)
	}
	var id uint32
	method := modes.Route
	e, dir := hit.Entry, hit.Dir
	// Only a SYN can reuse an entry: test for it here, where it inlines,
	// and spare every other frame the call.
	if e != nil && dir == conntrack.DirInput && m.TCPFlags&packet.TCPFlagSYN != 0 && w.ct.Reuse(e, m.TCPFlags) {
		e = nil // a SYN on a closed entry starts a new connection (conn_reuse_mode)
	}
	if e == nil {
		svc := w.service(cfg, m)
		if svc == nil {
			w.stats.local[NoService]++
			return false
		}
		c, v := w.ct.NewConn(svc.ct, key, m.TCPFlags, now)
		if c.Dest == nil {
			if v == conntrack.VerdictNotNew {
				w.stats.local[NotNew]++
			} else {
				w.stats.local[NoDest]++
			}
			return false
		}
		id, e, dir = c.Dest.ID, c.Entry, conntrack.DirInput
		if v == conntrack.VerdictExisting {
			// An earlier frame of this batch created (and bound) the entry.
			w.stats.local[ConnHit]++
		} else {
			if e != nil && !w.bind(e, svc, f) {
				return false
			}
			w.stats.local[ConnNew]++
			w.ds.conn(id)
		}
		if e == nil && int(id) < len(fwd) {
			// One-packet scheduling or an untracked flood: no entry to
			// carry the method, so the destination's own.
			method = fwd[id].method
		}
	} else if dir == conntrack.DirOutput {
		w.stats.local[ReplyHit]++
	} else if w.ct.ExpireNodest(e, now) {
		w.stats.local[NodestExpired]++
		return false
	} else {
		w.stats.local[ConnHit]++
	}
	if e != nil {
		prev := e.State()
		w.ct.Update(e, dir, m.TCPFlags, f.Len, now)
		if w.sx.on || e.NeedsHop() {
			w.synced(e, prev, dir, f, now) // connection sync (sync.go)
		}
		id, method = e.DestID(), modes.Method(e.Fwd())
	}
	sent := w.xmit(f, m, e, id, method, dir, fwd)
	if w.off != nil && e != nil {
		w.offload(e, dir, method, sent && w.xmitV == modes.OK, fwd)
	}
	return sent
}

// service is the virtual service of a new connection's first frame, or
// nil, looked up as ip_vs_service_find does: the firewall-mark service of
// the frame's mark first (xlb's classifier gives the mark; bpf/xdp.c's
// mark_service gives the same one), then the address and port. A mark
// with no service of the frame's family falls through, as in the kernel.
// The address and port lookup is workerConfig.byAddr's, in w.svcs, the
// index adopt built of c.services (c is w.seen).
func (w *worker) service(c *workerConfig, m *packet.Meta) *workerService {
	if mark, ok := c.marks.Classify(m.Proto, &m.Dst, m.DstPort); ok {
		if svc := c.fwmarks[fwmKey{mark, !packet.IsMapped(&m.Dst)}]; svc != nil {
			return svc
		}
	}
	if svc, _ := w.svcs.get(&m.Dst, m.DstPort, m.Proto); svc != nil {
		return svc
	}
	svc, _ := w.svcs.get(&m.Dst, 0, m.Proto)
	return svc
}

// bind completes a connection conntrack just created: NAT and FULLNAT
// replies go back to the hop the client's frames came from (the frame's
// source MAC), and a FULLNAT connection gets a local address and port
// from the worker's pool (ip_vs_bind_xmit, DPVS's conn_bind_dest and
// sa_fetch). It returns false, with the entry removed, when no local port
// is free: the frame is dropped, as DPVS drops the SYN.
func (w *worker) bind(e *conntrack.Entry, svc *workerService, f *modes.Frame) bool {
	method := modes.Method(e.Fwd())
	if method != modes.Masq && method != modes.FullNAT {
		return true
	}
	b := f.Bytes()
	e.SetHop([6]byte(b[6:12]))
	e.SetHopIface(w.in)
	if method != modes.FullNAT {
		return true
	}
	rs, rport := e.DestAddr16(), e.DestPort()
	la, lport, ok := w.pool.AllocFrom(svc.lidx, &svc.lnext, rs, rport)
	if ok && !w.ct.SetLocal(e, la, lport) {
		w.pool.Release(la, rs, rport, lport)
		ok = false
	}
	if !ok {
		w.stats.local[NoLocalPort]++
		w.ct.Remove(e)
		return false
	}
	return true
}

// xmit fills the worker's plan for the frame's connection and direction
// and rewrites the frame (modes.Xmit). A frame too big for the egress MTU
// is turned into the ICMP error its sender needs, as IPVS answers it.
func (w *worker) xmit(f *modes.Frame, m *packet.Meta, e *conntrack.Entry, id uint32, method modes.Method,
	dir conntrack.Dir, fwd []destFwd) bool {
	p := &w.plan
	p.Method = method
	var out uint16 // the egress interface's slot
	if dir == conntrack.DirOutput {
		if e == nil {
			return false
		}
		// The reply leaves where the client's frames came in.
		if out = e.HopIface(); int(out) >= len(w.ifs) {
			w.stats.local[NoNeighbour]++
			return false
		}
		// Only what the method reads: the VIP for NAT, the client too
		// for FULLNAT.
		p.DstMAC = e.Hop()
		p.VIP, p.VPort = e.VirtualAddr16()
		if method == modes.FullNAT {
			p.Client, p.ClientPort = e.ClientAddr16()
		}
	} else {
		if method == modes.Local {
			if packet.CompleteL4Checksum(f.Bytes(), m) {
				w.stats.local[CsumCompleted]++
			}
			return w.deliverLocal(f.Bytes(), m.L3Off, m.IPLen, id)
		}
		if int(id) >= len(fwd) {
			w.stats.local[NoNeighbour]++
			return false
		}
		if !fwd[id].macOK {
			// Ask poll to hold it until the resolver has the MAC.
			w.held.id, w.held.ipLen = id, m.IPLen
			return false
		}
		fd := &fwd[id]
		if out = fd.slot; int(out) >= len(w.ifs) {
			w.stats.local[NoNeighbour]++
			return false
		}
		// Only what the method reads (modes/doc.go's table): the
		// encapsulation (24 bytes) for TUN, the local address for
		// FULLNAT; the others leave those fields as the last frame did.
		p.DstMAC = fd.mac
		if method == modes.Tunnel {
			p.Encap = fd.encap
		}
		if e != nil {
			p.RS, p.RPort = e.DestAddr16(), e.DestPort()
			if method == modes.FullNAT {
				p.Laddr, p.Lport = e.LocalAddr16(), e.LocalPort()
			}
		} else {
			p.RS, p.RPort = fd.addr.As16(), fd.port
		}
	}
	p.MTU, p.SrcMAC = w.ifs[out].mtu, w.ifs[out].mac
	w.out = out
	if w.partial = packet.CompleteL4Checksum(f.Bytes(), m); w.partial {
		w.stats.local[CsumCompleted]++
	}
	ipLen := m.IPLen // IPVS counts IP bytes (skb->len at L3), before encapsulation
	v := modes.Xmit(f, m, p, modes.Dir(dir))
	w.xmitV = v
	switch v {
	case modes.OK:
		if dir == conntrack.DirOutput {
			w.ds.out(id, ipLen)
		} else {
			w.ds.in(id, ipLen)
		}
		return true
	case modes.TooBig:
		src := m.Dst // the VIP, for a client's frame
		if dir == conntrack.DirOutput {
			src = w.localAddr(m.Version)
		}
		if modes.ReplyTooBig(f, m, p.ReportMTU(), &src) == modes.OK {
			w.out = w.in // back to the sender, by the way it came
			w.stats.local[TooBigSent]++
			return true
		}
	case modes.TTLExceeded:
		src := w.localAddr(m.Version)
		if modes.ReplyTimeExceeded(f, m, &src) == modes.OK {
			w.out = w.in
			w.stats.local[TTLExceeded]++
			return true
		}
	}
	w.stats.local[XmitDropped]++
	w.verdicts[v]++
	return false
}

// localAddr is the director's own address of IP version v, the source of
// the ICMP errors it sends as a router.
func (w *worker) localAddr(v uint8) [16]byte {
	if v == 4 {
		return w.addr4
	}
	return w.addr6
}

// maxPublishedLaddrs bounds the local addresses whose figures a worker
// publishes (-G); the pool serves any number.
const maxPublishedLaddrs = 256

// adopt takes a new configuration at a batch edge: the port pool learns
// the FULLNAT local addresses, and each service the indexes of its own.
// It allocates, once per configuration, never per frame.
func (w *worker) adopt(cfg *workerConfig) {
	w.seen = cfg
	w.svcs = newKeyIndex(cfg.services)
	w.tap = cfg.local
	if err := w.pool.SetAddrs(cfg.laddrs); err != nil {
		w.dp.opts.Logger.Error("set FULLNAT local addresses", "queue", w.id, "err", err)
	}
	list := make([]netip.Addr, 0, len(cfg.laddrs))
	w.laddrIdx = w.laddrIdx[:0]
	for _, a := range cfg.laddrs {
		if i, ok := w.pool.Index(a.As16()); ok && len(list) < maxPublishedLaddrs {
			list = append(list, a)
			w.laddrIdx = append(w.laddrIdx, i)
		}
	}
	for i := range w.laddrFigs {
		w.laddrFigs[i].inUse.Store(0)
		w.laddrFigs[i].exhausted.Store(0)
	}
	w.laddrList.Store(&list)
	for _, svc := range cfg.services {
		w.adoptLaddrs(svc)
	}
	for _, svc := range cfg.fwmarks { // FULLNAT for a firewall mark too
		w.adoptLaddrs(svc)
	}
}

// adoptLaddrs gives svc the pool indexes of its local addresses.
func (w *worker) adoptLaddrs(svc *workerService) {
	svc.lidx = svc.lidx[:0]
	for _, a := range svc.laddrs {
		if i, ok := w.pool.Index(a); ok {
			svc.lidx = append(svc.lidx, i)
		}
	}
}
