package keepalived

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// Options say how included files are found; DefaultOptions reads the
// file system.
type Options struct {
	ReadFile func(name string) ([]byte, error)
	Glob     func(pattern string) ([]string, error)
}

// DefaultOptions use os.ReadFile and filepath.Glob.
func DefaultOptions() Options {
	return Options{ReadFile: os.ReadFile, Glob: filepath.Glob}
}

// Result is an imported configuration.
type Result struct {
	// IPVS has every virtual server with all its real servers at
	// their configured weights: what keepalived programs at start with
	// every server assumed healthy. The sorry servers are not in it;
	// the health engine adds them when quorum is lost.
	IPVS *ipvs.Config
	// Health has the checkers, quorum and sorry servers, for package
	// health.
	Health health.Config
	// Warnings are the keywords that were ignored, each reported once.
	Warnings []Warning
	// SyncDaemon is global_defs' lvs_sync_daemon, or nil: the sync
	// daemon to start, as a backup.
	SyncDaemon *ipvsadm.Daemon
}

// Warning is a keyword that was read and ignored.
type Warning struct {
	Pos     Pos
	Keyword string
	Msg     string
	More    int // later occurrences of the same keyword, not reported on their own
}

func (w Warning) String() string {
	s := w.Pos.String() + ": " + w.Msg
	if w.More > 0 {
		s += fmt.Sprintf(" (and %d more)", w.More)
	}
	return s
}

// Load imports the keepalived.conf at path and the files it includes.
func Load(path string) (*Result, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load keepalived configuration: %w", err)
	}
	return Parse(path, src, DefaultOptions())
}

// Parse imports src, read from the file name; includes are relative to
// name's directory.
func Parse(name string, src []byte, opts Options) (*Result, error) {
	if opts.ReadFile == nil {
		opts.ReadFile = os.ReadFile
	}
	if opts.Glob == nil {
		opts.Glob = filepath.Glob
	}
	b := &builder{res: &Result{IPVS: &ipvs.Config{Timeouts: ipvs.DefaultTimeouts}}, warned: map[string]int{}, laddrs: map[string][]ipvs.LocalAddr{},
		groups: map[string]*group{}}
	lx := &lexer{opts: &opts, warn: b.warn}
	if err := lx.file(name, src); err != nil {
		return nil, err
	}
	nodes, err := tree(lx.toks)
	if err != nil {
		return nil, err
	}
	if err := b.top(nodes); err != nil {
		return nil, err
	}
	if err := b.res.Health.Validate(); err != nil {
		return nil, fmt.Errorf("import %s: %w", name, err)
	}
	return b.res, nil
}

type builder struct {
	res    *Result
	warned map[string]int // keyword → index in Warnings
	groups map[string]*group
	laddrs map[string][]ipvs.LocalAddr // local_address_group
}

type group struct {
	pos     Pos
	entries []groupEntry
}

type groupEntry struct {
	pos   Pos
	addrs []netip.Addr // one, or a range
	port  uint16
	mark  uint32
}

func (b *builder) warn(p Pos, keyword, msg string) {
	if i, ok := b.warned[keyword]; ok {
		b.res.Warnings[i].More++
		return
	}
	b.warned[keyword] = len(b.res.Warnings)
	b.res.Warnings = append(b.res.Warnings, Warning{Pos: p, Keyword: keyword, Msg: msg})
}

// ignore reports n as not supported in where ("" is the top level).
func (b *builder) ignore(n *node, where, why string) {
	kw := n.key
	if where != "" {
		kw = where + " " + n.key
	}
	msg := kw + ": " + why
	if n.block {
		msg += " (block ignored)"
	} else {
		msg += " (ignored)"
	}
	b.warn(n.pos, kw, msg)
}

// Blocks of keepalived that xlb does not take, with the reason.
var unsupportedBlocks = map[string]string{
	"vrrp_instance":        "VRRP is not supported: run keepalived for VRRP alone, or another failover",
	"vrrp_sync_group":      "VRRP is not supported",
	"vrrp_script":          "VRRP is not supported",
	"vrrp_track_process":   "VRRP is not supported",
	"vrrp_track_file":      "VRRP is not supported",
	"track_file":           "VRRP is not supported",
	"static_ipaddress":     "static addresses are not managed by xlb",
	"static_routes":        "static routes are not managed by xlb",
	"static_rules":         "static rules are not managed by xlb",
	"linkbeat_interfaces":  "VRRP is not supported",
	"bfd_instance":         "BFD is not supported",
	"garp_group":           "VRRP is not supported",
	"net_namespace":        "network namespaces are not managed by xlb",
	"instance":             "instances are not supported",
	"use_pid_dir":          "process options are not supported",
	"linkbeat_use_polling": "VRRP is not supported",
}

