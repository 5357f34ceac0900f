//go:build linux

package dataplane

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/ipvssync"
	"github.com/xlbproject/xlb/laddr"
	"github.com/xlbproject/xlb/modes"
	"github.com/xlbproject/xlb/sched"
)

// Connection synchronization (the IPVS sync daemon's dataplane side).
//
// Export (master). While StartSyncExport runs, each worker checks, after
// a packet's conntrack update, the kernel's rules for whether the
// connection is sent (syncNeeded: ip_vs_sync_conn_needed with the
// default sysctls), and if so writes one fixed-size record (syncRec) into
// its export ring: a single-producer, single-consumer ring that it
// publishes at its next batch edge. Nothing else runs per packet, and
// nothing allocates: a full ring drops the record (SyncExportDropped). A drainer
// goroutine of the dataplane's takes the records of every ring every 1-5
// ms, turns them into ipvssync.Conn (off the packet path: service
// lookups for the fwmark and the template timeout) and hands them to the
// sink in batches.
//
// Install (backup). InstallSynced validates records, picks the worker
// that owns each flow (owner.go) and queues them on that worker's
// install ring; the worker installs them at its batch edge, which an
// idle worker reaches at least every idleWaitMs (it is woken at once
// when it has peers to wake it): it maps the record's service and real
// server to its own, and calls conntrack's InsertSynced.

// The kernel's sysctl defaults (Documentation/networking/ipvs-sysctl):
// with sync_refresh_period 0, an established connection (or a UDP one)
// is sent when its input packets reach sync_threshold and every
// sync_period packets after that.
const (
	syncThreshold = 3
	syncPeriod    = 50
)

// exportSlots and installSlots size each worker's rings: 8192 records
// of 84 bytes (672 KiB) hold 1.6 M records/s at the drainer's slowest
// pace (5 ms); the install ring, 4096 records, holds 16 full messages
// of 255 records for each worker.
const (
	exportSlots  = 8192
	installSlots = 4096
	// installBudget bounds the records a worker installs per batch
	// edge (about 100-200 ns each), so installing never stalls
	// forwarding for more than tens of microseconds.
	installBudget = 256
)

// The drainer's pace: 1 ms after a round that found records, 5 ms after
// an empty one.
const (
	drainBusy = time.Millisecond
	drainIdle = 5 * time.Millisecond
	// drainBatch is the most records handed to the sink at once.
	drainBatch = 1024
	// drainTick is the longest the sink goes without a call: with no
	// records, it is called with none.
	drainTick = time.Second
)

// syncRing is a bounded single-producer, single-consumer ring of fixed
// records. The producer writes slots at its own index and publishes it
// at its batch edge (one atomic store); the consumer reads up to the
// published index and gives slots back with one store. Not safe for
// more than one producer and one consumer.
type syncRing[T any] struct {
	slots []T
	mask  uint32
	prod  atomic.Uint32 // published by the producer
	_     [60]byte
	cons  atomic.Uint32 // published by the consumer
	_     [60]byte
	// Producer-owned: the next slot to write, and the consumer's index
	// as last read.
	next, seen uint32
}

func newSyncRing[T any](size uint32) *syncRing[T] {
	return &syncRing[T]{slots: make([]T, size), mask: size - 1}
}

// slot returns the next free slot to fill, or nil when the ring is full.
// Producer only; commit makes it part of the next publish.
func (r *syncRing[T]) slot() *T {
	if r.next-r.seen >= uint32(len(r.slots)) {
		if r.seen = r.cons.Load(); r.next-r.seen >= uint32(len(r.slots)) {
			return nil
		}
	}
	return &r.slots[r.next&r.mask]
}

func (r *syncRing[T]) commit() { r.next++ }

// publish makes the committed slots visible to the consumer.
func (r *syncRing[T]) publish() {
	if r.prod.Load() != r.next {
		r.prod.Store(r.next)
	}
}

// pending returns the consumer's index and how many records are there.
func (r *syncRing[T]) pending() (start, n uint32) {
	c := r.cons.Load()
	return c, r.prod.Load() - c
}

func (r *syncRing[T]) at(i uint32) *T { return &r.slots[i&r.mask] }

