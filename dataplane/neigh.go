//go:build linux

package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"
)

// The resolver finds the MAC address to send each destination's frames
// to: the destination's own when it is on-link (DR must be), else its
// gateway's. It reads the kernel's route and neighbour tables and, when an
// entry is missing or failed, makes the kernel resolve it by sending one
// empty UDP datagram to the discard port, so ARP/ND runs in the kernel
// and no worker ever waits for it.
//
// It runs in its own goroutine, never under the dataplane's lock: the
// control plane hands it a snapshot of the destinations (ID and address),
// it works out their next hops and publishes only the forwarding entries
// that changed. Per round it makes one neighbour-table dump for all
// destinations, and a route lookup only for a destination whose route it
// does not know yet, or after the kernel said routes changed (a netlink
// subscription to neighbour, route and link events; without one it looks
// every route up every round). An unroutable or unresolved destination is
// a normal state: it is counted, logged once when it goes and once when
// it comes back, listed in Stats, and the others keep being served.
//
// Measured with 50,000 destinations (TestManyDestinations): a round takes
// a few milliseconds of CPU and the dataplane's lock for about 2 ms.

// netKernel is the kernel's routing and neighbour tables as the resolver
// needs them. The daemon uses netlink (netlinkKernel); tests use an
// in-memory fake.
type netKernel interface {
	// routeGet returns the route the kernel would use to reach dst.
	routeGet(dst netip.Addr) (route, error)
	// neighbours dumps the neighbour tables of every family (one dump).
	neighbours() ([]neighbour, error)
	// probe makes the kernel resolve hop on interface ifindex.
	probe(hop netip.Addr, ifindex int) error
	// subscribe delivers neighbour, route and link changes on ev until
	// done is closed; after an error it delivers evLost and stops.
	subscribe(done <-chan struct{}, ev chan<- netEvent) error
	close() error
}

// route is where the kernel sends a destination's packets: to hop (the
// destination itself on-link, else a gateway) out of interface ifindex.
type route struct {
	hop     netip.Addr
	ifindex int
}

// Neighbour states (NUD_*, include/uapi/linux/neighbour.h).
const (
	nudIncomplete = 0x01
	nudReachable  = 0x02
	nudStale      = 0x04
	nudDelay      = 0x08
	nudProbe      = 0x10
	nudFailed     = 0x20
	nudNoARP      = 0x40
	nudPermanent  = 0x80
	// nudUsable are the states whose MAC can be sent to: STALE, DELAY and
	// PROBE are still being confirmed by the kernel, the MAC is kept.
	nudUsable = nudReachable | nudStale | nudDelay | nudProbe | nudPermanent | nudNoARP
)

// neighbour is one entry of the kernel's neighbour table.
type neighbour struct {
	ifindex int
	addr    netip.Addr
	mac     [6]byte
	hasMAC  bool
	state   int
}

func (n neighbour) usable() bool { return n.hasMAC && n.state&nudUsable != 0 }

func stateName(s int) string {
	switch {
	case s&nudFailed != 0:
		return "failed"
	case s&nudIncomplete != 0:
		return "incomplete"
	case s == 0:
		return "none"
	}
	return fmt.Sprintf("state %#x", s)
}

type eventKind uint8

const (
	evNeigh    eventKind = iota // a neighbour entry changed or appeared
	evNeighDel                  // a neighbour entry was deleted
	evRoute                     // some route changed
	evLink                      // an interface changed
	evLost                      // the subscription failed: resynchronise
)

// netEvent is one change the kernel announced.
type netEvent struct {
	kind   eventKind
	neigh  neighbour    // evNeigh, evNeighDel
	link   int          // evLink: ifindex
	up     bool         // evLink: administratively up and carrier on
	gone   bool         // evLink: the interface was removed
	prefix netip.Prefix // evRoute: the route's destination; invalid: unknown
	err    error        // evLost
}

type neighKey struct {
	ifindex int
	addr    netip.Addr
}

