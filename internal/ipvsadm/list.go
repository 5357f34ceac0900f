package ipvsadm

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// Counters are IPVS's statistics of a service or destination (struct
// ip_vs_stats64): totals and rates per second.
type Counters struct {
	Conns, InPkts, OutPkts, InBytes, OutBytes uint64
	CPS, InPPS, OutPPS, InBPS, OutBPS         uint64
}

// DestStats are a destination's connection counts and statistics.
type DestStats struct {
	ActiveConns  uint32 // ActiveConn: established TCP connections
	InactConns   uint32 // InActConn: every other connection entry
	PersistConns uint32 // PersistConn: persistence templates
	Counters
}

// Stats supplies a listing's runtime figures; the dataplane implements it.
// A nil Stats lists zeros.
type Stats interface {
	Service(k ipvs.ServiceKey) Counters
	Dest(k ipvs.ServiceKey, d *ipvs.Dest) DestStats
}

// DefaultTableSize is the connection table size IPVS reports by default
// (1 << CONFIG_IP_VS_TAB_BITS with 12 bits).
const DefaultTableSize = 4096

// ipvsVersion is the IPVS version the kernel reports (IP_VS_VERSION_CODE).
const ipvsVersion = "1.2.1"

// Output formats (ipvsadm's FMT_*).
type format struct {
	ListOptions
	rule bool // -S
}

// WriteList writes what `ipvsadm -L` with opts prints for cfg, byte for
// byte: the whole table, one service (opts.Service, "No such service" if
// it is missing) or the timeouts (opts.Timeout). Connection entries
// (opts.Connection) come from WriteConns, and the sync daemons
// (opts.Daemon) from whoever runs them (ipvssync.DaemonLine).
//
// Without opts.Numeric, ports are shown by service name (from
// /etc/services or a built-in table); addresses are always shown as
// numbers, where ipvsadm would look up host names.
func WriteList(w io.Writer, cfg *ipvs.Config, stats Stats, opts ListOptions) error {
	ew := &errWriter{w: w}
	f := format{ListOptions: opts}
	switch {
	case opts.Connection:
		return &Error{Code: ExitUsage, Msg: "connection entries are listed by WriteConns"}
	case opts.Service != nil:
		s := cfg.Service(*opts.Service)
		if s == nil {
			return noService()
		}
		printTitle(ew, f)
		printService(ew, s, stats, f)
	case opts.Timeout:
		t := cfg.Timeouts
		fmt.Fprintf(ew, "Timeout (tcp tcpfin udp): %d %d %d\n", t.TCP, t.TCPFin, t.UDP)
	case opts.Daemon:
		return &Error{Code: ExitUsage, Msg: "sync daemons are listed by the daemon that runs them"}
	default:
		tableSize := opts.TableSize
		if tableSize == 0 {
			tableSize = DefaultTableSize
		}
		fmt.Fprintf(ew, "IP Virtual Server version %s (size=%d)\n", ipvsVersion, tableSize)
		listAll(ew, cfg, stats, f)
	}
	return ew.err
}

// WriteSave writes what `ipvsadm -S` (with -n if numeric) prints for cfg:
// the commands that rebuild it, services sorted as in a listing. Like
// ipvsadm it leaves out thresholds, the netmask of a service that is not
// persistent and the timeouts.
//
// FULLNAT is saved with DPVS's long options: a destination as
// "--fullnat" (DPVS saves its short -b, which is --sched-flags here), and
// each local address, in the order added, as a line
// "-P -t VIP:port -z ADDR [-F IFNAME]" right after the service's -A line.
// DPVS's own -S leaves local addresses out, so that its save does not
// restore them; xlb's does.
//
// The firewall-mark classifier's rules (`xlb mark`) follow the services,
// one "--xlb-mark MARK -t PREFIX:LO-HI..." line per mark (see MarkLine),
// addresses always numeric.
func WriteSave(w io.Writer, cfg *ipvs.Config, numeric bool) error {
	ew := &errWriter{w: w}
	listAll(ew, cfg, nil, format{ListOptions: ListOptions{Numeric: numeric}, rule: true})
	writeSaveMarks(ew, cfg)
	return ew.err
}

// errWriter keeps the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return len(p), nil
	}
	_, e.err = e.w.Write(p)
	return len(p), nil
}

func listAll(w io.Writer, cfg *ipvs.Config, stats Stats, f format) {
	svcs := cfg.Services
	if !f.NoSort {
		svcs = ipvs.SortedServices(svcs)
	}
	printTitle(w, f)
	for i := range svcs {
		printService(w, &svcs[i], stats, f)
	}
}

