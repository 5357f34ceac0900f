//go:build linux

package dataplane

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/modes"
)

// idleWaitMs is how long an idle worker sleeps in poll(2) before it looks
// at its stop signal and expires connections again.
const idleWaitMs = 100

// expireBudget bounds the connection entries one expiry pass looks at, so
// that expiry never stalls forwarding (about a microsecond's work).
const expireBudget = 64

// worker serves one queue: its socket, its connection-table shard and its
// counters belong to it alone. Not safe for concurrent use; only cfg,
// the published counters and the conntrack snapshot are read from
// elsewhere.
type worker struct {
	id    int
	dp    *Dataplane
	sock  *socket
	q     *queue
	ct    *conntrack.Table
	cfg   atomic.Pointer[workerConfig]
	stats counters
	ds    destStats // per-destination counters, by destination ID
	// reasons counts malformed frames by parser reason.
	reasons [packet.NumReasons]uint64
	mac     [6]byte
	start   time.Time
	guard   synGuard // SYN admission in XDP while this worker is overloaded

	// Per-batch scratch space, reused: the parsed headers and flow key of
	// each received frame, and conntrack's answers for the keys.
	metas [maxBatch]packet.Meta
	keys  [maxBatch]conntrack.Key
	hits  [maxBatch]conntrack.Hit
	kidx  [maxBatch]int8 // index into keys, or -1 for a frame not parsed
}

func newWorker(d *Dataplane, queue int) (*worker, error) {
	sock, err := newSocket(d.ifindex, queue, d.opts.Socket)
	if err != nil {
		return nil, fmt.Errorf("open AF_XDP socket on %s queue %d: %w", d.opts.Interface, queue, err)
	}
	copts := conntrack.DefaultOptions()
	copts.Capacity = d.opts.ConnCapacity
	copts.Registry = d.reg
	copts.Settings = d.ctSettings
	ct, err := conntrack.New(copts)
	if err != nil {
		sock.close()
		return nil, fmt.Errorf("connection table of queue %d: %w", queue, err)
	}
	w := &worker{id: queue, dp: d, sock: sock, ct: ct, mac: d.mac, start: time.Now(), ds: newDestStats(d.opts.MaxDests + 1)}
	w.q = newQueue(sock.umem, sock.frameSize, sock.numFrames, sock.fill, sock.comp, sock.rx, sock.tx, sock)
	w.cfg.Store(&workerConfig{services: map[svcKey]*workerService{}})
	w.guard.set = func(l bpf.SYNLevel) error {
		return d.objs.SYNGuard(queue, l, d.opts.SYNRate, d.opts.SYNBurst, d.opts.SYNAuto)
	}
	w.guard.refused = func() (uint64, error) { return d.objs.SYNRefused(queue) }
	if err := w.guard.set(bpf.SYNAdmit); err != nil { // the rates, for the XDP program's own trigger
		sock.close()
		return nil, err
	}
	return w, nil
}

func (w *worker) close() error {
	if w.sock == nil {
		return nil
	}
	err := w.sock.close()
	w.sock = nil
	return err
}

// spinNs is how long a worker keeps polling its rings after the last
// frame before it sleeps in poll(2). Waking from poll costs tens of
// microseconds on a VM; request/response traffic whose next packet comes
// within this window is served without that wake-up. The spin costs CPU
// only while traffic flows: an idle worker sleeps.
const spinNs = 50_000

// run serves the queue until ctx is done.
func (w *worker) run(ctx context.Context) {
	// An atomic flag, not ctx.Err (which takes the context's mutex), is
	// what the loop checks each round.
	var stop atomic.Bool
	done := context.AfterFunc(ctx, func() { stop.Store(true) })
	defer done()
	w.q.refill()
	last := int64(0)
	for !stop.Load() {
		now := time.Since(w.start).Nanoseconds()
		if w.poll(now) > 0 {
			last = now
			continue
		}
		if now-last < spinNs {
			continue
		}
		w.ct.Expire(now, expireBudget)
		w.publish()
		w.q.sys.wait(idleWaitMs)
	}
}

