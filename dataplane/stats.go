//go:build linux

package dataplane

import (
	"context"
	"iter"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/ipvs"
)

// Stats are the dataplane's counters summed over workers, and the XDP
// program's per-reason counters summed over CPUs.
type Stats struct {
	Workers [numCounters]uint64
	XDP     bpf.Counters
	// Sockets are the kernel's AF_XDP counters (XDP_STATISTICS) summed
	// over queues: frames dropped because the RX ring was full or no
	// fill-ring frame was there, and invalid descriptors.
	Sockets unix.XDPStatistics
	// Neighbours describe next-hop resolution, with the destinations
	// that cannot be forwarded to and why.
	Neighbours NeighbourStats
}

// All yields every worker counter with its name.
func (s *Stats) All() iter.Seq2[Counter, uint64] {
	return func(yield func(Counter, uint64) bool) {
		for c := Counter(0); c < numCounters; c++ {
			if !yield(c, s.Workers[c]) {
				return
			}
		}
	}
}

// Stats reads the counters without stopping the workers.
func (d *Dataplane) Stats() Stats {
	var s Stats
	for _, w := range d.workers {
		w.stats.snapshot(&s.Workers)
	}
	if n := d.resStats.Load(); n != nil {
		s.Neighbours = *n
	}
	if d.objs != nil {
		if c, err := d.objs.Counters(); err == nil {
			s.XDP = c
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, w := range d.workers {
		for _, sock := range w.socks {
			st, err := sock.statistics()
			if err != nil {
				continue
			}
			s.Sockets.Rx_dropped += st.Rx_dropped
			s.Sockets.Rx_invalid_descs += st.Rx_invalid_descs
			s.Sockets.Tx_invalid_descs += st.Tx_invalid_descs
			s.Sockets.Rx_ring_full += st.Rx_ring_full
			s.Sockets.Rx_fill_ring_empty_descs += st.Rx_fill_ring_empty_descs
			s.Sockets.Tx_ring_empty_descs += st.Tx_ring_empty_descs
		}
	}
	return s
}

// Config returns the running configuration.
func (d *Dataplane) Config() ipvs.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state.cfg
}

// DestStats are a destination's connection counts, IPVS statistics since
// it was added or zeroed, and estimated rates.
type DestStats struct {
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
