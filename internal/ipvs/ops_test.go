package ipvs

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func key(proto Proto, s string) ServiceKey {
	a := netip.MustParseAddrPort(s)
	return ServiceKey{Proto: proto, Addr: a.Addr(), Port: a.Port()}
}

func dest(s string, fwd Fwd) Dest {
	d := NewDest(netip.MustParseAddrPort(s))
	d.Fwd = fwd
	return d
}

func TestOperations(t *testing.T) {
	web := key(TCP, "10.0.0.1:80")
	dns := key(UDP, "[2001:db8::1]:53")
	fw := FWMarkKey(7, false)
	type op func(c *Config) error
	for _, tc := range []struct {
		name string
		ops  []op
		want error // of the last op; all ops before must succeed
	}{
		{"add service", []op{func(c *Config) error { return c.AddService(NewService(web)) }}, nil},
		{"add service twice", []op{
			func(c *Config) error { return c.AddService(NewService(web)) },
			func(c *Config) error { return c.AddService(NewService(web)) },
		}, ErrServiceExists},
		{"zero port", []op{func(c *Config) error { return c.AddService(NewService(key(TCP, "10.0.0.1:0"))) }}, ErrZeroPort},
		{"zero port persistent", []op{func(c *Config) error {
			s := NewService(key(TCP, "10.0.0.1:0"))
			s.Persistent, s.Timeout = true, 360
			return c.AddService(s)
		}}, nil},
		{"ops on tcp", []op{func(c *Config) error {
			s := NewService(web)
			s.OnePacket = true
			return c.AddService(s)
		}}, ErrOnePacket},
		{"ops on udp", []op{func(c *Config) error {
			s := NewService(dns)
			s.OnePacket = true
			return c.AddService(s)
		}}, nil},
		{"ops on fwmark", []op{func(c *Config) error {
			s := NewService(fw)
			s.OnePacket = true
			return c.AddService(s)
		}}, nil},
		{"unknown scheduler", []op{func(c *Config) error {
			s := NewService(web)
			s.Sched = "fancy"
			return c.AddService(s)
		}}, ErrSchedNotFound},
		{"persistence engine", []op{func(c *Config) error {
			s := NewService(web)
			s.PE = "sip"
			return c.AddService(s)
		}}, ErrSchedNotFound},
		{"ipv6 netmask 0", []op{func(c *Config) error {
			s := NewService(dns)
			s.Netmask = 0
			return c.AddService(s)
		}}, ErrInvalid},
		{"edit missing", []op{func(c *Config) error { return c.EditService(NewService(web)) }}, ErrNoService},
		{"delete missing", []op{func(c *Config) error { return c.DeleteService(web) }}, ErrNoService},
		{"add dest no service", []op{func(c *Config) error { return c.AddDest(web, dest("1.1.1.1:80", FwdRoute)) }}, ErrServiceNotDefined},
		{"edit dest no service", []op{func(c *Config) error { return c.EditDest(web, dest("1.1.1.1:80", FwdRoute)) }}, ErrServiceNotDefined},
		{"delete dest no service", []op{func(c *Config) error { return c.DeleteDest(web, netip.MustParseAddrPort("1.1.1.1:80")) }}, ErrServiceNotDefined},
		{"dest twice", []op{
			func(c *Config) error { return c.AddService(NewService(web)) },
			func(c *Config) error { return c.AddDest(web, dest("1.1.1.1:80", FwdRoute)) },
			func(c *Config) error { return c.AddDest(web, dest("1.1.1.1:8080", FwdRoute)) }, // forced to :80
		}, ErrDestExists},
		{"edit missing dest", []op{
			func(c *Config) error { return c.AddService(NewService(web)) },
			func(c *Config) error { return c.EditDest(web, dest("1.1.1.1:80", FwdRoute)) },
		}, ErrNoDest},
		{"delete missing dest", []op{
			func(c *Config) error { return c.AddService(NewService(web)) },
			func(c *Config) error { return c.AddDest(web, dest("1.1.1.1:8080", FwdMasq)) },
			func(c *Config) error { return c.DeleteDest(web, netip.MustParseAddrPort("1.1.1.1:80")) },
		}, ErrNoDest},
		{"weight", []op{
			func(c *Config) error { return c.AddService(NewService(web)) },
			func(c *Config) error { d := dest("1.1.1.1:80", FwdRoute); d.Weight = 65536; return c.AddDest(web, d) },
		}, ErrRange},
		{"negative weight", []op{
			func(c *Config) error { return c.AddService(NewService(web)) },
			func(c *Config) error { d := dest("1.1.1.1:80", FwdRoute); d.Weight = -1; return c.AddDest(web, d) },
		}, ErrRange},
		{"thresholds", []op{
			func(c *Config) error { return c.AddService(NewService(web)) },
			func(c *Config) error { d := dest("1.1.1.1:80", FwdRoute); d.LThreshold = 1; return c.AddDest(web, d) },
		}, ErrRange},
		{"mixed family", []op{
			func(c *Config) error { return c.AddService(NewService(web)) },
			func(c *Config) error { return c.AddDest(web, dest("[2001:db8::2]:80", FwdMasq)) },
		}, ErrMixedFamily},
		{"mixed family tunnel", []op{
			func(c *Config) error { return c.AddService(NewService(web)) },
			func(c *Config) error { return c.AddDest(web, dest("[2001:db8::2]:80", FwdTunnel)) },
		}, nil},
		{"tunnel options on masq", []op{
			func(c *Config) error { return c.AddService(NewService(web)) },
			func(c *Config) error { d := dest("1.1.1.1:80", FwdMasq); d.TunType = TunGRE; return c.AddDest(web, d) },
		}, ErrTunnelOpts},
		{"gue without port", []op{
			func(c *Config) error { return c.AddService(NewService(web)) },
			func(c *Config) error {
				d := dest("1.1.1.1:80", FwdTunnel)
				d.TunType = TunGUE
				return c.AddDest(web, d)
			},
		}, ErrInvalid},
		{"multicast dest", []op{
			func(c *Config) error { return c.AddService(NewService(web)) },
			func(c *Config) error { return c.AddDest(web, dest("224.0.0.1:80", FwdRoute)) },
		}, ErrInvalid},
		{"zeronet dest", []op{
			func(c *Config) error { return c.AddService(NewService(web)) },
			func(c *Config) error { return c.AddDest(web, dest("0.1.2.3:80", FwdRoute)) },
		}, ErrInvalid},
		{"link-local dest", []op{
			func(c *Config) error { return c.AddService(NewService(dns)) },
			func(c *Config) error { return c.AddDest(dns, dest("[fe80::1]:53", FwdRoute)) },
		}, ErrInvalid},
		{"timeouts", []op{func(c *Config) error { return c.SetTimeouts(Timeouts{TCP: MaxTimeout + 1}) }}, ErrInvalid},
		{"incompatible flag", []op{func(c *Config) error {
			s := NewService(web)
			s.SchedFlags = []string{"sh-port"}
			return c.AddService(s)
		}}, &Error{Msg: "incompatible scheduler flag `sh-port'"}},
		{"invalid flag", []op{func(c *Config) error {
			s := NewService(web)
			s.SchedFlags = []string{"flag-9"}
			return c.AddService(s)
		}}, &Error{Msg: "invalid scheduler flag `flag-9'"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{Timeouts: DefaultTimeouts}
			for i, o := range tc.ops[:len(tc.ops)-1] {
				if err := o(c); err != nil {
					t.Fatalf("op %d: %v", i, err)
				}
			}
			before := c.Clone()
			err := tc.ops[len(tc.ops)-1](c)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || err.Error() != tc.want.Error() {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !reflect.DeepEqual(c, before) {
				t.Errorf("failed operation changed the config: %+v, want %+v", c, before)
			}
		})
	}
}

func TestOperationSemantics(t *testing.T) {
	web := key(TCP, "10.0.0.1:80")
	c := &Config{Timeouts: DefaultTimeouts}
	s := NewService(web)
	s.Sched, s.SchedFlags = "sh", []string{"flag-2", "flag-1", "sh-port"}
	s.Persistent, s.Timeout = true, 60
	must(t, c.AddService(s))
	got := c.Service(web)
	if got.Sched != "sh" || !reflect.DeepEqual(got.SchedFlags, []string{"sh-fallback", "sh-port"}) {
		t.Errorf("AddService stored %q %q, want sh [sh-fallback sh-port]", got.Sched, got.SchedFlags)
	}
	must(t, c.AddDest(web, dest("10.1.0.1:8080", FwdRoute)))
	must(t, c.AddDest(web, dest("10.1.0.2:8080", FwdMasq)))
	must(t, c.AddDest(web, dest("10.1.0.3:8080", FwdTunnel)))
	wantPorts := []uint16{80, 8080, 80}
	for i, d := range c.Service(web).Dests {
		if d.Port != wantPorts[i] {
			t.Errorf("dest %v port %d, want %d", d.Addr, d.Port, wantPorts[i])
		}
	}
	// EditService replaces every setting and keeps the destinations.
	must(t, c.EditService(NewService(web)))
	got = c.Service(web)
	if got.Sched != "wlc" || got.Persistent || got.Timeout != 0 || len(got.SchedFlags) != 0 || len(got.Dests) != 3 {
		t.Errorf("after EditService: %+v", got)
	}
	// EditDest replaces every setting and keeps the position.
	e := dest("10.1.0.2:8080", FwdMasq)
	e.Weight = 9
	must(t, c.EditDest(web, e))
	if d := c.Service(web).Dests[1]; d.Weight != 9 || d.Addr != e.Addr {
		t.Errorf("after EditDest: %+v", d)
	}
	must(t, c.DeleteDest(web, netip.MustParseAddrPort("10.1.0.1:80")))
	if n := len(c.Service(web).Dests); n != 2 {
		t.Errorf("after DeleteDest: %d dests, want 2", n)
	}
	// Firewall-mark services are found by mark and family.
	must(t, c.AddService(NewService(ServiceKey{FWMark: 3})))
	must(t, c.AddService(NewService(FWMarkKey(3, true))))
	if c.Service(ServiceKey{FWMark: 3, Proto: TCP}) == nil {
		t.Error("fwmark 3 not found with a protocol in its key")
	}
	if err := c.AddService(NewService(FWMarkKey(3, false))); !errors.Is(err, ErrServiceExists) {
		t.Errorf("second fwmark 3: %v, want %v", err, ErrServiceExists)
	}
	must(t, c.SetTimeouts(Timeouts{TCPFin: 5}))
	if c.Timeouts != (Timeouts{TCP: 900, TCPFin: 5, UDP: 300}) {
		t.Errorf("SetTimeouts: %+v", c.Timeouts)
	}
	must(t, c.DeleteService(web))
	c.Clear()
	if len(c.Services) != 0 || c.Timeouts.TCPFin != 5 {
		t.Errorf("after Clear: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
