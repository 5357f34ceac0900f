package conntrack

import (
	"errors"
	"fmt"
	"time"

	"github.com/xlbproject/xlb/sched"
)

// ftpPort is the service port whose templates omit the virtual port, so
// the FTP control and data connections share one template (ip_vs_core.c
// ip_vs_sched_persist, FTPPORT).
const ftpPort = 21

// ServiceOptions describe how the new connections of one virtual service
// are placed: the IPVS service flags that conntrack acts on.
type ServiceOptions struct {
	// Scheduler places connections (and templates). Required. Each
	// worker owns its own instance (sched.Scheduler).
	Scheduler sched.Scheduler
	// Proto, Port: the service's protocol and port. Port 0 is a
	// "port zero" service (any port; persistence required).
	Proto uint8
	Port  uint16
	// FWMark != 0 makes a firewall-mark service: templates are keyed by
	// the mark instead of the virtual address and port.
	FWMark uint32
	// IPv6 is the service's address family; it selects how Netmask is
	// read.
	IPv6 bool
	// Persistent (-p) keeps a client on its destination across
	// connections while its template lives (Timeout, -p timeout).
	Persistent bool
	Timeout    time.Duration
	// Netmask (-M) is the prefix length of the client address that
	// templates are keyed by: 0..32 for IPv4 (32 by default in
	// DefaultServiceOptions), 0..128 for IPv6.
	Netmask int
	// OnePacket (-o) schedules every UDP datagram on its own and keeps
	// no connection entry.
	OnePacket bool
	// Fwd gives the forwarding method (ipvs.Fwd values) of each
	// destination, indexed by sched.Dest ID; IDs past its end, and the
	// zero-length slice, use DefaultFwd.
	Fwd        []uint8
	DefaultFwd uint8
}

// DefaultServiceOptions returns a non-persistent TCP service with
// direct routing (ipvsadm's default -g), a 360 s persistence timeout
// (ipvsadm -p without a value) and a full netmask.
func DefaultServiceOptions() ServiceOptions {
	return ServiceOptions{
		Proto:      ProtoTCP,
		Timeout:    360 * time.Second,
		Netmask:    32,
		DefaultFwd: FwdRoute,
	}
}

// Service is a validated, immutable ServiceOptions. The control plane
// builds a new Service whenever the IPVS service or its destinations
// change and swaps it in; workers only read it.
type Service struct {
	sched      sched.Scheduler
	proto      uint8
	port       uint16
	fwmark     uint32
	ipv6       bool
	persistent bool
	onePacket  bool
	timeout    int64
	v4bits     int
	v6bits     int
	fwd        []uint8
	defaultFwd uint8
}

// NewService validates o with ipvsadm's rules.
func NewService(o ServiceOptions) (*Service, error) {
	if o.Scheduler == nil {
		return nil, errors.New("invalid service: Scheduler is required")
	}
	if o.Port == 0 && o.FWMark == 0 && !o.Persistent {
		return nil, errors.New("invalid service: port zero requires persistence")
	}
	if o.OnePacket && o.Proto != ProtoUDP && o.FWMark == 0 {
		return nil, errors.New("invalid service: one-packet scheduling is only for UDP or firewall-mark services")
	}
	if o.Persistent && o.Timeout <= 0 {
		return nil, fmt.Errorf("invalid persistence timeout %v: must be positive", o.Timeout)
	}
	maxBits := 32
	if o.IPv6 {
		maxBits = 128
	}
	if o.Netmask < 0 || o.Netmask > maxBits {
		return nil, fmt.Errorf("invalid netmask /%d: must be 0..%d", o.Netmask, maxBits)
	}
	for id, f := range o.Fwd {
		if f > FwdFullNAT {
			return nil, fmt.Errorf("invalid forwarding method %d for destination %d: must be 0..%d", f, id, FwdFullNAT)
		}
	}
	if o.DefaultFwd > FwdFullNAT {
		return nil, fmt.Errorf("invalid forwarding method %d: must be 0..%d", o.DefaultFwd, FwdFullNAT)
	}
	s := &Service{
		sched: o.Scheduler, proto: o.Proto, port: o.Port, fwmark: o.FWMark, ipv6: o.IPv6,
		persistent: o.Persistent, onePacket: o.OnePacket, timeout: int64(o.Timeout),
		v4bits: 32, v6bits: 128,
		fwd: append([]uint8(nil), o.Fwd...), defaultFwd: o.DefaultFwd,
	}
	if o.IPv6 {
		s.v6bits = o.Netmask
	} else {
		s.v4bits = o.Netmask
	}
	return s, nil
}

