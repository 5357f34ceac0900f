package ipvs

import "net/netip"

// Proto is a service's IP protocol.
type Proto uint8

const (
	TCP  Proto = 6
	UDP  Proto = 17
	SCTP Proto = 132
)

// Fwd is a destination's forwarding method (IPVS's IP_VS_CONN_F_FWD_MASK).
type Fwd uint8

const (
	FwdMasq    Fwd = iota // NAT: -m, listed as "Masq"
	FwdLocal              // destination is the director itself: "Local"
	FwdTunnel             // IPIP: -i, "Tunnel"
	FwdRoute              // direct routing: -g (default), "Route"
	FwdFullNAT            // FULLNAT (DPVS, Alibaba LVS): --fullnat, "FullNat"; source and destination rewritten
)

// ServiceKey identifies a virtual service: either a firewall mark
// (FWMark != 0) or protocol, address and port.
type ServiceKey struct {
	FWMark uint32
	Proto  Proto
	Addr   netip.Addr
	Port   uint16
}

// Service is one virtual service (ipvsadm -A).
type Service struct {
	Key        ServiceKey
	Sched      string   // scheduler name, default "wlc"
	SchedFlags []string // -b, e.g. "sh-fallback", "sh-port"
	Persistent bool     // -p
	Timeout    uint32   // persistence timeout in seconds (-p [timeout])
	Netmask    int      // -M as a prefix length; 32 (IPv4) or 128 (IPv6) by default
	OnePacket  bool     // -o
	PE         string   // --pe
	// Dests are in the order they were added (ipvsadm -a). IPVS keeps its
	// list newest first, and schedulers see that order.
	Dests []Dest
	// LocalAddrs are the FULLNAT local (source NAT) addresses, in the
	// order they were added (DPVS's ipvsadm -P). Connections to FULLNAT
	// destinations leave from one of them.
	LocalAddrs []LocalAddr
}

// LocalAddr is a FULLNAT local address of a service (DPVS's ipvsadm
// --add-laddr -z ADDR [-F IFNAME]).
type LocalAddr struct {
	Addr netip.Addr
	// Ifname is the interface the address belongs to (-F), as DPVS
	// records it; "" when not given. xlb sends out whichever interface the
	// route to the real server names and keeps Ifname only to list and
	// save it.
	Ifname string
}

// Dest is one real server of a service (ipvsadm -a).
type Dest struct {
	Addr       netip.Addr
	Port       uint16
	Fwd        Fwd
	Weight     int32  // 0..65535, default 1
	UThreshold uint32 // -x
	LThreshold uint32 // -y

	// Tunnel encapsulation, only with FwdTunnel (ipvsadm --tun-type,
	// --tun-port, --tun-nocsum|--tun-csum|--tun-remcsum).
	TunType  TunType
	TunPort  uint16   // GUE's UDP destination port; required for GUE, 0 otherwise
	TunFlags TunFlags // GUE and GRE checksum mode
}

// TunType is a tunnel destination's encapsulation (IP_VS_CONN_F_TUNNEL_TYPE_*).
type TunType uint8

const (
	TunIPIP TunType = iota // IP in IP, the default: "ipip"
	TunGUE                 // Generic UDP Encapsulation: "gue"
	TunGRE                 // GRE: "gre"
)

// TunFlags is the checksum mode of GUE and GRE encapsulation
// (IP_VS_TUNNEL_ENCAP_FLAG_*). The values index ipvsadm's tables, so they
// are a mode, not a bit set.
type TunFlags uint16

const (
	TunNoCsum  TunFlags = iota // --tun-nocsum, listed as "-c"
	TunCsum                    // --tun-csum, "+c"
	TunRemCsum                 // --tun-remcsum (GUE only), "r+c"
)

// Timeouts are the values set by ipvsadm --set tcp tcpfin udp, in seconds.
type Timeouts struct {
	TCP, TCPFin, UDP uint32
}

// DefaultTimeouts are IPVS's: 900 s established, 120 s FIN_WAIT, 300 s UDP.
var DefaultTimeouts = Timeouts{TCP: 900, TCPFin: 120, UDP: 300}

// Config is a whole IPVS configuration.
type Config struct {
	Services []Service
	Timeouts Timeouts
	// Marks are the firewall-mark classifier's rules (`xlb mark`), in the
	// order added: what gives frames the marks of -f services.
	Marks []MarkRule

	// hist is what this copy's operations deleted and added again (see
	// Renewed); nil until DeleteService or Clear removes something.
	hist *history
}

// history records, for one change, which services were deleted (-D,
// -C) and then added again (-A): the kernel runs a restore file's lines
// in order, so such a service is a new one, with a new scheduler and no
// state of the old, even when it ends up as it was. The final
// configuration alone cannot tell.
type history struct {
	deleted map[ServiceKey]bool
	cleared bool // -C: every service, including any not in this copy
	renewed map[ServiceKey]bool
}