// poll forwards one batch of received frames and returns its size.
func (w *worker) poll(now int64) int {
	q := w.q
	q.reap()
	q.refill()
	w.guard.check(q.overloaded(), w.guard.flooded(w.ct.Evictions(), now), now)
	if len(q.backlog) > backlogHigh {
		// The kernel drains TX too slowly: flush before taking more.
		q.transmit(nil)
		w.publish()
		return len(q.backlog)
	}
	n := q.rx.consumerPeek(maxBatch)
	if n == 0 {
		if len(q.backlog) > 0 {
			q.transmit(nil)
			w.publish()
		}
		return len(q.backlog)
	}
	cfg := w.cfg.Load()
	fwd := *w.dp.fwd.Load()

	// Parse every frame, then look all flows up at once: in a table far
	// larger than the caches, LookupBatch overlaps the DRAM misses of the
	// whole batch instead of paying them one frame at a time.
	nk := 0
	for i := uint32(0); i < n; i++ {
		w.kidx[i] = -1
		d := &q.rx.descs[(q.rx.cachedCons+i)&q.rx.mask]
		frame := q.frame(d)
		if frame == nil {
			continue
		}
		m := &w.metas[i]
		if r := packet.Parse(frame, m); r != packet.OK {
			w.stats.local[Malformed]++
			w.reasons[r]++
			continue
		}
		w.keys[nk] = conntrack.Key{Src: m.Src, Dst: m.Dst, SrcPort: m.SrcPort, DstPort: m.DstPort, Proto: m.Proto}
		w.kidx[i] = int8(nk)
		nk++
	}
	w.ct.LookupBatch(w.keys[:nk], now, w.hits[:nk])

	ntx := 0
	for i := uint32(0); i < n; i++ {
		d := q.rx.descs[(q.rx.cachedCons+i)&q.rx.mask]
		if k := w.kidx[i]; k >= 0 && w.handle(q.frame(&d), &w.metas[i], &w.keys[k], w.hits[k], cfg, fwd, now) {
			q.batch[ntx] = d
			ntx++
		} else {
			q.release(d.Addr)
		}
	}
	q.rx.consumerRelease(n)
	w.stats.local[RxFrames] += uint64(n)
	q.transmit(q.batch[:ntx])
	w.stats.local[TxFrames] += uint64(ntx)
	w.ct.Expire(now, expireBudget)
	w.publish()
	return int(n)
}

// publish makes the worker's counters readable by Stats.
func (w *worker) publish() {
	w.stats.local[TxBacklog] = uint64(len(w.q.backlog))
	w.stats.local[BadDesc] = w.q.badDesc
	w.stats.local[KickErrors] = w.q.kickErr
	w.stats.local[SYNLevel] = uint64(w.guard.level)
	w.stats.local[SYNRaises] = w.guard.raises
	w.stats.local[SYNErrors] = w.guard.errs
	w.stats.publish()
	w.ds.publish()
}

// handle decides the fate of one parsed frame, given its conntrack
// lookup, and rewrites it in place; true means transmit it. This is the
// per-packet path: no allocation, no lock, no interface call but the
// scheduler's on a connection's first packet.
func (w *worker) handle(frame []byte, m *packet.Meta, key *conntrack.Key, hit conntrack.Hit,
	cfg *workerConfig, fwd []destFwd, now int64) bool {
	var id uint32
	e, dir := hit.Entry, hit.Dir
	if e != nil && dir == conntrack.DirInput && w.ct.Reuse(e, m.TCPFlags) {
		e = nil // a SYN on a closed entry starts a new connection (conn_reuse_mode)
	}
	if e == nil {
		svc := cfg.services[svcKey{addr: m.Dst, port: m.DstPort, proto: m.Proto}]
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
		if v == conntrack.VerdictExisting {
			// An earlier frame of this batch created the entry.
			w.stats.local[ConnHit]++
		} else {
			w.stats.local[ConnNew]++
			w.ds.conn(c.Dest.ID)
		}
		id, e, dir = c.Dest.ID, c.Entry, conntrack.DirInput
	} else {
		w.stats.local[ConnHit]++
	}
	if e != nil { // nil for one-packet scheduling and untracked floods
		w.ct.Update(e, dir, m.TCPFlags, len(frame), now)
		id = e.DestID()
	}
	if int(id) >= len(fwd) || !fwd[id].macOK {
		w.stats.local[NoNeighbour]++
		return false
	}
	switch fwd[id].fwd {
	case ipvs.FwdRoute:
		modes.DR(frame, &fwd[id].mac, &w.mac)
		w.ds.in(id, m.IPLen) // IPVS counts IP bytes (skb->len at L3)
		return true
	}
	return false
}
