//go:build linux

package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

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
	mtu     int // the interface's MTU, checked by every rewrite
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
	// laddrList (set by adopt) names the local addresses whose pool
	// figures the worker publishes for -G at batch edges, laddrFigs[i]
	// the i-th one's; laddrIdx are their pool indexes.
	laddrList atomic.Pointer[[]netip.Addr]
	laddrIdx  []int32
	laddrFigs [maxPublishedLaddrs]struct{ inUse, exhausted atomic.Uint64 }
	swept     int64 // time of the latest whole-table expiry pass when idle

	// Per-batch scratch space, reused: the parsed headers and flow key of
	// each received frame, and conntrack's answers for the keys.
	metas [maxBatch]packet.Meta
	keys  [maxBatch]conntrack.Key
	hits  [maxBatch]conntrack.Hit
	kidx  [maxBatch]int8 // index into keys, or -1 for a frame not parsed
	views [maxBatch]modes.Frame

	held holdQueue // frames waiting for their destination's MAC
	// holdView and holdMeta are xmitHeld's scratch space.
	holdView modes.Frame
	holdMeta packet.Meta
}

func newWorker(d *Dataplane, queue, queues int) (*worker, error) {
	sock, err := newSocket(d.ifindex, queue, d.opts.Socket)
	if err != nil {
		return nil, fmt.Errorf("open AF_XDP socket on %s queue %d: %w", d.opts.Interface, queue, err)
	}
	w := &worker{id: queue, dp: d, sock: sock, mac: d.mac, mtu: d.mtu, start: time.Now(), ds: newDestStats(d.opts.MaxDests + 1),
		addr4: d.localAddr(true), addr6: d.localAddr(false)}
	lo := laddr.DefaultOptions()
	lo.Worker, lo.Workers = queue, queues
	if w.pool, err = laddr.New(lo); err != nil {
		sock.close()
		return nil, fmt.Errorf("local port pool of queue %d: %w", queue, err)
	}
	copts := conntrack.DefaultOptions()
	copts.Capacity = d.opts.ConnCapacity
	copts.Registry = d.reg
	copts.Settings = d.ctSettings
	copts.LocalReleased = func(la [16]byte, lport uint16, rs [16]byte, rport uint16) {
		w.pool.Release(la, rs, rport, lport)
	}
	if w.ct, err = conntrack.New(copts); err != nil {
		sock.close()
		return nil, fmt.Errorf("connection table of queue %d: %w", queue, err)
	}
	w.q = newQueue(sock.umem, sock.frameSize, sock.numFrames, sock.fill, sock.comp, sock.rx, sock.tx, sock)
	w.cfg.Store(&workerConfig{services: map[svcKey]*workerService{}})
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
		w.idle(now)
		wait := w.waitMs()
		if w.ct.Dumping() {
			wait = min(wait, dumpWaitMs)
		}
		w.q.sys.wait(wait)
	}
}

// idle is the housekeeping of a worker with no frames to forward: one
// large Expire call (which also serves a large Dump page), and every
// idleSweepNs an expiry pass over the whole table, in chunks, stopping
// early when frames arrive.
func (w *worker) idle(now int64) {
	left := idleChunk
	if now-w.swept >= idleSweepNs {
		w.swept = now
		left = w.ct.SweepCost()
	}
	for ; left > 0; left -= idleChunk {
		w.ct.Expire(now, min(left, idleChunk))
		if w.q.rx.consumerPeek(1) > 0 {
			break
		}
	}
	w.publish()
}

