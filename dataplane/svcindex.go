package dataplane

import (
	"encoding/binary"
	"math/bits"
)

// svcIndex is a configuration's address-and-port services
// (workerConfig.services) as an open-addressing table, for byAddr, the
// lookup every new connection's first frame makes. The map it mirrors
// hashes its 20-byte key with aeshash and probes a swiss-table group:
// with the key compare and the mapaccess call, 3.9% of a new FULLNAT
// connection's ~270 worker-ns (BenchmarkWorkerNewConn's profile). Here
// the hash is two multiplies inlined into the caller and the probe one
// slot compare.
//
// It is built once per configuration, off the packet path, and read-only
// after: safe for concurrent lookups. Linear probing at a load of at most
// 1/2. The keys are the configured services, not frame contents, so a
// lookup of an address no service has stops at the first empty slot
// after a run of at most the configured keys' cluster.
type svcIndex struct {
	slots []svcSlot
	mask  uint32
}

// svcSlot is one slot of a svcIndex: a key as the three words get
// compares; svc nil marks it empty.
type svcSlot struct {
	a, b uint64 // the address's two halves, little-endian loads
	pp   uint32 // port | proto<<16
	svc  *workerService
}

// newSvcIndex indexes the services of m.
func newSvcIndex(m map[svcKey]*workerService) svcIndex {
	if len(m) == 0 {
		return svcIndex{}
	}
	n := 1 << bits.Len(uint(2*len(m)-1)) // the power of two ≥ 2·len(m)
	x := svcIndex{slots: make([]svcSlot, max(n, 8))}
	x.mask = uint32(len(x.slots) - 1)
	for k, svc := range m {
		if svc == nil {
			continue
		}
		a, b, pp := svcWords(&k.addr, k.port, k.proto)
		i := svcHash(a, b, pp) & x.mask
		for x.slots[i].svc != nil {
			i = (i + 1) & x.mask
		}
		x.slots[i] = svcSlot{a: a, b: b, pp: pp, svc: svc}
	}
	return x
}

// get returns the service of addr, port and proto, or nil. It reads the
// address in place: a svcKey built from a frame's Meta and hashed from
// its copy would load 8-byte halves of a 16-byte store just made, which
// store-to-load forwarding does not serve (a stall of ~10 ns measured in
// BenchmarkSvcLookup).
func (x *svcIndex) get(addr *[16]byte, port uint16, proto uint8) *workerService {
	if len(x.slots) == 0 {
		return nil
	}
	a, b, pp := svcWords(addr, port, proto)
	for i := svcHash(a, b, pp) & x.mask; ; i = (i + 1) & x.mask {
		s := &x.slots[i]
		if s.svc == nil || s.a == a && s.b == b && s.pp == pp {
			return s.svc
		}
	}
}

func svcWords(addr *[16]byte, port uint16, proto uint8) (a, b uint64, pp uint32) {
	return binary.LittleEndian.Uint64(addr[0:8]), binary.LittleEndian.Uint64(addr[8:16]),
		uint32(port) | uint32(proto)<<16
}

// svcHash mixes a key's words (wyhash's multiply-fold, as conntrack's
// flow hash does).
func svcHash(a, b uint64, pp uint32) uint32 {
	hi, lo := bits.Mul64(a^0xa0761d6478bd642f, b^0xe7037ed1a0b428db)
	hi, lo = bits.Mul64(hi^lo^0x8ebc6af09c88c6e3, uint64(pp)^0x589965cc75374cc3)
	return uint32(hi ^ lo)
}
