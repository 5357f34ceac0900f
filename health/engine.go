package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// Transition is the state the engine wants one destination of a virtual
// service in. The engine sends one whenever that state changes, and one
// for every destination when it starts.
type Transition struct {
	Service ipvs.ServiceKey
	Dest    netip.AddrPort
	// Present false takes the destination out of the service; true
	// keeps it (adds it, for a sorry server) with Weight. Weight 0 is
	// inhibit_on_failure: established connections drain, new ones go
	// elsewhere.
	Present bool
	Weight  int32
	// Sorry marks the service's sorry server, which is not among the
	// operator's destinations: the sink adds it with forwarding method
	// Fwd while Present. Real servers keep their configured method and
	// Fwd is zero.
	Sorry bool
	Fwd   ipvs.Fwd
	// Healthy is the checkers' verdict on a real server (always true
	// for a sorry server). A healthy server can still be out of the
	// service while quorum is lost and the sorry server serves.
	Healthy bool
	// Release says the engine no longer manages the destination (it
	// left the configuration): drop any overlay for it, and remove a
	// sorry server.
	Release bool
	Reason  string
	At      time.Time
}

// Sink applies the engine's transitions, e.g. as an overlay on the
// operator's configuration. Batches come from one goroutine, in order;
// the sink applies each atomically. When it returns an error the engine
// sends the batch's destinations again (merged with newer transitions)
// after Options.RetryDelay.
type Sink interface {
	ApplyHealth(ctx context.Context, batch []Transition) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, batch []Transition) error

// ApplyHealth calls f.
func (f SinkFunc) ApplyHealth(ctx context.Context, batch []Transition) error { return f(ctx, batch) }

// Options tune an Engine; see DefaultOptions.
type Options struct {
	Logger *slog.Logger // every transition is logged here; nil is slog.Default()
	// BatchDelay is how long transitions are gathered before a batch
	// goes to the sink, so that servers failing together (a switch
	// going down) cost one change.
	BatchDelay time.Duration
	// RetryDelay is the wait before a batch the sink refused is sent
	// again.
	RetryDelay time.Duration
	// ScriptTimeout bounds notify and quorum scripts (keepalived has
	// none; a hung script would otherwise pile up processes).
	ScriptTimeout time.Duration
}

// DefaultOptions are 20 ms batches, 1 s retries and 60 s scripts.
func DefaultOptions() Options {
	return Options{BatchDelay: 20 * time.Millisecond, RetryDelay: time.Second, ScriptTimeout: time.Minute}
}

// Engine runs the checkers of a Config and sends the resulting
// transitions to a Sink. Its methods are safe for concurrent use.
type Engine struct {
	sink Sink
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	services []*vsState
	pending  map[destKey]Transition
	sinkErr  string
	sinkAt   time.Time
	runCtx   context.Context // nil until Run
	kick     chan struct{}
	wg       sync.WaitGroup // checkers and scripts
	started  bool

	// observe, when set (tests), is called with each check's start.
	observe func(rs netip.AddrPort, start time.Time)
}

type destKey struct {
	svc  ipvs.ServiceKey
	dest netip.AddrPort
}

type vsState struct {
	spec     VirtualService // Reals not used: see reals
	reals    []*rsState
	quorumUp bool
	sent     map[destKey]Transition // last state sent per service and destination
}

type rsState struct {
	spec      RealServer
	checks    []*checkState
	healthy   bool
	dynWeight int32 // weight set by misc_dynamic, noWeight if none
	since     time.Time
	flips     uint64 // changes of healthy
}

type checkState struct {
	spec    Check // DelayLoop resolved
	rs      *rsState
	vs      *vsState
	up      bool
	fails   int // consecutive
	oks     int // consecutive
	lastErr string
	last    time.Time
	lastDur time.Duration
	changed time.Time
	runs    uint64
	stopped bool
	cancel  context.CancelFunc
}

// New returns an engine for cfg that sends to sink; Run starts it.
func New(cfg Config, sink Sink, opts Options) (*Engine, error) {
	if sink == nil {
		return nil, fmt.Errorf("new health engine: %w: no sink", ErrInvalid)
	}
	def := DefaultOptions()
	if opts.BatchDelay <= 0 {
		opts.BatchDelay = def.BatchDelay
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = def.RetryDelay
	}
	if opts.ScriptTimeout <= 0 {
		opts.ScriptTimeout = def.ScriptTimeout
	}
	e := &Engine{sink: sink, opts: opts, log: opts.Logger, pending: map[destKey]Transition{}, kick: make(chan struct{}, 1)}
	if e.log == nil {
		e.log = slog.Default()
	}
	if err := e.Update(cfg); err != nil {
		return nil, err
	}
	return e, nil
}

