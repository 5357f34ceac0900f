package laddr

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
)

// Default port range: DPVS's DEF_MIN_PORT and DEF_MAX_PORT. Ports below
// 1025 are left to the director's own services.
const (
	DefaultMinPort = 1025
	DefaultMaxPort = 65535
)

// MaxBuckets is the most buckets an address may have (DPVS's
// SAPOOL_MAX_HASH_SZ).
const MaxBuckets = 128

// Options configure one worker's Pool.
type Options struct {
	// Worker is this pool's worker, 0..Workers-1; it owns the ports p
	// with p % Workers == Worker.
	Worker int
	// Workers is how many workers share the port range; at least 1.
	Workers int
	// MinPort and MaxPort bound the ports handed out (inclusive).
	MinPort, MaxPort uint16
	// Buckets is how many sub-pools each address has, chosen by real
	// server: a power of two, 1..MaxBuckets. 1 makes ports unique per
	// local address (see the package documentation for the trade-off).
	Buckets int
	// Offset is where each bucket's queue of free ports starts: the
	// Offset-th port of the share (modulo its size) is handed out
	// first, then the ones above it, wrapping around. A director picks
	// it at random when it starts: from 0, a restarted process would
	// hand out the previous process's latest ports first, which the real
	// servers may still hold in TIME_WAIT (a new SYN from the same
	// address and port then waits for its retransmission, 1 s, or is
	// refused).
	Offset int
}

// DefaultOptions are one worker of one, ports 1025..65535, one bucket.
func DefaultOptions() Options {
	return Options{Worker: 0, Workers: 1, MinPort: DefaultMinPort, MaxPort: DefaultMaxPort, Buckets: 1}
}

// Stats are a pool's counters. The owning worker reads them (Pool.Stats)
// and publishes them as it publishes its other counters.
type Stats struct {
	Allocs   uint64 // ports handed out
	Releases uint64 // ports taken back
	// Exhausted counts connections refused a port because every local
	// address tried had no free port for the real server's bucket.
	Exhausted uint64
	// NoAddr counts connections refused because the service had no
	// usable local address (AllocFrom with an empty set, or Alloc of an
	// address that is not, or no longer, configured): DPVS's "no laddr".
	NoAddr uint64
	// BadReleases counts releases of a port that was not handed out: a
	// double release, another worker's port, an unknown address. They
	// change nothing.
	BadReleases uint64
	// Reserved counts ports taken by Reserve (connections installed
	// from a sync master), RefusedReserves those it could not take.
	Reserved, RefusedReserves uint64
}

// AddrStats are one local address's figures.
type AddrStats struct {
	InUse     uint32 // ports handed out and not yet released
	Exhausted uint64 // allocations refused on this address
}

type addrState uint8

const (
	stateUnused   addrState = iota // a free slot of Pool.addrs
	stateLive                      // configured: gives and takes ports
	stateDraining                  // removed: takes its ports back only
)

// bucketState is a bucket's FIFO of free ports: the ring slots
// [head, head+n) (mod share) hold them.
type bucketState struct {
	head, n int32
}

// addrPool is one local address's ports in this worker's share.
type addrPool struct {
	addr      [16]byte // As16 form, as conntrack keeps addresses
	ip        netip.Addr
	state     addrState
	inUse     uint32
	exhausted uint64
	ring      []uint16      // Buckets rings of share ports each
	used      []uint64      // Buckets bitmaps of words ports each, by slot
	buckets   []bucketState // one per bucket
}

// Pool is one worker's share of the local ports of every local address.
// It is not safe for concurrent use: only its worker calls it.
type Pool struct {
	workers int
	first   uint16 // the lowest port of the share
	share   int32  // ports in the share, per bucket
	words   int32  // bitmap words per bucket
	bits    uint8  // log2(Buckets)
	nb      int32  // Buckets
	offset  int32  // Options.Offset modulo share

	addrs []addrPool
	index map[[16]byte]int32 // address → index in addrs, live or draining
	free  []int32            // unused indices of addrs; cap ≥ len(addrs)
	c     Stats
}

