//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/modes"
	"github.com/xlbproject/xlb/sched"
)

// svcKey is how a worker finds a virtual service from a parsed frame.
type svcKey struct {
	addr  [16]byte // IPv4-mapped for IPv4
	port  uint16
	proto uint8
}

func makeSvcKey(k ipvs.ServiceKey) svcKey {
	return svcKey{addr: k.Addr.As16(), port: k.Port, proto: uint8(k.Proto)}
}

// destFwd is what a worker needs to forward to a destination, indexed by
// sched.Dest ID in the shared forwarding table.
type destFwd struct {
	mac    [6]byte // next hop's MAC
	macOK  bool    // mac is resolved
	slot   uint16  // the interface the route to the next hop names: its slot among the served ones
	method modes.Method
	encap  modes.Encap // Tunnel: encapsulation, with the director's outer source address
	addr   netip.Addr
	port   uint16
}

// workerService is one virtual service as a worker sees it: immutable
// except for the scheduler, which only this worker calls.
type workerService struct {
	id uint32
	ct *conntrack.Service // placement policy around this worker's scheduler
	// laddrs are the service's FULLNAT local addresses; lidx their
	// indexes in the worker's port pool and lnext the round-robin cursor
	// over them, both set and used by the worker alone.
	laddrs [][16]byte
	lidx   []int32
	lnext  uint32
	// dests are the service's real servers by address and port, shared
	// read-only by the workers: a copy per configuration, for installing
	// synced connections (sync.go).
	dests map[netip.AddrPort]*sched.Dest
}

// fwmKey is how a worker finds a firewall-mark service: -f 1 and
// -6 -f 1 are two services.
type fwmKey struct {
	mark uint32
	v6   bool
}

// workerConfig is the immutable snapshot of services a worker loads once
// per batch.
type workerConfig struct {
	services map[svcKey]*workerService
	// marks classifies frames into firewall marks as the XDP program
	// does (nil: no rules); fwmarks are the -f services by mark.
	marks   *packet.MarkTable
	fwmarks map[fwmKey]*workerService
	// laddrs is every service's FULLNAT local addresses, for the port
	// pool (laddr.Pool.SetAddrs), which the worker updates when it first
	// sees this configuration.
	laddrs []netip.Addr
	// local is the tap that frames to Local destinations are written to
	// (local.go), or nil while no configuration had one.
	local *localTap
	// own is who owns which flow with several workers, nil with one.
	own *ownership
}

// byAddr finds the service of a frame to addr:port as
// ip_vs_service_find does: the exact one, else the port-0 service (all
// ports, persistent) of the same address and protocol.
func (c *workerConfig) byAddr(addr [16]byte, port uint16, proto uint8) *workerService {
	if svc := c.services[svcKey{addr: addr, port: port, proto: proto}]; svc != nil {
		return svc
	}
	return c.services[svcKey{addr: addr, proto: proto}]
}

// controlState is the control plane's view, guarded by Dataplane.mu.
type controlState struct {
	services map[ipvs.ServiceKey]*svcState
	nextID   uint32
	// removed are destinations deleted from their service that may still
	// carry connections; they keep their ID and forwarding entry until
	// their counts drop to zero (IPVS's destination trash).
	removed []*sched.Dest
	// dying are deleted services that may still carry connections. IPVS
	// forwards a connection until it expires, whatever happens to its
	// service: a dying service stays in the XDP map, marked draining (new
	// TCP connections go to the kernel, which resets them, as without
	// IPVS), and out of the workers' tables, so nothing new is scheduled.
	// reapServices deletes it when its last connection is gone; adding it
	// again revives it, with its ID and its destinations.
	dying map[ipvs.ServiceKey]*svcState
	// reals are the real servers in the XDP reals map (syncReals).
	reals map[bpf.ServiceKey]bool
	cfg   ipvs.Config
	// base is each live destination's counters when it was added or last
	// zeroed (an ID's counters keep counting across its owners), est its
	// rate estimator.
	base map[*sched.Dest]destCounters
	est  map[*sched.Dest]*estimator
	// marks is the classifier the XDP program holds.
	marks *packet.MarkTable
	// gen counts changes of the destinations (Apply, freed IDs), so the
	// resolver lists them again only when they changed.
	gen uint64
}

