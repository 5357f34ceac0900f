package sched

import (
	"net/netip"
	"sync/atomic"
)

// Dest flags, as IPVS's IP_VS_DEST_F_*.
const (
	// DestAvailable is set while the destination belongs to its service.
	// dh, sh and lblc refuse a destination without it.
	DestAvailable uint32 = 1 << 0
	// DestOverload is set when the destination reached its upper
	// connection threshold (-x) and cleared as described in [Dest.Unbind].
	DestOverload uint32 = 1 << 1
)

// Dest is a real server as the schedulers and the connection table see it
// (IPVS's struct ip_vs_dest). ID, Addr and Port are fixed when the Dest is
// made; everything else is atomic, because the control plane edits weights
// and thresholds while workers read them and move the connection counters.
//
// Counters follow ip_vs_conn.c: a new connection is bound inactive
// ([Dest.Bind]), moves to active when its TCP state becomes ESTABLISHED
// ([Dest.Activate]) and back when it leaves it ([Dest.Deactivate]); UDP
// connections stay inactive for life. Templates (persistence) count in
// PersistConns.
type Dest struct {
	// ID indexes the destination in a [Registry]; connection entries
	// store it instead of a pointer so their table holds no pointers.
	ID uint32

	// The four words every least-connection scan reads come first, so
	// that they share a cache line (a 1000-destination wlc scan touches
	// 1000 of them per decision).
	flags       atomic.Uint32
	weight      atomic.Int32
	activeConns atomic.Int32
	inactConns  atomic.Int32

	Addr netip.Addr
	Port uint16

	lastWeight   atomic.Int32 // latest non-zero weight (mh fills from it)
	uThreshold   atomic.Uint32
	lThreshold   atomic.Uint32
	persistConns atomic.Int32
	// fwd is the forwarding method new connections bind (the control
	// plane's value, plus one; 0: not set), as IPVS keeps conn_flags in
	// ip_vs_dest: set before a scheduler can offer the destination, so
	// a connection never binds a method the destination does not have.
	fwd atomic.Uint32
}

// SetFwd sets the forwarding method connections to d bind from now on
// (an opaque value for this package: conntrack's).
func (d *Dest) SetFwd(m uint8) { d.fwd.Store(uint32(m) + 1) }

// Fwd returns the forwarding method set by SetFwd, and whether one was.
func (d *Dest) Fwd() (uint8, bool) {
	v := d.fwd.Load()
	return uint8(v - 1), v != 0
}

// NewDest returns an available destination with the given weight.
func NewDest(addr netip.Addr, port uint16, weight int32) *Dest {
	d := &Dest{Addr: addr, Port: port}
	d.SetWeight(weight)
	d.flags.Store(DestAvailable)
	return d
}

// Weight is the destination's weight; 0 means quiesced.
func (d *Dest) Weight() int32 { return d.weight.Load() }

// LastWeight is the latest non-zero weight the destination had.
func (d *Dest) LastWeight() int32 { return d.lastWeight.Load() }

// SetWeight changes the weight. Schedulers that derive state from weights
// learn of it through [Scheduler.Update].
func (d *Dest) SetWeight(w int32) {
	d.weight.Store(w)
	if w != 0 {
		d.lastWeight.Store(w)
	}
}

// Thresholds returns the upper (-x) and lower (-y) connection thresholds.
func (d *Dest) Thresholds() (upper, lower uint32) {
	return d.uThreshold.Load(), d.lThreshold.Load()
}

// SetThresholds sets the upper and lower connection thresholds (0: none)
// as __ip_vs_update_dest (ip_vs_ctl.c) does on ipvsadm -a/-e: the
// overload flag is cleared when the new upper threshold is 0 or higher
// than the old one, and otherwise left as it is. An edit never sets the
// flag, even when the connections already exceed a lowered threshold:
// the next [Dest.Bind] does.
func (d *Dest) SetThresholds(upper, lower uint32) {
	if upper == 0 || upper > d.uThreshold.Load() {
		d.setOverload(false)
	}
	d.uThreshold.Store(upper)
	d.lThreshold.Store(lower)
}

