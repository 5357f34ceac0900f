package modes

import (
	"encoding/binary"
	"strconv"

	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
)

// Method is a connection's forwarding method. The values are IPVS's
// (IP_VS_CONN_F_MASQ .. IP_VS_CONN_F_DROUTE, as ipvs.Fwd and the conntrack
// entry store them), with FullNAT in the place of IPVS's bypass, so a
// stored method converts with a plain Method(v).
type Method uint8

const (
	Masq    Method = iota // NAT, ipvsadm -m
	Local                 // the director itself: not forwarded
	Tunnel                // IP-in-IP, GUE or GRE, ipvsadm -i
	Route                 // direct routing, ipvsadm -g
	FullNAT               // source and destination NAT (Alibaba LVS, DPVS)

	// NumMethods is the number of methods, for tables indexed by Method.
	NumMethods = int(iota)
)

// methodNames are ipvsadm -L's forwarding names, DPVS's for FullNat.
var methodNames = [NumMethods]string{Masq: "Masq", Local: "Local", Tunnel: "Tunnel", Route: "Route", FullNAT: "FullNat"}

// String returns the method's name in ipvsadm -L -n, e.g. "Masq".
func (m Method) String() string {
	if int(m) < NumMethods {
		return methodNames[m]
	}
	return "Method(" + strconv.Itoa(int(m)) + ")"
}

// FromFwd returns the method of a destination configured with f, and
// false for a value ipvs does not define.
func FromFwd(f ipvs.Fwd) (Method, bool) {
	switch f {
	case ipvs.FwdMasq:
		return Masq, true
	case ipvs.FwdLocal:
		return Local, true
	case ipvs.FwdTunnel:
		return Tunnel, true
	case ipvs.FwdRoute:
		return Route, true
	case ipvs.FwdFullNAT:
		return FullNAT, true
	}
	return 0, false
}

// Dir is the direction of a frame within its connection. The values are
// conntrack.DirInput and DirOutput's.
type Dir uint8

const (
	In  Dir = iota // client → real server, matched by the forward key
	Out            // real server → client, matched by the reply key (NAT, FULLNAT)
)

func (d Dir) String() string {
	switch d {
	case In:
		return "in"
	case Out:
		return "out"
	}
	return "Dir(" + strconv.Itoa(int(d)) + ")"
}

// Verdict is what Xmit did with a frame: OK, transmit the descriptor it
// left in the Frame, or why not. Every verdict but OK leaves the frame,
// its bytes and the Frame unchanged, so that the caller can still answer
// it (ReplyTooBig, ReplyTimeExceeded) or drop it and count the verdict.
type Verdict uint8

const (
	OK          Verdict = iota // rewritten: transmit Buf[Off:Off+Len]
	TooBig                     // larger than Plan.MTU allows, DF set or IPv6: ReplyTooBig with Plan.ReportMTU
	NeedFrag                   // larger than Plan.MTU allows, IPv4 without DF: IPVS would fragment, xlb drops
	TTLExceeded                // TTL or hop limit 1 or 0 on arrival: ReplyTimeExceeded, or drop
	NoRoom                     // the chunk has too little headroom for the outer headers
	Malformed                  // Meta does not describe a packet inside the Frame
	Unsupported                // the method does not forward this: Local, DR or TUN replies, families it cannot translate

	// NumVerdicts is the number of verdicts, for counter arrays.
	NumVerdicts = int(iota)
)

var verdictNames = [NumVerdicts]string{
	OK:          "ok",
	TooBig:      "too_big",
	NeedFrag:    "need_frag",
	TTLExceeded: "ttl_exceeded",
	NoRoom:      "no_room",
	Malformed:   "malformed",
	Unsupported: "unsupported",
}

// String returns the verdict's counter name, e.g. "too_big".
func (v Verdict) String() string {
	if int(v) < NumVerdicts {
		return verdictNames[v]
	}
	return "Verdict(" + strconv.Itoa(int(v)) + ")"
}

