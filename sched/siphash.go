package sched

import (
	"encoding/binary"
	"math/bits"
)

// The kernel's hsiphash (lib/siphash.c). On a 64-bit kernel
// (BITS_PER_LONG == 64) "HalfSipHash" is in fact SipHash-1-3 with 64-bit
// state: one compression round per 8-byte block and three finalisation
// rounds, keyed by two unsigned longs, the result v0^v1^v2^v3 truncated
// to 32 bits. A 32-bit kernel computes real HalfSipHash and so maps mh
// clients differently; xlb follows the 64-bit kernels (x86-64, arm64).
//
// Checked against lib/test_siphash.c's test_vectors_hsiphash for
// BITS_PER_LONG == 64 in siphash_test.go.

const (
	sipInit0 = 0x736f6d6570736575 // "somepseu"
	sipInit1 = 0x646f72616e646f6d // "dorandom"
	sipInit2 = 0x6c7967656e657261 // "lygenera"
	sipInit3 = 0x7465646279746573 // "tedbytes"
)

func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}

// hsiphash is hsiphash(data, len(data), {k0, k1}) on a 64-bit kernel.
func hsiphash(data []byte, k0, k1 uint64) uint32 {
	v0, v1, v2, v3 := sipInit0^k0, sipInit1^k1, sipInit2^k0, sipInit3^k1
	b := uint64(len(data)) << 56
	for ; len(data) >= 8; data = data[8:] {
		m := binary.LittleEndian.Uint64(data)
		v3 ^= m
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= m
	}
	for i, c := range data {
		b |= uint64(c) << (8 * i)
	}
	return hsipFinal(v0, v1, v2, v3, b)
}

func hsipFinal(v0, v1, v2, v3, b uint64) uint32 {
	v3 ^= b
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= b
	v2 ^= 0xff
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	return uint32((v0 ^ v1) ^ (v2 ^ v3))
}

// hsiphash1u32 is hsiphash_1u32(x, {k0, k1}), which is also what
// hsiphash(&x, 4, key) computes for a u32 x in memory on a little-endian
// machine (ip_vs_mh_hashkey hashes an unsigned int that way).
func hsiphash1u32(x uint32, k0, k1 uint64) uint32 {
	return hsipFinal(sipInit0^k0, sipInit1^k1, sipInit2^k0, sipInit3^k1, 4<<56|uint64(x))
}
