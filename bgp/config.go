package bgp

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Config is a validated speaker configuration.
type Config struct {
	// RouterID is the BGP identifier: an IPv4 address, by convention one
	// of the director's.
	RouterID netip.Addr
	// AS is the local autonomous system number (4-octet ASNs allowed).
	AS uint32
	// ListenPort is the TCP port the speaker accepts sessions on; 0 means
	// it does not listen and only dials its peers (the default: a
	// director opens the sessions to its router).
	ListenPort uint16
	// NextHop is the address announced as next hop for IPv4 VIPs, and
	// NextHop6 for IPv6 VIPs: the director's address on the router's link.
	// An invalid NextHop makes the speaker use its session's local
	// address (eBGP next-hop-self).
	NextHop, NextHop6 netip.Addr
	// HoldTime is the proposed hold time; the keepalive interval is a
	// third of it. 0 means DefaultHoldTime. BGP forbids 1 and 2 seconds.
	HoldTime time.Duration
	// GracefulRestart is the restart time advertised with the RFC 4724
	// capability; 0 disables graceful restart. See doc.go for what it
	// gives and costs a load balancer.
	GracefulRestart time.Duration
	// ShutdownDelay is how long the daemon keeps forwarding after it
	// withdrew its VIPs on a stop signal, before it detaches XDP: the
	// time the routers take to move the flows away (FRR: ~100 ms). 0
	// stops at once.
	ShutdownDelay time.Duration
	// Peers are the routers the speaker opens sessions to.
	Peers []Peer
}

// Peer is one BGP neighbour.
type Peer struct {
	Addr netip.Addr
	AS   uint32
	// Port is the neighbour's TCP port; 0 means 179.
	Port uint16
}

// DefaultHoldTime is BGP's customary 90 s.
const DefaultHoldTime = 90 * time.Second

// maxHoldTime is the largest hold time the OPEN message's 16-bit field
// carries.
const maxHoldTime = 65535 * time.Second

func (p Peer) String() string {
	h := p.Addr.String()
	if p.Addr.Is6() {
		h = "[" + h + "]"
	}
	s := fmt.Sprintf("%s:%d", h, p.AS)
	if p.Port != 0 {
		s += ":" + strconv.Itoa(int(p.Port))
	}
	return s
}

// ParsePeer parses a --bgp-peer value: ADDR:AS or ADDR:AS:PORT, with an
// IPv6 ADDR in brackets ([2001:db8::1]:65000).
func ParsePeer(s string) (Peer, error) {
	var host, rest string
	if strings.HasPrefix(s, "[") {
		h, r, ok := strings.Cut(s[1:], "]")
		if !ok || !strings.HasPrefix(r, ":") {
			return Peer{}, fmt.Errorf("parse peer %q: want [ADDR]:AS[:PORT]", s)
		}
		host, rest = h, r[1:]
	} else {
		h, r, ok := strings.Cut(s, ":")
		if !ok {
			return Peer{}, fmt.Errorf("parse peer %q: want ADDR:AS[:PORT]", s)
		}
		host, rest = h, r
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return Peer{}, fmt.Errorf("parse peer %q: bad address %q", s, host)
	}
	p := Peer{Addr: a.Unmap()}
	asStr, portStr, hasPort := strings.Cut(rest, ":")
	if p.AS, err = parseAS(asStr); err != nil {
		return Peer{}, fmt.Errorf("parse peer %q: %w", s, err)
	}
	if hasPort {
		if p.Port, err = parsePort(portStr); err != nil || p.Port == 0 {
			return Peer{}, fmt.Errorf("parse peer %q: bad port %q: must be 1-65535", s, portStr)
		}
	}
	return p, nil
}

func parseAS(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("bad AS %q: must be 1-4294967295", s)
	}
	return uint32(n), nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad port %q: must be 0-65535", s)
	}
	return uint16(n), nil
}