func (r *syncRing[T]) release(n uint32) { r.cons.Add(n) }

// syncRec is an exported entry as the worker copies it: nothing that
// needs a lookup.
type syncRec struct {
	client, virtual, dest, local [16]byte
	cport, vport, dport, lport   uint16
	timeout                      uint32 // seconds: the state's full timeout; 0 for templates
	left                         uint32 // seconds to expiry, for a template whose service is gone
	proto                        uint8
	state                        conntrack.State
	fwd                          uint8
	flags                        uint8 // recTemplate, recInactive
}

const (
	recTemplate uint8 = 1 << iota
	recInactive
)

// syncExport is a worker's export state.
type syncExport struct {
	on   bool               // exporting: d.syncOn as read at the latest batch edge
	ring *syncRing[syncRec] // set once, before the first StartSyncExport's syncOn
	// in is the install ring (nil until InstallSynced first sends this
	// worker a record); full and bad count what InstallSynced refused.
	in        atomic.Pointer[syncRing[installRec]]
	full, bad atomic.Uint64
	// hop and hopIface are the client-side next hop of the latest
	// client frame of a synced entry: the guess for the next ones.
	hop      [6]byte
	hopIface uint16
}

// syncState is the dataplane's side: who exports, and the install
// producers' lock.
type syncState struct {
	on  atomic.Bool // the workers export
	mu  sync.Mutex  // StartSyncExport and stop
	cur *syncExporter
	in  sync.Mutex // InstallSynced's callers: one producer per install ring
}

type syncExporter struct {
	done, exited chan struct{}
	stopped      bool
}

// syncEdge is a worker's batch-edge work for connection sync, at the
// start of each poll: publish the records the previous batch exported
// (a worker that forwarded frames polls again at once, so they wait no
// longer), read whether to export during this batch, and install what
// the backup's receiver queued, before the frames that may need it. Two
// atomic loads when sync is off.
func (w *worker) syncEdge(cfg *workerConfig, now int64) {
	if w.sx.on {
		w.sx.ring.publish()
	}
	w.sx.on = w.dp.ipvsSync.on.Load()
	if r := w.sx.in.Load(); r != nil {
		w.installQueued(r, cfg, now)
	}
	w.stats.local[SyncInstallFull] = w.sx.full.Load()
	w.stats.local[SyncBad] = w.sx.bad.Load()
}

// synced is the per-packet hook, after e's conntrack update for a frame
// in direction dir (prev: e's state before it), run only while exporting
// or while e waits for its first client frame: it learns the reply hop
// of an entry installed from a sync record, and exports e when the
// kernel's rules say so.
func (w *worker) synced(e *conntrack.Entry, prev conntrack.State, dir conntrack.Dir, f *modes.Frame, now int64) {
	if e.NeedsHop() {
		if dir == conntrack.DirOutput {
			// A reply first: the latest guess, the hop of the latest
			// client frame of a synced flow (the router, usually).
			e.GuessHop(w.sx.hop, w.sx.hopIface)
		} else {
			b := f.Bytes()
			w.sx.hop, w.sx.hopIface = [6]byte(b[6:12]), w.in
			e.SetHop(w.sx.hop)
			e.SetHopIface(w.in)
		}
	}
	if w.sx.on && syncNeeded(e, prev, dir) {
		w.export(e, now)
		if t := w.ct.Control(e); t != nil {
			w.export(t, now)
		}
	}
}

