package ipvssync

import (
	"encoding/binary"
	"net/netip"
)

// Reason says why a message or a record was dropped. The names follow
// the kernel's debug messages in ip_vs_process_message and
// ip_vs_proc_sync_conn.
type Reason uint8

// Drop reasons. The message-level ones drop the rest of the message (the
// kernel returns from ip_vs_process_message; records before the fault are
// kept, as the kernel has already applied them); the record-level ones
// drop one record (ip_vs_proc_sync_conn's positive return codes) and
// decoding goes on.
const (
	ReasonNone Reason = iota
	// Message level.
	ReasonShort       // "message header too short": fewer than 4 bytes
	ReasonSize        // "bogus message size": header size != datagram length
	ReasonTooSmall    // "Dropping buffer, too small": a record header past the end
	ReasonRecordEnd   // "msg > buffer": a record's size runs past the end
	ReasonRecordVer   // "Unknown version": nonzero version in ver_size
	ReasonRecordType  // type byte neither 0 nor STYPE_F_INET6 (-10)
	ReasonRecordSize  // size smaller than the fixed part (-20)
	ReasonOptionTrunc // option header or data past the record (-20, -30)
	ReasonOptionBad   // bad SEQ_DATA length, PE string too long, option twice (-35, -60, -70)
	ReasonV0Bogus     // v0: record or its seq options past the end
	ReasonTooLong     // Receiver: datagram longer than MaxLen (the kernel's receive buffer truncates it)
	ReasonNotPeer     // Receiver, unicast: source is not a configured peer
	// Record level.
	ReasonUnknownOption // unknown option without IPVS_OPT_F_PARAM (20)
	ReasonProtocol      // protocol IPVS does not know (30)
	ReasonState         // state >= the protocol's number of states (40)
	ReasonLocal         // xlb's local-address option malformed
	ReasonPE            // "Invalid PE parameters": PE data without a PE name (50)
	numReasons
)

// NumReasons is the number of Reason values, for counter arrays.
const NumReasons = int(numReasons)