// parseSeconds takes "3", "3s" or "1m30s".
func parseSeconds(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d%time.Second != 0 {
		return 0, fmt.Errorf("bad duration %q: want whole seconds (3, 3s, 1m30s)", s)
	}
	return d, nil
}

// Validate checks c and fills in defaults (HoldTime).
func (c *Config) Validate() error {
	if !c.RouterID.Is4() {
		return fmt.Errorf("validate bgp config: router-id %v: must be an IPv4 address", c.RouterID)
	}
	if c.AS == 0 {
		return errors.New("validate bgp config: local AS missing: must be 1-4294967295")
	}
	if c.HoldTime == 0 {
		c.HoldTime = DefaultHoldTime
	}
	if c.HoldTime < 3*time.Second || c.HoldTime > maxHoldTime || c.HoldTime%time.Second != 0 {
		return fmt.Errorf("validate bgp config: hold time %v: must be whole seconds, 3s-65535s (RFC 4271 4.2)", c.HoldTime)
	}
	if c.GracefulRestart < 0 || c.GracefulRestart > 4095*time.Second || c.GracefulRestart%time.Second != 0 {
		return fmt.Errorf("validate bgp config: graceful restart time %v: must be whole seconds, 0-4095s (RFC 4724 3)", c.GracefulRestart)
	}
	if c.ShutdownDelay < 0 || c.ShutdownDelay > time.Minute {
		return fmt.Errorf("validate bgp config: shutdown delay %v: must be 0-60s", c.ShutdownDelay)
	}
	if c.NextHop.IsValid() && !c.NextHop.Is4() {
		return fmt.Errorf("validate bgp config: nexthop %v: must be IPv4 (nexthop6 for IPv6)", c.NextHop)
	}
	if c.NextHop6.IsValid() && (!c.NextHop6.Is6() || c.NextHop6.Is4In6()) {
		return fmt.Errorf("validate bgp config: nexthop6 %v: must be IPv6", c.NextHop6)
	}
	if len(c.Peers) == 0 {
		return errors.New("validate bgp config: no peer: want at least one")
	}
	seen := make(map[netip.Addr]bool, len(c.Peers))
	for _, p := range c.Peers {
		if !p.Addr.IsValid() || p.Addr.IsUnspecified() || p.Addr.IsMulticast() {
			return fmt.Errorf("validate bgp config: peer %v: must be a unicast address", p.Addr)
		}
		if p.AS == 0 {
			return fmt.Errorf("validate bgp config: peer %v: AS missing", p.Addr)
		}
		if seen[p.Addr] {
			return fmt.Errorf("validate bgp config: peer %v: listed twice", p.Addr)
		}
		seen[p.Addr] = true
	}
	return nil
}

