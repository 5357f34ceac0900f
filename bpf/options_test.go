//go:build linux

package bpf_test

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/internal/packet/packettest"
	"github.com/xlbproject/xlb/testenv"
)

// Map sizes come from Options, and a full map says which limit it hit.
func TestLoadMapSizes(t *testing.T) {
	o, err := bpf.Load(bpf.Options{MaxServices: 3, MaxReals: 2})
	skipIfNotPermitted(t, err)
	defer o.Close()
	if got := o.MaxServices(); got != 3 {
		t.Errorf("MaxServices() = %d, want 3", got)
	}
	k := bpf.ServiceKey{Addr: packettest.VIP4, Proto: bpf.ProtoTCP}
	for port := uint16(1); port <= 3; port++ {
		k.Port = port
		if err := o.AddService(k, uint32(port)); err != nil {
			t.Fatalf("AddService %d of 3: %v", port, err)
		}
	}
	k.Port = 4
	if err := o.AddService(k, 4); err == nil || !strings.Contains(err.Error(), "too many services (limit 3)") {
		t.Errorf("AddService 4 of 3 = %v, want too many services (limit 3)", err)
	}
	k.Port = 1
	if err := o.AddService(k, 9); err != nil {
		t.Errorf("replacing a service in a full map: %v", err)
	}
	// Two keys per real server: TCP and UDP of a firewall-mark service.
	if got := o.MaxRealKeys(); got != 4 {
		t.Errorf("MaxRealKeys() = %d, want 4", got)
	}
	for port := uint16(1); port <= 4; port++ {
		k.Port = port
		if err := o.AddReal(k); err != nil {
			t.Fatal(err)
		}
	}
	k.Port = 5
	if err := o.AddReal(k); err == nil || !strings.Contains(err.Error(), "too many real server keys (limit 4)") {
		t.Errorf("AddReal 5 of 4 = %v, want too many real server keys (limit 4)", err)
	}
}

func TestLoadInvalidOptions(t *testing.T) {
	for _, opts := range []bpf.Options{
		{MaxServices: -1},
		{MaxReals: 1 << 25},
		{VLANs: []uint16{0}},
		{VLANs: []uint16{4095}},
	} {
		if o, err := bpf.Load(opts); err == nil {
			o.Close()
			t.Errorf("Load(%+v) = nil error, want one", opts)
		} else {
			t.Logf("Load(%+v): %v", opts, err)
		}
	}
}

// Only the configured VLANs are balanced, whatever their ID, and none by
// default.
func TestVLANs(t *testing.T) {
	var tagged []byte
	for _, c := range packettest.Cases() {
		if c.Name == "vlan 100, tcp syn to vip:80" {
			tagged = c.Frame
		}
	}
	withVID := func(vid uint16) []byte {
		f := append([]byte(nil), tagged...)
		binary.BigEndian.PutUint16(f[14:], vid|0xe000) // priority 7 does not matter
		return f
	}
	for _, tc := range []struct {
		vlans []uint16
		vid   uint16
		want  bpf.Reason
	}{
		{nil, 100, bpf.PassVLAN},
		{nil, 0, bpf.Redirect},
		{[]uint16{1, 4094}, 4094, bpf.Redirect},
		{[]uint16{1, 4094}, 1, bpf.Redirect},
		{[]uint16{1, 4094}, 2, bpf.PassVLAN},
		{[]uint16{1, 4094}, 4095, bpf.PassVLAN},
		{[]uint16{64}, 64, bpf.Redirect},
		{[]uint16{64}, 65, bpf.PassVLAN},
		{[]uint16{64}, 63, bpf.PassVLAN},
	} {
		o, err := bpf.Load(bpf.Options{MAC: packettest.LBMAC, VLANs: tc.vlans})
		skipIfNotPermitted(t, err)
		if err := o.AddService(bpf.ServiceKey(packettest.Services[0]), 1); err != nil {
			t.Fatal(err)
		}
		if _, got := run(t, o, withVID(tc.vid)); got != tc.want {
			t.Errorf("VLANs %v, frame of VLAN %d: counter %v, want %v", tc.vlans, tc.vid, got, tc.want)
		}
		o.Close()
	}
}

// With an ifindex, Load also loads the device-bound program, and Attach
// uses it natively on that device.
func TestDeviceBound(t *testing.T) {
	testenv.InNewNetNS(t, func(h *netlink.Handle) {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xlb0"}, PeerName: "xlb1"}); err != nil {
			t.Fatal(err)
		}
		l, err := h.LinkByName("xlb0")
		if err != nil {
			t.Fatal(err)
		}
		o, err := bpf.Load(bpf.Options{Ifindex: l.Attrs().Index})
		skipIfNotPermitted(t, err)
		defer o.Close()
		if ok, err := o.DeviceBound(); !ok {
			t.Fatalf("DeviceBound() = false, %v; want true on veth (Linux 6.8+)", err)
		}
		lk, mode, err := o.Attach(l.Attrs().Index)
		if err != nil {
			t.Fatal(err)
		}
		defer lk.Close()
		if mode != bpf.Native {
			t.Errorf("Attach mode %v, want native", mode)
		}
	})
}
