package dataplane

import (
	"fmt"
	"net/netip"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// serviceName names a service in messages as ipvsadm's options would give
// it: "TCP 192.0.2.1:80", "UDP [2001:db8::1]:53", "fwmark 7", never the
// internal protocol or family numbers.
func serviceName(k ipvs.ServiceKey) string {
	if k.FWMark != 0 {
		if k.Addr.Is6() {
			return fmt.Sprintf("fwmark %d (IPv6)", k.FWMark)
		}
		return fmt.Sprintf("fwmark %d", k.FWMark)
	}
	return protoName(k.Proto) + " " + netip.AddrPortFrom(k.Addr, k.Port).String()
}

// protoName is ipvsadm's name for a service protocol; another IP protocol
// is named by its IANA number.
func protoName(p ipvs.Proto) string {
	switch p {
	case ipvs.TCP:
		return "TCP"
	case ipvs.UDP:
		return "UDP"
	case ipvs.SCTP:
		return "SCTP"
	}
	return fmt.Sprintf("protocol %d", uint8(p))
}

// tunName names a tunnel encapsulation as --tun-type does.
func tunName(t ipvs.TunType) string {
	switch t {
	case ipvs.TunIPIP:
		return "ipip tunneling (--tun-type ipip)"
	case ipvs.TunGUE:
		return "gue tunneling (--tun-type gue)"
	case ipvs.TunGRE:
		return "gre tunneling (--tun-type gre)"
	}
	return "an unknown tunnel type"
}
