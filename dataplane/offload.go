//go:build linux

package dataplane

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/modes"
)

// Flow offload (Options.Offload), the worker's half. The worker keeps
// deciding every connection: its first frame, the scheduling, the TCP
// state machine (SYN, FIN and RST always come to it: the XDP program
// never forwards them) and the timers. Once a connection is ESTABLISHED
// (a UDP flow: once forwarded), the worker installs its rewrite in the
// program's flows map, each direction once it has had offloadAfter
// frames (UDP: offloadAfterUDP), and the program rewrites and sends the flow's later frames itself
// (bpf/xdp.c, offload), counting them per flow and per destination. Every
// method but Local is offloaded: direct routing and TUN in the client's
// direction (their real servers answer the client directly), NAT and
// FULLNAT in both; TUN only with ipip encapsulation (GUE and GRE stay
// the worker's, as does IPv6 inside an outer IPv4 header).
//
// What the worker owes IPVS's semantics for the frames it no longer sees:
//
//   - --stats and --rate: the program's per-destination counters
//     (dest_stats) are added to the workers' own when they are read
//     (destTotals), so they are exact to the packet at any time;
//   - timers (-L -c): the worker folds each flow's counters and last-seen
//     time into its conntrack entry (conntrack.Table.Fold) at least every
//     foldEveryNs while the table is listed or synced (foldQuietNs
//     otherwise), and whenever conntrack finds the entry expired, so an
//     entry whose frames keep coming never expires and a persistence
//     template stays alive while its connections do;
//   - the flow leaves the map (DeleteFlow) when its connection leaves
//     ESTABLISHED, leaves the table (expiry, eviction, removal), loses
//     its destination, or its next hop's MAC or interface changes; its
//     next frames come to the worker again, which applies
//     expire_nodest_conn, re-resolves, or installs the flow anew.
//
// The map operations are syscalls, never made per forwarded frame.
// Installs are queued (installQueue) and written at the batch edge with
// one BPF_MAP_UPDATE_BATCH (flush): a single update is a syscall of 4-7
// µs here, a batched one 0.5-0.75 µs per flow (bpf.PutFlows); with the
// worker's bookkeeping, an install costs it about 1 µs batched against
// 5-6 µs (BenchmarkOffloadInstalls). 100,000 flows reaching the
// threshold together (the bench's 100k-flow search) cost the worker
// half a second with single updates, and its RX ring overflowed. A
// direction counts as installed only once the batch wrote it. Deletes (at
// connection events: FIN, RST, expiry, a destination or next hop
// changing) are queued too (deleteQueue) and written at the same edge
// with one BPF_MAP_DELETE_BATCH (writeDeletes), before the installs: a
// flow deleted and installed again under the same key in one batch (a
// connection reset and a new one on the same tuple) ends installed. A
// single delete is 3-10 µs here, a batched one 0.13-0.7 µs per flow
// (bpf.DeleteFlows); with the worker's bookkeeping a flow taken out
// costs it 0.23-0.28 µs batched against 5-9 µs alone
// (BenchmarkOffloadDeletes): the deletes of a destination removed with
// 100,000 flows, about 25 ms against 0.5-0.9 s. Between the event and the edge
// (within the batch) the program forwards the flow's frames as before:
// they go to the same destination and are counted in dest_stats, so
// --stats stays exact; the entry was folded when the flow was taken out
// (drop, check, flushAll), and its state-changing frames (SYN, FIN,
// RST) come to the worker anyway. A destination or next hop change is
// found at the edge itself (check), whose deletes the same edge writes.
// Folds read the map in chunks at batch edges, with a bounded budget.

// flowTable is the XDP program's flows map as the worker uses it:
// bpf.Objects, or an in-memory fake in tests. Called per connection
// event and per fold, never per frame.
type flowTable interface {
	// PutFlows writes keys[i] → vals[i] in one batch and returns how
	// many it wrote: all, or with an error those before the first that
	// failed (bpf.Objects.PutFlows).
	PutFlows(keys []bpf.FlowKey, vals []bpf.Flow) (int, error)
	LookupFlow(*bpf.FlowKey, *bpf.Flow) error
	// DeleteFlows removes keys in one batch, absent ones being no error,
	// and returns how many it went through: all, or with an error n such
	// that keys[:n] are gone (bpf.Objects.DeleteFlows).
	DeleteFlows(keys []bpf.FlowKey) (int, error)
	// DeleteFlow removes one flow, an absent one being no error: the
	// fallback when a DeleteFlows batch fails.
	DeleteFlow(*bpf.FlowKey) error
}