// syncNeeded is ip_vs_sync_conn_needed with the default sysctls
// (sync_threshold 3, sync_period 50, sync_refresh_period 0,
// sync_persist_mode 0) as ip_vs_in calls it, per input packet with pkts
// its input packet count:
//
//   - TCP is sent only in ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT and
//     TIME_WAIT; a change into one of these but ESTABLISHED is sent at
//     once ("force"); otherwise (ESTABLISHED, and UDP, which has one
//     state) when pkts % sync_period == sync_threshold: the 3rd, 53rd,
//     103rd ... input packet.
//   - Other protocols (ICMP) are never sent: IPVS has no ICMP
//     connections to sync.
//
// Two differences. The kernel notices a state change only at the next
// input packet (cp->old_state); xlb compares the states around each
// packet's update, replies included, so a change a reply makes (the real
// server's FIN) is sent at once rather than with the client's next
// segment. And a persistence template goes with its connection's records
// (synced): the kernel's newer code (ip_vs_sync_conn's "control" loop)
// reaches the template on every input packet of a connection it controls
// and, templates skipping the sync_period test, sends it each time; xlb
// sends it as the older kernels did, whenever a connection it controls
// is sent, which restarts its timer on the backup as often.
func syncNeeded(e *conntrack.Entry, prev conntrack.State, dir conntrack.Dir) bool {
	switch e.Proto() {
	case conntrack.ProtoTCP:
		switch s := e.State(); s {
		case conntrack.StateEstablished:
		case conntrack.StateFinWait, conntrack.StateClose, conntrack.StateCloseWait, conntrack.StateTimeWait:
			if s != prev {
				return true
			}
		default:
			return false
		}
	case conntrack.ProtoUDP, conntrack.ProtoSCTP:
	default:
		return false
	}
	if dir == conntrack.DirOutput {
		return false
	}
	in, _, _, _ := e.Counters()
	return in%syncPeriod == syncThreshold
}

// export writes e into the export ring, or counts it dropped. A
// connection of mixed families (an IPv4 service tunnelled to an IPv6
// real server) is not exported: the record has one address family, and
// the kernel skips those too.
func (w *worker) export(e *conntrack.Entry, now int64) {
	k := e.Key()
	d := e.DestAddr16()
	if packet.IsMapped(&k.Src) != packet.IsMapped(&d) {
		return
	}
	r := w.sx.ring.slot()
	if r == nil {
		w.stats.local[SyncExportDropped]++
		return
	}
	r.client, r.virtual, r.cport, r.vport, r.proto = k.Src, k.Dst, k.SrcPort, k.DstPort, k.Proto
	r.dest, r.dport = d, e.DestPort()
	r.local, r.lport = e.LocalAddr16(), e.LocalPort()
	r.state, r.fwd, r.flags = e.State(), e.Fwd(), 0
	r.timeout = uint32(w.ct.Timeout(r.state) / time.Second)
	r.left = 0
	if e.Template() {
		r.flags |= recTemplate
		if left := e.Expires() - now; left > 0 {
			r.left = uint32(left / int64(time.Second))
		}
	} else if !e.Active() {
		r.flags |= recInactive
	}
	w.sx.ring.commit()
	w.stats.local[SyncExported]++
}

// StartSyncExport makes the workers hand their connection events (IPVS's
// ip_vs_sync_conn rules, see syncNeeded) to sink, called from one
// goroutine of the dataplane's (never from a worker) in batches, until
// stop is called. The slice is valid during the call only. A second
// without records gets a call with none, so that the sink can flush a
// partial message from the same goroutine (the kernel's master flushes
// one after 2 s, IPVS_SYNC_FLUSH_TIME). Records the
// workers write while their ring is full are dropped and counted
// (sync_export_dropped). A second call stops the first's export before
// it starts. sink must not call stop; stop waits for sink to return and
// may be called more than once.
//
// No record is sent when a connection expires or is removed: as with the
// kernel, the backup's entry times out by the timeout of the state it
// was last sent in (TIME_WAIT's, CLOSE's ... for a closed one).
func (d *Dataplane) StartSyncExport(sink func(conns []ipvssync.Conn)) (stop func()) {
	s := &d.ipvsSync
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		d.stopExport(s.cur)
	}
	for _, w := range d.workers {
		if w.sx.ring == nil {
			w.sx.ring = newSyncRing[syncRec](exportSlots)
		}
	}
	// Records a previous export left are stale: skip them.
	for _, w := range d.workers {
		if _, n := w.sx.ring.pending(); n > 0 {
			w.sx.ring.release(n)
		}
	}
	x := &syncExporter{done: make(chan struct{}), exited: make(chan struct{})}
	s.cur = x
	s.on.Store(true)
	go d.drainExport(sink, x)
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		d.stopExport(x)
	}
}

// stopSyncExport stops the running export, if any (Close).
func (d *Dataplane) stopSyncExport() {
	s := &d.ipvsSync
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		d.stopExport(s.cur)
	}
}