// resolution is what the resolver knows about one destination address.
// ifindex is the interface the route names, slot its index among the
// served interfaces, which the worker transmits on; a destination routed
// out of an interface the dataplane does not serve is unresolved.
type resolution struct {
	mac     [6]byte
	ok      bool
	ifindex int
	slot    uint16
	hop     netip.Addr
	reason  string // why not ok
	state   NeighbourState
}

// NeighbourState is a destination's next-hop state, as the resolver last
// found it.
type NeighbourState uint8

const (
	NeighbourUnknown    NeighbourState = iota // not looked up yet
	NeighbourResolved                         // the next hop's MAC is known: frames are sent
	NeighbourIncomplete                       // the next hop is being probed (no answer yet)
	NeighbourFailed                           // the next hop did not answer the kernel's probes
	NeighbourNoRoute                          // no route to the destination
	NeighbourUnserved                         // routed out of an interface xlb does not serve
)

var neighbourStateNames = [...]string{"unknown", "resolved", "incomplete", "failed", "no_route", "unserved"}

func (s NeighbourState) String() string {
	if int(s) < len(neighbourStateNames) {
		return neighbourStateNames[s]
	}
	return "unknown"
}

// destRef is one destination of a snapshot.
type destRef struct {
	id   uint32
	addr netip.Addr
}

// fwdChange is one forwarding entry to publish.
type fwdChange struct {
	id   uint32
	addr netip.Addr
	mac  [6]byte
	ok   bool
	slot uint16 // the egress interface's slot
}

// Probe pacing. A missing neighbour is probed at once, then after 1, 2,
// 4 ... s, at most every 30 s: with 50,000 dead real servers that is
// under 2,000 probes a second, and a frame for one asks for a probe
// right away (want). A STALE entry, which the kernel stops confirming
// because DR traffic bypasses it, is probed at most once a second to keep
// it fresh: the kernel then re-confirms it by unicast ARP/ND.
const (
	probeFirst = time.Second
	probeMax   = 30 * time.Second
	probeStale = time.Second
	probeWant  = 100 * time.Millisecond
	// logGrace is how long a destination may stay unresolved for lack of
	// a neighbour answer before it is logged (a new one takes a few ms).
	// A route error is logged at once.
	logGrace = 3 * time.Second
	// logBurst bounds the destinations logged one by one per round; the
	// rest are summed up in one line.
	logBurst = 10
	// routeRefresh: every route is looked up again this often even when
	// the kernel announced no change (policy rules send no route event).
	// 50,000 lookups cost about a second of CPU.
	routeRefresh = 5 * time.Minute
	// unresolvedListed bounds the unresolved destinations Stats lists.
	unresolvedListed = 64
)

type probeState struct {
	last  time.Time
	next  time.Time
	fails int
	// wanted: frames are held for this hop until then, so it is probed
	// again whenever the kernel gives up on it (FAILED), every probeWant
	// at most, whatever the backoff says.
	wanted time.Time
}

type routeEntry struct {
	r   route
	err error
}

// destState is the resolver's memory of one destination address.
type destState struct {
	res resolution
	// since is when it became unresolved; logged says a warning was
	// logged for this episode (so recovery is logged too).
	since  time.Time
	logged bool
	known  bool // res was computed at least once
}

// resolver keeps the destinations' next hops. Not safe for concurrent
// use: one goroutine (Dataplane.resolve, or WaitResolved before Run)
// drives it.
type resolver struct {
	k      netKernel
	served map[int]uint16 // the interfaces the dataplane serves: ifindex → slot
	log    *slog.Logger
	now    func() time.Time
	// polling: no subscription, so look every route up every round. Not
	// before Run either: WaitResolved's rounds, a second or two long,
	// keep the routes they found.
	polling bool

	gen         uint64                  // the snapshot's generation
	byAddr      map[netip.Addr][]uint32 // the snapshot: IDs by address
	routes      map[netip.Addr]routeEntry
	routesDirty bool           // forget every cached route
	staleRoutes []netip.Prefix // forget the routes of addresses in these
	staleLinks  []int          // forget the routes out of these interfaces
	linkUp      map[int]bool
	routesAt    time.Time
	neigh       map[neighKey]neighbour // the last dump, with the events since
	next        map[neighKey]neighbour // the next dump, reused
	byHop       map[neighKey][]netip.Addr
	unres       map[netip.Addr]struct{} // destinations not resolved
	scratch     []netip.Addr
	probes      map[neighKey]*probeState
	state       map[netip.Addr]*destState

	stats      NeighbourStats
	listDirty  bool
	pendingLog []string // transitions of this round, logged by flushLog
	moreLog    int
}

