package ipvsadm

import (
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"strings"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// Limits of ipvsadm's fixed-size buffers, which truncate what is given.
const (
	schedNameMax  = 16 - 1  // IP_VS_SCHEDNAME_MAXLEN - 1
	peNameMax     = 16      // IP_VS_PENAME_MAXLEN
	ifNameMax     = 16 - 1  // IP_VS_IFNAME_MAXLEN - 1
	schedFlagsMax = 128 - 1 // sched_flags_arg[128]
)

// Forwarding methods as ipvsadm holds them before they become ipvs.Fwd.
const (
	fwdMasq = iota
	fwdTunnel
	fwdRoute
	fwdFullNAT
)

// state is ipvsadm's struct ipvs_command_entry while it parses: the
// service and destination as the kernel would get them.
type state struct {
	kind Kind
	opts Option

	svcAF      int // 0 (not given), 4 or 6
	proto      ipvs.Proto
	addr       netip.Addr
	port       uint16
	fwmark     uint32
	sched      string
	schedFlags string // -b, parsed once all options are known
	persistent bool
	timeout    uint32
	netmask    uint32 // IPv4: the mask as a number; IPv6: the prefix length
	onePacket  bool
	pe         string

	destAF     int
	destAddr   netip.Addr
	destPort   uint16
	fwd        int
	weight     int32
	uThreshold uint32
	lThreshold uint32
	tunType    ipvs.TunType
	tunPort    uint16
	tunFlags   ipvs.TunFlags

	laddr  netip.Addr // -z
	ifname string     // -F

	timeouts ipvs.Timeouts
	list     ListOptions
	daemon   Daemon
}

// Parse parses an ipvsadm 1.31 command line (without argv[0]) as ipvsadm
// does, with its checks and its messages. An empty line is -L, as running
// ipvsadm without arguments lists the table.
//
// The error is an *Error whose Msg is what ipvsadm prints and whose Code
// is its exit status: 2 for a bad command line, 255 where ipvsadm exits
// with -1 (no command, or an option popt cannot scan), 1 for a command xlb
// cannot carry out (the sync daemon).
func Parse(args []string) (Command, error) {
	if len(args) == 0 {
		return Command{Kind: KindList}, nil
	}
	st := state{netmask: math.MaxUint32, fwd: fwdRoute, weight: 1}
	sc := &scanner{args: args}

	first, ok, perr := sc.nextOpt()
	if !ok || perr != "" {
		return Command{}, tryHelp()
	}
	switch first.opt.tag {
	case tagAdd:
		st.kind = KindAddService
	case tagEdit:
		st.kind = KindEditService
	case tagDelete:
		st.kind = KindDeleteService
	case tagAddServer:
		st.kind = KindAddServer
	case tagEditServer:
		st.kind = KindEditServer
	case tagDeleteServer:
		st.kind = KindDeleteServer
	case tagClear:
		st.kind = KindClear
	case tagList:
		st.kind = KindList
	case tagZero:
		st.kind = KindZero
	case tagSet:
		st.kind = KindSet
	case tagRestore:
		st.kind = KindRestore
	case tagSave:
		st.kind = KindSave
	case tagAddLaddr:
		st.kind = KindAddLaddr
	case tagDelLaddr:
		st.kind = KindDelLaddr
	case tagGetLaddr:
		st.kind = KindGetLaddr
	case tagStartDaemon, tagStopDaemon:
		st.kind = KindStartDaemon
		if first.opt.tag == tagStopDaemon {
			st.kind = KindStopDaemon
		}
		if first.val != "master" && first.val != "backup" {
			if st.kind == KindStartDaemon {
				return Command{}, usageError("illegal start-daemon parameter specified")
			}
			return Command{}, usageError("illegal start_daemon specified")
		}
		st.daemon.State = first.val
	case tagHelp:
		return Command{Kind: KindHelp}, nil
	case tagVersion:
		return Command{Kind: KindVersion}, nil
	default:
		return Command{}, tryHelp()
	}

	for {
		o, ok, perr := sc.nextOpt()
		if perr != "" {
			return Command{}, &Error{Code: ExitTryHelp, Msg: sc.badOption() + ": " + perr}
		}
		if !ok {
			break
		}
		if err := st.option(o, sc); err != nil {
			return Command{}, err
		}
	}

	left := sc.leftovers
	if st.kind == KindSet {
		if len(left) < 3 {
			return Command{}, usageError("--set option requires 3 timeout values")
		}
		var t [3]uint32
		for i := range t {
			v, err := parseTimeout(left[i], 0)
			if err != nil {
				return Command{}, err
			}
			t[i] = v
		}
		st.timeouts = ipvs.Timeouts{TCP: t[0], TCPFin: t[1], UDP: t[2]}
		left = left[3:]
	}
	if len(left) > 0 {
		return Command{}, usageError("unexpected argument " + left[0])
	}
	var flagBits uint8
	if st.schedFlags != "" {
		b, err := parseSchedFlags(st.sched, st.schedFlags)
		if err != nil {
			return Command{}, err
		}
		flagBits = b
	}
	if err := genericOptCheck(st.kind, st.opts); err != nil {
		return Command{}, err
	}
	return st.finish(flagBits)
}

// option handles one option after the command, as parse_options's loop.
func (st *state) option(o scanned, sc *scanner) error {
	v := o.val
	switch o.opt.tag {
	case tagTCP, tagUDP, tagSCTP:
		if err := st.set(OptService); err != nil {
			return err
		}
		st.proto = map[tag]ipvs.Proto{tagTCP: ipvs.TCP, tagUDP: ipvs.UDP, tagSCTP: ipvs.SCTP}[o.opt.tag]
		addr, port, found := parseService(v, st.proto)
		if found&foundAddr == 0 {
			return usageError("illegal virtual server address[:port] specified")
		}
		st.addr = addr
		if found&foundPort != 0 {
			st.port = port
		}
		st.svcAF = 4
		if addr.Is6() {
			st.svcAF, st.netmask = 6, 128
		}
	case tagFWMark:
		if err := st.set(OptService); err != nil {
			return err
		}
		st.svcAF, st.proto = 4, ipvs.TCP
		n, end, rangeErr := strtol(v)
		if end == 0 || end != len(v) || rangeErr || n <= 0 || n > math.MaxUint32 {
			return usageError(fmt.Sprintf("invalid fwmark value `%s' specified", v))
		}
		st.fwmark = uint32(n)
	case tagScheduler:
		if err := st.set(OptScheduler); err != nil {
			return err
		}
		st.sched = truncate(v, schedNameMax)
	case tagPersistent:
		if err := st.set(OptPersistent); err != nil {
			return err
		}
		st.persistent = true
		st.timeout = ipvs.DefaultPersistTimeout
		if o.hasVal {
			t, err := parseTimeout(v, 1)
			if err != nil {
				return err
			}
			st.timeout = t
		}
	case tagNetmask:
		if err := st.set(OptNetmask); err != nil {
			return err
		}
		if st.svcAF != 6 {
			a, ok := inetAton(v)
			if !ok {
				return usageError("illegal virtual server persistent mask specified")
			}
			b := a.As4()
			st.netmask = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		} else {
			n := atoi(v)
			if n < 1 || n > 128 {
				return usageError("illegal ipv6 netmask specified")
			}
			st.netmask = uint32(n)
		}
	case tagRealServer:
		if err := st.set(OptServer); err != nil {
			return err
		}
		addr, port, found := parseService(v, st.proto)
		if found&foundAddr == 0 {
			return usageError("illegal real server address[:port] specified")
		}
		st.destAddr, st.destAF = addr, 4
		if addr.Is6() {
			st.destAF = 6
		}
		st.destPort = st.port // copy vport to dport if not specified
		if found&foundPort != 0 {
			st.destPort = port
		}
	case tagIPIP, tagGateway, tagMasq, tagFullNAT:
		if err := st.set(OptForward); err != nil {
			return err
		}
		st.fwd = map[tag]int{tagIPIP: fwdTunnel, tagGateway: fwdRoute, tagMasq: fwdMasq, tagFullNAT: fwdFullNAT}[o.opt.tag]
	case tagLaddr:
		// DPVS reads -z as a service address and keeps only the address.
		if err := st.set(OptLocalAddress); err != nil {
			return err
		}
		addr, _, found := parseService(v, st.proto)
		if found&foundAddr == 0 {
			return usageError("illegal local address")
		}
		st.laddr = addr
	case tagIfname:
		if err := st.set(OptIfname); err != nil {
			return err
		}
		st.ifname = truncate(v, ifNameMax) // snprintf into char[IFNAMSIZ]
	case tagWeight:
		if err := st.set(OptWeight); err != nil {
			return err
		}
		n, ok := stringToNumber(v, 0, 65535)
		if !ok {
			return usageError("illegal weight specified")
		}
		st.weight = int32(n)
	case tagUThreshold, tagLThreshold:
		opt, name, dst := OptUThreshold, "u_threshold", &st.uThreshold
		if o.opt.tag == tagLThreshold {
			opt, name, dst = OptLThreshold, "l_threshold", &st.lThreshold
		}
		if err := st.set(opt); err != nil {
			return err
		}
		n, ok := stringToNumber(v, 0, math.MaxInt32)
		if !ok {
			return usageError("illegal " + name + " specified")
		}
		*dst = uint32(n)
	case tagConnection:
		st.list.Connection = true
		return st.set(OptConnection)
	case tagNumeric:
		st.list.Numeric = true
		return st.set(OptNumeric)
	case tagMcastInterface:
		if err := st.set(OptMcast); err != nil {
			return err
		}
		st.daemon.McastInterface = truncate(v, ifNameMax)
	case tagSyncID:
		if err := st.set(OptSyncID); err != nil {
			return err
		}
		n, ok := stringToNumber(v, 0, 255)
		if !ok {
			return usageError("illegal syncid specified")
		}
		st.daemon.SyncID = int(n)
	case tagTimeout:
		st.list.Timeout = true
		return st.set(OptTimeout)
	case tagDaemon:
		st.list.Daemon = true
		return st.set(OptDaemon)
	case tagStats:
		st.list.Stats = true
		return st.set(OptStats)
	case tagRate:
		st.list.Rate = true
		return st.set(OptRate)
	case tagThresholds:
		st.list.Thresholds = true
		return st.set(OptThresholds)
	case tagPersistentConn:
		st.list.PersistentConn = true
		return st.set(OptPersistentConn)
	case tagNoSort:
		st.list.NoSort = true
		return st.set(OptNoSort)
	case tagSort:
		// The default; a no-op for compatibility.
	case tagExact:
		st.list.Exact = true
		return st.set(OptExact)
	case tagIPv6:
		if st.fwmark == 0 {
			return usageError("-6 used before -f\n")
		}
		st.svcAF, st.netmask = 6, 128
	case tagOPS:
		st.onePacket = true
		return st.set(OptOnePacket)
	case tagPE:
		if err := st.set(OptPE); err != nil {
			return err
		}
		st.pe = truncate(v, peNameMax)
	case tagSchedFlags:
		if err := st.set(OptSchedFlags); err != nil {
			return err
		}
		st.schedFlags = truncate(v, schedFlagsMax)
	case tagMcastGroup:
		if err := st.set(OptMcastGroup); err != nil {
			return err
		}
		if strings.Contains(v, ":") {
			a, ok := inetPton6(v)
			if !ok || !a.IsMulticast() {
				return usageError(fmt.Sprintf("invalid IPv6 mcast-group `%s'", v))
			}
			st.daemon.McastGroup = a
		} else {
			a, ok := inetPton4(v)
			if !ok || !a.IsMulticast() {
				return usageError(fmt.Sprintf("invalid IPv4 mcast-group `%s'", v))
			}
			st.daemon.McastGroup = a
		}
	case tagMcastPort, tagMcastTTL, tagSyncMaxLen:
		opt, name, max, dst := OptMcastPort, "mcast-port", int64(65535), &st.daemon.McastPort
		switch o.opt.tag {
		case tagMcastTTL:
			opt, name, max, dst = OptMcastTTL, "mcast-ttl", 255, &st.daemon.McastTTL
		case tagSyncMaxLen:
			opt, name, max, dst = OptSyncMaxLen, "sync-maxlen", 65535-20-8, &st.daemon.SyncMaxLen
		}
		if err := st.set(opt); err != nil {
			return err
		}
		n, ok := stringToNumber(v, 1, max)
		if !ok {
			return usageError("illegal " + name + " specified")
		}
		*dst = int(n)
	case tagTunInfo:
		st.list.TunInfo = true
		return st.set(OptTunInfo)
	case tagTunType:
		if err := st.set(OptTunType); err != nil {
			return err
		}
		switch v {
		case "ipip":
			st.tunType = ipvs.TunIPIP
		case "gue":
			st.tunType = ipvs.TunGUE
		case "gre":
			st.tunType = ipvs.TunGRE
		default:
			return usageError("illegal tunnel type specified")
		}
	case tagTunPort:
		if err := st.set(OptTunPort); err != nil {
			return err
		}
		n, ok := stringToNumber(v, 1, 65535)
		if !ok {
			return usageError("illegal tunnel port specified")
		}
		st.tunPort = uint16(n)
	case tagTunNoCsum:
		// IP_VS_TUNNEL_ENCAP_FLAG_NOCSUM is 0: or-ing it changes nothing.
		return st.set(OptTunNoCsum)
	case tagTunCsum:
		st.tunFlags |= ipvs.TunCsum
		return st.set(OptTunCsum)
	case tagTunRemCsum:
		st.tunFlags |= ipvs.TunRemCsum
		return st.set(OptTunRemCsum)
	default:
		// A second command, -h or -v after the command.
		return usageError(fmt.Sprintf("invalid option `%s'", sc.badOption()))
	}
	return nil
}

// set is ipvsadm's set_option.
func (st *state) set(o Option) error {
	if st.opts&o != 0 {
		return usageError(fmt.Sprintf("multiple '%s' options specified", optNames[bits.TrailingZeros64(uint64(o))]))
	}
	st.opts |= o
	return nil
}

// truncate cuts s to n bytes, as strncpy into a fixed buffer does.
func truncate(s string, n int) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		return s[:n]
	}
	return s
}