// fwdOf is the method a new connection to d binds: d's own (set by the
// control plane before any scheduler offers d), else the service's table
// by ID (services built without one, in tests).
func (s *Service) fwdOf(d *sched.Dest) uint8 {
	if m, ok := d.Fwd(); ok {
		return m
	}
	if int(d.ID) < len(s.fwd) {
		return s.fwd[d.ID]
	}
	return s.defaultFwd
}

// markAddr is the address a firewall-mark template stores in place of
// the virtual address: the mark in network order in the first 32 bits
// (IPv6) or as the IPv4 address (IPv4), as IPVS's nf_inet_addr union.
func (s *Service) markAddr(v4 bool) [16]byte {
	var a [16]byte
	m := s.fwmark
	if v4 {
		copy(a[:], v4mappedPrefix[:])
		a[12], a[13], a[14], a[15] = byte(m>>24), byte(m>>16), byte(m>>8), byte(m)
		return a
	}
	a[0], a[1], a[2], a[3] = byte(m>>24), byte(m>>16), byte(m>>8), byte(m)
	return a
}

// Verdict says what NewConn decided for a packet that matched no entry.
type Verdict uint8

const (
	// VerdictNew: a connection entry was created (Conn.Entry).
	VerdictNew Verdict = iota
	// VerdictExisting: the key already had an entry (Conn.Entry).
	VerdictExisting
	// VerdictOnePacket: one-packet scheduling; forward to Conn.Dest, no
	// entry kept.
	VerdictOnePacket
	// VerdictUntracked: forward to Conn.Dest without an entry, because
	// the table was full (Stats.Full) or, while flooded, the segment was
	// not a SYN.
	VerdictUntracked
	// VerdictNoDest: no destination may take the connection; IPVS
	// answers ICMP port unreachable and drops.
	VerdictNoDest
	// VerdictNotNew: a TCP segment without SYN (or with RST) matched no
	// entry; it is not scheduled (IPVS passes it to the local stack).
	VerdictNotNew
)

func (v Verdict) String() string {
	switch v {
	case VerdictNew:
		return "new"
	case VerdictExisting:
		return "existing"
	case VerdictOnePacket:
		return "one-packet"
	case VerdictUntracked:
		return "untracked"
	case VerdictNoDest:
		return "no-dest"
	case VerdictNotNew:
		return "not-new"
	}
	return "Verdict(?)"
}

// Conn is where the first packet of a new connection goes.
type Conn struct {
	Entry *Entry      // nil unless VerdictNew or VerdictExisting
	Dest  *sched.Dest // nil for VerdictNoDest and VerdictNotNew
	Port  uint16      // destination port to send to
	Fwd   uint8       // forwarding method
}

// NewConn places a packet that Lookup did not match, as ip_vs_schedule
// and ip_vs_sched_persist do: it decides whether the packet may start a
// connection, finds or creates the persistence template, asks the
// scheduler when needed, and creates and binds the entry. k is the
// packet's forward key; svc the virtual service it addressed. The caller
// then runs Update on the entry for this packet like for any other. No
// allocation.
func (t *Table) NewConn(svc *Service, k *Key, tcpFlags uint8, now int64) (Conn, Verdict) {
	kc := *k
	kc.kind = kindConn
	h32 := uint32(t.seed.hash(&kc))
	if idx, ok := t.findFwd(&kc, h32); ok {
		e := &t.entries[idx]
		if e.expires > now {
			return Conn{Entry: e, Dest: t.reg.Get(e.dest), Port: e.dport, Fwd: e.fwd}, VerdictExisting
		}
		t.c.Expired++
		t.remove(idx, false)
	}
	// tcp_conn_schedule: only a SYN (any segment with sloppy_tcp), never
	// a RST, starts a TCP connection. While flooded, other segments are
	// forwarded without an entry.
	untracked := false
	if kc.Proto == ProtoTCP {
		rst := tcpFlags&TCPRst != 0
		if rst || tcpFlags&TCPSyn == 0 && !t.cur.sloppyTCP {
			if rst || now >= t.floodUntil {
				t.c.NotNew++
				return Conn{}, VerdictNotNew
			}
			untracked = true
		}
	}
	t.flow = sched.Flow{Proto: kc.Proto, Src: addrOf(kc.Src), SrcPort: kc.SrcPort,
		Dst: addrOf(kc.Dst), DstPort: kc.DstPort, Now: time.Duration(now)}
	if svc.persistent {
		return t.schedPersist(svc, &kc, h32, untracked, now)
	}
	if svc.fwmark == 0 && kc.DstPort != svc.port {
		t.c.NoDest++
		return Conn{}, VerdictNoDest
	}
	d := svc.sched.Schedule(&t.flow)
	if d == nil {
		t.c.NoDest++
		return Conn{}, VerdictNoDest
	}
	c := Conn{Dest: d, Port: d.Port, Fwd: svc.fwdOf(d)}
	if c.Port == 0 {
		c.Port = kc.DstPort
	}
	if svc.onePacket && kc.Proto == ProtoUDP {
		t.onePacket(d)
		return c, VerdictOnePacket
	}
	if untracked {
		t.c.Untracked++
		return c, VerdictUntracked
	}
	idx, ok := t.alloc(now)
	if !ok {
		t.c.Untracked++
		return c, VerdictUntracked
	}
	c.Entry = t.insert(idx, &kc, h32, d, c.Fwd, c.Port, now)
	return c, VerdictNew
}

