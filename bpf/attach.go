//go:build linux

package bpf

import (
	"fmt"
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
	l, errNative := link.AttachXDP(link.XDPOptions{
		Program:   prog,
		Interface: ifindex,
		Flags:     link.XDPDriverMode,
	})
	if errNative == nil {
		return l, Native, nil
	}
	l, errGeneric := link.AttachXDP(link.XDPOptions{
		Program:   prog,
		Interface: ifindex,
		Flags:     link.XDPGenericMode,
	})
	if errGeneric == nil {
		return l, Generic, nil
	}
	return nil, 0, fmt.Errorf("attach xdp to ifindex %d: native: %w; generic: %w", ifindex, errNative, errGeneric)
}