func (b *builder) top(nodes []*node) error {
	var vss []*node
	for _, n := range nodes {
		switch n.key {
		case "global_defs":
			if err := b.globalDefs(n); err != nil {
				return err
			}
		case "virtual_server_group":
			if err := b.group(n); err != nil {
				return err
			}
		case "local_address_group":
			if err := b.localGroup(n); err != nil {
				return err
			}
		case "virtual_server":
			vss = append(vss, n)
		default:
			if why, ok := unsupportedBlocks[n.key]; ok {
				b.ignore(n, "", why)
			} else if strings.HasPrefix(n.key, "$") || strings.HasPrefix(n.key, "@") {
				b.ignore(n, "", "parameter definitions and conditional lines are not supported")
			} else {
				b.ignore(n, "", "unknown keyword")
			}
		}
	}
	for _, n := range vss {
		if err := b.virtualServer(n); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) globalDefs(n *node) error {
	if !n.block {
		return errorf(n.pos, "global_defs needs a block")
	}
	for _, c := range n.children {
		switch c.key {
		case "lvs_timeouts":
			t := b.res.IPVS.Timeouts
			if len(c.args)%2 != 0 || len(c.args) == 0 {
				return errorf(c.pos, "lvs_timeouts takes pairs: tcp N tcpfin N udp N")
			}
			for i := 0; i < len(c.args); i += 2 {
				v, err := uintArg(c, c.args[i+1], 0, ipvs.MaxTimeout)
				if err != nil {
					return err
				}
				switch c.args[i] {
				case "tcp":
					t.TCP = uint32(v)
				case "tcpfin":
					t.TCPFin = uint32(v)
				case "udp":
					t.UDP = uint32(v)
				default:
					return errorf(c.pos, "lvs_timeouts %s: want tcp, tcpfin or udp", c.args[i])
				}
			}
			if err := b.res.IPVS.SetTimeouts(t); err != nil {
				return &Error{Pos: c.pos, Msg: "lvs_timeouts", Err: err}
			}
		case "lvs_sync_daemon":
			if err := b.syncDaemon(c); err != nil {
				return err
			}
		default:
			b.ignore(c, "global_defs", "not used by xlb")
		}
	}
	return nil
}

// syncDaemon reads global_defs' lvs_sync_daemon INTERFACE [VRRP_INSTANCE]
// [id N] [maxlen N] [port N] [ttl N] [group ADDRESS] (keepalived 1.2.20+)
// into Result.SyncDaemon: a backup daemon, as keepalived starts it
// before any VRRP transition. keepalived then follows the VRRP
// instance's state (master daemon while MASTER); xlb runs no VRRP, so
// the instance is only reported, and becoming master is the operator's
// (`xlb --start-daemon master`, from a notify_master script).
func (b *builder) syncDaemon(n *node) error {
	if len(n.args) == 0 {
		return errorf(n.pos, "lvs_sync_daemon needs an interface")
	}
	d := ipvsadm.Daemon{State: "backup", McastInterface: n.args[0]}
	args := n.args[1:]
	switch {
	case len(args) == 0:
	case args[0] == "id" || args[0] == "maxlen" || args[0] == "port" || args[0] == "ttl" || args[0] == "group":
		if len(args)%2 == 1 {
			return errorf(n.pos, "lvs_sync_daemon %s: needs a value", args[len(args)-1])
		}
	case len(args)%2 == 0:
		return errorf(n.pos, "lvs_sync_daemon %s: needs a value", args[len(args)-1])
	default:
		b.res.Warnings = append(b.res.Warnings, Warning{Pos: n.pos, Keyword: "lvs_sync_daemon",
			Msg: fmt.Sprintf("lvs_sync_daemon %s: VRRP is not supported: the sync daemon starts as backup; `xlb --start-daemon master` makes this director a master", args[0])})
		args = args[1:]
	}
	for i := 0; i < len(args); i += 2 {
		k, v := args[i], args[i+1]
		var (
			x   uint64
			err error
		)
		switch k {
		case "id":
			x, err = uintArg(n, v, 0, 255)
			d.SyncID = int(x)
		case "maxlen":
			x, err = uintArg(n, v, 1, 65535-20-8)
			d.SyncMaxLen = int(x)
		case "port":
			x, err = uintArg(n, v, 1, 65535)
			d.McastPort = int(x)
		case "ttl":
			x, err = uintArg(n, v, 1, 255)
			d.McastTTL = int(x)
		case "group":
			a, perr := netip.ParseAddr(v)
			if perr != nil || !a.IsMulticast() {
				return errorf(n.pos, "lvs_sync_daemon group %q: want a multicast address", v)
			}
			d.McastGroup = a
		default:
			return errorf(n.pos, "lvs_sync_daemon %s: want id, maxlen, port, ttl or group", k)
		}
		if err != nil {
			return err
		}
	}
	b.res.SyncDaemon = &d
	return nil
}

// localGroup reads DPVS keepalived's local_address_group NAME { ADDRESS
// [IFNAME] ... }: FULLNAT local addresses, for laddr_group_name.
func (b *builder) localGroup(n *node) error {
	if len(n.args) != 1 || !n.block {
		return errorf(n.pos, "local_address_group takes a name and a block")
	}
	if _, dup := b.laddrs[n.args[0]]; dup {
		return errorf(n.pos, "local_address_group %s defined twice", n.args[0])
	}
	var las []ipvs.LocalAddr
	for _, c := range n.children {
		if c.block || len(c.args) > 1 {
			return errorf(c.pos, "local_address_group entry %s: want ADDRESS [IFNAME]", c.key)
		}
		a, err := netip.ParseAddr(c.key)
		if err != nil {
			return errorf(c.pos, "local_address_group entry %s: not an address", c.key)
		}
		la := ipvs.LocalAddr{Addr: a.Unmap()}
		if len(c.args) == 1 {
			la.Ifname = c.args[0]
		}
		las = append(las, la)
	}
	if len(las) == 0 {
		return errorf(n.pos, "local_address_group %s has no address", n.args[0])
	}
	b.laddrs[n.args[0]] = las
	return nil
}

func (b *builder) group(n *node) error {
	if len(n.args) != 1 || !n.block {
		return errorf(n.pos, "virtual_server_group takes a name and a block")
	}
	if _, dup := b.groups[n.args[0]]; dup {
		return errorf(n.pos, "virtual_server_group %s defined twice", n.args[0])
	}
	g := &group{pos: n.pos}
	total := 0
	for _, c := range n.children {
		if c.block {
			return errorf(c.pos, "virtual_server_group entry %s: unexpected block", c.key)
		}
		if c.key == "fwmark" {
			if len(c.args) != 1 {
				return errorf(c.pos, "fwmark takes a mark")
			}
			m, err := uintArg(c, c.args[0], 1, math.MaxUint32)
			if err != nil {
				return err
			}
			g.entries = append(g.entries, groupEntry{pos: c.pos, mark: uint32(m)})
			total++
			continue
		}
		addrs, err := addrRange(c, c.key)
		if err != nil {
			return err
		}
		if len(c.args) != 1 {
			return errorf(c.pos, "virtual_server_group entry %s: want ADDRESS[-LAST] PORT", c.key)
		}
		port, err := portArg(c, c.args[0])
		if err != nil {
			return err
		}
		g.entries = append(g.entries, groupEntry{pos: c.pos, addrs: addrs, port: port})
		total += len(addrs)
		if total > maxGroup {
			return errorf(c.pos, "virtual_server_group %s: more than %d services", n.args[0], maxGroup)
		}
	}
	if len(g.entries) == 0 {
		return errorf(n.pos, "virtual_server_group %s is empty", n.args[0])
	}
	b.groups[n.args[0]] = g
	return nil
}

// maxRange bounds an address range of a group. keepalived's ranges
// change the last byte (IPv4) or the last 16 bits (IPv6); xlb takes at
// most 256 addresses per range, and maxGroup services per group, so that
// a typo cannot create 65536 services.
const (
	maxRange = 256
	maxGroup = 4096
)

// addrRange parses ADDRESS or ADDRESS-LAST, where LAST replaces the last
// byte of an IPv4 address or the last group of an IPv6 one (keepalived's
// "192.168.1.1-10" and "2001:db8::1-1f").
func addrRange(n *node, s string) ([]netip.Addr, error) {
	first, last, isRange := strings.Cut(s, "-")
	a, err := netip.ParseAddr(first)
	if err != nil || a.Zone() != "" {
		return nil, errorf(n.pos, "address %q: not an IP address", first)
	}
	if !isRange {
		return []netip.Addr{a}, nil
	}
	var end netip.Addr
	if a.Is4() {
		v, err := strconv.ParseUint(last, 10, 8)
		if err != nil {
			return nil, errorf(n.pos, "address range %q: the end must be a last byte 0..255", s)
		}
		b := a.As4()
		b[3] = byte(v)
		end = netip.AddrFrom4(b)
	} else {
		v, err := strconv.ParseUint(last, 16, 16)
		if err != nil {
			return nil, errorf(n.pos, "address range %q: the end must be a last group 0..ffff", s)
		}
		b := a.As16()
		b[14], b[15] = byte(v>>8), byte(v)
		end = netip.AddrFrom16(b)
	}
	if end.Less(a) {
		return nil, errorf(n.pos, "address range %q: ends before it starts", s)
	}
	var out []netip.Addr
	for x := a; ; x = x.Next() {
		out = append(out, x)
		if x == end {
			break
		}
		if len(out) == maxRange {
			return nil, errorf(n.pos, "address range %q: more than %d addresses", s, maxRange)
		}
	}
	return out, nil
}

// defaults are checker options given at the virtual_server or
// real_server level, which keepalived 2.x applies to the checkers below
// them that do not set their own.
type defaults struct {
	connectTimeout, delayBeforeRetry, warmup, delayLoop *time.Duration
	retry                                               *int
	virtualHost                                         *string
}

func (d *defaults) apply(c *health.Check) {
	if d.connectTimeout != nil {
		c.ConnectTimeout = *d.connectTimeout
	}
	if d.delayBeforeRetry != nil {
		c.DelayBeforeRetry = *d.delayBeforeRetry
	}
	if d.warmup != nil {
		c.Warmup = *d.warmup
	}
	if d.delayLoop != nil {
		c.DelayLoop = *d.delayLoop
	}
	if d.retry != nil {
		c.Retry = *d.retry
	}
	if d.virtualHost != nil && (c.Kind == health.HTTPGet || c.Kind == health.SSLGet) {
		c.VirtualHost = *d.virtualHost
	}
}

// option parses a checker option that may also be a default; it reports
// whether n was one.
func (d *defaults) option(n *node) (bool, error) {
	var err error
	set := func(p **time.Duration) {
		var v time.Duration
		if v, err = durationArg(n); err == nil {
			*p = &v
		}
	}
	switch n.key {
	case "connect_timeout":
		set(&d.connectTimeout)
	case "delay_before_retry":
		set(&d.delayBeforeRetry)
	case "warmup":
		set(&d.warmup)
	case "delay_loop":
		set(&d.delayLoop)
	case "retry", "nb_get_retry", "nb_sock_retry":
		var v uint64
		if v, err = oneUint(n, 0, math.MaxInt32); err == nil {
			r := int(v)
			d.retry = &r
		}
	default:
		return false, nil
	}
	return true, err
}

// methods are lvs_method's (lb_kind's) values.
// FNAT is DPVS keepalived's FULLNAT (with laddr_group_name).
var methods = map[string]ipvs.Fwd{"NAT": ipvs.FwdMasq, "DR": ipvs.FwdRoute, "TUN": ipvs.FwdTunnel, "FNAT": ipvs.FwdFullNAT}

type method struct {
	fwd   ipvs.Fwd
	tun   ipvs.TunType
	port  uint16
	flags ipvs.TunFlags
}

// parseMethod reads NAT, DR or TUN [type ipip|gue|gre] [port N]
// [nocsum|csum|remcsum] (keepalived 2.x's tunnel options).
func parseMethod(n *node) (method, error) {
	if len(n.args) == 0 {
		return method{}, errorf(n.pos, "%s needs NAT, DR, TUN or FNAT", n.key)
	}
	fwd, ok := methods[strings.ToUpper(n.args[0])]
	if !ok {
		return method{}, errorf(n.pos, "%s %s: want NAT, DR, TUN or FNAT", n.key, n.args[0])
	}
	m := method{fwd: fwd}
	rest := n.args[1:]
	if len(rest) > 0 && fwd != ipvs.FwdTunnel {
		return method{}, errorf(n.pos, "%s %s takes no options", n.key, n.args[0])
	}
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case "type":
			if i+1 >= len(rest) {
				return method{}, errorf(n.pos, "%s TUN type needs ipip, gue or gre", n.key)
			}
			i++
			switch rest[i] {
			case "ipip":
				m.tun = ipvs.TunIPIP
			case "gue":
				m.tun = ipvs.TunGUE
			case "gre":
				m.tun = ipvs.TunGRE
			default:
				return method{}, errorf(n.pos, "%s TUN type %s: want ipip, gue or gre", n.key, rest[i])
			}
		case "port":
			if i+1 >= len(rest) {
				return method{}, errorf(n.pos, "%s TUN port needs a port", n.key)
			}
			i++
			p, err := portArg(n, rest[i])
			if err != nil {
				return method{}, err
			}
			m.port = p
		case "nocsum":
			m.flags = ipvs.TunNoCsum
		case "csum":
			m.flags = ipvs.TunCsum
		case "remcsum":
			m.flags = ipvs.TunRemCsum
		default:
			return method{}, errorf(n.pos, "%s TUN %s: unknown option", n.key, rest[i])
		}
	}
	return m, nil
}