// flowWalker is a flowTable that can also be read in chunks, a syscall
// per chunk (bpf.Objects.WalkFlows: BPF_MAP_LOOKUP_BATCH): the fold pass
// then reads the map instead of looking each flow up. With 100,000
// flows, a lookup each (about 2 µs) took most of a busy worker's time:
// the offload's lossless rate at 100k flows was 0.18 Mpps against 0.32
// for the worker alone (make bench, 2026-12-02 05:23).
type flowWalker interface {
	WalkFlows(cur *bpf.FlowCursor, keys []bpf.FlowKey, vals []bpf.Flow) (n int, end bool, err error)
}

// foldEveryNs is how often, at most, each offloaded flow is folded into
// its entry while someone looks at the entries: during a listing
// (ipvsadm -L -c, whose timers then lag the last frame by at most this)
// and while the connection sync sends (its sync points count the
// program's frames too). Far below any timeout a real configuration sets
// (the shortest IPVS default, CLOSE, is 10 s).
const foldEveryNs = int64(time.Second)

// foldQuietNs is the fold period otherwise. Nothing then needs the
// entries' counters or timers sooner: --stats and --rate read the
// program's dest_stats directly, and an entry conntrack finds expired is
// folded at once (refresh), so a flow whose frames keep coming never
// expires whatever the period. A pass reads every offloaded flow (0.5-0.8
// µs each, see idleStep), so at 100,000 flows a pass a second kept 5-8%
// of a CPU busy on an idle worker; one in ten seconds, under 1%. The
// cost of the longer period: an entry's packet count lags, so a busy UDP
// flow counts as one of at most 8 packets (evictable when the table is
// full) for up to this long after its install.
const foldQuietNs = 10 * int64(time.Second)

// foldBatch is how many flows a busy worker folds per batch when a fold
// pass is due: a map lookup each is about a microsecond.
const foldBatch = 16

// walkChunk is how many map entries one WalkFlows call reads (a busy
// worker makes one per batch while a pass is due): about 14 KB. It must
// hold the largest hash bucket, a few entries.
const walkChunk = 96

// installQueue is how many installs a worker queues between two batch
// edges, each written at the next edge (flush). A batch of frames
// queues at most one per frame: maxBatch per socket, and a NAT worker
// polls two. A full queue leaves the direction to one of its later
// frames, which still reach the worker. A full flush of 256 is about
// 100-130 µs (bpf.PutFlows), of 64 frames' worth about 40 µs.
const installQueue = 256

// deleteQueue is how many deletes a worker queues between two batch
// edges, each written at the next edge (writeDeletes), before the
// installs. A batch of frames queues at most two per frame (drop: both
// directions) and the expiry in between a few; check, when a
// destination goes, queues all its flows. A full queue is written at
// once, as one batch: a delete is never left out (a stale flow would
// forward to a removed destination for ever). A batch of 256 is about
// 45-170 µs here (bpf.DeleteFlows), as many single deletes 0.8-2.6 ms.
const deleteQueue = 256

// offloadAfter is how many frames a direction of a connection goes
// through the worker before it is offloaded. Installing a flow and
// deleting it again are two map updates from the worker (bpf(2), about
// a microsecond each); a short connection (one HTTP request: about 5
// frames each way) would pay them for nothing, and did: offloading at
// the first established frame halved wrk's connections/s (0.53-0.69x
// nft fwd against 0.93-1.04x without offload, bench of 2026-12-02
// 03:19). A bulk or long-lived flow is offloaded after its first
// frames, as nftables flowtables offload at the first established one.
const offloadAfter = 8

// offloadAfterUDP is offloadAfter for UDP, which has no handshake and no
// FIN: the one-exchange flow the threshold must skip is a DNS query, one
// datagram each way; a flow with a second datagram in a direction is
// one that goes on (QUIC, RTP, tunnels, a resolver's or a stats agent's
// fixed port). With the installs batched (about 1 µs of the worker's
// time, BenchmarkOffloadInstalls), a flow pays for its install within a
// few offloaded frames, each of which saves the worker and the AF_XDP
// copy about 2 µs (bench/RESULTS.md). At 100k flows sent round robin,
// 8 frames each made most flows cross the threshold in the middle of
// the search's later trials.
const offloadAfterUDP = 2

// offFlow is one offloaded connection: its flows in each direction
// (DirInput, DirOutput; NAT has both, DR only the first).
type offFlow struct {
	e    *conntrack.Entry
	dest uint32
	on   [2]bool // the direction's flow is installed
	// queued is 1 + the direction's place in the install queue, 0 when
	// it is not queued. A queued direction has its key, mac, slot and
	// encap set, and is not on.
	queued      [2]uint16
	key         [2]bpf.FlowKey
	mac         [2][6]byte  // the next hop it was installed with
	slot        [2]uint16   // the egress interface's slot
	pkts, bytes [2]uint64   // the program's counters folded so far
	encap       modes.Encap // TUN: the encapsulation it was installed with
}