// poll forwards one batch of received frames and returns its size.
func (w *worker) poll(now int64) int {
	q := w.q
	q.reap()
	q.refill()
	if w.held.n > 0 {
		w.flushHeld(*w.dp.fwd.Load(), now)
	}
	if len(q.backlog) > backlogHigh {
		// The kernel drains TX too slowly: flush before taking more.
		q.transmit(nil)
		w.publish()
		if q.down {
			return 0 // the link is down: sleep rather than spin on the backlog
		}
		return len(q.backlog)
	}
	n := q.rx.consumerPeek(maxBatch)
	if n == 0 {
		if len(q.backlog) > 0 {
			q.transmit(nil)
			w.publish()
		}
		if q.down {
			return 0 // the link is down: sleep rather than spin on the backlog
		}
		return len(q.backlog)
	}
	cfg := w.cfg.Load()
	if cfg != w.seen {
		w.adopt(cfg)
	}
	fwd := *w.dp.fwd.Load()

	// Parse every frame, then look all flows up at once: in a table far
	// larger than the caches, LookupBatch overlaps the DRAM misses of the
	// whole batch instead of paying them one frame at a time.
	nk := 0
	for i := uint32(0); i < n; i++ {
		w.kidx[i] = -1
		d := &q.rx.descs[(q.rx.cachedCons+i)&q.rx.mask]
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
		w.keys[nk] = conntrack.Key{Src: m.Src, Dst: m.Dst, SrcPort: m.SrcPort, DstPort: m.DstPort, Proto: m.Proto}
		w.kidx[i] = int8(nk)
		nk++
	}
	w.ct.LookupBatch(w.keys[:nk], now, w.hits[:nk])

	ntx := 0
	for i := uint32(0); i < n; i++ {
		d := q.rx.descs[(q.rx.cachedCons+i)&q.rx.mask]
		if k := w.kidx[i]; k >= 0 {
			if f := &w.views[i]; w.handle(f, &w.metas[i], &w.keys[k], w.hits[k], cfg, fwd, now) {
				// The rewrite may have moved the frame in its chunk.
				d.Addr = d.Addr&q.frameMask + uint64(f.Off)
				d.Len = uint32(f.Len)
				q.batch[ntx] = d
				ntx++
				continue
			}
		}
		if w.held.id != 0 {
			w.hold(d, now)
			continue
		}
		q.release(d.Addr)
	}
	w.nudgeResolver()
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
	w.stats.local[LinkDown] = w.q.netDown
	w.stats.publish()
	w.ds.publish()
	for i, idx := range w.laddrIdx {
		st := w.pool.AddrStats(idx)
		w.laddrFigs[i].inUse.Store(uint64(st.InUse))
		w.laddrFigs[i].exhausted.Store(st.Exhausted)
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
	} else {
		w.stats.local[ConnHit]++
	}
	if e != nil {
		w.ct.Update(e, dir, m.TCPFlags, f.Len, now)
		id, method = e.DestID(), modes.Method(e.Fwd())
	}
	return w.xmit(f, m, e, id, method, dir, fwd)
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
	p.Method, p.MTU, p.SrcMAC = method, w.mtu, w.mac
	if dir == conntrack.DirOutput {
		if e == nil {
			return false
		}
		k := e.Key()
		p.DstMAC = e.Hop()
		p.Client, p.ClientPort, p.VIP, p.VPort = k.Src, k.SrcPort, k.Dst, k.DstPort
	} else {
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
		p.DstMAC, p.Encap = fd.mac, fd.encap
		if e != nil {
			p.RS, p.RPort = e.DestAddr16(), e.DestPort()
			p.Laddr, p.Lport = e.LocalAddr16(), e.LocalPort()
		} else {
			p.RS, p.RPort = fd.addr.As16(), fd.port
		}
	}
	if packet.CompleteL4Checksum(f.Bytes(), m) {
		w.stats.local[CsumCompleted]++
	}
	ipLen := m.IPLen // IPVS counts IP bytes (skb->len at L3), before encapsulation
	v := modes.Xmit(f, m, p, modes.Dir(dir))
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
			w.stats.local[TooBigSent]++
			return true
		}
	case modes.TTLExceeded:
		src := w.localAddr(m.Version)
		if modes.ReplyTimeExceeded(f, m, &src) == modes.OK {
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
		svc.lidx = svc.lidx[:0]
		for _, a := range svc.laddrs {
			if i, ok := w.pool.Index(a); ok {
				svc.lidx = append(svc.lidx, i)
			}
		}
	}
}