func fwdName(f ipvs.Fwd) string {
	for name, m := range methods {
		if m == f {
			return name
		}
	}
	return "?"
}

func (m method) apply(d *ipvs.Dest) {
	d.Fwd = m.fwd
	if m.fwd == ipvs.FwdTunnel {
		d.TunType, d.TunPort, d.TunFlags = m.tun, m.port, m.flags
	}
}

type vsConf struct {
	n         *node
	svc       ipvs.Service // template: key filled per address
	proto     ipvs.Proto
	ipv6Mark  bool
	method    method
	delayLoop time.Duration
	defs      defaults
	inhibit   bool
	hs        health.VirtualService
	sorryM    *method
	laddrs    *node // laddr_group_name
}

var schedFlags = map[string]bool{"sh-port": true, "sh-fallback": true, "mh-port": true, "mh-fallback": true,
	"flag-1": true, "flag-2": true, "flag-3": true}

func (b *builder) virtualServer(n *node) error {
	if !n.block {
		return errorf(n.pos, "virtual_server needs a block")
	}
	vc := &vsConf{n: n, proto: ipvs.TCP, method: method{fwd: ipvs.FwdMasq}, svc: ipvs.Service{Sched: ipvs.DefaultSched, Netmask: -1}}
	vc.hs.Quorum = health.DefaultQuorum
	var reals []*node
	for _, c := range n.children {
		if ok, err := vc.defs.option(c); ok {
			if err != nil {
				return err
			}
			if c.key == "delay_loop" {
				vc.delayLoop = *vc.defs.delayLoop
				vc.defs.delayLoop = nil // the service's, not a checker default
			}
			continue
		}
		if err := b.vsOption(vc, c); err != nil {
			return err
		}
		if c.key == "real_server" {
			reals = append(reals, c)
		}
	}
	keys, err := b.vsKeys(vc)
	if err != nil {
		return err
	}
	vc.hs.Key, vc.hs.Also = keys[0], keys[1:]
	vc.hs.DelayLoop = vc.delayLoop
	if vc.hs.Sorry.IsValid() {
		vc.hs.SorryFwd = vc.method.fwd
		if vc.sorryM != nil {
			vc.hs.SorryFwd = vc.sorryM.fwd
		}
		vc.hs.SorryWeight = 1
		// Like a real server's, a DR or tunnel sorry server takes the
		// virtual port; so does one written without a port.
		port := -1
		for _, k := range keys {
			p := int(vc.hs.Sorry.Port())
			if !k.IsFWMark() && (p == 0 || vc.hs.SorryFwd == ipvs.FwdRoute || vc.hs.SorryFwd == ipvs.FwdTunnel) {
				p = int(k.Port)
			}
			if port >= 0 && p != port {
				return errorf(n.pos, "sorry_server: the services of the group have different ports, and the sorry server would take each one's")
			}
			port = p
		}
		vc.hs.Sorry = netip.AddrPortFrom(vc.hs.Sorry.Addr(), uint16(port))
	}
	for _, k := range keys {
		s := vc.svc
		s.Key = k
		if s.Netmask < 0 {
			s.Netmask = 32
			if k.IPv6() {
				s.Netmask = 128
			}
		}
		if err := b.res.IPVS.AddService(s); err != nil {
			return &Error{Pos: n.pos, Msg: "virtual_server " + strings.Join(n.args, " "), Err: err}
		}
		if vc.laddrs != nil {
			las, ok := b.laddrs[vc.laddrs.args[0]]
			if !ok {
				return errorf(vc.laddrs.pos, "laddr_group_name %s: no such local_address_group", vc.laddrs.args[0])
			}
			for _, la := range las {
				if err := b.res.IPVS.AddLocalAddr(k, la); err != nil {
					return &Error{Pos: vc.laddrs.pos, Msg: "laddr_group_name " + vc.laddrs.args[0], Err: err}
				}
			}
		}
	}
	for _, r := range reals {
		if err := b.realServer(vc, keys, r); err != nil {
			return err
		}
	}
	for _, rs := range vc.hs.Reals {
		if vc.hs.Sorry.IsValid() && rs.Addr == vc.hs.Sorry {
			return errorf(n.pos, "sorry_server %s is also a real_server of the virtual server", vc.hs.Sorry)
		}
	}
	if err := vc.hs.Validate(); err != nil {
		return &Error{Pos: n.pos, Msg: "virtual_server " + strings.Join(n.args, " "), Err: err}
	}
	b.res.Health.Services = append(b.res.Health.Services, vc.hs)
	return nil
}