// parseTimeout is ipvsadm's parse_timeout for a given value.
func parseTimeout(s string, min int64) (uint32, error) {
	n, ok := stringToNumber(s, min, ipvs.MaxTimeout)
	if !ok {
		return 0, usageError(fmt.Sprintf("invalid timeout value `%s' specified", s))
	}
	return uint32(n), nil
}

// parseSchedFlags is ipvsadm's parse_sched_flags: comma-separated flags
// checked against the scheduler (wlc if not given).
func parseSchedFlags(sched, arg string) (uint8, error) {
	flags := strings.FieldsFunc(arg, func(r rune) bool { return r == ',' })
	if len(flags) == 0 {
		// ipvsadm dereferences strtok's NULL here and crashes.
		return 0, usageError("invalid scheduler flag `'")
	}
	b, err := ipvs.SchedFlagBits(sched, flags)
	if err != nil {
		return 0, &Error{Code: ExitUsage, Msg: err.Error(), Err: err}
	}
	return b, nil
}

// genericOptCheck is ipvsadm's generic_opt_check over commandsVOptions.
func genericOptCheck(k Kind, opts Option) error {
	row := commandsVOptions[k]
	last := -1
	for j := 0; j < numOptions; j++ {
		set := opts&(1<<j) != 0
		switch {
		case !set && row[j] == '+':
			return usageError(fmt.Sprintf("You need to supply the '%s' option for the '%s' command", optNames[j], k))
		case set && row[j] == 'x':
			return usageError(fmt.Sprintf("Illegal '%s' option with the '%s' command", optNames[j], k))
		case set && row[j] == '1':
			if last >= 0 {
				return usageError(fmt.Sprintf("The option '%s' conflicts with the '%s' option in the '%s' command",
					optNames[j], optNames[last], k))
			}
			last = j
		}
	}
	return nil
}