// stopExport ends x, with d.ipvsSync.mu held.
func (d *Dataplane) stopExport(x *syncExporter) {
	if x.stopped {
		return
	}
	x.stopped = true
	if d.ipvsSync.cur == x {
		d.ipvsSync.on.Store(false)
		d.ipvsSync.cur = nil
	}
	close(x.done)
	<-x.exited
}

// drainExport is the drainer goroutine: it turns the workers' records
// into ipvssync.Conn and gives them to sink, until x is stopped; then,
// after a last round (records a worker wrote before its batch edge saw
// the stop), it exits.
func (d *Dataplane) drainExport(sink func([]ipvssync.Conn), x *syncExporter) {
	defer close(x.exited)
	buf := make([]ipvssync.Conn, 0, drainBatch)
	t := time.NewTimer(drainIdle)
	defer t.Stop()
	last := time.Now()
	for {
		n := d.drainRound(sink, &buf)
		wait := drainIdle
		if n > 0 {
			wait, last = drainBusy, time.Now()
		} else if time.Since(last) >= drainTick {
			sink(nil) // the sink's chance to flush, on its own goroutine
			last = time.Now()
		}
		t.Reset(wait)
		select {
		case <-x.done:
			time.Sleep(2 * time.Millisecond) // a worker's batch in flight
			d.drainRound(sink, &buf)
			return
		case <-t.C:
		}
	}
}

// drainRound takes every worker's pending records once and returns how
// many it took.
func (d *Dataplane) drainRound(sink func([]ipvssync.Conn), buf *[]ipvssync.Conn) int {
	total := 0
	for _, w := range d.workers {
		r := w.sx.ring
		if r == nil {
			continue
		}
		start, n := r.pending()
		if n == 0 {
			continue
		}
		cfg := w.cfg.Load()
		for i := uint32(0); i < n; i++ {
			*buf = append(*buf, connOf(r.at(start+i), cfg))
			if len(*buf) == drainBatch {
				sink(*buf)
				*buf = (*buf)[:0]
			}
		}
		r.release(n)
		total += int(n)
	}
	if len(*buf) > 0 {
		sink(*buf)
		*buf = (*buf)[:0]
	}
	return total
}

func addr16(a [16]byte) netip.Addr { return netip.AddrFrom16(a).Unmap() }

// connOf turns an exported record into the sync model, as ipvssync.Conn
// documents the mapping.
func connOf(r *syncRec, cfg *workerConfig) ipvssync.Conn {
	c := ipvssync.Conn{
		Protocol: r.proto,
		Client:   netip.AddrPortFrom(addr16(r.client), r.cport),
		Virtual:  netip.AddrPortFrom(addr16(r.virtual), r.vport),
		Dest:     netip.AddrPortFrom(addr16(r.dest), r.dport),
		Timeout:  r.timeout,
	}
	c.SetMethod(methodOf(r.fwd))
	if r.fwd == conntrack.FwdFullNAT {
		c.Local = netip.AddrPortFrom(addr16(r.local), r.lport)
	}
	v4 := packet.IsMapped(&r.client)
	switch {
	case r.flags&recTemplate != 0:
		c.Flags |= ipvssync.FlagTemplate
		c.State = ipvssync.TemplateNone
		if r.state == conntrack.StateTemplateAssured {
			c.State = ipvssync.TemplateAssured
		}
		if r.proto == 0 {
			c.Fwmark = markOf(&r.virtual, v4)
		}
		c.Timeout = r.left
		if svc := templateService(cfg, r, c.Fwmark, v4); svc != nil {
			c.Timeout = uint32(svc.ct.Timeout() / time.Second)
		}
	default:
		if r.flags&recInactive != 0 {
			c.Flags |= ipvssync.FlagInactive
		}
		c.State = uint16(r.state)
		if r.state == conntrack.StateUDP {
			c.State = ipvssync.UDPNormal
		}
		if cfg != nil && cfg.marks != nil {
			if mark, ok := cfg.marks.Classify(r.proto, &r.virtual, r.vport); ok && cfg.fwmarks[fwmKey{mark, !v4}] != nil {
				c.Fwmark = mark
			}
		}
	}
	return c
}