// ParseFile reads the speaker's configuration file: one directive a line,
// '#' starts a comment.
//
//	router-id 10.0.0.2
//	as 65001
//	listen-port 179          # optional; 0 or absent: do not listen
//	hold-time 9              # seconds, optional, default 90
//	graceful-restart 120     # restart time in seconds, optional, default off
//	nexthop 10.0.0.2         # optional; default: the session's local address
//	nexthop6 2001:db8::2     # optional, for IPv6 VIPs
//	shutdown-delay 1         # seconds to keep forwarding after the withdrawal on stop, default 0
//	peer 10.0.0.1 as 65000 [port 179]
//
// The result is validated.
func ParseFile(r io.Reader) (Config, error) {
	var c Config
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		if err := c.directive(f); err != nil {
			return Config{}, fmt.Errorf("parse bgp config line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return Config{}, fmt.Errorf("read bgp config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c *Config) directive(f []string) error {
	one := func() (string, error) {
		if len(f) != 2 {
			return "", fmt.Errorf("%s: want one value, got %d", f[0], len(f)-1)
		}
		return f[1], nil
	}
	addr := func() (netip.Addr, error) {
		v, err := one()
		if err != nil {
			return netip.Addr{}, err
		}
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return netip.Addr{}, fmt.Errorf("%s: bad address %q", f[0], v)
		}
		return a.Unmap(), nil
	}
	var err error
	var v string
	switch f[0] {
	case "router-id":
		c.RouterID, err = addr()
	case "nexthop":
		c.NextHop, err = addr()
	case "nexthop6":
		c.NextHop6, err = addr()
	case "as":
		if v, err = one(); err == nil {
			c.AS, err = parseAS(v)
		}
	case "listen-port":
		if v, err = one(); err == nil {
			c.ListenPort, err = parsePort(v)
		}
	case "hold-time":
		if v, err = one(); err == nil {
			c.HoldTime, err = parseSeconds(v)
		}
	case "graceful-restart":
		if v, err = one(); err == nil {
			c.GracefulRestart, err = parseSeconds(v)
		}
	case "shutdown-delay":
		if v, err = one(); err == nil {
			c.ShutdownDelay, err = parseSeconds(v)
		}
	case "peer":
		var p Peer
		p, err = parsePeerDirective(f[1:])
		c.Peers = append(c.Peers, p)
	default:
		return fmt.Errorf("unknown directive %q", f[0])
	}
	return err
}

// parsePeerDirective parses "ADDR as N [port P]".
func parsePeerDirective(f []string) (Peer, error) {
	if len(f) == 0 {
		return Peer{}, errors.New("peer: want ADDR as AS [port PORT]")
	}
	a, err := netip.ParseAddr(f[0])
	if err != nil || a.Zone() != "" {
		return Peer{}, fmt.Errorf("peer: bad address %q", f[0])
	}
	p := Peer{Addr: a.Unmap()}
	rest := f[1:]
	for len(rest) > 0 {
		if len(rest) < 2 {
			return Peer{}, fmt.Errorf("peer %v: %s: value missing", p.Addr, rest[0])
		}
		switch rest[0] {
		case "as":
			if p.AS, err = parseAS(rest[1]); err != nil {
				return Peer{}, fmt.Errorf("peer %v: %w", p.Addr, err)
			}
		case "port":
			if p.Port, err = parsePort(rest[1]); err != nil || p.Port == 0 {
				return Peer{}, fmt.Errorf("peer %v: bad port %q: must be 1-65535", p.Addr, rest[1])
			}
		default:
			return Peer{}, fmt.Errorf("peer %v: unknown option %q", p.Addr, rest[0])
		}
		rest = rest[2:]
	}
	return p, nil
}

// Flags are the `xlb run` BGP flags. Register them with RegisterFlags,
// then, after parsing, call Config: it returns nil when BGP was not asked
// for.
//
//	--bgp FILE               configuration file (ParseFile); excludes the others
//	--bgp-as N               local AS
//	--bgp-router-id ADDR     BGP identifier (IPv4)
//	--bgp-peer ADDR:AS[:PORT] neighbour, repeatable ([v6]:AS[:PORT])
//	--bgp-listen-port N      accept sessions on N (default 0: do not listen)
//	--bgp-hold-time SECONDS  hold time (default 90)
//	--bgp-graceful-restart SECONDS  restart time (default 0: off)
//	--bgp-nexthop ADDR       next hop for IPv4 VIPs (default: session's local address)
//	--bgp-nexthop6 ADDR      next hop for IPv6 VIPs
//	--bgp-shutdown-delay SECONDS  keep forwarding this long after withdrawing on stop (default 0)
type Flags struct {
	File                        string
	AS                          uint
	RouterID, NextHop, NextHop6 string
	ListenPort                  uint
	HoldTime, GracefulRestart   uint
	ShutdownDelay               uint
	Peers                       peerList
	fs                          *flag.FlagSet
}

type peerList []Peer

func (l *peerList) String() string {
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (l *peerList) Set(v string) error {
	p, err := ParsePeer(v)
	if err != nil {
		return err
	}
	*l = append(*l, p)
	return nil
}

// RegisterFlags adds the BGP flags to fs.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{fs: fs}
	fs.StringVar(&f.File, "bgp", "", "BGP speaker configuration `file`")
	fs.UintVar(&f.AS, "bgp-as", 0, "local BGP AS `number`")
	fs.StringVar(&f.RouterID, "bgp-router-id", "", "BGP router ID (IPv4 `address`)")
	fs.Var(&f.Peers, "bgp-peer", "BGP neighbour `ADDR:AS[:PORT]` ([v6]:AS[:PORT]), repeatable")
	fs.UintVar(&f.ListenPort, "bgp-listen-port", 0, "accept BGP sessions on `port` (0: do not listen)")
	fs.UintVar(&f.HoldTime, "bgp-hold-time", uint(DefaultHoldTime/time.Second), "BGP hold time in `seconds`")
	fs.UintVar(&f.GracefulRestart, "bgp-graceful-restart", 0, "BGP graceful restart time in `seconds` (0: off)")
	fs.StringVar(&f.NextHop, "bgp-nexthop", "", "next hop `address` announced for IPv4 VIPs")
	fs.StringVar(&f.NextHop6, "bgp-nexthop6", "", "next hop `address` announced for IPv6 VIPs")
	fs.UintVar(&f.ShutdownDelay, "bgp-shutdown-delay", 0, "on stop, keep forwarding this many `seconds` after withdrawing the VIPs")
	return f
}

// Config builds the validated configuration from the parsed flags, or
// returns nil, nil when no BGP flag was given. read opens the --bgp file.
func (f *Flags) Config(read func(name string) (io.ReadCloser, error)) (*Config, error) {
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) {
		if strings.HasPrefix(fl.Name, "bgp") {
			set[fl.Name] = true
		}
	})
	if len(set) == 0 {
		return nil, nil
	}
	if set["bgp"] {
		if len(set) > 1 {
			return nil, errors.New("parse bgp flags: --bgp FILE excludes the other --bgp-* flags")
		}
		r, err := read(f.File)
		if err != nil {
			return nil, fmt.Errorf("open bgp config: %w", err)
		}
		defer r.Close()
		c, err := ParseFile(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.File, err)
		}
		return &c, nil
	}
	c := Config{Peers: f.Peers}
	var err error
	if f.AS > 0xffffffff {
		return nil, fmt.Errorf("parse bgp flags: --bgp-as %d: must be 1-4294967295", f.AS)
	}
	c.AS = uint32(f.AS)
	if f.ListenPort > 65535 {
		return nil, fmt.Errorf("parse bgp flags: --bgp-listen-port %d: must be 0-65535", f.ListenPort)
	}
	c.ListenPort = uint16(f.ListenPort)
	for _, a := range []struct {
		name string
		v    string
		dst  *netip.Addr
	}{{"bgp-router-id", f.RouterID, &c.RouterID}, {"bgp-nexthop", f.NextHop, &c.NextHop}, {"bgp-nexthop6", f.NextHop6, &c.NextHop6}} {
		if a.v == "" {
			continue
		}
		if *a.dst, err = netip.ParseAddr(a.v); err != nil || a.dst.Zone() != "" {
			return nil, fmt.Errorf("parse bgp flags: --%s %q: bad address", a.name, a.v)
		}
		*a.dst = a.dst.Unmap()
	}
	if f.HoldTime > 65535 || f.GracefulRestart > 65535 {
		return nil, fmt.Errorf("parse bgp flags: --bgp-hold-time %d, --bgp-graceful-restart %d: must be at most 65535", f.HoldTime, f.GracefulRestart)
	}
	c.HoldTime = time.Duration(f.HoldTime) * time.Second
	c.GracefulRestart = time.Duration(f.GracefulRestart) * time.Second
	if f.ShutdownDelay > 60 {
		return nil, fmt.Errorf("parse bgp flags: --bgp-shutdown-delay %d: must be 0-60", f.ShutdownDelay)
	}
	c.ShutdownDelay = time.Duration(f.ShutdownDelay) * time.Second
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}
