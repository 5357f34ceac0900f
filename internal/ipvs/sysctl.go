package ipvs

import (
	"fmt"
	"strconv"
	"strings"
)

// Sysctls are the IPVS sysctls (net.ipv4.vs.*) xlb implements. The zero
// value is the kernel's default for each.
type Sysctls struct {
	// ExpireNodestConn is net.ipv4.vs.expire_nodest_conn: a packet of a
	// connection whose real server was removed expires the connection
	// (and is dropped). Off, the connection keeps its real server until it
	// ends.
	ExpireNodestConn bool
	// ExpireQuiescentTemplate is net.ipv4.vs.expire_quiescent_template: a
	// persistence template whose real server has weight 0 is expired, so
	// the client's next connection is scheduled anew.
	ExpireQuiescentTemplate bool
	// SloppyTCP is net.ipv4.vs.sloppy_tcp: any TCP segment, not only a
	// SYN, may start a connection. A director that takes over flows it
	// did not see begin (an ECMP rehash, a failover without sync) then
	// schedules them mid-stream; with mh every director picks the same
	// real server for them, so they survive.
	SloppyTCP bool
}

// sysctlNames are the names Sysctls.Set takes and String writes, in that
// order.
var sysctlNames = []string{"net.ipv4.vs.expire_nodest_conn", "net.ipv4.vs.expire_quiescent_template", "net.ipv4.vs.sloppy_tcp"}

func (s *Sysctls) field(name string) *bool {
	switch strings.TrimPrefix(strings.ReplaceAll(name, "/", "."), "net.ipv4.vs.") {
	case "expire_nodest_conn":
		return &s.ExpireNodestConn
	case "expire_quiescent_template":
		return &s.ExpireQuiescentTemplate
	case "sloppy_tcp":
		return &s.SloppyTCP
	}
	return nil
}

// Set sets one sysctl from sysctl(8)'s NAME=VALUE form:
// "net.ipv4.vs.expire_nodest_conn=1" (the net.ipv4.vs. prefix may be left
// out; / separators are taken as sysctl -w takes them). Values are
// integers, nonzero for on, as in the kernel. On error s is unchanged.
func (s *Sysctls) Set(assign string) error {
	name, val, ok := strings.Cut(assign, "=")
	if !ok {
		return fmt.Errorf("sysctl %q: want NAME=VALUE", assign)
	}
	name, val = strings.TrimSpace(name), strings.TrimSpace(val)
	f := s.field(name)
	if f == nil {
		return fmt.Errorf("sysctl %s: unknown (xlb has %s)", name, strings.Join(sysctlNames, ", "))
	}
	n, err := strconv.ParseInt(val, 10, 32)
	if err != nil {
		return fmt.Errorf("sysctl %s: value %q: want an integer", name, val)
	}
	*f = n != 0
	return nil
}

// Lines are the sysctls as `sysctl NAME` prints them, one per line.
func (s Sysctls) Lines() []string {
	out := make([]string, len(sysctlNames))
	for i, n := range sysctlNames {
		v := 0
		if *s.field(n) {
			v = 1
		}
		out[i] = fmt.Sprintf("%s = %d", n, v)
	}
	return out
}
