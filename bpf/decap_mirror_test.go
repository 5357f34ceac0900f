//go:build linux

package bpf

import "testing"

// TestDecapMirrors checks the Go mirrors of decap.c's map types against
// the object's BTF (sizes and fields), and the Go reason list against the counters map.
func TestDecapMirrors(t *testing.T) {
	spec, err := loadDecap()
	if err != nil {
		t.Fatal(err)
	}
	checkMirrors(t, spec, []mirror{
		{"decap_locals", true, decapLocalKey{}},
		{"decap_config", false, decapConfig{}},
	})
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
