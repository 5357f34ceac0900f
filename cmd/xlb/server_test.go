//go:build linux

package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/director"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/ipvsadm"
)

func testHandle(t *testing.T) *server {
	t.Helper()
	cfg, err := ipvsadm.ParseRules(strings.NewReader(testRules))
	if err != nil {
		t.Fatal(err)
	}
	return newServer(t, &fakeDataplane{}, cfg, -1)
}

// Commands change the configuration through the director; listings show
// what runs, overlays included; -Z of a missing service is refused.
func TestServerThroughDirector(t *testing.T) {
	s := testHandle(t)
	if r := s.handle(request{Args: []string{"-a", "-t", "198.18.0.100:80", "-r", "198.18.0.12:80", "-w", "4"}}); r.Code != 0 {
		t.Fatalf("-a: %+v", r)
	}
	if n := len(s.dir.Config().Service(ipvs.ServiceKey{Proto: ipvs.TCP, Addr: netip.MustParseAddr("198.18.0.100"), Port: 80}).Dests); n != 2 {
		t.Fatalf("after -a: %d dests, want 2", n)
	}
	k := s.dir.Config().Services[0].Key
	if err := s.dir.SetDestState(k, netip.MustParseAddrPort("198.18.0.12:80"), director.DestInhibited); err != nil {
		t.Fatal(err)
	}
	r := s.handle(request{Args: []string{"-S", "-n"}})
	if !strings.Contains(r.Stdout, "-a -t 198.18.0.100:80 -r 198.18.0.12:80 -g -w 0\n") {
		t.Errorf("-S -n with 198.18.0.12 inhibited:\n%s", r.Stdout)
	}
	if w := s.dir.Config().Services[0].Dest(netip.MustParseAddrPort("198.18.0.12:80")).Weight; w != 4 {
		t.Errorf("operator weight %d, want 4", w)
	}
	if r := s.handle(request{Args: []string{"-Z", "-t", "198.18.0.1:80"}}); r.Code == 0 {
		t.Errorf("-Z of a missing service: %+v", r)
	}
	gen := s.dir.Generation()
	if r := s.handle(request{Args: []string{"-R"}, Stdin: "-A -t 198.18.0.100:80\n"}); r.Code == 0 || s.dir.Generation() != gen {
		t.Errorf("-R of an existing service: %+v, generation %d -> %d", r, gen, s.dir.Generation())
	}
}

func TestServerSysctl(t *testing.T) {
	s := testHandle(t)
	for _, tc := range []struct {
		args []string
		out  string
		code int
	}{
		{[]string{"sysctl"}, "net.ipv4.vs.expire_nodest_conn = 0\nnet.ipv4.vs.expire_quiescent_template = 0\nnet.ipv4.vs.sloppy_tcp = 0\n", 0},
		{[]string{"sysctl", "net.ipv4.vs.sloppy_tcp=1"}, "net.ipv4.vs.sloppy_tcp = 1\n", 0},
		{[]string{"sysctl", "-w", "net.ipv4.vs.expire_nodest_conn=1"}, "net.ipv4.vs.expire_nodest_conn = 1\n", 0},
		{[]string{"sysctl", "net.ipv4.vs.expire_nodest_conn"}, "net.ipv4.vs.expire_nodest_conn = 1\n", 0},
		{[]string{"sysctl", "net/ipv4/vs/expire_quiescent_template"}, "net.ipv4.vs.expire_quiescent_template = 0\n", 0},
		{[]string{"sysctl", "net.ipv4.vs.expire_nodest_conn=x"}, "", 255},
		{[]string{"sysctl", "net.ipv4.vs.nosuch"}, "", 255},
	} {
		r := s.handle(request{Args: tc.args})
		if r.Stdout != tc.out || r.Code != tc.code {
			t.Errorf("xlb %s = %q (%s) exit %d, want %q exit %d", strings.Join(tc.args, " "), r.Stdout, r.Stderr, r.Code, tc.out, tc.code)
		}
	}
	if !s.dir.Sysctls().ExpireNodestConn {
		t.Error("expire_nodest_conn not set")
	}
}
