//go:build linux

package ipvssync

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Header lengths in front of a sync message: IP + UDP.
const (
	hlen4 = 20 + 8
	hlen6 = 40 + 8
)

// effectiveMaxLen is the message limit: MaxLen, or the interface MTU
// less the IP and UDP headers as start_sync_thread defaults
// sync_maxlen, raised to the size of the largest record xlb writes (the
// kernel's ip_vs_sync_buff_create likewise always fits one record).
func effectiveMaxLen(o Options, ifi *net.Interface) int {
	n := o.MaxLen
	if n == 0 {
		h := hlen4
		if o.is6() {
			h = hlen6
		}
		n = ifi.MTU - h
	}
	return min(max(n, minMaxLen), maxMaxLen)
}

func setsockopt(c *net.UDPConn, f func(fd int) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = f(int(fd)) }); err != nil {
		return err
	}
	return serr
}

// SenderStats are a Sender's counters.
type SenderStats struct {
	Records    uint64 // records queued into messages
	Messages   uint64 // datagrams sent (one per peer per message)
	Bytes      uint64 // payload bytes sent
	SendErrors uint64 // datagrams the socket refused
	BadRecords uint64 // records no message can carry (Add's error)
}

// Sender is the master side: it batches records into v1 messages of at
// most MaxLen bytes and sends each full message to the multicast group
// (IP_MULTICAST_IF the interface, IP_MULTICAST_TTL, no loopback, as the
// kernel's make_send_sock) or to every unicast peer. Not safe for
// concurrent use: one goroutine (the sync goroutine draining the
// workers' rings) owns it; Stats may be called from any goroutine.
type Sender struct {
	o     Options
	conn  *net.UDPConn
	dsts  []netip.AddrPort
	b     *Builder
	stats [5]atomic.Uint64
}

// NewSender opens the sending socket.
func NewSender(o Options) (*Sender, error) {
	o, err := o.check()
	if err != nil {
		return nil, fmt.Errorf("new sync sender: %w", err)
	}
	ifi, err := net.InterfaceByName(o.Interface)
	if err != nil {
		return nil, fmt.Errorf("new sync sender: %w", err)
	}
	o.MaxLen = effectiveMaxLen(o, ifi)
	network, laddr := "udp4", netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	if o.is6() {
		network, laddr = "udp6", netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
	}
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(laddr))
	if err != nil {
		return nil, fmt.Errorf("new sync sender: %w", err)
	}
	s := &Sender{o: o, conn: conn}
	if len(o.Peers) > 0 {
		for _, p := range o.Peers {
			if !o.is6() {
				p = netip.AddrPortFrom(p.Addr().Unmap(), p.Port()) // udp4 socket
			}
			s.dsts = append(s.dsts, p)
		}
	} else {
		err = setsockopt(conn, func(fd int) error {
			if o.is6() {
				if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifi.Index); err != nil {
					return fmt.Errorf("set IPV6_MULTICAST_IF: %w", err)
				}
				if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, int(o.TTL)); err != nil {
					return fmt.Errorf("set IPV6_MULTICAST_HOPS: %w", err)
				}
				return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0)
			}
			if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifi.Index)}); err != nil {
				return fmt.Errorf("set IP_MULTICAST_IF: %w", err)
			}
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, int(o.TTL)); err != nil {
				return fmt.Errorf("set IP_MULTICAST_TTL: %w", err)
			}
			return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0)
		})
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("new sync sender on %s: %w", o.Interface, err)
		}
		g := o.Group
		if g.Is6() && (g.IsLinkLocalMulticast() || g.IsInterfaceLocalMulticast()) {
			g = g.WithZone(o.Interface)
		}
		s.dsts = []netip.AddrPort{netip.AddrPortFrom(g, o.Port)}
	}
	if s.b, err = NewBuilder(o.MaxLen, o.SyncID); err != nil {
		conn.Close()
		return nil, fmt.Errorf("new sync sender: %w", err)
	}
	return s, nil
}

