//go:build linux

package dataplane

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/laddr"
)

// Flow ownership across workers.
//
// With several RX queues, RSS spreads one client's connections over the
// queues by their 4-tuples, and a NAT or FULLNAT reply (RS:rport →
// client, or RS → local address) hashes to another queue than its
// request (client → VIP): the reply is not the reverse of the request's
// tuple but of the translated one. Each worker has its own connection
// shard, so without more, a persistent service (-p) would make a
// template per worker, and replies would miss their connection.
//
// So every flow that needs it has one owner worker, a function of the
// frame alone (owner), the same for all of a client's connections and
// for their replies:
//
//   - a frame to a service that is persistent or has masquerading (NAT)
//     destinations: hash(client address & ownership mask);
//   - a frame to a FULLNAT local address (a FULLNAT reply): the worker
//     whose port pool gave out its destination port (laddr.Owner: port %
//     workers), the one that created the connection;
//   - any other frame, while some destination is NAT: a NAT reply, owned
//     by hash(its destination, the client, & ownership mask);
//   - the rest (DR, TUN and Local services without -p, FULLNAT requests
//     without -p): the worker whose queue received it. RSS keeps a
//     4-tuple on one queue, and a FULLNAT request's worker is the owner
//     of its local port: these never move.
//
// The ownership mask is, per address family, the shortest persistence
// netmask of the owned services (/32 and /128 when none is persistent):
// every client that shares a template with another shares its owner. A
// /24 persistence netmask thus puts a whole /24 on one worker; that is
// the price of per-client ownership (DPVS's too).
//
// A worker that receives a frame it does not own copies it into the
// owner's hand-off ring (handoff.go) and frees its own frame; the owner
// drains its rings at its batch edge and forwards those frames as if it
// had received them, from frames of its own UMEM, through its own
// sockets. A full ring drops the frame (HandoffFull). With one queue
// nothing of this runs.
//
// Ownership follows the configuration: a change of the mask or of which
// services are owned moves some clients to another worker, whose shard
// does not have their connections (a TCP connection then fails as after
// a director fail-over without sync). Adding and removing services and
// destinations that do not change the mask moves nothing.

// ownership is one configuration's ownership rules, shared read-only by
// the workers (workerConfig.own); nil with one worker.
type ownership struct {
	n uint64 // workers
	// v4 and v6hi/v6lo are the ownership masks: v4 over the low 32 bits
	// of an IPv4-mapped address, v6 over all 128.
	v4         uint64
	v6hi, v6lo uint64
	// nat: some destination is masquerading, so frames to no service are
	// NAT replies, owned by their destination.
	nat bool
	// laddrs are the FULLNAT local addresses, whose frames are replies
	// owned by their destination port.
	laddrs map[[16]byte]struct{}
	// services says, for each service, dying ones too (their
	// connections live on), whether its frames have an owner.
	services map[svcKey]bool
	// marks classify frames into firewall marks, as the workers do
	// (nil without rules); fwmarks says whether each fwmark service's
	// frames have an owner. A marked frame's fwmark service is looked up
	// first, as workerConfig.service does.
	marks   *packet.MarkTable
	fwmarks map[fwmKey]bool
	// svcIdx and laddrIdx are services and laddrs (the address, port and
	// protocol 0) as keyIndexes, for owner: with several workers every
	// frame pays these lookups.
	svcIdx   keyIndex[bool]
	laddrIdx keyIndex[struct{}]
}

// ownedService says whether s's frames need an owner: its persistence
// templates, or its NAT replies, must be found by one worker.
func ownedService(s *ipvs.Service) bool {
	if s.Persistent {
		return true
	}
	for _, d := range s.Dests {
		if d.Fwd == ipvs.FwdMasq {
			return true
		}
	}
	return false
}

// newOwnership builds the rules for services over workers; nil when
// there is one worker, or nothing to own.
func newOwnership(services []*ipvs.Service, marks *packet.MarkTable, workers int) *ownership {
	if workers < 2 {
		return nil
	}
	o := &ownership{n: uint64(workers), laddrs: map[[16]byte]struct{}{}, services: map[svcKey]bool{},
		marks: marks, fwmarks: map[fwmKey]bool{}}
	v4, v6 := 32, 128
	owned := false
	for _, s := range services {
		if s.Key.IsFWMark() {
			o.fwmarks[fwmKey{s.Key.FWMark, s.Key.IPv6()}] = ownedService(s)
		} else {
			o.services[makeSvcKey(s.Key)] = ownedService(s)
		}
		for _, la := range s.LocalAddrs {
			o.laddrs[la.Addr.As16()] = struct{}{}
		}
		for _, d := range s.Dests {
			o.nat = o.nat || d.Fwd == ipvs.FwdMasq
		}
		if !ownedService(s) {
			continue
		}
		owned = true
		if s.Persistent {
			if !s.Key.IPv6() {
				v4 = min(v4, s.Netmask)
			} else {
				v6 = min(v6, s.Netmask)
			}
		}
	}
	if !owned && len(o.laddrs) == 0 {
		return nil
	}
	o.svcIdx = newKeyIndex(o.services)
	la := make(map[svcKey]struct{}, len(o.laddrs))
	for a := range o.laddrs {
		la[svcKey{addr: a}] = struct{}{}
	}
	o.laddrIdx = newKeyIndex(la)
	o.v4 = 0xffff_ffff_0000_0000 | uint64(prefixMask32(v4))
	o.v6hi, o.v6lo = prefixMask128(v6)
	return o
}