type svcState struct {
	id       uint32
	spec     ipvs.Service
	dests    map[netip.AddrPort]*sched.Dest
	scheds   []sched.Scheduler    // one per worker
	policies []*conntrack.Service // one per worker, around scheds
	// trash are destinations removed from the service (also in
	// controlState.removed) that may still carry connections. Adding one
	// again takes it back, with its ID, as IPVS takes a destination back
	// from its trash: the connections on it are then the service's again.
	trash []*sched.Dest
	// replyPorts are a firewall-mark service's reply ports by protocol
	// (markReplyPorts), from its rules as of the last Apply that had it:
	// where its NAT destinations answer from (reals.go). A dying service
	// keeps them for its connections.
	replyPorts []replyPorts
}

func newControlState() *controlState {
	return &controlState{services: map[ipvs.ServiceKey]*svcState{}, dying: map[ipvs.ServiceKey]*svcState{}, nextID: 1,
		base: map[*sched.Dest]destCounters{}, est: map[*sched.Dest]*estimator{}}
}

// ErrNotSupported marks configuration xlb cannot do (yet).
var ErrNotSupported = errors.New("not supported")

// supported rejects what this dataplane cannot forward, before anything
// changes. Any number of queues serves every method: NAT and FULLNAT
// replies, and persistent clients, are handed to the worker that owns
// them (owner.go).
func supported(s *ipvs.Service, _ int) error {
	if !s.Key.IsFWMark() && s.Key.Proto != ipvs.TCP && s.Key.Proto != ipvs.UDP {
		return fmt.Errorf("service %s: %s services are %w", s.Key.String(), s.Key.Proto.String(), ErrNotSupported)
	}
	for _, d := range s.Dests {
		where := fmt.Sprintf("service %s destination %v", s.Key.String(), netip.AddrPortFrom(d.Addr, d.Port))
		switch d.Fwd {
		case ipvs.FwdRoute, ipvs.FwdLocal:
		case ipvs.FwdMasq, ipvs.FwdFullNAT:
			// With several queues, replies reach their connection's
			// worker by hand-off (owner.go); those of a firewall-mark
			// service's destination are steered from its rules' ports
			// and protocols (reals.go).
		case ipvs.FwdTunnel:
			if _, ok := modes.FromTun(d.TunType, d.TunFlags, d.TunPort); !ok {
				return fmt.Errorf("%s: %s is %w", where, tunName(d.TunType), ErrNotSupported)
			}
			if d.Addr.Is4() != s.Key.Addr.Is4() && d.TunType != ipvs.TunIPIP {
				return fmt.Errorf("%s: mixed-family tunnels only with ipip: %w", where, ErrNotSupported)
			}
		default:
			return fmt.Errorf("%s: %s is %w", where, methodName(d.Fwd), ErrNotSupported)
		}
	}
	return nil
}

// markTable is cfg's firewall-mark classifier, or nil without rules.
func markTable(cfg *ipvs.Config) (*packet.MarkTable, error) {
	if len(cfg.Marks) == 0 {
		return nil, nil
	}
	rules := make([]packet.MarkRule, len(cfg.Marks))
	for i, r := range cfg.Marks {
		rules[i] = packet.MarkRule{Mark: r.Mark, Proto: uint8(r.Proto), Prefix: r.Prefix, PortLo: r.PortLo, PortHi: r.PortHi}
	}
	return packet.NewMarkTable(rules)
}

// addXDPService, drainXDPService and deleteXDPService change the XDP
// program's entry of service k: its services map, or for a firewall-mark
// service its mark_services map.
func (d *Dataplane) addXDPService(k ipvs.ServiceKey, id uint32) error {
	if k.IsFWMark() {
		return d.objs.AddMarkService(k.FWMark, k.IPv6(), id)
	}
	return d.objs.AddService(bpfKey(k), id)
}

func (d *Dataplane) drainXDPService(k ipvs.ServiceKey, id uint32) error {
	if k.IsFWMark() {
		return d.objs.DrainMarkService(k.FWMark, k.IPv6(), id)
	}
	return d.objs.DrainService(bpfKey(k), id)
}

func (d *Dataplane) deleteXDPService(k ipvs.ServiceKey) error {
	if k.IsFWMark() {
		return d.objs.DeleteMarkService(k.FWMark, k.IPv6())
	}
	return d.objs.DeleteService(bpfKey(k))
}

