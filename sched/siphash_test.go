package sched

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// hsiphashVectors are test_vectors_hsiphash of lib/test_siphash.c for
// BITS_PER_LONG == 64: hsiphash of the bytes 0, 1, ..., i-1 under the key
// {0x0706050403020100, 0x0f0e0d0c0b0a0908}.
var hsiphashVectors = [64]uint32{
	0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67, 0xc59f22a7, 0x9bb11140,
	0x8d299a8e, 0x6c063de4, 0x92ff097f, 0xf94dc352, 0x57b4d9a2, 0x1229ffa7, 0xc0f95d34, 0x2a519956,
	0x7d908b66, 0x63dbd80c, 0xb473e63e, 0x8d297d1c, 0xa6cce040, 0x2b45f844, 0xa320872e, 0xdae6c123,
	0x67349c8c, 0x705b0979, 0xca9913a5, 0x4ade3b35, 0xef6cd00d, 0x4ab1e1f4, 0x43c5e663, 0x8c21d1bc,
	0x16a7b60d, 0x7a8ff9bf, 0x1f2a753e, 0xbf186b91, 0xada26206, 0xa3c33057, 0xae3a36a1, 0x7b108392,
	0x99e41531, 0x3f1ad944, 0xc8138825, 0xc28949a6, 0xfaf8876b, 0x9f042196, 0x68b1d623, 0x8b5114fd,
	0xdf074c46, 0x12cc86b3, 0x0a52098f, 0x9d292f9a, 0xa2f41f12, 0x43a71ed0, 0x73f0bce6, 0x70a7e980,
	0x243c6d75, 0xfdb71513, 0xa67d8a08, 0xb7e8f148, 0xf7a644ee, 0x0f1837f2, 0x4b6694e0, 0xb7bbb3a8,
}

const testK0, testK1 = 0x0706050403020100, 0x0f0e0d0c0b0a0908

func TestHSipHashVectors(t *testing.T) {
	var in [64]byte
	for i := range in {
		in[i] = byte(i)
	}
	for i, want := range hsiphashVectors {
		if got := hsiphash(in[:i], testK0, testK1); got != want {
			t.Errorf("hsiphash(0..%d) = %#08x, want %#08x", i, got, want)
		}
	}
	// hsiphash_1u32(0x03020100) is vector 4 (test_siphash.c).
	if got := hsiphash1u32(0x03020100, testK0, testK1); got != hsiphashVectors[4] {
		t.Errorf("hsiphash1u32(0x03020100) = %#08x, want %#08x", got, hsiphashVectors[4])
	}
}

// TestHSipHash1u32 checks the 4-byte fast path against the general one on
// a little-endian u32, as ip_vs_mh_hashkey hashes it.
func TestHSipHash1u32(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var b [4]byte
	for range 10000 {
		x, k := r.Uint32(), r.Uint64()
		binary.LittleEndian.PutUint32(b[:], x)
		if got, want := hsiphash1u32(x, k, k), hsiphash(b[:], k, k); got != want {
			t.Fatalf("hsiphash1u32(%#x, %#x) = %#x, hsiphash = %#x", x, k, got, want)
		}
	}
}
