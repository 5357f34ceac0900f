package ipvsadm

import (
	"bufio"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvs"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// svc is the Service Parse returns for -A key with no other option.
func svc(k ipvs.ServiceKey) ipvs.Service {
	s := ipvs.Service{Key: k, Sched: "wlc", Netmask: 32}
	if k.IPv6() {
		s.Netmask = 128
	}
	return s
}

// bare is the Service Parse returns for commands without scheduler.
func bare(k ipvs.ServiceKey) ipvs.Service {
	s := svc(k)
	s.Sched = ""
	return s
}

func dst(s string, fwd ipvs.Fwd, w int32) ipvs.Dest {
	a := ap(s)
	return ipvs.Dest{Addr: a.Addr(), Port: a.Port(), Fwd: fwd, Weight: w}
}

func with[T any](v T, f func(*T)) T {
	f(&v)
	return v
}

func TestParse(t *testing.T) {
	web := tcpKey("10.0.0.1:80")
	v6 := ipvs.ServiceKey{Proto: ipvs.UDP, Addr: addr("2001:db8::1"), Port: 53}
	for _, tc := range []struct {
		line string
		want Command
	}{
		{"", Command{Kind: KindList}},
		{"-A -t 10.0.0.1:80", Command{Kind: KindAddService, Options: OptService, Service: svc(web)}},
		{"-A -t 10.0.0.1:http -s rr -p", Command{Kind: KindAddService, Options: OptService | OptScheduler | OptPersistent,
			Service: with(svc(web), func(s *ipvs.Service) { s.Sched, s.Persistent, s.Timeout = "rr", true, 360 })}},
		{"-A -t 10.0.0.1:80 -p 120 -M 255.255.0.0", Command{Kind: KindAddService, Options: OptService | OptPersistent | OptNetmask,
			Service: with(svc(web), func(s *ipvs.Service) { s.Persistent, s.Timeout, s.Netmask = true, 120, 16 })}},
		// popt's optional value: "-p -M" leaves -p without one.
		{"-A -u [2001:db8::1]:53 -o -p -M 64", Command{Kind: KindAddService, Options: OptService | OptOnePacket | OptPersistent | OptNetmask,
			Service: with(svc(v6), func(s *ipvs.Service) { s.OnePacket, s.Persistent, s.Timeout, s.Netmask = true, true, 360, 64 })}},
		{"--add-service --tcp-service=10.0.0.1:80 --scheduler=sh --sched-flags=sh-fallback,sh-port --persistent=30",
			Command{Kind: KindAddService, Options: OptService | OptScheduler | OptSchedFlags | OptPersistent,
				Service: with(svc(web), func(s *ipvs.Service) {
					s.Sched, s.SchedFlags, s.Persistent, s.Timeout = "sh", []string{"sh-fallback", "sh-port"}, true, 30
				})}},
		{"-A -t 10.0.0.1:80 -s sh -b flag-1", Command{Kind: KindAddService, Options: OptService | OptScheduler | OptSchedFlags,
			Service: with(svc(web), func(s *ipvs.Service) { s.Sched, s.SchedFlags = "sh", []string{"sh-fallback"} })}},
		// -b is checked against -s wherever -s is.
		{"-A -b mh-port -t 10.0.0.1:80 -s mh", Command{Kind: KindAddService, Options: OptService | OptScheduler | OptSchedFlags,
			Service: with(svc(web), func(s *ipvs.Service) { s.Sched, s.SchedFlags = "mh", []string{"mh-port"} })}},
		{"-A -t 10.0.0.1:80 -b flag-3,flag-1", Command{Kind: KindAddService, Options: OptService | OptSchedFlags,
			Service: with(svc(web), func(s *ipvs.Service) { s.SchedFlags = []string{"flag-1", "flag-3"} })}},
		{"-At10.0.0.1:80 -p=30", Command{Kind: KindAddService, Options: OptService | OptPersistent,
			Service: with(svc(web), func(s *ipvs.Service) { s.Persistent, s.Timeout = true, 30 })}},
		{"-A -t 10.0.0.1:80 -p30 --sort", Command{Kind: KindAddService, Options: OptService | OptPersistent,
			Service: with(svc(web), func(s *ipvs.Service) { s.Persistent, s.Timeout = true, 30 })}},
		{"-A -f 1 -6", Command{Kind: KindAddService, Options: OptService, Service: svc(ipvs.FWMarkKey(1, true))}},
		{"-A -f 4294967295 -o", Command{Kind: KindAddService, Options: OptService | OptOnePacket,
			Service: with(svc(ipvs.FWMarkKey(4294967295, false)), func(s *ipvs.Service) { s.OnePacket = true })}},
		// -M before -6 is read as IPv4, then -6 resets it to /128.
		{"-A -f 1 -M 64 -6", Command{Kind: KindAddService, Options: OptService | OptNetmask, Service: svc(ipvs.FWMarkKey(1, true))}},
		{"-E -t 10.0.0.1:80", Command{Kind: KindEditService, Options: OptService, Service: svc(web)}},
		{"-D -t 10.0.0.1:80", Command{Kind: KindDeleteService, Options: OptService, Service: bare(web)}},
		// The scheduler name is cut to 15 bytes, as ipvsadm's buffer does.
		{"-A -t 10.0.0.1:80 -s verylongschedulername", Command{Kind: KindAddService, Options: OptService | OptScheduler,
			Service: with(svc(web), func(s *ipvs.Service) { s.Sched = "verylongschedul" })}},
		{"-A -t 10.0.0.1:80 --pe sip", Command{Kind: KindAddService, Options: OptService | OptPE,
			Service: with(svc(web), func(s *ipvs.Service) { s.PE = "sip" })}},
		// inet_aton's forms.
		{"-A -t 10.1:80", Command{Kind: KindAddService, Options: OptService, Service: svc(web)}},
		{"-A -t 0x0a000001:80", Command{Kind: KindAddService, Options: OptService, Service: svc(web)}},
		{"-A -t 012.0.0.1:80", Command{Kind: KindAddService, Options: OptService, Service: svc(web)}},
		// ipvsadm drops the port of a bracketed IPv4 address, and reads
		// "2001:db8::1:80" as one IPv6 address.
		{"-A -t [10.0.0.1]:80 -p", Command{Kind: KindAddService, Options: OptService | OptPersistent,
			Service: with(svc(tcpKey("10.0.0.1:0")), func(s *ipvs.Service) { s.Persistent, s.Timeout = true, 360 })}},
		{"-A -t 2001:db8::1:80 -p", Command{Kind: KindAddService, Options: OptService | OptPersistent,
			Service: with(svc(ipvs.ServiceKey{Proto: ipvs.TCP, Addr: addr("2001:db8::1:80")}), func(s *ipvs.Service) { s.Persistent, s.Timeout = true, 360 })}},
		{"-a -t 10.0.0.1:80 -r 10.0.0.2:8080", Command{Kind: KindAddServer, Options: OptService | OptServer,
			Service: bare(web), Dest: dst("10.0.0.2:80", ipvs.FwdRoute, 1)}},
		{"-a -t 10.0.0.1:80 -r 10.0.0.2:8080 -m -w 0 -x 100 -y 50", Command{Kind: KindAddServer,
			Options: OptService | OptServer | OptForward | OptWeight | OptUThreshold | OptLThreshold,
			Service: bare(web), Dest: with(dst("10.0.0.2:8080", ipvs.FwdMasq, 0), func(d *ipvs.Dest) { d.UThreshold, d.LThreshold = 100, 50 })}},
		{"-a -t 10.0.0.1:80 -r 10.0.0.2 -m", Command{Kind: KindAddServer, Options: OptService | OptServer | OptForward,
			Service: bare(web), Dest: dst("10.0.0.2:80", ipvs.FwdMasq, 1)}},
		{"--add-server --tcp-service=10.0.0.1:80 --real-server=10.0.0.2:https --masquerading --weight=7",
			Command{Kind: KindAddServer, Options: OptService | OptServer | OptForward | OptWeight,
				Service: bare(web), Dest: dst("10.0.0.2:443", ipvs.FwdMasq, 7)}},
		// -d does not force the port.
		{"-d -t 10.0.0.1:80 -r 10.0.0.2:8080", Command{Kind: KindDeleteServer, Options: OptService | OptServer,
			Service: bare(web), Dest: dst("10.0.0.2:8080", ipvs.FwdRoute, 1)}},
		{"-a -f 7 -r 10.0.0.2:99", Command{Kind: KindAddServer, Options: OptService | OptServer,
			Service: bare(ipvs.FWMarkKey(7, false)), Dest: dst("10.0.0.2:99", ipvs.FwdRoute, 1)}},
		{"-a -t 10.0.0.1:80 -r 2001:db8::2 -i", Command{Kind: KindAddServer, Options: OptService | OptServer | OptForward,
			Service: bare(web), Dest: dst("[2001:db8::2]:80", ipvs.FwdTunnel, 1)}},
		{"-e -t 10.0.0.1:80 -r 10.0.0.2 -i --tun-type gre --tun-csum", Command{Kind: KindEditServer,
			Options: OptService | OptServer | OptForward | OptTunType | OptTunCsum, Service: bare(web),
			Dest: with(dst("10.0.0.2:80", ipvs.FwdTunnel, 1), func(d *ipvs.Dest) { d.TunType, d.TunFlags = ipvs.TunGRE, ipvs.TunCsum })}},
		{"-a -t 10.0.0.1:80 -r 10.0.0.2 -i --tun-type gue --tun-port 6080 --tun-remcsum", Command{Kind: KindAddServer,
			Options: OptService | OptServer | OptForward | OptTunType | OptTunPort | OptTunRemCsum, Service: bare(web),
			Dest: with(dst("10.0.0.2:80", ipvs.FwdTunnel, 1), func(d *ipvs.Dest) {
				d.TunType, d.TunPort, d.TunFlags = ipvs.TunGUE, 6080, ipvs.TunRemCsum
			})}},
		{"--set 10 20 30", Command{Kind: KindSet, Timeouts: ipvs.Timeouts{TCP: 10, TCPFin: 20, UDP: 30}}},
		// Leftovers are collected wherever they are.
		{"10 --set 0 30", Command{Kind: KindSet, Timeouts: ipvs.Timeouts{TCP: 10, UDP: 30}}},
		{"-L", Command{Kind: KindList}},
		{"-Ln", Command{Kind: KindList, Options: OptNumeric, List: ListOptions{Numeric: true}}},
		{"-l -n --stats --rate -X --nosort --sort --tun-info", Command{Kind: KindList,
			Options: OptNumeric | OptStats | OptRate | OptExact | OptNoSort | OptTunInfo,
			List:    ListOptions{Numeric: true, Stats: true, Rate: true, Exact: true, NoSort: true, TunInfo: true}}},
		{"-L -n -t 10.0.0.1:80 --thresholds --persistent-conn", Command{Kind: KindList,
			Options: OptNumeric | OptService | OptThresholds | OptPersistentConn, Service: bare(web),
			List: ListOptions{Numeric: true, Thresholds: true, PersistentConn: true, Service: &web}}},
		{"-L --timeout", Command{Kind: KindList, Options: OptTimeout, List: ListOptions{Timeout: true}}},
		{"-L --daemon", Command{Kind: KindList, Options: OptDaemon, List: ListOptions{Daemon: true}}},
		{"--start-daemon master --mcast-interface eth1 --syncid 7 --mcast-group 224.0.0.81 --mcast-port 8848 --mcast-ttl 1 --sync-maxlen 1472",
			Command{Kind: KindStartDaemon, Options: OptMcast | OptSyncID | OptMcastGroup | OptMcastPort | OptMcastTTL | OptSyncMaxLen,
				Daemon: Daemon{State: "master", McastInterface: "eth1", SyncID: 7, McastGroup: netip.MustParseAddr("224.0.0.81"),
					McastPort: 8848, McastTTL: 1, SyncMaxLen: 1472}}},
		// ipvsadm's default interface; the kernel fills the rest.
		{"--start-daemon backup", Command{Kind: KindStartDaemon, Daemon: Daemon{State: "backup", McastInterface: "eth0"}}},
		{"--start-daemon backup --mcast-group ff02::8:8848", Command{Kind: KindStartDaemon, Options: OptMcastGroup,
			Daemon: Daemon{State: "backup", McastInterface: "eth0", McastGroup: netip.MustParseAddr("ff02::8:8848")}}},
		{"--stop-daemon master", Command{Kind: KindStopDaemon, Daemon: Daemon{State: "master"}}},
		{"-L -c -n --persistent-conn", Command{Kind: KindList, Options: OptConnection | OptNumeric | OptPersistentConn,
			List: ListOptions{Connection: true, Numeric: true, PersistentConn: true}}},
		{"-S -n", Command{Kind: KindSave, Options: OptNumeric, List: ListOptions{Numeric: true}}},
		{"--save", Command{Kind: KindSave}},
		{"-Z", Command{Kind: KindZero}},
		{"-Z -t 10.0.0.1:80", Command{Kind: KindZero, Options: OptService, Service: bare(web)}},
		{"-C", Command{Kind: KindClear}},
		{"-R", Command{Kind: KindRestore}},
		{"-h --bogus", Command{Kind: KindHelp}},
		{"--version", Command{Kind: KindVersion}},
	} {
		t.Run(tc.line, func(t *testing.T) {
			got, err := Parse(strings.Fields(tc.line))
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.line, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q) =\n%+v\nwant\n%+v", tc.line, got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const tryHelpMsg = "Try `ipvsadm -h' or 'ipvsadm --help' for more information."
	for _, tc := range []struct {
		line string
		msg  string
		code int
	}{
		// No command first: tryhelp_exit(-1).
		{"-n -L", tryHelpMsg, 255},
		{"foo", tryHelpMsg, 255},
		{"--bogus -L", tryHelpMsg, 255},
		{"-s rr", tryHelpMsg, 255},
		{"--start-daemon", tryHelpMsg, 255},
		// popt errors after the command.
		{"-L --bogus", "--bogus: unknown option", 255},
		{"-LK", "-LK: unknown option", 255},
		{"-L -n=1", "-n=1: option does not take an argument", 255},
		{"-L --numeric=1", "--numeric=1: option does not take an argument", 255},
		{"-A -t", "-t: missing argument", 255},
		{"-Ax", "-Ax: missing argument", 255},
		// A command after the command.
		{"-A -t 1.2.3.4:80 -L", "invalid option `-L'", 2},
		{"-A -t 1.2.3.4:80 -AL", "invalid option `-AL'", 2},
		{"-A -t 1.2.3.4:80 -h", "invalid option `-h'", 2},
		{"-L --start-daemon master", "invalid option `master'", 2},
		{"--start-daemon foo", "illegal start-daemon parameter specified", 2},
		{"--stop-daemon foo", "illegal start_daemon specified", 2},
		{"--start-daemon master --syncid 300", "illegal syncid specified", 2},
		{"--start-daemon master --mcast-group 1.2.3.4", "invalid IPv4 mcast-group `1.2.3.4'", 2},
		{"--start-daemon master --mcast-group ff02::x", "invalid IPv6 mcast-group `ff02::x'", 2},
		{"--start-daemon master --mcast-port 0", "illegal mcast-port specified", 2},
		{"--start-daemon master --mcast-ttl 256", "illegal mcast-ttl specified", 2},
		{"--start-daemon master --sync-maxlen 65508", "illegal sync-maxlen specified", 2},
		{"--start-daemon master -n", "Illegal 'numeric' option with the 'start-daemon' command", 2},
		{"--stop-daemon backup --mcast-interface eth1", "Illegal 'mcast-interface' option with the 'stop-daemon' command", 2},
		// The commands_v_options table.
		{"-A", "You need to supply the 'service-address' option for the 'add-service' command", 2},
		{"-a -t 1.2.3.4:80", "You need to supply the 'real-server' option for the 'add-server' command", 2},
		{"-d -r 1.1.1.1", "You need to supply the 'service-address' option for the 'delete-server' command", 2},
		{"-A -t 1.2.3.4:80 -r 1.1.1.1", "Illegal 'real-server' option with the 'add-service' command", 2},
		{"-A -t 1.2.3.4:80 -w 3", "Illegal 'weight' option with the 'add-service' command", 2},
		{"-L -w 3", "Illegal 'weight' option with the 'list' command", 2},
		{"-L -s rr", "Illegal 'scheduler' option with the 'list' command", 2},
		{"-C -n", "Illegal 'numeric' option with the 'flush' command", 2},
		{"-S --stats", "Illegal 'stats' option with the 'save' command", 2},
		{"-Z -n", "Illegal 'numeric' option with the 'zero' command", 2},
		{"--set 1 2 3 -n", "Illegal 'numeric' option with the 'set' command", 2},
		{"-R -n", "Illegal 'numeric' option with the 'restore' command", 2},
		{"-D -t 1.2.3.4:80 -s rr", "Illegal 'scheduler' option with the 'delete-service' command", 2},
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 -p", "Illegal 'persistent' option with the 'add-server' command", 2},
		{"-e -t 1.2.3.4:80 -r 1.1.1.1 --tun-info", "Illegal 'tun-info' option with the 'edit-server' command", 2},
		{"-L -c -t 1.2.3.4:80", "The option 'service-address' conflicts with the 'connection' option in the 'list' command", 2},
		{"-L --timeout --daemon", "The option 'daemon' conflicts with the 'timeout' option in the 'list' command", 2},
		{"-L -c --stats", "options conflicts in the list command", 2},
		{"-L --timeout --persistent-conn", "options conflicts in the list command", 2},
		// set_option.
		{"-A -t 1.2.3.4:80 -t 1.2.3.4:81", "multiple 'service-address' options specified", 2},
		{"-A -t 1.2.3.4:80 -f 1", "multiple 'service-address' options specified", 2},
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 -g -m", "multiple 'forwarding-method' options specified", 2},
		{"-L -n -n", "multiple 'numeric' options specified", 2},
		// Values.
		{"-A -t 1.2.3.4", "Zero port specified for non-persistent service", 2},
		{"-E -t 1.2.3.4:0", "Zero port specified for non-persistent service", 2},
		{"-A -t 1.2.3.4:80 -o", "One-Packet Scheduling is only for UDP virtual services", 2},
		{"-A --sctp-service 1.2.3.4:80 -o", "One-Packet Scheduling is only for UDP virtual services", 2},
		{"-A -t 80", "illegal virtual server address[:port] specified", 2},
		{"-A -t 1.2.3.4:", "illegal virtual server address[:port] specified", 2},
		{"-A -t 1.2.3.4:65536", "illegal virtual server address[:port] specified", 2},
		{"-A -t 1.2.3.4:nosuchport", "illegal virtual server address[:port] specified", 2},
		{"-A -t host.example:80", "illegal virtual server address[:port] specified", 2},
		{"-A -t [::1]", "illegal virtual server address[:port] specified", 2},
		{"-A -t [::1:80", "illegal virtual server address[:port] specified", 2},
		{"-A -t fe80::1%eth0", "illegal virtual server address[:port] specified", 2},
		{"-A -t 1.2.3.256:80", "illegal virtual server address[:port] specified", 2},
		{"-A -t 08.1.1.1:80", "illegal virtual server address[:port] specified", 2},
		{"-a -t 1.2.3.4:80 -r x", "illegal real server address[:port] specified", 2},
		// -r before -t: the port name is looked up without a protocol.
		{"-a -r 1.1.1.1:http -t 1.2.3.4:80", "illegal real server address[:port] specified", 2},
		{"-A -f 0", "invalid fwmark value `0' specified", 2},
		{"-A -f -1", "invalid fwmark value `-1' specified", 2},
		{"-A -f 4294967296", "invalid fwmark value `4294967296' specified", 2},
		{"-A -f 1x", "invalid fwmark value `1x' specified", 2},
		{"-A -t 1.2.3.4:80 -p 0", "invalid timeout value `0' specified", 2},
		{"-A -t 1.2.3.4:80 -p 2678401", "invalid timeout value `2678401' specified", 2},
		{"-A -t 1.2.3.4:80 -p rr", "invalid timeout value `rr' specified", 2},
		{"-A -t 1.2.3.4:80 --persistent=", "invalid timeout value `' specified", 2},
		{"-A -t 1.2.3.4:80 -p -M x", "illegal virtual server persistent mask specified", 2},
		{"-A -t [::1]:80 -p -M 129", "illegal ipv6 netmask specified", 2},
		{"-A -t [::1]:80 -p -M 255.255.255.0", "illegal ipv6 netmask specified", 2},
		{"-A -t 1.2.3.4:80 -p -M 255.0.255.0", "netmask 255.0.255.0 not supported by xlb: must be contiguous", 2},
		{"-A -t 1.2.3.4:80 -6", "-6 used before -f\n", 2},
		{"-A -6 -f 1", "-6 used before -f\n", 2},
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 -w 65536", "illegal weight specified", 2},
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 -w -1", "illegal weight specified", 2},
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 -x -1", "illegal u_threshold specified", 2},
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 -y 2147483648", "illegal l_threshold specified", 2},
		{"-A -t 1.2.3.4:80 -s rr -b sh-port", "incompatible scheduler flag `sh-port'", 2},
		{"-A -t 1.2.3.4:80 -b mh-fallback", "incompatible scheduler flag `mh-fallback'", 2},
		{"-A -t 1.2.3.4:80 -s sh -b flag-3", "incompatible scheduler flag `flag-3'", 2},
		{"-A -t 1.2.3.4:80 -b foo", "invalid scheduler flag `foo'", 2},
		{"-A -t 1.2.3.4:80 -b ,", "invalid scheduler flag `'", 2},
		// Scheduler flags are checked before the option table.
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 -b foo", "invalid scheduler flag `foo'", 2},
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 -b flag-1", "Illegal 'sched-flags' option with the 'add-server' command", 2},
		{"--set 1 2", "--set option requires 3 timeout values", 2},
		{"--set 1 2 x", "invalid timeout value `x' specified", 2},
		{"--set 1 2 2678401", "invalid timeout value `2678401' specified", 2},
		{"--set 1 2 3 4", "unexpected argument 4", 2},
		{"-L foo", "unexpected argument foo", 2},
		{"-A -t 1.2.3.4:80 -- -s rr", "unexpected argument -s", 2},
		{"-A -t 1.2.3.4:80 -", "unexpected argument -", 2},
		{"-a -t 1.2.3.4:80 -r 2001:db8::1", "Different address family is allowed only for tunneling servers", 2},
		{"-e -f 1 -6 -r 1.1.1.1 -m", "Different address family is allowed only for tunneling servers", 2},
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 --tun-type gre", "Tunnel options conflict with forward method", 2},
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 -m --tun-csum", "Tunnel options conflict with forward method", 2},
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 -i --tun-type gue", "You need to supply the 'tun-port' option for the 'gue' tunnel type", 2},
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 -i --tun-type gre --tun-port 1", "Illegal 'tun-port' option with the 'gre' tunnel type", 2},
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 -i --tun-type gre --tun-remcsum", "Illegal 'tun-remcsum' option with the 'gre' tunnel type", 2},
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 -i --tun-port 5", "Illegal 'tun-port' option with the 'ipip' tunnel type", 2},
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 -i --tun-type gue --tun-port 1 --tun-csum --tun-nocsum",
			"The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gue' tunnel type", 2},
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 -i --tun-type foo", "illegal tunnel type specified", 2},
		{"-a -t 1.2.3.4:80 -r 1.1.1.1 -i --tun-type gue --tun-port 0", "illegal tunnel port specified", 2},
	} {
		t.Run(tc.line, func(t *testing.T) {
			_, err := Parse(strings.Fields(tc.line))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse(%q) error = %v, want *Error %q", tc.line, err, tc.msg)
			}
			if e.Msg != tc.msg || e.Code != tc.code || err.Error() != tc.msg {
				t.Errorf("Parse(%q) error = %q (code %d), want %q (code %d)", tc.line, e.Msg, e.Code, tc.msg, tc.code)
			}
		})
	}
}

