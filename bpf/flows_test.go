//go:build linux

package bpf_test

import (
	"testing"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/internal/packet/packettest"
)

// WalkFlows reads every installed flow exactly once per walk, with its
// value, in chunks, and starts again after the end; a steady walk
// allocates only the kernel's cursor at its start.
func TestWalkFlows(t *testing.T) {
	o, err := bpf.Load(bpf.Options{MAC: packettest.LBMAC, Offload: true, MaxFlows: 4096})
	skipIfNotPermitted(t, err)
	t.Cleanup(func() { o.Close() })
	const n = 1000
	key := func(i int) bpf.FlowKey {
		var a, b [16]byte
		a[15], a[14], b[15] = byte(i), byte(i>>8), 100
		return bpf.MakeFlowKey(a, uint16(1024+i), b, 80, 6)
	}
	for i := range n {
		k := key(i)
		if err := o.PutFlow(&k, &bpf.Flow{Dest: uint32(i), Packets: uint64(i) * 3}); err != nil {
			t.Fatal(err)
		}
	}
	keys, vals := make([]bpf.FlowKey, 32), make([]bpf.Flow, 32)
	var cur bpf.FlowCursor
	for walk := range 2 {
		seen := map[bpf.FlowKey]bool{}
		for calls := 0; ; calls++ {
			if calls > n {
				t.Fatal("the walk does not end")
			}
			got, end, err := o.WalkFlows(&cur, keys, vals)
			if err != nil {
				t.Fatal(err)
			}
			for j := range got {
				v := vals[j]
				if seen[keys[j]] || keys[j] != key(int(v.Dest)) || v.Packets != uint64(v.Dest)*3 {
					t.Fatalf("walk %d: flow %v = %+v (seen before: %v)", walk, keys[j], v, seen[keys[j]])
				}
				seen[keys[j]] = true
			}
			if end {
				break
			}
		}
		if len(seen) != n {
			t.Fatalf("walk %d read %d flows, want %d", walk, len(seen), n)
		}
	}
	// One chunk in the middle of a walk: no allocation.
	if _, _, err := o.WalkFlows(&cur, keys, vals); err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(10, func() { o.WalkFlows(&cur, keys, vals) }); a != 0 {
		t.Errorf("WalkFlows allocates %.1f times per chunk", a)
	}
	if _, _, err := o.WalkFlows(&cur, keys, vals[:1]); err == nil {
		t.Error("WalkFlows took 32 keys and 1 value")
	}
}
