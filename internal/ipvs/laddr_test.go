package ipvs

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func laddr(s, ifname string) LocalAddr {
	return LocalAddr{Addr: netip.MustParseAddr(s), Ifname: ifname}
}

func TestLocalAddrOperations(t *testing.T) {
	web := key(TCP, "10.0.0.1:80")
	dns := key(UDP, "[2001:db8::1]:53")
	for _, tc := range []struct {
		name string
		svc  ServiceKey
		la   LocalAddr
		want error
	}{
		{"ipv4", web, laddr("192.168.100.1", "dpdk0"), nil},
		{"ipv4 no ifname", web, laddr("192.168.100.1", ""), nil},
		{"ipv6", dns, laddr("2001:db8:1::1", ""), nil},
		{"no service", key(TCP, "10.0.0.2:80"), laddr("192.168.100.1", ""), ErrServiceNotDefined},
		{"ipv6 on ipv4", web, laddr("2001:db8:1::1", ""), ErrAddrFamily},
		{"ipv4 on ipv6", dns, laddr("192.168.100.1", ""), ErrAddrFamily},
		{"mapped on ipv6", dns, laddr("::ffff:192.168.100.1", ""), ErrInvalid},
		{"multicast", web, laddr("224.0.0.1", ""), ErrInvalid},
		{"zero net", web, laddr("0.0.0.1", ""), ErrInvalid},
		{"broadcast", web, laddr("255.255.255.255", ""), ErrInvalid},
		{"link-local v6", dns, laddr("fe80::1", ""), ErrInvalid},
		{"zone", dns, LocalAddr{Addr: netip.MustParseAddr("2001:db8::5%eth0")}, ErrInvalid},
		{"invalid addr", web, LocalAddr{}, ErrInvalid},
		{"ifname too long", web, laddr("192.168.100.1", "abcdefghijklmnop"), ErrInvalid},
		{"ifname 15", web, laddr("192.168.100.1", "abcdefghijklmno"), nil},
		{"ifname slash", web, laddr("192.168.100.1", "a/b"), ErrInvalid},
		{"ifname space", web, laddr("192.168.100.1", "a b"), ErrInvalid},
		{"ifname dot", web, laddr("192.168.100.1", "."), ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{Timeouts: DefaultTimeouts}
			for _, k := range []ServiceKey{web, dns} {
				if err := c.AddService(NewService(k)); err != nil {
					t.Fatal(err)
				}
			}
			before := c.Clone()
			err := c.AddLocalAddr(tc.svc, tc.la)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("AddLocalAddr(%v, %+v) = %v, want %v", tc.svc, tc.la, err, tc.want)
			}
			if err != nil {
				if !reflect.DeepEqual(c, before) {
					t.Errorf("refused AddLocalAddr changed the config")
				}
				return
			}
			if got := c.Service(tc.svc).LocalAddr(tc.la.Addr); got == nil || *got != tc.la {
				t.Errorf("LocalAddr(%v) = %v, want %+v", tc.la.Addr, got, tc.la)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestLocalAddrLifecycle(t *testing.T) {
	web := key(TCP, "10.0.0.1:80")
	other := key(UDP, "10.0.0.1:53")
	c := &Config{Timeouts: DefaultTimeouts}
	for _, k := range []ServiceKey{web, other} {
		if err := c.AddService(NewService(k)); err != nil {
			t.Fatal(err)
		}
	}
	a, b := laddr("192.168.100.1", "eth1"), laddr("192.168.100.2", "")
	for _, la := range []LocalAddr{a, b} {
		if err := c.AddLocalAddr(web, la); err != nil {
			t.Fatalf("AddLocalAddr(%+v): %v", la, err)
		}
	}
	// The same address on another service is fine: ports are per address.
	if err := c.AddLocalAddr(other, a); err != nil {
		t.Errorf("AddLocalAddr on a second service: %v", err)
	}
	// A duplicate is refused whatever its interface.
	if err := c.AddLocalAddr(web, laddr("192.168.100.1", "eth2")); !errors.Is(err, ErrLocalAddrExists) {
		t.Errorf("duplicate AddLocalAddr = %v, want %v", err, ErrLocalAddrExists)
	}
	if err := ErrLocalAddrExists.Error(); err != "Local address already exists" {
		t.Errorf("ErrLocalAddrExists = %q", err)
	}

	// A FULLNAT destination, with port mapping: its port is not forced.
	d := dest("10.1.1.1:8080", FwdFullNAT)
	if err := c.AddDest(web, d); err != nil {
		t.Fatalf("AddDest(FullNAT): %v", err)
	}
	if got := c.Service(web).Dest(d.AddrPort()); got == nil || got.Port != 8080 {
		t.Errorf("FullNAT dest = %+v, want port 8080 kept", got)
	}
	if err := c.AddDest(web, dest("[2001:db8::9]:80", FwdFullNAT)); !errors.Is(err, ErrMixedFamily) {
		t.Errorf("mixed-family FullNAT dest = %v, want %v", err, ErrMixedFamily)
	}

	// Clone copies the local addresses.
	cl := c.Clone()
	cl.Service(web).LocalAddrs[0].Ifname = "changed"
	if c.Service(web).LocalAddrs[0].Ifname != "eth1" {
		t.Error("Clone shares LocalAddrs with the original")
	}

	// -E keeps them, like the destinations.
	s := NewService(web)
	s.Sched = "rr"
	if err := c.EditService(s); err != nil {
		t.Fatal(err)
	}
	if got := c.Service(web).LocalAddrs; !reflect.DeepEqual(got, []LocalAddr{a, b}) {
		t.Errorf("after EditService LocalAddrs = %v, want %v", got, []LocalAddr{a, b})
	}
	// A new service cannot bring its own.
	n := NewService(key(TCP, "10.0.0.9:80"))
	n.LocalAddrs = []LocalAddr{a}
	if err := c.AddService(n); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddService with LocalAddrs = %v, want %v", err, ErrInvalid)
	}

	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	bad := c.Clone()
	bad.Service(web).LocalAddrs = append(bad.Service(web).LocalAddrs, a)
	if err := bad.Validate(); !errors.Is(err, ErrLocalAddrExists) {
		t.Errorf("Validate(duplicate local address) = %v, want %v", err, ErrLocalAddrExists)
	}

	// -Q matches the address only.
	if err := c.DeleteLocalAddr(web, a.Addr); err != nil {
		t.Fatalf("DeleteLocalAddr: %v", err)
	}
	if err := c.DeleteLocalAddr(web, a.Addr); !errors.Is(err, ErrNoLocalAddr) || err.Error() != "No such Local address" {
		t.Errorf("DeleteLocalAddr twice = %v, want %v", err, ErrNoLocalAddr)
	}
	if err := c.DeleteLocalAddr(key(TCP, "10.9.9.9:80"), a.Addr); !errors.Is(err, ErrServiceNotDefined) {
		t.Errorf("DeleteLocalAddr(no service) = %v, want %v", err, ErrServiceNotDefined)
	}
	if got := c.Service(web).LocalAddrs; !reflect.DeepEqual(got, []LocalAddr{b}) {
		t.Errorf("after DeleteLocalAddr LocalAddrs = %v, want %v", got, []LocalAddr{b})
	}
	if c.Service(other).LocalAddr(a.Addr) == nil {
		t.Error("DeleteLocalAddr removed the address from another service")
	}
	if err := c.DeleteService(web); err != nil {
		t.Fatal(err)
	}
	if err := c.AddService(NewService(web)); err != nil {
		t.Fatal(err)
	}
	if got := c.Service(web).LocalAddrs; len(got) != 0 {
		t.Errorf("re-added service has LocalAddrs %v", got)
	}
}
