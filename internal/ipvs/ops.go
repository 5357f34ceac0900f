package ipvs

import (
	"maps"
	"net/netip"
	"slices"

	"github.com/xlbproject/xlb/sched"
)

// MaxTimeout is the longest persistence or protocol timeout ipvsadm takes:
// 31 days, in seconds (MAX_TIMEOUT).
const MaxTimeout = 86400 * 31

// DefaultPersistTimeout is the persistence timeout of a bare -p: 360 s
// (IPVS_SVC_PERSISTENT_TIMEOUT; ipvsadm's man page says 300).
const DefaultPersistTimeout = 6 * 60

// MaxWeight is the largest weight ipvsadm takes.
const MaxWeight = 65535

// FWMarkKey is the key of the firewall-mark service mark (ipvsadm -f mark,
// with -6 for IPv6). IPVS tells such services apart by mark and address
// family only; the family is carried by the unspecified address of the
// family.
func FWMarkKey(mark uint32, ipv6 bool) ServiceKey {
	if ipv6 {
		return ServiceKey{FWMark: mark, Addr: netip.IPv6Unspecified()}
	}
	return ServiceKey{FWMark: mark, Addr: netip.IPv4Unspecified()}
}

// IsFWMark reports whether k is a firewall-mark service.
func (k ServiceKey) IsFWMark() bool { return k.FWMark != 0 }

// IPv6 reports whether k is an IPv6 service. A firewall-mark key with no
// address is IPv4.
func (k ServiceKey) IPv6() bool { return k.Addr.Is6() }

// canonical is k as xlb stores it: a firewall-mark key has no protocol or
// port and the unspecified address of its family.
func (k ServiceKey) canonical() ServiceKey {
	if k.FWMark != 0 {
		return FWMarkKey(k.FWMark, k.Addr.Is6())
	}
	return k
}

// NewService returns a service with ipvsadm's defaults: scheduler wlc, no
// persistence, netmask /32 or /128.
func NewService(k ServiceKey) Service {
	s := Service{Key: k.canonical(), Sched: DefaultSched, Netmask: 32}
	if s.Key.IPv6() {
		s.Netmask = 128
	}
	return s
}

// NewDest returns a destination with ipvsadm's defaults: direct routing,
// weight 1.
func NewDest(ap netip.AddrPort) Dest {
	return Dest{Addr: ap.Addr(), Port: ap.Port(), Fwd: FwdRoute, Weight: 1}
}

// AddrPort is d's address and port.
func (d *Dest) AddrPort() netip.AddrPort { return netip.AddrPortFrom(d.Addr, d.Port) }

// Service returns the service with key k, or nil. Like IPVS, it finds a
// firewall-mark service by mark and family alone.
func (c *Config) Service(k ServiceKey) *Service {
	k = k.canonical()
	for i := range c.Services {
		if c.Services[i].Key == k {
			return &c.Services[i]
		}
	}
	return nil
}

// Dest returns the destination with address and port ap, or nil.
func (s *Service) Dest(ap netip.AddrPort) *Dest {
	if i := s.destIndex(ap); i >= 0 {
		return &s.Dests[i]
	}
	return nil
}

func (s *Service) destIndex(ap netip.AddrPort) int {
	for i := range s.Dests {
		if s.Dests[i].Addr == ap.Addr() && s.Dests[i].Port == ap.Port() {
			return i
		}
	}
	return -1
}

// Clone returns a deep copy of c.
func (c *Config) Clone() *Config {
	n := &Config{Timeouts: c.Timeouts, Marks: slices.Clone(c.Marks)}
	if h := c.hist; h != nil {
		n.hist = &history{deleted: maps.Clone(h.deleted), cleared: h.cleared, renewed: maps.Clone(h.renewed)}
	}
	if c.Services != nil {
		n.Services = make([]Service, len(c.Services))
		for i, s := range c.Services {
			n.Services[i] = s.clone()
		}
	}
	return n
}

func (s Service) clone() Service {
	s.SchedFlags = slices.Clone(s.SchedFlags)
	s.Dests = slices.Clone(s.Dests)
	s.LocalAddrs = slices.Clone(s.LocalAddrs)
	return s
}

// AddService adds service s without destinations (ipvsadm -A). An empty
// Sched is wlc. Errors: ErrZeroPort, ErrOnePacket, scheduler-flag errors,
// ErrInvalid for a malformed key or setting, ErrServiceExists,
// ErrSchedNotFound (also for any persistence engine: xlb has none).
// On error c is unchanged.
func (c *Config) AddService(s Service) error {
	if len(s.Dests) != 0 {
		return ErrInvalid.with("a new service has no destinations: add them with AddDest")
	}
	if len(s.LocalAddrs) != 0 {
		return ErrInvalid.with("a new service has no local addresses: add them with AddLocalAddr")
	}
	n, err := checkService(s)
	if err != nil {
		return err
	}
	if c.Service(n.Key) != nil {
		return ErrServiceExists
	}
	if err := checkServiceKernel(&n); err != nil {
		return err
	}
	c.Services = append(c.Services, n)
	if h := c.hist; h != nil && (h.cleared || h.deleted[n.Key]) {
		if h.renewed == nil {
			h.renewed = map[ServiceKey]bool{}
		}
		h.renewed[n.Key] = true
	}
	return nil
}