// offloader is a worker's set of offloaded flows. Not safe for
// concurrent use: the worker's own.
type offloader struct {
	m     flowTable
	kt0   int64  // CLOCK_MONOTONIC (bpf_ktime_get_ns) at the worker's time 0
	max   int    // flows (map entries) this worker may install
	keys  int    // flows installed
	qlen  int    // directions queued (not cancelled), not yet in keys
	after uint64 // frames a direction goes through the worker first (offloadAfter)
	// gso: every interface runs generic XDP with the tc companion, which
	// forwards the GSO skbs of flows whose sender leaves its checksums
	// to the NIC: those are installed too (bpf.FlowPartial). Set before
	// the worker runs.
	gso   bool
	flows []offFlow
	at    map[*conntrack.Entry]int32 // index into flows
	next  int                        // fold cursor
	pass  int64                      // start of the latest complete fold pass
	quiet int64                      // the fold period when nobody looks (foldQuietNs; see every)
	// walk, when m has it, reads the map in chunks for the fold pass;
	// byKey finds a read flow's index and direction (index<<1 | dir).
	walk  flowWalker
	byKey map[bpf.FlowKey]int32
	cur   bpf.FlowCursor
	wkeys [walkChunk]bpf.FlowKey
	wvals [walkChunk]bpf.Flow

	// walking: a pass over the map is under way; read: the entries it
	// has read so far; mapSeen: those the latest complete walk read, the
	// map's size then, all workers' flows. lookups: the pass under way
	// looks its flows up instead (fewFlows); looked: passes so made
	// since the latest walk.
	walking, lookups      bool
	read, mapSeen, looked int

	// cfg and fwd are the configuration and forwarding table the flows
	// were last checked against.
	cfg *workerConfig
	fwd *[]destFwd
	v   bpf.Flow // scratch
	// The install queue, written at the batch edge (flush): entries
	// [0, qn) of qkeys and qvals, qat[j] being the index<<1 | dir of
	// the flow whose direction entry j installs, -1 once cancelled (the
	// flow was taken out before the flush).
	qkeys [installQueue]bpf.FlowKey
	qvals [installQueue]bpf.Flow
	qat   [installQueue]int32
	qn    int
	// The delete queue, entries [0, dn) of dkeys, written at the batch
	// edge before the install queue (writeDeletes): flows the worker
	// took out (forget), whose frames the program forwards until then.
	dkeys [deleteQueue]bpf.FlowKey
	dn    int

	installed, removed, folds, errs uint64

	afterUDP uint64 // after for UDP (offloadAfterUDP)
}

func newOffloader(m flowTable, max int, start time.Time) *offloader {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	o := &offloader{m: m, max: max, after: offloadAfter, afterUDP: offloadAfterUDP, quiet: foldQuietNs,
		kt0:   ts.Nano() - time.Since(start).Nanoseconds(),
		flows: make([]offFlow, 0, max), at: make(map[*conntrack.Entry]int32, max)}
	if wk, ok := m.(flowWalker); ok {
		o.walk, o.byKey = wk, make(map[bpf.FlowKey]int32, max)
	}
	return o
}

// natDeltas are the folded checksum deltas of an address and port
// changing from old to new, as packet.SetAddrPortsWithChecksumUpdate
// records them (a field that does not change adds nothing): the IPv4
// header's, for the address, and the TCP or UDP checksum's, for both.
func natDeltas(old, new *[16]byte, oport, nport uint16) (ip, l4 uint16) {
	var d packet.ChecksumDelta
	addrDelta(&d, old, new)
	ip = ^d.Apply(0xffff) // fold(sum): Apply(c) is ^fold(^c + sum)
	if oport != nport {
		d.Update16(oport, nport)
	}
	return ip, ^d.Apply(0xffff)
}

// fullnatDeltas are natDeltas for FULLNAT's two changes at once, source
// osrc:osport to nsrc:nsport and destination odst:odport to ndst:ndport:
// one delta for each checksum, as SetAddrPortsWithChecksumUpdate applies
// them.
func fullnatDeltas(osrc, nsrc *[16]byte, osport, nsport uint16, odst, ndst *[16]byte, odport, ndport uint16) (ip, l4 uint16) {
	var d packet.ChecksumDelta
	addrDelta(&d, osrc, nsrc)
	addrDelta(&d, odst, ndst)
	ip = ^d.Apply(0xffff)
	if osport != nsport {
		d.Update16(osport, nsport)
	}
	if odport != ndport {
		d.Update16(odport, ndport)
	}
	return ip, ^d.Apply(0xffff)
}

