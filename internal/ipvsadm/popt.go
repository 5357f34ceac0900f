package ipvsadm

import "strings"

// This file scans a command line the way ipvsadm's popt (1.18) does:
//
//   - "--name" and "--name=value" are long options, matched exactly (no
//     abbreviations); "--" ends the options.
//   - "-abc" is a cluster of short options; an option that takes a value
//     takes the rest of the cluster ("-w5", "-w=5") or else the next
//     argument, whatever it looks like ("-s -p" schedules with "-p").
//   - -p/--persistent's value is optional: it takes the next argument only
//     if that does not start with '-'.
//   - Anything else ("10", "-", "") is a leftover argument, wherever it is:
//     --set's three values are leftovers.
//
// popt's "!#:+" expansion of option values is not done.

// argKind is whether an option takes a value.
type argKind uint8

const (
	argNone argKind = iota
	argRequired
	argOptional
)

// tag identifies an option of ipvsadm's popt table.
type tag uint8

const (
	// commands
	tagAdd tag = iota + 1
	tagEdit
	tagDelete
	tagClear
	tagList
	tagZero
	tagAddServer
	tagEditServer
	tagDeleteServer
	tagSet
	tagHelp
	tagVersion
	tagRestore
	tagSave
	tagStartDaemon
	tagStopDaemon
	tagAddLaddr
	tagDelLaddr
	tagGetLaddr
	// options
	tagTCP
	tagUDP
	tagSCTP
	tagFWMark
	tagScheduler
	tagPersistent
	tagNetmask
	tagRealServer
	tagMasq
	tagIPIP
	tagGateway
	tagWeight
	tagUThreshold
	tagLThreshold
	tagNumeric
	tagConnection
	tagMcastInterface
	tagSyncID
	tagTimeout
	tagDaemon
	tagStats
	tagRate
	tagThresholds
	tagPersistentConn
	tagNoSort
	tagSort
	tagExact
	tagIPv6
	tagOPS
	tagPE
	tagSchedFlags
	tagMcastGroup
	tagMcastPort
	tagMcastTTL
	tagSyncMaxLen
	tagTunInfo
	tagTunType
	tagTunPort
	tagTunNoCsum
	tagTunCsum
	tagTunRemCsum
	tagFullNAT
	tagLaddr
	tagIfname
)

type optSpec struct {
	long  string
	short byte
	arg   argKind
	tag   tag
}

// optTable is ipvsadm 1.31's popt table (parse_options), with DPVS's
// FULLNAT options at the end: its -P, -Q, -G, -z and -F, and its
// --fullnat without the short -b, which is 1.31's --sched-flags.
var optTable = []optSpec{
	{"add-service", 'A', argNone, tagAdd},
	{"edit-service", 'E', argNone, tagEdit},
	{"delete-service", 'D', argNone, tagDelete},
	{"clear", 'C', argNone, tagClear},
	{"list", 'L', argNone, tagList},
	{"list", 'l', argNone, tagList},
	{"zero", 'Z', argNone, tagZero},
	{"add-server", 'a', argNone, tagAddServer},
	{"edit-server", 'e', argNone, tagEditServer},
	{"delete-server", 'd', argNone, tagDeleteServer},
	{"set", 0, argNone, tagSet},
	{"help", 'h', argNone, tagHelp},
	{"version", 'v', argNone, tagVersion},
	{"restore", 'R', argNone, tagRestore},
	{"save", 'S', argNone, tagSave},
	{"start-daemon", 0, argRequired, tagStartDaemon},
	{"stop-daemon", 0, argRequired, tagStopDaemon},
	{"tcp-service", 't', argRequired, tagTCP},
	{"udp-service", 'u', argRequired, tagUDP},
	{"sctp-service", 0, argRequired, tagSCTP},
	{"fwmark-service", 'f', argRequired, tagFWMark},
	{"scheduler", 's', argRequired, tagScheduler},
	{"persistent", 'p', argOptional, tagPersistent},
	{"netmask", 'M', argRequired, tagNetmask},
	{"real-server", 'r', argRequired, tagRealServer},
	{"masquerading", 'm', argNone, tagMasq},
	{"ipip", 'i', argNone, tagIPIP},
	{"gatewaying", 'g', argNone, tagGateway},
	{"weight", 'w', argRequired, tagWeight},
	{"u-threshold", 'x', argRequired, tagUThreshold},
	{"l-threshold", 'y', argRequired, tagLThreshold},
	{"numeric", 'n', argNone, tagNumeric},
	{"connection", 'c', argNone, tagConnection},
	{"mcast-interface", 0, argRequired, tagMcastInterface},
	{"syncid", 0, argRequired, tagSyncID},
	{"timeout", 0, argNone, tagTimeout},
	{"daemon", 0, argNone, tagDaemon},
	{"stats", 0, argNone, tagStats},
	{"rate", 0, argNone, tagRate},
	{"thresholds", 0, argNone, tagThresholds},
	{"persistent-conn", 0, argNone, tagPersistentConn},
	{"nosort", 0, argNone, tagNoSort},
	{"sort", 0, argNone, tagSort},
	{"exact", 'X', argNone, tagExact},
	{"ipv6", '6', argNone, tagIPv6},
	{"ops", 'o', argNone, tagOPS},
	{"pe", 0, argRequired, tagPE},
	{"sched-flags", 'b', argRequired, tagSchedFlags},
	{"mcast-group", 0, argRequired, tagMcastGroup},
	{"mcast-port", 0, argRequired, tagMcastPort},
	{"mcast-ttl", 0, argRequired, tagMcastTTL},
	{"sync-maxlen", 0, argRequired, tagSyncMaxLen},
	{"tun-info", 0, argNone, tagTunInfo},
	{"tun-type", 0, argRequired, tagTunType},
	{"tun-port", 0, argRequired, tagTunPort},
	{"tun-nocsum", 0, argNone, tagTunNoCsum},
	{"tun-csum", 0, argNone, tagTunCsum},
	{"tun-remcsum", 0, argNone, tagTunRemCsum},
	{"add-laddr", 'P', argNone, tagAddLaddr},
	{"del-laddr", 'Q', argNone, tagDelLaddr},
	{"get-laddr", 'G', argNone, tagGetLaddr},
	{"fullnat", 0, argNone, tagFullNAT},
	{"laddr", 'z', argRequired, tagLaddr},
	{"ifname", 'F', argRequired, tagIfname},
}

