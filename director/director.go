package director

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// Dataplane is what the Director needs of the forwarding plane
// (*dataplane.Dataplane; a fake in tests).
type Dataplane interface {
	// Apply makes cfg the running configuration, all of it or nothing.
	// cfg is not changed afterwards; Apply may keep it.
	Apply(cfg *ipvs.Config) error
	// SetSysctls sets the IPVS sysctls; it cannot fail.
	SetSysctls(ipvs.Sysctls)
}

// Options configure a Director.
type Options struct {
	// Logger receives one line per state change; nil is slog.Default().
	Logger *slog.Logger
	// RulesFile, if set, is written with the operator configuration in
	// `ipvsadm -S -n` form after every change that is applied (xlb run
	// --rules FILE --save), atomically: a crash leaves the old file or
	// the new one, never a part.
	RulesFile string
	// Sysctls are the IPVS sysctls at start.
	Sysctls ipvs.Sysctls
}

// DefaultOptions are a Director's defaults: slog.Default(), no rules
// file, the kernel's default sysctls.
func DefaultOptions() Options { return Options{} }

// DestState is an overlay's verdict on one real server of one service.
type DestState uint8

const (
	// DestUp is no overlay: the real server is as the operator configured it.
	DestUp DestState = iota
	// DestInhibited keeps the real server with weight 0 (keepalived's
	// inhibit_on_failure): no new connections, the established ones
	// continue.
	DestInhibited
	// DestRemoved takes the real server out of its service (keepalived's
	// default on failure): no new connections; the established ones keep
	// it unless net.ipv4.vs.expire_nodest_conn is set.
	DestRemoved
)

func (s DestState) String() string {
	switch s {
	case DestUp:
		return "up"
	case DestInhibited:
		return "inhibited"
	case DestRemoved:
		return "removed"
	}
	return fmt.Sprintf("DestState(%d)", uint8(s))
}

type destRef struct {
	svc  ipvs.ServiceKey
	dest netip.AddrPort
}

// overlay is what an overlay says of one (service, destination); the
// zero value is none.
type overlay struct {
	st DestState
	// weight, when hasWeight and st is DestUp, is the weight in force
	// instead of the configured one (keepalived's misc_dynamic).
	weight    int32
	hasWeight bool
	// sorry is a destination the operator has not configured (a
	// keepalived sorry_server): with DestUp it is added with fwd and
	// weight, with DestInhibited with weight 0.
	sorry bool
	fwd   ipvs.Fwd
}

// Director owns the live configuration. It is safe for concurrent use:
// changes are serialised, snapshots are read without waiting for them.
type Director struct {
	dp   Dataplane
	log  *slog.Logger
	opts Options

	mu      sync.Mutex // serialises changes: held from clone to publish
	overlay map[destRef]overlay
	sysctls ipvs.Sysctls

	cfg     atomic.Pointer[ipvs.Config] // operator configuration, immutable
	applied atomic.Pointer[ipvs.Config] // cfg with the overlays, immutable
	gen     atomic.Uint64               // changes published

	healthTransitions atomic.Uint64 // applied by ApplyHealth
}

// New applies cfg to dp and returns the Director that owns it from then
// on. cfg must not be changed by the caller afterwards. A cfg that does
// not validate or that dp refuses is an error, and nothing is applied.
func New(dp Dataplane, cfg *ipvs.Config, opts Options) (*Director, error) {
	d := &Director{dp: dp, log: opts.Logger, opts: opts, overlay: map[destRef]overlay{}, sysctls: opts.Sysctls}
	if d.log == nil {
		d.log = slog.Default()
	}
	if cfg == nil {
		cfg = &ipvs.Config{Timeouts: ipvs.DefaultTimeouts}
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validate configuration: %w", err)
	}
	dp.SetSysctls(d.sysctls)
	if err := dp.Apply(cfg); err != nil {
		return nil, err
	}
	cfg = cfg.Settled()
	d.cfg.Store(cfg)
	d.applied.Store(cfg)
	return d, nil
}

// Config is the operator configuration: an immutable snapshot, which
// the caller must not change (Clone it to).
func (d *Director) Config() *ipvs.Config { return d.cfg.Load() }

