package main

import (
	"slices"
	"testing"
)

func TestIfaceList(t *testing.T) {
	var l ifaceList
	for _, n := range []string{"eth0", "eth1"} {
		if err := l.Set(n); err != nil {
			t.Fatalf("Set(%q) = %v", n, err)
		}
	}
	if !slices.Equal(l, ifaceList{"eth0", "eth1"}) || l.String() != "eth0,eth1" {
		t.Errorf("--iface eth0 --iface eth1 = %v, want [eth0 eth1] in order", l)
	}
	for _, bad := range []string{"eth0", ""} {
		if err := l.Set(bad); err == nil {
			t.Errorf("Set(%q) after %v = nil, want an error", bad, l)
		}
	}
	if len(l) != 2 {
		t.Errorf("a refused --iface changed the list: %v", l)
	}
}