// Renewed reports whether the operations on this configuration since it
// was last made a running one (Settled) deleted service k (DeleteService,
// or Clear) and then added it again (AddService), as a restore file's -D
// or -C and -A lines do. IPVS frees a deleted service with its scheduler
// and -A makes a new one: the dataplane applies a renewed service so,
// even when it ends up the same as the running one, keeping only what a
// deleted service's connections keep (their real servers, and the
// persistence templates on them). Clear renews every service added after
// it, whether this copy had it or not: a rules file read from empty
// (`xlb run --rules`, SIGHUP) that starts with -C renews all it adds.
func (c *Config) Renewed(k ServiceKey) bool {
	return c.hist != nil && c.hist.renewed[k.canonical()]
}

// Settled returns c as a running configuration: a shallow copy that
// remembers no deletion (Renewed is false for every service), for the
// next change to start from.
func (c *Config) Settled() *Config {
	if c.hist == nil {
		return c
	}
	n := *c
	n.hist = nil
	return &n
}

// noteDeleted records that service k is gone.
func (c *Config) noteDeleted(k ServiceKey) {
	if c.hist == nil {
		c.hist = &history{}
	}
	if c.hist.deleted == nil {
		c.hist.deleted = map[ServiceKey]bool{}
	}
	c.hist.deleted[k] = true
}

// EditService replaces the settings of the service with key s.Key
// (ipvsadm -E): scheduler and its flags, persistence, netmask, one-packet
// scheduling and persistence engine. Like IPVS it sets all of them, so a
// setting left at its zero value is cleared. The destinations and local
// addresses stay.
// Errors as AddService, with ErrNoService for a missing service.
func (c *Config) EditService(s Service) error {
	n, err := checkService(s)
	if err != nil {
		return err
	}
	old := c.Service(n.Key)
	if old == nil {
		return ErrNoService
	}
	if err := checkServiceKernel(&n); err != nil {
		return err
	}
	n.Dests, n.LocalAddrs = old.Dests, old.LocalAddrs
	*old = n
	return nil
}

// DeleteService removes the service with key k and its destinations
// (ipvsadm -D). Error: ErrNoService.
func (c *Config) DeleteService(k ServiceKey) error {
	k = k.canonical()
	for i := range c.Services {
		if c.Services[i].Key == k {
			c.Services = slices.Delete(c.Services, i, i+1)
			c.noteDeleted(k)
			return nil
		}
	}
	return ErrNoService
}

// Clear removes every service (ipvsadm -C). The timeouts stay.
func (c *Config) Clear() {
	if c.hist == nil {
		c.hist = &history{}
	}
	c.hist.cleared = true
	c.Services = nil
}

// AddDest adds destination d to the service with key k (ipvsadm -a).
//
// For a direct-routing, tunnel or local destination of a service that is
// not a firewall-mark one, the port is forced to the service's port, as
// ipvsadm does: such packets go out with the virtual port. Errors:
// ErrServiceNotDefined, ErrMixedFamily, ErrTunnelOpts, ErrInvalid (bad
// address, tunnel settings, forwarding method), ErrRange (weight out of
// 0..65535, lower threshold above the upper one), ErrDestExists.
func (c *Config) AddDest(k ServiceKey, d Dest) error {
	s := c.Service(k)
	if s == nil {
		return ErrServiceNotDefined
	}
	return s.addDest(d, func(ap netip.AddrPort) bool { return s.destIndex(ap) >= 0 })
}

// addDest is AddDest on s, with has telling whether s already has a
// destination (Validate keeps a set: a linear scan per destination made
// checking a 50,000-destination service take seconds).
func (s *Service) addDest(d Dest, has func(netip.AddrPort) bool) error {
	if err := checkDest(s, &d); err != nil {
		return err
	}
	if has(d.AddrPort()) {
		return ErrDestExists
	}
	if err := checkUnicast(d.Addr); err != nil {
		return err
	}
	s.Dests = append(s.Dests, d)
	return nil
}

