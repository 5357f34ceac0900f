//go:build linux

package bpf_test

import (
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/internal/packet/packettest"
)

// A sibling program, for a second interface, checks that interface's MAC
// and shares the first one's maps: a service added through the first
// after the sibling was loaded steers the sibling's frames too, and both
// count into one counters map. Closing the sibling leaves the first one
// working.
func TestSibling(t *testing.T) {
	o := load(t)
	mac2 := [6]byte{0x02, 0xd1, 0, 0, 0, 0x02}
	sib, err := o.Sibling(mac2, 0)
	if err != nil {
		t.Fatal(err)
	}
	var syn []byte
	for _, c := range packettest.Cases() {
		if c.Name == "tcp to vip:22, not a service" {
			syn = c.Frame
		}
	}
	if syn == nil {
		t.Fatal("golden case missing")
	}
	ssh := bpf.ServiceKey{Addr: packettest.VIP4, Port: packettest.SSH, Proto: bpf.ProtoTCP}
	if err := o.AddService(ssh, 7); err != nil {
		t.Fatal(err)
	}
	toSib := slices.Clone(syn)
	copy(toSib[0:6], mac2[:])
	runOn := func(p *ebpf.Program, frame []byte) bpf.Reason {
		t.Helper()
		before, err := o.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Run(&ebpf.RunOptions{Data: frame}); err != nil {
			t.Fatal(err)
		}
		after, err := o.Counters()
		if err != nil {
			t.Fatal(err)
		}
		for r, n := range after.All() {
			if n != before[r] {
				return r
			}
		}
		t.Fatal("no counter of the shared map moved")
		return 0
	}
	for _, c := range []struct {
		name  string
		p     *ebpf.Program
		frame []byte
		want  bpf.Reason
	}{
		{"sibling, to its MAC", sib.Program(), toSib, bpf.Redirect},
		{"sibling, to the first interface's MAC", sib.Program(), syn, bpf.DropOtherHost},
		{"first, to its MAC", o.Program(), syn, bpf.Redirect},
		{"first, to the sibling's MAC", o.Program(), toSib, bpf.DropOtherHost},
	} {
		if got := runOn(c.p, c.frame); got != c.want {
			t.Errorf("%s: counter %v, want %v", c.name, got, c.want)
		}
	}
	if err := sib.Close(); err != nil {
		t.Fatal(err)
	}
	if got := runOn(o.Program(), syn); got != bpf.Redirect {
		t.Errorf("after the sibling closed: counter %v, want %v", got, bpf.Redirect)
	}
}
