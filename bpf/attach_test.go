//go:build linux

package bpf_test

import (
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/testenv"
)

func TestAttach(t *testing.T) {
	o := load(t)
	testenv.InNewNetNS(t, func(h *netlink.Handle) {
		for _, tc := range []struct {
			link netlink.Link
			want bpf.AttachMode
			kern uint32 // IFLA_XDP_ATTACHED
		}{
			// veth implements ndo_bpf: native XDP.
			{&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xlb0"}, PeerName: "xlb1"}, bpf.Native, 1 /* XDP_ATTACHED_DRV */},
			// Loopback, which every namespace has, has no native XDP:
			// Attach falls back to generic.
			{&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "lo"}}, bpf.Generic, 2 /* XDP_ATTACHED_SKB */},
		} {
			name := tc.link.Attrs().Name
			if name != "lo" {
				if err := h.LinkAdd(tc.link); err != nil {
					t.Fatalf("add %s: %v", name, err)
				}
			}
			nl, err := h.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.LinkSetUp(nl); err != nil {
				t.Fatal(err)
			}
			l, mode, err := bpf.Attach(o.Program(), nl.Attrs().Index)
			if err != nil {
				t.Fatalf("Attach(%s) = %v", name, err)
			}
			if mode != tc.want {
				t.Errorf("Attach(%s) mode = %v, want %v", name, mode, tc.want)
			}
			nl, err = h.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			if x := nl.Attrs().Xdp; x == nil || !x.Attached || x.AttachMode != tc.kern {
				t.Errorf("after Attach(%s): kernel reports XDP %+v, want attached in mode %d", name, x, tc.kern)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			nl, err = h.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			if x := nl.Attrs().Xdp; x != nil && x.Attached {
				t.Errorf("after closing the link on %s: kernel reports XDP %+v, want detached", name, x)
			}
		}
	})
}

func TestAttachNoInterface(t *testing.T) {
	o := load(t)
	testenv.InNewNetNS(t, func(*netlink.Handle) {
		_, _, err := bpf.Attach(o.Program(), 4242)
		if err == nil {
			t.Fatal("Attach(ifindex 4242) in an empty namespace = nil, want an error")
		}
		t.Log(err)
	})
}