// NeighbourStats describe the resolver: how many destination addresses
// it follows, which of them cannot be forwarded to and why, and what it
// asked of the kernel.
type NeighbourStats struct {
	Destinations int // distinct destination addresses
	Unresolved   int // of which without a usable next hop
	// List holds up to 64 unresolved destinations, by address.
	List         []UnresolvedDest
	MACChanges   uint64 // a resolved destination's MAC changed
	Rounds       uint64
	Dumps        uint64 // neighbour-table dumps
	RouteLookups uint64
	Probes       uint64
	Events       uint64 // netlink events received
	LinkDowns    uint64 // the served interface went down
	Resyncs      uint64 // subscription lost and set up again
	Errors       uint64 // failed dumps

	// States holds every destination address's next-hop state. The
	// resolver replaces the map when a state changes, never changes it.
	States map[netip.Addr]NeighbourState
}

// UnresolvedDest is a destination frames cannot be sent to, and why.
type UnresolvedDest struct {
	Addr   netip.Addr
	Reason string
}

// newResolver resolves next hops out of the served interfaces, by
// ifindex; the i-th is slot i.
func newResolver(k netKernel, log *slog.Logger, served ...int) *resolver {
	slots := make(map[int]uint16, len(served))
	for i, ifindex := range served {
		slots[ifindex] = uint16(i)
	}
	return &resolver{
		k: k, served: slots, log: log, now: time.Now,
		byAddr: map[netip.Addr][]uint32{},
		routes: map[netip.Addr]routeEntry{}, neigh: map[neighKey]neighbour{}, next: map[neighKey]neighbour{},
		unres: map[netip.Addr]struct{}{}, linkUp: map[int]bool{},
		byHop: map[neighKey][]netip.Addr{}, probes: map[neighKey]*probeState{},
		state: map[netip.Addr]*destState{},
	}
}

// round resolves the destinations and returns the forwarding entries of
// cur (the published table) that must change. dests is a snapshot taken
// under the control plane's lock, and gen its generation: when gen is the
// last round's, dests is nil and the last snapshot stands.
//
// A full round works out every destination: after the destinations or
// the routes changed, and every routeRefresh. Otherwise a round costs the
// neighbour dump and what changed in it: the destinations behind a
// neighbour entry that changed since the last dump (an event may have
// been lost) and the unresolved ones (to probe them). 50,000 resolved
// destinations then cost a dump and no per-destination work.
func (r *resolver) round(dests []destRef, gen uint64, cur []destFwd) []fwdChange {
	now := r.now()
	r.stats.Rounds++
	full := false
	if dests != nil || gen != r.gen {
		r.gen = gen
		clear(r.byAddr)
		for _, d := range dests {
			r.byAddr[d.addr] = append(r.byAddr[d.addr], d.id)
		}
		for a := range r.state {
			if _, ok := r.byAddr[a]; !ok {
				delete(r.state, a)
				delete(r.routes, a)
				delete(r.unres, a)
				r.listDirty = true
			}
		}
		full = true
	}
	if r.polling || r.routesDirty || now.Sub(r.routesAt) >= routeRefresh {
		clear(r.routes)
		r.routesDirty = false
		r.routesAt = now
		full = true
	} else if r.invalidate() {
		full = true
	}
	r.staleRoutes, r.staleLinks = r.staleRoutes[:0], r.staleLinks[:0]
	if len(r.byAddr) == 0 {
		r.publishStats()
		return nil
	}
	var changed []neighKey
	if ns, err := r.k.neighbours(); err != nil {
		// Keep what the last dump said; events may still come.
		r.stats.Errors++
		r.log.Warn("list neighbours", "err", err)
	} else {
		r.stats.Dumps++
		clear(r.next)
		for _, n := range ns {
			k := neighKey{n.ifindex, n.addr}
			r.next[k] = n
			if !full && r.neigh[k] != n {
				changed = append(changed, k)
			}
		}
		if !full {
			for k := range r.neigh {
				if _, ok := r.next[k]; !ok {
					changed = append(changed, k)
				}
			}
		}
		r.neigh, r.next = r.next, r.neigh
	}
	var changes []fwdChange
	if full {
		clear(r.byHop)
		for a := range r.byAddr {
			res := r.resolve(a, now)
			if res.hop.IsValid() {
				k := neighKey{res.ifindex, res.hop}
				r.byHop[k] = append(r.byHop[k], a)
			}
			changes = r.note(a, res, now, cur, changes)
		}
	} else {
		affected := r.scratch[:0]
		for _, k := range changed {
			affected = append(affected, r.byHop[k]...)
		}
		for a := range r.unres {
			affected = append(affected, a)
		}
		for _, a := range affected {
			changes = r.note(a, r.resolve(a, now), now, cur, changes)
		}
		// Keep STALE entries fresh: one probe per hop, not per destination.
		for k, n := range r.neigh {
			if n.usable() && n.state&nudStale != 0 && len(r.byHop[k]) > 0 {
				r.probeStale(k, now)
			}
		}
		clear(affected)
		r.scratch = affected[:0]
	}
	r.flushLog()
	r.publishStats()
	return changes
}

