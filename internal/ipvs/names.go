package ipvs

import (
	"fmt"
	"net/netip"
)

// String names p as ipvsadm does: "TCP", "UDP", "SCTP"; another IP
// protocol by its number, "protocol 50".
func (p Proto) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	case SCTP:
		return "SCTP"
	}
	return fmt.Sprintf("protocol %d", uint8(p))
}

// String names f as ipvsadm -L lists it: "Route", "Masq", "Local",
// "Tunnel", and DPVS's "FullNat".
func (f Fwd) String() string {
	switch f {
	case FwdRoute:
		return "Route"
	case FwdMasq:
		return "Masq"
	case FwdLocal:
		return "Local"
	case FwdTunnel:
		return "Tunnel"
	case FwdFullNAT:
		return "FullNat"
	}
	return fmt.Sprintf("forwarding method %d", uint8(f))
}

// String names k for messages and logs, as a person writes a service:
// "TCP 192.0.2.1:80", "UDP [2001:db8::1]:53", "fwmark 7", "fwmark 7
// (IPv6)".
func (k ServiceKey) String() string {
	if k.IsFWMark() {
		if k.IPv6() {
			return fmt.Sprintf("fwmark %d (IPv6)", k.FWMark)
		}
		return fmt.Sprintf("fwmark %d", k.FWMark)
	}
	return k.Proto.String() + " " + netip.AddrPortFrom(k.Addr, k.Port).String()
}