// Flags returns the DestAvailable and DestOverload bits.
func (d *Dest) Flags() uint32 { return d.flags.Load() }

// Available reports whether the destination still belongs to its service.
func (d *Dest) Available() bool { return d.flags.Load()&DestAvailable != 0 }

// SetAvailable sets or clears DestAvailable (cleared when the destination
// is deleted from its service while connections still use it).
func (d *Dest) SetAvailable(ok bool) {
	for {
		old := d.flags.Load()
		nw := old &^ DestAvailable
		if ok {
			nw |= DestAvailable
		}
		if d.flags.CompareAndSwap(old, nw) {
			return
		}
	}
}

// Overloaded reports whether DestOverload is set.
func (d *Dest) Overloaded() bool { return d.flags.Load()&DestOverload != 0 }

// ActiveConns is IPVS's activeconns: connections in TCP ESTABLISHED.
func (d *Dest) ActiveConns() int32 { return d.activeConns.Load() }

// InactConns is IPVS's inactconns: every other connection (UDP included).
func (d *Dest) InactConns() int32 { return d.inactConns.Load() }

// PersistConns is IPVS's persistconns: persistence templates.
func (d *Dest) PersistConns() int32 { return d.persistConns.Load() }

// Overhead is ip_vs_dest_conn_overhead: (activeconns << 8) + inactconns.
func (d *Dest) Overhead() int32 {
	return d.activeConns.Load()<<8 + d.inactConns.Load()
}

// Bind accounts for a new connection (inactive) or persistence template
// bound to d, and sets DestOverload when the upper threshold is reached
// (ip_vs_bind_dest).
func (d *Dest) Bind(template bool) {
	if template {
		d.persistConns.Add(1)
	} else {
		d.inactConns.Add(1)
	}
	if u := d.uThreshold.Load(); u != 0 && d.totalConns() >= u {
		d.setOverload(true)
	}
}

// Unbind accounts for a connection (active or not) or template leaving d
// and clears DestOverload per ip_vs_unbind_dest: below the lower threshold,
// or below 3/4 of the upper one when no lower threshold is set, or always
// when there is no upper threshold.
func (d *Dest) Unbind(template, active bool) {
	switch {
	case template:
		d.persistConns.Add(-1)
	case active:
		d.activeConns.Add(-1)
	default:
		d.inactConns.Add(-1)
	}
	d.unbindOverload()
}

// Activate moves one connection from inactive to active (TCP reached
// ESTABLISHED).
func (d *Dest) Activate() {
	d.inactConns.Add(-1)
	d.activeConns.Add(1)
}

// Deactivate moves one connection from active to inactive (TCP left
// ESTABLISHED).
func (d *Dest) Deactivate() {
	d.activeConns.Add(-1)
	d.inactConns.Add(1)
}

// totalConns is ip_vs_dest_totalconns: active + inactive (templates do
// not count).
func (d *Dest) totalConns() uint32 {
	return uint32(d.activeConns.Load() + d.inactConns.Load())
}

// unbindOverload is the tail of ip_vs_unbind_dest (ip_vs_conn.c). The
// comparisons are the kernel's: ip_vs_dest_totalconns is an int compared
// with the u32 thresholds, so they are unsigned, and total*4 < u*3 wraps
// at 32 bits like the C does (thresholds above 2^30 are not sensible
// anyway; ipvsadm accepts up to INT_MAX).
func (d *Dest) unbindOverload() {
	u, l := d.uThreshold.Load(), d.lThreshold.Load()
	total := d.totalConns()
	switch {
	case l != 0:
		if total < l {
			d.setOverload(false)
		}
	case u != 0:
		if total*4 < u*3 {
			d.setOverload(false)
		}
	default:
		d.setOverload(false)
	}
}

func (d *Dest) setOverload(on bool) {
	for {
		old := d.flags.Load()
		nw := old &^ DestOverload
		if on {
			nw |= DestOverload
		}
		if old == nw || d.flags.CompareAndSwap(old, nw) {
			return
		}
	}
}