// Frame is a frame in its buffer: the packet is Buf[Off:Off+Len], and the
// bytes before Off (the headroom) and after (the tailroom) belong to the
// same buffer, a UMEM chunk. A rewrite may move Off and Len, never out of
// Buf; the caller transmits the descriptor Off, Len it leaves. Buf must
// end where the chunk does (umem[base:end:end]); nothing past len(Buf) is
// ever written.
type Frame struct {
	Buf      []byte
	Off, Len int
}

// Bytes returns the frame, Buf[Off:Off+Len].
func (f *Frame) Bytes() []byte { return f.Buf[f.Off : f.Off+f.Len] }

// ok reports whether Off and Len lie within Buf.
func (f *Frame) ok() bool {
	return f.Off >= 0 && f.Len >= 0 && f.Off <= len(f.Buf) && f.Len <= len(f.Buf)-f.Off
}

// EncapType is a tunnel's encapsulation (ipvsadm --tun-type).
type EncapType uint8

const (
	IPIP EncapType = iota // IPv4 or IPv6 in IP, protocol 4 or 41 (RFC 2003, RFC 4213, RFC 2473)
	GUE                   // Generic UDP Encapsulation, variant 0 as IPVS sends it (draft-ietf-intarea-gue)
	GRE                   // GRE (RFC 2784), protocol type the inner EtherType
)

var encapNames = [...]string{IPIP: "ipip", GUE: "gue", GRE: "gre"}

// String returns ipvsadm's --tun-type name, e.g. "ipip".
func (t EncapType) String() string {
	if int(t) < len(encapNames) {
		return encapNames[t]
	}
	return "EncapType(" + strconv.Itoa(int(t)) + ")"
}

// Encap is a tunnel destination's encapsulation.
type Encap struct {
	Type EncapType
	Src  [16]byte // outer source: the director's address towards the real server, of its family
	Port uint16   // GUE: outer UDP destination port (--tun-port)
	Csum bool     // GUE: compute the outer UDP checksum; GRE: add the checksum (--tun-csum)
}

// FromTun returns the encapsulation of a destination configured with
// ipvsadm's --tun-type t, --tun-port port and checksum mode f, and false
// for a type xlb does not build. --tun-remcsum sends no checksum, as IPVS
// does for a frame whose checksum is complete (all of xlb's): IPVS adds
// the remote checksum offload option only to CHECKSUM_PARTIAL skbs.
// Encap.Src is the caller's to fill.
func FromTun(t ipvs.TunType, f ipvs.TunFlags, port uint16) (Encap, bool) {
	e := Encap{Port: port, Csum: f == ipvs.TunCsum}
	switch t {
	case ipvs.TunIPIP:
		e.Type = IPIP
	case ipvs.TunGUE:
		e.Type = GUE
	case ipvs.TunGRE:
		e.Type = GRE
	default:
		return Encap{}, false
	}
	return e, true
}

// Plan is what the dataplane knows of a frame's connection and its egress
// when it calls Xmit: filled from the conntrack entry (bound when the
// connection was created) and the forwarding tables. Addresses are 16
// bytes as in packet.Meta, IPv4 ones IPv4-mapped; ports in host order.
// Each method reads only the fields doc.go lists for it.
type Plan struct {
	Method Method
	// MTU is the egress interface's MTU (IP bytes, 1500 on plain
	// Ethernet); 0 checks nothing.
	MTU int
	// DstMAC is the next hop's (the real server, its gateway or, for Out,
	// the client's), SrcMAC the egress interface's.
	DstMAC, SrcMAC [6]byte

	Client     [16]byte // FULLNAT Out: the client, the destination of replies
	ClientPort uint16
	VIP        [16]byte // NAT and FULLNAT Out: the virtual service, the source of replies
	VPort      uint16
	RS         [16]byte // NAT and FULLNAT In: the real server; TUN: the outer destination
	RPort      uint16
	Laddr      [16]byte // FULLNAT In: the director's local address and port for the connection
	Lport      uint16
	Encap      Encap // TUN
}

