package ipvs

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestSchedFlags(t *testing.T) {
	for _, tc := range []struct {
		sched string
		flags []string
		want  []string
		err   string
	}{
		{"", []string{"flag-2"}, []string{"flag-2"}, ""},
		{"rr", []string{"flag-3", "flag-1", "flag-1"}, []string{"flag-1", "flag-3"}, ""},
		{"sh", []string{"sh-port", "flag-1"}, []string{"sh-fallback", "sh-port"}, ""},
		{"mh", []string{"flag-2", "mh-fallback"}, []string{"mh-fallback", "mh-port"}, ""},
		{"sh", []string{"flag-3"}, nil, "incompatible scheduler flag `flag-3'"},
		{"mh", []string{"sh-port"}, nil, "incompatible scheduler flag `sh-port'"},
		{"wlc", []string{"sh-fallback"}, nil, "incompatible scheduler flag `sh-fallback'"},
		{"sh", []string{"mh-port"}, nil, "incompatible scheduler flag `mh-port'"},
		{"rr", []string{"mh-fallback"}, nil, "incompatible scheduler flag `mh-fallback'"},
		{"rr", []string{"Flag-1"}, nil, "invalid scheduler flag `Flag-1'"},
	} {
		bits, err := SchedFlagBits(tc.sched, tc.flags)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("SchedFlagBits(%q, %q) error = %v, want %q", tc.sched, tc.flags, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("SchedFlagBits(%q, %q): %v", tc.sched, tc.flags, err)
			continue
		}
		sched := tc.sched
		if sched == "" {
			sched = DefaultSched
		}
		if got := SchedFlagNames(sched, bits); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SchedFlagNames(%q, SchedFlagBits(%q)) = %q, want %q", sched, tc.flags, got, tc.want)
		}
	}
	if !KnownScheduler("twos") || KnownScheduler("none") || len(Schedulers()) != 14 {
		t.Errorf("scheduler list: %v", Schedulers())
	}
}

func TestTunnelChecks(t *testing.T) {
	svcKey := key(TCP, "10.0.0.1:80")
	for _, tc := range []struct {
		name string
		d    Dest
		ok   bool
	}{
		{"ipip", Dest{TunType: TunIPIP}, true},
		{"ipip port", Dest{TunType: TunIPIP, TunPort: 1}, false},
		{"ipip csum", Dest{TunType: TunIPIP, TunFlags: TunCsum}, false},
		{"gue", Dest{TunType: TunGUE, TunPort: 6080, TunFlags: TunRemCsum}, true},
		{"gue no port", Dest{TunType: TunGUE}, false},
		{"gue bad flags", Dest{TunType: TunGUE, TunPort: 1, TunFlags: 3}, false},
		{"gre", Dest{TunType: TunGRE, TunFlags: TunCsum}, true},
		{"gre port", Dest{TunType: TunGRE, TunPort: 1}, false},
		{"gre remcsum", Dest{TunType: TunGRE, TunFlags: TunRemCsum}, false},
		{"unknown type", Dest{TunType: 3}, false},
	} {
		c := &Config{}
		must(t, c.AddService(NewService(svcKey)))
		d := tc.d
		d.Addr, d.Fwd, d.Weight = netip.MustParseAddr("10.1.1.1"), FwdTunnel, 1
		err := c.AddDest(svcKey, d)
		if (err == nil) != tc.ok {
			t.Errorf("%s: AddDest = %v, want ok %v", tc.name, err, tc.ok)
		}
		if got := c.Service(svcKey).Dest(netip.MustParseAddrPort("10.1.1.1:80")); (got != nil) != tc.ok {
			t.Errorf("%s: Dest lookup = %v", tc.name, got)
		}
	}
}
