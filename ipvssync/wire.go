package ipvssync

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Sizes of the kernel structures (net/netfilter/ipvs/ip_vs_sync.c).
const (
	// HeaderLen is sizeof(struct ip_vs_sync_mesg): reserved, syncid,
	// size, nr_conns, version, spare.
	HeaderLen = 8
	// HeaderLenV0 is sizeof(struct ip_vs_sync_mesg_v0): nr_conns,
	// syncid, size.
	HeaderLenV0 = 4
	// RecordLenV4 is sizeof(struct ip_vs_sync_v4).
	RecordLenV4 = 36
	// RecordLenV6 is sizeof(struct ip_vs_sync_v6).
	RecordLenV6 = 72
	// SeqOptionLen is sizeof(struct ip_vs_sync_conn_options): two
	// struct ip_vs_seq of three __u32 each.
	SeqOptionLen = 24
	// RecordLenV0 is SIMPLE_CONN_SIZE, sizeof(struct ip_vs_sync_conn_v0).
	RecordLenV0 = 24
	// MaxConnsPerMessage is MAX_CONNS_PER_SYNCBUFF: nr_conns is 8 bits.
	MaxConnsPerMessage = 255
	// MaxPEDataLen is IP_VS_PEDATA_MAXLEN.
	MaxPEDataLen = 255
	// MaxPENameLen is IP_VS_PENAME_MAXLEN.
	MaxPENameLen = 16
	// ProtoVersion is SYNC_PROTO_VER.
	ProtoVersion = 1

	stypeFInet6 = 1 << 0 // STYPE_F_INET6
	sverShift   = 12     // SVER_SHIFT
	sverMask    = 0x0fff // SVER_MASK
)

// Option types of a v1 connection record (IPVS_OPT_*).
const (
	OptSeqData = 1    // IPVS_OPT_SEQ_DATA: struct ip_vs_sync_conn_options
	OptPEData  = 2    // IPVS_OPT_PE_DATA: persistence engine data (SIP Call-ID)
	OptPEName  = 3    // IPVS_OPT_PE_NAME: persistence engine name ("sip")
	OptFParam  = 0x40 // IPVS_OPT_F_PARAM (1 << (IPVS_OPT_PARAM-1)): "optional, skip if unknown"

	// OptXLBLocal is xlb's extension: the FULLNAT local address and port.
	// 0x58 is 'X' = IPVS_OPT_F_PARAM | 0x18, so a kernel backup, which
	// switches on (type & ~IPVS_OPT_F_PARAM) = 0x18 and finds it unknown
	// but optional, skips it (see the package documentation). Data: the
	// local port (__be16) then the local address (4 or 16 bytes).
	OptXLBLocal = OptFParam | 0x18
)

// Flags are the connection flags (IP_VS_CONN_F_*, include/uapi/linux/ip_vs.h).
// They travel as a __be32 in v1 and as a __be16 in v0.
type Flags uint32

// The IP_VS_CONN_F_* bits.
const (
	FlagFwdMask   Flags = 0x0007 // IP_VS_CONN_F_FWD_MASK
	FlagMasq      Flags = 0x0000 // IP_VS_CONN_F_MASQ (NAT)
	FlagLocalNode Flags = 0x0001 // IP_VS_CONN_F_LOCALNODE
	FlagTunnel    Flags = 0x0002 // IP_VS_CONN_F_TUNNEL
	FlagDRoute    Flags = 0x0003 // IP_VS_CONN_F_DROUTE
	FlagBypass    Flags = 0x0004 // IP_VS_CONN_F_BYPASS
	FlagSync      Flags = 0x0020 // IP_VS_CONN_F_SYNC: set by the backup
	FlagHashed    Flags = 0x0040 // IP_VS_CONN_F_HASHED: never sent
	FlagNoOutput  Flags = 0x0080 // IP_VS_CONN_F_NOOUTPUT
	FlagInactive  Flags = 0x0100 // IP_VS_CONN_F_INACTIVE
	FlagOutSeq    Flags = 0x0200 // IP_VS_CONN_F_OUT_SEQ
	FlagInSeq     Flags = 0x0400 // IP_VS_CONN_F_IN_SEQ
	FlagSeqMask   Flags = 0x0600 // IP_VS_CONN_F_SEQ_MASK
	FlagNoCPort   Flags = 0x0800 // IP_VS_CONN_F_NO_CPORT
	FlagTemplate  Flags = 0x1000 // IP_VS_CONN_F_TEMPLATE
	FlagOnePacket Flags = 0x2000 // IP_VS_CONN_F_ONE_PACKET

	// FlagBackupMask is IP_VS_CONN_F_BACKUP_MASK: the bits a backup
	// keeps from a record; the rest are masked off on receipt.
	FlagBackupMask = FlagFwdMask | FlagNoOutput | FlagInactive | FlagSeqMask | FlagNoCPort | FlagTemplate
)