// invalidate forgets the cached routes that the route and link events
// since the last round may have changed, and says whether it forgot any.
func (r *resolver) invalidate() bool {
	if len(r.staleRoutes) == 0 && len(r.staleLinks) == 0 {
		return false
	}
	forgot := false
	for a, re := range r.routes {
		stale := re.err != nil && len(r.staleLinks) > 0
		stale = stale || slices.Contains(r.staleLinks, re.r.ifindex)
		for _, p := range r.staleRoutes {
			stale = stale || p.Contains(a)
		}
		if stale {
			delete(r.routes, a)
			forgot = true
		}
	}
	return forgot
}

// resolve works out one address's next hop from the route cache and the
// neighbour table, probing when the neighbour is missing or stale.
func (r *resolver) resolve(a netip.Addr, now time.Time) resolution {
	re, ok := r.routes[a]
	if !ok {
		r.stats.RouteLookups++
		re.r, re.err = r.k.routeGet(a)
		r.routes[a] = re
	}
	if re.err != nil {
		return resolution{reason: "no route: " + re.err.Error(), state: NeighbourNoRoute}
	}
	res := resolution{ifindex: re.r.ifindex, hop: re.r.hop}
	slot, served := r.served[re.r.ifindex]
	if !served {
		res.reason = fmt.Sprintf("route via interface %d, which xlb does not serve (--iface)", re.r.ifindex)
		res.state = NeighbourUnserved
		return res
	}
	res.slot = slot
	k := neighKey{re.r.ifindex, re.r.hop}
	n, found := r.neigh[k]
	if found && n.usable() {
		res.mac, res.ok, res.state = n.mac, true, NeighbourResolved
		if n.state&nudStale != 0 {
			r.probeStale(k, now)
		} else {
			delete(r.probes, k)
		}
		return res
	}
	r.probeMissing(k, now)
	res.state = NeighbourIncomplete
	if n.state&nudFailed != 0 {
		res.state = NeighbourFailed
	}
	if re.r.hop != a {
		res.reason = fmt.Sprintf("gateway %v: neighbour %s", re.r.hop, stateName(n.state))
	} else {
		res.reason = "neighbour " + stateName(n.state)
	}
	return res
}

func (r *resolver) probeMissing(k neighKey, now time.Time) {
	p := r.probes[k]
	if p == nil {
		p = &probeState{}
		r.probes[k] = p
	}
	if now.Before(p.next) && !(now.Before(p.wanted) && now.Sub(p.last) >= probeWant) {
		return
	}
	r.sendProbe(k, p, now)
	p.next = now.Add(min(probeFirst<<min(p.fails, 10), probeMax))
	p.fails++
}

