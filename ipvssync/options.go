package ipvssync

import (
	"fmt"
	"net/netip"
	"strings"
)

// Role is the sync daemon's role, the argument of --start-daemon.
type Role uint8

// Roles (IP_VS_STATE_MASTER, IP_VS_STATE_BACKUP).
const (
	Master Role = 1 // IP_VS_STATE_MASTER
	Backup Role = 2 // IP_VS_STATE_BACKUP
)

func (r Role) String() string {
	switch r {
	case Master:
		return "master"
	case Backup:
		return "backup"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// ParseRole parses "master" or "backup".
func ParseRole(s string) (Role, error) {
	switch s {
	case "master":
		return Master, nil
	case "backup":
		return Backup, nil
	}
	return 0, fmt.Errorf("parse role %q: must be master or backup", s)
}

// Kernel defaults (include/net/ip_vs.h, ip_vs_sync.c start_sync_thread).
var (
	// DefaultGroup is IP_VS_SYNC_GROUP, 224.0.0.81. The kernel has no
	// IPv6 default: an IPv6 group must be given (--mcast-group).
	DefaultGroup = netip.AddrFrom4([4]byte{224, 0, 0, 81})
)

const (
	DefaultPort      = 8848   // IP_VS_SYNC_PORT
	DefaultTTL       = 1      // start_sync_thread: mcast_ttl 0 -> 1
	DefaultInterface = "eth0" // ipvsadm's default --mcast-interface
	// DefaultRecvBuffer is the receive socket buffer: like the kernel's
	// sync_sock_size sysctl, it absorbs a burst of messages while the
	// backup installs the previous ones (4 MiB is ~2800 full messages).
	DefaultRecvBuffer = 4 << 20
)

// Options configure a Sender or a Receiver; the fields are
// ipvsadm's --start-daemon options except where marked.
type Options struct {
	Interface string     // --mcast-interface (default "eth0")
	SyncID    uint8      // --syncid; 0 on a backup accepts every ID
	MaxLen    int        // --sync-maxlen: UDP payload limit; 0: interface MTU - IP - UDP headers
	Group     netip.Addr // --mcast-group (default 224.0.0.81)
	Port      uint16     // --mcast-port (default 8848)
	TTL       uint8      // --mcast-ttl (default 1); multicast only

	// Peers is xlb's extension for networks without multicast: when set,
	// a Sender sends every message to each peer by unicast instead of to
	// Group, and a Receiver listens on Port and accepts only datagrams
	// whose source address is a peer's (the peer's port is ignored: the
	// sender's is ephemeral). All peers are of one family.
	Peers []netip.AddrPort

	// RecvBuffer is the Receiver's SO_RCVBUF (xlb's; the kernel's is the
	// sync_sock_size sysctl). 0: DefaultRecvBuffer.
	RecvBuffer int
}

// DefaultOptions are the kernel's defaults.
func DefaultOptions() Options {
	return Options{Interface: DefaultInterface, Group: DefaultGroup, Port: DefaultPort, TTL: DefaultTTL}
}

// check fills zero fields with defaults and validates o.
func (o Options) check() (Options, error) {
	if o.Interface == "" {
		o.Interface = DefaultInterface
	}
	if !o.Group.IsValid() {
		o.Group = DefaultGroup
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.RecvBuffer == 0 {
		o.RecvBuffer = DefaultRecvBuffer
	}
	if len(o.Peers) == 0 && !o.Group.IsMulticast() {
		return o, fmt.Errorf("invalid mcast group %v: must be a multicast address", o.Group)
	}
	if o.MaxLen < 0 || o.MaxLen > maxMaxLen {
		return o, fmt.Errorf("invalid sync maxlen %d: must be 1..%d", o.MaxLen, maxMaxLen)
	}
	for _, p := range o.Peers {
		if !p.IsValid() || p.Addr().Unmap().Is4() != o.Peers[0].Addr().Unmap().Is4() {
			return o, fmt.Errorf("invalid sync peer %v: peers must be valid and of one family", p)
		}
	}
	return o, nil
}

// is6 reports whether o talks IPv6.
func (o Options) is6() bool {
	if len(o.Peers) > 0 {
		return !o.Peers[0].Addr().Unmap().Is4()
	}
	return o.Group.Is6()
}

// DaemonLine formats one line of `ipvsadm -L --daemon` as ipvsadm 1.31's
// list_daemon prints it, without the newline. Zero MaxLen, Port and TTL
// and an invalid Group are left out, as ipvsadm leaves out what the
// kernel did not report; pass a running daemon's effective Options
// (Sender.Options, Receiver.Options) to print what a current kernel
// reports. The unicast peers are xlb's and shown after the kernel's
// fields as ", peers=a,b".
func DaemonLine(role Role, o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s sync daemon (mcast=%s, syncid=%d", role, o.Interface, o.SyncID)
	if o.MaxLen != 0 {
		fmt.Fprintf(&b, ", maxlen=%d", o.MaxLen)
	}
	if o.Group.IsValid() {
		fmt.Fprintf(&b, ", group=%s", o.Group)
	}
	if o.Port != 0 {
		fmt.Fprintf(&b, ", port=%d", o.Port)
	}
	if o.TTL != 0 {
		fmt.Fprintf(&b, ", ttl=%d", o.TTL)
	}
	if len(o.Peers) > 0 {
		b.WriteString(", peers=")
		for i, p := range o.Peers {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(p.String())
		}
	}
	b.WriteByte(')')
	return b.String()
}
