package dataplane

import (
	"encoding/binary"
	"math/bits"
)

// keyIndex is a read-only map from service keys (svcKey: address, port,
// protocol) to V as an open-addressing table, for the lookups the
// per-packet path makes by a frame's destination: a new connection's
// service (worker.service, svcIndex) and, with several workers, every
// frame's owner (ownership.owner). The Go map it replaces hashes its
// 20-byte key with aeshash and probes a swiss-table group: with the key
// compare and the mapaccess call, 3.9% of a new FULLNAT connection's
// ~270 worker-ns (BenchmarkWorkerNewConn's profile). Here the hash is two
// multiplies inlined into the caller and the probe one slot compare.
//
// It is built once per configuration, off the packet path, and read-only
// after: safe for concurrent lookups. Linear probing at a load of at most
// 1/2. The keys are the configured services, not frame contents, so a
// lookup of a key no service has stops at the first empty slot after a
// run of at most the configured keys' cluster.
type keyIndex[V any] struct {
	slots []keySlot[V]
	mask  uint32
}

// keySlot is one slot of a keyIndex: a key as the three words get
// compares, and its value.
type keySlot[V any] struct {
	a, b uint64 // the address's two halves, little-endian loads
	pp   uint32 // port | proto<<16
	used bool
	v    V
}

// svcIndex is a configuration's address-and-port services.
type svcIndex = keyIndex[*workerService]

// newKeyIndex indexes m.
func newKeyIndex[V any](m map[svcKey]V) keyIndex[V] {
	if len(m) == 0 {
		return keyIndex[V]{}
	}
	n := 1 << bits.Len(uint(2*len(m)-1)) // the power of two ≥ 2·len(m)
	x := keyIndex[V]{slots: make([]keySlot[V], max(n, 8))}
	x.mask = uint32(len(x.slots) - 1)
	for k, v := range m {
		a, b, pp := svcWords(&k.addr, k.port, k.proto)
		i := svcHash(a, b, pp) & x.mask
		for x.slots[i].used {
			i = (i + 1) & x.mask
		}
		x.slots[i] = keySlot[V]{a: a, b: b, pp: pp, used: true, v: v}
	}
	return x
}

// get returns the value of addr, port and proto, and whether it is
// there. It reads the address in place: a svcKey built from a frame's
// Meta and hashed from its copy would load 8-byte halves of a 16-byte
// store just made, which store-to-load forwarding does not serve (a
// stall of ~10 ns measured in BenchmarkSvcLookup).
func (x *keyIndex[V]) get(addr *[16]byte, port uint16, proto uint8) (V, bool) {
	if len(x.slots) != 0 {
		a, b, pp := svcWords(addr, port, proto)
		for i := svcHash(a, b, pp) & x.mask; ; i = (i + 1) & x.mask {
			s := &x.slots[i]
			if !s.used {
				break
			}
			if s.a == a && s.b == b && s.pp == pp {
				return s.v, true
			}
		}
	}
	var zero V
	return zero, false
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