// Run starts every checker, sends the initial state of every destination
// and runs until ctx is done; then it stops the checkers, waits for them
// and returns ctx's error. A batch still pending at that point is not
// sent.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return errors.New("run health engine: already started")
	}
	e.started = true
	e.runCtx = ctx
	now := time.Now()
	for _, vs := range e.services {
		for _, rs := range vs.reals {
			for _, cs := range rs.checks {
				e.startCheck(cs)
			}
		}
		e.evaluate(vs, now, "initial state")
	}
	e.mu.Unlock()
	e.flush(ctx)
	e.mu.Lock()
	for _, vs := range e.services {
		for _, rs := range vs.reals {
			for _, cs := range rs.checks {
				cs.stop()
			}
		}
	}
	e.mu.Unlock()
	e.wg.Wait()
	return ctx.Err()
}

// Update replaces the configuration, before or while running. Real
// servers whose checkers are unchanged keep their state (a failed server
// stays failed, its counters and times stay); changed or new ones start
// afresh; removed ones are released. On a validation error nothing
// changes.
func (e *Engine) Update(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("update health checks: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	old := map[ipvs.ServiceKey]*vsState{}
	for _, vs := range e.services {
		old[vs.spec.Key] = vs
	}
	var next []*vsState
	for i := range cfg.Services {
		spec := cfg.Services[i]
		vs := old[spec.Key]
		delete(old, spec.Key)
		if vs == nil {
			vs = &vsState{quorumUp: true, sent: map[destKey]Transition{}}
		}
		oldRS := map[netip.AddrPort]*rsState{}
		for _, rs := range vs.reals {
			oldRS[rs.spec.Addr] = rs
		}
		vs.spec = spec
		vs.spec.Reals = nil
		vs.reals = nil
		for _, rspec := range spec.Reals {
			checks := resolveChecks(rspec.Checks, spec.DelayLoop)
			rs := oldRS[rspec.Addr]
			delete(oldRS, rspec.Addr)
			if rs != nil && !reflect.DeepEqual(specsOf(rs.checks), checks) {
				for _, cs := range rs.checks {
					cs.stop()
				}
				rs = nil
			}
			if rs == nil {
				rs = &rsState{dynWeight: noWeight, since: now, healthy: true}
				for _, c := range checks {
					cs := &checkState{spec: c, rs: rs, vs: vs, up: !spec.Alpha}
					rs.checks = append(rs.checks, cs)
					rs.healthy = rs.healthy && cs.up
					if e.runCtx != nil {
						e.startCheck(cs)
					}
				}
			}
			for _, cs := range rs.checks {
				cs.vs = vs
			}
			rs.spec = rspec
			rs.spec.Checks = nil
			vs.reals = append(vs.reals, rs)
		}
		for _, rs := range oldRS {
			for _, cs := range rs.checks {
				cs.stop()
			}
		}
		next = append(next, vs)
	}
	for _, vs := range old {
		for _, rs := range vs.reals {
			for _, cs := range rs.checks {
				cs.stop()
			}
		}
		vs.reals = nil
		vs.spec.Sorry = netip.AddrPort{}
		vs.spec.Also = nil
	}
	e.services = next
	if e.runCtx != nil {
		for _, vs := range old {
			e.evaluate(vs, now, "removed from the configuration")
		}
		for _, vs := range next {
			e.evaluate(vs, now, "configuration reloaded")
		}
	}
	return nil
}

func resolveChecks(cs []Check, delayLoop time.Duration) []Check {
	if delayLoop == 0 {
		delayLoop = DefaultDelayLoop
	}
	out := slices.Clone(cs)
	for i := range out {
		if out[i].DelayLoop == 0 {
			out[i].DelayLoop = delayLoop
		}
	}
	return out
}

func specsOf(cs []*checkState) []Check {
	var out []Check
	for _, c := range cs {
		out = append(out, c.spec)
	}
	return out
}

// stop ends cs's goroutine; called with e.mu held. A probe in flight
// finishes but its result is dropped.
func (cs *checkState) stop() {
	cs.stopped = true
	if cs.cancel != nil {
		cs.cancel()
	}
}

// startCheck starts cs's goroutine; called with e.mu held.
func (e *Engine) startCheck(cs *checkState) {
	ctx, cancel := context.WithCancel(e.runCtx)
	cs.cancel = cancel
	addr := cs.rs.spec.Addr
	spec := cs.spec
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.runCheck(ctx, cs, addr, &spec)
	}()
}