var reasonNames = [...]string{
	ReasonNone:          "none",
	ReasonShort:         "short",
	ReasonSize:          "bogus_size",
	ReasonTooSmall:      "too_small",
	ReasonRecordEnd:     "record_past_end",
	ReasonRecordVer:     "record_version",
	ReasonRecordType:    "record_type",
	ReasonRecordSize:    "record_size",
	ReasonOptionTrunc:   "option_truncated",
	ReasonOptionBad:     "option_bad",
	ReasonV0Bogus:       "v0_bogus",
	ReasonTooLong:       "too_long",
	ReasonNotPeer:       "not_peer",
	ReasonUnknownOption: "unknown_option",
	ReasonProtocol:      "protocol",
	ReasonState:         "state",
	ReasonLocal:         "local_option",
	ReasonPE:            "pe_params",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Result is one decoded message.
type Result struct {
	Header Header
	// Conns are the records accepted, in message order. They alias the
	// Decoder's storage (PEData aliases the message) until the next
	// Decode; copy what you keep.
	Conns []Conn
	// Dropped is the message-level reason, ReasonNone if the whole
	// message was read.
	Dropped Reason
	// Skipped counts records dropped alone, by reason.
	Skipped [NumReasons]uint32
}

// Decoder decodes sync messages, v1 and v0, as the kernel's backup
// does. Reuse one to avoid allocating per message. Not safe for
// concurrent use.
type Decoder struct {
	conns []Conn
}

// Decode decodes message b (one UDP payload). It never panics on any
// input. Syncid filtering is the caller's (Receiver's): Result.Header
// has the ID.
func (d *Decoder) Decode(b []byte) Result {
	d.conns = d.conns[:0]
	var r Result
	if len(b) < HeaderLenV0 {
		r.Dropped = ReasonShort
		return r
	}
	be := binary.BigEndian
	r.Header.SyncID = b[1]
	r.Header.Size = be.Uint16(b[2:4])
	if int(r.Header.Size) != len(b) {
		r.Dropped = ReasonSize
		return r
	}
	// A v1 header has reserved = 0, version = 1 and spare = 0; anything
	// else is taken for v0, as ip_vs_process_message does.
	if len(b) >= HeaderLen && b[0] == 0 && b[5] == ProtoVersion && b[6] == 0 && b[7] == 0 {
		r.Header.Version = ProtoVersion
		r.Header.NConns = b[4]
		r.Dropped = d.decodeV1(b, &r)
	} else {
		r.Header.NConns = b[0]
		r.Dropped = d.decodeV0(b, &r)
	}
	r.Conns = d.conns
	return r
}

func (d *Decoder) decodeV1(b []byte, r *Result) Reason {
	end := HeaderLen
	for range int(r.Header.NConns) {
		p := end
		if p+RecordLenV4 > len(b) {
			return ReasonTooSmall
		}
		vs := binary.BigEndian.Uint16(b[p+2:])
		size := int(vs & sverMask)
		if p+size > len(b) {
			return ReasonRecordEnd
		}
		if vs>>sverShift != 0 {
			return ReasonRecordVer
		}
		if why := d.record(b[p:], size, r); why != ReasonNone {
			return why
		}
		end = p + (size+3)&^3
	}
	return ReasonNone
}

// record decodes one v1 record of size bytes at the start of rec (which
// holds at least RecordLenV4 bytes and size), appending it to d.conns or
// counting it in r.Skipped; it returns a message-level reason for the
// kernel's negative return codes. Like the kernel it reads the type byte
// before comparing size with the fixed part.
func (d *Decoder) record(rec []byte, size int, r *Result) Reason {
	be := binary.BigEndian
	var alen, fixed int
	switch rec[0] {
	case stypeFInet6:
		alen, fixed = 16, RecordLenV6
	case 0:
		alen, fixed = 4, RecordLenV4
	default:
		// The kernel tests the bit (type & STYPE_F_INET6) first, so any
		// odd type is IPv6 to it; other nonzero types are -10. Follow it.
		if rec[0]&stypeFInet6 == 0 {
			return ReasonRecordType
		}
		alen, fixed = 16, RecordLenV6
	}
	if size < fixed {
		return ReasonRecordSize
	}
	rec = rec[:size]
	c := Conn{
		Protocol: rec[1],
		Flags:    Flags(be.Uint32(rec[4:])),
		State:    be.Uint16(rec[8:]),
		Fwmark:   be.Uint32(rec[16:]),
		Timeout:  be.Uint32(rec[20:]),
	}
	a := 24
	c.Client = netip.AddrPortFrom(addrFrom(rec[a:a+alen]), be.Uint16(rec[10:]))
	c.Virtual = netip.AddrPortFrom(addrFrom(rec[a+alen:a+2*alen]), be.Uint16(rec[12:]))
	c.Dest = netip.AddrPortFrom(addrFrom(rec[a+2*alen:a+3*alen]), be.Uint16(rec[14:]))

	var seen uint32 // opt_flags
	skip := ReasonNone
	for p := fixed; p < len(rec); {
		if p+2 > len(rec) {
			return ReasonOptionTrunc
		}
		typ, plen := rec[p], int(rec[p+1])
		p += 2
		if plen == 0 || p+plen > len(rec) {
			return ReasonOptionTrunc
		}
		data := rec[p : p+plen]
		switch typ &^ OptFParam {
		case OptSeqData:
			if plen != SeqOptionLen || seen&(1<<(OptSeqData-1)) != 0 {
				return ReasonOptionBad
			}
			seen |= 1 << (OptSeqData - 1)
			c.InSeq = Seq{be.Uint32(data), be.Uint32(data[4:]), be.Uint32(data[8:])}
			c.OutSeq = Seq{be.Uint32(data[12:]), be.Uint32(data[16:]), be.Uint32(data[20:])}
		case OptPEData:
			if plen > MaxPEDataLen || seen&(1<<(OptPEData-1)) != 0 {
				return ReasonOptionBad
			}
			seen |= 1 << (OptPEData - 1)
			c.PEData = data
		case OptPEName:
			if plen > MaxPENameLen || seen&(1<<(OptPEName-1)) != 0 {
				return ReasonOptionBad
			}
			seen |= 1 << (OptPEName - 1)
			c.PEName = string(data)
		default:
			switch {
			case typ == OptXLBLocal:
				if c.Local.IsValid() || (plen != 6 && plen != 18) {
					skip = ReasonLocal
					break
				}
				c.Local = netip.AddrPortFrom(addrFrom(data[2:]), be.Uint16(data))
			case typ&OptFParam == 0:
				// "Unknown mandatory param": the kernel drops the
				// record (retc 20) without reading further options.
				r.Skipped[ReasonUnknownOption]++
				return ReasonNone
			}
			// Unknown with IPVS_OPT_F_PARAM: optional, skipped.
		}
		p += plen
	}
	if c.PEData != nil && c.PEName == "" {
		// ip_vs_conn_fill_param_sync needs the engine's name to use its
		// data. (A name it does not know, a PE module not loaded, drops
		// the record there too; xlb has no PE, so that is the caller's.)
		skip = ReasonPE
	}
	if skip != ReasonNone {
		r.Skipped[skip]++
		return ReasonNone
	}
	c.Flags = c.Flags&FlagBackupMask | FlagSync
	if !c.Template() {
		n := numStates(c.Protocol)
		if n == 0 {
			r.Skipped[ReasonProtocol]++
			return ReasonNone
		}
		if int(c.State) >= n {
			r.Skipped[ReasonState]++
			return ReasonNone
		}
	}
	// A template's state is unused; the kernel only logs a bad one.
	d.conns = append(d.conns, c)
	return ReasonNone
}

// decodeV0 reads the legacy format as ip_vs_process_message_v0 does:
// IPv4 only, 24-byte records (struct ip_vs_sync_conn_v0: reserved,
// protocol, cport, vport, dport, caddr, vaddr, daddr, __be16 flags,
// __be16 state), each followed by a struct ip_vs_sync_conn_options when
// the flags have IP_VS_CONN_F_SEQ_MASK. v0 carries no timeout (the
// kernel passes 0: the protocol default) and no fwmark. The v0 sequence
// options are memcpy'd from the master's struct, so they are in its host
// byte order; they are decoded as little-endian (x86, arm64).
func (d *Decoder) decodeV0(b []byte, r *Result) Reason {
	be, le := binary.BigEndian, binary.LittleEndian
	p := HeaderLenV0
	for range int(r.Header.NConns) {
		if p+RecordLenV0 > len(b) {
			return ReasonV0Bogus
		}
		s := b[p:]
		c := Conn{Protocol: s[1]}
		c.Client = netip.AddrPortFrom(addrFrom(s[8:12]), be.Uint16(s[2:]))
		c.Virtual = netip.AddrPortFrom(addrFrom(s[12:16]), be.Uint16(s[4:]))
		c.Dest = netip.AddrPortFrom(addrFrom(s[16:20]), be.Uint16(s[6:]))
		c.Flags = (Flags(be.Uint16(s[20:])) | FlagSync) &^ FlagHashed
		c.State = be.Uint16(s[22:])
		if c.Flags&FlagSeqMask != 0 {
			if p+RecordLenV0+SeqOptionLen > len(b) {
				return ReasonV0Bogus
			}
			o := s[RecordLenV0:]
			c.InSeq = Seq{le.Uint32(o), le.Uint32(o[4:]), le.Uint32(o[8:])}
			c.OutSeq = Seq{le.Uint32(o[12:]), le.Uint32(o[16:]), le.Uint32(o[20:])}
			p += RecordLenV0 + SeqOptionLen
		} else {
			p += RecordLenV0
		}
		if !c.Template() {
			n := numStates(c.Protocol)
			if n == 0 {
				r.Skipped[ReasonProtocol]++
				continue
			}
			if int(c.State) >= n {
				r.Skipped[ReasonState]++
				continue
			}
		}
		d.conns = append(d.conns, c)
	}
	return ReasonNone
}