func prefixMask32(bits int) uint32 {
	if bits <= 0 {
		return 0
	}
	return ^uint32(0) << (32 - min(bits, 32))
}

func prefixMask128(bits int) (hi, lo uint64) {
	switch {
	case bits <= 0:
		return 0, 0
	case bits <= 64:
		return ^uint64(0) << (64 - bits), 0
	case bits >= 128:
		return ^uint64(0), ^uint64(0)
	}
	return ^uint64(0), ^uint64(0) << (128 - bits)
}

// client returns the owner of client address a (IPv4-mapped or IPv6):
// a multiplicative hash of the masked address, reduced to 0..n-1.
func (o *ownership) client(a *[16]byte) int {
	hi := binary.BigEndian.Uint64(a[:8])
	lo := binary.BigEndian.Uint64(a[8:])
	if hi == 0 && lo>>32 == 0xffff {
		lo &= o.v4
	} else {
		hi &= o.v6hi
		lo &= o.v6lo
	}
	h := (hi*0x9e3779b97f4a7c15 ^ lo) * 0xbf58476d1ce4e5b9
	h ^= h >> 31
	return int(((h >> 32) * o.n) >> 32)
}

// owner returns the worker that owns the parsed frame m, self when it
// need not move. Per frame: a keyIndex lookup or three, no allocation.
func (o *ownership) owner(m *packet.Meta, self int) int {
	if o.marks != nil {
		if mark, ok := o.marks.Classify(m.Proto, &m.Dst, m.DstPort); ok {
			if owned, ok := o.fwmarks[fwmKey{mark, !packet.IsMapped(&m.Dst)}]; ok {
				if !owned {
					return self
				}
				return o.client(&m.Src)
			}
		}
	}
	owned, ok := o.svcIdx.get(&m.Dst, m.DstPort, m.Proto)
	if !ok { // the port-0 service of the address, as workerConfig.service
		owned, ok = o.svcIdx.get(&m.Dst, 0, m.Proto)
	}
	if ok {
		if !owned {
			return self
		}
		return o.client(&m.Src)
	}
	if _, ok := o.laddrIdx.get(&m.Dst, 0, 0); ok {
		return laddr.Owner(m.DstPort, int(o.n))
	}
	if o.nat {
		return o.client(&m.Dst)
	}
	return self
}

// handoff is a worker's side of the hand-off rings. Not safe for
// concurrent use: the rings' own atomics are what peers share.
type handoff struct {
	// out are the rings to each owner, by worker id (nil at the
	// worker's own); in the rings from each peer (nil at its own).
	out, in []*handoffRing
	wake    *wakeup
	descs   [maxBatch]uint64 // drain scratch: UMEM addresses
	lens    [maxBatch]uint32
	buf     [8]byte // the eventfd's counter, read on waking
}

// handoffSlots is the size of each ring, by workers: a ring holds frames
// of one producer for one owner, and per-pair rings grow as n²; 256 slots
// (four full batches) for 2-3 workers, down to 64 from 9 workers, so that
// 16 workers with 2 KB frames hold 240 × 64 × 2 KB = 31 MB.
func handoffSlots(workers int) uint32 {
	switch {
	case workers <= 3:
		return 256
	case workers <= 8:
		return 128
	}
	return 64
}