func findLong(name string) *optSpec {
	for i := range optTable {
		if optTable[i].long == name {
			return &optTable[i]
		}
	}
	return nil
}

func findShort(c byte) *optSpec {
	for i := range optTable {
		if c != 0 && optTable[i].short == c {
			return &optTable[i]
		}
	}
	return nil
}

// popt's errors (poptStrerror).
const (
	poptBadOpt      = "unknown option"
	poptNoArg       = "missing argument"
	poptUnwantedArg = "option does not take an argument"
)

// scanner is a popt context over args (argv without argv[0]).
type scanner struct {
	args      []string
	next      int    // next argument to look at
	cluster   string // rest of a short-option cluster
	rest      bool   // "--" seen: the rest are leftovers
	leftovers []string
}

// scanned is one option and its value; hasVal is false for an option
// without one, or an optional value left out.
type scanned struct {
	opt    *optSpec
	val    string
	hasVal bool
}

// badOption is poptBadOption: the last argument looked at.
func (s *scanner) badOption() string {
	if s.next == 0 {
		return ""
	}
	return s.args[s.next-1]
}

// nextOpt returns the next option; ok is false at the end. A non-empty
// perr is popt's error text.
func (s *scanner) nextOpt() (o scanned, ok bool, perr string) {
	var longVal *string
	for s.cluster == "" {
		if s.next == len(s.args) {
			return o, false, ""
		}
		a := s.args[s.next]
		s.next++
		if s.rest || a == "" || a[0] != '-' || a == "-" {
			s.leftovers = append(s.leftovers, a)
			continue
		}
		if a == "--" {
			s.rest = true
			continue
		}
		if a[1] != '-' {
			s.cluster = a[1:]
			break
		}
		name := a[2:]
		if i := strings.IndexByte(name, '='); i >= 0 {
			v := name[i+1:]
			longVal, name = &v, name[:i]
		}
		o.opt = findLong(name)
		if o.opt == nil {
			return o, false, poptBadOpt
		}
		break
	}
	if o.opt == nil {
		o.opt = findShort(s.cluster[0])
		s.cluster = s.cluster[1:]
		if o.opt == nil {
			s.cluster = ""
			return o, false, poptBadOpt
		}
	}
	if o.opt.arg == argNone {
		if longVal != nil || strings.HasPrefix(s.cluster, "=") {
			return o, false, poptUnwantedArg
		}
		return o, true, ""
	}
	switch {
	case longVal != nil:
		o.val, o.hasVal = *longVal, true
	case s.cluster != "":
		o.val, o.hasVal = strings.TrimPrefix(s.cluster, "="), true
		s.cluster = ""
	case s.next == len(s.args):
		if o.opt.arg != argOptional {
			return o, false, poptNoArg
		}
	case o.opt.arg == argOptional && strings.HasPrefix(s.args[s.next], "-"):
		// -p followed by an option: no timeout given.
	default:
		o.val, o.hasVal = s.args[s.next], true
		s.next++
	}
	return o, true, ""
}
