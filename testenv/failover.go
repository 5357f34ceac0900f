package testenv

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The failover topology: two directors on the client's LAN, a master
// that owns the VIP and a backup that takes it over, the real servers on
// the same LAN (direct routing: replies go straight to the client), and
// a private link between the directors for connection sync:
//
//	 client 198.18.0.2
//	    eth0
//	     |
//	[ v-cli ]---[ br0 ]---[ v-dir  ] eth0 master 198.18.0.1 (+ VIP)  sync0 10.203.0.1 ─┐
//	              |  |  `-[ v-dir2 ] eth0 backup 198.18.0.3          sync0 10.203.0.2 ─┘
//	          [ v-rs1 ] [ v-rs2 ] ...  (VIP on lo, arp_ignore=1, arp_announce=2)
//
// The sync link is a veth pair (one queue each way) that no XDP program
// serves: the sync daemons' multicast (224.0.0.81 on sync0) or unicast
// datagrams use the kernel's stack, as on a dedicated interface of a
// real pair of directors.
//
// MoveVIP does what keepalived's VRRP does when the backup becomes
// master: the VIP leaves the old owner's eth0, is added to the new
// owner's, and the new owner sends gratuitous ARP requests, which update
// the client's neighbour entry for the VIP (a gratuitous ARP overrides
// the entry's locktime). No VRRP runs: the test decides when to move.
var (
	BackupAddr     = netip.MustParseAddr("198.18.0.3")
	SyncPrefix     = netip.MustParsePrefix("10.203.0.0/24")
	MasterSyncAddr = netip.MustParseAddr("10.203.0.1")
	BackupSyncAddr = netip.MustParseAddr("10.203.0.2")
)

// SyncIface is the directors' sync interface.
const SyncIface = "sync0"

// Failover is a running failover topology. Env.Director is the master.
type Failover struct {
	*Env
	Backup *Host
}

// NewFailover builds the topology for a test (opts as for New: Reals
// must be RealDR, the default; not TwoArmed, PathMTU or IPv6) and removes
// it in t.Cleanup.
func NewFailover(t testing.TB, opts Options) *Failover {
	t.Helper()
	RequireRoot(t)
	if opts.Name == "" {
		opts.Name = fmt.Sprintf("xf%d", os.Getpid()%100000)
	}
	f, err := SetupFailover(opts)
	if f != nil && f.Env != nil {
		t.Cleanup(func() {
			if err := f.Close(); err != nil {
				t.Errorf("tear down failover topology: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("build failover topology: %v", err)
	}
	return f
}

// SetupFailover builds the topology. On error it returns what it built,
// for the caller to Close.
func SetupFailover(opts Options) (*Failover, error) {
	if opts.Reals != RealDR || opts.TwoArmed || opts.PathMTU != 0 || opts.IPv6 {
		return nil, fmt.Errorf("failover topology: direct routing on one IPv4 LAN only")
	}
	env, err := Setup(opts)
	if err != nil {
		return nil, err
	}
	f := &Failover{Env: env}
	if f.Backup, err = env.newHost("dir2", "br0", BackupAddr, netip.Addr{}); err != nil {
		return f, err
	}
	if err := f.LinkSync(); err != nil {
		return f, err
	}
	return f, nil
}

// LinkSync (re)creates the sync link between the directors, with a new
// interface index at each end.
func (f *Failover) LinkSync() error {
	return pair(f.Director, SyncIface, []netip.Prefix{netip.PrefixFrom(MasterSyncAddr, SyncPrefix.Bits())},
		f.Backup, SyncIface, []netip.Prefix{netip.PrefixFrom(BackupSyncAddr, SyncPrefix.Bits())})
}

// CutSync deletes the sync link (both ends: it is a veth pair), as a
// removed or renamed interface would.
func (f *Failover) CutSync() error {
	return f.Director.IP("link", "del", SyncIface)
}

// MoveVIP moves the VIP from one director to the other, as keepalived
// does on a VRRP transition: deleted from from's eth0 (unless from is
// nil: a dead machine answers nothing anyway), added to to's eth0, then
// gratuitous ARP from to. It returns once the client's neighbour entry
// for the VIP names to's MAC, or an error after a second.
func (f *Failover) MoveVIP(from, to *Host) error {
	vip := netip.PrefixFrom(f.VIP, 32)
	if from != nil {
		if err := from.IP("addr", "del", vip.String(), "dev", "eth0"); err != nil {
			return err
		}
	}
	if err := to.IP("addr", "replace", vip.String(), "dev", "eth0"); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Second)
	for {
		if err := to.SendGARP("eth0", f.VIP); err != nil {
			return err
		}
		out, err := f.Client.Command("ip", "neigh", "show", f.VIP.String(), "dev", "eth0").CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip neigh show in %s: %w: %s", f.Client.NSName, err, out)
		}
		if strings.Contains(string(out), "lladdr "+to.MAC.String()) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("move VIP to %s: the client's entry is still %q after gratuitous ARP", to.Name, strings.TrimSpace(string(out)))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SendGARP sends one gratuitous ARP request for a from h's ifname (RFC
// 5227 §3 "ARP Announcement": sender and target address a, target
// hardware address zero, broadcast), as keepalived's send_gratuitous_arp.
func (h *Host) SendGARP(ifname string, a netip.Addr) error {
	return h.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("send gratuitous arp: %w", err)
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return fmt.Errorf("send gratuitous arp: %w", err)
		}
		defer unix.Close(fd)
		ip := a.As4()
		frame := make([]byte, 0, 42)
		frame = append(frame, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
		frame = append(frame, ifi.HardwareAddr...)
		frame = binary.BigEndian.AppendUint16(frame, unix.ETH_P_ARP)
		frame = append(frame, 0, 1, 0x08, 0, 6, 4, 0, 1) // Ethernet, IPv4, request
		frame = append(frame, ifi.HardwareAddr...)
		frame = append(frame, ip[:]...)
		frame = append(frame, 0, 0, 0, 0, 0, 0)
		frame = append(frame, ip[:]...)
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index, Halen: 6}
		copy(sa.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		if err := unix.Sendto(fd, frame, 0, sa); err != nil {
			return fmt.Errorf("send gratuitous arp on %s: %w", ifname, err)
		}
		return nil
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