// methodName names a forwarding method as ipvsadm's options do.
func methodName(f ipvs.Fwd) string {
	switch f {
	case ipvs.FwdRoute:
		return "direct routing (-g)"
	case ipvs.FwdMasq:
		return "masquerading (-m)"
	case ipvs.FwdTunnel:
		return "tunneling (-i)"
	case ipvs.FwdFullNAT:
		return "full NAT (--fullnat)"
	case ipvs.FwdLocal:
		return "local delivery"
	}
	return fmt.Sprintf("forwarding method %d", f)
}

// Apply makes cfg the running configuration: services and destinations
// are added, edited and removed to match, keeping connection entries and
// scheduler state of what did not change. It either applies all of cfg or
// returns an error and changes nothing.
//
// A service that cfg deleted and added again (cfg.Renewed: a restore
// file's -D or -C, then -A) is applied as an Apply without it and one
// with it would: new scheduler instances, its destinations counted from
// zero; their connections and persistence templates go on, as a deleted
// service's do, and a destination it no longer names goes to the trash.
//
// Destinations on the director's own addresses become Local in cfg
// itself, as IPVS marks them when they are added or edited (local.go),
// so that listings and saves show what runs; cfg is left as it was when
// Apply fails.
func (d *Dataplane) Apply(cfg *ipvs.Config) (err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("apply configuration: dataplane closed")
	}
	st := d.state
	undo := markLocal(&st.cfg, cfg, d.kernelLocal())
	defer func() {
		if err != nil {
			undo()
		}
	}()
	if err := d.openLocalTap(cfg); err != nil {
		return err
	}

	// 1. Everything that can fail without side effects.
	type plan struct {
		svc      *svcState
		spec     *ipvs.Service
		fresh    bool                 // new service
		revive   bool                 // a dying service added again
		renew    bool                 // a live service deleted and added again by this cfg (ipvs.Config.Renewed)
		scheds   []sched.Scheduler    // new scheduler instances, if any
		policies []*conntrack.Service // one per worker
	}
	if n, limit := len(cfg.Services), d.objs.MaxServices(); n > limit {
		return fmt.Errorf("apply configuration: too many services (limit %d): %d given", limit, n)
	}
	marks, err := markTable(cfg)
	if err != nil {
		return fmt.Errorf("apply configuration: %w", err)
	}
	plans := make([]plan, 0, len(cfg.Services))
	seen := map[ipvs.ServiceKey]bool{}
	for i := range cfg.Services {
		s := &cfg.Services[i]
		if seen[s.Key] {
			return fmt.Errorf("service %s defined twice", s.Key.String())
		}
		seen[s.Key] = true
		if err := supported(s, len(d.workers)); err != nil {
			return err
		}
		p := plan{spec: s, svc: st.services[s.Key]}
		if p.svc == nil {
			p.svc = st.dying[s.Key]
			p.revive = p.svc != nil
			p.fresh = p.svc == nil
		} else {
			p.renew = cfg.Renewed(s.Key)
		}
		// A revived or renewed service was deleted: -A binds a new
		// scheduler.
		if p.fresh || p.revive || p.renew || schedChanged(&p.svc.spec, s) {
			for range d.workers {
				sc, err := newScheduler(s)
				if err != nil {
					return fmt.Errorf("service %s: %w", s.Key.String(), err)
				}
				p.scheds = append(p.scheds, sc)
			}
		}
		scheds := p.scheds
		if scheds == nil {
			scheds = p.svc.scheds
		}
		for _, sc := range scheds {
			pol, err := servicePolicy(s, sc, nil)
			if err != nil {
				return fmt.Errorf("service %s: %w", s.Key.String(), err)
			}
			p.policies = append(p.policies, pol)
		}
		plans = append(plans, p)
	}
	// Destination IDs: every new destination needs one; destinations
	// removed now keep theirs while their connections last.
	fresh := 0
	for _, p := range plans {
		for _, ds := range p.spec.Dests {
			if p.svc == nil || p.svc.dests[netip.AddrPortFrom(ds.Addr, ds.Port)] == nil {
				fresh++
			}
		}
	}
	if used := st.inUse(); used+fresh > d.opts.MaxDests {
		return fmt.Errorf("too many destinations (limit %d): %d in use, %d to add", d.opts.MaxDests, used, fresh)
	}

	// 2. XDP service map: add new services and revive dying ones (their
	// entry stays, it only stops draining), undoing on failure.
	type added struct {
		k      ipvs.ServiceKey
		id     uint32
		revive bool
	}
	var done []added
	undoXDP := func(done []added) {
		for _, a := range done {
			if a.revive {
				d.drainXDPService(a.k, a.id)
			} else {
				d.deleteXDPService(a.k)
			}
		}
	}
	nextID := st.nextID
	for _, p := range plans {
		a := added{k: p.spec.Key, revive: p.revive}
		switch {
		case p.fresh:
			a.id = nextID
			nextID++
		case p.revive:
			a.id = p.svc.id
		default:
			continue
		}
		if err := d.addXDPService(a.k, a.id); err != nil {
			undoXDP(done)
			return fmt.Errorf("install service %s: %w", p.spec.Key.String(), err)
		}
		done = append(done, a)
	}
	// The classifier after the services it may name, so that no frame is
	// marked for a service the program does not know yet.
	if err := d.objs.SetMarks(marks); err != nil {
		if err2 := d.objs.SetMarks(st.marks); err2 != nil {
			d.opts.Logger.Error("restore mark rules in xdp map", "err", err2)
		}
		undoXDP(done)
		return fmt.Errorf("install mark rules: %w", err)
	}
	st.marks = marks

	// 3. Nothing fails from here on.
	fwd := slices.Clone(*d.fwd.Load())
	next := map[ipvs.ServiceKey]*svcState{}
	// The schedulers the workers run now learn their new destinations
	// last, after the forwarding entries and the policies that know
	// those destinations' methods are published: a worker that schedules
	// a new destination then finds its forwarding entry, and binds the
	// method set on the destination itself (sched.Dest.SetFwd), also in a
	// batch begun on the old configuration.
	type schedUpdate struct {
		scheds []sched.Scheduler
		steps  [][]*sched.Dest // kernelSteps: the states sequential commands pass through
	}
	var updates []schedUpdate
	// gone are the destinations removed now: unavailable (for
	// expire_nodest_conn and persistence templates) only once no
	// scheduler offers them any more.
	var gone []*sched.Dest
	for _, p := range plans {
		svc := p.svc
		if p.fresh {
			svc = &svcState{id: st.nextID, dests: map[netip.AddrPort]*sched.Dest{}}
			st.nextID++
		}
		if p.revive {
			delete(st.dying, p.spec.Key) // its destinations are in its trash
		}
		var prev []*sched.Dest // nil: -A bound the scheduler to an empty service
		if !p.fresh && !p.revive && !p.renew {
			prev = kernelOrder(svc)
		}
		svc.spec = *p.spec
		svc.spec.Dests = slices.Clone(p.spec.Dests)
		if svc.spec.Key.IsFWMark() {
			svc.replyPorts = markReplyPorts(svc.spec.Key, cfg.Marks)
		}
		if p.scheds != nil {
			svc.scheds = p.scheds
		}
		svc.policies = p.policies
		keep := map[netip.AddrPort]bool{}
		order := make([]*sched.Dest, 0, len(p.spec.Dests))
		for _, ds := range p.spec.Dests {
			ap := netip.AddrPortFrom(ds.Addr, ds.Port)
			keep[ap] = true
			dst := svc.dests[ap]
			if dst != nil && p.renew {
				// As an Apply without the service and one with it
				// would: the destination went to the trash with its
				// connections and is taken back, counting from zero.
				st.base[dst] = d.destTotals(dst.ID)
				st.est[dst] = &estimator{}
			}
			if dst == nil {
				dst = st.untrash(svc, ap)
				if dst != nil {
					svc.dests[ap] = dst
					st.base[dst] = d.destTotals(dst.ID)
					st.est[dst] = &estimator{}
				}
			}
			if dst == nil {
				dst = sched.NewDest(ds.Addr, ds.Port, ds.Weight)
				if err := d.reg.Add(dst); err != nil {
					// Phase 1 counted the free IDs: this is a bug.
					d.opts.Logger.Error("destination not added despite the capacity check", "dest", ap, "err", err)
					continue
				}
				svc.dests[ap] = dst
				st.base[dst] = d.destTotals(dst.ID)
				st.est[dst] = &estimator{}
			}
			dst.SetWeight(ds.Weight)
			dst.SetThresholds(ds.UThreshold, ds.LThreshold)
			dst.SetAvailable(true)
			f := &fwd[dst.ID]
			f.method, _ = modes.FromFwd(ds.Fwd)
			f.addr, f.port = ds.Addr, ds.Port
			f.encap = modes.Encap{}
			if ds.Fwd == ipvs.FwdTunnel {
				f.encap, _ = modes.FromTun(ds.TunType, ds.TunFlags, ds.TunPort)
				f.encap.Src = d.localAddr(ds.Addr.Is4())
			}
			order = append(order, dst)
		}
		for ap, dst := range svc.dests {
			if !keep[ap] {
				delete(st.base, dst)
				delete(st.est, dst)
				gone = append(gone, dst)
				st.removed = append(st.removed, dst)
				svc.trash = append(svc.trash, dst)
				delete(svc.dests, ap)
			}
		}
		slices.Reverse(order) // IPVS lists destinations newest first
		steps := kernelSteps(prev, order)
		if p.scheds != nil {
			// New instances: no worker sees them before the new
			// configuration, which must find them ready.
			for _, sc := range svc.scheds {
				sched.UpdateSteps(sc, steps)
			}
		} else {
			updates = append(updates, schedUpdate{svc.scheds, steps})
		}
		next[svc.spec.Key] = svc
	}
	for k, svc := range st.services {
		if next[k] != nil {
			continue
		}
		// Its connections keep flowing until reapServices sees them
		// gone (right after this Apply, then every second).
		if err := d.drainXDPService(k, svc.id); err != nil {
			d.opts.Logger.Warn("drain service in xdp map", "service", k.String(), "err", err)
		}
		for _, dst := range svc.dests {
			delete(st.base, dst)
			delete(st.est, dst)
			gone = append(gone, dst)
			st.removed = append(st.removed, dst)
			svc.trash = append(svc.trash, dst)
		}
		clear(svc.dests)
		st.dying[k] = svc // logged by the caller (package director), with the reason
	}
	st.services = next
	st.cfg = *cfg.Settled() // what runs; Renewed was for this Apply
	if st.cfg.Timeouts == (ipvs.Timeouts{}) {
		st.cfg.Timeouts = ipvs.DefaultTimeouts
	}
	to := st.cfg.Timeouts
	if err := d.ctSettings.SetTimeouts(time.Duration(to.TCP)*time.Second, time.Duration(to.TCPFin)*time.Second,
		time.Duration(to.UDP)*time.Second); err != nil {
		d.opts.Logger.Error("set timeouts", "err", err)
	}
	// Bind each destination's method into its connections: conntrack
	// copies it into the entry when it creates one (ip_vs_bind_xmit), so
	// a later -e that changes the method leaves existing connections as
	// they were.
	for _, svc := range st.services {
		methods := destMethods(svc, fwd)
		for i, sc := range svc.scheds {
			pol, err := servicePolicy(&svc.spec, sc, methods)
			if err != nil { // validated in step 1; the methods are ours
				d.opts.Logger.Error("bind forwarding methods", "service", svc.spec.Key.Addr, "err", err)
				continue
			}
			svc.policies[i] = pol
		}
	}
	d.fwd.Store(&fwd)
	// The destinations' methods, for the connections bound from now on:
	// after their forwarding entries, before the schedulers below offer
	// a new destination. A worker still in a batch begun on the old
	// configuration then binds a destination's own method, never a
	// default (ip_vs_dest's conn_flags).
	for _, svc := range st.services {
		for _, dst := range svc.dests {
			dst.SetFwd(uint8(fwd[dst.ID].method))
		}
	}
	st.gen++
	var laddrs []netip.Addr
	seenL := map[netip.Addr]bool{}
	for _, svc := range st.services {
		for _, la := range svc.spec.LocalAddrs {
			if !seenL[la.Addr] {
				seenL[la.Addr] = true
				laddrs = append(laddrs, la.Addr)
			}
		}
	}
	own := ownershipOf(st, len(d.workers))
	dests := make(map[*svcState]map[netip.AddrPort]*sched.Dest, len(st.services))
	for _, svc := range st.services {
		dests[svc] = maps.Clone(svc.dests)
	}
	for i, w := range d.workers {
		wc := &workerConfig{services: map[svcKey]*workerService{}, laddrs: laddrs, local: d.tap, own: own,
			marks: marks, fwmarks: map[fwmKey]*workerService{}}
		for _, svc := range st.services {
			ws := &workerService{id: svc.id, ct: svc.policies[i], dests: dests[svc]}
			for _, la := range svc.spec.LocalAddrs {
				ws.laddrs = append(ws.laddrs, la.Addr.As16())
			}
			if k := svc.spec.Key; k.IsFWMark() {
				wc.fwmarks[fwmKey{k.FWMark, k.IPv6()}] = ws
			} else {
				wc.services[makeSvcKey(k)] = ws
			}
		}
		w.cfg.Store(wc)
	}
	for _, u := range updates {
		for _, sc := range u.scheds {
			sched.UpdateSteps(sc, u.steps)
		}
	}
	for _, dst := range gone {
		dst.SetAvailable(false)
	}
	d.syncReals()
	d.syncLocals(laddrs)
	select {
	case d.applied <- struct{}{}:
	default:
	}
	return nil
}

