package ipvsadm

import (
	"net/netip"
	"strconv"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// Kind is an ipvsadm command.
type Kind uint8

const (
	KindNone          Kind = iota
	KindAddService         // -A, --add-service
	KindEditService        // -E, --edit-service
	KindDeleteService      // -D, --delete-service
	KindClear              // -C, --clear ("flush" in ipvsadm's messages)
	KindList               // -L, -l, --list; also no arguments at all
	KindAddServer          // -a, --add-server
	KindDeleteServer       // -d, --delete-server
	KindEditServer         // -e, --edit-server
	KindSet                // --set tcp tcpfin udp
	KindStartDaemon        // --start-daemon master|backup
	KindStopDaemon         // --stop-daemon master|backup
	KindRestore            // -R, --restore
	KindSave               // -S, --save
	KindZero               // -Z, --zero
	KindHelp               // -h, --help
	KindVersion            // -v, --version
	KindAddLaddr           // -P, --add-laddr (DPVS)
	KindDelLaddr           // -Q, --del-laddr (DPVS)
	KindGetLaddr           // -G, --get-laddr (DPVS)
)

// kindNames are ipvsadm's cmdnames, which its messages use (DPVS's for
// the local-address commands).
var kindNames = [...]string{
	KindNone:          "none",
	KindAddService:    "add-service",
	KindEditService:   "edit-service",
	KindDeleteService: "delete-service",
	KindClear:         "flush",
	KindList:          "list",
	KindAddServer:     "add-server",
	KindDeleteServer:  "delete-server",
	KindEditServer:    "edit-server",
	KindSet:           "set",
	KindStartDaemon:   "start-daemon",
	KindStopDaemon:    "stop-daemon",
	KindRestore:       "restore",
	KindSave:          "save",
	KindZero:          "zero",
	KindHelp:          "help",
	KindVersion:       "version",
	KindAddLaddr:      "add-laddr",
	KindDelLaddr:      "del-laddr",
	KindGetLaddr:      "get-laddr",
}

// String is the name ipvsadm's messages give the command: "add-service",
// "flush" for -C, ...
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Option is a set of ipvsadm's options (its OPT_* bits), in the order of
// its commands_v_options table.
type Option uint64

const (
	OptNumeric        Option = 1 << iota // -n
	OptConnection                        // -c
	OptService                           // -t, -u, --sctp-service, -f
	OptScheduler                         // -s
	OptPersistent                        // -p
	OptNetmask                           // -M
	OptServer                            // -r
	OptForward                           // -g, -i, -m, --fullnat
	OptWeight                            // -w
	OptUThreshold                        // -x
	OptLThreshold                        // -y
	OptMcast                             // --mcast-interface
	OptTimeout                           // --timeout
	OptDaemon                            // --daemon
	OptStats                             // --stats
	OptRate                              // --rate
	OptThresholds                        // --thresholds
	OptPersistentConn                    // --persistent-conn
	OptNoSort                            // --nosort
	OptSyncID                            // --syncid
	OptExact                             // -X, --exact
	OptOnePacket                         // -o, --ops
	OptPE                                // --pe
	OptSchedFlags                        // -b
	OptMcastGroup                        // --mcast-group
	OptMcastPort                         // --mcast-port
	OptMcastTTL                          // --mcast-ttl
	OptSyncMaxLen                        // --sync-maxlen
	OptTunInfo                           // --tun-info
	OptTunType                           // --tun-type
	OptTunPort                           // --tun-port
	OptTunNoCsum                         // --tun-nocsum
	OptTunCsum                           // --tun-csum
	OptTunRemCsum                        // --tun-remcsum
	OptLocalAddress                      // -z, --laddr (DPVS)
	OptIfname                            // -F, --ifname (DPVS)

	numOptions = iota
)

// optNames are ipvsadm's optnames, which its messages use (DPVS's for
// -z and -F).
var optNames = [numOptions]string{
	"numeric", "connection", "service-address", "scheduler", "persistent",
	"netmask", "real-server", "forwarding-method", "weight", "u-threshold",
	"l-threshold", "mcast-interface", "timeout", "daemon", "stats", "rate",
	"thresholds", "persistent-conn", "nosort", "syncid", "exact", "ops", "pe",
	"sched-flags", "mcast-group", "mcast-port", "mcast-ttl", "sync-maxlen",
	"tun-info", "tun-type", "tun-port", "tun-nocsum", "tun-csum",
	"tun-remcsum", "local-address", "ifname",
}

// commandsVOptions is ipvsadm's table of legal combinations of commands
// and options, a row per command (Kind order), a column per option:
// '+' compulsory, 'x' illegal, '1' exclusive, ' ' optional.
//
// The last two columns and the last three rows are DPVS's (its
// "local-address" and "ifname", its ADDLADDR, DELLADDR and GETLADDR),
// except that -F is optional where DPVS makes it compulsory: xlb sends
// out whichever interface the route names and only records the name.
var commandsVOptions = [...]string{
	KindAddService:    "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxxxx",
	KindEditService:   "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxxxx",
	KindDeleteService: "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	KindClear:         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	KindList:          " 11xxxxxxxxx11       xxxxxxx xxxxxxx",
	KindAddServer:     "xx+xxx+    xxxxxxxxxxxxxxxxxx     xx",
	KindDeleteServer:  "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	KindEditServer:    "xx+xxx+    xxxxxxxxxxxxxxxxxx     xx",
	KindSet:           "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	KindStartDaemon:   "xxxxxxxxxxx xxxxxxx xxxx    xxxxxxxx",
	KindStopDaemon:    "xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxxxx",
	KindRestore:       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	KindSave:          " xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	KindZero:          "xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	KindAddLaddr:      "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx+ ",
	KindDelLaddr:      "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx+ ",
	KindGetLaddr:      "xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
}

// ListOptions are the listing options of -L and -S.
type ListOptions struct {
	Numeric        bool // -n: no name lookups
	Connection     bool // -c: connection entries
	Timeout        bool // --timeout
	Daemon         bool // --daemon
	Stats          bool // --stats
	Rate           bool // --rate
	Thresholds     bool // --thresholds
	PersistentConn bool // --persistent-conn
	NoSort         bool // --nosort
	Exact          bool // -X, --exact
	TunInfo        bool // --tun-info

	// Service, when set, lists only that service (-L -t addr:port, and
	// -G -t addr:port).
	Service *ipvs.ServiceKey

	// TableSize is not an option: it is the connection table size the
	// listing's header reports. 0 means DefaultTableSize.
	TableSize int
}

// Daemon is what --start-daemon and --stop-daemon were given, with
// ipvsadm's defaults (interface eth0; 0 for an option not given, which
// the kernel replaces by its default). The xlb daemon carries them out
// (package ipvssync: FromDaemon).
type Daemon struct {
	State          string     // "master" or "backup"
	McastInterface string     // --mcast-interface, default "eth0"
	SyncID         int        // --syncid 0..255
	SyncMaxLen     int        // --sync-maxlen
	McastGroup     netip.Addr // --mcast-group
	McastPort      int        // --mcast-port
	McastTTL       int        // --mcast-ttl
}

// Command is one parsed ipvsadm command line.
type Command struct {
	Kind    Kind
	Options Option // the options given

	// Service is the virtual service (-t, -u, --sctp-service, -f [-6]) with
	// the settings given (-s, -p, -M, -o, --pe, -b) and ipvsadm's defaults
	// for the rest: scheduler wlc for -A and -E, netmask /32 or /128. Its
	// Dests are empty. Only meaningful when Options has OptService.
	Service ipvs.Service

	// Dest is the real server of -a, -e and -d (-r, -g/-i/-m/--fullnat,
	// -w, -x, -y, --tun-*), with ipvsadm's defaults: direct routing, weight
	// 1. For -a and -e of a service that is not a firewall-mark one, a
	// direct-routing or tunnel destination's port is the service's, as
	// ipvsadm sends it; a FULLNAT one keeps its own.
	Dest ipvs.Dest

	// LocalAddr is the FULLNAT local address of -P and -Q (-z, -F). -z's
	// port, if any, is ignored as DPVS ignores it.
	LocalAddr ipvs.LocalAddr

	Timeouts ipvs.Timeouts // --set tcp tcpfin udp
	List     ListOptions   // -L and -S
	Daemon   Daemon        // --start-daemon, --stop-daemon
}