func (r *resolver) probeStale(k neighKey, now time.Time) {
	p := r.probes[k]
	if p == nil {
		p = &probeState{}
		r.probes[k] = p
	}
	if p.fails > 0 { // it answered: start the backoff again
		p.fails, p.next = 0, time.Time{}
	}
	if now.Sub(p.last) >= probeStale {
		r.sendProbe(k, p, now)
	}
}

func (r *resolver) sendProbe(k neighKey, p *probeState, now time.Time) {
	p.last = now
	r.stats.Probes++
	r.k.probe(k.addr, k.ifindex) // an error shows as the neighbour staying unresolved
}

// note records a's new resolution, logs a transition and appends the
// forwarding entries that differ from cur.
func (r *resolver) note(a netip.Addr, res resolution, now time.Time, cur []destFwd, changes []fwdChange) []fwdChange {
	st := r.state[a]
	if st == nil {
		st = &destState{}
		r.state[a] = st
	}
	old := st.res
	if st.known && old.ok && res.ok && old.mac != res.mac {
		r.stats.MACChanges++
		r.logf(slog.LevelInfo, "destination MAC changed", "dest", a, "old", macString(old.mac), "new", macString(res.mac))
	}
	if !st.known || old.ok != res.ok || old.reason != res.reason {
		r.listDirty = true
	}
	switch {
	case res.ok:
		// Once per change: a destination's first resolution, and its
		// recovery after it was logged unresolved.
		if st.logged || !st.known {
			r.logf(slog.LevelInfo, "destination resolved", "dest", a, "mac", macString(res.mac))
		}
		st.logged = false
		st.since = time.Time{}
	case !st.known || old.ok:
		st.since = now
		fallthrough
	default:
		// A route error is worth saying at once; a neighbour that has not
		// answered yet only after logGrace.
		_, served := r.served[res.ifindex]
		definite := !res.hop.IsValid() || !served
		if !st.logged && (definite || now.Sub(st.since) >= logGrace) {
			r.logf(slog.LevelWarn, "destination unresolved: its frames are held, then dropped", "dest", a, "reason", res.reason)
			st.logged = true
		}
	}
	st.res, st.known = res, true
	if res.ok {
		delete(r.unres, a)
	} else {
		r.unres[a] = struct{}{}
	}
	for _, id := range r.byAddr[a] {
		if int(id) >= len(cur) {
			continue
		}
		f := &cur[id]
		if f.addr != a || (f.macOK == res.ok && (!res.ok || f.mac == res.mac && f.slot == res.slot)) {
			continue
		}
		changes = append(changes, fwdChange{id: id, addr: a, mac: res.mac, ok: res.ok, slot: res.slot})
	}
	return changes
}

// event applies one kernel event. It returns the forwarding entries to
// change now (a neighbour event) and whether a round should follow soon
// (routes or links changed, or the subscription must be set up again).
func (r *resolver) event(ev netEvent, cur []destFwd) (changes []fwdChange, round bool) {
	r.stats.Events++
	now := r.now()
	switch ev.kind {
	case evNeigh, evNeighDel:
		k := neighKey{ev.neigh.ifindex, ev.neigh.addr}
		if ev.kind == evNeighDel {
			delete(r.neigh, k)
		} else {
			r.neigh[k] = ev.neigh
		}
		addrs := r.byHop[k]
		for _, a := range addrs {
			changes = r.note(a, r.resolve(a, now), now, cur, changes)
		}
		if len(addrs) > 0 {
			r.flushLog()
			r.publishStats()
		}
		return changes, false
	case evLink:
		// Links send events for many reasons; only up and down matter.
		// IPv4 drops a link's routes without a route event when it goes
		// down, so its cached routes (and the failed lookups, which may
		// now succeed) are looked up again.
		if was, ok := r.linkUp[ev.link]; ok && was == ev.up {
			return nil, false
		}
		_, known := r.linkUp[ev.link]
		r.linkUp[ev.link] = ev.up
		if _, served := r.served[ev.link]; served && (known || !ev.up) {
			if ev.up {
				r.log.Info("served interface up", "ifindex", ev.link)
			} else {
				r.stats.LinkDowns++
				r.log.Warn("served interface down: no destination can be sent to until it is up", "ifindex", ev.link)
			}
		}
		r.staleLinks = append(r.staleLinks, ev.link)
		return nil, true
	case evRoute:
		// A route for prefix P changes only the lookups of addresses in P.
		if ev.prefix.IsValid() {
			r.staleRoutes = append(r.staleRoutes, ev.prefix)
		} else {
			r.routesDirty = true
		}
		return nil, true
	case evLost:
		r.stats.Resyncs++
		r.log.Warn("netlink subscription lost: resynchronising", "err", ev.err)
		r.routesDirty = true
		return nil, true
	}
	return nil, false
}