// untrash takes the destination ap of svc back from its trash, or
// returns nil. A trashed destination whose ID was already released is
// gone for good.
func (st *controlState) untrash(svc *svcState, ap netip.AddrPort) *sched.Dest {
	for i, dst := range svc.trash {
		if dst.Addr != ap.Addr() || dst.Port != ap.Port() {
			continue
		}
		svc.trash = slices.Delete(svc.trash, i, i+1)
		if j := slices.Index(st.removed, dst); j >= 0 {
			st.removed = slices.Delete(st.removed, j, j+1)
			return dst
		}
		return nil
	}
	return nil
}

// reapServices forgets trashed destinations whose ID the resolver
// released, and deletes from the XDP map the dying services that carry no
// connection any more: their frames go to the kernel from then on.
func (d *Dataplane) reapServices() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	st := d.state
	inTrash := make(map[*sched.Dest]bool, len(st.removed))
	for _, dst := range st.removed {
		inTrash[dst] = true
	}
	prune := func(svc *svcState) (conns int32) {
		svc.trash = slices.DeleteFunc(svc.trash, func(dst *sched.Dest) bool { return !inTrash[dst] })
		for _, dst := range svc.trash {
			conns += dst.ActiveConns() + dst.InactConns() + dst.PersistConns()
		}
		return conns
	}
	for _, svc := range st.services {
		prune(svc)
	}
	for k, svc := range st.dying {
		if prune(svc) > 0 {
			continue
		}
		if err := d.deleteXDPService(k); err != nil {
			d.opts.Logger.Warn("remove service from xdp map", "service", k.String(), "err", err)
		}
		delete(st.dying, k)
		d.opts.Logger.Info("deleted service drained", "service", k.String())
	}
	d.syncReals()
}