// TestParseNotSupported checks that what xlb cannot do says so.
func TestParseNotSupported(t *testing.T) {
	for _, line := range []string{
		"-A -t 1.2.3.4:80 -p -M 255.255.0.255",
	} {
		if _, err := Parse(strings.Fields(line)); !errors.Is(err, ipvs.ErrNotSupported) {
			t.Errorf("Parse(%q) error = %v, want one wrapping ipvs.ErrNotSupported", line, err)
		}
	}
}

func TestParseEmptyArguments(t *testing.T) {
	// An empty argument is a leftover, and a bare -p takes it (it does not
	// start with '-').
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-L", ""}, "unexpected argument "},
		{[]string{"-A", "-t", "1.2.3.4:80", "-p", ""}, "invalid timeout value `' specified"},
		{[]string{"-A", "-t", ""}, "illegal virtual server address[:port] specified"},
	} {
		_, err := Parse(tc.args)
		if err == nil || err.Error() != tc.msg {
			t.Errorf("Parse(%q) error = %v, want %q", tc.args, err, tc.msg)
		}
	}
}

func TestInetAton(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" when invalid
	}{
		{"1.2.3.4", "1.2.3.4"},
		{"10.1", "10.0.0.1"},
		{"10.1.2", "10.1.0.2"},
		{"167772161", "10.0.0.1"},
		{"0x0A.0x1.0.1", "10.1.0.1"},
		{"012.0.0.1", "10.0.0.1"},
		{"1.2.3.4 trailing", "1.2.3.4"},
		{"255.255.255.255", "255.255.255.255"},
		{"4294967295", "255.255.255.255"},
		{"4294967296", ""},
		{"1.2.3.256", ""},
		{"1.2.65536", ""},
		{"256.1.1.1", ""},
		{"1.2.3.4.5", ""},
		{"08", ""},
		{"0x", ""},
		{"1..2", ""},
		{"1.2.3.", ""},
		{".1", ""},
		{"", ""},
		{"a.b.c.d", ""},
		{" 1.2.3.4", ""},
	} {
		a, ok := inetAton(tc.in)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tc.want {
			t.Errorf("inetAton(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStringToNumber(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"80", 80, true},
		{" 80", 80, true},
		{"+80", 80, true},
		{"-0", 0, true},
		{"80 ", 0, false},
		{"", 0, false},
		{"+", 0, false},
		{"0x50", 0, false},
		{"65536", 0, false},
		{"99999999999999999999", 0, false},
	} {
		got, ok := stringToNumber(tc.in, 0, 65535)
		if got != tc.want || ok != tc.ok {
			t.Errorf("stringToNumber(%q) = %d, %v, want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestPortNames(t *testing.T) {
	useBuiltinServices(t)
	for _, tc := range []struct {
		name  string
		proto ipvs.Proto
		port  uint16
		ok    bool
	}{
		{"http", ipvs.TCP, 80, true},
		{"www", ipvs.TCP, 80, true},
		{"https", ipvs.UDP, 443, true},
		{"domain", ipvs.UDP, 53, true},
		{"ssh", ipvs.TCP, 22, true},
		{"http", ipvs.SCTP, 0, false},
		{"nosuch", ipvs.TCP, 0, false},
	} {
		port, ok := serviceToPort(tc.name, tc.proto)
		if port != tc.port || ok != tc.ok {
			t.Errorf("serviceToPort(%q, %d) = %d, %v, want %d, %v", tc.name, tc.proto, port, ok, tc.port, tc.ok)
		}
	}
	if name, _ := portToService(80, ipvs.TCP); name != "http" {
		t.Errorf("portToService(80, tcp) = %q, want http", name)
	}
}

func TestParseServicesFile(t *testing.T) {
	const etc = "# comment\nhttp\t\t80/tcp\t\twww # WorldWideWeb HTTP\nbad\nmdns 5353/udp\nx 99999/tcp\n"
	old := services
	t.Cleanup(func() { services = old })
	tab := parseServices(bufioScanner(etc))
	services = func() []servEntry { return tab }
	if p, ok := serviceToPort("www", ipvs.TCP); !ok || p != 80 {
		t.Errorf("www/tcp = %d, %v, want 80", p, ok)
	}
	if p, ok := serviceToPort("mdns", ipvs.UDP); !ok || p != 5353 {
		t.Errorf("mdns/udp = %d, %v, want 5353", p, ok)
	}
	if _, ok := serviceToPort("mdns", ipvs.TCP); ok {
		t.Error("mdns/tcp found")
	}
	if len(tab) != 2 {
		t.Errorf("parsed %d entries, want 2: %+v", len(tab), tab)
	}
}

func bufioScanner(s string) *bufio.Scanner { return bufio.NewScanner(strings.NewReader(s)) }
