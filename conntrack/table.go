package conntrack

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/sched"
)

// Forwarding methods, as stored in an entry (the values of ipvs.Fwd).
const (
	FwdMasq    = uint8(ipvs.FwdMasq)
	FwdLocal   = uint8(ipvs.FwdLocal)
	FwdTunnel  = uint8(ipvs.FwdTunnel)
	FwdRoute   = uint8(ipvs.FwdRoute)
	FwdFullNAT = uint8(ipvs.FwdFullNAT)
)

// MaxCapacity is the largest Options.Capacity: an index slot stores
// (entry index + 1) << 1 in 32 bits.
const MaxCapacity = 1 << 30

var errNegativeTimeout = errors.New("invalid timeout: must not be negative")

// Options configure a Table.
type Options struct {
	// Capacity is the most entries (connections and persistence
	// templates) the table holds. All memory is allocated by New: a
	// 128-byte entry each, plus an index with room for two keys per
	// entry at a load factor of at most 3/4, rounded up to a power of
	// two (21 to 43 bytes per entry; 26.8 at 10^7 entries, 155 in all),
	// and one bit per entry for the allocation bitmap.
	Capacity int
	// Registry resolves the destination IDs stored in entries. Required.
	Registry *sched.Registry
	// Settings are the shared run-time knobs; nil gives the table its own,
	// with Timeouts.
	Settings *Settings
	// Timeouts are used only when Settings is nil; the zero value means
	// DefaultTimeouts.
	Timeouts Timeouts
	// EvictProbe (0: never evict) is how many evictable entries a full table compares to
	// choose one to evict for a new connection (it looks at no more than
	// 4×EvictProbe entries); IPVS's drop_entry looks at a handful of
	// random buckets in the same spirit. More finds better victims and
	// costs more per insert under a flood.
	EvictProbe int
	// FloodHold is how long the table counts as flooded after it failed
	// to make room for a new connection. While flooded, TCP segments
	// without SYN that match no entry are scheduled without an entry
	// (Katran's flood mode), so flows that could not be tracked keep
	// going with consistent-hashing schedulers (sh, mh, dh).
	FloodHold time.Duration
	// LocalReleased, if set, is called when a FullNAT connection that has
	// a local address and port (SetLocal) leaves the table, so that the
	// caller's port pool takes the port back. It runs on the table's
	// owner, from Expire, eviction or Remove: never from the control plane.
	LocalReleased func(laddr [16]byte, lport uint16, rs [16]byte, rport uint16)
	// LocalReserved, if set, is called when InsertSynced installs a
	// FullNAT connection with a given local address and port: the
	// caller's pool reserves the port, or returns false when it cannot
	// (InsertSynced then drops the record). LocalReleased gives it back.
	LocalReserved func(laddr [16]byte, lport uint16, rs [16]byte, rport uint16) bool
	// OffloadRefresh and OffloadReleased are the flow offload's hooks
	// (offload.go), called on the table's owner for an entry marked
	// SetOffloaded: OffloadRefresh when the entry is found expired, before
	// it is removed, so that the frames forwarded without the table may
	// restart its timer (Fold); OffloadReleased when it leaves the table,
	// whatever the reason, before its slot is reused.
	OffloadRefresh  func(e *Entry, now int64)
	OffloadReleased func(e *Entry)
	// ActivePreEstablished counts SYN_SENT, SYN_RECV and SYNACK entries
	// as active, as newer kernels do (tcp_state_active_table in
	// ip_vs_proto_tcp.c). Off: only ESTABLISHED is active, the rule of
	// the older kernels that sched.Dest documents.
	ActivePreEstablished bool
}

// DefaultOptions returns 1 Mi entries, EvictProbe 16 and FloodHold 1 s,
// with IPVS's default timeouts. Registry must still be set.
func DefaultOptions() Options {
	return Options{
		Capacity:   1 << 20,
		Timeouts:   DefaultTimeouts(),
		EvictProbe: 16,
		FloodHold:  time.Second,
	}
}

// Entry is one connection or persistence template. Entries live in the
// table's preallocated array and hold no pointers, so the garbage
// collector never scans the table. A *Entry returned by the table stays
// valid until the next call that may remove entries (Lookup, NewConn,
// Insert, Remove, Expire); entries never move, but a removed entry's
// slot is reused.
//
// Layout (128 bytes, two cache lines; a size test keeps it). What a
// forward lookup reads (key, expiry, flags) comes first, within 64 bytes:
//
//	  0 key      forward key: client → virtual (40)
//	 40 expires  ns on the caller's clock (8)
//	 48 dest     sched.Dest ID (4)
//	 52 link     conn: template index+1; template: connections it controls; free: next free
//	 56 dport, lport, state, fwd, flags, gen
//	 64 daddr    real server address (16)
//	 80 laddr    reply key destination: client (Masq) or local address (FullNAT) (16)
//	 96 inBytes, outBytes (8+8)
//	112 inPkts, outPkts (4+4)
//	120 hop      client-side next hop's MAC, for replies (NAT, FullNAT) (6)
//	126 hopIface the dataplane's slot of the interface the client's frames came in on (1)
//	127 hopFlags what is known of hop (1)
type Entry struct {
	key      Key
	expires  int64
	dest     uint32
	link     uint32
	dport    uint16
	lport    uint16
	state    State
	fwd      uint8
	flags    uint8
	gen      uint8 // LookupBatch generation that returned it: not evictable during that batch
	daddr    [16]byte
	laddr    [16]byte
	inBytes  uint64
	outBytes uint64
	inPkts   uint32
	outPkts  uint32
	hop      [6]byte
	hopIface uint8 // a dataplane serves at most 16 interfaces
	hopFlags uint8
}

