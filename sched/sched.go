package sched

import (
	"net/netip"
	"time"
)

// Flow is what a scheduler may look at when it places a new connection:
// the first packet's addresses, ports and protocol. Addresses are IPv4 (not
// IPv4-mapped) or IPv6. sh and mh hash Src (and SrcPort for TCP, UDP and
// SCTP with their -port flag); dh, lblc and lblcr key on Dst.
type Flow struct {
	Proto   uint8
	Src     netip.Addr
	SrcPort uint16
	Dst     netip.Addr
	DstPort uint16

	// Now, if not zero, is the packet's time on a monotonic clock of the
	// caller's (a worker reads one per batch); lblc and lblcr then use it
	// instead of reading Options.Clock, which costs a clock read per
	// decision (about 50 ns in a VM). Set it on every Flow or on none: the
	// two clocks' readings are not comparable.
	Now time.Duration
}

// Scheduler places new connections of one virtual service on its
// destinations, with the decisions of the IPVS scheduler of the same name.
//
// Each dataplane worker owns its own instance per service: Schedule is
// called by one goroutine at a time, never allocates and never blocks.
// Update may run concurrently with Schedule, from the control plane.
type Scheduler interface {
	// Name is the IPVS name of the scheduler ("rr", "wlc", ...).
	Name() string
	// Schedule returns the destination for a new connection, or nil when
	// no destination may take it.
	Schedule(f *Flow) *Dest
	// Update gives the scheduler the service's destinations in kernel list
	// order (newest first: ipvsadm -a inserts at the head). The control
	// plane calls it after any change to the list or to a weight or
	// threshold; derived state (wrr's cw, sh/dh/mh tables) is rebuilt here,
	// off the packet path, and published atomically. The slice is copied.
	// Calls to Update on one instance must not overlap.
	Update(dests []*Dest)
}