// addrDelta records an address changing from old to new in d, word by
// word for the words that change, as packet's put32 and put128 do.
func addrDelta(d *packet.ChecksumDelta, old, new *[16]byte) {
	if packet.IsIPv4Mapped(old) {
		if o, n := binary.BigEndian.Uint32(old[12:]), binary.BigEndian.Uint32(new[12:]); o != n {
			d.Update32(o, n)
		}
	} else if *old != *new {
		d.Update128(old, new)
	}
}

// tunOp is the program's rewrite of a TUN flow to real server rs whose
// client-side destination is vip (the inner packet's family), and false
// for what the program does not build: GUE and GRE, and IPv6 inside IPv4
// (whose outer identification, a hash of the inner packet, modes.tunIn
// computes). The families are modes.tunIn's: the outer source's must be
// the real server's.
func tunOp(enc *modes.Encap, rs, vip *[16]byte) (bpf.FlowOp, bool) {
	if enc.Type != modes.IPIP || packet.IsIPv4Mapped(&enc.Src) != packet.IsIPv4Mapped(rs) {
		return 0, false
	}
	switch {
	case !packet.IsIPv4Mapped(rs):
		return bpf.FlowTun6, true
	case packet.IsIPv4Mapped(vip):
		return bpf.FlowTun4, true
	}
	return 0, false
}

