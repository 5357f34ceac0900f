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

// Director owns the live configuration. It is safe for concurrent use:
// changes are serialised, snapshots are read without waiting for them.
type Director struct {
	dp   Dataplane
	log  *slog.Logger
	opts Options

	mu      sync.Mutex // serialises changes: held from clone to publish
	overlay map[destRef]DestState
	sysctls ipvs.Sysctls

	cfg     atomic.Pointer[ipvs.Config] // operator configuration, immutable
	applied atomic.Pointer[ipvs.Config] // cfg with the overlays, immutable
	gen     atomic.Uint64               // changes published
}

// New applies cfg to dp and returns the Director that owns it from then
// on. cfg must not be changed by the caller afterwards. A cfg that does
// not validate or that dp refuses is an error, and nothing is applied.
func New(dp Dataplane, cfg *ipvs.Config, opts Options) (*Director, error) {
	d := &Director{dp: dp, log: opts.Logger, opts: opts, overlay: map[destRef]DestState{}, sysctls: opts.Sysctls}
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
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	type undo struct {
		r  destRef
		st DestState
	}
	var undos []undo
	for _, c := range changes {
		r := destRef{canonical(c.Service), c.Dest}
		if old := d.overlay[r]; old != c.State {
			undos = append(undos, undo{r, old})
			d.setOverlay(r, c.State)
		}
	}
	if len(undos) == 0 {
		return nil
	}
	cur := d.cfg.Load()
	if err := d.publish("", cur, cur); err != nil {
		for i := len(undos) - 1; i >= 0; i-- {
			d.setOverlay(undos[i].r, undos[i].st)
		}
		return err
	}
	for _, u := range undos {
		if s := cur.Service(u.r.svc); s != nil && s.Dest(u.r.dest) != nil {
			st := d.overlay[u.r]
			d.log.Info("real server "+st.String(), "service", svcName(u.r.svc), "dest", u.r.dest, "state", st.String(), "was", u.st.String())
		}
	}
	return nil
}

func (d *Director) setOverlay(r destRef, st DestState) {
	if st == DestUp {
		delete(d.overlay, r)
	} else {
		d.overlay[r] = st
	}
}

// DestState is the overlay on real server dest of service svc.
func (d *Director) DestState(svc ipvs.ServiceKey, dest netip.AddrPort) DestState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.overlay[destRef{canonical(svc), dest}]
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
	d.log.Info("sysctls set", "expire_nodest_conn", s.ExpireNodestConn, "expire_quiescent_template", s.ExpireQuiescentTemplate)
}

// publish composes next with the overlays, applies it and publishes it;
// the caller holds d.mu. reason "" is an overlay change: the operator
// configuration did not change, and is neither logged nor saved.
func (d *Director) publish(reason string, cur, next *ipvs.Config) error {
	eff := d.compose(next)
	if err := d.dp.Apply(eff); err != nil {
		return err
	}
	d.cfg.Store(next)
	d.applied.Store(eff)
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
	for i := range cfg.Services {
		s := &cfg.Services[i]
		for j := range s.Dests {
			st := d.overlay[destRef{s.Key, s.Dests[j].AddrPort()}]
			if st == DestUp {
				continue
			}
			if out == nil {
				out = cfg.Clone()
			}
			o := &out.Services[i]
			switch st {
			case DestInhibited:
				o.Dest(s.Dests[j].AddrPort()).Weight = 0
			case DestRemoved:
				ap := s.Dests[j].AddrPort()
				for k := range o.Dests {
					if o.Dests[k].AddrPort() == ap {
						o.Dests = append(o.Dests[:k], o.Dests[k+1:]...)
						break
					}
				}
			}
		}
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