func (b *builder) vsOption(vc *vsConf, c *node) error {
	switch c.key {
	case "real_server":
	case "lb_algo", "lvs_sched":
		if len(c.args) != 1 {
			return errorf(c.pos, "%s takes a scheduler name", c.key)
		}
		vc.svc.Sched = c.args[0]
	case "lb_kind", "lvs_method":
		m, err := parseMethod(c)
		if err != nil {
			return err
		}
		vc.method = m
	case "laddr_group_name":
		if len(c.args) != 1 {
			return errorf(c.pos, "laddr_group_name takes a local_address_group name")
		}
		vc.laddrs = c
	case "persistence_timeout":
		v, err := oneUint(c, 1, ipvs.MaxTimeout)
		if err != nil {
			return err
		}
		vc.svc.Persistent, vc.svc.Timeout = true, uint32(v)
	case "persistence_granularity":
		if len(c.args) != 1 {
			return errorf(c.pos, "persistence_granularity takes a netmask")
		}
		bits, err := maskBits(c.args[0])
		if err != nil {
			return errorf(c.pos, "persistence_granularity %s: %v", c.args[0], err)
		}
		vc.svc.Netmask = bits
	case "persistence_engine":
		return errorf(c.pos, "persistence_engine: xlb has no persistence engines")
	case "protocol":
		if len(c.args) != 1 {
			return errorf(c.pos, "protocol takes TCP, UDP or SCTP")
		}
		switch strings.ToUpper(c.args[0]) {
		case "TCP":
			vc.proto = ipvs.TCP
		case "UDP":
			vc.proto = ipvs.UDP
		case "SCTP":
			vc.proto = ipvs.SCTP
		default:
			return errorf(c.pos, "protocol %s: want TCP, UDP or SCTP", c.args[0])
		}
	case "ip_family":
		if len(c.args) != 1 || (c.args[0] != "inet" && c.args[0] != "inet6") {
			return errorf(c.pos, "ip_family takes inet or inet6")
		}
		vc.ipv6Mark = c.args[0] == "inet6"
	case "ops":
		vc.svc.OnePacket = true
	case "inhibit_on_failure":
		vc.inhibit = true
	case "alpha":
		vc.hs.Alpha = true
	case "quorum":
		v, err := oneUint(c, 1, math.MaxInt32)
		if err != nil {
			return err
		}
		vc.hs.Quorum = int64(v)
	case "hysteresis":
		v, err := oneUint(c, 0, math.MaxInt32)
		if err != nil {
			return err
		}
		vc.hs.Hysteresis = int64(v)
	case "quorum_up", "quorum_down":
		s, err := scriptArg(c)
		if err != nil {
			return err
		}
		if c.key == "quorum_up" {
			vc.hs.QuorumUp = s
		} else {
			vc.hs.QuorumDown = s
		}
	case "sorry_server":
		ap, err := addrPortArgs(c, true)
		if err != nil {
			return err
		}
		vc.hs.Sorry = ap
	case "sorry_server_inhibit":
		vc.hs.SorryInhibit = true
	case "sorry_server_lvs_method":
		m, err := parseMethod(c)
		if err != nil {
			return err
		}
		vc.sorryM = &m
	case "virtualhost":
		if len(c.args) != 1 {
			return errorf(c.pos, "virtualhost takes a name")
		}
		vc.defs.virtualHost = &c.args[0]
	default:
		if schedFlags[c.key] {
			vc.svc.SchedFlags = append(vc.svc.SchedFlags, c.key)
			return nil
		}
		switch c.key {
		case "ha_suspend", "omega", "smtp_alert", "quorum_up_weight":
			b.ignore(c, "virtual_server", "not supported")
		default:
			b.ignore(c, "virtual_server", "unknown keyword")
		}
	}
	return nil
}

