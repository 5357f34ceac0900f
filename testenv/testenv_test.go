//go:build linux

package testenv

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// Without a load balancer, the real servers answer on their own
// addresses and the director's stack answers ping-able traffic: the
// topology itself works.
func TestTopologyDirect(t *testing.T) {
	RequireRoot(t)
	env := New(t, DefaultOptions())
	c := env.Client.HTTPClient(false, 3*time.Second)
	for i, rs := range env.Reals {
		name, err := Get(c, fmt.Sprintf("http://%v/", RealAddr(i)))
		if err != nil {
			t.Fatalf("GET from %s: %v", rs.Name, err)
		}
		if name != rs.Name {
			t.Errorf("GET %v answered %q, want %q", RealAddr(i), name, rs.Name)
		}
		got, err := env.Client.QueryUDP(netip.AddrPortFrom(RealAddr(i), 53), 2*time.Second)
		if err != nil || got != rs.Name {
			t.Errorf("UDP query to %v = %q, %v; want %q", RealAddr(i), got, err, rs.Name)
		}
	}
	if out, err := env.Client.Command("ping", "-c1", "-W2", DirectorAddr.String()).CombinedOutput(); err != nil {
		t.Errorf("ping director: %v\n%s", err, out)
	}
}
