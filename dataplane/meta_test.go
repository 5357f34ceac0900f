//go:build linux

package dataplane

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	pt "github.com/xlbproject/xlb/internal/packet/packettest"
	"github.com/xlbproject/xlb/testenv"
)

// TestXDPMetadataReachesCopyModeSockets records what the kernel does with
// XDP metadata (bpf_xdp_adjust_meta) on a frame redirected to an AF_XDP
// socket in copy mode, native (veth) and generic: the 8 bytes the program
// writes before the frame are in the UMEM right before the descriptor's
// address. xlb does not pass the firewall mark this way (the workers
// classify with packet.MarkTable, which also serves drivers without
// metadata and the fake kernel of the tests); this says that it could.
func TestXDPMetadataReachesCopyModeSockets(t *testing.T) {
	testenv.RequireRoot(t)
	for _, mode := range []struct {
		name  string
		flags link.XDPAttachFlags
	}{{"native", link.XDPDriverMode}, {"generic", link.XDPGenericMode}} {
		t.Run(mode.name, func(t *testing.T) { checkMetadata(t, mode.flags) })
	}
}

func checkMetadata(t *testing.T, flags link.XDPAttachFlags) {
	testenv.InNewNetNS(t, func(h *netlink.Handle) {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "meta0", NumTxQueues: 1, NumRxQueues: 1}, PeerName: "meta1"}); err != nil {
			t.Fatal(err)
		}
		l0, err := h.LinkByName("meta0")
		if err != nil {
			t.Fatal(err)
		}
		l1, err := h.LinkByName("meta1")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range []netlink.Link{l0, l1} {
			if err := h.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
		}
		xsks, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer xsks.Close()
		// adjust_meta(-8); write "MARK" and 0x12345678 before the frame;
		// redirect to queue 0's socket.
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.Mov.Imm(asm.R2, -8),
			asm.FnXdpAdjustMeta.Call(),
			asm.JNE.Imm(asm.R0, 0, "out"),
			asm.LoadMem(asm.R2, asm.R6, 8, asm.Word), // xdp_md.data_meta
			asm.LoadMem(asm.R3, asm.R6, 0, asm.Word), // xdp_md.data
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, 8),
			asm.JGT.Reg(asm.R4, asm.R3, "out"),
			asm.StoreImm(asm.R2, 0, 0x4b52414d, asm.Word),
			asm.StoreImm(asm.R2, 4, 0x12345678, asm.Word),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
			asm.LoadMapPtr(asm.R1, xsks.FD()),
			asm.Mov.Imm(asm.R2, 0),
			asm.Mov.Imm(asm.R3, 2), // XDP_PASS without a socket
			asm.FnRedirectMap.Call(),
			asm.Return(),
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer prog.Close()
		lk, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: l0.Attrs().Index, Flags: flags})
		if err != nil {
			t.Fatal(err)
		}
		defer lk.Close()
		s, err := newSocket(l0.Attrs().Index, 0, DefaultSocketOptions())
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		if err := xsks.Put(uint32(0), uint32(s.fd)); err != nil {
			t.Fatal(err)
		}
		for i := range s.umem {
			s.umem[i] = 0xee // no stale bytes may pass for metadata
		}
		q := newQueue(s.umem, s.frameSize, s.numFrames, s.fill, s.comp, s.rx, s.tx, s)
		q.refill()
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		frame := pt.Packet{DstMAC: net.HardwareAddr(l0.Attrs().HardwareAddr), Src: pt.Client4, Dst: pt.VIP4,
			SrcPort: 1, DstPort: 80, UDP: true}.Frame()
		if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: l1.Attrs().Index, Halen: 6}); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if q.rx.consumerPeek(1) == 0 {
				continue
			}
			d := q.rx.descs[q.rx.cachedCons&q.rx.mask]
			if d.Addr < 8 || d.Len != uint32(len(frame)) {
				t.Fatalf("descriptor %+v for a %d-byte frame", d, len(frame))
			}
			meta := s.umem[d.Addr-8 : d.Addr]
			if binary.LittleEndian.Uint32(meta) != 0x4b52414d || binary.LittleEndian.Uint32(meta[4:]) != 0x12345678 {
				t.Errorf("8 bytes before the frame (zero-copy %v) = %x, want the metadata 4d41524b78563412", s.zeroCopy, meta)
			}
			return
		}
		t.Fatal("the socket received nothing in 2 s")
	})
}