// destMethods is the forwarding method of each of svc's destinations,
// indexed by destination ID, as conntrack.ServiceOptions.Fwd wants it.
func destMethods(svc *svcState, fwd []destFwd) []uint8 {
	var top uint32
	for _, dst := range svc.dests {
		top = max(top, dst.ID)
	}
	m := make([]uint8, top+1)
	for i := range m {
		m[i] = conntrack.FwdRoute
	}
	for _, dst := range svc.dests {
		m[dst.ID] = uint8(fwd[dst.ID].method)
	}
	return m
}

// syncReals makes the XDP reals map hold exactly the keys of the real
// servers whose replies come back through the director (NAT and FULLNAT
// destinations; reals.go), of live services and of the trash (their
// connections still have replies). It is called with d.mu held, after
// Apply and when the trash is emptied; a failure is logged and retried
// the next time.
func (d *Dataplane) syncReals() {
	st := d.state
	plan := newRealPlan()
	fwd := *d.fwd.Load()
	for _, svc := range st.services {
		for _, dst := range svc.dests {
			plan.add(svc.spec.Key, svc.replyPorts, dst.Addr, dst.Port, fwd[dst.ID].method)
		}
	}
	for _, svcs := range []map[ipvs.ServiceKey]*svcState{st.services, st.dying} {
		for _, svc := range svcs {
			for _, dst := range svc.trash {
				plan.add(svc.spec.Key, svc.replyPorts, dst.Addr, dst.Port, fwd[dst.ID].method)
			}
		}
	}
	want := plan.keys(d.objs.MaxRealKeys())
	if st.reals == nil {
		st.reals = map[bpf.ServiceKey]bool{}
	}
	// New keys first, so that no reply meets neither the old key nor the
	// new one; those that did not fit (a firewall mark's ports giving
	// way to wildcards) once more after the deletions.
	var full []bpf.ServiceKey
	for k := range want {
		if st.reals[k] {
			continue
		}
		if err := d.objs.AddReal(k); err != nil {
			full = append(full, k)
			continue
		}
		st.reals[k] = true
	}
	for k := range st.reals {
		if want[k] {
			continue
		}
		if err := d.objs.DeleteReal(k); err != nil {
			d.opts.Logger.Warn("stop steering replies of real server", "real", k.String(), "err", err)
		}
		delete(st.reals, k)
	}
	for _, k := range full {
		if err := d.objs.AddReal(k); err != nil {
			d.opts.Logger.Error("steer replies of real server", "real", k.String(), "err", err)
			continue
		}
		st.reals[k] = true
	}
}