// latest sets each change to its address's latest resolution: of
// several events for one destination handled before one publish, the
// last one counts, even when it undid an earlier one.
func (r *resolver) latest(changes []fwdChange) {
	for i := range changes {
		if st := r.state[changes[i].addr]; st != nil {
			changes[i].mac, changes[i].ok, changes[i].slot = st.res.mac, st.res.ok, st.res.slot
		}
	}
}

// want probes the next hops of addrs now (traffic is waiting for them),
// however far their backoff has gone, at most every probeWant.
func (r *resolver) want(addrs []netip.Addr) {
	now := r.now()
	for _, a := range addrs {
		re, ok := r.routes[a]
		if _, served := r.served[re.r.ifindex]; !ok || re.err != nil || !served {
			continue
		}
		k := neighKey{re.r.ifindex, re.r.hop}
		if n, ok := r.neigh[k]; ok && n.usable() {
			continue
		}
		p := r.probes[k]
		if p == nil {
			p = &probeState{}
			r.probes[k] = p
		}
		p.wanted = now.Add(time.Duration(holdTimeout))
		if now.Sub(p.last) >= probeWant {
			r.sendProbe(k, p, now)
			p.next = now.Add(probeFirst)
		}
	}
}

// unresolved counts the destination addresses without a usable next hop.
func (r *resolver) unresolved() int { return len(r.unres) }

func (r *resolver) publishStats() {
	r.stats.Destinations = len(r.state)
	r.stats.Unresolved = r.unresolved()
	if !r.listDirty {
		return
	}
	r.listDirty = false
	states := make(map[netip.Addr]NeighbourState, len(r.state))
	for a, st := range r.state {
		states[a] = st.res.state
	}
	r.stats.States = states
	var list []UnresolvedDest
	for a := range r.unres {
		list = append(list, UnresolvedDest{Addr: a, Reason: r.state[a].res.reason})
	}
	slices.SortFunc(list, func(x, y UnresolvedDest) int { return x.Addr.Compare(y.Addr) })
	if len(list) > unresolvedListed {
		list = list[:unresolvedListed]
	}
	r.stats.List = list
}

// snapshot returns a copy of the statistics for another goroutine.
func (r *resolver) snapshot() NeighbourStats {
	s := r.stats
	s.List = slices.Clone(s.List)
	return s
}

// logf queues a log line for flushLog, which bounds how many one round
// writes: 50,000 destinations losing their route at once make one line
// per logBurst and a sum, not 50,000 lines.
func (r *resolver) logf(level slog.Level, msg string, args ...any) {
	if len(r.pendingLog) >= logBurst {
		r.moreLog++
		return
	}
	r.pendingLog = append(r.pendingLog, msg)
	r.log.Log(context.Background(), level, msg, args...)
}

func (r *resolver) flushLog() {
	if r.moreLog > 0 {
		r.log.Warn("more destination changes not logged one by one", "count", r.moreLog,
			"unresolved", r.unresolved())
	}
	r.pendingLog, r.moreLog = r.pendingLog[:0], 0
}

func macString(m [6]byte) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// errNoRoute is what routeGet says when the kernel returns no route.
var errNoRoute = errors.New("no route")
