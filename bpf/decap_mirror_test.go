//go:build linux

package bpf

import (
	"reflect"
	"testing"
)

// TestDecapMirrors checks the Go mirrors of decap.c's map types against
// the object's BTF sizes, and the Go reason list against the counters map.
func TestDecapMirrors(t *testing.T) {
	spec, err := loadDecap()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mapName string
		key     bool
		goType  any
	}{
		{"decap_locals", true, decapLocalKey{}},
		{"decap_config", false, decapConfig{}},
	} {
		ms := spec.Maps[tc.mapName]
		if ms == nil {
			t.Fatalf("no map %q in the object", tc.mapName)
		}
		size := ms.ValueSize
		if tc.key {
			size = ms.KeySize
		}
		if got := uint32(reflect.TypeOf(tc.goType).Size()); got != size {
			t.Errorf("%T: size %d, want %d (map %s)", tc.goType, got, size, tc.mapName)
		}
	}
	if got, want := spec.Maps["decap_counters"].MaxEntries, uint32(NumDecapReasons); got != want {
		t.Errorf("decap_counters has %d entries (DECAP_REASON_MAX), Go has NumDecapReasons = %d", got, want)
	}
	if got, want := spec.Maps["decap_locals"].MaxEntries, uint32(MaxDecapLocals); got != want {
		t.Errorf("decap_locals has %d entries, Go has MaxDecapLocals = %d", got, want)
	}
	seen := map[string]bool{}
	for r := range DecapReason(NumDecapReasons) {
		s := r.String()
		if s == "" || seen[s] {
			t.Errorf("DecapReason(%d).String() = %q: empty or duplicate", r, s)
		}
		seen[s] = true
	}
}
