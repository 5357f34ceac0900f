package ipvsadm

import (
	"fmt"
	"io"
	"net/netip"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// LaddrCounters are -G's figures for one local address of a service.
type LaddrCounters struct {
	// Conflicts is DPVS's CONFLICTS column, the port conflicts of the
	// address (DPVS always reports 0: "TODO: nport_conflict"). xlb's
	// dataplane reports the connections refused because the address's
	// port pool was exhausted.
	Conflicts uint64
	// Conns is DPVS's CONNS: the connections bound to the address.
	Conns uint32
}

// LaddrStats supplies -G's runtime figures; the dataplane implements it.
// A nil LaddrStats lists zeros.
type LaddrStats interface {
	LocalAddr(k ipvs.ServiceKey, a netip.Addr) LaddrCounters
}

// WriteLaddrs writes what DPVS's `ipvsadm -G` prints for cfg: the local
// addresses of one service (opts.Service, "No such service" if it is
// missing) or of every service, sorted as in a listing. Each service is a
// line with its address and number of local addresses, followed by a
// line per local address:
//
//	VIP:VPORT            TOTAL    SNAT_IP              CONFLICTS  CONNS
//	10.0.0.100:80        2
//	                              192.168.100.1        0          3
//	                              192.168.100.2        0          2
//
// The widths, and the trailing spaces after TOTAL and CONNS, are DPVS's
// (list_laddrs_print_* in tools/ipvsadm/ipvsadm.c, and the output in its
// doc/containerized/README.md); addresses are always numeric. The title is printed once, and not at all when there are no
// services, as DPVS does. DPVS lists services in its hash-table order;
// xlb sorts them. A firewall-mark service, which DPVS would show as
// 0.0.0.0:0, is shown as in -L ("FWM  7").
func WriteLaddrs(w io.Writer, cfg *ipvs.Config, stats LaddrStats, opts ListOptions) error {
	ew := &errWriter{w: w}
	svcs := cfg.Services
	if opts.Service != nil {
		s := cfg.Service(*opts.Service)
		if s == nil {
			return noService()
		}
		svcs = []ipvs.Service{*s}
	} else {
		svcs = ipvs.SortedServices(svcs)
	}
	for i := range svcs {
		s := &svcs[i]
		if i == 0 {
			fmt.Fprintf(ew, "%-20s %-8s %-20s %-10s %-10s\n", "VIP:VPORT", "TOTAL", "SNAT_IP", "CONFLICTS", "CONNS")
		}
		vname := serviceName(s, format{ListOptions: ListOptions{Numeric: true}})
		if !s.Key.IsFWMark() {
			vname = addrPortName(s.Key.Addr, s.Key.Port, s.Key.Proto, format{ListOptions: ListOptions{Numeric: true}})
		}
		fmt.Fprintf(ew, "%-20s %-8d \n", vname, len(s.LocalAddrs))
		for _, la := range s.LocalAddrs {
			var c LaddrCounters
			if stats != nil {
				c = stats.LocalAddr(s.Key, la.Addr)
			}
			fmt.Fprintf(ew, "%-20s %-8s %-20s %-10d %-10d\n", "", "", la.Addr, c.Conflicts, c.Conns)
		}
	}
	return ew.err
}