// syncLocals tells the XDP program the director's own addresses (every
// interface's, so that a real server's answer to the director's own
// connection reaches its stack) and, among them or besides, the FULLNAT
// local addresses, whose replies it steers. Called with d.mu held; errors
// are logged, and the next Apply tries again.
func (d *Dataplane) syncLocals(laddrs []netip.Addr) {
	want := map[netip.Addr]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					want[ip.Unmap()] = false
				}
			}
		}
	} else {
		d.opts.Logger.Warn("list the director's addresses", "err", err)
	}
	for _, a := range laddrs {
		want[a.Unmap()] = true
	}
	have, err := d.objs.Locals()
	if err != nil {
		d.opts.Logger.Warn("read local addresses", "err", err)
		have = map[netip.Addr]bool{}
	}
	for a, l := range want {
		if f, ok := have[a]; ok && f == l {
			continue
		}
		if err := d.objs.SetLocal(a, l); err != nil {
			d.opts.Logger.Warn("set local address", "addr", a, "err", err)
		}
	}
	for a := range have {
		if _, ok := want[a]; !ok {
			if err := d.objs.DeleteLocal(a); err != nil {
				d.opts.Logger.Warn("delete local address", "addr", a, "err", err)
			}
		}
	}
}

// localAddr is the director's address of the given family on its
// interface: a tunnel's outer source. IPVS takes the route's preferred
// source; on the one interface xlb serves that is its primary address.
func (d *Dataplane) localAddr(v4 bool) [16]byte {
	ifc, err := net.InterfaceByIndex(d.ifindex)
	if err != nil {
		return [16]byte{}
	}
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.Is4() == v4 && !ip.IsLinkLocalUnicast() {
			return ip.As16()
		}
	}
	return [16]byte{}
}

