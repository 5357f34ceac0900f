package bgp

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// Prefixes is the announcement policy: the host prefixes (/32, /128) of
// the VIPs that cfg, the applied configuration, can serve, sorted. A VIP
// is announced while at least one of its services has a destination with
// weight > 0; a VIP whose real servers all failed (weight 0 or removed,
// as the health checker applies it) is not. While the director drains,
// or with no configuration (nil: not serving), nothing is announced.
//
// Firewall-mark services have no address of their own and announce
// nothing: the marks' match rules name the traffic, and the routes to it
// are the operator's to originate.
func Prefixes(cfg *ipvs.Config, draining bool) []netip.Prefix {
	if cfg == nil || draining {
		return nil
	}
	seen := make(map[netip.Prefix]bool)
	var out []netip.Prefix
	for i := range cfg.Services {
		s := &cfg.Services[i]
		if s.Key.IsFWMark() || !s.Key.Addr.IsValid() {
			continue
		}
		p := HostPrefix(s.Key.Addr)
		if seen[p] || !healthy(s) {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

func healthy(s *ipvs.Service) bool {
	for _, d := range s.Dests {
		if d.Weight > 0 {
			return true
		}
	}
	return false
}

// Announcer is what a Reconciler drives: a Speaker, or a fake in tests.
type Announcer interface {
	Announce(ctx context.Context, p netip.Prefix, nexthop netip.Addr) error
	Withdraw(ctx context.Context, p netip.Prefix) error
}

// Reconciler keeps an Announcer's routes equal to Prefixes(config,
// draining). Call Apply after each configuration the director applies and
// SetDraining on `xlb drain`/`xlb undrain`. Safe for concurrent use.
type Reconciler struct {
	a Announcer

	mu       sync.Mutex
	cfg      *ipvs.Config
	draining bool
	// have is what the announcer was told last: announced, or failed to
	// withdraw (retried on the next reconcile).
	have map[netip.Prefix]bool
}

// NewReconciler returns a reconciler that announces nothing until the
// first Apply.
func NewReconciler(a Announcer) *Reconciler {
	return &Reconciler{a: a, have: make(map[netip.Prefix]bool)}
}

// Apply records the applied configuration and reconciles. The Reconciler
// keeps cfg: the caller must not change it afterwards.
func (r *Reconciler) Apply(ctx context.Context, cfg *ipvs.Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg = cfg
	return r.reconcileLocked(ctx)
}

// SetDraining sets the drain state and reconciles: draining withdraws
// every VIP, so the router sends new flows to the other directors.
func (r *Reconciler) SetDraining(ctx context.Context, draining bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.draining = draining
	return r.reconcileLocked(ctx)
}

// WithdrawAll withdraws everything (shutdown) and forgets the
// configuration: a later Apply announces again.
func (r *Reconciler) WithdrawAll(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg = nil
	return r.reconcileLocked(ctx)
}

// Announced returns what the reconciler has announced, sorted.
func (r *Reconciler) Announced() []netip.Prefix {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]netip.Prefix, 0, len(r.have))
	for p := range r.have {
		out = append(out, p)
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

// reconcileLocked withdraws first, then announces, and carries on past
// errors so one bad prefix does not hold up the others; what failed is
// retried on the next call.
func (r *Reconciler) reconcileLocked(ctx context.Context) error {
	want := make(map[netip.Prefix]bool)
	for _, p := range Prefixes(r.cfg, r.draining) {
		want[p] = true
	}
	var errs []error
	for _, p := range sortedKeys(r.have) {
		if want[p] {
			continue
		}
		if err := r.a.Withdraw(ctx, p); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(r.have, p)
	}
	for _, p := range sortedKeys(want) {
		if r.have[p] {
			continue
		}
		if err := r.a.Announce(ctx, p, netip.Addr{}); err != nil {
			errs = append(errs, err)
			continue
		}
		r.have[p] = true
	}
	return errors.Join(errs...)
}

func sortedKeys(m map[netip.Prefix]bool) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, comparePrefix)
	return out
}
