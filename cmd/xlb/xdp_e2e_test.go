//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/testenv"
)

// capture records the TCP source ports (40000 and up, the crafted frames)
// of the TCP segments to port 80
// that reach h's eth0 from the MAC address from (the director: what xlb
// forwarded, not what the bridge flooded), tagged or not, until stop.
type capture struct {
	fd    int
	from  net.HardwareAddr
	mu    sync.Mutex
	ports []uint16
	vlans map[uint16]uint16 // source port -> VLAN ID it arrived with, 0 untagged
	done  chan struct{}
}

func startCapture(t *testing.T, h *testenv.Host, from net.HardwareAddr) *capture {
	t.Helper()
	c := &capture{done: make(chan struct{}), from: from, vlans: map[uint16]uint16{}}
	err := h.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		ifc, err := net.InterfaceByName(h.Ifname)
		if err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		// The receive path moves a tag into metadata before taps see the
		// frame; PACKET_AUXDATA reports it.
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			unix.Close(fd)
			return err
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		c.fd = fd
		return nil
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", h.NSName, err)
	}
	go func() {
		defer close(c.done)
		buf := make([]byte, 4096)
		oob := make([]byte, 256)
		for {
			n, oobn, _, from, err := unix.Recvmsg(c.fd, buf, oob, 0)
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			if err != nil {
				return
			}
			if sll, ok := from.(*unix.SockaddrLinklayer); ok && sll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			var m packet.Meta
			if n >= 14 && net.HardwareAddr(buf[6:12]).String() == c.from.String() && packet.Parse(buf[:n], &m) == packet.OK && m.Proto == packet.ProtoTCP && m.DstPort == 80 && m.SrcPort >= 40000 {
				vid := m.VLAN
				if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
					for _, cm := range cms {
						if cm.Header.Level == unix.SOL_PACKET && cm.Header.Type == unix.PACKET_AUXDATA && len(cm.Data) >= 20 {
							if binary.NativeEndian.Uint32(cm.Data[0:])&unix.TP_STATUS_VLAN_VALID != 0 {
								vid = binary.NativeEndian.Uint16(cm.Data[16:]) & 0xfff
							}
						}
					}
				}
				c.mu.Lock()
				c.ports = append(c.ports, m.SrcPort)
				c.vlans[m.SrcPort] = vid
				c.mu.Unlock()
			}
		}
	}()
	return c
}

// stop ends the capture and returns the distinct source ports seen.
func (c *capture) stop() []uint16 {
	unix.Shutdown(c.fd, unix.SHUT_RDWR)
	unix.Close(c.fd)
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	slices.Sort(c.ports)
	return slices.Compact(c.ports)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// synFrame is a TCP SYN from the client to the VIP's port 80 from sport,
// through the layers given between Ethernet and IPv4 (VLAN tags), and
// edited by edit before serialization.
type synOpts struct {
	dstMAC net.HardwareAddr
	src    netip.Addr
	tags   []uint16 // VLAN IDs, outermost first; 802.1ad outer for two
	badSum bool
}

func synFrame(t *testing.T, env *testenv.Env, sport uint16, o synOpts) []byte {
	t.Helper()
	if o.dstMAC == nil {
		o.dstMAC = env.Director.MAC
	}
	if !o.src.IsValid() {
		o.src = testenv.ClientAddr
	}
	eth := &layers.Ethernet{SrcMAC: env.Client.MAC, DstMAC: o.dstMAC, EthernetType: layers.EthernetTypeIPv4}
	ls := []gopacket.SerializableLayer{eth}
	for i, vid := range o.tags {
		typ := layers.EthernetTypeIPv4
		if i+1 < len(o.tags) {
			typ = layers.EthernetTypeDot1Q
		}
		if i == 0 {
			eth.EthernetType = layers.EthernetTypeDot1Q
			if len(o.tags) > 1 {
				eth.EthernetType = layers.EthernetTypeQinQ
			}
		}
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: vid, Type: typ})
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: o.src.AsSlice(), DstIP: testenv.VIP.AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: 80, SYN: true, Seq: 1, Window: 1000}
	tcp.SetNetworkLayerForChecksum(ip)
	ls = append(ls, ip, tcp)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	f := buf.Bytes()
	if o.badSum {
		l3 := 14 + 4*len(o.tags)
		binary.BigEndian.PutUint16(f[l3+10:], binary.BigEndian.Uint16(f[l3+10:])^0x0101)
	}
	return f
}

