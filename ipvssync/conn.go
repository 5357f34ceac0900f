package ipvssync

import (
	"fmt"
	"net/netip"
)

// Method is the forwarding method of a synced connection.
type Method uint8

// Forwarding methods. The first five are IP_VS_CONN_F_FWD_MASK values;
// FullNAT is xlb's: on the wire it is Masq plus the OptXLBLocal option.
const (
	MethodNAT     Method = Method(FlagMasq)
	MethodLocal   Method = Method(FlagLocalNode)
	MethodTunnel  Method = Method(FlagTunnel)
	MethodDR      Method = Method(FlagDRoute)
	MethodBypass  Method = Method(FlagBypass)
	MethodFullNAT Method = 8
)

func (m Method) String() string {
	switch m {
	case MethodNAT:
		return "Masq"
	case MethodLocal:
		return "Local"
	case MethodTunnel:
		return "Tunnel"
	case MethodDR:
		return "Route"
	case MethodBypass:
		return "Bypass"
	case MethodFullNAT:
		return "FullNat"
	}
	return fmt.Sprintf("Method(%d)", uint8(m))
}

// Conn is one synced connection or persistence template, independent of
// xlb's conntrack: it carries exactly what a v1 record carries, plus the
// FULLNAT local address.
//
// Mapping from a conntrack entry (what the lead's export does):
//   - Protocol: the IP protocol number; ProtoIP (0) for a fwmark template.
//   - Client, Virtual, Dest: client addr:port, VIP:vport, real server
//     addr:port, all of one family (the kernel record has one type byte).
//     Destination IDs are local to a director, so records carry addresses;
//     the backup maps Dest back to its own destination.
//   - Fwmark: the firewall mark of a fwmark service, else 0.
//   - Flags: the forwarding method in FlagFwdMask (SetMethod: modes.Masq,
//     Local, Tunnel, Route are the same numbers as MethodNAT .. MethodDR,
//     but modes.FullNAT is 4, which is IP_VS_CONN_F_BYPASS on the wire:
//     map it to MethodFullNAT, never copy it into Flags), FlagInactive
//     while not established, FlagTemplate for a template, FlagOnePacket for
//     -o services, FlagNoCPort for a template created before the port was
//     known. FlagSync and FlagHashed are the receiver's business.
//   - State: the kernel's state number: TCP* constants for TCP,
//     UDPNormal for UDP, TemplateNone or TemplateAssured for templates.
//     conntrack.State's TCP values (StateNone .. StateSynAck, 0..10) are
//     already IP_VS_TCP_S_*; but conntrack.StateUDP (11) is UDPNormal (0)
//     here and StateTemplateNone/Assured are TemplateNone/Assured (0, 1).
//     conntrack.StateICMP has no kernel counterpart: IPVS does not sync
//     ICMP (ip_vs_proto_get has no ICMP), and a backup, kernel or xlb,
//     drops such a record (ReasonProtocol); don't export ICMP entries.
//   - Timeout: the full timeout of the entry's current state, in seconds,
//     as the kernel sends cp->timeout/HZ: not the time left. The backup
//     restarts the timer with it on every record. 0 means "the
//     protocol's default for State".
//   - Templates (persistence): Client is the client address masked with
//     the service's persistence netmask, client port 0; Virtual is the
//     VIP and service port (port 0 for a port-0 service); for a fwmark
//     service Protocol is ProtoIP, Virtual's address is the mark as an
//     IPv4 address (htonl(fwmark)) with port 0 and Fwmark is the mark.
//     The netmask itself is not on the wire: the backup takes it from its
//     own service.
//   - Local: the FULLNAT local addr:port (the backup must reserve that
//     port in its own pool). Only xlb reads it; a kernel backup sees a NAT
//     connection.
type Conn struct {
	Protocol uint8
	Client   netip.AddrPort
	Virtual  netip.AddrPort
	Dest     netip.AddrPort
	Fwmark   uint32
	Flags    Flags
	State    uint16
	Timeout  uint32 // seconds

	// InSeq and OutSeq are sent when Flags has FlagInSeq or FlagOutSeq.
	InSeq, OutSeq Seq
	// PEData and PEName are the persistence engine's (the kernel's sip
	// PE); PEName is sent only with PEData.
	PEData []byte
	PEName string

	// Local is the FULLNAT local address and port; invalid for others.
	Local netip.AddrPort
}

// Method is the forwarding method: FullNAT when the record carries a
// local address, else the FlagFwdMask bits.
func (c *Conn) Method() Method {
	if c.Local.IsValid() && c.Flags&FlagFwdMask == FlagMasq {
		return MethodFullNAT
	}
	return Method(c.Flags & FlagFwdMask)
}

// SetMethod sets the forwarding bits for m. For MethodFullNAT it sets
// Masq; the caller sets Local.
func (c *Conn) SetMethod(m Method) {
	f := Flags(m) & FlagFwdMask
	if m == MethodFullNAT {
		f = FlagMasq
	}
	c.Flags = c.Flags&^FlagFwdMask | f
}

// Template reports whether c is a persistence template.
func (c *Conn) Template() bool { return c.Flags&FlagTemplate != 0 }

func (c *Conn) String() string {
	s := fmt.Sprintf("proto %d %v -> %v -> %v flags %#x state %d timeout %ds", c.Protocol, c.Client, c.Virtual, c.Dest, uint32(c.Flags), c.State, c.Timeout)
	if c.Fwmark != 0 {
		s += fmt.Sprintf(" fwmark %d", c.Fwmark)
	}
	if c.Local.IsValid() {
		s += fmt.Sprintf(" local %v", c.Local)
	}
	return s
}