// Protocol numbers IPVS synchronises (ip_vs_proto_get knows these).
const (
	ProtoIP   = 0   // IPPROTO_IP: fwmark persistence templates
	ProtoTCP  = 6   // IPPROTO_TCP
	ProtoUDP  = 17  // IPPROTO_UDP
	ProtoESP  = 50  // IPPROTO_ESP
	ProtoAH   = 51  // IPPROTO_AH
	ProtoSCTP = 132 // IPPROTO_SCTP
)

// TCP states as the kernel numbers them (enum IP_VS_TCP_S_*,
// include/net/ip_vs.h). Record.State carries them for TCP.
const (
	TCPNone        = 0  // IP_VS_TCP_S_NONE
	TCPEstablished = 1  // IP_VS_TCP_S_ESTABLISHED
	TCPSynSent     = 2  // IP_VS_TCP_S_SYN_SENT
	TCPSynRecv     = 3  // IP_VS_TCP_S_SYN_RECV
	TCPFinWait     = 4  // IP_VS_TCP_S_FIN_WAIT
	TCPTimeWait    = 5  // IP_VS_TCP_S_TIME_WAIT
	TCPClose       = 6  // IP_VS_TCP_S_CLOSE
	TCPCloseWait   = 7  // IP_VS_TCP_S_CLOSE_WAIT
	TCPLastAck     = 8  // IP_VS_TCP_S_LAST_ACK
	TCPListen      = 9  // IP_VS_TCP_S_LISTEN
	TCPSynAck      = 10 // IP_VS_TCP_S_SYNACK
	TCPLast        = 11 // IP_VS_TCP_S_LAST

	UDPNormal = 0 // IP_VS_UDP_S_NORMAL

	TemplateNone    = 0 // IP_VS_CTPL_S_NONE
	TemplateAssured = 1 // IP_VS_CTPL_S_ASSURED
)

// numStates is pp->num_states per protocol; 0 means ip_vs_proto_get
// returns NULL (the backup drops the record).
func numStates(proto uint8) int {
	switch proto {
	case ProtoTCP:
		return TCPLast
	case ProtoUDP:
		return 1 // IP_VS_UDP_S_LAST
	case ProtoSCTP:
		return 13 // IP_VS_SCTP_S_LAST
	case ProtoAH, ProtoESP:
		return 1 // IP_VS_AH_S_LAST / ESP
	}
	return 0
}

// Seq is struct ip_vs_seq: TCP sequence adjustment for application
// helpers (FTP). All three are __u32, sent with htonl in v1.
type Seq struct {
	InitSeq       uint32 // init_seq: add delta from this seq
	Delta         uint32 // delta
	PreviousDelta uint32 // previous_delta: delta before last resized packet
}

// Header is the decoded message header.
type Header struct {
	Version uint8 // 1, or 0 for the legacy format
	SyncID  uint8
	Size    uint16 // the whole message, header included
	NConns  uint8  // nr_conns
}

// recordLen is the length of c's record without trailing padding, as
// ip_vs_sync_conn computes it, or an error for a record the kernel
// could not carry.
func recordLen(c *Conn) (int, error) {
	n := RecordLenV4
	switch {
	case c.Client.Addr().Is6() && c.Virtual.Addr().Is6() && c.Dest.Addr().Is6():
		n = RecordLenV6
	case c.Client.Addr().Is4() && c.Virtual.Addr().Is4() && c.Dest.Addr().Is4():
	default:
		return 0, fmt.Errorf("encode record %v: client, virtual and destination must be valid and of one family", c)
	}
	if c.Flags&FlagSeqMask != 0 {
		n += 2 + SeqOptionLen
	}
	if len(c.PEData) > MaxPEDataLen {
		return 0, fmt.Errorf("encode record %v: pe data is %d bytes, the limit is %d", c, len(c.PEData), MaxPEDataLen)
	}
	if len(c.PEName) > MaxPENameLen {
		return 0, fmt.Errorf("encode record %v: pe name %q is longer than %d", c, c.PEName, MaxPENameLen)
	}
	if len(c.PEData) > 0 && c.PEName == "" {
		return 0, fmt.Errorf("encode record %v: pe data without a pe name: a backup drops it", c)
	}
	if len(c.PEData) > 0 {
		n += 2 + len(c.PEData)
		if c.PEName != "" {
			n += 2 + len(c.PEName)
		}
	}
	if c.Local.IsValid() {
		a := c.Local.Addr().Unmap()
		n += 2 + 2 + a.BitLen()/8
	}
	return n, nil
}