// tunOpts are the tunnel options of tunnel_types_v_options's columns.
var tunOpts = [...]Option{OptTunPort, OptTunNoCsum, OptTunCsum, OptTunRemCsum}

// tunnelTypesVOptions is ipvsadm's table of tunnel types and options
// (ipip, gue, gre rows; tun-port, tun-nocsum, tun-csum, tun-remcsum).
var tunnelTypesVOptions = [...]string{
	ipvs.TunIPIP: "xxxx",
	ipvs.TunGUE:  "+111",
	ipvs.TunGRE:  "x11x",
}

var tunNames = [...]string{ipvs.TunIPIP: "ipip", ipvs.TunGUE: "gue", ipvs.TunGRE: "gre"}

// tunnelOptCheck is ipvsadm's tunnel_opt_check.
func tunnelOptCheck(t ipvs.TunType, opts Option) error {
	row := tunnelTypesVOptions[t]
	last := -1
	for j, o := range tunOpts {
		k := bits.TrailingZeros64(uint64(o))
		set := opts&o != 0
		switch {
		case !set && row[j] == '+':
			return usageError(fmt.Sprintf("You need to supply the '%s' option for the '%s' tunnel type", optNames[k], tunNames[t]))
		case set && row[j] == 'x':
			return usageError(fmt.Sprintf("Illegal '%s' option with the '%s' tunnel type", optNames[k], tunNames[t]))
		case set && row[j] == '1':
			if last >= 0 {
				return usageError(fmt.Sprintf("The option '%s' conflicts with the '%s' option in the '%s' tunnel type",
					optNames[k], optNames[last], tunNames[t]))
			}
			last = k
		}
	}
	return nil
}

