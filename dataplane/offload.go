//go:build linux

package dataplane

import (
	"errors"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/modes"
)

// Flow offload (Options.Offload), the worker's half. The worker keeps
// deciding every connection: its first frame, the scheduling, the TCP
// state machine (SYN, FIN and RST always come to it: the XDP program
// never forwards them) and the timers. Once a direct-routing connection
// is ESTABLISHED (a UDP flow: once forwarded), the worker installs its
// rewrite in the program's flows map, and the program rewrites and sends
// the flow's later frames itself (bpf/xdp.c, offload), counting them per
// flow and per destination.
//
// What the worker owes IPVS's semantics for the frames it no longer sees:
//
//   - --stats and --rate: the program's per-destination counters
//     (dest_stats) are added to the workers' own when they are read
//     (destTotals), so they are exact to the packet at any time;
//   - timers (-L -c): the worker folds each flow's counters and last-seen
//     time into its conntrack entry (conntrack.Table.Fold) at least every
//     foldEveryNs, and whenever conntrack finds the entry expired, so an
//     entry whose frames keep coming never expires and a persistence
//     template stays alive while its connections do;
//   - the flow leaves the map (DeleteFlow) when its connection leaves
//     ESTABLISHED, leaves the table (expiry, eviction, removal), loses
//     its destination, or its next hop's MAC or interface changes; its
//     next frames come to the worker again, which applies
//     expire_nodest_conn, re-resolves, or installs the flow anew.
//
// The map operations are syscalls, made at connection events and at
// batch edges with a bounded budget, never per forwarded frame.

// flowTable is the XDP program's flows map as the worker uses it:
// bpf.Objects, or an in-memory fake in tests. Called per connection
// event and per fold, never per frame.
type flowTable interface {
	PutFlow(*bpf.FlowKey, *bpf.Flow) error
	LookupFlow(*bpf.FlowKey, *bpf.Flow) error
	DeleteFlow(*bpf.FlowKey) error
}

// foldEveryNs is how often, at most, each offloaded flow is folded into
// its entry: the lag of -L -c's timer behind the last frame, and far
// below any timeout a real configuration sets (the shortest IPVS
// default, CLOSE, is 10 s; an expired-looking entry is folded at once
// anyway).
const foldEveryNs = int64(time.Second)

// foldBatch is how many flows a busy worker folds per batch when a fold
// pass is due: a map lookup is about a microsecond.
const foldBatch = 16

// offFlow is one installed flow.
type offFlow struct {
	e           *conntrack.Entry
	key         bpf.FlowKey
	dest        uint32
	mac         [6]byte // the next hop it was installed with
	slot        uint16  // the egress interface's slot
	pkts, bytes uint64  // the program's counters folded so far
}

// offloader is a worker's set of offloaded flows. Not safe for
// concurrent use: the worker's own.
type offloader struct {
	m     flowTable
	kt0   int64 // CLOCK_MONOTONIC (bpf_ktime_get_ns) at the worker's time 0
	max   int   // flows this worker may install
	flows []offFlow
	at    map[*conntrack.Entry]int32 // index into flows
	next  int                        // fold cursor
	pass  int64                      // start of the latest complete fold pass
	// cfg and fwd are the configuration and forwarding table the flows
	// were last checked against.
	cfg *workerConfig
	fwd *[]destFwd
	v   bpf.Flow // scratch

	installed, removed, folds, errs uint64
}

func newOffloader(m flowTable, max int, start time.Time) *offloader {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return &offloader{m: m, max: max, kt0: ts.Nano() - time.Since(start).Nanoseconds(),
		flows: make([]offFlow, 0, max), at: make(map[*conntrack.Entry]int32, max)}
}

// offload is handle's hook after a frame of connection e went through
// xmit (sent: it was transmitted): it installs the flow once it is
// offloadable, and takes it out of the program when its connection
// leaves ESTABLISHED.
func (w *worker) offload(e *conntrack.Entry, dir conntrack.Dir, method modes.Method, sent bool, fwd []destFwd) {
	o := w.off
	if e.Offloaded() {
		if e.Proto() == conntrack.ProtoTCP && e.State() != conntrack.StateEstablished {
			o.drop(w, e)
		}
		return
	}
	if !sent || method != modes.Route || dir != conntrack.DirInput || len(o.flows) >= o.max || e.Template() {
		return
	}
	switch e.Proto() {
	case conntrack.ProtoTCP:
		if e.State() != conntrack.StateEstablished {
			return
		}
	case conntrack.ProtoUDP:
	default:
		return
	}
	id := e.DestID()
	if int(id) >= len(fwd) || !fwd[id].macOK || int(w.out) >= len(w.ifs) {
		return
	}
	if d := w.dp.reg.Get(id); d == nil || !d.Available() {
		return
	}
	fd, ifc := &fwd[id], &w.ifs[w.out]
	k := e.Key()
	f := offFlow{e: e, key: bpf.MakeFlowKey(k.Src, k.SrcPort, k.Dst, k.DstPort, k.Proto), dest: id, mac: fd.mac, slot: w.out}
	o.v = bpf.Flow{DstMAC: fd.mac, SrcMAC: ifc.mac, Ifindex: uint32(ifc.index), MTU: uint32(ifc.mtu), Dest: id, Op: bpf.FlowDR}
	if err := o.m.PutFlow(&f.key, &o.v); err != nil {
		o.errs++
		return
	}
	o.at[e] = int32(len(o.flows))
	o.flows = append(o.flows, f)
	w.ct.SetOffloaded(e, true)
	o.installed++
}

