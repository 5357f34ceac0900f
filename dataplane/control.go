//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/ipvs"
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
// sched.Dest.ID in the shared forwarding table.
type destFwd struct {
	mac   [6]byte // next hop's MAC
	macOK bool    // mac is resolved
	fwd   ipvs.Fwd
	addr  netip.Addr
	port  uint16
}

// workerService is one virtual service as a worker sees it: immutable
// except for the scheduler, which only this worker calls.
type workerService struct {
	id uint32
	ct *conntrack.Service // placement policy around this worker's scheduler
}

// workerConfig is the immutable snapshot of services a worker loads once
// per batch.
type workerConfig struct {
	services map[svcKey]*workerService
}

// controlState is the control plane's view, guarded by Dataplane.mu.
type controlState struct {
	services map[ipvs.ServiceKey]*svcState
	nextID   uint32
	// removed are destinations deleted from their service that may still
	// carry connections; they keep their ID and forwarding entry until
	// their counts drop to zero (IPVS's destination trash).
	removed []*sched.Dest
	cfg     ipvs.Config
	// base is each live destination's counters when it was added or last
	// zeroed (an ID's counters keep counting across its owners), est its
	// rate estimator.
	base map[*sched.Dest]destCounters
	est  map[*sched.Dest]*estimator
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
}

func newControlState() *controlState {
	return &controlState{services: map[ipvs.ServiceKey]*svcState{}, nextID: 1,
		base: map[*sched.Dest]destCounters{}, est: map[*sched.Dest]*estimator{}}
}

// ErrNotSupported marks configuration xlb cannot do (yet).
var ErrNotSupported = errors.New("not supported")

// supported rejects what this dataplane cannot forward, before anything
// changes.
func supported(s *ipvs.Service) error {
	if s.Key.FWMark != 0 {
		return fmt.Errorf("service fwmark %d: firewall-mark services: %w (XDP runs before netfilter marks packets)", s.Key.FWMark, ErrNotSupported)
	}
	if s.Key.Proto != ipvs.TCP && s.Key.Proto != ipvs.UDP {
		return fmt.Errorf("service %v: protocol %d: %w", s.Key.Addr, s.Key.Proto, ErrNotSupported)
	}
	for _, d := range s.Dests {
		if d.Fwd != ipvs.FwdRoute {
			return fmt.Errorf("service %v:%d destination %v: forwarding method %d: %w (only direct routing, -g, so far)",
				s.Key.Addr, s.Key.Port, d.Addr, d.Fwd, ErrNotSupported)
		}
	}
	return nil
}