// printTitle is ipvsadm's print_title.
func printTitle(w io.Writer, f format) {
	const fmtNum = "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n"
	switch {
	case f.Stats:
		fmt.Fprintf(w, fmtNum, "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
	case f.Rate:
		fmt.Fprintf(w, fmtNum, "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
	case f.Thresholds:
		fmt.Fprintf(w, "%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n",
			"Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn")
	case f.PersistentConn:
		fmt.Fprintf(w, "%-33s %-9s %-11s %-10s %-10s\n  -> RemoteAddress:Port\n",
			"Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn")
	case f.TunInfo:
		io.WriteString(w, "Prot LocalAddress:Port Scheduler Flags\n"+
			"  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n")
	case !f.rule:
		io.WriteString(w, "Prot LocalAddress:Port Scheduler Flags\n"+
			"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	}
}

// kernelProto is the protocol IPVS reports for a service: TCP for a
// firewall-mark one. Port names are looked up for it.
func kernelProto(k ipvs.ServiceKey) ipvs.Proto {
	if k.IsFWMark() {
		return ipvs.TCP
	}
	return k.Proto
}

// addrPortName is ipvsadm's addrport_to_anyname.
func addrPortName(a netip.Addr, port uint16, proto ipvs.Proto, f format) string {
	host := a.String()
	if a.Is6() {
		host = "[" + host + "]"
	}
	p := strconv.Itoa(int(port))
	if !f.Numeric {
		if name, ok := portToService(port, proto); ok {
			p = name
		}
	}
	return host + ":" + p
}

// serviceName is print_service_entry's svc_name.
func serviceName(s *ipvs.Service, f format) string {
	k := s.Key
	if k.IsFWMark() {
		switch {
		case f.rule && k.IPv6():
			return fmt.Sprintf("-f %d -6", k.FWMark)
		case f.rule:
			return fmt.Sprintf("-f %d", k.FWMark)
		case k.IPv6():
			return fmt.Sprintf("FWM  %d IPv6", k.FWMark)
		}
		return fmt.Sprintf("FWM  %d", k.FWMark)
	}
	vname := addrPortName(k.Addr, k.Port, k.Proto, f)
	if f.rule {
		stype := map[ipvs.Proto]string{ipvs.TCP: "-t", ipvs.UDP: "-u", ipvs.SCTP: "--sctp-service"}[k.Proto]
		if stype == "" {
			stype = "--xxx-service"
		}
		return stype + " " + vname
	}
	pname := map[ipvs.Proto]string{ipvs.TCP: "TCP", ipvs.UDP: "UDP", ipvs.SCTP: "SCTP"}[k.Proto]
	if pname == "" {
		pname = "?"
	}
	name := fmt.Sprintf("%-4s %s", pname, vname)
	if !k.IPv6() {
		name = cut(name, 33)
	}
	return name
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// schedFlagsText is print_sched_flags: the flags' bits named for the
// scheduler, comma-separated.
func schedFlagsText(s *ipvs.Service) string {
	var bits uint8
	for _, f := range s.SchedFlags {
		switch f {
		case "flag-1", "sh-fallback", "mh-fallback":
			bits |= 1
		case "flag-2", "sh-port", "mh-port":
			bits |= 2
		case "flag-3":
			bits |= 4
		}
	}
	return strings.Join(ipvs.SchedFlagNames(s.Sched, bits), ",")
}

// maskText is the persistence netmask as ipvsadm prints it: dotted for
// IPv4 (inet_ntoa), a prefix length for IPv6; "" when it is the default.
func maskText(s *ipvs.Service) string {
	if s.Key.IPv6() {
		if s.Netmask == 128 {
			return ""
		}
		return strconv.Itoa(s.Netmask)
	}
	if s.Netmask == 32 {
		return ""
	}
	m := uint32(0)
	if s.Netmask > 0 {
		m = ^uint32(0) << (32 - s.Netmask)
	}
	return fmt.Sprintf("%d.%d.%d.%d", m>>24, m>>16&0xff, m>>8&0xff, m&0xff)
}

var fwdSwitches = map[ipvs.Fwd]string{
	ipvs.FwdMasq:    "-m",
	ipvs.FwdTunnel:  "-i",
	ipvs.FwdLocal:   "-g",
	ipvs.FwdRoute:   "-g",
	ipvs.FwdFullNAT: "--fullnat",
}

// printService is ipvsadm's print_service_entry: the service line and its
// destinations.
func printService(w io.Writer, s *ipvs.Service, stats Stats, f format) {
	name := serviceName(s, f)
	var sc Counters
	if stats != nil && (f.Stats || f.Rate) {
		// Only these listings print the service's sums; summing 50,000
		// destinations for a plain -L costs as much as listing them.
		sc = stats.Service(s.Key)
	}
	flags := schedFlagsText(s)
	switch {
	case f.rule:
		fmt.Fprintf(w, "-A %s -s %s", name, s.Sched)
		if s.Persistent {
			fmt.Fprintf(w, " -p %d", s.Timeout)
			if m := maskText(s); m != "" {
				fmt.Fprintf(w, " -M %s", m)
			}
		}
		if s.PE != "" {
			fmt.Fprintf(w, " --pe %s", s.PE)
		}
		if s.OnePacket {
			io.WriteString(w, " -o")
		}
		if flags != "" {
			fmt.Fprintf(w, " -b %s", flags)
		}
	case f.Stats:
		fmt.Fprintf(w, "%-33s", name)
		printNums(w, f, sc.Conns, sc.InPkts, sc.OutPkts, sc.InBytes, sc.OutBytes)
	case f.Rate:
		fmt.Fprintf(w, "%-33s", name)
		printNums(w, f, sc.CPS, sc.InPPS, sc.OutPPS, sc.InBPS, sc.OutBPS)
	default:
		fmt.Fprintf(w, "%s %s", name, s.Sched)
		if flags != "" {
			fmt.Fprintf(w, " (%s)", flags)
		}
		if s.Persistent {
			fmt.Fprintf(w, " persistent %d", s.Timeout)
			if m := maskText(s); m != "" {
				fmt.Fprintf(w, " mask %s", m)
			}
			if s.PE != "" {
				fmt.Fprintf(w, " pe %s", s.PE)
			}
		}
		if s.OnePacket {
			io.WriteString(w, " ops")
		}
	}
	io.WriteString(w, "\n")
	if f.rule {
		for _, la := range s.LocalAddrs {
			fmt.Fprintf(w, "-P %s -z %s", name, la.Addr)
			if la.Ifname != "" {
				fmt.Fprintf(w, " -F %s", la.Ifname)
			}
			io.WriteString(w, "\n")
		}
	}

	dests := s.KernelDests()
	if !f.NoSort {
		dests = s.SortedDests()
	}
	proto := kernelProto(s.Key)
	for i := range dests {
		d := &dests[i]
		dname := addrPortName(d.Addr, d.Port, proto, f)
		if !f.rule && !d.Addr.Is6() {
			dname = cut(dname, 28)
		}
		var ds DestStats
		if stats != nil && !f.rule {
			ds = stats.Dest(s.Key, d)
		}
		switch {
		case f.rule:
			fmt.Fprintf(w, "-a %s -r %s %s -w %d", name, dname, fwdSwitches[d.Fwd], d.Weight)
			if d.Fwd == ipvs.FwdTunnel {
				fmt.Fprintf(w, " --tun-type %s", tunNames[d.TunType])
				switch d.TunType {
				case ipvs.TunGUE:
					fmt.Fprintf(w, " --tun-port %d %s", d.TunPort, tunFlagOpts[d.TunFlags])
				case ipvs.TunGRE:
					fmt.Fprintf(w, " %s", tunFlagOpts[d.TunFlags])
				}
			}
			io.WriteString(w, "\n")
		case f.Stats:
			fmt.Fprintf(w, "  -> %-28s", dname)
			printNums(w, f, ds.Conns, ds.InPkts, ds.OutPkts, ds.InBytes, ds.OutBytes)
			io.WriteString(w, "\n")
		case f.Rate:
			// CPS, InPPS and OutPPS are not scaled.
			fmt.Fprintf(w, "  -> %-28s %8d %8d %8d", dname, ds.CPS, ds.InPPS, ds.OutPPS)
			printNums(w, f, ds.InBPS, ds.OutBPS)
			io.WriteString(w, "\n")
		case f.Thresholds:
			fmt.Fprintf(w, "  -> %-28s %-10d %-10d %-10d %-10d\n", dname,
				d.UThreshold, d.LThreshold, ds.ActiveConns, ds.InactConns)
		case f.PersistentConn:
			fmt.Fprintf(w, "  -> %-28s %-9d %-11d %-10d %-10d\n", dname,
				uint32(d.Weight), ds.PersistConns, ds.ActiveConns, ds.InactConns)
		case f.TunInfo:
			fmt.Fprintf(w, "  -> %-28s %-7s %-13s %-6d %-10d %-10d\n", dname, d.Fwd,
				tunInfo(d), d.Weight, ds.ActiveConns, ds.InactConns)
		default:
			fmt.Fprintf(w, "  -> %-28s %-7s %-6d %-10d %-10d\n", dname, d.Fwd,
				d.Weight, ds.ActiveConns, ds.InactConns)
		}
	}
}

var tunFlagOpts = [...]string{ipvs.TunNoCsum: "--tun-nocsum", ipvs.TunCsum: "--tun-csum", ipvs.TunRemCsum: "--tun-remcsum"}
var tunFlagNames = [...]string{ipvs.TunNoCsum: "-c", ipvs.TunCsum: "+c", ipvs.TunRemCsum: "r+c"}

// tunInfo is ipvsadm's fwd_tun_info, or "n/a".
func tunInfo(d *ipvs.Dest) string {
	if d.Fwd != ipvs.FwdTunnel {
		return "n/a"
	}
	switch d.TunType {
	case ipvs.TunIPIP:
		return "ipip"
	case ipvs.TunGUE:
		return cut(fmt.Sprintf("gue:%d:%s", d.TunPort, tunFlagNames[d.TunFlags]), 15)
	case ipvs.TunGRE:
		return "gre:" + tunFlagNames[d.TunFlags]
	}
	return "n/a"
}

func printNums(w io.Writer, f format, nums ...uint64) {
	for _, n := range nums {
		io.WriteString(w, largeNum(n, f.Exact))
	}
}

// largeNum is ipvsadm's print_largenum: nine columns, scaled with K, M, G
// or T unless exact.
func largeNum(i uint64, exact bool) string {
	if exact {
		s := strconv.FormatUint(i, 10)
		width := 9
		if len(s) > 8 {
			width = len(s) + 1
		}
		return fmt.Sprintf("%*s", width, s)
	}
	switch {
	case i < 100_000_000:
		return fmt.Sprintf("%9d", i)
	case i < 1_000_000_000:
		return fmt.Sprintf("%8dK", i/1000)
	case i < 100_000_000_000:
		return fmt.Sprintf("%8dM", i/1_000_000)
	case i < 100_000_000_000_000:
		return fmt.Sprintf("%8dG", i/1_000_000_000)
	}
	return fmt.Sprintf("%8dT", i/1_000_000_000_000)
}

// Conn is one connection entry, as /proc/net/ip_vs_conn shows it.
type Conn struct {
	Proto   string // "TCP", "UDP", "SCTP"
	Client  netip.AddrPort
	Virtual netip.AddrPort
	Dest    netip.AddrPort
	State   string // "ESTABLISHED", "SYN_RECV", "UDP", ...
	Expires uint   // seconds left
	PEName  string // persistence engine, if the entry has one
	PEData  string
}

// WriteConns writes what `ipvsadm -L -c` with opts (-n, --persistent-conn)
// prints for conns, in the order given.
func WriteConns(w io.Writer, conns []Conn, opts ListOptions) error {
	ew := &errWriter{w: w}
	io.WriteString(ew, "IPVS connection entries\n")
	if opts.PersistentConn {
		fmt.Fprintf(ew, "pro expire %-11s %-18s %-18s %-18s %-16s %s\n",
			"state", "source", "virtual", "destination", "pe name", "pe_data")
	} else {
		fmt.Fprintf(ew, "pro expire %-11s %-18s %-18s %s\n", "state", "source", "virtual", "destination")
	}
	f := format{ListOptions: opts}
	for _, c := range conns {
		proto := map[string]ipvs.Proto{"TCP": ipvs.TCP, "UDP": ipvs.UDP, "SCTP": ipvs.SCTP}[c.Proto]
		cname := addrPortName(c.Client.Addr(), c.Client.Port(), proto, f)
		vname := addrPortName(c.Virtual.Addr(), c.Virtual.Port(), proto, f)
		dname := addrPortName(c.Dest.Addr(), c.Dest.Port(), proto, f)
		expire := fmt.Sprintf("%02d:%02d", c.Expires/60, c.Expires%60)
		if opts.PersistentConn && c.PEName != "" {
			fmt.Fprintf(ew, "%-3s %-6s %-11s %-18s %-18s %-16s %-18s %s\n",
				c.Proto, expire, c.State, cname, vname, dname, c.PEName, c.PEData)
		} else {
			fmt.Fprintf(ew, "%-3s %-6s %-11s %-18s %-18s %s\n", c.Proto, expire, c.State, cname, vname, dname)
		}
	}
	return ew.err
}