// offload is handle's hook after a frame of connection e went through
// xmit (sent: it was rewritten and transmitted): it installs the frame's
// direction once the connection is offloadable (DR, TUN: the client's;
// NAT, FULLNAT: each direction) once the connection is ESTABLISHED (or,
// UDP, forwarded) and the direction has had offloadAfter frames, and
// takes the connection out of the program when it leaves ESTABLISHED.
func (w *worker) offload(e *conntrack.Entry, dir conntrack.Dir, method modes.Method, sent bool, fwd []destFwd) {
	o := w.off
	if e.Offloaded() && e.Proto() == conntrack.ProtoTCP && e.State() != conntrack.StateEstablished {
		o.drop(w, e)
		return
	}
	if !sent || o.keys+o.qlen >= o.max || o.qn == installQueue || e.Template() || dir > conntrack.DirOutput {
		return // a full queue: one of the direction's next frames queues it
	}
	if w.partial && !o.gso {
		// The sender (on this host) leaves its checksums to the NIC
		// (CHECKSUM_PARTIAL): the worker completes each one, which the
		// program cannot do; in native mode the skb's flag is lost on
		// the way and the receiver would drop the frame.
		return
	}
	switch {
	case (method == modes.Route || method == modes.Tunnel) && dir == conntrack.DirInput:
	case method == modes.Masq, method == modes.FullNAT:
	default:
		return
	}
	i, ok := o.at[e]
	if ok && (o.flows[i].on[dir] || o.flows[i].queued[dir] != 0) {
		return
	}
	after := o.after
	if e.Proto() == conntrack.ProtoUDP {
		after = o.afterUDP
	}
	if w.partial {
		// Generic mode with the tc companion: the XDP program passes
		// the flow's frames to the companion (bpf.FlowPartial), which
		// forwards them with their partial checksums, as it forwards
		// its GSO skbs, which cannot reach a worker. Such a sender's
		// (TSO) data comes in GSO skbs from its first flight on, which
		// are dropped until the flow is installed: at once, not after
		// offloadAfter frames.
		after = 0
	}
	if in, out, _, _ := e.Counters(); dir == conntrack.DirInput && in < after || dir == conntrack.DirOutput && out < after {
		return // too short yet to be worth a map update and a delete
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
	if int(w.out) >= len(w.ifs) {
		return
	}
	if d := w.dp.reg.Get(id); d == nil || !d.Available() {
		return
	}
	ifc := &w.ifs[w.out]
	k := e.Key()
	rs, rport := e.DestAddr16(), e.DestPort()
	// Built in the queue's next entry, which counts once queued below.
	v, key := &o.qvals[o.qn], &o.qkeys[o.qn]
	*v = bpf.Flow{SrcMAC: ifc.mac, Ifindex: uint32(ifc.index), MTU: uint32(ifc.mtu), Dest: id, Op: bpf.FlowDR}
	if w.partial {
		v.Flags = bpf.FlowPartial
	}
	if dir == conntrack.DirInput {
		if int(id) >= len(fwd) || !fwd[id].macOK {
			return
		}
		v.DstMAC = fwd[id].mac
		*key = bpf.MakeFlowKey(k.Src, k.SrcPort, k.Dst, k.DstPort, k.Proto)
		switch method {
		case modes.Masq:
			v.Op, v.Addr = bpf.FlowNATIn, rs
			binary.BigEndian.PutUint16(v.Port[:], rport)
			v.IPDelta, v.L4Delta = natDeltas(&k.Dst, &rs, k.DstPort, rport)
		case modes.FullNAT:
			la, lport := e.LocalAddr16(), e.LocalPort()
			v.Op, v.Addr, v.SrcAddr = bpf.FlowFNATIn, rs, la
			binary.BigEndian.PutUint16(v.Port[:], rport)
			binary.BigEndian.PutUint16(v.SrcPort[:], lport)
			v.IPDelta, v.L4Delta = fullnatDeltas(&k.Src, &la, k.SrcPort, lport, &k.Dst, &rs, k.DstPort, rport)
		case modes.Tunnel:
			op, ok := tunOp(&fwd[id].encap, &rs, &k.Dst)
			if !ok {
				return // GUE, GRE, IPv6 in IPv4: the worker's
			}
			v.Op, v.Addr, v.SrcAddr = op, rs, fwd[id].encap.Src
		}
	} else if method == modes.FullNAT {
		// The reply: real server → local address, back to VIP → client.
		la, lport := e.LocalAddr16(), e.LocalPort()
		v.DstMAC = e.Hop()
		*key = bpf.MakeFlowKey(rs, rport, la, lport, k.Proto)
		v.Op, v.Addr, v.SrcAddr = bpf.FlowFNATOut, k.Src, k.Dst
		binary.BigEndian.PutUint16(v.Port[:], k.SrcPort)
		binary.BigEndian.PutUint16(v.SrcPort[:], k.DstPort)
		v.IPDelta, v.L4Delta = fullnatDeltas(&rs, &k.Dst, rport, k.DstPort, &la, &k.Src, lport, k.SrcPort)
	} else {
		// The reply: real server → client, its source back to the VIP,
		// to the client-side hop the connection came from.
		v.DstMAC = e.Hop()
		*key = bpf.MakeFlowKey(rs, rport, k.Src, k.SrcPort, k.Proto)
		v.Op, v.Addr = bpf.FlowNATOut, k.Dst
		binary.BigEndian.PutUint16(v.Port[:], k.DstPort)
		v.IPDelta, v.L4Delta = natDeltas(&rs, &k.Dst, rport, k.DstPort)
	}
	if !ok {
		i = int32(len(o.flows))
		o.at[e] = i
		o.flows = append(o.flows, offFlow{e: e, dest: id})
		w.ct.SetOffloaded(e, true) // from now on the table tells the offload when e goes
	}
	f := &o.flows[i]
	f.queued[dir], f.key[dir], f.mac[dir], f.slot[dir] = uint16(o.qn+1), *key, v.DstMAC, w.out
	if method == modes.Tunnel {
		f.encap = fwd[id].encap
	}
	o.qat[o.qn] = i<<1 | int32(dir)
	o.qn++
	o.qlen++
}

// flush writes the queued installs into the program, in one PutFlows: the
// batch edge's. A direction the batch wrote is installed, its counters
// at zero; one it did not (the batch failed there: the map full, say) is
// counted in errs, with those after it, and left to its next frames,
// which still reach the worker; a flow left with no direction installed
// or queued is no longer offloaded.
//
// The deletes queued since the last edge are written first: a flow
// taken out and installed again in the same batch (a connection reset
// and a new one on the same tuple; a next hop changing, check) ends
// installed, with the new rewrite, and the map has the room the deletes
// free.
func (o *offloader) flush(w *worker) {
	o.writeDeletes()
	if o.qn == 0 {
		return
	}
	// Close the gaps of cancelled entries (rare: a flow queued and taken
	// out in the same batch).
	n := 0
	for j := range o.qn {
		x := o.qat[j]
		if x < 0 {
			continue
		}
		if j != n {
			o.qkeys[n], o.qvals[n], o.qat[n] = o.qkeys[j], o.qvals[j], x
			o.flows[x>>1].queued[x&1] = uint16(n + 1)
		}
		n++
	}
	o.qn = n
	wrote, err := o.m.PutFlows(o.qkeys[:n], o.qvals[:n])
	wrote = max(0, min(wrote, n))
	for j := range wrote {
		x := o.qat[j]
		f, dir := &o.flows[x>>1], x&1
		f.queued[dir], f.on[dir] = 0, true
		f.pkts[dir], f.bytes[dir] = 0, 0
		if o.byKey != nil {
			o.byKey[f.key[dir]] = x
		}
		o.keys++
		o.installed++
	}
	o.qlen -= wrote
	if err != nil {
		for j := wrote; j < n; j++ {
			o.errs++
			x := o.qat[j] // forget below may have moved the flow: qat follows
			if x < 0 {
				continue
			}
			f, dir := &o.flows[x>>1], x&1
			f.queued[dir] = 0
			o.qat[j] = -1
			o.qlen--
			if !f.on[0] && !f.on[1] && f.queued[0] == 0 && f.queued[1] == 0 {
				w.ct.SetOffloaded(f.e, false)
				o.forget(int(x >> 1))
			}
		}
	}
	o.qn = 0
}

// writeDeletes writes the queued deletes in one DeleteFlows (an absent
// flow is no error). When the batch fails, the deletes it did not go
// through are made one at a time, and those that fail are counted in
// errs, as each failed delete was before the queue.
func (o *offloader) writeDeletes() {
	if o.dn == 0 {
		return
	}
	n, err := o.m.DeleteFlows(o.dkeys[:o.dn])
	if err != nil {
		o.errs++
		for j := max(0, min(n, o.dn)); j < o.dn; j++ {
			if err := o.m.DeleteFlow(&o.dkeys[j]); err != nil {
				o.errs++
			}
		}
	}
	o.dn = 0
}

// queueDelete queues the delete of flow k, written at the batch edge;
// with the queue full, the queue is written first.
func (o *offloader) queueDelete(k *bpf.FlowKey) {
	if o.dn == deleteQueue {
		o.writeDeletes()
	}
	o.dkeys[o.dn] = *k
	o.dn++
}

// fold adds what the program forwarded of flow i since the last fold to
// its entry.
func (o *offloader) fold(w *worker, i int) {
	f := &o.flows[i]
	for dir := range f.on {
		if !f.on[dir] {
			continue
		}
		if err := o.m.LookupFlow(&f.key[dir], &o.v); err != nil {
			if !errors.Is(err, ebpf.ErrKeyNotExist) {
				o.errs++
			}
			continue
		}
		o.foldDir(w, f, dir, &o.v)
	}
}

// foldDir adds v, what the program holds for direction dir of flow f, to
// its entry.
func (o *offloader) foldDir(w *worker, f *offFlow, dir int, v *bpf.Flow) {
	o.folds++
	if n := v.Packets - f.pkts[dir]; n > 0 {
		before, _, _, _ := f.e.Counters()
		w.ct.Fold(f.e, conntrack.Dir(dir), n, v.Bytes-f.bytes[dir], int64(v.LastSeen)-o.kt0)
		f.pkts[dir], f.bytes[dir] = v.Packets, v.Bytes
		if w.sx.on && conntrack.Dir(dir) == conntrack.DirInput && crossesSyncPoint(before, n) {
			// The frames XDP forwarded passed a sync point (the
			// 53rd, 103rd ... input packet): a master refreshes the
			// backup's entry as if the worker had seen them, or a
			// long offloaded connection would time out there.
			now := time.Since(w.start).Nanoseconds()
			w.export(f.e, now)
			if t := w.ct.Control(f.e); t != nil {
				w.export(t, now)
			}
		}
	}
}

// drop folds e's flows and takes them out of the program; e stays in
// the table, not offloaded.
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

// forget takes flow i out of the set and queues its deletes from the
// program (queueDelete), which the batch edge writes; the program
// forwards its frames until then, counting them in dest_stats (--stats
// stays exact; the entry has had its last fold).
func (o *offloader) forget(i int) {
	f := &o.flows[i]
	was := false // in the program
	for dir := range f.on {
		if f.on[dir] {
			was = true
			o.queueDelete(&f.key[dir])
			o.keys--
			if o.byKey != nil {
				delete(o.byKey, f.key[dir])
			}
		}
		if q := f.queued[dir]; q != 0 {
			o.qat[q-1] = -1 // never written
			o.qlen--
		}
	}
	delete(o.at, f.e)
	last := len(o.flows) - 1
	if i != last {
		o.flows[i] = o.flows[last]
		m := &o.flows[i]
		o.at[m.e] = int32(i)
		for dir := range m.on {
			x := int32(i)<<1 | int32(dir)
			if m.on[dir] && o.byKey != nil {
				o.byKey[m.key[dir]] = x
			}
			if q := m.queued[dir]; q != 0 {
				o.qat[q-1] = x
			}
		}
	}
	o.flows[last] = offFlow{}
	o.flows = o.flows[:last]
	if was {
		o.removed++
	}
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

// every is the fold period now: foldEveryNs while the table is listed or
// the connection sync is on, o.quiet otherwise.
func (o *offloader) every(w *worker) int64 {
	if w.sx.on || w.ct.Dumping() {
		return foldEveryNs
	}
	return o.quiet
}

// step is the offload's batch-edge housekeeping: when the configuration
// or the forwarding table changed, every flow whose destination left its
// service or whose next hop changed is taken out of the program (or out
// of the queue); the queued installs are written (flush); and when a
// fold pass is due (every o.every), up to budget flows are
// folded (budget < 0: the rest of the pass); when the map is walked, a
// chunk (walkChunk entries) per walkChunk flows of budget, rounded up.
// A pass walks the map, or, when this worker has few of its flows
// (fewFlows), looks them up one by one.
func (o *offloader) step(w *worker, now int64, budget int) {
	if fwd := w.dp.fwd.Load(); fwd != o.fwd || w.seen != o.cfg {
		o.fwd, o.cfg = fwd, w.seen
		o.check(w, *fwd) // first: a queued flow it takes out is never written
	}
	o.flush(w)
	if now-o.pass < o.every(w) {
		return
	}
	if o.walk != nil && !o.lookups && (o.walking || !o.fewFlows()) {
		if budget > 0 {
			// The busy path's foldBatch: one chunk per batch. It was
			// foldBatch chunks (1536 entries, 0.5 ms here) while a pass
			// was due, longer than a batch of frames.
			budget = (budget + walkChunk - 1) / walkChunk
		}
		o.walkStep(w, now, budget)
		return
	}
	o.lookups = true
	for budget != 0 && o.next < len(o.flows) {
		o.fold(w, o.next)
		o.next++
		budget--
	}
	if o.next >= len(o.flows) {
		o.next, o.pass, o.lookups = 0, now, false
		o.looked++
	}
}

// lookupPerEntry is what a flow's lookup (LookupFlow, about 2 µs) costs
// in entries of a walk (0.5-0.7 µs each, BenchmarkOffloadFoldPass).
const lookupPerEntry = 4

// fewFlows says whether the next fold pass costs less by looking this
// worker's flows up than by walking the map: the workers share it, and a
// worker with a few flows walked all the others' too. The map's size is
// the latest walk's, and walked again every lookupPasses passes, so that
// a map that shrank is seen. With no flow, the pass is over at once.
func (o *offloader) fewFlows() bool {
	return len(o.flows) == 0 || len(o.flows)*lookupPerEntry < o.mapSeen && o.looked < lookupPasses
}

// lookupPasses is how many passes in a row fewFlows chooses lookups
// before a walk measures the map again.
const lookupPasses = 8

// idleFold is how much of a fold pass an idle worker does between two
// looks at its RX ring, in flows: 8 WalkFlows chunks (0.2-0.4 ms here),
// or as many lookups.
const idleFold = 8 * walkChunk

// idleStep is step on the idle path: the rest of a due fold pass, in
// pieces, stopping when frames arrive (the busy path then goes on with
// a chunk per batch). A whole pass at once took 30-50 ms at 100k
// offloaded flows, 30% of the worker's samples in the bench's 100k-flow
// search (perf), while its RX ring, 2048 frames, overflowed in 10 ms at
// 0.2 Mpps.
//
// What a pass costs, at 100,000 offloaded flows on the real map
// (BenchmarkOffloadFoldPass, thread CPU time, load 2-5): 51-84 ms when
// the flows are quiet (no frame since the last pass: 1,042 WalkFlows of
// 96 entries, about 57% of it in the kernel's batch lookup, the rest
// the byKey lookups and foldDir's cache misses on flows), 84-131 ms
// when every flow forwarded frames (a conntrack Fold each). Once per
// foldEveryNs, that is 5-13% of a CPU for an idle worker; once per
// foldQuietNs, when nobody lists the table, a tenth of it. Chunks of
// 1024 entries (98 calls) did not measurably change it: the cost is per
// entry, not per syscall. The workers share the map: a walk reads the
// others' flows too, so a worker with few of its own (fewer than a
// quarter of the map: fewFlows) looks them up instead, at about 2.6 µs
// each: 1,000 flows in a map of 100,000 cost it 2.6 CPU-ms a pass
// against 33 for the walk (BenchmarkOffloadFoldShared, load 2); with
// none, a pass costs nothing.
func (o *offloader) idleStep(w *worker, now int64) {
	for {
		o.step(w, now, idleFold)
		if now-o.pass < o.every(w) || w.received() {
			return
		}
	}
}

// walkStep is step's fold pass over the map in chunks: one WalkFlows per
// unit of budget (budget < 0: to the end of the map). Every flow in the
// map for the whole pass is folded once; one installed meanwhile, at the
// next pass. Flows of other workers, which share the map, are skipped.
// When a walk fails (a hash bucket larger than a chunk: ENOSPC), the
// worker folds flow by flow from then on, a lookup each.
func (o *offloader) walkStep(w *worker, now int64, budget int) {
	o.walking = true
	for ; budget != 0; budget-- {
		n, end, err := o.walk.WalkFlows(&o.cur, o.wkeys[:], o.wvals[:])
		o.read += n
		for j := range n {
			if x, ok := o.byKey[o.wkeys[j]]; ok {
				o.foldDir(w, &o.flows[x>>1], int(x&1), &o.wvals[j])
			}
		}
		if err != nil {
			o.errs++
			o.walk = nil // from now on, a lookup per flow
			o.walking, o.read = false, 0
			return
		}
		if end {
			o.pass, o.walking = now, false
			o.mapSeen, o.read, o.looked = o.read, 0, 0
			return
		}
	}
}

// check takes out of the program the flows that must come back to the
// worker: their destination is no longer available (removed: the worker
// applies expire_nodest_conn, or forwards them itself as IPVS does), or
// their next hop's MAC or interface, or a tunnel's encapsulation,
// changed.
func (o *offloader) check(w *worker, fwd []destFwd) {
	for i := 0; i < len(o.flows); {
		f := &o.flows[i]
		d := w.dp.reg.Get(f.dest)
		in := conntrack.DirInput
		if d != nil && d.Available() && (!f.on[in] && f.queued[in] == 0 || int(f.dest) < len(fwd) && fwd[f.dest].macOK &&
			fwd[f.dest].mac == f.mac[in] && fwd[f.dest].slot == f.slot[in] &&
			(fwd[f.dest].method != modes.Tunnel || fwd[f.dest].encap == f.encap)) {
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
// the worker stops: the deletes are written before it returns; the
// queued installs are dropped.
func (o *offloader) flushAll(w *worker) {
	for len(o.flows) > 0 {
		i := len(o.flows) - 1
		e := o.flows[i].e
		o.fold(w, i)
		w.ct.SetOffloaded(e, false)
		o.forget(i)
	}
	o.writeDeletes()
	o.qn = 0
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
// in another namespace. Generic XDP sends the skb through the veth's own
// transmit path, which needs nothing of the peer.
func warnOffloadVeth(opts Options, ifindex int, name string, mode bpf.AttachMode) {
	if !opts.Offload || mode == bpf.Generic { // generic XDP transmits the skb itself
		return
	}
	if isVeth(ifindex) {
		opts.Logger.Warn("flow offload on a veth in native mode: its peer must run an XDP program (one that passes everything will do), or the offloaded frames are lost; --xdp-mode generic needs nothing of the peer",
			"interface", name)
	}
}

// warnGSO warns, in generic mode, about the GSO skbs (a sender's TSO on
// a veth, segments GRO merged upstream) that xlb loses: a frame larger
// than a socket's cannot go to the worker. The tc companion forwards
// those of offloaded flows; without it (tcx missing) every one is
// dropped (drop_oversize), and with the offload off every one is
// (drop_gso_no_flow).
func warnGSO(opts Options, objs *bpf.Objects, name string, mode bpf.AttachMode) {
	if mode != bpf.Generic {
		return
	}
	if ok, err := objs.GSOCompanion(); !ok {
		opts.Logger.Warn("generic xdp without its tc companion: GSO packets to services (TSO or GRO upstream) are dropped (xdp.drop_oversize)",
			"interface", name, "err", err)
		return
	}
	if !opts.Offload {
		opts.Logger.Warn("generic xdp with --offload=off: GSO packets to services (TSO or GRO upstream) cannot reach the workers and are dropped (xdp.drop_gso_no_flow); turn TSO/GRO off upstream or the offload on",
			"interface", name)
	}
}

// isVeth tells whether ifindex is a veth.
func isVeth(ifindex int) bool {
	l, err := netlink.LinkByIndex(ifindex)
	return err == nil && l.Type() == "veth"
}

// crossesSyncPoint tells whether input packets before+1 .. before+n
// include one that syncNeeded would send (pkts % syncPeriod ==
// syncThreshold), for a connection whose state sends on that count.
func crossesSyncPoint(before, n uint64) bool {
	if n >= syncPeriod {
		return true
	}
	// The first count after before that is a sync point.
	next := before + (syncThreshold+syncPeriod-before%syncPeriod)%syncPeriod
	if next == before {
		next += syncPeriod
	}
	return next <= before+n
}