// vsKeys are the services a virtual_server line names: ADDRESS PORT,
// fwmark N, or group NAME (every entry of the group).
func (b *builder) vsKeys(vc *vsConf) ([]ipvs.ServiceKey, error) {
	n := vc.n
	mark := func(m uint32) ipvs.ServiceKey { return ipvs.FWMarkKey(m, vc.ipv6Mark) }
	switch {
	case len(n.args) == 2 && n.args[0] == "fwmark":
		m, err := uintArg(n, n.args[1], 1, math.MaxUint32)
		if err != nil {
			return nil, err
		}
		return []ipvs.ServiceKey{mark(uint32(m))}, nil
	case len(n.args) == 2 && n.args[0] == "group":
		g := b.groups[n.args[1]]
		if g == nil {
			return nil, errorf(n.pos, "virtual_server group %s: no such virtual_server_group", n.args[1])
		}
		var keys []ipvs.ServiceKey
		for _, e := range g.entries {
			if e.mark != 0 {
				keys = append(keys, mark(e.mark))
				continue
			}
			for _, a := range e.addrs {
				keys = append(keys, ipvs.ServiceKey{Proto: vc.proto, Addr: a, Port: e.port})
			}
		}
		return keys, nil
	case len(n.args) == 2:
		ap, err := addrPortArgs(n, false)
		if err != nil {
			return nil, err
		}
		return []ipvs.ServiceKey{{Proto: vc.proto, Addr: ap.Addr(), Port: ap.Port()}}, nil
	}
	return nil, errorf(n.pos, "virtual_server takes ADDRESS PORT, fwmark MARK or group NAME")
}