// newScheduler makes one worker's instance of s's scheduler.
func newScheduler(s *ipvs.Service) (sched.Scheduler, error) {
	name := s.Sched
	if name == "" {
		name = sched.DefaultScheduler
	}
	o := sched.DefaultOptions()
	if len(s.SchedFlags) > 0 {
		f, err := sched.ParseFlags(name, strings.Join(s.SchedFlags, ","))
		if err != nil {
			return nil, err
		}
		o.Flags = f
	}
	return sched.New(name, o)
}

// servicePolicy is the conntrack view of s around one scheduler
// instance: persistence, netmask, one-packet scheduling.
func servicePolicy(s *ipvs.Service, sc sched.Scheduler, methods []uint8) (*conntrack.Service, error) {
	o := conntrack.DefaultServiceOptions()
	o.Scheduler = sc
	o.Proto = uint8(s.Key.Proto)
	o.Port = s.Key.Port
	o.FWMark = s.Key.FWMark
	o.IPv6 = s.Key.Addr.Is6()
	o.Persistent = s.Persistent
	if s.Timeout != 0 {
		o.Timeout = time.Duration(s.Timeout) * time.Second
	}
	o.Netmask = s.Netmask
	if o.Netmask == 0 && !s.Persistent {
		o.Netmask = s.Key.Addr.BitLen()
	}
	o.OnePacket = s.OnePacket
	o.DefaultFwd = conntrack.FwdRoute
	o.Fwd = methods
	return conntrack.NewService(o)
}