// runCheck is one checker's loop. Each check has its own timer, so a
// thousand of them run side by side and a slow or hung server delays only
// its own. The first check waits a random time of up to warmup (the
// delay_loop by default), which spreads checks that were configured
// together. Later checks are planned from the previous one's planned
// start, not its end, so the period does not drift by the probe's
// duration; a probe longer than the period makes the next start at once.
func (e *Engine) runCheck(ctx context.Context, cs *checkState, addr netip.AddrPort, spec *Check) {
	warm := spec.Warmup
	if warm == WarmupDelayLoop {
		warm = spec.DelayLoop
	}
	var first time.Duration
	if warm > 0 {
		first = rand.N(warm)
	}
	next := time.Now().Add(first)
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		if e.observe != nil {
			e.observe(addr, start)
		}
		w, err := spec.probe(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		interval := spec.DelayLoop
		if e.record(cs, start, time.Since(start), w, err) {
			interval = spec.DelayBeforeRetry
		}
		next = next.Add(interval)
		now := time.Now()
		if next.Before(now) {
			next = now
		}
		t.Reset(next.Sub(now))
	}
}

// record takes one probe's result and reports whether the checker is
// between states (retrying a failure of a healthy server, or counting
// successes towards rise), when the next probe comes after
// delay_before_retry rather than delay_loop.
func (e *Engine) record(cs *checkState, start time.Time, dur time.Duration, w int32, err error) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if cs.stopped {
		return false
	}
	cs.runs++
	cs.last, cs.lastDur = start, dur
	now := start.Add(dur)
	rs := cs.rs
	reason := ""
	weightChanged := false
	if err == nil {
		cs.lastErr = ""
		cs.fails = 0
		cs.oks++
		if w != noWeight && w != rs.dynWeight {
			e.log.Info("health: dynamic weight", "service", KeyString(cs.vs.spec.Key), "dest", rs.spec.Addr.String(),
				"checker", cs.spec.Kind.String(), "weight", w)
			rs.dynWeight = w
			weightChanged = true
			reason = fmt.Sprintf("%s set weight %d", cs.spec.Kind, w)
		}
		if !cs.up && cs.oks >= cs.spec.Rise {
			cs.up, cs.changed = true, now
			reason = fmt.Sprintf("%s succeeded", cs.spec.Kind)
		}
	} else {
		cs.lastErr = err.Error()
		cs.oks = 0
		cs.fails++
		if cs.up && cs.fails > cs.spec.Retry {
			cs.up, cs.changed = false, now
			reason = fmt.Sprintf("%s failed: %v", cs.spec.Kind, err)
		}
	}
	healthy := true
	for _, c := range rs.checks {
		healthy = healthy && c.up
	}
	if healthy != rs.healthy {
		rs.healthy, rs.since = healthy, now
		rs.flips++
		state, script := "down", rs.spec.NotifyDown
		if healthy {
			state, script = "up", rs.spec.NotifyUp
		}
		e.log.Info("health: real server "+state, "service", KeyString(cs.vs.spec.Key), "dest", rs.spec.Addr.String(),
			"reason", reason)
		e.script(script)
	}
	if reason != "" || weightChanged {
		e.evaluate(cs.vs, now, reason)
	}
	if cs.up {
		return cs.fails > 0
	}
	return cs.oks > 0
}

// weight is rs's weight now: the one misc_dynamic set, else the
// configured one.
func (rs *rsState) weight() int32 {
	if rs.dynWeight != noWeight {
		return rs.dynWeight
	}
	return rs.spec.Weight
}

