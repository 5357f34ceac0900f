package main

import (
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// TestExitCodes: each class of failure exits as ipvsadm 1.31's does. A
// change the kernel refuses prints ipvs_strerror and exits 255 (main
// returns process_options's -1), as does a line popt cannot scan
// (tryhelp_exit(-1)); a bad command line is fail(2); a listing of one
// missing service is list_service's exit(1).
func TestExitCodes(t *testing.T) {
	cfg, err := ipvsadm.ParseRules(strings.NewReader(testRules))
	if err != nil {
		t.Fatal(err)
	}
	fdp := &fakeDataplane{}
	s := newServer(t, fdp, cfg, -1)
	for _, c := range []struct {
		args   string
		code   int
		stderr string
	}{
		{"-A -t 198.18.0.100:80", 255, "Service already exists\n"},
		{"-e -t 198.18.0.100:80 -r 198.18.0.12", 255, "No such destination\n"},
		{"-d -t 198.18.0.100:80 -r 198.18.0.12", 255, "No such destination\n"},
		{"-a -t 198.18.0.100:80 -r 198.18.0.12 -y 5", 255, "Numerical result out of range\n"},
		{"-a -t 198.18.0.200:80 -r 198.18.0.12", 255, "Service not defined\n"},
		{"-D -t 198.18.0.200:80", 255, "No such service\n"},
		{"-Z -t 198.18.0.200:80", 255, "No such service\n"},
		{"-A -t 198.18.0.101:80 -s nosuch", 255, "Scheduler or persistence engine not found\n"},
		{"-L -n -t 198.18.0.200:80", 1, "No such service\n"},
		{"-a -t 198.18.0.100:80 -r 198.18.0.12 -w 70000", 2, "illegal weight specified\n"},
		{"-A -t 198.18.0.101:0", 2, "Zero port specified for non-persistent service\n"},
		{"-t 198.18.0.100:80", 255, "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n"},
		{"-L -n -t 198.18.0.100:80", 0, ""},
	} {
		r := s.handle(request{Args: strings.Fields(c.args)})
		if r.Code != c.code || r.Stderr != c.stderr {
			t.Errorf("ipvsadm %s = exit %d, stderr %q; want exit %d, %q", c.args, r.Code, r.Stderr, c.code, c.stderr)
		}
	}

	// The dataplane's refusal of a valid change is the kernel's refusal.
	fdp.refuse = true
	r := s.handle(request{Args: strings.Fields("-a -t 198.18.0.100:80 -r 198.18.0.12")})
	if r.Code != 255 || !strings.Contains(r.Stderr, "too many destinations") {
		t.Errorf("refused by the dataplane: exit %d, stderr %q; want exit 255 and the reason", r.Code, r.Stderr)
	}
}
