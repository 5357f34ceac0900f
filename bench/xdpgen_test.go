//go:build linux

package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/testenv"
)

// TestGenerateXDP sends 10k frames over 100 flows through a veth pair in
// a namespace of its own and counts, with an AF_PACKET socket on the
// receiving end, the frames and their distinct source ports.
func TestGenerateXDP(t *testing.T) {
	testenv.RequireRoot(t)
	name := fmt.Sprintf("xdpgen%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	// A queue per CPU on the receiving end, as the bench's topology gives
	// the client's veth: each thread then feeds a ring of its own.
	q := runtime.NumCPU()
	sh := fmt.Sprintf("ip link add ga numtxqueues %d numrxqueues %d type veth peer name gb numtxqueues %d numrxqueues %d && ", q, q, q, q) +
		"ip link set ga up && ip link set gb up && ethtool -K gb gro on >/dev/null"
	if out, err := exec.Command("ip", "netns", "exec", name, "sh", "-c", sh).CombinedOutput(); err != nil {
		t.Fatalf("veth: %v: %s", err, out)
	}
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h := &testenv.Host{Name: "gen", NSName: name, NS: ns, Ifname: "ga"}
	var fd int
	var dstMAC net.HardwareAddr
	if err := h.Do(func() error {
		a, err := net.InterfaceByName("ga")
		if err != nil {
			return err
		}
		h.MAC = a.HardwareAddr
		b, err := net.InterfaceByName("gb")
		if err != nil {
			return err
		}
		dstMAC = b.HardwareAddr
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
		return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: b.Index, Protocol: htons(unix.ETH_P_IP)})
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	const n, flows = 10000, 100
	dst := netip.AddrPortFrom(netip.MustParseAddr("198.18.1.1"), 9)
	g, err := generateXDP(context.Background(), h, dstMAC, genSpec{flows: flows, rate: 20000, count: n, threads: 2, limit: 5 * time.Second, dst: dst})
	if err != nil {
		t.Fatal(err)
	}
	if g.sent != n {
		t.Fatalf("sent %d frames, want %d", g.sent, n)
	}
	ports := map[uint16]int{}
	got := 0
	buf := make([]byte, 2048)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000})
	var want [60]byte
	for got < n {
		m, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			break
		}
		if m < 42 || binary.BigEndian.Uint16(buf[36:]) != 9 {
			continue
		}
		got++
		sport := binary.BigEndian.Uint16(buf[34:])
		ports[sport]++
		buildFrame(want[:], h.MAC, dstMAC, int(sport)-1024, dst)
		if string(buf[14:42]) != string(want[14:42]) {
			t.Fatalf("frame of port %d: % x, want % x", sport, buf[14:42], want[14:42])
		}
	}
	st, err := unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Errorf("received %d frames (%d dropped by the socket), want %d", got, st.Drops, n)
	}
	if len(ports) != flows {
		t.Errorf("received %d distinct source ports, want %d", len(ports), flows)
	}
	// The two threads share one schedule, so they need not send
	// equally many frames: each flow gets some, none outside the range.
	for p := range ports {
		if p < 1024 || p >= 1024+flows {
			t.Errorf("port %d received, want 1024..%d", p, 1024+flows-1)
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