// evaluate recomputes quorum and the wanted state of every destination
// of vs, and queues what changed; called with e.mu held.
//
// Quorum is keepalived's (ipwrapper.c update_quorum_state): the sum of
// the healthy servers' weights is compared with quorum; it is lost when
// the sum is 0 or below quorum-hysteresis, and regained at
// quorum+hysteresis. While it is lost and there is a sorry server, the
// sorry server is added and the real servers are taken out (weight 0
// with inhibit_on_failure), as keepalived does.
func (e *Engine) evaluate(vs *vsState, now time.Time, reason string) {
	quorum := max(vs.spec.Quorum, 1)
	var sum int64
	for _, rs := range vs.reals {
		if rs.healthy {
			sum += int64(rs.weight())
		}
	}
	if vs.quorumUp && (sum == 0 || sum < quorum-vs.spec.Hysteresis) {
		vs.quorumUp = false
		e.log.Warn("health: quorum lost", "service", KeyString(vs.spec.Key), "weight", sum, "quorum", quorum,
			"hysteresis", vs.spec.Hysteresis)
		e.script(vs.spec.QuorumDown)
	} else if !vs.quorumUp && sum >= quorum+vs.spec.Hysteresis {
		vs.quorumUp = true
		e.log.Info("health: quorum regained", "service", KeyString(vs.spec.Key), "weight", sum, "quorum", quorum,
			"hysteresis", vs.spec.Hysteresis)
		e.script(vs.spec.QuorumUp)
	}
	sorry := vs.spec.Sorry.Addr().IsValid()
	sorryOn := sorry && !vs.quorumUp
	want := map[netip.AddrPort]Transition{}
	for _, rs := range vs.reals {
		t := Transition{Service: vs.spec.Key, Dest: rs.spec.Addr, Healthy: rs.healthy}
		if rs.healthy && !sorryOn {
			t.Present, t.Weight = true, rs.weight()
		} else {
			t.Present = rs.spec.InhibitOnFailure
		}
		want[rs.spec.Addr] = t
	}
	if sorry {
		t := Transition{Service: vs.spec.Key, Dest: vs.spec.Sorry, Sorry: true, Fwd: vs.spec.SorryFwd, Healthy: true}
		if sorryOn {
			t.Present, t.Weight = true, cmp.Or(vs.spec.SorryWeight, 1)
		} else {
			t.Present = vs.spec.SorryInhibit
		}
		want[vs.spec.Sorry] = t
	}
	keys := append([]ipvs.ServiceKey{vs.spec.Key}, vs.spec.Also...)
	full := map[destKey]Transition{}
	for d, t := range want {
		for _, k := range keys {
			t.Service = k
			full[destKey{k, d}] = t
		}
	}
	for k, prev := range vs.sent {
		if _, ok := full[k]; !ok {
			e.queue(Transition{Service: k.svc, Dest: k.dest, Sorry: prev.Sorry, Fwd: prev.Fwd, Release: true,
				Reason: "no longer checked", At: now})
			delete(vs.sent, k)
		}
	}
	for k, t := range full {
		prev, ok := vs.sent[k]
		if ok && prev.Present == t.Present && prev.Weight == t.Weight && prev.Healthy == t.Healthy && prev.Fwd == t.Fwd {
			continue
		}
		t.Reason, t.At = reason, now
		vs.sent[k] = t
		e.queue(t)
	}
}

// queue adds t to the next batch, replacing an older state of the same
// destination; called with e.mu held.
func (e *Engine) queue(t Transition) {
	e.pending[destKey{t.Service, t.Dest}] = t
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// flush sends batches to the sink until ctx is done.
func (e *Engine) flush(ctx context.Context) {
	t := time.NewTimer(0)
	<-t.C
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
		}
		t.Reset(e.opts.BatchDelay)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		e.mu.Lock()
		batch := make([]Transition, 0, len(e.pending))
		for _, tr := range e.pending {
			batch = append(batch, tr)
		}
		clear(e.pending)
		e.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		slices.SortFunc(batch, func(a, b Transition) int {
			if c := ipvs.CompareServices(a.Service, b.Service); c != 0 {
				return c
			}
			return a.Dest.Compare(b.Dest)
		})
		err := e.sink.ApplyHealth(ctx, batch)
		e.mu.Lock()
		if err != nil {
			e.sinkErr, e.sinkAt = err.Error(), time.Now()
			for _, tr := range batch {
				k := destKey{tr.Service, tr.Dest}
				if _, newer := e.pending[k]; !newer {
					e.pending[k] = tr
				}
			}
		} else {
			e.sinkErr = ""
		}
		e.mu.Unlock()
		if err != nil {
			e.log.Error("health: apply transitions", "transitions", len(batch), "err", err)
			t.Reset(e.opts.RetryDelay)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			select {
			case e.kick <- struct{}{}:
			default:
			}
		}
	}
}

// script runs a notify or quorum script in the background; called with
// e.mu held. "" runs nothing.
func (e *Engine) script(cmd string) {
	if cmd == "" || e.runCtx == nil {
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ctx, cancel := context.WithTimeout(e.runCtx, e.opts.ScriptTimeout)
		defer cancel()
		if err := runScript(ctx, cmd); err != nil && e.runCtx.Err() == nil {
			e.log.Warn("health: script", "script", cmd, "err", err)
		}
	}()
}
