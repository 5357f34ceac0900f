package ipvs

import (
	"net/netip"
	"slices"
	"strings"
)

// IfNameMax is the longest interface name Linux takes (IFNAMSIZ - 1).
const IfNameMax = 15

// LocalAddr returns the local address a of s, or nil.
func (s *Service) LocalAddr(a netip.Addr) *LocalAddr {
	if i := s.localAddrIndex(a); i >= 0 {
		return &s.LocalAddrs[i]
	}
	return nil
}

func (s *Service) localAddrIndex(a netip.Addr) int {
	for i := range s.LocalAddrs {
		if s.LocalAddrs[i].Addr == a {
			return i
		}
	}
	return -1
}

// AddLocalAddr adds FULLNAT local address la to the service with key k
// (DPVS's ipvsadm -P -t VIP:port -z ADDR [-F IFNAME]). The address must
// be a unicast address of the service's family; it may be shared with
// other services (the port pool is per address, not per service).
// Errors: ErrServiceNotDefined, ErrAddrFamily, ErrInvalid (not unicast,
// bad interface name), ErrLocalAddrExists.
func (c *Config) AddLocalAddr(k ServiceKey, la LocalAddr) error {
	s := c.Service(k)
	if s == nil {
		return ErrServiceNotDefined
	}
	if !la.Addr.IsValid() || la.Addr.Zone() != "" {
		return ErrInvalid.with("local address %v: must be an IPv4 or IPv6 address without zone", la.Addr)
	}
	if la.Addr.Is6() != s.Key.IPv6() {
		return ErrAddrFamily.with("local address %v: the service is %s", la.Addr, familyName(s.Key.IPv6()))
	}
	if err := checkUnicast(la.Addr); err != nil {
		return ErrInvalid.with("local address %v: not unicast", la.Addr)
	}
	if err := checkIfname(la.Ifname); err != nil {
		return err
	}
	if s.localAddrIndex(la.Addr) >= 0 {
		return ErrLocalAddrExists
	}
	s.LocalAddrs = append(s.LocalAddrs, la)
	return nil
}

// DeleteLocalAddr removes local address a from the service with key k
// (DPVS's ipvsadm -Q). Like DPVS it matches the address alone, whatever
// the interface. Connections already bound to a keep it until they
// expire; that is the dataplane's business. Errors: ErrServiceNotDefined,
// ErrNoLocalAddr.
func (c *Config) DeleteLocalAddr(k ServiceKey, a netip.Addr) error {
	s := c.Service(k)
	if s == nil {
		return ErrServiceNotDefined
	}
	i := s.localAddrIndex(a)
	if i < 0 {
		return ErrNoLocalAddr
	}
	s.LocalAddrs = slices.Delete(s.LocalAddrs, i, i+1)
	return nil
}

// checkIfname is the kernel's dev_valid_name, with "" for no name.
func checkIfname(n string) error {
	if n == "" {
		return nil
	}
	if len(n) > IfNameMax || n == "." || n == ".." || strings.ContainsAny(n, "/: \t\n\v\f\r\x00") {
		return ErrInvalid.with("interface name %q: must be 1..%d bytes, not . or .., without '/', ':' or spaces", n, IfNameMax)
	}
	return nil
}

func familyName(ipv6 bool) string {
	if ipv6 {
		return "IPv6"
	}
	return "IPv4"
}