// xdpCounter reads one XDP counter from `xlb --xlb-stats`; 0 if absent.
func xdpCounter(t *testing.T, d *xlbProc, name string) uint64 {
	t.Helper()
	out, err := d.ctl("--xlb-stats")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == name {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// vlanPusher is a TC program that pushes VLAN tag 100 onto every frame,
// as skb metadata (bpf_skb_vlan_push): with tx-vlan offload on, as on veth,
// the tag crosses to the peer in metadata, the way a NIC with rx-vlan
// offload delivers it, so that the director's XDP program sees an
// untagged frame.
func vlanPusher(t *testing.T) *ebpf.Program {
	t.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SchedCLS,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R2, int32(htons(unix.ETH_P_8021Q))),
			asm.Mov.Imm(asm.R3, 100),
			asm.FnSkbVlanPush.Call(),
			asm.Mov.Imm(asm.R0, 0), // TC_ACT_OK
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatalf("load vlan pusher: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// sendMetaTagged sends frame three times from the client with VLAN tag 100
// pushed into skb metadata by vlanPusher.
func sendMetaTagged(t *testing.T, env *testenv.Env, frame []byte) {
	t.Helper()
	if err := env.Client.Do(func() error {
		ifc, err := net.InterfaceByName(env.Client.Ifname)
		if err != nil {
			return err
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: vlanPusher(t), Attach: ebpf.AttachTCXEgress})
		if err != nil {
			return fmt.Errorf("attach vlan pusher: %w", err)
		}
		defer l.Close()
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for range 3 {
			if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifc.Index, Halen: 6}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Issue 12 #9 and #10: frames to a service that the kernel would not
// deliver never reach a real server: tagged frames of a VLAN xlb does not
// serve (the tag in the frame, or stripped into metadata before XDP runs),
// frames to a broadcast, multicast or another host's MAC, with a bad IPv4
// header checksum, or from a martian source. Untagged traffic is still
// balanced, and each kind has its counter.
func TestXDPRefusesWhatTheKernelDrops(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.Options{RealServers: 1, HTTPPort: 80, UDPPort: 53, Servers: true})
	d := startXLB(t, env, drRules(env, "rr"))
	if out, _ := env.Director.Command("ethtool", "-k", "eth0").CombinedOutput(); !strings.Contains(string(out), "rx-vlan-offload: off") {
		t.Errorf("rx-vlan offload not off on the director while xlb runs:\n%s", out)
	}
	url := fmt.Sprintf("http://%v/", testenv.VIP)
	if _, err := testenv.Get(env.Client.HTTPClient(false, 5*time.Second), url); err != nil {
		t.Fatalf("untagged request before: %v\n%s", err, d.Output.String())
	}

	const good = 41000
	frames := map[uint16][]byte{
		good:  synFrame(t, env, good, synOpts{}),
		41001: synFrame(t, env, 41001, synOpts{tags: []uint16{100}}),
		41002: synFrame(t, env, 41002, synOpts{tags: []uint16{100, 200}}),
		41003: synFrame(t, env, 41003, synOpts{dstMAC: layers.EthernetBroadcast}),
		41004: synFrame(t, env, 41004, synOpts{dstMAC: net.HardwareAddr{0x02, 0x42, 0, 0, 0, 0x99}}),
		41005: synFrame(t, env, 41005, synOpts{dstMAC: net.HardwareAddr{0x01, 0, 0x5e, 0, 0, 1}}),
		41006: synFrame(t, env, 41006, synOpts{badSum: true}),
		41007: synFrame(t, env, 41007, synOpts{src: netip.MustParseAddr("127.0.0.1")}),
		41008: synFrame(t, env, 41008, synOpts{src: netip.MustParseAddr("224.0.0.5")}),
		41009: synFrame(t, env, 41009, synOpts{src: testenv.VIP}),
	}
	c := startCapture(t, env.Reals[0], env.Director.MAC)
	var all [][]byte
	for _, f := range frames {
		all = append(all, f)
	}
	if err := sendRaw(env.Client, all, 3); err != nil {
		t.Fatal(err)
	}
	// The same SYN, its tag pushed into metadata on the client's side.
	const meta = 41010
	sendMetaTagged(t, env, synFrame(t, env, meta, synOpts{}))
	time.Sleep(300 * time.Millisecond)
	if got := c.stop(); !slices.Equal(got, []uint16{good}) {
		t.Errorf("real server received SYNs from ports %v, want only %d (the untagged, well-formed one)", got, good)
	}
	for name, want := range map[string]uint64{
		// 41001, QinQ 41002 and the metadata-tagged 41010. The bridge
		// between client and director moves the outer tag of each into
		// metadata (skb_vlan_untag), so only the device-bound program's
		// kfunc sees it; QinQ then has one tag there and one in the frame.
		"pass_vlan":         9,
		"drop_l2_multicast": 6,
		"drop_other_host":   3,
		"drop_bad_checksum": 3,
		"drop_martian":      9,
	} {
		if got := xdpCounter(t, d, name); got < want {
			t.Errorf("xdp counter %s = %d, want >= %d", name, got, want)
		}
	}
	if _, err := testenv.Get(env.Client.HTTPClient(false, 5*time.Second), url); err != nil {
		t.Fatalf("untagged request after: %v\n%s", err, d.Output.String())
	}
	if err := d.stop(); err != nil {
		t.Fatalf("xlb exit: %v\n%s", err, d.Output.String())
	}
	if out, _ := env.Director.Command("ethtool", "-k", "eth0").CombinedOutput(); !strings.Contains(string(out), "rx-vlan-offload: on") {
		t.Errorf("rx-vlan offload not restored on the director after xlb exits:\n%s", out)
	}
}

// With --vlan, the tagged frames of that VLAN are balanced and reach the
// real server on that VLAN, also when the tag arrived stripped into
// metadata (the XDP program puts it back into the frame); other VLANs
// still are not balanced.
func TestXDPServesConfiguredVLAN(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.Options{RealServers: 1, HTTPPort: 80, UDPPort: 53, Servers: true})
	d := startXLB(t, env, drRules(env, "rr"), "--vlan", "100")
	if _, err := testenv.Get(env.Client.HTTPClient(false, 5*time.Second), fmt.Sprintf("http://%v/", testenv.VIP)); err != nil {
		t.Fatalf("untagged request: %v\n%s", err, d.Output.String())
	}
	c := startCapture(t, env.Reals[0], env.Director.MAC)
	if err := sendRaw(env.Client, [][]byte{
		synFrame(t, env, 42100, synOpts{tags: []uint16{100}}),
		synFrame(t, env, 42200, synOpts{tags: []uint16{200}}),
	}, 3); err != nil {
		t.Fatal(err)
	}
	sendMetaTagged(t, env, synFrame(t, env, 42101, synOpts{}))
	time.Sleep(300 * time.Millisecond)
	if got := c.stop(); !slices.Equal(got, []uint16{42100, 42101}) {
		t.Errorf("real server received SYNs from ports %v, want only 42100 and 42101 (VLAN 100)", got)
	}
	for _, port := range []uint16{42100, 42101} {
		if vid := c.vlans[port]; vid != 100 {
			t.Errorf("SYN from port %d reached the real server on VLAN %d, want 100", port, vid)
		}
	}
	if got := xdpCounter(t, d, "pass_vlan"); got < 3 {
		t.Errorf("pass_vlan = %d, want >= 3", got)
	}
}

// extControl returns a dialer Control that sets option, IPV6_DSTOPTS or
// IPV6_HOPOPTS, on a socket before it connects: every packet it sends then
// carries an 8-byte Destination Options or Hop-by-Hop Options header (PadN
// only) between the IPv6 and the TCP or UDP header.
func extControl(option int) func(network, address string, rc syscall.RawConn) error {
	return func(network, address string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			opt := []byte{0, 0, 1, 4, 0, 0, 0, 0} // next header (the kernel's), length 0 (8 bytes), PadN 4
			serr = unix.SetsockoptString(int(fd), unix.IPPROTO_IPV6, option, string(opt))
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// dialExt dials addr from h with the extension header option set.
func dialExt(h *testenv.Host, network string, addr netip.AddrPort, option int) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() (err error) {
		d := net.Dialer{Timeout: 3 * time.Second, Control: extControl(option)}
		c, err = d.Dial(network, addr.String())
		return err
	})
	return c, err
}

// Issue 12 #16: TCP and UDP to an IPv6 VIP behind a Destination Options
// or Hop-by-Hop Options header are balanced to the real servers, not reset
// or lost by the director's kernel.
func TestXDPIPv6ExtensionHeaders(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.Options{RealServers: 2, HTTPPort: 80, UDPPort: 53, Servers: true, IPv6: true})
	var rules strings.Builder
	fmt.Fprintf(&rules, "-A -t [%v]:80 -s rr\n-A -u [%v]:53 -s rr\n", testenv.VIP6, testenv.VIP6)
	for i := range env.Reals {
		fmt.Fprintf(&rules, "-a -t [%v]:80 -r [%v]:80 -g -w 1\n", testenv.VIP6, testenv.RealAddr6(i))
		fmt.Fprintf(&rules, "-a -u [%v]:53 -r [%v]:53 -g -w 1\n", testenv.VIP6, testenv.RealAddr6(i))
	}
	d := startXLB(t, env, rules.String())

	const n = 20
	tcp, udp := map[string]int{}, map[string]int{}
	for i := 0; i < n; i++ {
		// Alternate the header, each twice in a row so that rr gives
		// both servers both.
		opt, optName := unix.IPV6_DSTOPTS, "destination options"
		if i/2%2 == 1 {
			opt, optName = unix.IPV6_HOPOPTS, "hop-by-hop options"
		}
		c, err := dialExt(env.Client, "tcp6", netip.AddrPortFrom(testenv.VIP6, 80), opt)
		if err != nil {
			t.Fatalf("tcp connection %d with a %s header: %v\n%s", i, optName, err, d.Output.String())
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
		resp, err := io.ReadAll(c)
		c.Close()
		if err != nil && len(resp) == 0 {
			t.Fatalf("tcp connection %d: %v", i, err)
		}
		body := string(resp[strings.LastIndex(string(resp), "\n")+1:])
		tcp[body]++

		u, err := dialExt(env.Client, "udp6", netip.AddrPortFrom(testenv.VIP6, 53), opt)
		if err != nil {
			t.Fatal(err)
		}
		name, err := testenv.ExchangeUDP(u, 2*time.Second)
		u.Close()
		if err != nil {
			t.Fatalf("udp flow %d with a %s header: %v\n%s", i, optName, err, d.Output.String())
		}
		udp[name]++
	}
	for _, m := range []map[string]int{tcp, udp} {
		if len(m) != 2 || m["rs1"] != n/2 || m["rs2"] != n/2 {
			t.Errorf("split %v, want %d each on rs1 and rs2", m, n/2)
		}
	}
	t.Logf("tcp %v, udp %v", tcp, udp)
}
