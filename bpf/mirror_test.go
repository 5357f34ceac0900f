//go:build linux

package bpf

import (
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// mirror is a Go type that mirrors the key or value of a map.
type mirror struct {
	mapName string
	key     bool
	goType  any
}

// checkMirrors checks each mirror against the BTF that clang wrote for its
// map in spec: size, and name-by-name field offsets and sizes.
func checkMirrors(t *testing.T, spec *ebpf.CollectionSpec, mirrors []mirror) {
	t.Helper()
	for _, tc := range mirrors {
		ms := spec.Maps[tc.mapName]
		if ms == nil {
			t.Fatalf("no map %q in the object", tc.mapName)
		}
		size, typ := ms.ValueSize, ms.Value
		if tc.key {
			size, typ = ms.KeySize, ms.Key
		}
		gt := reflect.TypeOf(tc.goType)
		if got := uint32(gt.Size()); got != size {
			t.Errorf("%s: size of %v = %d, want %d (map %s)", gt, gt, got, size, tc.mapName)
		}
		st, ok := typ.(*btf.Struct)
		if !ok {
			continue // a scalar: the size is all there is
		}
		if gt.NumField() != len(st.Members) {
			t.Errorf("%v has %d fields, C struct %s has %d", gt, gt.NumField(), st.Name, len(st.Members))
			continue
		}
		for i, m := range st.Members {
			f := gt.Field(i)
			csize, err := btf.Sizeof(m.Type)
			if err != nil {
				t.Fatal(err)
			}
			if uint32(f.Offset) != m.Offset.Bytes() || int(f.Type.Size()) != csize {
				t.Errorf("%v.%s at %d size %d, C %s.%s at %d size %d",
					gt, f.Name, f.Offset, f.Type.Size(), st.Name, m.Name, m.Offset.Bytes(), csize)
			}
		}
	}
}

// TestMirrors checks each Go mirror of a C type against the BTF that clang
// wrote for the map in the embedded object: size, and name-by-name field
// offsets and sizes. It needs no privileges.
func TestMirrors(t *testing.T) {
	spec, err := loadXlb()
	if err != nil {
		t.Fatal(err)
	}
	checkMirrors(t, spec, []mirror{
		{"services", true, serviceKey{}},
		{"services", false, serviceValue{}},
		{"reals", true, serviceKey{}},
		{"reals", false, realValue(0)},
		{"locals", true, xdpLocalKey{}},
		{"locals", false, uint32(0)},
		{"syn_guard", false, synGuard{}},
		{"syn_auto", false, synAuto{}},
		{"syn_sources", true, srcPrefix{}},
		{"syn_sources", false, srcState{}},
		{"marks", true, markKey{}},
		{"marks", false, markValue{}},
		{"mark_services", true, markServiceKey{}},
		{"mark_services", false, serviceValue{}},
		{"mark_prefixes", false, uint32(0)},
		{"flows", true, FlowKey{}},
		{"flows", false, Flow{}},
		{"dest_stats", false, DestCounters{}},
	})

	if got, want := spec.Maps["counters"].MaxEntries, uint32(NumReasons); got != want {
		t.Errorf("counters has %d entries (XLB_REASON_MAX), Go has NumReasons = %d", got, want)
	}
	if got, want := spec.Maps["xsks"].MaxEntries, uint32(MaxQueues); got != want {
		t.Errorf("xsks has %d entries (XLB_MAX_QUEUES), Go has MaxQueues = %d", got, want)
	}
	for _, m := range []string{"syn_guard", "syn_auto", "syn_refused"} {
		if got, want := spec.Maps[m].MaxEntries, uint32(MaxQueues); got != want {
			t.Errorf("%s has %d entries (XLB_MAX_QUEUES), Go has MaxQueues = %d", m, got, want)
		}
	}
	if got, want := unsafe.Sizeof(Counters{}), uintptr(NumReasons*8); got != want {
		t.Errorf("sizeof(Counters) = %d, want %d", got, want)
	}
}

func TestReasonString(t *testing.T) {
	seen := map[string]bool{}
	for r := range Reason(NumReasons) {
		s := r.String()
		if s == "" || seen[s] {
			t.Errorf("Reason(%d).String() = %q: empty or duplicate", r, s)
		}
		seen[s] = true
	}
	if got, want := Reason(99).String(), "Reason(99)"; got != want {
		t.Errorf("Reason(99).String() = %q, want %q", got, want)
	}
	if got, want := Generic.String(), "generic"; got != want {
		t.Errorf("Generic.String() = %q, want %q", got, want)
	}
}

// The device-bound copy of the program shares every map with the main
// one: a map left out would silently be a second, empty copy that the
// dataplane never writes (the locals and SYN guard maps once were).
func TestMapsByNameCoversEveryMap(t *testing.T) {
	spec, err := loadXlb()
	if err != nil {
		t.Fatal(err)
	}
	got := mapsByName(&xlbMaps{})
	for name := range spec.Maps {
		if strings.HasPrefix(name, ".") {
			continue // .rodata and friends: constants, per program
		}
		if _, ok := got[name]; !ok {
			t.Errorf("map %s is not shared with the device-bound program", name)
		}
	}
}
