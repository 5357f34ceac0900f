//go:build linux

package testenv

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
)

// EnableXDPTx makes the bridge-side ends of the director's veths accept
// the frames that an XDP program sends with XDP_TX or bpf_redirect, as
// xlb's flow offload (--offload=on) does: veth hands such frames to its
// peer's NAPI ring, which the kernel (6.18 here) only drains when the peer
// has an XDP program of its own; GRO alone, which turns NAPI on, is not
// enough. So each peer gets GRO and a program that passes everything.
// AF_XDP's copy-mode TX needs neither.
func (env *Env) EnableXDPTx() error {
	return env.setXDPTx(true)
}

// DisableXDPTx undoes EnableXDPTx: no program on the peers, GRO off, as
// testenv builds them.
func (env *Env) DisableXDPTx() error { return env.setXDPTx(false) }

// NewXDPPass loads an XDP program that passes every frame: attached
// natively to a veth, it gives the veth NAPI, which frames that XDP_TX,
// bpf_redirect or a redirecting BPF_PROG_RUN send into its peer need.
func NewXDPPass() (*ebpf.Program, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xlb_peer_pass", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}, // XDP_PASS
	})
	if err != nil {
		return nil, fmt.Errorf("load xdp pass program: %w", err)
	}
	return prog, nil
}

func (env *Env) setXDPTx(on bool) error {
	prog, err := NewXDPPass()
	if err != nil {
		return err
	}
	// Attached through netlink, the program stays with the interface
	// after its descriptor is closed, until the namespace goes.
	defer prog.Close()
	for _, ifname := range env.DirectorIfaces {
		peer := env.Director.Peer
		if ifname != "eth0" {
			peer = "v" + ifname[len("eth"):] + "-" + env.Director.Name
		}
		gro, fd := "off", -1
		if on {
			gro, fd = "on", prog.FD()
		}
		if out, err := env.Bridge.Command("ethtool", "-K", peer, "gro", gro).CombinedOutput(); err != nil {
			return fmt.Errorf("turn gro %s on %s: %w: %s", gro, peer, err, out)
		}
		if err := env.Bridge.Do(func() error {
			l, err := netlink.LinkByName(peer)
			if err != nil {
				return err
			}
			return netlink.LinkSetXdpFd(l, fd)
		}); err != nil {
			return fmt.Errorf("set xdp pass program on %s: %w", peer, err)
		}
	}
	return nil
}
