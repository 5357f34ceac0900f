package sched

import (
	"slices"
	"sync/atomic"
)

// This file holds the schedulers that keep no state between decisions:
// each decision is one pass over the destination list, reading the live
// counters (lc, wlc, sed, nq, fo, ovf). Their only shared state is the
// list itself, replaced wholesale by Update.

// destList is a published destination list, newest first. It is never
// modified after it is stored.
type destList struct {
	dests []*Dest
}

var emptyList = &destList{}

// listSched is a scheduler whose decision is a pure function of the
// list and the destinations' live counters.
type listSched struct {
	name string
	pick func([]*Dest) *Dest
	cur  atomic.Pointer[destList]
}

func newList(name string, pick func([]*Dest) *Dest) *listSched {
	s := &listSched{name: name, pick: pick}
	s.cur.Store(emptyList)
	return s
}

func (s *listSched) Name() string { return s.name }

func (s *listSched) Schedule(*Flow) *Dest { return s.pick(s.cur.Load().dests) }

func (s *listSched) Update(dests []*Dest) { s.cur.Store(&destList{dests: slices.Clone(dests)}) }

// overloaded reports IP_VS_DEST_F_OVERLOAD.
func overloaded(d *Dest) bool { return d.flags.Load()&DestOverload != 0 }

// lcPick is ip_vs_lc.c: the least overhead among destinations neither
// overloaded nor of weight 0; the first wins ties. The kernel compares
// the overheads as unsigned int.
func lcPick(ds []*Dest) *Dest {
	var least *Dest
	var loh uint32
	for _, d := range ds {
		if overloaded(d) || d.weight.Load() == 0 {
			continue
		}
		doh := uint32(d.Overhead())
		if least == nil || doh < loh {
			least, loh = d, doh
		}
	}
	return least
}

// wlcPick is ip_vs_wlc.c (and __ip_vs_lblc_schedule, __ip_vs_lblcr_schedule):
// the first destination not overloaded and of positive weight is the
// candidate; a later one that is not overloaded replaces it when
// loh*w_d > doh*w_least, compared in 64 bits without division. The
// strict > keeps the earlier destination on a tie, and a later weight-0
// destination can never win (its left side is 0).
func wlcPick(ds []*Dest) *Dest {
	i := 0
	var least *Dest
	var loh, lw int64
	for ; i < len(ds); i++ {
		d := ds[i]
		if w := d.weight.Load(); w > 0 && !overloaded(d) {
			least, loh, lw = d, int64(d.Overhead()), int64(w)
			break
		}
	}
	if least == nil {
		return nil
	}
	for i++; i < len(ds); i++ {
		d := ds[i]
		if overloaded(d) {
			continue
		}
		doh, w := int64(d.Overhead()), int64(d.weight.Load())
		if loh*w > doh*lw {
			least, loh, lw = d, doh, w
		}
	}
	return least
}

// expectedDelay is ip_vs_sed_dest_overhead / ip_vs_nq_dest_overhead:
// active connections + 1 (inactive ones are ignored), an unsigned int.
func expectedDelay(d *Dest) int64 { return int64(uint32(d.activeConns.Load() + 1)) }

// sedPick is ip_vs_sed.c: wlcPick with expectedDelay as the overhead.
// Weights 1, 2, 3 with 1, 2, 3 active connections give delays 2/1, 3/2,
// 4/3: the third wins.
func sedPick(ds []*Dest) *Dest {
	i := 0
	var least *Dest
	var loh, lw int64
	for ; i < len(ds); i++ {
		d := ds[i]
		if w := d.weight.Load(); w > 0 && !overloaded(d) {
			least, loh, lw = d, expectedDelay(d), int64(w)
			break
		}
	}
	if least == nil {
		return nil
	}
	for i++; i < len(ds); i++ {
		d := ds[i]
		if overloaded(d) {
			continue
		}
		doh, w := expectedDelay(d), int64(d.weight.Load())
		if loh*w > doh*lw {
			least, loh, lw = d, doh, w
		}
	}
	return least
}

// nqPick is ip_vs_nq.c: skip overloaded and weight-0 destinations; the
// first idle one (no active connection) is taken at once; otherwise as
// sedPick.
func nqPick(ds []*Dest) *Dest {
	var least *Dest
	var loh, lw int64
	for _, d := range ds {
		w := d.weight.Load()
		if overloaded(d) || w == 0 {
			continue
		}
		if d.activeConns.Load() == 0 {
			return d
		}
		doh := expectedDelay(d)
		if least == nil || loh*int64(w) > doh*lw {
			least, loh, lw = d, doh, int64(w)
		}
	}
	return least
}

// foPick is ip_vs_fo.c (weighted failover): the highest weight among the
// destinations not overloaded; the first wins ties and weight 0 never
// wins (it must beat 0).
func foPick(ds []*Dest) *Dest {
	var h *Dest
	var hw int32
	for _, d := range ds {
		if w := d.weight.Load(); w > hw && !overloaded(d) {
			h, hw = d, w
		}
	}
	return h
}

// ovfPick is ip_vs_ovf.c (overflow): the highest weight among the
// destinations not overloaded, of non-zero weight and with no more
// active connections than their weight; the first wins ties. Only
// active connections count, so it suits TCP, not UDP.
func ovfPick(ds []*Dest) *Dest {
	var h *Dest
	var hw int32
	for _, d := range ds {
		w := d.weight.Load()
		if overloaded(d) || d.activeConns.Load() > w || w == 0 {
			continue
		}
		if h == nil || w > hw {
			h, hw = d, w
		}
	}
	return h
}
