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

func TestParseAttachMode(t *testing.T) {
	for in, want := range map[string]bpf.AttachMode{"": 0, "auto": 0, "native": bpf.Native, "generic": bpf.Generic} {
		if got, err := bpf.ParseAttachMode(in); err != nil || got != want {
			t.Errorf("ParseAttachMode(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"skb", "drv", "Native", " generic"} {
		if _, err := bpf.ParseAttachMode(in); err == nil {
			t.Errorf("ParseAttachMode(%q) accepted", in)
		}
	}
}

// AttachAs holds to the mode asked for: a veth, which has native XDP,
// in generic mode when asked; loopback, which has not, refused natively.
func TestAttachAs(t *testing.T) {
	o := load(t)
	testenv.InNewNetNS(t, func(h *netlink.Handle) {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xlb0"}, PeerName: "xlb1"}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			want bpf.AttachMode
			kern uint32 // IFLA_XDP_ATTACHED
		}{{"xlb0", bpf.Generic, 2}, {"xlb0", bpf.Native, 1}, {"lo", bpf.Generic, 2}} {
			nl, err := h.LinkByName(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.LinkSetUp(nl); err != nil {
				t.Fatal(err)
			}
			l, mode, err := bpf.AttachAs(o.Program(), nl.Attrs().Index, tc.want)
			if err != nil || mode != tc.want {
				t.Fatalf("AttachAs(%s, %v) = %v, %v", tc.name, tc.want, mode, err)
			}
			if nl, err = h.LinkByName(tc.name); err != nil {
				t.Fatal(err)
			}
			if x := nl.Attrs().Xdp; x == nil || !x.Attached || x.AttachMode != tc.kern {
				t.Errorf("after AttachAs(%s, %v): kernel reports XDP %+v, want mode %d", tc.name, tc.want, x, tc.kern)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		}
		lo, err := h.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if l, _, err := bpf.AttachAs(o.Program(), lo.Attrs().Index, bpf.Native); err == nil {
			l.Close()
			t.Error("AttachAs(lo, Native) attached; loopback has no native XDP")
		} else {
			t.Log(err)
		}
	})
}
