package bgp

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvs"
)

func svc(vip string, port uint16, weights ...int32) ipvs.Service {
	s := ipvs.NewService(ipvs.ServiceKey{Proto: ipvs.TCP, Addr: netip.MustParseAddr(vip), Port: port})
	for i, w := range weights {
		d := ipvs.NewDest(netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 168, 0, byte(i + 1)}), 80))
		d.Weight = w
		s.Dests = append(s.Dests, d)
	}
	return s
}

func pfxs(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestPrefixes(t *testing.T) {
	fw := ipvs.NewService(ipvs.FWMarkKey(7, false))
	fw.Dests = []ipvs.Dest{ipvs.NewDest(netip.MustParseAddrPort("192.168.0.9:0"))}
	for _, tc := range []struct {
		name     string
		cfg      *ipvs.Config
		draining bool
		want     []netip.Prefix
	}{
		{"not serving", nil, false, nil},
		{"empty", &ipvs.Config{}, false, nil},
		{"healthy", &ipvs.Config{Services: []ipvs.Service{svc("10.9.0.1", 80, 1, 0)}}, false, pfxs("10.9.0.1/32")},
		{"draining", &ipvs.Config{Services: []ipvs.Service{svc("10.9.0.1", 80, 1)}}, true, nil},
		{"all weight 0", &ipvs.Config{Services: []ipvs.Service{svc("10.9.0.1", 80, 0, 0)}}, false, nil},
		{"no dests", &ipvs.Config{Services: []ipvs.Service{svc("10.9.0.1", 80)}}, false, nil},
		{
			// One healthy service of the VIP is enough; the VIP is listed once.
			"one of two ports", &ipvs.Config{Services: []ipvs.Service{
				svc("10.9.0.1", 80, 0), svc("10.9.0.1", 443, 3), svc("10.9.0.1", 8080, 1),
			}}, false, pfxs("10.9.0.1/32"),
		},
		{
			"v4 and v6 sorted", &ipvs.Config{Services: []ipvs.Service{
				svc("2001:db8::10", 80, 1), svc("10.9.0.2", 80, 1), svc("10.9.0.1", 80, 1), svc("10.9.0.3", 80, 0),
			}}, false, pfxs("10.9.0.1/32", "10.9.0.2/32", "2001:db8::10/128"),
		},
		{"fwmark", &ipvs.Config{Services: []ipvs.Service{fw}}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Prefixes(tc.cfg, tc.draining); !slices.Equal(got, tc.want) {
				t.Errorf("Prefixes = %v, want %v", got, tc.want)
			}
		})
	}
}

// fakeAnnouncer records calls and fails those for prefixes in fail.
type fakeAnnouncer struct {
	routes map[netip.Prefix]bool
	calls  []string
	fail   map[netip.Prefix]bool
}

func (f *fakeAnnouncer) Announce(_ context.Context, p netip.Prefix, _ netip.Addr) error {
	f.calls = append(f.calls, "+"+p.String())
	if f.fail[p] {
		return errors.New("announce failed")
	}
	f.routes[p] = true
	return nil
}

func (f *fakeAnnouncer) Withdraw(_ context.Context, p netip.Prefix) error {
	f.calls = append(f.calls, "-"+p.String())
	if f.fail[p] {
		return errors.New("withdraw failed")
	}
	delete(f.routes, p)
	return nil
}

func TestReconciler(t *testing.T) {
	ctx := context.Background()
	fa := &fakeAnnouncer{routes: map[netip.Prefix]bool{}, fail: map[netip.Prefix]bool{}}
	r := NewReconciler(fa)
	step := func(name string, err error, calls ...string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(fa.calls, calls) {
			t.Errorf("%s: calls %v, want %v", name, fa.calls, calls)
		}
		fa.calls = nil
		var have []netip.Prefix
		for p := range fa.routes {
			have = append(have, p)
		}
		slices.SortFunc(have, comparePrefix)
		if got := r.Announced(); !slices.Equal(got, have) {
			t.Errorf("%s: Announced() = %v, announcer has %v", name, got, have)
		}
	}
	two := &ipvs.Config{Services: []ipvs.Service{svc("10.9.0.1", 80, 1), svc("10.9.0.2", 80, 1)}}
	step("apply", r.Apply(ctx, two), "+10.9.0.1/32", "+10.9.0.2/32")
	step("apply same", r.Apply(ctx, two.Clone()))
	// The health checker sets 10.9.0.2's only real server to weight 0.
	failed := two.Clone()
	failed.Services[1].Dests[0].Weight = 0
	step("all reals of a VIP fail", r.Apply(ctx, failed), "-10.9.0.2/32")
	step("drain", r.SetDraining(ctx, true), "-10.9.0.1/32")
	step("apply while draining", r.Apply(ctx, two))
	step("undrain", r.SetDraining(ctx, false), "+10.9.0.1/32", "+10.9.0.2/32")
	// A VIP removed, another added.
	moved := &ipvs.Config{Services: []ipvs.Service{svc("10.9.0.1", 80, 1), svc("2001:db8::1", 80, 1)}}
	step("replace", r.Apply(ctx, moved), "-10.9.0.2/32", "+2001:db8::1/128")
	step("shutdown", r.WithdrawAll(ctx), "-10.9.0.1/32", "-2001:db8::1/128")
	step("apply after shutdown", r.Apply(ctx, two), "+10.9.0.1/32", "+10.9.0.2/32")

	// A failing withdrawal is retried on the next reconcile; the other
	// prefixes are not held up.
	p1 := netip.MustParsePrefix("10.9.0.1/32")
	fa.fail[p1] = true
	err := r.Apply(ctx, &ipvs.Config{})
	if err == nil {
		t.Fatal("withdraw failure not reported")
	}
	step("withdraw fails", nil, "-10.9.0.1/32", "-10.9.0.2/32")
	delete(fa.fail, p1)
	step("retry", r.Apply(ctx, &ipvs.Config{}), "-10.9.0.1/32")

	// A failing announcement is retried too.
	fa.fail[p1] = true
	if err := r.Apply(ctx, two); err == nil {
		t.Fatal("announce failure not reported")
	}
	step("announce fails", nil, "+10.9.0.1/32", "+10.9.0.2/32")
	delete(fa.fail, p1)
	step("announce retry", r.Apply(ctx, two), "+10.9.0.1/32")
}

func TestHostPrefix(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{{"10.0.0.1/32", true}, {"2001:db8::1/128", true}, {"10.0.0.0/24", false}, {"2001:db8::/64", false}, {"::ffff:10.0.0.1/128", false}} {
		_, err := hostPrefix(netip.MustParsePrefix(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("hostPrefix(%s) error = %v, want ok %v", tc.in, err, tc.ok)
		}
	}
	if _, err := hostPrefix(netip.Prefix{}); err == nil {
		t.Error("hostPrefix(invalid) succeeded")
	}
	if got := HostPrefix(netip.MustParseAddr("::ffff:10.1.2.3")); got.String() != "10.1.2.3/32" {
		t.Errorf("HostPrefix(::ffff:10.1.2.3) = %v", got)
	}
}