// Options are the effective options (defaults filled in, MaxLen computed).
func (s *Sender) Options() Options { return s.o }

// Add queues c, sending the current message first if c does not fit.
// A record no message can carry (mixed families, PE data too long) is
// counted and returned as an error; the stream goes on.
func (s *Sender) Add(c *Conn) error {
	ok, err := s.b.Add(c)
	if err != nil {
		s.stats[4].Add(1)
		return fmt.Errorf("add sync record: %w", err)
	}
	if !ok {
		err = s.Flush()
		if ok, _ = s.b.Add(c); !ok {
			// Cannot happen: an empty message holds the largest record.
			panic("ipvssync: record does not fit an empty message")
		}
	}
	s.stats[0].Add(1)
	return err
}

// Flush sends the current message, if it has records. Call it at the
// end of every batch, as the kernel master sends a partly filled buffer
// after at most a second (sync_thread_master's get_curr_sync_buff(2*HZ)).
func (s *Sender) Flush() error {
	if s.b.Len() == 0 {
		return nil
	}
	msg := s.b.Bytes()
	var errs []error
	for _, d := range s.dsts {
		if _, err := s.conn.WriteToUDPAddrPort(msg, d); err != nil {
			s.stats[3].Add(1)
			errs = append(errs, err)
			continue
		}
		s.stats[1].Add(1)
		s.stats[2].Add(uint64(len(msg)))
	}
	s.b.Reset()
	if len(errs) > 0 {
		return fmt.Errorf("send sync message: %w", errors.Join(errs...))
	}
	return nil
}

// Stats returns the counters.
func (s *Sender) Stats() SenderStats {
	return SenderStats{s.stats[0].Load(), s.stats[1].Load(), s.stats[2].Load(), s.stats[3].Load(), s.stats[4].Load()}
}

// Close closes the socket; records not flushed are lost.
func (s *Sender) Close() error { return s.conn.Close() }

// ReceiverStats are a Receiver's counters.
type ReceiverStats struct {
	Messages    uint64 // messages decoded (v1 and v0), whole or in part
	V0Messages  uint64 // of which in the legacy v0 format
	Records     uint64 // records handed to the handler
	Bytes       uint64 // payload bytes received
	OtherSyncID uint64 // messages ignored for their sync ID
	ReadErrors  uint64
	// Dropped counts messages dropped (in whole or from the faulty
	// record on) by message-level Reason; Skipped counts single records
	// dropped by record-level Reason.
	Dropped [NumReasons]uint64
	Skipped [NumReasons]uint64
}

// Receiver is the backup side: it joins the group on the interface (or
// listens for the unicast peers), ignores messages of another sync ID
// (when its own is not 0, as ip_vs_process_message), decodes and hands
// each message's records to the handler. Serve runs on one goroutine;
// Stats and Close may be called from any.
type Receiver struct {
	o       Options
	conn    *net.UDPConn
	peers   []netip.Addr
	d       Decoder
	buf     []byte
	stats   [6]atomic.Uint64
	dropped [NumReasons]atomic.Uint64
	skipped [NumReasons]atomic.Uint64
}