func bpfKey(k ipvs.ServiceKey) bpf.ServiceKey {
	return bpf.ServiceKey{Addr: k.Addr, Port: k.Port, Proto: uint8(k.Proto)}
}

// WaitResolved resolves the next-hop MAC of every destination, waiting
// up to timeout for the kernel to answer, and reports how many
// destination addresses are still unresolved. The daemon calls it once
// before it serves, so the first connections do not meet an unresolved
// real server (their frames would be held until it resolves).
func (d *Dataplane) WaitResolved(timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		missing := d.resolveRound()
		if missing == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// resolveRound runs one resolver round: a snapshot of the destinations
// under the lock, the kernel queries off it, then the changed forwarding
// entries are published. It returns the unresolved destination addresses.
func (d *Dataplane) resolveRound() int {
	d.resMu.Lock()
	defer d.resMu.Unlock()
	if d.res == nil {
		return 0
	}
	dests, gen, ok := d.destSnapshot(d.res.gen)
	if !ok {
		return 0
	}
	changes := d.res.round(dests, gen, *d.fwd.Load())
	d.publishFwd(changes)
	d.resStats.Store(ptr(d.res.snapshot()))
	return d.res.stats.Unresolved
}

func ptr[T any](v T) *T { return &v }

// destSnapshot frees the IDs of removed destinations whose last
// connection is gone and, unless the destinations are still those of
// generation last, lists every destination that needs a next hop: live,
// or removed but still carrying connections. It holds the lock for a pass
// over the destinations only when they changed (a few ms for 50,000) and
// asks the kernel nothing. ok is false once the dataplane is closed.
func (d *Dataplane) destSnapshot(last uint64) (dests []destRef, gen uint64, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, 0, false
	}
	defer func() {
		gen = d.state.gen
		if gen == last {
			return
		}
		dests = make([]destRef, 0, d.state.inUse())
		fwd := *d.fwd.Load()
		for _, svc := range d.state.services {
			for _, dst := range svc.dests {
				if fwd[dst.ID].method != modes.Local { // the director itself: no next hop
					dests = append(dests, destRef{dst.ID, dst.Addr})
				}
			}
		}
		for _, dst := range d.state.removed {
			if !dst.Available() && fwd[dst.ID].method != modes.Local {
				dests = append(dests, destRef{dst.ID, dst.Addr})
			}
		}
	}()
	var fwd []destFwd
	kept := d.state.removed[:0]
	for _, dst := range d.state.removed {
		if dst.ActiveConns()+dst.InactConns()+dst.PersistConns() > 0 || dst.Available() {
			kept = append(kept, dst)
			continue
		}
		if fwd == nil {
			fwd = slices.Clone(*d.fwd.Load())
		}
		fwd[dst.ID] = destFwd{}
		d.reg.Release(dst)
	}
	clear(d.state.removed[len(kept):])
	d.state.removed = kept
	if fwd != nil {
		d.fwd.Store(&fwd)
		d.state.gen++
	}
	return nil, 0, true
}

// publishFwd makes the resolver's changes visible to the workers: one new
// forwarding table, under the lock so that it does not race with Apply.
// A change for an ID that no longer belongs to its address (freed or
// reused since the snapshot) is dropped; the next round sees the new
// owner.
func (d *Dataplane) publishFwd(changes []fwdChange) {
	if len(changes) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	fwd := slices.Clone(*d.fwd.Load())
	for _, c := range changes {
		if f := &fwd[c.id]; f.addr == c.addr {
			f.mac, f.macOK, f.slot = c.mac, c.ok, c.slot
		}
	}
	d.fwd.Store(&fwd)
}

// inUse counts the destination IDs held: live destinations and removed
// ones that still carry connections.
func (st *controlState) inUse() int {
	n := len(st.removed)
	for _, svc := range st.services {
		n += len(svc.dests)
	}
	return n
}

// SetSysctls sets the IPVS sysctls the connection tables implement;
// every worker takes them at its next batch edge.
func (d *Dataplane) SetSysctls(s ipvs.Sysctls) {
	d.ctSettings.SetExpireNodestConn(s.ExpireNodestConn)
	d.ctSettings.SetExpireQuiescentTemplate(s.ExpireQuiescentTemplate)
	d.ctSettings.SetSloppyTCP(s.SloppyTCP)
}