// EditDest replaces the settings of an existing destination (ipvsadm -e):
// forwarding method, weight, thresholds and tunnel settings, all of them as
// IPVS does. The port is forced as in AddDest before the destination is
// looked up. Errors as AddDest, with ErrNoDest for a missing destination.
func (c *Config) EditDest(k ServiceKey, d Dest) error {
	s := c.Service(k)
	if s == nil {
		return ErrServiceNotDefined
	}
	if err := checkDest(s, &d); err != nil {
		return err
	}
	i := s.destIndex(d.AddrPort())
	if i < 0 {
		return ErrNoDest
	}
	s.Dests[i] = d
	return nil
}

// DeleteDest removes destination ap from the service with key k
// (ipvsadm -d). Errors: ErrServiceNotDefined, ErrNoDest.
func (c *Config) DeleteDest(k ServiceKey, ap netip.AddrPort) error {
	s := c.Service(k)
	if s == nil {
		return ErrServiceNotDefined
	}
	i := s.destIndex(ap)
	if i < 0 {
		return ErrNoDest
	}
	s.Dests = slices.Delete(s.Dests, i, i+1)
	return nil
}

// SetTimeouts sets the TCP, TCP FIN_WAIT and UDP timeouts (ipvsadm --set);
// a zero value keeps the current one. Error: ErrInvalid for a value above
// MaxTimeout.
func (c *Config) SetTimeouts(t Timeouts) error {
	for _, v := range []uint32{t.TCP, t.TCPFin, t.UDP} {
		if v > MaxTimeout {
			return ErrInvalid.with("timeout %d: must be 0..%d seconds", v, MaxTimeout)
		}
	}
	if t.TCP != 0 {
		c.Timeouts.TCP = t.TCP
	}
	if t.TCPFin != 0 {
		c.Timeouts.TCPFin = t.TCPFin
	}
	if t.UDP != 0 {
		c.Timeouts.UDP = t.UDP
	}
	return nil
}

// Validate checks a configuration built by hand by replaying it into an
// empty one: each service with AddService, its destinations in order with
// AddDest, its local addresses in order with AddLocalAddr, and the
// timeouts. It returns the first refusal. Destination
// ports it would force (see AddDest) are refused here rather than changed.
func (c *Config) Validate() error {
	var n Config
	for i := range c.Services {
		s := c.Services[i]
		dests, laddrs := s.Dests, s.LocalAddrs
		s.Dests, s.LocalAddrs = nil, nil
		if err := n.AddService(s); err != nil {
			return err
		}
		ns := &n.Services[len(n.Services)-1]
		seen := make(map[netip.AddrPort]bool, len(dests))
		for _, d := range dests {
			if err := ns.addDest(d, func(ap netip.AddrPort) bool { return seen[ap] }); err != nil {
				return err
			}
			got := ns.Dests
			seen[got[len(got)-1].AddrPort()] = true
			if got[len(got)-1].Port != d.Port {
				return ErrInvalid.with("destination %v: port must be the service's %d with this forwarding method",
					d.AddrPort(), s.Key.Port)
			}
		}
		for _, la := range laddrs {
			if err := n.AddLocalAddr(s.Key, la); err != nil {
				return err
			}
		}
		if ns := n.Service(s.Key); ns.Sched != s.Sched || !slices.Equal(ns.SchedFlags, s.SchedFlags) || ns.Key != s.Key {
			return ErrInvalid.with("service %v: not in canonical form (scheduler %q, flags %q)", s.Key, ns.Sched, ns.SchedFlags)
		}
	}
	t := c.Timeouts
	for _, v := range []uint32{t.TCP, t.TCPFin, t.UDP} {
		if v == 0 || v > MaxTimeout {
			return ErrInvalid.with("timeout %d: must be 1..%d seconds", v, MaxTimeout)
		}
	}
	return c.validateMarks()
}

// checkService checks what ipvsadm and xlb check before asking the kernel
// and returns s in canonical form: canonical key, scheduler "wlc" when
// empty, scheduler flags in ipvsadm's names and order, no destinations.
func checkService(s Service) (Service, error) {
	k := s.Key
	if k.FWMark == 0 {
		if !k.Addr.IsValid() || k.Addr.Zone() != "" {
			return s, ErrInvalid.with("service address %v: must be an IPv4 or IPv6 address without zone", k.Addr)
		}
		if k.Proto != TCP && k.Proto != UDP && k.Proto != SCTP {
			return s, ErrInvalid.with("service protocol %d: must be TCP, UDP or SCTP", k.Proto)
		}
		if k.Port == 0 && !s.Persistent {
			return s, ErrZeroPort
		}
		if s.OnePacket && k.Proto != UDP {
			return s, ErrOnePacket
		}
	} else if k.Addr.IsValid() && !k.Addr.IsUnspecified() || k.Port != 0 {
		return s, ErrInvalid.with("firewall-mark service %d: has an address or port", k.FWMark)
	}
	s.Key = k.canonical()
	if s.Sched == "" {
		s.Sched = DefaultSched
	}
	bits, err := SchedFlagBits(s.Sched, s.SchedFlags)
	if err != nil {
		return s, err
	}
	s.SchedFlags = SchedFlagNames(s.Sched, bits)
	if s.Persistent {
		if s.Timeout < 1 || s.Timeout > MaxTimeout {
			return s, ErrInvalid.with("persistence timeout %d: must be 1..%d seconds", s.Timeout, MaxTimeout)
		}
	} else if s.Timeout != 0 {
		return s, ErrInvalid.with("persistence timeout %d without persistence", s.Timeout)
	}
	s.Dests, s.LocalAddrs = nil, nil
	return s, nil
}