// Overhead returns the bytes a TUN plan adds in front of the packet: the
// outer IP header and the GUE or GRE header; 0 for the other methods.
func (p *Plan) Overhead() int {
	if p.Method != Tunnel {
		return 0
	}
	n := 40
	if packet.IsIPv4Mapped(&p.RS) {
		n = 20
	}
	switch p.Encap.Type {
	case GUE:
		n += udpLen + gueLen
	case GRE:
		n += greLen
		if p.Encap.Csum {
			n += greCsumLen
		}
	}
	return n
}

// ReportMTU is the MTU to report in the too-big reply to a frame Xmit
// returned TooBig for: the egress MTU less the tunnel overhead.
func (p *Plan) ReportMTU() int { return p.MTU - p.Overhead() }

// Xmit rewrites the frame f for its connection's plan p and direction
// dir, in place in its buffer, and returns OK with the descriptor to
// transmit left in f, or why the frame cannot go as planned (see
// Verdict). m is packet.Parse's result on f.Bytes(); on OK it describes
// the rewritten addresses and ports (NAT, FULLNAT) or, for TUN, still the
// inner packet at its old offsets.
//
// It is the one dispatch point of the forwarding methods: a switch on
// (method, direction), which Go compiles to a jump table, into one plain
// function each for DR and TUN, and for NAT and FULLNAT into a function
// that names the new addresses and ports, which one rewrite, written out
// here, then applies. It does not allocate. An ICMP error's Meta (IsICMP)
// describes no TCP or UDP header to rewrite: it is Unsupported here, and
// XmitICMP's to forward.
func Xmit(f *Frame, m *packet.Meta, p *Plan, dir Dir) Verdict {
	if dir > Out || m.IsICMP() {
		return Unsupported
	}
	// The NAT and FULLNAT frame's new source src:sport and destination
	// dst:dport.
	var src, dst *[16]byte
	var sport, dport uint16
	switch uint(p.Method)<<1 | uint(dir) {
	case uint(Route)<<1 | uint(In):
		return drIn(f, m, p)
	case uint(Tunnel)<<1 | uint(In):
		return tunIn(f, m, p)
	case uint(Masq)<<1 | uint(In):
		src, sport, dst, dport = natIn(m, p)
	case uint(Masq)<<1 | uint(Out):
		src, sport, dst, dport = natOut(m, p)
	case uint(FullNAT)<<1 | uint(In):
		src, sport, dst, dport = fullnatIn(p)
	case uint(FullNAT)<<1 | uint(Out):
		src, sport, dst, dport = fullnatOut(p)
	default:
		return Unsupported
	}
	// The rewrite NAT and FULLNAT share. Its two calls are Xmit's own,
	// not an inlined function's: Go's PGO inlines a hot call site only in
	// the function it was profiled in, so inside natIn or fullnatIn
	// (inlined into Xmit) l4Packet and ForwardAddrPortsWithChecksumUpdate
	// stayed calls, judged by the default budget of 80; here they inline
	// (go build -gcflags=-m with cmd/xlb/default.pgo).
	b := l4Packet(f, m)
	if b == nil {
		return Malformed
	}
	// One of the two is the frame's own address for NAT, of its family
	// (l4Packet checked): the same verdicts as checking the plan's alone.
	if family(src) != m.Version || family(dst) != m.Version {
		return Unsupported // IPVS NAT does not translate families; no NAT64 (DPVS's FNAT64 is not built)
	}
	if v := check(b[m.L3Off:], m, p, 0); v != OK {
		return v
	}
	packet.ForwardAddrPortsWithChecksumUpdate(b, m, src, sport, dst, dport)
	setEth(b, p)
	return OK
}

