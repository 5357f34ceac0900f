//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// AttachMode is how Attach hooked the program into an interface.
type AttachMode int

const (
	// Native runs the program in the driver, before an skb exists
	// (XDP_FLAGS_DRV_MODE). AF_XDP may then use zero-copy if the driver
	// supports it.
	Native AttachMode = iota + 1
	// Generic runs the program on the skb in the core receive path
	// (XDP_FLAGS_SKB_MODE): any interface, AF_XDP in copy mode only, and
	// slower than the kernel's own stack for forwarding.
	Generic
)

// String returns "native" or "generic".
func (m AttachMode) String() string {
	switch m {
	case Native:
		return "native"
	case Generic:
		return "generic"
	}
	return "AttachMode(" + strconv.Itoa(int(m)) + ")"
}

// Attach attaches prog to the interface ifindex of the caller's network
// namespace through a BPF link, in native mode if the driver supports it
// and in generic mode otherwise. Closing the link detaches the program.
// If both modes fail, the error wraps both causes.
func Attach(prog *ebpf.Program, ifindex int) (link.Link, AttachMode, error) {
	return AttachAs(prog, ifindex, 0)
}

// AttachAs is Attach in the mode want: Native or Generic only, or either
// as Attach chooses if want is 0.
func AttachAs(prog *ebpf.Program, ifindex int, want AttachMode) (link.Link, AttachMode, error) {
	var errNative error
	if want != Generic {
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
		if err == nil {
			return l, Native, nil
		}
		if want == Native {
			return nil, 0, fmt.Errorf("attach xdp to ifindex %d in native mode: %w", ifindex, err)
		}
		errNative = err
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPGenericMode})
	if err == nil {
		return l, Generic, nil
	}
	if want == Generic {
		return nil, 0, fmt.Errorf("attach xdp to ifindex %d in generic mode: %w", ifindex, err)
	}
	return nil, 0, fmt.Errorf("attach xdp to ifindex %d: native: %w; generic: %w", ifindex, errNative, err)
}

// ParseAttachMode parses "native" or "generic", and "auto" or "" as 0
// (either, as Attach chooses).
func ParseAttachMode(s string) (AttachMode, error) {
	switch s {
	case "", "auto":
		return 0, nil
	case "native":
		return Native, nil
	case "generic":
		return Generic, nil
	}
	return 0, fmt.Errorf("xdp mode %q: must be auto, native or generic", s)
}

// vlanLink is an XDP link that restores the interface's rx-vlan offload
// when it is closed.
type vlanLink struct {
	link.Link
	restore func() error
}

func (l *vlanLink) Close() error {
	return errors.Join(l.Link.Close(), l.restore())
}

// Attach turns receive VLAN offload off on ifindex, so that tags stay in
// the frame where the program sees them, and attaches the program: the
// device-bound variant natively if Load was given this ifindex and it
// loaded (it also sees tags a driver strips anyway, e.g. one a veth peer
// inserted), else the plain one natively, else generically. In generic
// mode it also attaches the tc companion (GSOProgram, see GSOCompanion).
// Closing the link detaches the programs and turns the offload back on. An interface
// whose offload is fixed on is refused unless the device-bound program
// attaches: nothing else would see its tags.
func (o *Objects) Attach(ifindex int) (link.Link, AttachMode, error) {
	return o.AttachAs(ifindex, 0)
}

// AttachAs is Attach in the mode want (Native or Generic only, 0 for
// either). The device-bound variant attaches only natively, so in generic
// mode an interface whose VLAN offload is fixed on is refused.
func (o *Objects) AttachAs(ifindex int, want AttachMode) (link.Link, AttachMode, error) {
	restore, offErr := disableVLANOffload(ifindex)
	if offErr != nil && !errors.Is(offErr, errOffloadFixed) {
		return nil, 0, fmt.Errorf("attach xdp to ifindex %d: %w", ifindex, offErr)
	}
	if offErr != nil {
		restore = func() error { return nil }
	}
	if o.dev != nil && ifindex == o.ifindex && want != Generic {
		l, err := link.AttachXDP(link.XDPOptions{Program: o.dev, Interface: ifindex, Flags: link.XDPDriverMode})
		if err == nil {
			return &vlanLink{l, restore}, Native, nil
		}
	}
	if offErr != nil {
		// Neither the frame nor the kfunc would show the tag: refuse
		// rather than balance every VLAN.
		return nil, 0, fmt.Errorf("attach xdp to ifindex %d: %w, and the device-bound program is not usable", ifindex, offErr)
	}
	l, mode, err := AttachAs(o.objs.XlbXdp, ifindex, want)
	if err != nil {
		return nil, 0, errors.Join(err, restore())
	}
	o.gso, o.gsoErr = false, nil
	if mode == Generic {
		detach, err := o.attachGSO(ifindex)
		if err != nil {
			o.gsoErr = err
		} else {
			o.gso = true
			vlan := restore
			restore = func() error { return errors.Join(detach(), vlan()) }
		}
	}
	return &vlanLink{l, restore}, mode, nil
}

// attachGSO attaches xlb_tc to ifindex's tcx ingress and tells the XDP
// program that it may pass frames too large for a socket to it; the
// function it returns undoes both, the XDP program's half first (frames
// it marks after that would reach the stack).
func (o *Objects) attachGSO(ifindex int) (func() error, error) {
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: o.objs.XlbTc, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return nil, fmt.Errorf("attach tc companion to ifindex %d (tcx, Linux 6.6+): %w", ifindex, err)
	}
	ifc, err := net.InterfaceByIndex(ifindex)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("enable tc companion on ifindex %d: %w", ifindex, err), l.Close())
	}
	// The XDP program takes an offloaded flow's frame larger than this
	// for a GSO skb, which it passes to xlb_tc. Read once: an MTU raised
	// later sends the GSO skbs between the two to the worker.
	k, mtu := uint32(ifindex), uint32(ifc.MTU)
	if err := o.gsoTc.Update(&k, &mtu, ebpf.UpdateAny); err != nil {
		return nil, errors.Join(fmt.Errorf("enable tc companion on ifindex %d: %w", ifindex, err), l.Close())
	}
	return func() error {
		err := o.gsoTc.Delete(&k)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			err = nil
		}
		return errors.Join(err, l.Close())
	}, nil
}

// GSOCompanion reports whether Attach attached the tc companion
// (GSOProgram) with the XDP program, which it does in generic mode only,
// and if it could not, why. Without it, a frame to a service larger than
// a socket's frame is dropped (drop_oversize): in generic mode, every
// GSO skb. Not safe for concurrent use with Attach.
func (o *Objects) GSOCompanion() (bool, error) { return o.gso, o.gsoErr }

// DeviceBound reports whether the device-bound variant loaded, and if not
// why not (nil when Load had no Ifindex).
func (o *Objects) DeviceBound() (bool, error) { return o.dev != nil, o.devErr }
