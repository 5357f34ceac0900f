package dataplane

import (
	"math/rand/v2"
	"testing"
)

// TestSvcIndex holds svcIndex to the map it indexes: every configured
// key finds its service, and keys near them (another port, protocol,
// address byte, family) find what the map finds, nil or a service.
func TestSvcIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randKey := func() svcKey {
		var k svcKey
		if rng.IntN(2) == 0 {
			k.addr[10], k.addr[11] = 0xff, 0xff // IPv4-mapped
			k.addr[12], k.addr[13] = 10, byte(rng.IntN(4))
			k.addr[14], k.addr[15] = byte(rng.IntN(4)), byte(rng.IntN(256))
		} else {
			k.addr[0], k.addr[1] = 0x20, 0x01
			k.addr[15] = byte(rng.IntN(256))
		}
		k.port = uint16(rng.IntN(4) * 80) // port 0 services too
		k.proto = []uint8{6, 17, 132}[rng.IntN(3)]
		return k
	}
	for _, n := range []int{0, 1, 2, 3, 7, 8, 100, 1000} {
		m := map[svcKey]*workerService{}
		for len(m) < n {
			m[randKey()] = &workerService{id: uint32(len(m) + 1)}
		}
		x := newKeyIndex(m)
		if n > 0 && 2*n > len(x.slots) {
			t.Errorf("%d services in %d slots: load over 1/2", n, len(x.slots))
		}
		for k, svc := range m {
			if got, ok := x.get(&k.addr, k.port, k.proto); got != svc || !ok {
				t.Fatalf("n=%d: get(%v) = %p, want %p", n, k, got, svc)
			}
			near := []svcKey{k, k, k, k}
			near[0].port++
			near[1].proto ^= 1
			near[2].addr[15] ^= 1
			near[3].addr[10] ^= 0xff
			for _, q := range near {
				if got, ok := x.get(&q.addr, q.port, q.proto); got != m[q] || ok != (m[q] != nil) {
					want := m[q]
					t.Fatalf("n=%d: get(%v) = %p, want %p", n, q, got, want)
				}
			}
		}
		for range 2000 {
			q := randKey()
			if got, ok := x.get(&q.addr, q.port, q.proto); got != m[q] || ok != (m[q] != nil) {
				want := m[q]
				t.Fatalf("n=%d: get(%v) = %p, want %p", n, q, got, want)
			}
		}
	}
}

func TestSvcIndexAllocs(t *testing.T) {
	m := map[svcKey]*workerService{{port: 80, proto: 6}: {id: 1}}
	x := newKeyIndex(m)
	k := svcKey{port: 80, proto: 6}
	if n := testing.AllocsPerRun(100, func() { _, _ = x.get(&k.addr, k.port, k.proto) }); n != 0 {
		t.Errorf("get: %v allocations, want 0", n)
	}
}

// BenchmarkSvcLookup compares byAddr's two lookups of a service by a
// frame's address, port and protocol, in the map and in the svcIndex.
func BenchmarkSvcLookup(b *testing.B) {
	m := map[svcKey]*workerService{}
	var keys [16]svcKey
	for i := range keys {
		k := svcKey{port: 80, proto: 6}
		k.addr[10], k.addr[11], k.addr[12], k.addr[15] = 0xff, 0xff, 10, byte(i)
		keys[i] = k
		m[k] = &workerService{id: uint32(i + 1)}
	}
	x := newKeyIndex(m)
	b.Run("map", func(b *testing.B) {
		var n uint32
		for i := 0; b.Loop(); i++ {
			n += m[keys[i&15]].id
		}
		sink32 = n
	})
	b.Run("index", func(b *testing.B) {
		var n uint32
		for i := 0; b.Loop(); i++ {
			svc, _ := x.get(&keys[i&15].addr, 80, 6)
			n += svc.id
		}
		sink32 = n
	})
}

var sink32 uint32

// TestKeyIndexZeroValue: a key whose value is the zero value (ownership's
// "not owned", false) is found, as the map's comma-ok form finds it.
func TestKeyIndexZeroValue(t *testing.T) {
	k := svcKey{port: 80, proto: 6}
	x := newKeyIndex(map[svcKey]bool{k: false})
	if v, ok := x.get(&k.addr, k.port, k.proto); v || !ok {
		t.Errorf("get(%v) = %v, %v, want false, true", k, v, ok)
	}
	if _, ok := x.get(&k.addr, 81, k.proto); ok {
		t.Errorf("get(port 81) found a key never added")
	}
	var empty keyIndex[bool]
	if _, ok := empty.get(&k.addr, k.port, k.proto); ok {
		t.Errorf("empty index found %v", k)
	}
}