// methodOf maps a conntrack forwarding method to the sync record's.
func methodOf(fwd uint8) ipvssync.Method {
	switch fwd {
	case conntrack.FwdMasq:
		return ipvssync.MethodNAT
	case conntrack.FwdLocal:
		return ipvssync.MethodLocal
	case conntrack.FwdTunnel:
		return ipvssync.MethodTunnel
	case conntrack.FwdFullNAT:
		return ipvssync.MethodFullNAT
	}
	return ipvssync.MethodDR
}

// fwdOf is methodOf's inverse, for records.
func fwdOf(m ipvssync.Method) (uint8, bool) {
	switch m {
	case ipvssync.MethodNAT:
		return conntrack.FwdMasq, true
	case ipvssync.MethodLocal:
		return conntrack.FwdLocal, true
	case ipvssync.MethodTunnel:
		return conntrack.FwdTunnel, true
	case ipvssync.MethodDR:
		return conntrack.FwdRoute, true
	case ipvssync.MethodFullNAT:
		return conntrack.FwdFullNAT, true
	}
	return 0, false
}

// markOf reads the firewall mark a fwmark template keeps as its virtual
// address (conntrack's markAddr: the IPv4 address, or the first 32 bits
// of the IPv6 one).
func markOf(a *[16]byte, v4 bool) uint32 {
	if v4 {
		return uint32(a[12])<<24 | uint32(a[13])<<16 | uint32(a[14])<<8 | uint32(a[15])
	}
	return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
}

// markAddr is markOf's inverse.
func markAddr(mark uint32, v4 bool) [16]byte {
	var a [16]byte
	i := 0
	if v4 {
		a[10], a[11] = 0xff, 0xff
		i = 12
	}
	a[i], a[i+1], a[i+2], a[i+3] = byte(mark>>24), byte(mark>>16), byte(mark>>8), byte(mark)
	return a
}

// templateService finds the service of a template's key: the fwmark
// one, the exact one, the port-0 one, or (a template with virtual port
// 0 of a service on port 21) the FTP one.
func templateService(cfg *workerConfig, r *syncRec, fwmark uint32, v4 bool) *workerService {
	if cfg == nil {
		return nil
	}
	if r.proto == 0 {
		return cfg.fwmarks[fwmKey{fwmark, !v4}]
	}
	if svc := cfg.byAddr(r.virtual, r.vport, r.proto); svc != nil {
		return svc
	}
	if r.vport == 0 {
		return cfg.services[svcKey{addr: r.virtual, port: 21, proto: r.proto}]
	}
	return nil
}

// installRec is a validated sync record on its way to its owner worker.
type installRec struct {
	key      conntrack.Key
	dest     [16]byte
	dport    uint16
	fwmark   uint32
	local    [16]byte
	lport    uint16
	fullnat  bool // the record has a local address
	template bool
	inactive bool
	state    conntrack.State
	timeout  time.Duration // 0: the state's (the template's service's)
}

// recordOf validates c as the kernel's backup would and as xlb can
// install it, and fills r; false for a record to drop as bad.
func recordOf(c *ipvssync.Conn, r *installRec) bool {
	if !c.Client.IsValid() || !c.Virtual.IsValid() || !c.Dest.IsValid() {
		return false
	}
	v4 := c.Client.Addr().Is4()
	if c.Virtual.Addr().Is4() != v4 || c.Dest.Addr().Is4() != v4 || c.Client.Addr().Zone() != "" {
		return false
	}
	if len(c.PEData) > 0 || c.Flags&ipvssync.FlagOnePacket != 0 {
		return false // no persistence engine here; one-packet connections are never synced
	}
	*r = installRec{template: c.Template(), inactive: c.Flags&ipvssync.FlagInactive != 0,
		dest: c.Dest.Addr().As16(), dport: c.Dest.Port(), fwmark: c.Fwmark,
		timeout: time.Duration(c.Timeout) * time.Second}
	r.key = conntrack.Key{Src: c.Client.Addr().As16(), Dst: c.Virtual.Addr().As16(),
		SrcPort: c.Client.Port(), DstPort: c.Virtual.Port(), Proto: c.Protocol}
	switch c.Protocol {
	case ipvssync.ProtoTCP, ipvssync.ProtoUDP:
	case ipvssync.ProtoIP:
		if !r.template || c.Fwmark == 0 {
			return false
		}
		r.key.Dst, r.key.DstPort = markAddr(c.Fwmark, v4), 0
	default:
		return false // xlb serves no other protocol
	}
	switch {
	case r.template:
		if c.State > ipvssync.TemplateAssured || c.Client.Port() != 0 {
			return false
		}
		r.state = conntrack.StateTemplateNone + conntrack.State(c.State)
	case c.Protocol == ipvssync.ProtoTCP:
		if c.State >= ipvssync.TCPLast {
			return false
		}
		r.state = conntrack.State(c.State)
	default:
		if c.State != ipvssync.UDPNormal {
			return false
		}
		r.state = conntrack.StateUDP
	}
	m := c.Method()
	if _, ok := fwdOf(m); !ok {
		return false
	}
	if m == ipvssync.MethodFullNAT && !r.template {
		if c.Local.Addr().Zone() != "" || c.Local.Port() == 0 {
			return false
		}
		r.fullnat, r.local, r.lport = true, c.Local.Addr().As16(), c.Local.Port()
	}
	return true
}