var checkerKinds = map[string]health.Kind{"TCP_CHECK": health.TCPCheck, "HTTP_GET": health.HTTPGet,
	"SSL_GET": health.SSLGet, "UDP_CHECK": health.UDPCheck, "PING_CHECK": health.PingCheck,
	"MISC_CHECK": health.MiscCheck}

var unsupportedCheckers = map[string]bool{"SMTP_CHECK": true, "DNS_CHECK": true, "BFD_CHECK": true,
	"FILE_CHECK": true}

func (b *builder) realServer(vc *vsConf, keys []ipvs.ServiceKey, n *node) error {
	fwmark := keys[0].IsFWMark()
	ap, err := addrPortArgs(n, fwmark)
	if err != nil {
		return err
	}
	if !n.block {
		return errorf(n.pos, "real_server needs a block")
	}
	d := ipvs.NewDest(ap)
	vc.method.apply(&d)
	rs := health.RealServer{Addr: ap, Weight: 1, InhibitOnFailure: vc.inhibit}
	defs := vc.defs
	var checks []*node
	for _, c := range n.children {
		if ok, err := defs.option(c); ok {
			if err != nil {
				return err
			}
			continue
		}
		switch c.key {
		case "weight":
			v, err := oneUint(c, 0, ipvs.MaxWeight)
			if err != nil {
				return err
			}
			d.Weight = int32(v)
		case "inhibit_on_failure":
			rs.InhibitOnFailure = true
		case "lb_kind", "lvs_method":
			m, err := parseMethod(c)
			if err != nil {
				return err
			}
			m.apply(&d)
		case "uthreshold", "lthreshold":
			v, err := oneUint(c, 0, math.MaxUint32)
			if err != nil {
				return err
			}
			if c.key == "uthreshold" {
				d.UThreshold = uint32(v)
			} else {
				d.LThreshold = uint32(v)
			}
		case "notify_up", "notify_down":
			s, err := scriptArg(c)
			if err != nil {
				return err
			}
			if c.key == "notify_up" {
				rs.NotifyUp = s
			} else {
				rs.NotifyDown = s
			}
		case "virtualhost":
			if len(c.args) != 1 {
				return errorf(c.pos, "virtualhost takes a name")
			}
			defs.virtualHost = &c.args[0]
		default:
			if _, ok := checkerKinds[c.key]; ok {
				checks = append(checks, c)
			} else if unsupportedCheckers[c.key] {
				b.ignore(c, "real_server", "checker not supported; the server is checked by its other checkers only")
			} else if c.key == "alpha" || c.key == "smtp_alert" {
				b.ignore(c, "real_server", "not supported")
			} else {
				b.ignore(c, "real_server", "unknown keyword")
			}
		}
	}
	rs.Weight = d.Weight
	for _, c := range checks {
		chk, err := b.checker(c, &defs)
		if err != nil {
			return err
		}
		rs.Checks = append(rs.Checks, chk)
	}
	// Direct routing and tunnels keep the virtual port, so IPVS (and
	// ipvsadm, and package ipvs) store such a destination with the
	// service's port. keepalived still checks the port written on the
	// real_server line; so does xlb, through connect_port.
	port := -1
	for _, k := range keys {
		p := int(d.Port)
		if !k.IsFWMark() && (d.Fwd == ipvs.FwdRoute || d.Fwd == ipvs.FwdTunnel) {
			p = int(k.Port)
		}
		if port >= 0 && p != port {
			return errorf(n.pos, "real_server %s: the services of the group have different ports, and a %s destination takes each one's port: use one virtual_server per port",
				strings.Join(n.args, " "), fwdName(d.Fwd))
		}
		port = p
	}
	if uint16(port) != ap.Port() {
		rs.Addr = netip.AddrPortFrom(ap.Addr(), uint16(port))
		for i := range rs.Checks {
			if rs.Checks[i].ConnectPort == 0 {
				rs.Checks[i].ConnectPort = ap.Port()
			}
		}
	}
	for _, k := range keys {
		if err := b.res.IPVS.AddDest(k, d); err != nil {
			return &Error{Pos: n.pos, Msg: "real_server " + strings.Join(n.args, " "), Err: err}
		}
	}
	vc.hs.Reals = append(vc.hs.Reals, rs)
	return nil
}

