package main

import (
	"flag"
	"io"
	"slices"
	"testing"
)

func TestVLANFlag(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var v vlanList
	fs.Var(&v, "vlan", "")
	if err := fs.Parse([]string{"--vlan", "100", "--vlan", "1,4094"}); err != nil {
		t.Fatal(err)
	}
	if want := []uint16{100, 1, 4094}; !slices.Equal(v, want) {
		t.Errorf("--vlan 100 --vlan 1,4094 = %v, want %v", v, want)
	}
	if got := v.String(); got != "100,1,4094" {
		t.Errorf("String() = %q", got)
	}
	for _, bad := range []string{"0", "4095", "-1", "x", "100,", ""} {
		var v vlanList
		if err := v.Set(bad); err == nil {
			t.Errorf("--vlan %q accepted as %v, want an error", bad, v)
		}
	}
}