// fold adds what the program forwarded of flow i since the last fold to
// its entry.
func (o *offloader) fold(w *worker, i int) {
	f := &o.flows[i]
	if err := o.m.LookupFlow(&f.key, &o.v); err != nil {
		if !errors.Is(err, ebpf.ErrKeyNotExist) {
			o.errs++
		}
		return
	}
	o.folds++
	if n := o.v.Packets - f.pkts; n > 0 {
		w.ct.Fold(f.e, conntrack.DirInput, n, o.v.Bytes-f.bytes, int64(o.v.LastSeen)-o.kt0)
		f.pkts, f.bytes = o.v.Packets, o.v.Bytes
	}
}

// drop folds e's flow and takes it out of the program; e stays in the
// table, not offloaded.
func (o *offloader) drop(w *worker, e *conntrack.Entry) {
	i, ok := o.at[e]
	if !ok {
		w.ct.SetOffloaded(e, false)
		return
	}
	o.fold(w, int(i))
	w.ct.SetOffloaded(e, false)
	o.forget(int(i))
}

// forget deletes flow i from the program and from the set.
func (o *offloader) forget(i int) {
	f := &o.flows[i]
	if err := o.m.DeleteFlow(&f.key); err != nil {
		o.errs++
	}
	delete(o.at, f.e)
	last := len(o.flows) - 1
	if i != last {
		o.flows[i] = o.flows[last]
		o.at[o.flows[i].e] = int32(i)
	}
	o.flows[last] = offFlow{}
	o.flows = o.flows[:last]
	o.removed++
}

// released is conntrack's OffloadReleased hook: e is leaving the table.
func (o *offloader) released(e *conntrack.Entry) {
	if i, ok := o.at[e]; ok {
		o.forget(int(i))
	}
}

// refresh is conntrack's OffloadRefresh hook: e looks expired; its
// offloaded frames may say otherwise.
func (o *offloader) refresh(w *worker, e *conntrack.Entry) {
	if i, ok := o.at[e]; ok {
		o.fold(w, int(i))
	}
}

// step is the offload's batch-edge housekeeping: when the configuration
// or the forwarding table changed, every flow whose destination left its
// service or whose next hop changed is taken out of the program; and
// when a fold pass is due (every foldEveryNs), up to budget flows are
// folded (budget < 0: the rest of the pass).
func (o *offloader) step(w *worker, now int64, budget int) {
	if fwd := w.dp.fwd.Load(); fwd != o.fwd || w.seen != o.cfg {
		o.fwd, o.cfg = fwd, w.seen
		o.check(w, *fwd)
	}
	if now-o.pass < foldEveryNs {
		return
	}
	for budget != 0 && o.next < len(o.flows) {
		o.fold(w, o.next)
		o.next++
		budget--
	}
	if o.next >= len(o.flows) {
		o.next, o.pass = 0, now
	}
}

// check takes out of the program the flows that must come back to the
// worker: their destination is no longer available (removed: the worker
// applies expire_nodest_conn, or forwards them itself as IPVS does), or
// their next hop's MAC or interface changed.
func (o *offloader) check(w *worker, fwd []destFwd) {
	for i := 0; i < len(o.flows); {
		f := &o.flows[i]
		d := w.dp.reg.Get(f.dest)
		if d != nil && d.Available() && int(f.dest) < len(fwd) && fwd[f.dest].macOK &&
			fwd[f.dest].mac == f.mac && fwd[f.dest].slot == f.slot {
			i++
			continue
		}
		e := f.e
		o.fold(w, i)
		w.ct.SetOffloaded(e, false)
		o.forget(i) // moves the last flow into i
	}
}

// flushAll folds every flow and takes them all out of the program, when
// the worker stops.
func (o *offloader) flushAll(w *worker) {
	for len(o.flows) > 0 {
		i := len(o.flows) - 1
		e := o.flows[i].e
		o.fold(w, i)
		w.ct.SetOffloaded(e, false)
		o.forget(i)
	}
}

// maxFlows is the flows map's size.
func (d *Dataplane) maxFlows() int {
	if d.opts.MaxFlows > 0 {
		return d.opts.MaxFlows
	}
	return bpf.DefaultMaxFlows
}

// warnOffloadVeth warns when the offload is on over a veth: the frames
// the XDP program sends itself (XDP_TX, bpf_redirect) reach the veth's
// peer only if the peer runs an XDP program of its own, and are lost
// otherwise (testenv.EnableXDPTx). xlb cannot see the peer, which lives
// in another namespace.
func warnOffloadVeth(opts Options, ifindex int, name string) {
	if !opts.Offload {
		return
	}
	if l, err := netlink.LinkByIndex(ifindex); err == nil && l.Type() == "veth" {
		opts.Logger.Warn("flow offload on a veth: its peer must run an XDP program (one that passes everything will do), or the offloaded frames are lost",
			"interface", name)
	}
}
