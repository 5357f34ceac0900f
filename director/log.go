package director

import (
	"log/slog"
	"net/netip"
	"slices"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// logDiff logs one line per state change from cur to next: services
// added, edited and removed, real servers added, removed, drained
// (weight 0), put back and edited, the timeouts. reason says what made
// the change ("ipvsadm -a", "restore", "reload rules.conf").
func logDiff(log *slog.Logger, reason string, cur, next *ipvs.Config) {
	old := make(map[ipvs.ServiceKey]*ipvs.Service, len(cur.Services))
	for i := range cur.Services {
		old[cur.Services[i].Key] = &cur.Services[i]
	}
	n := 0
	for i := range next.Services {
		s := &next.Services[i]
		o := old[s.Key]
		delete(old, s.Key)
		name := s.Key.String()
		if o != nil && next.Renewed(s.Key) {
			// Deleted and added again (-D or -C, then -A): a new
			// service, whose old connections drain as a deleted one's.
			log.Info("service recreated", "service", name, "scheduler", s.Sched, "persistent", s.Persistent, "reason", reason)
			n++
			n += logDests(log, reason, name, o, s)
			continue
		}
		if o != nil && sameService(o, s) {
			continue
		}
		if o == nil {
			log.Info("service added", "service", name, "scheduler", s.Sched, "persistent", s.Persistent, "reason", reason)
			n++
			o = &ipvs.Service{Key: s.Key}
		} else if !sameSettings(o, s) {
			log.Info("service edited", "service", name, "scheduler", s.Sched, "flags", s.SchedFlags,
				"persistent", s.Persistent, "timeout", s.Timeout, "reason", reason)
			n++
		}
		n += logDests(log, reason, name, o, s)
	}
	for _, o := range cur.Services {
		if _, gone := old[o.Key]; gone {
			log.Info("service removed: its connections drain", "service", o.Key.String(), "dests", len(o.Dests), "reason", reason)
			n++
		}
	}
	if cur.Timeouts != next.Timeouts {
		t := next.Timeouts
		log.Info("timeouts set", "tcp", t.TCP, "tcpfin", t.TCPFin, "udp", t.UDP, "reason", reason)
		n++
	}
	if n == 0 {
		log.Debug("configuration unchanged", "reason", reason)
	}
}

func logDests(log *slog.Logger, reason, svc string, o, s *ipvs.Service) int {
	n := 0
	old := make(map[netip.AddrPort]*ipvs.Dest, len(o.Dests))
	for i := range o.Dests {
		old[o.Dests[i].AddrPort()] = &o.Dests[i]
	}
	for i := range s.Dests {
		d := &s.Dests[i]
		ap := d.AddrPort()
		od := old[ap]
		delete(old, ap)
		switch {
		case od == nil:
			log.Info("real server added", "service", svc, "dest", ap, "weight", d.Weight, "method", d.Fwd.String(), "reason", reason)
		case od.Weight != 0 && d.Weight == 0:
			log.Info("real server drained: weight 0", "service", svc, "dest", ap, "reason", reason)
		case od.Weight == 0 && d.Weight != 0:
			log.Info("real server undrained", "service", svc, "dest", ap, "weight", d.Weight, "reason", reason)
		case *od != *d:
			log.Info("real server edited", "service", svc, "dest", ap, "weight", d.Weight, "method", d.Fwd.String(),
				"uthreshold", d.UThreshold, "lthreshold", d.LThreshold, "reason", reason)
		default:
			continue
		}
		n++
	}
	for i := range o.Dests {
		if ap := o.Dests[i].AddrPort(); old[ap] != nil {
			log.Info("real server removed: its connections stay until they end", "service", svc, "dest", ap, "reason", reason)
			n++
		}
	}
	return n
}

// sameSettings tells whether a and b differ only in their destinations.
func sameSettings(a, b *ipvs.Service) bool {
	return a.Sched == b.Sched && slices.Equal(a.SchedFlags, b.SchedFlags) && a.Persistent == b.Persistent &&
		a.Timeout == b.Timeout && a.Netmask == b.Netmask && a.OnePacket == b.OnePacket && a.PE == b.PE &&
		slices.Equal(a.LocalAddrs, b.LocalAddrs)
}