// InstallSynced queues records received from a master for their owner
// workers, which install them at their next batch edge (or idle
// wake-up). It returns how many were queued; the rest are counted: bad
// records (sync_bad_record, on queue 0) and those whose worker's ring
// was full (sync_install_full). Safe for concurrent use; it never
// blocks on the workers.
func (d *Dataplane) InstallSynced(conns []ipvssync.Conn) int {
	if len(d.workers) == 0 {
		return 0
	}
	s := &d.ipvsSync
	s.in.Lock()
	defer s.in.Unlock()
	cfg := d.workers[0].cfg.Load()
	queued := 0
	var touched uint64 // workers 0..63 whose rings got records; the rest are published always
	var r installRec
	for i := range conns {
		if !recordOf(&conns[i], &r) {
			d.workers[0].sx.bad.Add(1)
			continue
		}
		o := d.syncOwner(cfg, &r)
		w := d.workers[o]
		ring := w.sx.in.Load()
		if ring == nil {
			ring = newSyncRing[installRec](installSlots)
			w.sx.in.Store(ring)
		}
		slot := ring.slot()
		if slot == nil {
			w.sx.full.Add(1)
			continue
		}
		*slot = r
		ring.commit()
		queued++
		if o < 64 {
			touched |= 1 << o
		}
	}
	for o, w := range d.workers {
		if ring := w.sx.in.Load(); ring != nil && (o >= 64 || touched&(1<<o) != 0) {
			ring.publish()
			if w.ho.wake != nil {
				w.ho.wake.poke() // at once when asleep; one worker wakes within idleWaitMs anyway
			}
		}
	}
	return queued
}

// syncOwner is the worker that installs r: the owner of the flow
// (owner.go), as the frames of the flow will find it. A FULLNAT
// connection goes to the owner of its local port, whose pool must
// reserve it and which its replies reach. A flow no worker owns (DR,
// TUN, Local and FULLNAT requests of services without -p) stays on the
// worker whose queue RSS gives it, which only the NIC knows: it goes to
// a worker chosen by a hash of its key, and with several queues its
// frames may reach another, which does not have it.
func (d *Dataplane) syncOwner(cfg *workerConfig, r *installRec) int {
	n := len(d.workers)
	if n == 1 {
		return 0
	}
	if r.fullnat {
		return laddr.Owner(r.lport, n)
	}
	k := &r.key
	h := (uint64(k.SrcPort)<<16 | uint64(k.DstPort)) * 0x9e3779b97f4a7c15
	for i := 0; i < 16; i += 8 {
		h = (h ^ uint64(k.Src[i])<<8 ^ uint64(k.Src[i+7]) ^ uint64(k.Src[i+3])<<24) * 0xbf58476d1ce4e5b9
	}
	self := int(((h >> 32) * uint64(n)) >> 32)
	if cfg == nil || cfg.own == nil {
		return self
	}
	if r.template {
		return cfg.own.client(&k.Src)
	}
	m := packet.Meta{Src: k.Src, Dst: k.Dst, SrcPort: k.SrcPort, DstPort: k.DstPort, Proto: k.Proto}
	return cfg.own.owner(&m, self)
}