// Apply makes cfg the running configuration: services and destinations
// are added, edited and removed to match, keeping connection entries and
// scheduler state of what did not change. It either applies all of cfg or
// returns an error and changes nothing.
func (d *Dataplane) Apply(cfg *ipvs.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("apply configuration: dataplane closed")
	}
	st := d.state

	// 1. Everything that can fail without side effects.
	type plan struct {
		svc      *svcState
		spec     *ipvs.Service
		fresh    bool                 // new service
		scheds   []sched.Scheduler    // new scheduler instances, if any
		policies []*conntrack.Service // one per worker
	}
	plans := make([]plan, 0, len(cfg.Services))
	seen := map[ipvs.ServiceKey]bool{}
	for i := range cfg.Services {
		s := &cfg.Services[i]
		if seen[s.Key] {
			return fmt.Errorf("service %v:%d defined twice", s.Key.Addr, s.Key.Port)
		}
		seen[s.Key] = true
		if err := supported(s); err != nil {
			return err
		}
		p := plan{spec: s, svc: st.services[s.Key]}
		if p.svc == nil {
			p.fresh = true
		}
		if p.fresh || p.svc.spec.Sched != s.Sched || !slices.Equal(p.svc.spec.SchedFlags, s.SchedFlags) {
			for range d.workers {
				sc, err := newScheduler(s)
				if err != nil {
					return fmt.Errorf("service %v:%d: %w", s.Key.Addr, s.Key.Port, err)
				}
				p.scheds = append(p.scheds, sc)
			}
		}
		scheds := p.scheds
		if scheds == nil {
			scheds = p.svc.scheds
		}
		for _, sc := range scheds {
			pol, err := servicePolicy(s, sc)
			if err != nil {
				return fmt.Errorf("service %v:%d: %w", s.Key.Addr, s.Key.Port, err)
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

	// 2. XDP service map: add new services, undoing on failure.
	var added []bpf.ServiceKey
	for _, p := range plans {
		if !p.fresh {
			continue
		}
		k := bpfKey(p.spec.Key)
		if err := d.objs.AddService(k, st.nextID+uint32(len(added))); err != nil {
			for _, a := range added {
				d.objs.DeleteService(a)
			}
			return fmt.Errorf("install service %v:%d: %w", p.spec.Key.Addr, p.spec.Key.Port, err)
		}
		added = append(added, k)
	}

	// 3. Nothing fails from here on.
	fwd := slices.Clone(*d.fwd.Load())
	next := map[ipvs.ServiceKey]*svcState{}
	for _, p := range plans {
		svc := p.svc
		if p.fresh {
			svc = &svcState{id: st.nextID, dests: map[netip.AddrPort]*sched.Dest{}}
			st.nextID++
		}
		svc.spec = *p.spec
		svc.spec.Dests = slices.Clone(p.spec.Dests)
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
			f.fwd, f.addr, f.port = ds.Fwd, ds.Addr, ds.Port
			order = append(order, dst)
		}
		for ap, dst := range svc.dests {
			if !keep[ap] {
				delete(st.base, dst)
				delete(st.est, dst)
				dst.SetAvailable(false)
				st.removed = append(st.removed, dst)
				delete(svc.dests, ap)
			}
		}
		slices.Reverse(order) // IPVS lists destinations newest first
		for _, sc := range svc.scheds {
			sc.Update(order)
		}
		next[svc.spec.Key] = svc
	}
	for k, svc := range st.services {
		if next[k] != nil {
			continue
		}
		if err := d.objs.DeleteService(bpfKey(k)); err != nil {
			d.opts.Logger.Warn("remove service from xdp map", "service", k.Addr, "err", err)
		}
		for _, dst := range svc.dests {
			delete(st.base, dst)
			delete(st.est, dst)
			dst.SetAvailable(false)
			st.removed = append(st.removed, dst)
		}
	}
	st.services = next
	st.cfg = *cfg
	if st.cfg.Timeouts == (ipvs.Timeouts{}) {
		st.cfg.Timeouts = ipvs.DefaultTimeouts
	}
	to := st.cfg.Timeouts
	if err := d.ctSettings.SetTimeouts(time.Duration(to.TCP)*time.Second, time.Duration(to.TCPFin)*time.Second,
		time.Duration(to.UDP)*time.Second); err != nil {
		d.opts.Logger.Error("set timeouts", "err", err)
	}
	d.fwd.Store(&fwd)
	st.gen++
	for i, w := range d.workers {
		wc := &workerConfig{services: map[svcKey]*workerService{}}
		for _, svc := range st.services {
			wc.services[makeSvcKey(svc.spec.Key)] = &workerService{id: svc.id, ct: svc.policies[i]}
		}
		w.cfg.Store(wc)
	}
	select {
	case d.applied <- struct{}{}:
	default:
	}
	return nil
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
func servicePolicy(s *ipvs.Service, sc sched.Scheduler) (*conntrack.Service, error) {
	o := conntrack.DefaultServiceOptions()
	o.Scheduler = sc
	o.Proto = uint8(s.Key.Proto)
	o.Port = s.Key.Port
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
		for _, svc := range d.state.services {
			for _, dst := range svc.dests {
				dests = append(dests, destRef{dst.ID, dst.Addr})
			}
		}
		for _, dst := range d.state.removed {
			if !dst.Available() {
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
			f.mac, f.macOK = c.mac, c.ok
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