// New returns an empty pool for worker o.Worker. Its share must hold at
// least one port.
func New(o Options) (*Pool, error) {
	if o.Workers < 1 || o.Workers > 65535 {
		return nil, fmt.Errorf("invalid worker count %d: must be 1..65535", o.Workers)
	}
	if o.Worker < 0 || o.Worker >= o.Workers {
		return nil, fmt.Errorf("invalid worker %d: must be 0..%d", o.Worker, o.Workers-1)
	}
	if o.MinPort == 0 || o.MinPort > o.MaxPort {
		return nil, fmt.Errorf("invalid port range %d-%d: must be within 1..65535, low to high", o.MinPort, o.MaxPort)
	}
	if o.Buckets < 1 || o.Buckets > MaxBuckets || o.Buckets&(o.Buckets-1) != 0 {
		return nil, fmt.Errorf("invalid bucket count %d: must be a power of two, 1..%d", o.Buckets, MaxBuckets)
	}
	// The first port p >= MinPort with p % Workers == Worker.
	first := int(o.MinPort) + (o.Worker-int(o.MinPort)%o.Workers+o.Workers)%o.Workers
	if first > int(o.MaxPort) {
		return nil, fmt.Errorf("invalid port range %d-%d: worker %d of %d owns none of its ports", o.MinPort, o.MaxPort, o.Worker, o.Workers)
	}
	share := (int(o.MaxPort)-first)/o.Workers + 1
	if o.Offset < 0 {
		return nil, fmt.Errorf("invalid offset %d: must not be negative", o.Offset)
	}
	return &Pool{
		offset:  int32(o.Offset % share),
		workers: o.Workers,
		first:   uint16(first),
		share:   int32(share),
		words:   int32((share + 63) / 64),
		bits:    uint8(bits.TrailingZeros(uint(o.Buckets))),
		nb:      int32(o.Buckets),
		index:   make(map[[16]byte]int32),
	}, nil
}

// Owner is the worker, of workers, that owns local port lport: where a
// reply to lport must be handled.
func Owner(lport uint16, workers int) int { return int(lport) % workers }

// Share is how many ports each bucket of an address has in this pool.
func (p *Pool) Share() int { return int(p.share) }

// Stats returns the pool's counters.
func (p *Pool) Stats() Stats { return p.c }

// SetAddrs makes addrs the configured local addresses, at a batch edge.
// addrs are the local addresses of every service: an address that
// services share is one pool, and duplicates are fine. SetAddrs allocates
// the memory of the new addresses (which may take a while for many
// buckets), keeps the ports of those that stay, and lets the others
// drain. An address keeps its index while it is configured or draining.
// Addresses are compared in their 16-byte form, so 10.0.0.1 and
// ::ffff:10.0.0.1 are the same. On error nothing changes.
func (p *Pool) SetAddrs(addrs []netip.Addr) error {
	want := make(map[[16]byte]netip.Addr, len(addrs))
	for _, a := range addrs {
		if !a.IsValid() || a.Zone() != "" {
			return fmt.Errorf("set local address %v: must be an IPv4 or IPv6 address without zone", a)
		}
		want[a.As16()] = a
	}
	for i := range p.addrs {
		ap := &p.addrs[i]
		if ap.state == stateUnused {
			continue
		}
		if _, ok := want[ap.addr]; ok {
			ap.state = stateLive
			continue
		}
		ap.state = stateDraining
		if ap.inUse == 0 {
			p.reclaim(int32(i))
		}
	}
	for _, a := range addrs {
		k := a.As16()
		if _, ok := p.index[k]; ok {
			continue
		}
		var i int32
		if n := len(p.free); n > 0 {
			i, p.free = p.free[n-1], p.free[:n-1]
		} else {
			i = int32(len(p.addrs))
			p.addrs = append(p.addrs, addrPool{})
			if cap(p.free) < len(p.addrs) {
				// Release's reclaim appends without allocating.
				nf := make([]int32, len(p.free), 2*len(p.addrs))
				copy(nf, p.free)
				p.free = nf
			}
		}
		p.addrs[i] = p.newAddr(k, a)
		p.index[k] = i
	}
	return nil
}

// newAddr fills the rings of a new address with the share's ports in
// ascending order, each bucket's FIFO starting at Options.Offset.
func (p *Pool) newAddr(k [16]byte, a netip.Addr) addrPool {
	ap := addrPool{addr: k, ip: a, state: stateLive,
		ring:    make([]uint16, int(p.nb)*int(p.share)),
		used:    make([]uint64, int(p.nb)*int(p.words)),
		buckets: make([]bucketState, p.nb),
	}
	for b := int32(0); b < p.nb; b++ {
		r := ap.ring[b*p.share : (b+1)*p.share]
		for s := range r {
			r[s] = p.first + uint16(s*p.workers)
		}
		ap.buckets[b] = bucketState{head: p.offset, n: p.share}
	}
	return ap
}

