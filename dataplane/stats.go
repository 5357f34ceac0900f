//go:build linux

package dataplane

import (
	"context"
	"iter"
	"net/netip"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/sched"
)

// Stats are the dataplane's counters summed over workers, and the XDP
// program's per-reason counters summed over CPUs.
type Stats struct {
	Workers [numCounters]uint64
	XDP     bpf.Counters
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
	if d.objs != nil {
		if c, err := d.objs.Counters(); err == nil {
			s.XDP = c
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

// Dest returns the live destination ap of service k (for its connection
// counts), or nil.
func (d *Dataplane) Dest(k ipvs.ServiceKey, ap netip.AddrPort) *sched.Dest {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.state.services[k]; s != nil {
		return s.dests[ap]
	}
	return nil
}

// Conn is one connection entry as ipvsadm -L -c lists it.
type Conn struct {
	Proto   string // "TCP", "UDP"
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
			proto := "TCP"
			if r.Proto == conntrack.ProtoUDP {
				proto = "UDP"
			}
			fn(Conn{Proto: proto, Client: r.Client, Virtual: r.Virtual, Dest: r.Dest,
				State: r.State.String(), Expires: time.Duration(r.Expires) * time.Second})
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
