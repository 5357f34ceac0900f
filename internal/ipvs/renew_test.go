package ipvs

import (
	"net/netip"
	"testing"
)

// TestRenewed: a service deleted (DeleteService, Clear) and added again
// is Renewed in that copy and its clones, until Settled; a service only
// added, only deleted, or edited is not.
func TestRenewed(t *testing.T) {
	k := ServiceKey{Proto: TCP, Addr: netip.MustParseAddr("192.0.2.1"), Port: 80}
	other := ServiceKey{Proto: UDP, Addr: netip.MustParseAddr("192.0.2.1"), Port: 53}
	base := func(t *testing.T) *Config {
		c := &Config{Timeouts: DefaultTimeouts}
		for _, key := range []ServiceKey{k, other} {
			if err := c.AddService(NewService(key)); err != nil {
				t.Fatal(err)
			}
		}
		return c
	}
	for _, tc := range []struct {
		name        string
		ops         func(c *Config) error
		renewed     bool // k
		otherRenews bool
	}{
		{"added", func(c *Config) error { return nil }, false, false},
		{"edited", func(c *Config) error { s := NewService(k); s.Sched = "rr"; return c.EditService(s) }, false, false},
		{"deleted", func(c *Config) error { return c.DeleteService(k) }, false, false},
		{"deleted, added", func(c *Config) error {
			if err := c.DeleteService(k); err != nil {
				return err
			}
			return c.AddService(NewService(k))
		}, true, false},
		{"cleared, added", func(c *Config) error {
			c.Clear()
			return c.AddService(NewService(k))
		}, true, false},
		{"deleted, added, deleted", func(c *Config) error {
			if err := c.DeleteService(k); err != nil {
				return err
			}
			if err := c.AddService(NewService(k)); err != nil {
				return err
			}
			return c.DeleteService(k)
		}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base(t)
			if err := tc.ops(c); err != nil {
				t.Fatal(err)
			}
			if got := c.Renewed(k); got != tc.renewed {
				t.Errorf("Renewed(%v) = %v, want %v", k, got, tc.renewed)
			}
			if got := c.Renewed(other); got != tc.otherRenews {
				t.Errorf("Renewed(%v) = %v, want %v", other, got, tc.otherRenews)
			}
			if got := c.Clone().Renewed(k); got != tc.renewed {
				t.Errorf("Clone().Renewed(%v) = %v, want %v", k, got, tc.renewed)
			}
			s := c.Settled()
			if s.Renewed(k) || s.Clone().Renewed(k) {
				t.Errorf("Settled().Renewed(%v) = true, want false", k)
			}
			if tc.renewed && !c.Renewed(k) {
				t.Errorf("Settled changed its receiver")
			}
			// A settled copy adding the service again, without deleting it
			// first, is refused and renews nothing.
			n := s.Clone()
			if n.Service(k) != nil {
				if err := n.AddService(NewService(k)); err != ErrServiceExists {
					t.Errorf("AddService of an existing service = %v, want %v", err, ErrServiceExists)
				}
				if n.Renewed(k) {
					t.Errorf("Renewed after a refused AddService = true, want false")
				}
			}
		})
	}

	// Clear renews what it did not hold: a rules file read from empty
	// that starts with -C.
	c := &Config{Timeouts: DefaultTimeouts}
	c.Clear()
	if err := c.AddService(NewService(k)); err != nil {
		t.Fatal(err)
	}
	if !c.Renewed(k) {
		t.Errorf("-C on an empty configuration, then -A: Renewed = false, want true")
	}
	// A fwmark key is found by mark and family alone.
	m := FWMarkKey(7, false)
	c = &Config{Timeouts: DefaultTimeouts}
	if err := c.AddService(NewService(m)); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteService(m); err != nil {
		t.Fatal(err)
	}
	if err := c.AddService(NewService(m)); err != nil {
		t.Fatal(err)
	}
	if !c.Renewed(ServiceKey{FWMark: 7, Proto: TCP}) {
		t.Errorf("Renewed(fwmark 7 with a protocol) = false, want true (the mark's service)")
	}
}
