package sched

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// The mh hash keys, fixed in ip_vs_mh.c generate_hash_secret so that
// every director computes the same table: hash1 picks a destination's
// first preferred slot and a client's slot, hash2 a destination's skip.
const (
	mhKey1 = 2654435761
	mhKey2 = 2654446892
)

// mhTable is a published Maglev lookup table.
type mhTable struct {
	slots []*Dest
}

// mh is ip_vs_mh.c, Maglev hashing (Eisenbud et al., NSDI 2016, 3.4).
//
// Each destination gets a permutation of the M slots from its address
// and port: offset = H1(dest) % M, skip = H2(dest) % (M-1) + 1. Taking
// turns in list order, each destination claims its next preferred free
// slot, turns times per round, until all M are claimed; turns is
// last_weight/gcd shifted right so that the largest is below
// 2^IP_VS_MH_TAB_BITS (CONFIG_IP_VS_MH_TAB_INDEX/2: 6 for M = 4093, 4 for
// 251), and at least 1 for a non-zero last weight. The table is filled
// from LastWeight, so setting a weight to 0 leaves the slots as they are
// and a client landing there gets no destination (mh-fallback: the next
// available one along its own probe sequence); a destination added with
// weight 0 gets no slot. Removing a destination moves only the clients
// of its slots, plus the few slots the refill shifts.
//
// A client's slot is hsiphash(ntohs(sport) + ntohl(saddr), hash1) % M
// (the port only with mh-port), with the kernel's fixed keys, so an xlb
// director and a kernel director with the same table size and
// destinations send a client to the same real server. A destination of
// weight 0 or overloaded is unavailable; with mh-fallback slot
// H(saddr, offset (h+i) % M) for i = 0, 1, ... is tried until an
// available one (Update keeps at most M destinations, as the kernel
// refuses more).
type mh struct {
	flags Flags
	m     int
	bits  int // IP_VS_MH_TAB_BITS

	cur atomic.Pointer[mhTable]

	mu   sync.Mutex // serialises Update
	prev []snap
}

func newMH(flags Flags, m int) *mh {
	s := &mh{flags: flags, m: m}
	for i, p := range mhPrimes {
		if p == m {
			s.bits = (i + 8) / 2
		}
	}
	s.cur.Store(&mhTable{slots: make([]*Dest, m)})
	return s
}

func (s *mh) Name() string { return "mh" }

// mhHash is ip_vs_mh_hashkey: v = offset + ntohs(port) + ntohl(addr_fold)
// as an unsigned int, hsiphash'd with key {k, k}.
func mhHash(fold uint32, port uint16, k uint64, offset uint32) uint32 {
	return hsiphash1u32(offset+uint32(port)+fold, k, k)
}

func (s *mh) Update(dests []*Dest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prev != nil && same(s.prev, dests) {
		return
	}
	s.prev = snapshot(dests)
	if len(dests) > s.m {
		// ip_vs_mh_reassign refuses with -EINVAL and leaves the table as
		// it was; the kernel ignores the error. Unlike the kernel, drop
		// the destinations that left the service, so that none of them
		// can be chosen.
		in := make(map[*Dest]bool, len(dests))
		for _, d := range dests {
			in[d] = true
		}
		old := s.cur.Load().slots
		t := &mhTable{slots: make([]*Dest, s.m)}
		for i, d := range old {
			if in[d] {
				t.slots[i] = d
			}
		}
		s.cur.Store(t)
		return
	}
	s.cur.Store(&mhTable{slots: mhPopulate(dests, s.m, s.bits)})
}

// mhPopulate is ip_vs_mh_gcd_weight, ip_vs_mh_shift_weight,
// ip_vs_mh_permutate and ip_vs_mh_populate.
func mhPopulate(dests []*Dest, m, tabBits int) []*Dest {
	slots := make([]*Dest, m)
	g, maxW := int32(0), int32(0)
	for _, d := range dests {
		w := d.lastWeight.Load()
		if w > 0 {
			if g > 0 {
				g = gcd(w, g)
			} else {
				g = w
			}
		}
		if w > maxW {
			maxW = w
		}
	}
	if g < 1 {
		return slots // no destination, or all last weights 0: empty table
	}
	shift := bits.Len32(uint32(maxW/g)) - tabBits
	if shift < 0 {
		shift = 0
	}
	type setup struct {
		perm, skip uint32
		turns      int32
	}
	ds := make([]setup, len(dests))
	for i, d := range dests {
		fold := addrFold(d.Addr)
		off := mhHash(fold, d.Port, mhKey1, 0) % uint32(m)
		skip := mhHash(fold, d.Port, mhKey2, 0)%uint32(m-1) + 1
		lw := d.lastWeight.Load()
		turns := (lw / g) >> shift
		if turns == 0 && lw != 0 {
			turns = 1
		}
		ds[i] = setup{perm: off, skip: skip, turns: turns}
	}
	taken := make([]bool, m)
	n := 0
	for {
		for i, dt := 0, int32(0); i < len(dests); {
			st := &ds[i]
			if st.turns < 1 { // added with weight 0
				i++
				continue
			}
			c := st.perm
			for taken[c] {
				if st.perm += st.skip; st.perm >= uint32(m) {
					st.perm -= uint32(m)
				}
				c = st.perm
			}
			taken[c] = true
			slots[c] = dests[i]
			if n++; n == m {
				return slots
			}
			if dt++; dt >= st.turns {
				dt = 0
				i++
			}
		}
	}
}

func (s *mh) Schedule(f *Flow) *Dest {
	var port uint16
	if s.flags&MHPort != 0 {
		port = hashPort(f)
	}
	slots := s.cur.Load().slots
	m := uint32(len(slots))
	fold := addrFold(f.Src)
	ihash := mhHash(fold, port, mhKey1, 0) % m
	d := slots[ihash]
	if d == nil {
		return nil
	}
	if d.weight.Load() > 0 && !overloaded(d) {
		return d
	}
	if s.flags&MHFallback == 0 {
		return nil
	}
	for off := uint32(0); off < m; off++ {
		roff := (off + ihash) % m
		d = slots[mhHash(fold, port, mhKey1, roff)%m]
		if d == nil {
			return nil
		}
		if d.weight.Load() > 0 && !overloaded(d) {
			return d
		}
	}
	return nil
}
