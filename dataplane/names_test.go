package dataplane

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// TestMessagesNameThings: refusals name the protocol, the method and the
// addresses as an ipvsadm user writes them (IPv6 in brackets), not the
// internal enum numbers.
func TestMessagesNameThings(t *testing.T) {
	v6 := ipvs.ServiceKey{Proto: ipvs.TCP, Addr: netip.MustParseAddr("2001:db8::1"), Port: 80}
	dest := func(fwd ipvs.Fwd) []ipvs.Dest {
		return []ipvs.Dest{{Addr: netip.MustParseAddr("2001:db8::10"), Port: 8080, Weight: 1, Fwd: fwd, TunType: 9}}
	}
	for _, c := range []struct {
		svc    ipvs.Service
		queues int
		want   string
	}{
		{ipvs.Service{Key: ipvs.ServiceKey{Proto: ipvs.SCTP, Addr: v6.Addr, Port: 80}}, 1,
			"service SCTP [2001:db8::1]:80: SCTP services are not supported"},
		{ipvs.Service{Key: ipvs.ServiceKey{Proto: 50, Addr: netip.MustParseAddr("192.0.2.1"), Port: 0}}, 1,
			"service protocol 50 192.0.2.1:0: protocol 50 services are not supported"},
		{ipvs.Service{Key: ipvs.FWMarkKey(3, true), Dests: dest(ipvs.FwdTunnel)}, 2,
			"service fwmark 3 (IPv6) destination [2001:db8::10]:8080: an unknown tunnel type is not supported"},
		{ipvs.Service{Key: v6, Dests: dest(ipvs.FwdTunnel)}, 1,
			"service TCP [2001:db8::1]:80 destination [2001:db8::10]:8080: an unknown tunnel type is not supported"},
	} {
		err := supported(&c.svc, c.queues)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || !errors.Is(err, ErrNotSupported) {
			t.Errorf("supported(%v) = %v, want %q...", c.svc.Key, err, c.want)
		}
	}
	for _, c := range []struct {
		k    ipvs.ServiceKey
		want string
	}{
		{v6, "TCP [2001:db8::1]:80"},
		{ipvs.ServiceKey{Proto: ipvs.UDP, Addr: netip.MustParseAddr("192.0.2.1"), Port: 53}, "UDP 192.0.2.1:53"},
		{ipvs.ServiceKey{FWMark: 7, Addr: netip.IPv4Unspecified()}, "fwmark 7"},
		{ipvs.ServiceKey{FWMark: 7, Addr: netip.IPv6Unspecified()}, "fwmark 7 (IPv6)"},
	} {
		if got := c.k.String(); got != c.want {
			t.Errorf("%+v.String() = %q, want %q", c.k, got, c.want)
		}
	}
	for tt, want := range map[ipvs.TunType]string{ipvs.TunIPIP: "ipip tunneling (--tun-type ipip)", ipvs.TunGUE: "gue tunneling (--tun-type gue)", ipvs.TunGRE: "gre tunneling (--tun-type gre)"} {
		if got := tunName(tt); got != want {
			t.Errorf("tunName(%d) = %q, want %q", tt, got, want)
		}
	}
}

// TestApplyTwiceNamesService: a service given twice is named with its
// protocol and a bracketed IPv6 address.
func TestApplyTwiceNamesService(t *testing.T) {
	d, _ := testDataplane(t, 4)
	svc := ipvs.Service{Key: ipvs.ServiceKey{Proto: ipvs.TCP, Addr: netip.MustParseAddr("2001:db8::1"), Port: 80}, Sched: "rr"}
	err := d.Apply(&ipvs.Config{Services: []ipvs.Service{svc, svc}})
	if want := "service TCP [2001:db8::1]:80 defined twice"; err == nil || err.Error() != want {
		t.Errorf("Apply of a service twice = %v, want %q", err, want)
	}
}