// Entry flags.
const (
	fUsed      uint8 = 1 << iota
	fTemplate        // persistence template (IP_VS_CONN_F_TEMPLATE)
	fInactive        // counted in the destination's InactConns (IP_VS_CONN_F_INACTIVE)
	fNoOutput        // replies bypass the director (IP_VS_CONN_F_NOOUTPUT)
	fReply           // the reply key is in the index
	fUnhashed        // the forward key is not in the index (invalidated template)
	fBound           // counted at its destination
	fOffloaded       // its frames may be forwarded without the table (offload.go)
)

// Entry hop flags (Entry.hopFlags): the flags byte is full.
const (
	hNoHop uint8 = 1 << iota // installed from a sync record: no client frame seen, Hop is a guess
)

// Key returns the forward key (client → virtual service).
func (e *Entry) Key() Key { return e.key }

// ClientAddr16 and VirtualAddr16 are the forward key's addresses and
// ports in 16-byte form, what a reply's rewrite puts back: no copy of
// the whole 40-byte Key (Key() cost NAT and FULLNAT replies 2-3 ns a
// frame in BenchmarkWorkerMethods' profile).
func (e *Entry) ClientAddr16() ([16]byte, uint16)  { return e.key.Src, e.key.SrcPort }
func (e *Entry) VirtualAddr16() ([16]byte, uint16) { return e.key.Dst, e.key.DstPort }

// Proto is the IP protocol (0 for the template of a firewall-mark service).
func (e *Entry) Proto() uint8 { return e.key.Proto }

// Client and Virtual are the forward key's addresses.
func (e *Entry) Client() netip.AddrPort {
	return netip.AddrPortFrom(addrOf(e.key.Src), e.key.SrcPort)
}
func (e *Entry) Virtual() netip.AddrPort {
	return netip.AddrPortFrom(addrOf(e.key.Dst), e.key.DstPort)
}

// DestID is the sched.Dest the entry is bound to.
func (e *Entry) DestID() uint32 { return e.dest }

// DestAddr16 and DestPort are where the dataplane sends input packets
// (IPv4-mapped address); Dest is the same as a netip value.
func (e *Entry) DestAddr16() [16]byte { return e.daddr }
func (e *Entry) DestPort() uint16     { return e.dport }
func (e *Entry) Dest() netip.AddrPort {
	return netip.AddrPortFrom(addrOf(e.daddr), e.dport)
}

// Local is the FullNAT source address and port (the reply key's
// destination); for Masq it is the client.
func (e *Entry) Local() netip.AddrPort {
	return netip.AddrPortFrom(addrOf(e.laddr), e.lport)
}

// LocalAddr16 and LocalPort are Local's address (IPv4-mapped) and port.
func (e *Entry) LocalAddr16() [16]byte { return e.laddr }
func (e *Entry) LocalPort() uint16     { return e.lport }

// Fwd is the forwarding method (ipvs.Fwd values).
func (e *Entry) Fwd() uint8 { return e.fwd }

// Hop is the MAC address the client's frames came from, which replies go
// back to (SetHop); zero until set.
func (e *Entry) Hop() [6]byte { return e.hop }

// SetHop records the client-side next hop of a connection whose replies
// come back through the director (NAT, FullNAT): the source MAC of its
// first frame, the router (or the client itself) the client's traffic
// arrives from. Replies take the path the requests came by.
func (e *Entry) SetHop(mac [6]byte) { e.hop, e.hopFlags = mac, e.hopFlags&^hNoHop }

// HopIface is the slot of the interface the client's frames came in on
// (SetHopIface): the dataplane's index of a served interface, 0 for the
// first, which replies leave by.
func (e *Entry) HopIface() uint16 { return uint16(e.hopIface) }

// SetHopIface records the interface slot the client's first frame came in
// on, beside its hop (SetHop).
func (e *Entry) SetHopIface(slot uint16) { e.hopIface = uint8(slot) }

// State is the protocol state.
func (e *Entry) State() State { return e.state }

// Expires is when the entry expires, on the caller's clock.
func (e *Entry) Expires() int64 { return e.expires }

// Template reports whether e is a persistence template.
func (e *Entry) Template() bool { return e.flags&fTemplate != 0 }

// Active reports whether e counts in its destination's ActiveConns.
func (e *Entry) Active() bool { return e.flags&(fTemplate|fInactive) == 0 }

// Controlled reports, for a template, how many connections it controls.
func (e *Entry) Controlled() uint32 {
	if e.flags&fTemplate == 0 {
		return 0
	}
	return e.link
}

