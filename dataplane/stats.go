//go:build linux

package dataplane

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/modes"
	"github.com/xlbproject/xlb/sched"
)

// Stats are the dataplane's statistics: the XDP program's outcomes, each
// queue's worker counters, AF_XDP socket statistics and connection
// table, the neighbour resolver's figures, and every service's real
// servers. Samples yields them all, each with its Desc (name, kind,
// help, labels): `xlb --xlb-stats`, the counters printed at exit and the
// Prometheus exporter are renderings of Samples.
type Stats struct {
	XDP    bpf.Counters // per reason, summed over CPUs
	Queues []QueueStats
	// Neighbours describe next-hop resolution, with the destinations
	// that cannot be forwarded to and why.
	Neighbours NeighbourStats
	Services   []ServiceStats
	// Errors are the statistics that could not be read; their series
	// are missing or zero.
	Errors []error
}

// QueueStats are one queue's: its worker's counters, its sockets' and
// its connection table's.
type QueueStats struct {
	Queue     int
	Counters  [numCounters]uint64
	Malformed [packet.NumReasons]uint64 // the detail of Counters[Malformed]
	Rewrite   [modes.NumVerdicts]uint64 // the detail of Counters[XmitDropped]
	Sockets   []SocketStats             // by served interface
	Conntrack conntrack.Stats
}

// SocketStats are the kernel's statistics of one AF_XDP socket
// (XDP_STATISTICS, struct xdp_statistics): frames dropped because no
// fill-ring frame was there or the RX ring was full, and invalid
// descriptors.
type SocketStats struct {
	Iface                          string
	RxDropped                      uint64 // rx_dropped: no fill-ring frame, or too long
	RxInvalidDescs, TxInvalidDescs uint64
	RxRingFull                     uint64 // rx_ring_full
	RxFillRingEmpty                uint64 // rx_fill_ring_empty_descs
	TxRingEmpty                    uint64 // tx_ring_empty_descs
}

// ServiceStats are the statistics of a service's real servers.
type ServiceStats struct {
	Service ipvs.ServiceKey
	Dests   []DestStats
}

// Workers returns the worker counters summed over queues.
func (s *Stats) Workers() [numCounters]uint64 {
	var sum [numCounters]uint64
	for i := range s.Queues {
		for c, n := range s.Queues[i].Counters {
			sum[c] += n
		}
	}
	return sum
}

// All yields every worker counter, summed over queues, with its name.
func (s *Stats) All() iter.Seq2[Counter, uint64] {
	sum := s.Workers()
	return func(yield func(Counter, uint64) bool) {
		for c := Counter(0); c < numCounters; c++ {
			if !yield(c, sum[c]) {
				return
			}
		}
	}
}

// Stats reads the statistics without stopping the workers: their
// counters and tables publish atomic copies, and the control lock is
// held only to copy the list of real servers and their rates.
func (d *Dataplane) Stats() Stats {
	var s Stats
	s.Queues = make([]QueueStats, len(d.workers))
	for i, w := range d.workers {
		q := &s.Queues[i]
		q.Queue = w.id
		w.stats.snapshot(q)
		if w.ct != nil {
			q.Conntrack = w.ct.Stats()
		}
	}
	var states map[netip.Addr]NeighbourState
	if n := d.resStats.Load(); n != nil {
		s.Neighbours = *n
		states = n.States
	}
	if d.objs != nil {
		c, err := d.objs.Counters()
		if err != nil {
			s.Errors = append(s.Errors, fmt.Errorf("read xdp counters: %w", err))
		}
		s.XDP = c
	}
	s.Errors = append(s.Errors, d.socketStats(s.Queues)...)
	s.Services = d.serviceStats(states)
	return s
}