// connectWorkers gives every pair of workers a hand-off ring each way and
// every worker an eventfd that its producers wake it by. Nothing with
// one worker.
func (d *Dataplane) connectWorkers() error {
	n := len(d.workers)
	if n < 2 {
		return nil
	}
	for _, w := range d.workers {
		fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			return fmt.Errorf("create eventfd of queue %d: %w", w.id, err)
		}
		w.ho.wake = &wakeup{fd: fd}
		w.fds = append(w.fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	connectHandoff(d.workers, int(d.workers[0].q.frameSize))
	return nil
}

// connectHandoff links the workers' rings (slotSize: the frame size).
func connectHandoff(ws []*worker, slotSize int) {
	n := len(ws)
	for _, w := range ws {
		w.ho.out = make([]*handoffRing, n)
		w.ho.in = make([]*handoffRing, n)
		if w.ho.wake == nil {
			w.ho.wake = &wakeup{fd: -1}
		}
	}
	for _, p := range ws {
		for _, c := range ws {
			if p == c {
				continue
			}
			r := newHandoffRing(handoffSlots(n), slotSize, c.ho.wake)
			p.ho.out[c.id] = r
			c.ho.in[p.id] = r
		}
	}
}

// closeHandoff closes the worker's eventfd.
func (w *worker) closeHandoff() {
	if w.ho.wake != nil && w.ho.wake.fd >= 0 {
		unix.Close(w.ho.wake.fd)
		w.ho.wake.fd = -1
	}
}

// handOff sends the parsed frame f (descriptor d of queue q) to its owner
// if that is another worker, and reports whether it did: the caller then
// frees d. A full ring drops the frame (counted, and true: freed too).
func (w *worker) handOff(q *queue, d *unix.XDPDesc, b []byte, m *packet.Meta, cfg *workerConfig) bool {
	o := cfg.own
	if o == nil {
		return false
	}
	owner := o.owner(m, w.id)
	if owner == w.id || owner >= len(w.ho.out) {
		return false
	}
	if w.ho.out[owner].push(b, int(d.Addr&^q.frameMask), w.in) {
		w.stats.local[HandedOff]++
	} else {
		w.stats.local[HandoffFull]++
	}
	return true
}

// publishHandoff makes this batch's hand-offs visible to their owners,
// waking those that sleep. At the batch edge.
func (w *worker) publishHandoff() {
	for _, r := range w.ho.out {
		if r != nil {
			r.publish()
		}
	}
}

// handoffPending says whether a peer handed this worker frames it has
// not taken yet.
func (w *worker) handoffPending() bool {
	for _, r := range w.ho.in {
		if r != nil && r.pending() {
			return true
		}
	}
	return false
}

// sleep tells producers the worker is about to sleep and reports whether
// it may: false when frames were handed to it meanwhile.
func (w *worker) sleep() bool {
	if w.ho.wake == nil {
		return true
	}
	w.ho.wake.asleep.Store(true)
	if w.handoffPending() {
		w.ho.wake.asleep.Store(false)
		return false
	}
	return true
}

// woke ends a sleep: if a producer wrote the eventfd, its count is read
// so that the next poll(2) sleeps again.
func (w *worker) woke() {
	if w.ho.wake == nil {
		return
	}
	if !w.ho.wake.asleep.Swap(false) && w.ho.wake.fd >= 0 {
		unix.Read(w.ho.wake.fd, w.ho.buf[:])
	}
}

// drainHandoff forwards the frames peers handed to this worker, up to a
// batch from each, and returns how many it took. Each is copied into a
// free frame of the worker's own UMEM for the interface it came in on,
// at the offset it had, and forwarded as if received there. A frame
// finding no free frame is dropped (HandoffNoMem).
func (w *worker) drainHandoff(cfg *workerConfig, fwd []destFwd, now int64) int {
	total := 0
	for _, r := range w.ho.in {
		if r == nil {
			continue
		}
		n := min(r.peek(), maxBatch)
		if n == 0 {
			continue
		}
		k, in := 0, uint16(0)
		for i := uint32(0); i < n; i++ {
			b, hm := r.slot(i)
			if int(hm.in) >= len(w.qs) || uint64(hm.off)+uint64(hm.len) > w.q.frameSize {
				w.stats.local[HandoffNoMem]++
				continue
			}
			if k > 0 && hm.in != in {
				w.forwardHanded(in, w.ho.descs[:k], w.ho.lens[:k], cfg, fwd, now)
				k = 0
			}
			in = hm.in
			q := w.qs[in]
			free := *q.free
			if len(free) == 0 {
				q.reap()
				if free = *q.free; len(free) == 0 {
					w.stats.local[HandoffNoMem]++
					continue
				}
			}
			base := free[len(free)-1]
			*q.free = free[:len(free)-1]
			addr := base + uint64(hm.off)
			copy(q.umem[addr:addr+uint64(hm.len)], b)
			w.ho.descs[k], w.ho.lens[k] = addr, hm.len
			k++
		}
		r.release(n)
		if k > 0 {
			w.forwardHanded(in, w.ho.descs[:k], w.ho.lens[:k], cfg, fwd, now)
		}
		total += int(n)
	}
	return total
}

// forwardHanded forwards handed-off frames (addrs, lens: in the UMEM of
// interface slot's queue) as pollQueue forwards received ones, without
// the ownership check: they are at their owner.
func (w *worker) forwardHanded(slot uint16, addrs []uint64, lens []uint32, cfg *workerConfig, fwd []destFwd, now int64) {
	for i := range addrs {
		w.descs[i] = unix.XDPDesc{Addr: addrs[i], Len: lens[i]}
	}
	w.stats.local[HandoffRx] += uint64(len(addrs))
	w.forward(slot, w.qs[slot], w.descs[:len(addrs)], cfg, fwd, now, false)
}

// ownershipOf is the ownership of the services st holds, the dying ones
// too (their replies must still find their connections), over workers.
func ownershipOf(st *controlState, workers int) *ownership {
	if workers < 2 {
		return nil
	}
	list := make([]*ipvs.Service, 0, len(st.services)+len(st.dying))
	for _, s := range st.services {
		list = append(list, &s.spec)
	}
	for _, s := range st.dying {
		list = append(list, &s.spec)
	}
	return newOwnership(list, st.marks, workers)
}