// reclaim frees a drained address's slot and memory.
func (p *Pool) reclaim(i int32) {
	ap := &p.addrs[i]
	delete(p.index, ap.addr)
	*ap = addrPool{}
	p.free = append(p.free, i)
}

// Index returns the index of configured local address a (16-byte form),
// which Alloc takes; false if a is not configured (draining addresses
// give no ports and have no index here).
func (p *Pool) Index(a [16]byte) (int32, bool) {
	i, ok := p.index[a]
	if !ok || p.addrs[i].state != stateLive {
		return -1, false
	}
	return i, true
}

// Addr returns the address at index i, or the zero Addr.
func (p *Pool) Addr(i int32) netip.Addr {
	if i < 0 || int(i) >= len(p.addrs) {
		return netip.Addr{}
	}
	return p.addrs[i].ip
}

// AddrStats returns the figures of the address at index i (zero for an
// unused index).
func (p *Pool) AddrStats(i int32) AddrStats {
	if i < 0 || int(i) >= len(p.addrs) {
		return AddrStats{}
	}
	return AddrStats{InUse: p.addrs[i].inUse, Exhausted: p.addrs[i].exhausted}
}

// bucketOf is the bucket of real server rs:rport: a multiplicative hash
// of the address and port, its top bits.
func (p *Pool) bucketOf(rs *[16]byte, rport uint16) int32 {
	if p.bits == 0 {
		return 0
	}
	h := binary.LittleEndian.Uint64(rs[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(rs[8:])
	h = (h ^ uint64(rport)) * 0xc2b2ae3d27d4eb4f
	h ^= h >> 31
	h *= 0x165667b19e3779f9
	return int32(h >> (64 - p.bits))
}

// Alloc hands out a free port of the address at index i for a connection
// to real server rs:rport (rs in 16-byte form). It fails, counted, when
// that address's bucket for rs:rport has no free port (Stats.Exhausted,
// AddrStats.Exhausted) or i is not a configured address (Stats.NoAddr).
// It never allocates.
func (p *Pool) Alloc(i int32, rs [16]byte, rport uint16) (lport uint16, ok bool) {
	if i < 0 || int(i) >= len(p.addrs) || p.addrs[i].state != stateLive {
		p.c.NoAddr++
		return 0, false
	}
	lport, ok = p.alloc(&p.addrs[i], &rs, rport)
	if !ok {
		p.c.Exhausted++
	}
	return lport, ok
}

func (p *Pool) alloc(ap *addrPool, rs *[16]byte, rport uint16) (uint16, bool) {
	b := p.bucketOf(rs, rport)
	st := &ap.buckets[b]
	if st.n == 0 {
		ap.exhausted++
		return 0, false
	}
	port := ap.ring[b*p.share+st.head]
	st.head++
	if st.head == p.share {
		st.head = 0
	}
	st.n--
	s := (int32(port) - int32(p.first)) / int32(p.workers)
	ap.used[b*p.words+s>>6] |= 1 << (s & 63)
	ap.inUse++
	p.c.Allocs++
	return port, true
}

// AllocFrom is DPVS's dp_vs_laddr_bind: it tries the configured
// addresses of set (indices, a service's local addresses) round robin,
// starting at *next, and takes a port from the first that has one for
// rs:rport. *next moves past the address tried first, so that successive
// connections spread over the addresses. It fails, counted once in
// Stats.Exhausted, when every address is exhausted, and in Stats.NoAddr
// when set has no configured address. It never allocates.
func (p *Pool) AllocFrom(set []int32, next *uint32, rs [16]byte, rport uint16) (laddr [16]byte, lport uint16, ok bool) {
	n := uint32(len(set))
	if n == 0 {
		p.c.NoAddr++
		return laddr, 0, false
	}
	start := *next % n
	*next = start + 1
	tried := false
	for k := uint32(0); k < n; k++ {
		j := start + k
		if j >= n {
			j -= n
		}
		i := set[j]
		if i < 0 || int(i) >= len(p.addrs) || p.addrs[i].state != stateLive {
			continue
		}
		tried = true
		ap := &p.addrs[i]
		if port, ok := p.alloc(ap, &rs, rport); ok {
			return ap.addr, port, true
		}
	}
	if tried {
		p.c.Exhausted++
	} else {
		p.c.NoAddr++
	}
	return laddr, 0, false
}

// lookup is p.index[*a]: the index of live or draining address a. A
// worker's pool has a few addresses (DPVS's FULLNAT configures one to a
// handful per service); up to scanAddrs of them it compares the addresses
// in turn, where the map lookup (a 16-byte aeshash and a group probe)
// cost ~20 ns of every FULLNAT connection's release
// (BenchmarkWorkerNewConn's profile: 6.5% of its ~300 ns).
func (p *Pool) lookup(a *[16]byte) (int32, bool) {
	if len(p.addrs) > scanAddrs {
		i, ok := p.index[*a]
		return i, ok
	}
	for i := range p.addrs {
		if ap := &p.addrs[i]; ap.addr == *a && ap.state != stateUnused {
			return int32(i), true
		}
	}
	return 0, false
}

// scanAddrs is the most addresses lookup compares in turn.
const scanAddrs = 8

// Release takes back port lport of local address laddr, handed out for
// real server rs:rport (the same rs:rport as at Alloc: it names the
// bucket). It returns false, counted in Stats.BadReleases and changing
// nothing, if the port was not handed out. A draining address whose last
// port comes back is forgotten. It never allocates.
func (p *Pool) Release(laddr, rs [16]byte, rport, lport uint16) bool {
	i, ok := p.lookup(&laddr)
	if !ok {
		p.c.BadReleases++
		return false
	}
	ap := &p.addrs[i]
	d := int32(lport) - int32(p.first)
	s := d / int32(p.workers)
	if d < 0 || d%int32(p.workers) != 0 || s >= p.share {
		p.c.BadReleases++
		return false
	}
	b := p.bucketOf(&rs, rport)
	w := &ap.used[b*p.words+s>>6]
	bit := uint64(1) << (s & 63)
	if *w&bit == 0 {
		p.c.BadReleases++
		return false
	}
	*w &^= bit
	st := &ap.buckets[b]
	tail := st.head + st.n
	if tail >= p.share {
		tail -= p.share
	}
	ap.ring[b*p.share+tail] = lport
	st.n++
	ap.inUse--
	p.c.Releases++
	if ap.state == stateDraining && ap.inUse == 0 {
		p.reclaim(i)
	}
	return true
}

// Reserve takes port lport of local address laddr for a connection to
// real server rs:rport that another director created (a synced FULLNAT
// connection, which must keep its local port), so that Alloc does not
// hand it out while the connection lives; Release gives it back as any
// other. It returns false, counted in Stats.RefusedReserves and
// changing nothing, when laddr is not a live address of the pool, the
// port is not in this worker's share (laddr.Owner) or already in use
// for rs:rport's bucket. It never allocates; it looks for the port in
// the bucket's FIFO of free ports, at most Share() entries (about 10 µs
// for 32 000 ports: a synced record's cost, never a packet's).
func (p *Pool) Reserve(laddr, rs [16]byte, rport, lport uint16) bool {
	i, ok := p.Index(laddr)
	d := int32(lport) - int32(p.first)
	s := d / int32(p.workers)
	if !ok || d < 0 || d%int32(p.workers) != 0 || s >= p.share {
		p.c.RefusedReserves++
		return false
	}
	ap := &p.addrs[i]
	b := p.bucketOf(&rs, rport)
	w := &ap.used[b*p.words+s>>6]
	bit := uint64(1) << (s & 63)
	if *w&bit != 0 {
		p.c.RefusedReserves++
		return false
	}
	// The port is free, so it is in the FIFO [head, head+n): swap it
	// with the head and take the head.
	st := &ap.buckets[b]
	r := ap.ring[b*p.share : (b+1)*p.share]
	pos := int32(-1)
	for k, j := int32(0), st.head; k < st.n; k++ {
		if r[j] == lport {
			pos = j
			break
		}
		if j++; j == p.share {
			j = 0
		}
	}
	if pos < 0 {
		panic("laddr: a free port is missing from its bucket")
	}
	r[pos], r[st.head] = r[st.head], r[pos]
	if st.head++; st.head == p.share {
		st.head = 0
	}
	st.n--
	*w |= bit
	ap.inUse++
	p.c.Reserved++
	return true
}