// socketStats reads each worker's sockets' statistics, under sockMu so
// that Close does not close a socket being read.
func (d *Dataplane) socketStats(qs []QueueStats) []error {
	d.sockMu.RLock()
	defer d.sockMu.RUnlock()
	var errs []error
	for i, w := range d.workers {
		for slot, sock := range w.socks {
			k := SocketStats{Iface: d.ifaces[slot].name}
			st, err := sock.statistics()
			if err != nil {
				errs = append(errs, fmt.Errorf("read statistics of %s queue %d: %w", k.Iface, w.id, err))
			}
			k.RxDropped, k.RxInvalidDescs, k.TxInvalidDescs = st.Rx_dropped, st.Rx_invalid_descs, st.Tx_invalid_descs
			k.RxRingFull, k.RxFillRingEmpty, k.TxRingEmpty = st.Rx_ring_full, st.Rx_fill_ring_empty_descs, st.Tx_ring_empty_descs
			qs[i].Sockets = append(qs[i].Sockets, k)
		}
	}
	return errs
}

// serviceStats returns every service's real servers' statistics, by
// service and address. Under mu it only copies the destinations, their
// zero points and rates; the counters are summed over the workers after.
func (d *Dataplane) serviceStats(states map[netip.Addr]NeighbourState) []ServiceStats {
	type destRow struct {
		dst  *sched.Dest
		ap   netip.AddrPort
		base destCounters
		r    Rates
	}
	type svcRow struct {
		k     ipvs.ServiceKey
		dests []destRow
	}
	d.mu.Lock()
	rows := make([]svcRow, 0, len(d.state.services))
	for k, svc := range d.state.services {
		r := svcRow{k: k, dests: make([]destRow, 0, len(svc.dests))}
		for ap, dst := range svc.dests {
			r.dests = append(r.dests, destRow{dst, ap, d.state.base[dst], d.state.est[dst].rates()})
		}
		rows = append(rows, r)
	}
	d.mu.Unlock()
	out := make([]ServiceStats, len(rows))
	for i, r := range rows {
		out[i].Service = r.k
		out[i].Dests = make([]DestStats, len(r.dests))
		for j, x := range r.dests {
			c := d.destTotals(x.dst.ID).sub(x.base)
			out[i].Dests[j] = DestStats{
				Addr: x.ap, Weight: x.dst.Weight(), Neighbour: states[x.ap.Addr()],
				ActiveConns: x.dst.ActiveConns(), InactConns: x.dst.InactConns(), PersistConns: x.dst.PersistConns(),
				Conns: c.Conns, InPkts: c.InPkts, InBytes: c.InBytes, OutPkts: c.OutPkts, OutBytes: c.OutBytes,
				Rates: x.r,
			}
		}
		slices.SortFunc(out[i].Dests, func(a, b DestStats) int { return a.Addr.Compare(b.Addr) })
	}
	slices.SortFunc(out, func(a, b ServiceStats) int { return compareServiceKeys(a.Service, b.Service) })
	return out
}

func compareServiceKeys(a, b ipvs.ServiceKey) int {
	if c := cmp.Compare(a.FWMark, b.FWMark); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Proto, b.Proto); c != 0 {
		return c
	}
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// ServiceLabel names service k in metrics labels: "tcp/10.0.0.1:80",
// "udp/[2001:db8::1]:53", "fwmark/1" (IPv6: "fwmark6/1").
func ServiceLabel(k ipvs.ServiceKey) string {
	if k.FWMark != 0 {
		if k.Addr.Is6() && !k.Addr.Is4In6() {
			return "fwmark6/" + strconv.FormatUint(uint64(k.FWMark), 10)
		}
		return "fwmark/" + strconv.FormatUint(uint64(k.FWMark), 10)
	}
	var p string
	switch k.Proto {
	case ipvs.TCP:
		p = "tcp"
	case ipvs.UDP:
		p = "udp"
	case ipvs.SCTP:
		p = "sctp"
	default:
		p = "proto" + strconv.Itoa(int(k.Proto))
	}
	return p + "/" + netip.AddrPortFrom(k.Addr.Unmap(), k.Port).String()
}

// RealLabel names a real server in metrics labels: "10.0.1.1:80",
// "[2001:db8::2]:80".
func RealLabel(ap netip.AddrPort) string {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// Config returns the running configuration.
func (d *Dataplane) Config() ipvs.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state.cfg
}

