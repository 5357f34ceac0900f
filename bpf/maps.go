//go:build linux

package bpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// IP protocol numbers the XDP program steers.
const (
	ProtoTCP = 6
	ProtoUDP = 17
)

// ServiceKey names a TCP or UDP endpoint: a virtual service, or a real
// server whose replies are steered. IPv4 addresses are stored IPv4-mapped,
// so an IPv4-mapped IPv6 address is rejected as ambiguous.
type ServiceKey struct {
	Addr  netip.Addr
	Port  uint16
	Proto uint8
}

// String formats k like ipvsadm: "TCP 192.0.2.1:80".
func (k ServiceKey) String() string {
	var p string
	switch k.Proto {
	case ProtoTCP:
		p = "TCP"
	case ProtoUDP:
		p = "UDP"
	default:
		p = fmt.Sprintf("proto %d", k.Proto)
	}
	return p + " " + netip.AddrPortFrom(k.Addr, k.Port).String()
}

// serviceKey mirrors struct svc_key in xdp.c.
type serviceKey struct {
	Addr  [16]byte // IPv6, or IPv4-mapped ::ffff:a.b.c.d
	Port  [2]byte  // __be16
	Proto uint8
	Pad   uint8 // always 0: hash keys compare every byte
}

// serviceValue mirrors struct svc_value in xdp.c.
type serviceValue struct {
	ID    uint32
	Flags uint32 // svcDraining, or 0
}

// svcDraining is XLB_SVC_DRAINING in xdp.c.
const svcDraining = 1

// xdpLocalKey mirrors struct local_key in xdp.c.
type xdpLocalKey struct {
	Addr [16]byte // IPv6, or IPv4-mapped
}

// Flags of the locals map's values (XLB_LOCAL_* in xdp.c).
const (
	localOwn   = 1
	localLaddr = 2
)

// realValue mirrors the __u32 value of the reals map, which is unused and 0.
type realValue uint32

// mapKey validates k and converts it to the map's form.
func (k ServiceKey) mapKey() (serviceKey, error) {
	var mk serviceKey
	switch {
	case !k.Addr.IsValid():
		return mk, fmt.Errorf("invalid address %v: must be IPv4 or IPv6", k.Addr)
	case k.Addr.Is4In6():
		return mk, fmt.Errorf("invalid address %v: must be IPv4 or IPv6, not IPv4-mapped IPv6", k.Addr)
	case k.Addr.Zone() != "":
		return mk, fmt.Errorf("invalid address %v: must have no zone", k.Addr)
	case k.Proto != ProtoTCP && k.Proto != ProtoUDP:
		return mk, fmt.Errorf("invalid protocol %d: must be %d (TCP) or %d (UDP)", k.Proto, ProtoTCP, ProtoUDP)
	}
	// Port 0 is a persistent all-ports service (or a NAT real server of
	// one, answering from any port): the XDP program looks it up when no
	// entry matches the frame's port exactly.
	mk.Addr = k.Addr.As16() // IPv4 becomes ::ffff:a.b.c.d
	binary.BigEndian.PutUint16(mk.Port[:], k.Port)
	mk.Proto = k.Proto
	return mk, nil
}

// synGuard mirrors struct syn_guard in xdp.c.
type synGuard struct {
	Level      uint32 // SYNLevel
	AutoPerMs  uint32
	IntervalNs uint64
	BurstNs    uint64
}

// synAuto mirrors struct syn_auto in xdp.c.
type synAuto struct {
	Window uint64
	Count  uint64
	Until  uint64
}

// srcPrefix mirrors struct src_prefix in xdp.c.
type srcPrefix struct {
	Addr [16]byte
}

// srcState mirrors struct src_state in xdp.c.
type srcState struct {
	Tat   uint64
	Acked uint64
}