// appendRecord appends c's v1 record (without padding) to b, laid out
// as ip_vs_sync_conn writes it.
func appendRecord(b []byte, c *Conn, n int) []byte {
	be := binary.BigEndian
	typ := byte(0)
	if c.Client.Addr().Is6() {
		typ = stypeFInet6
	}
	b = append(b, typ, c.Protocol)
	b = be.AppendUint16(b, uint16(n)&sverMask) // version 0 in the top 4 bits
	b = be.AppendUint32(b, uint32(c.Flags&^FlagHashed))
	b = be.AppendUint16(b, c.State)
	b = be.AppendUint16(b, c.Client.Port())
	b = be.AppendUint16(b, c.Virtual.Port())
	b = be.AppendUint16(b, c.Dest.Port())
	b = be.AppendUint32(b, c.Fwmark)
	b = be.AppendUint32(b, c.Timeout)
	b = append(b, c.Client.Addr().AsSlice()...)
	b = append(b, c.Virtual.Addr().AsSlice()...)
	b = append(b, c.Dest.Addr().AsSlice()...)
	if c.Flags&FlagSeqMask != 0 {
		b = append(b, OptSeqData, SeqOptionLen)
		for _, s := range [2]Seq{c.InSeq, c.OutSeq} {
			b = be.AppendUint32(b, s.InitSeq)
			b = be.AppendUint32(b, s.Delta)
			b = be.AppendUint32(b, s.PreviousDelta)
		}
	}
	// The kernel sends PE_NAME only after PE_DATA (ip_vs_sync_conn).
	if len(c.PEData) > 0 {
		b = append(b, OptPEData, byte(len(c.PEData)))
		b = append(b, c.PEData...)
		if c.PEName != "" {
			b = append(b, OptPEName, byte(len(c.PEName)))
			b = append(b, c.PEName...)
		}
	}
	if c.Local.IsValid() {
		a := c.Local.Addr().Unmap()
		b = append(b, OptXLBLocal, byte(2+a.BitLen()/8))
		b = be.AppendUint16(b, c.Local.Port())
		b = append(b, a.AsSlice()...)
	}
	return b
}

// Builder assembles one v1 message the way the kernel master fills a
// sync buffer: the header, then records, each but the first preceded by
// zero padding to 4 bytes; the header's size counts that padding but not
// any after the last record. Not safe for concurrent use.
type Builder struct {
	buf    []byte
	maxLen int
	syncID uint8
}

// NewBuilder returns a Builder for messages of at most maxLen bytes
// (the UDP payload) with the given sync ID.
func NewBuilder(maxLen int, syncID uint8) (*Builder, error) {
	if maxLen < minMaxLen || maxLen > maxMaxLen {
		return nil, fmt.Errorf("new builder: invalid max length %d: must be %d..%d", maxLen, minMaxLen, maxMaxLen)
	}
	b := &Builder{buf: make([]byte, 0, maxLen), maxLen: maxLen, syncID: syncID}
	b.Reset()
	return b, nil
}

// minMaxLen is the smallest message limit: it holds the largest record
// xlb writes (IPv6, seq, 255 bytes of PE data, a PE name, an IPv6 local
// address) behind a header.
const (
	maxRecordLen = RecordLenV6 + 2 + SeqOptionLen + 2 + MaxPEDataLen + 2 + MaxPENameLen + 2 + 18
	minMaxLen    = HeaderLen + maxRecordLen
	maxMaxLen    = 65535 - 20 - 8 // ipvsadm's limit for --sync-maxlen
)

// Reset empties the message.
func (b *Builder) Reset() {
	b.buf = append(b.buf[:0], 0, b.syncID, 0, HeaderLen, 0, ProtoVersion, 0, 0)
}

// Len is the number of records in the message.
func (b *Builder) Len() int { return int(b.buf[4]) }

// Add appends c. It reports false, and leaves the message unchanged,
// when c does not fit (by length or by the 255-record limit): send
// Bytes, Reset and add it again. It fails for a record no message can
// carry.
func (b *Builder) Add(c *Conn) (bool, error) {
	n, err := recordLen(c)
	if err != nil {
		return false, err
	}
	pad := (4 - len(b.buf)%4) % 4
	if b.Len() == MaxConnsPerMessage || len(b.buf)+pad+n > b.maxLen {
		return false, nil
	}
	for range pad {
		b.buf = append(b.buf, 0)
	}
	b.buf = appendRecord(b.buf, c, n)
	b.buf[4]++
	binary.BigEndian.PutUint16(b.buf[2:4], uint16(len(b.buf)))
	return true, nil
}

// Bytes is the message; it aliases the Builder until Reset.
func (b *Builder) Bytes() []byte { return b.buf }

// AppendMessage encodes conns into one v1 message appended to dst, for
// tests and tools; it fails if they do not fit in 255 records and 65507
// bytes.
func AppendMessage(dst []byte, syncID uint8, conns []Conn) ([]byte, error) {
	b, err := NewBuilder(maxMaxLen, syncID)
	if err != nil {
		return nil, err
	}
	for i := range conns {
		ok, err := b.Add(&conns[i])
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("encode message: record %d does not fit", i)
		}
	}
	return append(dst, b.Bytes()...), nil
}

// addrFrom returns the address in b (4 or 16 bytes).
func addrFrom(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a
}