// DestStats are a destination's connection counts, IPVS statistics since
// it was added or zeroed, and estimated rates; Stats fills in its
// address, weight and next-hop state too.
type DestStats struct {
	Addr                                      netip.AddrPort
	Weight                                    int32
	Neighbour                                 NeighbourState
	ActiveConns, InactConns, PersistConns     int32
	Conns, InPkts, InBytes, OutPkts, OutBytes uint64
	Rates
}

// DestStats returns the statistics of destination ap of service k;
// ok is false when there is no such destination.
func (d *Dataplane) DestStats(k ipvs.ServiceKey, ap netip.AddrPort) (s DestStats, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	svc := d.state.services[k]
	if svc == nil || svc.dests[ap] == nil {
		return s, false
	}
	dst := svc.dests[ap]
	c := d.destTotals(dst.ID).sub(d.state.base[dst])
	return DestStats{
		ActiveConns: dst.ActiveConns(), InactConns: dst.InactConns(), PersistConns: dst.PersistConns(),
		Conns: c.Conns, InPkts: c.InPkts, InBytes: c.InBytes, OutPkts: c.OutPkts, OutBytes: c.OutBytes,
		Rates: d.state.est[dst].rates(),
	}, true
}

// Zero resets the statistics and rates of service k's destinations, or
// of every service when k is nil (ipvsadm -Z).
func (d *Dataplane) Zero(k *ipvs.ServiceKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for key, svc := range d.state.services {
		if k != nil && key != *k {
			continue
		}
		for _, dst := range svc.dests {
			d.state.base[dst] = d.destTotals(dst.ID)
			d.state.est[dst] = &estimator{last: destCounters{}}
		}
	}
}

// destTotals sums destination id's counters over the workers.
func (d *Dataplane) destTotals(id uint32) destCounters {
	var c destCounters
	for _, w := range d.workers {
		w.ds.read(id, &c)
	}
	if d.opts.Offload && d.objs != nil {
		// What the XDP program forwarded itself: the sum is exact to the
		// packet, each frame counted by one of the two.
		var x bpf.DestCounters
		if err := d.objs.DestCounters(id, &x); err == nil {
			c.add(&destCounters{InPkts: x.InPkts, InBytes: x.InBytes, OutPkts: x.OutPkts, OutBytes: x.OutBytes})
		}
	}
	return c
}

// estimate runs IPVS's rate estimator every 2 s until ctx is done.
func (d *Dataplane) estimate(ctx context.Context) {
	t := time.NewTicker(estimatePeriod * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		for dst, e := range d.state.est {
			e.update(d.destTotals(dst.ID).sub(d.state.base[dst]))
		}
		d.mu.Unlock()
	}
}

// Conn is one connection entry as ipvsadm -L -c lists it.
type Conn struct {
	Proto   string // "TCP", "UDP", or "IP" for a firewall-mark template
	Client  netip.AddrPort
	Virtual netip.AddrPort
	Dest    netip.AddrPort
	State   string // IPVS's state name
	Expires time.Duration
}

// Conns calls fn for every connection entry of every worker while the
// workers keep forwarding (see conntrack.Table.Dump).
func (d *Dataplane) Conns(ctx context.Context, fn func(Conn)) error {
	for _, w := range d.workers {
		err := w.ct.Dump(ctx, func(e *conntrack.Entry, now int64) error {
			r := conntrack.RowOf(e, now)
			fn(Conn{Proto: conntrack.ProtoName(r.Proto), Client: r.Client, Virtual: r.Virtual, Dest: r.Dest,
				State: r.State.String(), Expires: time.Duration(r.Expires) * time.Second})
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// LocalAddrStats returns a FULLNAT local address's figures over every
// worker: the connections holding one of its ports, and the connections
// refused because its ports were exhausted (ipvsadm -G's CONNS and
// CONFLICTS columns).
func (d *Dataplane) LocalAddrStats(a netip.Addr) (conns, exhausted uint64) {
	for _, w := range d.workers {
		w.localAddrStats(a.Unmap(), &conns, &exhausted)
	}
	return conns, exhausted
}