// checkServiceKernel checks what the kernel checks once it knows whether
// the service exists: scheduler, persistence engine, netmask.
func checkServiceKernel(s *Service) error {
	if !KnownScheduler(s.Sched) {
		return ErrSchedNotFound.with("scheduler %q: xlb has %v", s.Sched, sched.Names())
	}
	if s.PE != "" {
		return ErrSchedNotFound.with("persistence engine %q: %v", s.PE, ErrNotSupported)
	}
	if s.Key.IPv6() {
		if s.Netmask < 1 || s.Netmask > 128 {
			return ErrInvalid.with("IPv6 netmask /%d: must be 1..128", s.Netmask)
		}
	} else if s.Netmask < 0 || s.Netmask > 32 {
		return ErrInvalid.with("IPv4 netmask /%d: must be 0..32", s.Netmask)
	}
	return nil
}

// checkDest checks d for service s, in the order ipvsadm and then the
// kernel do, and forces its port.
func checkDest(s *Service, d *Dest) error {
	if !d.Addr.IsValid() || d.Addr.Zone() != "" {
		return ErrInvalid.with("destination address %v: must be an IPv4 or IPv6 address without zone", d.Addr)
	}
	if d.Fwd > FwdFullNAT {
		return ErrInvalid.with("forwarding method %d", d.Fwd)
	}
	if !s.Key.IsFWMark() && (d.Fwd == FwdRoute || d.Fwd == FwdTunnel || d.Fwd == FwdLocal) {
		d.Port = s.Key.Port
	}
	if d.Addr.Is6() != s.Key.IPv6() && d.Fwd != FwdTunnel {
		return ErrMixedFamily
	}
	if d.Fwd != FwdTunnel {
		if d.TunType != TunIPIP || d.TunPort != 0 || d.TunFlags != TunNoCsum {
			return ErrTunnelOpts
		}
	} else if err := checkTunnel(d); err != nil {
		return err
	}
	if d.Weight < 0 || d.Weight > MaxWeight {
		return ErrRange.with("weight %d: must be 0..%d", d.Weight, MaxWeight)
	}
	if d.LThreshold > d.UThreshold {
		return ErrRange.with("lower threshold %d is higher than upper threshold %d", d.LThreshold, d.UThreshold)
	}
	return nil
}

// checkTunnel applies ipvsadm's tunnel_types_v_options table and the
// kernel's "tunnel port is zero" check.
func checkTunnel(d *Dest) error {
	switch d.TunType {
	case TunIPIP:
		if d.TunPort != 0 || d.TunFlags != TunNoCsum {
			return ErrInvalid.with("ipip tunnel: takes no port or checksum option")
		}
	case TunGUE:
		if d.TunPort == 0 {
			return ErrInvalid.with("gue tunnel: port is zero")
		}
		if d.TunFlags > TunRemCsum {
			return ErrInvalid.with("gue tunnel: checksum mode %d", d.TunFlags)
		}
	case TunGRE:
		if d.TunPort != 0 {
			return ErrInvalid.with("gre tunnel: takes no port")
		}
		if d.TunFlags > TunCsum {
			return ErrInvalid.with("gre tunnel: checksum mode %d: must be nocsum or csum", d.TunFlags)
		}
	default:
		return ErrInvalid.with("tunnel type %d", d.TunType)
	}
	return nil
}

// checkUnicast refuses what ip_vs_new_dest refuses: an IPv4 address that
// inet_addr_type calls broadcast or multicast (0.0.0.0/8,
// 255.255.255.255, 224.0.0.0/4), an IPv6 address that is not unicast or
// is link-local (::, ff00::/8, fe80::/10, ::ffff:0:0/96). The kernel lets
// a local link-local address through; xlb cannot tell, and refuses it.
func checkUnicast(a netip.Addr) error {
	bad := false
	if a.Is4() {
		b := a.As4()
		bad = b[0] == 0 || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || a.IsMulticast()
	} else {
		bad = a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.Is4In6()
	}
	if bad {
		return ErrInvalid.with("destination address %v: not unicast", a)
	}
	return nil
}