func (b *builder) checker(n *node, defs *defaults) (health.Check, error) {
	kind := checkerKinds[n.key]
	c := health.NewCheck(kind)
	defs.apply(&c)
	if !n.block {
		return c, errorf(n.pos, "%s needs a block", n.key)
	}
	var own defaults
	where := n.key
	for _, o := range n.children {
		if ok, err := own.option(o); ok {
			if err != nil {
				return c, err
			}
			continue
		}
		var err error
		switch o.key {
		case "connect_ip", "bindto":
			var a netip.Addr
			if len(o.args) != 1 {
				return c, errorf(o.pos, "%s takes an address", o.key)
			}
			if a, err = netip.ParseAddr(o.args[0]); err != nil || a.Zone() != "" {
				return c, errorf(o.pos, "%s %q: not an IP address", o.key, o.args[0])
			}
			if o.key == "connect_ip" {
				c.ConnectIP = a
			} else {
				c.BindTo = a
			}
		case "connect_port", "bind_port":
			if len(o.args) != 1 {
				return c, errorf(o.pos, "%s takes a port", o.key)
			}
			var p uint16
			if p, err = portArg(o, o.args[0]); err == nil {
				if o.key == "connect_port" {
					c.ConnectPort = p
				} else {
					c.BindPort = p
				}
			}
		case "bind_if":
			if len(o.args) != 1 {
				return c, errorf(o.pos, "bind_if takes an interface name")
			}
			c.BindIf = o.args[0]
		case "fwmark":
			var v uint64
			if v, err = oneUint(o, 0, math.MaxUint32); err == nil {
				c.FWMark = uint32(v)
			}
		case "rise":
			var v uint64
			if v, err = oneUint(o, 1, math.MaxInt32); err == nil {
				c.Rise = int(v)
			}
		default:
			err = b.checkerOption(&c, o, where)
		}
		if err != nil {
			return c, err
		}
	}
	own.apply(&c)
	if (kind == health.HTTPGet || kind == health.SSLGet) && len(c.URLs) == 0 {
		return c, errorf(n.pos, "%s needs at least one url block", n.key)
	}
	if kind == health.MiscCheck && c.MiscPath == "" {
		return c, errorf(n.pos, "MISC_CHECK needs misc_path")
	}
	if err := c.Validate(); err != nil {
		return c, &Error{Pos: n.pos, Msg: n.key, Err: err}
	}
	return c, nil
}

func (b *builder) checkerOption(c *health.Check, o *node, where string) error {
	switch c.Kind {
	case health.HTTPGet, health.SSLGet:
		switch o.key {
		case "url":
			u, err := b.url(o)
			if err != nil {
				return err
			}
			c.URLs = append(c.URLs, u)
			return nil
		case "virtualhost":
			if len(o.args) != 1 {
				return errorf(o.pos, "virtualhost takes a name")
			}
			c.VirtualHost = o.args[0]
			return nil
		case "enable_sni":
			c.EnableSNI = true
			return nil
		case "http_protocol":
			b.ignore(o, where, "xlb always sends HTTP/1.0 requests, as keepalived's default")
			return nil
		case "fast_recovery", "tls_compliant":
			b.ignore(o, where, "not supported")
			return nil
		}
	case health.UDPCheck:
		switch o.key {
		case "payload":
			p, err := hexArg(o, true)
			if err != nil {
				return err
			}
			c.Payload = p
			return nil
		case "require_reply":
			c.RequireReply = true
			if len(o.args) > 0 {
				p, err := hexArg(o, false)
				if err != nil {
					return err
				}
				c.ReplyPrefix = p
			}
			return nil
		case "min_reply_length", "max_reply_length":
			v, err := oneUint(o, 0, 65535)
			if err != nil {
				return err
			}
			if o.key == "min_reply_length" {
				c.MinReplyLen = int(v)
			} else {
				c.MaxReplyLen = int(v)
			}
			return nil
		}
	case health.MiscCheck:
		switch o.key {
		case "misc_path":
			s, err := scriptArg(o)
			if err != nil {
				return err
			}
			c.MiscPath = s
			return nil
		case "misc_timeout":
			d, err := durationArg(o)
			if err != nil {
				return err
			}
			c.MiscTimeout = d
			return nil
		case "misc_dynamic":
			c.MiscDynamic = true
			return nil
		case "user":
			b.ignore(o, where, "scripts run as xlb's user")
			return nil
		}
	}
	b.ignore(o, where, "unknown keyword")
	return nil
}

