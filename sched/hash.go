package sched

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
)

// hashTableBits is CONFIG_IP_VS_DH_TAB_BITS and CONFIG_IP_VS_SH_TAB_BITS.
const (
	hashTableBits = 8
	hashTableSize = 1 << hashTableBits // 256 buckets
	hashTableMask = hashTableSize - 1
)

// goldenRatio32 is GOLDEN_RATIO_32 of include/linux/hash.h, 2^32/φ².
const goldenRatio32 = 0x61C88647

// hash32 is the kernel's hash_32(val, bits): the top bits bits of
// val * GOLDEN_RATIO_32 in u32 arithmetic. ip_vs_dh_hashkey,
// ip_vs_sh_hashkey, ip_vs_lblc_hashkey and ip_vs_lblcr_hashkey use it.
// (Kernels up to about 4.4 took the low bits of val * 2654435761
// instead; for most clients that picks another bucket.)
func hash32(val uint32, bits uint) uint32 {
	return (val * goldenRatio32) >> (32 - bits)
}

// addrFold is ntohl(addr_fold) of the kernel's hash functions: the
// IPv4 address as a host-order u32, or the XOR of an IPv6 address's four
// 32-bit words (XOR commutes with the byte swap, so folding big-endian
// words equals ntohl of the folded raw words).
func addrFold(a netip.Addr) uint32 {
	if a.Is4() {
		b := a.As4()
		return binary.BigEndian.Uint32(b[:])
	}
	b := a.As16()
	return binary.BigEndian.Uint32(b[0:4]) ^ binary.BigEndian.Uint32(b[4:8]) ^
		binary.BigEndian.Uint32(b[8:12]) ^ binary.BigEndian.Uint32(b[12:16])
}

// hashPort is ip_vs_sh_get_port / ip_vs_mh_get_port: the source port
// for TCP, UDP and SCTP, 0 for anything else. (The kernel takes the
// destination port instead for an ICMP error that it schedules in the
// reverse direction, ip_vs_iph_inverse; a Flow is never one.)
func hashPort(f *Flow) uint16 {
	switch f.Proto {
	case 6, 17, 132: // IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP
		return f.SrcPort
	}
	return 0
}

// hashTable is a published dh or sh bucket table.
type hashTable struct {
	buckets [hashTableSize]*Dest
}

var emptyHashTable = &hashTable{}

// dh is ip_vs_dh.c, destination hashing: 256 buckets filled round-robin
// over the list, one bucket per destination in turn, weights ignored;
// the bucket of a packet is hash_32(ntohl(daddr), 8).
// The bucket's destination is returned only if it is available, of
// positive weight and not overloaded: dh never falls back. The kernel
// rebuilds the table when a destination is added or deleted; as weights
// do not matter, rebuilding on every Update is the same.
type dh struct {
	cur atomic.Pointer[hashTable]
}

func newDH() *dh {
	s := &dh{}
	s.cur.Store(emptyHashTable)
	return s
}

func (s *dh) Name() string { return "dh" }

func (s *dh) Update(dests []*Dest) {
	t := &hashTable{}
	if len(dests) > 0 {
		for i := range t.buckets {
			t.buckets[i] = dests[i%len(dests)]
		}
	}
	s.cur.Store(t)
}

func (s *dh) Schedule(f *Flow) *Dest {
	d := s.cur.Load().buckets[hash32(addrFold(f.Dst), hashTableBits)]
	if d == nil || d.flags.Load()&(DestAvailable|DestOverload) != DestAvailable || d.weight.Load() <= 0 {
		return nil
	}
	return d
}

// sh is ip_vs_sh.c, source hashing: 256 buckets filled by walking the
// list and giving each destination weight consecutive buckets (at least
// one: a weight-0 destination takes one bucket per round and then fails
// the availability check), round after round until all are filled. The
// bucket of a packet is hash_32(ntohs(sport) + ntohl(saddr), 8), the
// port only with sh-port.
// A destination of weight 0 or overloaded is unavailable: without
// sh-fallback the decision fails; with it, buckets (2*h + i) & 255 for
// i = 0..255 are tried in turn and the first available destination wins.
// The 2*h is the kernel's: ip_vs_sh_get_fallback passes offset + h into
// a hash that adds h again. The table is rebuilt on every Update (the
// kernel's add, delete and edit callbacks) from the weights at that
// moment.
type sh struct {
	flags Flags
	cur   atomic.Pointer[hashTable]
}

func newSH(flags Flags) *sh {
	s := &sh{flags: flags}
	s.cur.Store(emptyHashTable)
	return s
}

func (s *sh) Name() string { return "sh" }

func (s *sh) Update(dests []*Dest) {
	t := &hashTable{}
	if len(dests) > 0 {
		p, n := 0, int32(0)
		for i := range t.buckets {
			d := dests[p]
			t.buckets[i] = d
			// Don't move to the next destination until it has weight
			// buckets; the weight is read once per bucket, as the kernel
			// does.
			if n++; n >= d.weight.Load() {
				p, n = (p+1)%len(dests), 0
			}
		}
	}
	s.cur.Store(t)
}

func (s *sh) Schedule(f *Flow) *Dest {
	var port uint16
	if s.flags&SHPort != 0 {
		port = hashPort(f)
	}
	t := s.cur.Load()
	h := hash32(uint32(port)+addrFold(f.Src), hashTableBits)
	d := t.buckets[h]
	if d == nil {
		return nil
	}
	if d.weight.Load() > 0 && !overloaded(d) {
		return d
	}
	if s.flags&SHFallback == 0 {
		return nil
	}
	for off := uint32(0); off < hashTableSize; off++ {
		d = t.buckets[(off+2*h)&hashTableMask]
		if d == nil {
			return nil
		}
		if d.weight.Load() > 0 && !overloaded(d) {
			return d
		}
	}
	return nil
}
