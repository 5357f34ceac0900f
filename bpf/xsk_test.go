//go:build linux

package bpf_test

import (
	"testing"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/internal/packet/packettest"
	"github.com/xlbproject/xlb/testenv"
)

// newXSK opens an AF_XDP socket bound in copy mode to queue 0 of ifindex,
// with a 16-frame UMEM and rings just big enough to bind: enough for an
// XSKMAP entry, not for traffic. The caller closes it with the returned
// function.
func newXSK(t *testing.T, ifindex int) (fd int, closeXSK func()) {
	t.Helper()
	const frames, frameSize = 16, 2048
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW, 0)
	if err != nil {
		t.Fatalf("open AF_XDP socket: %v", err)
	}
	mem, err := unix.Mmap(-1, 0, frames*frameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	closeXSK = func() {
		unix.Close(fd)
		unix.Munmap(mem)
	}
	reg := unix.XDPUmemReg{Addr: uint64(uintptr(unsafe.Pointer(&mem[0]))), Len: uint64(len(mem)), Size: frameSize}
	if _, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_UMEM_REG,
		uintptr(unsafe.Pointer(&reg)), unsafe.Sizeof(reg), 0); errno != 0 {
		closeXSK()
		t.Fatalf("register UMEM: %v", errno)
	}
	for _, opt := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, opt, frames); err != nil {
			closeXSK()
			t.Fatalf("size ring %d: %v", opt, err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrXDP{Flags: unix.XDP_COPY, Ifindex: uint32(ifindex), QueueID: 0}); err != nil {
		closeXSK()
		t.Fatalf("bind AF_XDP socket to ifindex %d queue 0: %v", ifindex, err)
	}
	return fd, closeXSK
}

// TestXDPGoldenWithSocket repeats the golden table with an AF_XDP socket
// in queue 0's XSKMAP slot (BPF_PROG_RUN runs as queue 0): steered frames
// now return XDP_REDIRECT, the rest still XDP_PASS.
func TestXDPGoldenWithSocket(t *testing.T) {
	o := load(t)
	testenv.InNewNetNS(t, func(h *netlink.Handle) {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xlb0"}, PeerName: "xlb1"}); err != nil {
			t.Fatal(err)
		}
		nl, err := h.LinkByName("xlb0")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(nl); err != nil {
			t.Fatal(err)
		}
		fd, closeXSK := newXSK(t, nl.Attrs().Index)
		defer closeXSK()
		if err := o.SetSocket(0, fd); err != nil {
			t.Fatal(err)
		}
		for _, c := range packettest.Cases() {
			want := xdpReason(c.Reason, c.Steer, c.Admit)
			wantAction := wantAction(want)
			if want == bpf.Redirect || want == bpf.RedirectReply {
				wantAction = xdpRedirect
			}
			action, got := run(t, o, c.Frame)
			if action != wantAction || got != want {
				t.Errorf("%s: xdp(%x) = action %d, counter %v; want action %d, counter %v\ntcpdump: %s",
					c.Name, c.Frame, action, got, wantAction, want, c.Tcpdump)
			}
		}

		if err := o.DeleteSocket(0); err != nil {
			t.Fatal(err)
		}
		c := packettest.Cases()[0]
		if action, got := run(t, o, c.Frame); action != xdpPass || got != bpf.Redirect {
			t.Errorf("%s after DeleteSocket: action %d, counter %v; want %d, %v", c.Name, action, got, xdpPass, bpf.Redirect)
		}
	})
}

// BenchmarkXDP times the program in the kernel with BPF_PROG_RUN's repeat
// loop, per frame, for a redirected and a passed frame.
func BenchmarkXDP(b *testing.B) {
	o := load(b)
	for _, c := range packettest.Cases() {
		switch c.Name {
		case "tcp syn to vip:80", "ipv6 tcp syn to [vip6]:443", "tcp to vip:22, not a service", "arp who-has vip",
			"ipv6 hop-by-hop, routing, 16-byte dstopts, ah, then tcp to [vip6]:443", "ipv4 options (router alert), tcp syn to vip:80":
		default:
			continue
		}
		b.Run(c.Name, func(b *testing.B) {
			b.ReportAllocs()
			action, per, err := o.Program().Benchmark(c.Frame, b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			if action != xdpPass {
				b.Fatalf("action %d, want %d", action, xdpPass)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/frame")
		})
	}
}