// ip returns the IP packet m locates in f, or nil if m does not describe
// one inside f: the checks DR and TUN need, which read no further.
func ip(f *Frame, m *packet.Meta) []byte {
	// Written to be small enough to inline (cost <= 80) into Xmit, where
	// DR and TUN are inlined: there a call to it would stay a call, PGO
	// or not. ipMinLen rejects versions other than 4 and 6 (the version
	// nibble check catches a Version above 15), and the unsigned
	// compares are f.ok's four.
	v, off, n := m.Version, f.Off+m.L3Off, m.IPLen
	if uint(f.Off) > uint(len(f.Buf)) || uint(f.Len) > uint(len(f.Buf)-f.Off) ||
		m.L3Off < 14 || n < ipMinLen[v&15] || n > f.Len-m.L3Off || f.Buf[off]>>4 != v {
		return nil
	}
	return f.Buf[off : off+n]
}

// ipMinLen is the least IP packet length by version: its header's, and
// more than any packet for a version that is not 4 or 6.
var ipMinLen = [16]int{4: 20, 6: 40, 0: 1 << 30, 1: 1 << 30, 2: 1 << 30, 3: 1 << 30, 5: 1 << 30,
	7: 1 << 30, 8: 1 << 30, 9: 1 << 30, 10: 1 << 30, 11: 1 << 30, 12: 1 << 30, 13: 1 << 30, 14: 1 << 30, 15: 1 << 30}

// l4ok reports whether m's TCP or UDP header lies inside its IP packet,
// as NAT and FULLNAT need to rewrite ports and checksums.
func l4ok(m *packet.Meta) bool {
	min := 20
	if m.Version == 6 {
		min = 40
	}
	n := 8
	if m.Proto == packet.ProtoTCP {
		n = 20
	} else if m.Proto != packet.ProtoUDP {
		return false
	}
	return m.L4Off >= m.L3Off+min && m.L4Off <= m.L3Off+m.IPLen-n &&
		family(&m.Src) == m.Version && family(&m.Dst) == m.Version
}

// l4Packet returns the frame f holds, f.Bytes(), if m describes an IP
// packet inside it whose TCP or UDP header lies inside the packet and
// whose addresses are of its family, as NAT and FULLNAT need to rewrite
// addresses, ports and checksums; nil if not. It makes ip's and l4ok's
// checks in one call, not two: NAT and FULLNAT pay it on every frame.
func l4Packet(f *Frame, m *packet.Meta) []byte {
	min, n := 20, 8
	if m.Version == 6 {
		min = 40
	} else if m.Version != 4 {
		return nil
	}
	if m.Proto == packet.ProtoTCP {
		n = 20
	} else if m.Proto != packet.ProtoUDP {
		return nil
	}
	if !f.ok() || m.L3Off < 14 || m.IPLen < min || m.IPLen > f.Len-m.L3Off ||
		m.L4Off < m.L3Off+min || m.L4Off > m.L3Off+m.IPLen-n ||
		family(&m.Src) != m.Version || family(&m.Dst) != m.Version {
		return nil
	}
	b := f.Buf[f.Off : f.Off+f.Len]
	if b[m.L3Off]>>4 != m.Version {
		return nil
	}
	return b
}

// check applies the checks every forwarded frame meets, in IPVS's order
// (__ip_vs_get_out_rt: decrement_ttl, then the MTU): the TTL, and the IP
// length plus overhead against the MTU.
func check(ip []byte, m *packet.Meta, p *Plan, overhead int) Verdict {
	if packet.TTL(ip, m.Version) <= 1 {
		return TTLExceeded
	}
	if p.MTU > 0 && m.IPLen+overhead > p.MTU {
		if m.Version == 6 || packet.DF(ip) {
			return TooBig
		}
		return NeedFrag
	}
	return OK
}

// setEth writes the next hop's and the egress interface's MACs.
//
//	0                   6                  12      14
//	+-------------------+-------------------+-------+
//	| destination MAC   | source MAC        | type  |
//	+-------------------+-------------------+-------+
func setEth(b []byte, p *Plan) {
	*(*[6]byte)(b[0:6]) = p.DstMAC
	*(*[6]byte)(b[6:12]) = p.SrcMAC
}

func family(a *[16]byte) uint8 {
	if packet.IsIPv4Mapped(a) {
		return 4
	}
	return 6
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