// onePacket accounts a connection that is bound and at once expired, as
// IPVS does for IP_VS_CONN_F_ONE_PACKET: the destination's counts end
// where they were, its overload flag is re-evaluated.
func (t *Table) onePacket(d *sched.Dest) {
	d.Bind(false)
	d.Unbind(false, false)
	t.c.OnePacket++
}

// schedPersist is ip_vs_sched_persist: the template <proto, client &
// netmask, 0, vaddr, vport> (vport 0 for port-zero and FTP services;
// <IP, client & netmask, 0, fwmark, 0> for firewall-mark ones) names the
// destination of every new connection of the client while it lives.
func (t *Table) schedPersist(svc *Service, kc *Key, h32 uint32, untracked bool, now int64) (Conn, Verdict) {
	tk := Key{Src: maskAddr(kc.Src, svc.v4bits, svc.v6bits), Dst: kc.Dst, Proto: kc.Proto, kind: kindTemplate}
	switch {
	case kc.DstPort == svc.port:
		if svc.port != ftpPort {
			tk.DstPort = kc.DstPort
		}
	case svc.fwmark != 0:
		tk.Proto = 0
		tk.Dst = svc.markAddr(isV4(&kc.Src))
	}
	th := uint32(t.seed.hash(&tk))

	var d *sched.Dest
	tidx, found := t.findFwd(&tk, th)
	if found {
		te := &t.entries[tidx]
		if te.expires <= now && te.link == 0 {
			t.c.Expired++
			t.remove(tidx, false)
			found = false
		} else if d = t.reg.Get(te.dest); d == nil || !d.Available() || t.cur.expireQuiescent && d.Weight() == 0 {
			// ip_vs_check_template
			t.invalidate(tidx)
			found, d = false, nil
		}
	}
	if !found {
		if d = svc.sched.Schedule(&t.flow); d == nil {
			t.c.NoDest++
			return Conn{}, VerdictNoDest
		}
	}
	c := Conn{Dest: d, Port: kc.DstPort, Fwd: svc.fwdOf(d)}
	if c.Port == svc.port && d.Port != 0 {
		c.Port = d.Port
	}
	oneShot := svc.onePacket && kc.Proto == ProtoUDP

	// Reserve the connection's entry before the template's, with the
	// template pinned, so making room for one never evicts the other.
	var cidx uint32
	haveConn := false
	if found {
		t.pin = tidx + 1
	}
	if !oneShot && !untracked {
		cidx, haveConn = t.alloc(now)
	}
	if !found && !untracked {
		var ok bool
		if tidx, ok = t.alloc(now); !ok {
			if haveConn {
				t.release(cidx)
			}
			t.c.Untracked++
			return c, VerdictUntracked
		}
		tport := uint16(0)
		if kc.DstPort == svc.port && svc.port != ftpPort {
			tport = d.Port
		}
		t.insert(tidx, &tk, th, d, c.Fwd, tport, now)
		found = true
	}
	t.pin = 0
	if found && !untracked {
		// ip_vs_conn_put(ct): every new connection restarts the
		// template's timer.
		t.entries[tidx].expires = now + svc.timeout
	}
	switch {
	case oneShot:
		if found && !untracked {
			t.entries[tidx].inPkts++
		}
		t.onePacket(d)
		return c, VerdictOnePacket
	case !haveConn:
		t.c.Untracked++
		return c, VerdictUntracked
	}
	c.Entry = t.insert(cidx, kc, h32, d, c.Fwd, c.Port, now)
	c.Entry.link = tidx + 1
	t.entries[tidx].link++
	return c, VerdictNew
}
