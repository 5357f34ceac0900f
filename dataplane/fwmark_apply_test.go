//go:build linux

package dataplane

import (
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/sched"
	"github.com/xlbproject/xlb/testenv"
)

// TestApplyFWMark: Apply installs -f and -6 -f services and the mark
// rules in XDP and in the workers' tables, refuses what it cannot forward
// or classify without changing anything, and drains a deleted -f service.
func TestApplyFWMark(t *testing.T) {
	o, err := bpf.Load(bpf.Options{})
	if errors.Is(err, os.ErrPermission) || errors.Is(err, ebpf.ErrNotSupported) {
		testenv.SkipUnlessRequired(t, "cannot load BPF: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	d := &Dataplane{
		opts:       Options{Logger: slog.Default(), MaxDests: 16},
		objs:       o,
		reg:        sched.NewRegistry(16),
		ctSettings: conntrack.NewSettings(conntrack.DefaultTimeouts()),
		state:      newControlState(),
		applied:    make(chan struct{}, 1),
		workers:    []*worker{{}},
	}
	empty := make([]destFwd, 17)
	d.fwd.Store(&empty)
	vip := netip.MustParseAddr("192.0.2.10")
	fwm := func(mark uint32, v6 bool, fwd ipvs.Fwd) ipvs.Service {
		s := ipvs.Service{Key: ipvs.FWMarkKey(mark, v6), Sched: "rr", Persistent: true, Timeout: 300, Netmask: 32}
		a := netip.MustParseAddr("192.0.2.21")
		if v6 {
			s.Netmask, a = 128, netip.MustParseAddr("2001:db8::21")
		}
		s.Dests = []ipvs.Dest{{Addr: a, Fwd: fwd, Weight: 1}}
		return s
	}
	rules := []ipvs.MarkRule{
		{Mark: 1, Proto: ipvs.TCP, Prefix: netip.PrefixFrom(vip, 32), PortLo: 80, PortHi: 80},
		{Mark: 1, Proto: ipvs.TCP, Prefix: netip.PrefixFrom(vip, 32), PortLo: 443, PortHi: 443},
		{Mark: 1, Proto: ipvs.TCP, Prefix: netip.MustParsePrefix("2001:db8::/64"), PortLo: 80, PortHi: 80},
	}
	good := &ipvs.Config{Services: []ipvs.Service{fwm(1, false, ipvs.FwdRoute), fwm(1, true, ipvs.FwdRoute)}, Marks: rules}
	if err := d.Apply(good); err != nil {
		t.Fatal(err)
	}
	wc := d.workers[0].cfg.Load()
	if wc.fwmarks[fwmKey{1, false}] == nil || wc.fwmarks[fwmKey{1, true}] == nil || len(wc.services) != 0 {
		t.Errorf("worker services %v, fwmark services %v; want -f 1 and -6 -f 1 only", wc.services, wc.fwmarks)
	}
	a := vip.As16()
	if m, ok := wc.marks.Classify(6, &a, 443); !ok || m != 1 {
		t.Errorf("worker classifies VIP:443 as %d, %v; want 1", m, ok)
	}
	if p, err := o.MarkPrefixes(); err != nil || len(p) != 2 {
		t.Errorf("XDP mark prefixes %v, %v; want 2", p, err)
	}

	// Refused, changing nothing: an unknown tunnel type, and a prefix
	// with too many ranges. (NAT and FULLNAT are taken:
	// TestApplyFWMarkNAT.)
	tun := fwm(1, false, ipvs.FwdTunnel)
	tun.Dests[0].TunType = 9
	bad := &ipvs.Config{Services: []ipvs.Service{tun}}
	var many []ipvs.MarkRule
	for i := range 17 {
		many = append(many, ipvs.MarkRule{Mark: 2, Proto: ipvs.TCP, Prefix: netip.PrefixFrom(vip, 32), PortLo: uint16(1000 + i), PortHi: uint16(1000 + i)})
	}
	for _, tc := range []struct {
		cfg  *ipvs.Config
		want string
	}{
		{bad, "service fwmark 1 destination 192.0.2.21:0: an unknown tunnel type is not supported"},
		{&ipvs.Config{Services: good.Services, Marks: many}, "prefix 192.0.2.10/32: 17 port ranges"},
	} {
		err := d.Apply(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Apply = %v, want an error with %q", err, tc.want)
		}
		if d.workers[0].cfg.Load() != wc || len(d.state.services) != 2 {
			t.Errorf("refused Apply changed the configuration")
		}
		if p, _ := o.MarkPrefixes(); len(p) != 2 {
			t.Errorf("refused Apply left %d XDP mark prefixes, want 2", len(p))
		}
	}

	// -f 1 deleted (the IPv6 one stays): drained in XDP, gone from the
	// workers; the rules go too.
	if err := d.Apply(&ipvs.Config{Services: good.Services[1:]}); err != nil {
		t.Fatal(err)
	}
	wc = d.workers[0].cfg.Load()
	if wc.fwmarks[fwmKey{1, false}] != nil || wc.fwmarks[fwmKey{1, true}] == nil || wc.marks != nil {
		t.Errorf("after deleting -f 1: fwmark services %v, marks %v; want -6 -f 1 and no marks", wc.fwmarks, wc.marks)
	}
	if p, err := o.MarkPrefixes(); err != nil || len(p) != 0 {
		t.Errorf("XDP mark prefixes %v, %v; want none", p, err)
	}
	if err := o.DrainMarkService(1, false, 1); err != nil { // still in the map: draining until its connections end
		t.Errorf("-f 1 not in the XDP map while draining: %v", err)
	}
	d.reapServices() // no connections: gone
	if err := o.DeleteMarkService(1, false); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("-f 1 after reaping: delete = %v, want %v", err, ebpf.ErrKeyNotExist)
	}
}