// Applied is the configuration the dataplane runs: Config with the
// overlays composed over it. An immutable snapshot, like Config's.
func (d *Director) Applied() *ipvs.Config { return d.applied.Load() }

// Generation counts the changes published since New.
func (d *Director) Generation() uint64 { return d.gen.Load() }

// Change is the one way to change the operator configuration. fn
// changes next, a private copy of the current configuration; then next
// is validated whole, the overlays are composed over it, the dataplane
// applies the result, and it is published, logged (one line per state
// change, with reason) and saved. An error from fn, from validation or
// from the dataplane is returned as it is, and changes nothing. Changes
// are serialised: fn sees the result of the change before it.
func (d *Director) Change(reason string, fn func(next *ipvs.Config) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := d.cfg.Load()
	next := cur.Clone()
	if err := fn(next); err != nil {
		return err
	}
	if next.Timeouts == (ipvs.Timeouts{}) {
		next.Timeouts = ipvs.DefaultTimeouts
	}
	if err := validate(cur, next); err != nil {
		return err
	}
	return d.publish(reason, cur, next)
}

// validate checks next whole, as ipvs.Config.Validate does, knowing that
// cur is valid: a service equal to cur's of the same key needs no second
// look. What is not a service (the timeouts, …) is validated as it is;
// each other service alone, in a configuration of its own, and the keys
// for duplicates. That keeps a one-service change O(that service) rather
// than O(services²), the cost of Validate's replay (1,000 services of 10
// destinations: about 100 ms per change instead of under 1 ms).
func validate(cur, next *ipvs.Config) error {
	rest := *next
	rest.Services = nil
	if err := rest.Validate(); err != nil {
		return err
	}
	old := make(map[ipvs.ServiceKey]*ipvs.Service, len(cur.Services))
	for i := range cur.Services {
		old[cur.Services[i].Key] = &cur.Services[i]
	}
	seen := make(map[ipvs.ServiceKey]bool, len(next.Services))
	for i := range next.Services {
		s := &next.Services[i]
		if seen[s.Key] {
			return ipvs.ErrServiceExists
		}
		seen[s.Key] = true
		if o := old[s.Key]; o != nil && sameService(o, s) {
			continue
		}
		one := ipvs.Config{Services: []ipvs.Service{*s}, Timeouts: next.Timeouts}
		if err := one.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// sameService tells whether a and b are equal, destinations and all.
func sameService(a, b *ipvs.Service) bool {
	return a.Key == b.Key && sameSettings(a, b) && slices.Equal(a.Dests, b.Dests)
}

// Replace makes cfg the operator configuration, as `ipvsadm -C; ipvsadm
// -R` would but atomically (a rules file reloaded on SIGHUP). The Director
// keeps its own copy.
func (d *Director) Replace(reason string, cfg *ipvs.Config) error {
	return d.Change(reason, func(next *ipvs.Config) error {
		*next = *cfg.Clone()
		return nil
	})
}

// SetDestState puts an overlay on real server dest of service svc, or
// takes it off (DestUp). It composes over whatever the operator
// configures: an overlay on a real server the operator has not
// configured (yet) waits, and applies when it is added; it stays until
// set to DestUp, so a checker that stops checking a server sets it up.
// The operator configuration, and so the rules file, keep the
// configured weight. A dataplane refusal is returned, and the overlay is
// not changed.
func (d *Director) SetDestState(svc ipvs.ServiceKey, dest netip.AddrPort, st DestState) error {
	return d.SetDestStates([]DestChange{{Service: svc, Dest: dest, State: st}})
}

// DestChange is one overlay change for SetDestStates.
type DestChange struct {
	Service ipvs.ServiceKey
	Dest    netip.AddrPort
	State   DestState
	// HasWeight with State DestUp puts Weight in force instead of the
	// configured weight (a misc_dynamic checker's), until a change
	// without it.
	HasWeight bool
	Weight    int32
	// Sorry is a destination the operator has not configured, added to
	// the service with forwarding method Fwd: with DestUp at Weight,
	// with DestInhibited at weight 0; DestRemoved (or DestUp without
	// HasWeight) takes it out again. If the operator configures the
	// same destination, the operator's wins and the overlay acts on it
	// as on any real server.
	Sorry bool
	Fwd   ipvs.Fwd
}

func (c DestChange) overlay() overlay {
	o := overlay{st: c.State, sorry: c.Sorry}
	if c.Sorry {
		o.fwd = c.Fwd // a real server keeps its configured method
	}
	if c.HasWeight && c.State == DestUp {
		o.weight, o.hasWeight = c.Weight, true
	}
	if c.Sorry && (c.State == DestRemoved || (c.State == DestUp && !o.hasWeight)) {
		return overlay{}
	}
	return o
}

// SetDestStates makes several overlay changes in one Apply, all or
// none: a health checker batches what one check round found (seesaw's
// notifications), so that 50 servers failing together cost one
// configuration swap, not 50.
func (d *Director) SetDestStates(changes []DestChange) error {
	for _, c := range changes {
		if c.State > DestRemoved {
			return fmt.Errorf("set state of %v: invalid state %d", c.Dest, c.State)
		}
		if c.HasWeight && (c.Weight < 0 || c.Weight > 65535) {
			return fmt.Errorf("set weight of %v: invalid weight %d: must be 0..65535", c.Dest, c.Weight)
		}
		if c.Sorry && !c.Dest.Addr().IsValid() {
			return fmt.Errorf("set sorry server of %s: invalid address %v", c.Service.String(), c.Dest)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	type undo struct {
		r  destRef
		ov overlay
	}
	var undos []undo
	for _, c := range changes {
		r := destRef{canonical(c.Service), c.Dest}
		if old, ov := d.overlay[r], c.overlay(); old != ov {
			undos = append(undos, undo{r, old})
			d.setOverlay(r, ov)
		}
	}
	if len(undos) == 0 {
		return nil
	}
	cur := d.cfg.Load()
	if err := d.publish("", cur, cur); err != nil {
		for i := len(undos) - 1; i >= 0; i-- {
			d.setOverlay(undos[i].r, undos[i].ov)
		}
		return err
	}
	for _, u := range undos {
		s := cur.Service(u.r.svc)
		if s == nil {
			continue
		}
		ov := d.overlay[u.r]
		switch {
		case s.Dest(u.r.dest) != nil:
			args := []any{"service", u.r.svc.String(), "dest", u.r.dest, "state", ov.st.String(), "was", u.ov.st.String()}
			if ov.hasWeight {
				args = append(args, "weight", ov.weight)
			}
			d.log.Info("real server "+ov.st.String(), args...)
		case ov.sorry || u.ov.sorry:
			state := "removed"
			if ov.sorry {
				state = "added"
				if ov.st == DestInhibited {
					state = "inhibited"
				}
			}
			d.log.Info("sorry server "+state, "service", u.r.svc.String(), "dest", u.r.dest, "weight", ov.weight)
		}
	}
	return nil
}

func (d *Director) setOverlay(r destRef, ov overlay) {
	if ov == (overlay{}) {
		delete(d.overlay, r)
	} else {
		d.overlay[r] = ov
	}
}

// DestState is the overlay on real server dest of service svc.
func (d *Director) DestState(svc ipvs.ServiceKey, dest netip.AddrPort) DestState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.overlay[destRef{canonical(svc), dest}].st
}

// Sysctls are the IPVS sysctls in force.
func (d *Director) Sysctls() ipvs.Sysctls {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sysctls
}

// SetSysctls sets the IPVS sysctls (`sysctl -w net.ipv4.vs.…`). They are
// not part of the rules file, as they are not part of `ipvsadm -S`.
func (d *Director) SetSysctls(s ipvs.Sysctls) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s == d.sysctls {
		return
	}
	d.dp.SetSysctls(s)
	d.sysctls = s
	d.log.Info("sysctls set", "expire_nodest_conn", s.ExpireNodestConn, "expire_quiescent_template", s.ExpireQuiescentTemplate, "sloppy_tcp", s.SloppyTCP)
}

// publish composes next with the overlays, applies it and publishes it;
// the caller holds d.mu. reason "" is an overlay change: the operator
// configuration did not change, and is neither logged nor saved.
func (d *Director) publish(reason string, cur, next *ipvs.Config) error {
	eff := d.compose(next)
	// eff tells the dataplane which services the change deleted and
	// added again (ipvs.Config.Renewed); what is published has forgotten
	// it, so the next change renews nothing it does not delete itself.
	if err := d.dp.Apply(eff); err != nil {
		return err
	}
	d.cfg.Store(next.Settled())
	d.applied.Store(eff.Settled())
	d.gen.Add(1)
	if reason == "" {
		return nil
	}
	logDiff(d.log, reason, cur, next)
	if d.opts.RulesFile != "" {
		if err := WriteRulesFile(d.opts.RulesFile, next); err != nil {
			// The change is in force; the next one writes the file whole
			// again.
			d.log.Error("rules not saved", "file", d.opts.RulesFile, "err", err)
		} else {
			d.log.Info("rules saved", "file", d.opts.RulesFile, "services", len(next.Services))
		}
	}
	return nil
}

// compose is cfg with the overlays applied; cfg itself when there are
// none that touch it.
func (d *Director) compose(cfg *ipvs.Config) *ipvs.Config {
	if len(d.overlay) == 0 {
		return cfg
	}
	var out *ipvs.Config
	own := func() {
		if out == nil {
			out = cfg.Clone()
		}
	}
	for i := range cfg.Services {
		s := &cfg.Services[i]
		for j := range s.Dests {
			ap := s.Dests[j].AddrPort()
			ov := d.overlay[destRef{s.Key, ap}]
			switch {
			case ov.st == DestInhibited:
				own()
				out.Services[i].Dest(ap).Weight = 0
			case ov.st == DestRemoved:
				own()
				o := &out.Services[i]
				for k := range o.Dests {
					if o.Dests[k].AddrPort() == ap {
						o.Dests = append(o.Dests[:k], o.Dests[k+1:]...)
						break
					}
				}
			case ov.hasWeight && ov.weight != s.Dests[j].Weight:
				own()
				out.Services[i].Dest(ap).Weight = ov.weight
			}
		}
	}
	// Sorry servers, in a stable order: the dataplane's schedulers see
	// the same destination list for the same overlays.
	var sorry []destRef
	for r, ov := range d.overlay {
		if ov.sorry {
			sorry = append(sorry, r)
		}
	}
	slices.SortFunc(sorry, func(a, b destRef) int {
		if c := ipvs.CompareServices(a.svc, b.svc); c != 0 {
			return c
		}
		return a.dest.Compare(b.dest)
	})
	for _, r := range sorry {
		s := cfg.Service(r.svc)
		if s == nil || s.Dest(r.dest) != nil {
			continue // not (yet) a service, or the operator's own destination
		}
		ov := d.overlay[r]
		own()
		w := ov.weight
		if ov.st == DestInhibited {
			w = 0
		}
		o := out.Service(r.svc)
		o.Dests = append(o.Dests, ipvs.Dest{Addr: r.dest.Addr(), Port: r.dest.Port(), Fwd: ov.fwd, Weight: w})
	}
	if out == nil {
		return cfg
	}
	return out
}

func canonical(k ipvs.ServiceKey) ipvs.ServiceKey {
	if k.FWMark != 0 {
		return ipvs.FWMarkKey(k.FWMark, k.Addr.Is6())
	}
	return k
}

// WriteRulesFile writes cfg to path in `ipvsadm -S -n` form, so that
// `xlb run --rules path` or `ipvsadm -R < path` restores it: to a
// temporary file in the same directory, synced, then renamed over path
// and the directory synced, so that a crash at any point leaves either
// the old file or the new one whole. The file keeps path's permissions
// if it exists (0644 otherwise); a symbolic link is followed.
func WriteRulesFile(path string, cfg *ipvs.Config) (err error) {
	var b bytes.Buffer
	if err := ipvsadm.WriteSave(&b, cfg, true); err != nil {
		return fmt.Errorf("format rules: %w", err)
	}
	// A symbolic link stays one: the file it names is replaced.
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("save rules %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("save rules %s: %w", path, err)
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		return fmt.Errorf("save rules %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save rules %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save rules %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("save rules %s: %w", path, err)
	}
	if df, err := os.Open(dir); err == nil {
		serr := df.Sync()
		df.Close()
		if serr != nil && !errors.Is(serr, os.ErrInvalid) {
			return fmt.Errorf("save rules %s: sync directory: %w", path, serr)
		}
	}
	return nil
}