func (b *builder) url(n *node) (health.URL, error) {
	var u health.URL
	if !n.block {
		return u, errorf(n.pos, "url needs a block")
	}
	for _, o := range n.children {
		switch o.key {
		case "path":
			if len(o.args) != 1 || !strings.HasPrefix(o.args[0], "/") {
				return u, errorf(o.pos, "path takes an absolute path starting with /")
			}
			u.Path = o.args[0]
		case "digest":
			if len(o.args) != 1 {
				return u, errorf(o.pos, "digest takes an MD5 in hex (genhash's output)")
			}
			d := strings.ToLower(o.args[0])
			if _, err := hex.DecodeString(d); err != nil || len(d) != 32 {
				return u, errorf(o.pos, "digest %q: want 32 hex digits (an MD5, as genhash prints it)", o.args[0])
			}
			u.Digest = d
		case "status_code":
			if len(o.args) == 0 {
				return u, errorf(o.pos, "status_code takes codes or ranges like 200-299")
			}
			for _, a := range o.args {
				lo, hi, isRange := strings.Cut(a, "-")
				if !isRange {
					hi = lo
				}
				l, err1 := strconv.Atoi(lo)
				h, err2 := strconv.Atoi(hi)
				if err1 != nil || err2 != nil || l < 100 || h > 999 || l > h {
					return u, errorf(o.pos, "status_code %s: want a code or range within 100-999", a)
				}
				u.StatusCodes = append(u.StatusCodes, health.StatusRange{Min: l, Max: h})
			}
		case "virtualhost":
			if len(o.args) != 1 {
				return u, errorf(o.pos, "virtualhost takes a name")
			}
			u.VirtualHost = o.args[0]
		default:
			b.ignore(o, "url", "not supported")
		}
	}
	if u.Path == "" {
		return u, errorf(n.pos, "url needs a path")
	}
	return u, nil
}

// Argument helpers.

func oneUint(n *node, min, max uint64) (uint64, error) {
	if len(n.args) != 1 {
		return 0, errorf(n.pos, "%s takes one number", n.key)
	}
	return uintArg(n, n.args[0], min, max)
}

func uintArg(n *node, s string, min, max uint64) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v < min || v > max {
		return 0, errorf(n.pos, "%s %q: want a whole number %d..%d", n.key, s, min, max)
	}
	return v, nil
}

// maxSeconds bounds a time setting: 31 days, like IPVS's timeouts.
const maxSeconds = ipvs.MaxTimeout

// durationArg reads seconds, possibly with a fraction ("1.5"), as
// keepalived 2.x does.
func durationArg(n *node) (time.Duration, error) {
	if len(n.args) != 1 {
		return 0, errorf(n.pos, "%s takes a time in seconds", n.key)
	}
	v, err := strconv.ParseFloat(n.args[0], 64)
	if err != nil || math.IsNaN(v) || v < 0 || v > maxSeconds || strings.ContainsAny(n.args[0], "xXpPeEiInN_") {
		return 0, errorf(n.pos, "%s %q: want seconds 0..%d", n.key, n.args[0], maxSeconds)
	}
	return time.Duration(math.Round(v * float64(time.Second))), nil
}

func portArg(n *node, s string) (uint16, error) {
	v, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, errorf(n.pos, "%s: port %q: want 0..65535", n.key, s)
	}
	return uint16(v), nil
}

// addrPortArgs reads ADDRESS PORT; the port may be left out when
// portOptional (firewall-mark services and sorry servers).
func addrPortArgs(n *node, portOptional bool) (netip.AddrPort, error) {
	if len(n.args) == 0 || len(n.args) > 2 || (len(n.args) == 1 && !portOptional) {
		return netip.AddrPort{}, errorf(n.pos, "%s takes ADDRESS PORT", n.key)
	}
	a, err := netip.ParseAddr(n.args[0])
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, errorf(n.pos, "%s: address %q: not an IP address", n.key, n.args[0])
	}
	var p uint16
	if len(n.args) == 2 {
		if p, err = portArg(n, n.args[1]); err != nil {
			return netip.AddrPort{}, err
		}
	}
	return netip.AddrPortFrom(a, p), nil
}

// scriptArg is a script's command line: one quoted word is the whole
// line, several words are re-quoted for health's splitting.
func scriptArg(n *node) (string, error) {
	if len(n.args) == 0 || n.args[0] == "" {
		return "", errorf(n.pos, "%s takes a script", n.key)
	}
	if len(n.args) == 1 {
		return n.args[0], nil
	}
	words := make([]string, len(n.args))
	for i, a := range n.args {
		if a == "" || strings.ContainsAny(a, " \t'\"\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		words[i] = a
	}
	return strings.Join(words, " "), nil
}

func hexArg(n *node, required bool) ([]byte, error) {
	if len(n.args) != 1 {
		if !required && len(n.args) == 0 {
			return nil, nil
		}
		return nil, errorf(n.pos, "%s takes one hex string", n.key)
	}
	p, err := hex.DecodeString(n.args[0])
	if err != nil {
		return nil, errorf(n.pos, "%s %q: not a hex string", n.key, n.args[0])
	}
	return p, nil
}

// maskBits turns a dotted IPv4 netmask or a prefix length into a prefix
// length.
func maskBits(s string) (int, error) {
	if v, err := strconv.Atoi(s); err == nil {
		if v < 1 || v > 128 {
			return 0, errors.New("prefix length must be 1..128")
		}
		return v, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, errors.New("want a netmask like 255.255.255.0 or a prefix length")
	}
	b := a.As4()
	m := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	bits := 0
	for m&0x80000000 != 0 {
		bits++
		m <<= 1
	}
	if m != 0 || bits == 0 {
		return 0, errors.New("netmask is not contiguous")
	}
	return bits, nil
}
