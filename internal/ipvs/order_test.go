package ipvs

import (
	"fmt"
	"net/netip"
	"testing"
)

func names(svcs []Service) string {
	s := ""
	for _, v := range svcs {
		if v.Key.IsFWMark() {
			s += fmt.Sprintf("fwm%d ", v.Key.FWMark)
		} else {
			s += fmt.Sprintf("%v:%d ", v.Key.Addr, v.Key.Port)
		}
	}
	return s
}

func TestCompareServices(t *testing.T) {
	for _, tc := range []struct {
		a, b ServiceKey
		sign int
	}{
		{key(TCP, "10.0.0.1:80"), key(TCP, "10.0.0.2:80"), -1},
		{key(TCP, "10.0.0.1:80"), key(TCP, "10.0.0.1:81"), -1},
		// 0x0a000001 - 0xc0a80001 wraps to a positive int.
		{key(TCP, "10.0.0.1:80"), key(TCP, "192.168.0.1:80"), 1},
		{key(TCP, "192.168.0.1:80"), key(TCP, "10.0.0.1:80"), -1},
		{key(TCP, "10.0.0.1:80"), key(TCP, "100.0.0.1:80"), -1},
		{key(TCP, "10.0.0.1:80"), key(UDP, "1.0.0.1:80"), -1},
		{key(UDP, "1.0.0.1:80"), key(SCTP, "1.0.0.1:80"), -1},
		{key(UDP, "9.9.9.9:80"), key(TCP, "[::1]:80"), -1}, // family first
		{key(TCP, "[2001:db8::1]:80"), key(TCP, "[2001:db8::2]:80"), -1},
		{key(TCP, "[2001:db8::1]:80"), key(TCP, "[f001:db8::1]:80"), 1}, // first word wraps
		{key(TCP, "10.0.0.1:80"), FWMarkKey(1, false), -1},
		{FWMarkKey(1, false), FWMarkKey(2, false), -1},
		{FWMarkKey(1, false), FWMarkKey(1, true), -1},
		// 0 - 3000000000 wraps: that mark sorts before ordinary services.
		{key(TCP, "10.0.0.1:80"), FWMarkKey(3000000000, false), 1},
	} {
		got := CompareServices(tc.a, tc.b)
		if sign(got) != tc.sign {
			t.Errorf("CompareServices(%v, %v) = %d, want sign %d", tc.a, tc.b, got, tc.sign)
		}
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// TestSortedServicesCycle: 10.0.0.1 < 100.0.0.1 < 192.168.0.1 < 10.0.0.1
// under the wrapping comparison, so the result depends on the input order
// and on the algorithm. The wants are glibc msort traced by hand.
func TestSortedServicesCycle(t *testing.T) {
	a := NewService(key(TCP, "10.0.0.1:80"))
	b := NewService(key(TCP, "100.0.0.1:80"))
	c := NewService(key(TCP, "192.168.0.1:80"))
	for _, tc := range []struct {
		in   []Service
		want string
	}{
		// [a] + sort([b c]) = [a] + [b c]; a <= b: a b c.
		{[]Service{a, b, c}, "10.0.0.1:80 100.0.0.1:80 192.168.0.1:80 "},
		// [c] + sort([b a]) = [c] + [a b]; c <= a: c a b.
		{[]Service{c, b, a}, "192.168.0.1:80 10.0.0.1:80 100.0.0.1:80 "},
		// [b] + sort([c a]) = [b] + [c a]; b <= c: b c a.
		{[]Service{b, c, a}, "100.0.0.1:80 192.168.0.1:80 10.0.0.1:80 "},
	} {
		if got := names(SortedServices(tc.in)); got != tc.want {
			t.Errorf("SortedServices(%s) = %s, want %s", names(tc.in), got, tc.want)
		}
	}
}

func TestSortedServicesStable(t *testing.T) {
	var in []Service
	for i := 20; i > 0; i-- {
		in = append(in, NewService(key(TCP, fmt.Sprintf("10.0.0.%d:80", i))))
	}
	in = append(in, NewService(FWMarkKey(9, false)), NewService(FWMarkKey(3, true)))
	got := SortedServices(in)
	for i := 1; i < len(got); i++ {
		if CompareServices(got[i-1].Key, got[i].Key) > 0 {
			t.Fatalf("SortedServices out of order at %d: %s", i, names(got))
		}
	}
	if names(in[:1]) != "10.0.0.20:80 " {
		t.Error("SortedServices changed its input")
	}
}

func TestDestOrder(t *testing.T) {
	s := NewService(key(TCP, "10.0.0.1:80"))
	for _, a := range []string{"10.0.1.2:80", "192.168.1.1:80", "10.0.1.1:80", "10.0.1.1:81"} {
		s.Dests = append(s.Dests, NewDest(netip.MustParseAddrPort(a)))
	}
	str := func(ds []Dest) string {
		out := ""
		for _, d := range ds {
			out += d.AddrPort().String() + " "
		}
		return out
	}
	if got, want := str(s.KernelDests()), "10.0.1.1:81 10.0.1.1:80 192.168.1.1:80 10.0.1.2:80 "; got != want {
		t.Errorf("KernelDests = %s, want %s", got, want)
	}
	if got, want := str(s.SortedDests()), "192.168.1.1:80 10.0.1.1:80 10.0.1.1:81 10.0.1.2:80 "; got != want {
		t.Errorf("SortedDests = %s, want %s", got, want)
	}
	if got := str(s.Dests); got != "10.0.1.2:80 192.168.1.1:80 10.0.1.1:80 10.0.1.1:81 " {
		t.Errorf("ordering changed Dests: %s", got)
	}
}

func TestValidate(t *testing.T) {
	web := key(TCP, "10.0.0.1:80")
	good := Config{Timeouts: DefaultTimeouts, Services: []Service{NewService(web)}}
	good.Services[0].Dests = []Dest{NewDest(netip.MustParseAddrPort("10.1.1.1:80"))}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
	for name, mod := range map[string]func(c *Config){
		"dr port":      func(c *Config) { c.Services[0].Dests[0].Port = 8080 },
		"duplicate":    func(c *Config) { c.Services = append(c.Services, c.Services[0]) },
		"no timeouts":  func(c *Config) { c.Timeouts = Timeouts{} },
		"flag names":   func(c *Config) { c.Services[0].Sched, c.Services[0].SchedFlags = "sh", []string{"flag-1"} },
		"no scheduler": func(c *Config) { c.Services[0].Sched = "" },
		"bad weight":   func(c *Config) { c.Services[0].Dests[0].Weight = -5 },
		"dup dest":     func(c *Config) { c.Services[0].Dests = append(c.Services[0].Dests, c.Services[0].Dests[0]) },
		"zone":         func(c *Config) { c.Services[0].Key.Addr = netip.MustParseAddr("fe80::1%eth0") },
		"ipv6 /0 mask": func(c *Config) {
			c.Services[0].Key.Addr = netip.MustParseAddr("2001:db8::1")
			c.Services[0].Netmask = 0
		},
		"timeout alone": func(c *Config) { c.Services[0].Timeout = 5 },
	} {
		c := good.Clone()
		mod(c)
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%s) succeeded", name)
		}
	}
}