// Counters returns the packets and bytes seen in each direction.
func (e *Entry) Counters() (inPkts, outPkts, inBytes, outBytes uint64) {
	return uint64(e.inPkts), uint64(e.outPkts), e.inBytes, e.outBytes
}

// replyKey is the key reply packets carry: real server → laddr.
func (e *Entry) replyKey() Key {
	return Key{Src: e.daddr, SrcPort: e.dport, Dst: e.laddr, DstPort: e.lport, Proto: e.key.Proto}
}

func (e *Entry) replyMatches(k *Key) bool {
	return k.Src == e.daddr && k.Dst == e.laddr && k.SrcPort == e.dport &&
		k.DstPort == e.lport && k.Proto == e.key.Proto && k.kind == kindConn
}

// sameReply reports whether o's reply key is e's.
func (e *Entry) sameReply(o *Entry) bool {
	return o.daddr == e.daddr && o.laddr == e.laddr && o.dport == e.dport &&
		o.lport == e.lport && o.key.Proto == e.key.Proto
}

// Table is a connection table shard: one per dataplane worker. It is not
// safe for concurrent use, except for the methods documented as callable
// from the control plane (Stats, Dump). See the package
// documentation for the mechanism.
type Table struct {
	entries []Entry  // preallocated, pointer-free
	slots   []uint64 // open-addressing index: hash32<<32 | (index+1)<<1 | dir; 0 = empty
	mask    uint32
	seed    seed

	free uint32 // head of the free list (index+1, linked through Entry.link); 0: none
	used uint32 // entries[:used] have been handed out at least once
	live int    // entries in use
	tmpl int    // of which templates
	// bits has bit i%64 of word i/64 set while entry i is allocated, so
	// that the sweep and Dump skip free entries 64 at a time: after a
	// flood, used stays at its high-water mark while live drops.
	bits []uint64

	reg         *sched.Registry
	released    func(laddr [16]byte, lport uint16, rs [16]byte, rport uint16)
	reserved    func(laddr [16]byte, lport uint16, rs [16]byte, rport uint16) bool
	offRefresh  func(e *Entry, now int64)
	offReleased func(e *Entry)
	settings    *Settings
	cur         *settingsVal
	tmo         [numStates]int64
	tcp         *tcpTable
	active      [numStates]bool

	sweep      uint32 // expiry cursor
	evictAt    uint32 // eviction cursor
	evictProbe int
	pin        uint32 // index+1 of an entry eviction must not take; 0: none
	floodHold  int64
	floodUntil int64

	sink uint64     // keeps LookupBatch's prefetching loads alive
	gen  uint8      // generation of the latest LookupBatch
	flow sched.Flow // NewConn's argument to Schedule, kept here so it does not escape

	c   Stats // worker-owned counters, published at batch edges
	pub published

	listReq atomic.Pointer[listRequest] // control plane → worker, taken at Expire
	dumpMu  sync.Mutex                  // serialises Dump calls; never touched by the worker
	dumping atomic.Int32                // Dump calls in progress, for Dumping
}