// installQueued installs up to installBudget queued records.
func (w *worker) installQueued(r *syncRing[installRec], cfg *workerConfig, now int64) {
	start, n := r.pending()
	if n == 0 {
		return
	}
	n = min(n, installBudget)
	for i := uint32(0); i < n; i++ {
		w.install(r.at(start+i), cfg, now)
	}
	r.release(n)
}

// install maps r to this director's service and real server and
// installs it (conntrack InsertSynced), counting the outcome.
func (w *worker) install(r *installRec, cfg *workerConfig, now int64) {
	svc := w.syncService(cfg, r)
	if svc == nil {
		w.stats.local[SyncNoService]++
		return
	}
	dst := svc.syncDest(r)
	if dst == nil {
		w.stats.local[SyncNoDest]++
		return
	}
	fwd, ok := dst.Fwd()
	if !ok {
		fwd = conntrack.FwdRoute
	}
	if fwd == conntrack.FwdFullNAT && !r.template && !r.fullnat {
		// The backup's real server is FULLNAT but the master's
		// connection had no local address: its replies go elsewhere.
		w.stats.local[SyncNoLocal]++
		return
	}
	s := conntrack.Synced{Template: r.template, State: r.state, Inactive: r.inactive, Timeout: r.timeout,
		Laddr: r.local, Lport: r.lport}
	if r.template && s.Timeout == 0 {
		s.Timeout = svc.ct.Timeout()
	}
	dport := r.dport
	e, res := w.ct.InsertSynced(&r.key, dst, fwd, dport, &s, now)
	switch res {
	case conntrack.SyncCreated:
		w.stats.local[SyncInstalled]++
		if fwd == conntrack.FwdMasq || fwd == conntrack.FwdFullNAT {
			// Until its first client frame, replies go to the hop of
			// the latest synced flow's (NeedsHop stays set).
			e.GuessHop(w.sx.hop, w.sx.hopIface)
		}
	case conntrack.SyncUpdated:
		w.stats.local[SyncUpdated]++
	case conntrack.SyncIgnored:
		w.stats.local[SyncStale]++
	case conntrack.SyncFull:
		w.stats.local[SyncTableFull]++
	case conntrack.SyncLocalTaken:
		w.stats.local[SyncNoLocal]++
	default: // SyncBadState: recordOf checked the states
		w.sx.bad.Add(1)
	}
}

// syncService finds r's service in this director's configuration, as
// the kernel's backup does (ip_vs_find_dest → ip_vs_service_find): by
// firewall mark first, then address, port and protocol, then the port-0
// service; a template with virtual port 0 may also be an FTP service's.
func (w *worker) syncService(cfg *workerConfig, r *installRec) *workerService {
	if cfg == nil {
		return nil
	}
	v6 := !packet.IsMapped(&r.key.Src)
	if r.fwmark != 0 {
		if svc := cfg.fwmarks[fwmKey{r.fwmark, v6}]; svc != nil || r.key.Proto == 0 {
			return svc
		}
	}
	if svc := cfg.byAddr(r.key.Dst, r.key.DstPort, r.key.Proto); svc != nil {
		return svc
	}
	if r.template && r.key.DstPort == 0 {
		return cfg.services[svcKey{addr: r.key.Dst, port: 21, proto: r.key.Proto}]
	}
	return nil
}

// syncDest finds the real server of r in s: by address and port, else
// (a port-0 service's destinations have port 0) by address and port 0,
// else by address alone for a template keeping port 0 (FTP) and for a
// firewall-mark service's connection, which keeps the client's
// destination port whatever its real server's (ip_vs_sched_persist; the
// kernel's ip_vs_find_dest ignores the port of a fwmark record too).
func (s *workerService) syncDest(r *installRec) *sched.Dest {
	a := addr16(r.dest)
	if d := s.dests[netip.AddrPortFrom(a, r.dport)]; d != nil {
		return d
	}
	if d := s.dests[netip.AddrPortFrom(a, 0)]; d != nil {
		return d
	}
	if r.template && r.dport == 0 || r.fwmark != 0 {
		for ap, d := range s.dests {
			if ap.Addr() == a {
				return d
			}
		}
	}
	return nil
}