// NewReceiver opens the receiving socket: bound to the group and port
// and a member of the group on the interface, or bound to the port for
// unicast peers; bound to the interface (SO_BINDTODEVICE) either way.
func NewReceiver(o Options) (*Receiver, error) {
	o, err := o.check()
	if err != nil {
		return nil, fmt.Errorf("new sync receiver: %w", err)
	}
	ifi, err := net.InterfaceByName(o.Interface)
	if err != nil {
		return nil, fmt.Errorf("new sync receiver: %w", err)
	}
	o.MaxLen = effectiveMaxLen(o, ifi)
	r := &Receiver{o: o, buf: make([]byte, 65536)}
	network := "udp4"
	if o.is6() {
		network = "udp6"
	}
	if len(o.Peers) > 0 {
		for _, p := range o.Peers {
			r.peers = append(r.peers, p.Addr().Unmap())
		}
		la := netip.AddrPortFrom(netip.IPv4Unspecified(), o.Port)
		if o.is6() {
			la = netip.AddrPortFrom(netip.IPv6Unspecified(), o.Port)
		}
		r.conn, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(la))
	} else {
		r.conn, err = net.ListenMulticastUDP(network, ifi, net.UDPAddrFromAddrPort(netip.AddrPortFrom(o.Group, o.Port)))
	}
	if err != nil {
		return nil, fmt.Errorf("new sync receiver on %s: %w", o.Interface, err)
	}
	err = setsockopt(r.conn, func(fd int) error {
		if err := unix.BindToDevice(fd, o.Interface); err != nil {
			return fmt.Errorf("bind to device: %w", err)
		}
		// Go binds a multicast listener to the wildcard address, not to
		// the group as the kernel's make_receive_sock does; without
		// *_MULTICAST_ALL = 0 it would also get every other group joined
		// on the host.
		if len(o.Peers) == 0 {
			if o.is6() {
				if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0); err != nil {
					return fmt.Errorf("set IPV6_MULTICAST_ALL: %w", err)
				}
			} else if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0); err != nil {
				return fmt.Errorf("set IP_MULTICAST_ALL: %w", err)
			}
		}
		// SO_RCVBUFFORCE passes net.core.rmem_max (root); fall back.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, o.RecvBuffer) != nil {
			return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, o.RecvBuffer)
		}
		return nil
	})
	if err != nil {
		r.conn.Close()
		return nil, fmt.Errorf("new sync receiver on %s: %w", o.Interface, err)
	}
	return r, nil
}

// Options are the effective options.
func (r *Receiver) Options() Options { return r.o }

// Serve reads messages until Close, calling handle with each message's
// accepted records (never with none). conns and what they point to are
// valid only during the call. It returns nil after Close.
func (r *Receiver) Serve(handle func(conns []Conn)) error {
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(r.buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			r.stats[5].Add(1)
			continue
		}
		r.handle(r.buf[:n], from, handle)
	}
}

// handle processes one datagram. Split from Serve for tests.
func (r *Receiver) handle(msg []byte, from netip.AddrPort, handle func([]Conn)) {
	r.stats[3].Add(uint64(len(msg)))
	if r.peers != nil && !slices.Contains(r.peers, from.Addr().Unmap()) {
		r.dropped[ReasonNotPeer].Add(1)
		return
	}
	if len(msg) > r.o.MaxLen {
		r.dropped[ReasonTooLong].Add(1)
		return
	}
	// The kernel checks the sync ID after the size and before the
	// version; Decode checks the size, so filter on its header.
	res := r.d.Decode(msg)
	if res.Dropped == ReasonShort || res.Dropped == ReasonSize {
		r.dropped[res.Dropped].Add(1)
		return
	}
	if r.o.SyncID != 0 && res.Header.SyncID != r.o.SyncID {
		r.stats[4].Add(1)
		return
	}
	r.stats[0].Add(1)
	if res.Header.Version == 0 {
		r.stats[1].Add(1)
	}
	if res.Dropped != ReasonNone {
		r.dropped[res.Dropped].Add(1)
	}
	for i, n := range res.Skipped {
		if n > 0 {
			r.skipped[i].Add(uint64(n))
		}
	}
	if len(res.Conns) > 0 {
		r.stats[2].Add(uint64(len(res.Conns)))
		handle(res.Conns)
	}
}

// Stats returns the counters.
func (r *Receiver) Stats() ReceiverStats {
	s := ReceiverStats{
		Messages: r.stats[0].Load(), V0Messages: r.stats[1].Load(), Records: r.stats[2].Load(),
		Bytes: r.stats[3].Load(), OtherSyncID: r.stats[4].Load(), ReadErrors: r.stats[5].Load(),
	}
	for i := range s.Dropped {
		s.Dropped[i] = r.dropped[i].Load()
		s.Skipped[i] = r.skipped[i].Load()
	}
	return s
}

// Close closes the socket; Serve returns.
func (r *Receiver) Close() error { return r.conn.Close() }