// New allocates a table for opts.Capacity entries.
func New(opts Options) (*Table, error) {
	if opts.Capacity < 1 || opts.Capacity > MaxCapacity {
		return nil, fmt.Errorf("invalid capacity %d: must be 1..%d", opts.Capacity, MaxCapacity)
	}
	if opts.Registry == nil {
		return nil, errors.New("invalid options: Registry is required")
	}
	if opts.EvictProbe < 0 || opts.EvictProbe > 1024 {
		return nil, fmt.Errorf("invalid EvictProbe %d: must be 0..1024", opts.EvictProbe)
	}
	if opts.FloodHold < 0 {
		return nil, fmt.Errorf("invalid FloodHold %v: must not be negative", opts.FloodHold)
	}
	if opts.Settings == nil {
		if opts.Timeouts == (Timeouts{}) {
			opts.Timeouts = DefaultTimeouts()
		}
		for _, d := range opts.Timeouts.TCP {
			if d < 0 {
				return nil, errNegativeTimeout
			}
		}
		if opts.Timeouts.UDP < 0 || opts.Timeouts.ICMP < 0 {
			return nil, errNegativeTimeout
		}
		opts.Settings = NewSettings(opts.Timeouts)
	}
	// Every NAT entry has two keys; keep the load factor at most 3/4.
	nslots := 2 * uint64(opts.Capacity) * 4 / 3
	if nslots < 8 {
		nslots = 8
	}
	nslots = 1 << bits.Len64(nslots-1)
	t := &Table{
		entries:     make([]Entry, opts.Capacity),
		bits:        make([]uint64, (opts.Capacity+63)/64),
		slots:       make([]uint64, nslots),
		mask:        uint32(nslots - 1),
		reg:         opts.Registry,
		released:    opts.LocalReleased,
		reserved:    opts.LocalReserved,
		offRefresh:  opts.OffloadRefresh,
		offReleased: opts.OffloadReleased,
		settings:    opts.Settings,
		evictProbe:  opts.EvictProbe,
		floodHold:   int64(opts.FloodHold),
		floodUntil:  -1 << 63,
	}
	adviseHuge(unsafe.Pointer(unsafe.SliceData(t.entries)), uintptr(len(t.entries))*unsafe.Sizeof(Entry{}))
	adviseHuge(unsafe.Pointer(unsafe.SliceData(t.slots)), uintptr(len(t.slots))*8)
	var b [48]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("seed connection hash: %w", err)
	}
	for i := range t.seed {
		t.seed[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	t.active[StateEstablished] = true
	if opts.ActivePreEstablished {
		t.active[StateSynSent] = true
		t.active[StateSynRecv] = true
		t.active[StateSynAck] = true
	}
	t.loadSettings()
	return t, nil
}

// loadSettings copies the newest Settings into the table.
func (t *Table) loadSettings() {
	v := t.settings.load()
	if v == t.cur {
		return
	}
	t.cur = v
	for s := StateNone; s < numTCPStates; s++ {
		t.tmo[s] = int64(v.timeouts.TCP[s])
	}
	t.tmo[StateUDP] = int64(v.timeouts.UDP)
	t.tmo[StateICMP] = int64(v.timeouts.ICMP)
	t.tcp = &tcpStates
	if v.secureTCP {
		t.tcp = &tcpStatesSecure
	}
}

// Capacity is the most entries the table holds.
func (t *Table) Capacity() int { return len(t.entries) }

// Len is the number of entries in use (connections and templates).
func (t *Table) Len() int { return t.live }

// ref is what an index slot stores besides the hash: (index+1)<<1 | dir.
func ref(idx uint32, reply bool) uint32 {
	r := (idx + 1) << 1
	if reply {
		r |= 1
	}
	return r
}

func (t *Table) indexOf(e *Entry) uint32 {
	off := uintptr(unsafe.Pointer(e)) - uintptr(unsafe.Pointer(unsafe.SliceData(t.entries)))
	i := off / unsafe.Sizeof(Entry{})
	if off%unsafe.Sizeof(Entry{}) != 0 || i >= uintptr(len(t.entries)) {
		panic("conntrack: entry does not belong to this table")
	}
	return uint32(i)
}

// Lookup finds the entry whose forward key (DirInput) or reply key
// (DirOutput) is k. An entry found past its expiry is removed and not
// returned, so packets see expiry exactly even between sweeps.
func (t *Table) Lookup(k *Key, now int64) (*Entry, Dir) {
	return t.lookup(k, uint32(t.seed.hash(k)), now)
}

func (t *Table) lookup(k *Key, h32 uint32, now int64) (*Entry, Dir) {
	m := t.mask
	for i := h32 & m; ; i = (i + 1) & m {
		s := t.slots[i]
		if s == 0 {
			return nil, DirInput
		}
		if uint32(s>>32) != h32 {
			continue
		}
		r := uint32(s)
		e := &t.entries[r>>1-1]
		dir := DirInput
		if r&1 == 0 {
			if !e.key.equal(k) {
				continue
			}
		} else {
			if !e.replyMatches(k) {
				continue
			}
			dir = DirOutput
		}
		if e.expires <= now && e.flags&fOffloaded != 0 {
			t.refresh(e, now)
		}
		if e.expires <= now && (e.flags&fTemplate == 0 || e.link == 0) {
			t.c.Expired++
			t.remove(r>>1-1, false)
			return nil, DirInput
		}
		return e, dir
	}
}

// Hit is LookupBatch's answer for one key.
type Hit struct {
	Entry *Entry // nil: no entry
	Dir   Dir
}

// batchChunk is how many keys LookupBatch resolves together.
const batchChunk = 64

// LookupBatch is Lookup for the keys of a whole batch of packets, with
// the same results in hits[i] (len(hits) >= len(keys)). It hashes every
// key, loads all their index slots, then all the entries those slots
// name, and only then compares keys, so the cache misses of different
// packets overlap instead of being paid one after the other: a lookup in
// a table much larger than the caches needs two dependent DRAM accesses
// (about 160 ns each on this project's test machine).
//
// The entries returned stay valid for the whole batch: NewConn and
// Insert do not evict an entry that the latest LookupBatch returned, so
// the caller may create entries for the batch's misses before it has
// updated the hits. (Reuse and Remove still remove what they are given.)
//
// It is not inlined: inlined into the worker's loop (PGO), its call to
// lookup, inside an inlined body, stayed a call per key; as a function of
// its own it is one call per batch, with lookup inlined.
//
//go:noinline
func (t *Table) LookupBatch(keys []Key, now int64, hits []Hit) {
	// A batch starts with the newest Settings (one atomic load): a
	// worker that slept since its last Expire must not forward its first
	// batch with a sysctl the control plane has changed meanwhile.
	t.loadSettings()
	var h [batchChunk]uint32
	var acc uint64
	m := t.mask
	t.gen++
	if t.gen == 0 {
		t.gen = 1
	}
	hits = hits[:len(keys)]
	for len(keys) > 0 {
		n := min(len(keys), batchChunk)
		for i := range keys[:n] {
			h[i] = uint32(t.seed.hash(&keys[i]))
			acc += t.slots[h[i]&m] // independent loads: they overlap
		}
		for i := range keys[:n] {
			// Touch the entry of the first slot with a matching hash:
			// its hot 64 bytes (key, expiry, flags) may straddle two
			// cache lines, so both ends; NAT reply fields for replies.
			for j := h[i] & m; ; j = (j + 1) & m {
				s := t.slots[j]
				if s == 0 {
					break
				}
				if uint32(s>>32) == h[i] {
					e := &t.entries[uint32(s)>>1-1]
					acc += uint64(e.key.Src[0]) + uint64(e.flags)
					if s&1 != 0 {
						acc += uint64(e.daddr[0]) + uint64(e.laddr[15])
					}
					break
				}
			}
		}
		for i := range keys[:n] {
			e, dir := t.lookup(&keys[i], h[i], now)
			if e != nil {
				e.gen = t.gen
			}
			hits[i] = Hit{e, dir}
		}
		keys, hits = keys[n:], hits[n:]
	}
	t.sink += acc
}

// findFwd returns the index of the entry whose forward key is k.
func (t *Table) findFwd(k *Key, h32 uint32) (uint32, bool) {
	m := t.mask
	for i := h32 & m; ; i = (i + 1) & m {
		s := t.slots[i]
		if s == 0 {
			return 0, false
		}
		if uint32(s>>32) != h32 || s&1 != 0 {
			continue
		}
		idx := uint32(s)>>1 - 1
		if t.entries[idx].key.equal(k) {
			return idx, true
		}
	}
}

// findReply reports whether some entry's reply key is e's (hash h32)
// and, if none, returns the empty slot that ends h32's probe sequence:
// where hashIn would put it, found without probing again.
func (t *Table) findReply(e *Entry, h32 uint32) (uint32, bool) {
	m := t.mask
	for i := h32 & m; ; i = (i + 1) & m {
		s := t.slots[i]
		if s == 0 {
			return i, false
		}
		if uint32(s>>32) != h32 || s&1 == 0 {
			continue
		}
		if t.entries[uint32(s)>>1-1].sameReply(e) {
			return 0, true
		}
	}
}

func (t *Table) hashIn(h32, r uint32) {
	m := t.mask
	i := h32 & m
	for t.slots[i] != 0 {
		i = (i + 1) & m
	}
	t.slots[i] = uint64(h32)<<32 | uint64(r)
}

// hashOut removes the slot holding r from the probe sequence of h32 and
// closes the gap by shifting later slots back (no tombstones, so probe
// sequences never grow with churn).
func (t *Table) hashOut(h32, r uint32) {
	m := t.mask
	i := h32 & m
	for uint32(t.slots[i]) != r {
		if t.slots[i] == 0 {
			panic("conntrack: index slot missing for a live entry")
		}
		i = (i + 1) & m
	}
	for j := (i + 1) & m; ; j = (j + 1) & m {
		s := t.slots[j]
		if s == 0 {
			break
		}
		home := uint32(s>>32) & m
		// Move s into the hole at i unless its home lies in (i, j].
		if (j-home)&m >= (j-i)&m {
			t.slots[i] = s
			i = j
		}
	}
	t.slots[i] = 0
}

// alloc hands out a free entry, evicting one when the table is full.
func (t *Table) alloc(now int64) (uint32, bool) {
	var idx uint32
	switch {
	case t.free != 0:
		idx = t.free - 1
		t.free = t.entries[idx].link
	case int(t.used) < len(t.entries):
		idx = t.used
		t.used++
	case t.evict(now):
		idx = t.free - 1
		t.free = t.entries[idx].link
	default:
		t.floodUntil = now + t.floodHold
		return 0, false
	}
	t.bits[idx>>6] |= 1 << (idx & 63)
	return idx, true
}

// release puts an unused entry back on the free list.
func (t *Table) release(idx uint32) {
	t.entries[idx] = Entry{link: t.free}
	t.free = idx + 1
	t.bits[idx>>6] &^= 1 << (idx & 63)
}

const rankNever = 255

// victimRank orders eviction candidates, lowest first: anything expired,
// then TCP entries that are not (or no longer) carrying data, then idle
// templates, half-closed TCP and UDP/ICMP entries that saw at most 8
// packets (IPVS's drop_entry spares entries with more). Established TCP
// connections, busier UDP flows and templates still controlling
// connections are never evicted.
func (t *Table) victimRank(idx uint32, now int64) uint8 {
	e := &t.entries[idx]
	if e.flags&fUsed == 0 || idx+1 == t.pin || e.gen == t.gen && t.gen != 0 {
		return rankNever
	}
	if e.flags&fTemplate != 0 {
		switch {
		case e.link != 0:
			return rankNever
		case e.expires <= now || e.flags&fUnhashed != 0:
			return 0
		case e.state == StateTemplateNone:
			return 2
		}
		return 3
	}
	if e.expires <= now {
		return 0
	}
	switch e.state {
	case StateSynRecv, StateSynAck, StateNone, StateSynSent, StateListen, StateClose, StateTimeWait:
		return 1
	case StateFinWait, StateCloseWait, StateLastAck:
		return 2
	case StateUDP, StateICMP:
		if e.inPkts <= 8 {
			return 2
		}
	}
	return rankNever
}

// evict removes the best victim among the next EvictProbe evictable
// entries after the eviction cursor, looking at no more than
// 4×EvictProbe entries (a sequential read of about 2 ns each), so a run
// of established connections costs a bounded scan, not a failure.
func (t *Table) evict(now int64) bool {
	n := uint32(len(t.entries))
	best, bestRank := uint32(0), uint8(rankNever)
	for seen, k := 0, 0; seen < t.evictProbe && k < 4*t.evictProbe; k++ {
		i := t.evictAt
		if t.evictAt++; t.evictAt >= n {
			t.evictAt = 0
		}
		r := t.victimRank(i, now)
		if r == rankNever {
			continue
		}
		seen++
		if r < bestRank || r == bestRank && t.entries[i].expires < t.entries[best].expires {
			best, bestRank = i, r
			if r <= 1 {
				break // expired, or a handshake/closed connection: take it
			}
		}
	}
	if bestRank == rankNever {
		t.c.Full++
		return false
	}
	if bestRank == 0 {
		t.c.Expired++
	} else {
		t.c.Evicted++
	}
	t.remove(best, bestRank != 0)
	return true
}

// remove unhashes entry idx, unbinds its destination and frees it.
// forced is IPVS's "timeout 0" drop: an evicted connection also takes
// its template along when it was that template's last, unassured user.
func (t *Table) remove(idx uint32, forced bool) {
	e := &t.entries[idx]
	if e.flags&fUsed == 0 {
		return
	}
	fh, rh := t.keyHashes(e)
	t.removeHashed(idx, fh, rh, forced)
}

// keyHashes returns the hashes of e's forward and reply keys (0 for a
// key that is not indexed).
func (t *Table) keyHashes(e *Entry) (fh, rh uint32) {
	if e.flags&fUnhashed == 0 {
		fh = uint32(t.seed.hash(&e.key))
	}
	if e.flags&fReply != 0 {
		rh = uint32(t.seed.replyHash(e))
	}
	return fh, rh
}

func (t *Table) removeHashed(idx, fh, rh uint32, forced bool) {
	e := &t.entries[idx]
	if e.flags&fUnhashed == 0 {
		t.hashOut(fh, ref(idx, false))
	}
	if e.flags&fReply != 0 {
		t.hashOut(rh, ref(idx, true))
	}
	tmpl := e.flags&fTemplate != 0
	if e.flags&fBound != 0 {
		if d := t.reg.Get(e.dest); d != nil {
			d.Unbind(tmpl, e.flags&fInactive == 0)
		}
	}
	ctl := uint32(0)
	if tmpl {
		t.tmpl--
	} else {
		ctl = e.link
	}
	if e.fwd == FwdFullNAT && e.flags&fReply != 0 && t.released != nil {
		t.released(e.laddr, e.lport, e.daddr, e.dport)
	}
	if e.flags&fOffloaded != 0 {
		e.flags &^= fOffloaded
		if t.offReleased != nil {
			t.offReleased(e)
		}
	}
	t.live--
	t.release(idx)
	if ctl != 0 {
		ct := &t.entries[ctl-1]
		ct.link--
		if forced && ct.link == 0 && ct.state != StateTemplateAssured && ctl != t.pin {
			t.remove(ctl-1, true)
		}
	}
}

// Remove deletes e now (for instance when its destination is gone and
// the expire_nodest_conn policy applies). Removing a template that still
// controls connections only unhashes it: it is freed once they are gone.
func (t *Table) Remove(e *Entry) {
	idx := t.indexOf(e)
	if e.flags&fTemplate != 0 && e.link != 0 {
		t.invalidate(idx)
		return
	}
	t.remove(idx, true)
}

// invalidate takes a template out of the index without freeing it, as
// ip_vs_check_template does: nothing finds it any more, and it is freed
// when it expires with no connection left under its control.
func (t *Table) invalidate(idx uint32) {
	e := &t.entries[idx]
	if e.flags&fUnhashed != 0 {
		return
	}
	t.hashOut(uint32(t.seed.hash(&e.key)), ref(idx, false))
	e.flags |= fUnhashed
	t.c.TemplatesInvalidated++
}

// insert fills a freshly allocated entry idx for key k (absent from the
// index, hash h32) bound to d, and indexes it.
func (t *Table) insert(idx uint32, k *Key, h32 uint32, d *sched.Dest, fwd uint8, dport uint16, now int64) *Entry {
	e := &t.entries[idx]
	*e = Entry{key: *k, dest: d.ID, dport: dport, fwd: fwd, flags: fUsed | fBound}
	e.daddr = d.Addr.As16()
	if k.kind == kindTemplate {
		e.flags |= fTemplate
		e.state = StateTemplateNone
		t.tmpl++
		t.c.TemplatesCreated++
	} else {
		e.flags |= fInactive
		switch k.Proto {
		case ProtoTCP:
			e.state = StateNone
		case ProtoUDP, ProtoSCTP:
			e.state = StateUDP
		default:
			e.state = StateICMP
		}
		e.expires = now + t.tmo[e.state]
		if fwd != FwdMasq && fwd != FwdFullNAT {
			e.flags |= fNoOutput
		}
		t.c.Created++
	}
	t.live++
	t.hashIn(h32, ref(idx, false))
	d.Bind(k.kind == kindTemplate)
	if fwd == FwdMasq && k.kind == kindConn {
		e.laddr, e.lport = k.Src, k.SrcPort
		t.addReply(idx)
	}
	return e
}

// addReply indexes entry idx's reply key unless another entry has it.
func (t *Table) addReply(idx uint32) bool {
	e := &t.entries[idx]
	h32 := uint32(t.seed.replyHash(e))
	i, found := t.findReply(e, h32)
	if found {
		t.c.ReplyCollisions++
		return false
	}
	t.slots[i] = uint64(h32)<<32 | uint64(ref(idx, true))
	e.flags |= fReply
	return true
}

// Insert adds a connection already placed on d (state synchronisation,
// a dataplane doing its own scheduling, tests): forward key k, the
// forwarding method, the destination port. It returns the entry and
// true, or the existing entry for k and false, or nil and false when the
// table is full and nothing could be evicted (counted in Stats.Full).
// Masq entries get their reply key at once; FullNAT entries get it from
// SetLocal.
func (t *Table) Insert(k *Key, d *sched.Dest, fwd uint8, dport uint16, now int64) (*Entry, bool) {
	kc := *k
	kc.kind = kindConn
	h32 := uint32(t.seed.hash(&kc))
	if idx, ok := t.findFwd(&kc, h32); ok {
		return &t.entries[idx], false
	}
	idx, ok := t.alloc(now)
	if !ok {
		return nil, false
	}
	return t.insert(idx, &kc, h32, d, fwd, dport, now), true
}

// SetLocal gives a FullNAT entry its local (source NAT) address and
// port and indexes the reply key real server → local address. It returns
// false, changing nothing, when another entry already uses that reply
// key: the caller picks another port.
func (t *Table) SetLocal(e *Entry, laddr [16]byte, lport uint16) bool {
	idx := t.indexOf(e)
	if e.flags&fTemplate != 0 {
		return false
	}
	if e.flags&fReply != 0 {
		t.hashOut(uint32(t.seed.replyHash(e)), ref(idx, true))
		e.flags &^= fReply
	}
	oldA, oldP := e.laddr, e.lport
	e.laddr, e.lport = laddr, lport
	if !t.addReply(idx) {
		e.laddr, e.lport = oldA, oldP
		if oldA != ([16]byte{}) || oldP != 0 {
			t.addReply(idx)
		}
		return false
	}
	e.flags &^= fNoOutput
	return true
}

// Update accounts one packet of frameLen bytes on e in direction dir,
// runs the TCP state machine on tcpFlags (ignored for other protocols),
// moves the destination between active and inactive when the state says
// so, and restarts e's timer. It never allocates.
func (t *Table) Update(e *Entry, dir Dir, tcpFlags uint8, frameLen int, now int64) {
	// Packet counts saturate rather than wrap: eviction reads inPkts.
	if dir == DirOutput {
		if e.outPkts != ^uint32(0) {
			e.outPkts++
		}
		e.outBytes += uint64(frameLen)
	} else {
		if e.inPkts != ^uint32(0) {
			e.inPkts++
		}
		e.inBytes += uint64(frameLen)
	}
	if e.flags&fTemplate != 0 {
		return
	}
	switch e.key.Proto {
	case ProtoTCP:
		// A segment that leaves the state as it is (most of them: the
		// ACKs of an established connection) is decided here, where it
		// inlines into the caller's loop with Update; tcpTransition,
		// a call from within an inlined Update, does the rest.
		if e.flags&fNoOutput == 0 && dir <= DirOutput {
			if ev := tcpEvent(tcpFlags); ev >= 0 && t.tcp[dir][ev][e.state] == e.state {
				break
			}
		}
		t.tcpTransition(e, dir, tcpFlags)
	case ProtoUDP:
		if dir == DirOutput {
			t.assure(e)
		}
	}
	e.expires = now + t.tmo[e.state]
}

func (t *Table) tcpTransition(e *Entry, dir Dir, flags uint8) {
	if dir > DirInputOnly {
		dir = DirInput
	}
	if e.flags&fNoOutput != 0 {
		if dir == DirOutput {
			e.flags &^= fNoOutput
		} else {
			dir = DirInputOnly
		}
	}
	ns := StateClose
	if ev := tcpEvent(flags); ev >= 0 {
		ns = t.tcp[dir][ev][e.state]
	}
	if ns == e.state {
		return
	}
	t.setActive(e, t.active[ns])
	if ns == StateEstablished {
		t.assure(e)
	}
	e.state = ns
}

// setActive moves e between its destination's active and inactive counts.
func (t *Table) setActive(e *Entry, active bool) {
	if (e.flags&fInactive == 0) == active {
		return
	}
	e.flags ^= fInactive
	if e.flags&fBound == 0 {
		return
	}
	if d := t.reg.Get(e.dest); d != nil {
		if active {
			d.Activate()
		} else {
			d.Deactivate()
		}
	}
}

// assure marks e's template assured (ip_vs_control_assure_ct).
func (t *Table) assure(e *Entry) {
	if e.link != 0 {
		t.entries[e.link-1].state = StateTemplateAssured
	}
}

// Reuse applies IPVS's conn_reuse_mode (on by default) to a SYN that
// found an entry: when the entry belongs to a connection that is over
// (TIME_WAIT or CLOSE; also FIN_WAIT of a DR/TUN connection when the
// mode has bit 2) and no template controls it, the client is opening a
// new connection from the same port. Reuse then removes the entry and
// returns true, and the caller schedules the packet with NewConn, as
// ip_vs_in does; otherwise it returns false and the packet belongs to e.
func (t *Table) Reuse(e *Entry, tcpFlags uint8) bool {
	mode := t.cur.connReuseMode
	if mode == 0 || tcpFlags&TCPSyn == 0 || e.key.Proto != ProtoTCP || e.flags&fTemplate != 0 || e.link != 0 {
		return false
	}
	switch {
	case e.state == StateTimeWait, e.state == StateClose:
	case mode&2 != 0 && e.state == StateFinWait && e.flags&fNoOutput != 0:
	default:
		return false
	}
	t.c.Reused++
	t.remove(t.indexOf(e), false)
	return true
}

// ExpireNodest applies the expire_nodest_conn sysctl to e, the
// connection a client's packet matched: when the sysctl is set and e's
// destination is no longer available (removed from its service, in the
// trash), it expires e now and returns true, and the caller drops the
// packet, as ip_vs_in does ("try to expire the connection immediately").
// The entry stays valid for the rest of the batch (later packets of the
// batch are dropped the same way) and the next lookup or sweep removes
// it: the client's next segment finds no connection. Otherwise it returns
// false and e keeps its destination until it ends. One load of a flag
// when the sysctl is off.
func (t *Table) ExpireNodest(e *Entry, now int64) bool {
	if !t.cur.expireNodest || e.flags&fTemplate != 0 {
		return false
	}
	if d := t.reg.Get(e.dest); d != nil && d.Available() {
		return false
	}
	e.expires = min(e.expires, now)
	return true
}

// templateGrace is how long IPVS postpones the expiry of a template that
// still controls connections (ip_vs_conn_expire: "expire_later", 60 s).
const templateGrace = int64(60 * time.Second)

// Expire is the table's batch-edge housekeeping, called by the owning
// worker once per batch or idle loop. It examines up to budget entries
// from where the last call stopped and removes the expired ones (a
// template still controlling connections is postponed by 60 s, as in
// IPVS). A run of 64 free entries costs one unit of budget, so a table
// that once held many more entries than it does now costs no more to
// sweep than its live entries (plus Capacity/64 words). It also picks up
// new Settings, publishes Stats and serves a Dump request from the
// control plane, copying up to max(256, budget) entries. It returns the
// number of entries removed.
//
// A busy worker calls it with a small budget per batch: with budget 64
// and 10^4 batches per second it examines 6.4·10^5 entries a second. An
// idle worker has no batches: it calls it with SweepCost in chunks, so
// dead entries leave their destinations' counts within one idle pass.
// Lookup already hides expired entries from packets, so the sweep only
// bounds how long an expired entry keeps its destination's counts and its
// memory.
func (t *Table) Expire(now int64, budget int) int {
	t.loadSettings()
	n := t.expire(now, budget)
	t.c.Expired += uint64(n)
	t.serveDump(now, max(dumpPage, budget))
	t.publish()
	return n
}

// SweepCost is the budget with which Expire examines every entry once:
// the live entries plus one unit per 64-entry word up to the high-water
// mark.
func (t *Table) SweepCost() int {
	return t.live + int((t.used+63)>>6) + 1
}

func (t *Table) expire(now int64, budget int) int {
	// Look at each entry at most once per call.
	budget = min(budget, t.SweepCost())
	n := 0
	var batch [expireBatch]struct{ idx, fh, rh uint32 }
	var acc uint64
	for budget > 0 && t.used > 0 {
		// Collect up to expireBatch expired entries and touch the index
		// slots their removal will probe, so those misses overlap; then
		// remove them. A batch ends where the cursor wraps, so it never
		// holds the same entry twice.
		k := 0
		for budget > 0 && k < expireBatch {
			if t.sweep >= t.used {
				t.sweep = 0
				if k > 0 {
					break
				}
			}
			budget--
			w := t.bits[t.sweep>>6] >> (t.sweep & 63)
			if w == 0 {
				t.sweep = (t.sweep>>6 + 1) << 6 // the rest of this word is free
				continue
			}
			idx := t.sweep + uint32(bits.TrailingZeros64(w))
			t.sweep = idx + 1
			e := &t.entries[idx]
			if e.flags&fUsed == 0 || e.expires > now {
				continue
			}
			if e.flags&fOffloaded != 0 {
				if t.refresh(e, now); e.expires > now {
					continue
				}
			}
			if e.flags&fTemplate != 0 && e.link != 0 {
				e.expires = now + templateGrace
				continue
			}
			fh, rh := t.keyHashes(e)
			acc += t.slots[fh&t.mask] + t.slots[rh&t.mask]
			batch[k] = struct{ idx, fh, rh uint32 }{idx, fh, rh}
			k++
		}
		for _, b := range batch[:k] {
			t.removeHashed(b.idx, b.fh, b.rh, false)
		}
		n += k
	}
	t.sink += acc
	return n
}

// expireBatch is how many expired entries Expire removes together.
const expireBatch = 32