// finish applies process_options's per-command checks and builds the
// Command.
func (st *state) finish(flagBits uint8) (Command, error) {
	switch st.kind {
	case KindAddService, KindEditService:
		if st.fwmark == 0 && st.port == 0 && !st.persistent {
			return Command{}, usageError(ipvs.ErrZeroPort.Msg)
		}
		if st.onePacket && st.fwmark == 0 && st.proto != ipvs.UDP {
			return Command{}, usageError(ipvs.ErrOnePacket.Msg)
		}
		if st.sched == "" {
			st.sched = ipvs.DefaultSched
		}
	case KindStartDaemon:
		if st.daemon.McastInterface == "" {
			st.daemon.McastInterface = "eth0"
		}
	case KindAddServer, KindEditServer:
		if st.fwmark == 0 && (st.fwd == fwdTunnel || st.fwd == fwdRoute) {
			st.destPort = st.port
		}
		if st.destAF != st.svcAF && st.fwd != fwdTunnel {
			return Command{}, usageError(ipvs.ErrMixedFamily.Msg)
		}
		if st.opts&(OptTunType|OptTunPort|OptTunNoCsum|OptTunCsum|OptTunRemCsum) != 0 && st.fwd != fwdTunnel {
			return Command{}, usageError(ipvs.ErrTunnelOpts.Msg)
		}
		if err := tunnelOptCheck(st.tunType, st.opts); err != nil {
			return Command{}, err
		}
	case KindList:
		if st.opts&(OptConnection|OptTimeout|OptDaemon) != 0 && st.opts&(OptStats|OptRate|OptThresholds) != 0 ||
			st.opts&(OptTimeout|OptDaemon) != 0 && st.opts&OptPersistentConn != 0 {
			return Command{}, usageError("options conflicts in the list command")
		}
	}

	c := Command{Kind: st.kind, Options: st.opts, Timeouts: st.timeouts, List: st.list, Daemon: st.daemon}
	if st.opts&OptService != 0 {
		var k ipvs.ServiceKey
		if st.fwmark != 0 {
			k = ipvs.FWMarkKey(st.fwmark, st.svcAF == 6)
		} else {
			k = ipvs.ServiceKey{Proto: st.proto, Addr: st.addr, Port: st.port}
		}
		c.Service = ipvs.Service{
			Key:        k,
			Sched:      st.sched,
			SchedFlags: ipvs.SchedFlagNames(st.schedOrDefault(), flagBits),
			Persistent: st.persistent,
			Timeout:    st.timeout,
			OnePacket:  st.onePacket,
			PE:         st.pe,
		}
		if st.svcAF == 6 {
			c.Service.Netmask = int(st.netmask)
		} else {
			n := bits.LeadingZeros32(^st.netmask)
			if st.netmask<<n != 0 {
				if st.kind == KindAddService || st.kind == KindEditService {
					m := st.netmask
					return Command{}, &Error{Code: ExitUsage, Err: ipvs.ErrNotSupported,
						Msg: fmt.Sprintf("netmask %d.%d.%d.%d not supported by xlb: must be contiguous", m>>24, m>>16&0xff, m>>8&0xff, m&0xff)}
				}
			}
			c.Service.Netmask = n
		}
		if st.kind == KindList || st.kind == KindGetLaddr {
			k := c.Service.Key
			c.List.Service = &k
		}
	}
	if st.opts&OptLocalAddress != 0 {
		c.LocalAddr = ipvs.LocalAddr{Addr: st.laddr, Ifname: st.ifname}
	}
	if st.opts&OptServer != 0 {
		fwd := map[int]ipvs.Fwd{fwdMasq: ipvs.FwdMasq, fwdTunnel: ipvs.FwdTunnel, fwdRoute: ipvs.FwdRoute, fwdFullNAT: ipvs.FwdFullNAT}[st.fwd]
		c.Dest = ipvs.Dest{
			Addr: st.destAddr, Port: st.destPort, Fwd: fwd, Weight: st.weight,
			UThreshold: st.uThreshold, LThreshold: st.lThreshold,
			TunType: st.tunType, TunPort: st.tunPort, TunFlags: st.tunFlags,
		}
	}
	return c, nil
}

func (st *state) schedOrDefault() string {
	if st.sched == "" {
		return ipvs.DefaultSched
	}
	return st.sched
}
