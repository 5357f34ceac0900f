package ipvsadm

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvs"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func tcpKey(s string) ipvs.ServiceKey {
	a := ap(s)
	return ipvs.ServiceKey{Proto: ipvs.TCP, Addr: a.Addr(), Port: a.Port()}
}

func TestParseRules(t *testing.T) {
	in := `# ipvsadm-save -n
-A -t 10.0.0.100:80 -s rr
-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g -w 1
ipvsadm -a -t 10.0.0.100:80 -r 10.0.0.12:8080 -m -w 3   # NAT
	
-A -u [2001:db8::1]:domain -s sh -b sh-port -p
-A -f 5 -6 -s mh -b mh-fallback,flag-2 -p 100 -M 64
-a -f 5 -6 -r [2001:db8::9]:0 -i --tun-type gue --tun-port 6080 --tun-csum
-a -t 10.0.0.100:80 -r 10.0.0.13:9999 -i -w 0 -x 10 -y 5
--set 0 60 0
-A -t 10.0.0.101:443
-D -t 10.0.0.101:443
-e -t 10.0.0.100:80 -r 10.0.0.11 -g -w 7`
	got, err := ParseRules(strings.NewReader(in))
	if err != nil {
		t.Fatalf("ParseRules: %v", err)
	}
	web := tcpKey("10.0.0.100:80")
	want := &ipvs.Config{
		Timeouts: ipvs.Timeouts{TCP: 900, TCPFin: 60, UDP: 300},
		Services: []ipvs.Service{
			{Key: web, Sched: "rr", Netmask: 32, Dests: []ipvs.Dest{
				{Addr: ap("10.0.0.11:80").Addr(), Port: 80, Fwd: ipvs.FwdRoute, Weight: 7},
				{Addr: ap("10.0.0.12:1").Addr(), Port: 8080, Fwd: ipvs.FwdMasq, Weight: 3},
				// A tunnel destination takes the service's port.
				{Addr: ap("10.0.0.13:1").Addr(), Port: 80, Fwd: ipvs.FwdTunnel, Weight: 0, UThreshold: 10, LThreshold: 5},
			}},
			{Key: ipvs.ServiceKey{Proto: ipvs.UDP, Addr: netip.MustParseAddr("2001:db8::1"), Port: 53},
				Sched: "sh", SchedFlags: []string{"sh-port"}, Persistent: true, Timeout: 360, Netmask: 128},
			{Key: ipvs.FWMarkKey(5, true), Sched: "mh", SchedFlags: []string{"mh-fallback", "mh-port"},
				Persistent: true, Timeout: 100, Netmask: 64, Dests: []ipvs.Dest{
					{Addr: netip.MustParseAddr("2001:db8::9"), Fwd: ipvs.FwdTunnel, Weight: 1,
						TunType: ipvs.TunGUE, TunPort: 6080, TunFlags: ipvs.TunCsum},
				}},
		},
	}
	// Settled: the -D of 10.0.0.101:443 is remembered, for Renewed.
	if got := got.Settled(); !reflect.DeepEqual(got, want) {
		t.Errorf("ParseRules =\n%+v\nwant\n%+v", got, want)
	}
}

func TestParseRulesErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		line     int
		msg      string
		code     int
	}{
		{"unknown scheduler", "-A -t 1.2.3.4:80 -s foo", 1, "Scheduler or persistence engine not found", ExitKernel},
		{"no service", "\n\n-a -t 1.2.3.4:80 -r 1.1.1.1", 3, "Service not defined", ExitKernel},
		{"thresholds", "-A -t 1.2.3.4:80\n-a -t 1.2.3.4:80 -r 1.1.1.1 -y 5", 2, "Numerical result out of range", ExitKernel},
		{"service twice", "-A -t 1.2.3.4:80\n-A -t 1.2.3.4:80 -s rr", 2, "Service already exists", ExitKernel},
		{"dest twice", "-A -t 1.2.3.4:80\n-a -t 1.2.3.4:80 -r 1.1.1.1\n-a -t 1.2.3.4:80 -r 1.1.1.1:99", 3, "Destination already exists", ExitKernel},
		{"option matrix", "-A -t 1.2.3.4:80 -w 3", 1, "Illegal 'weight' option with the 'add-service' command", 2},
		{"list", "-L -n", 1, "the 'list' command is not allowed in a rules file", 2},
		{"popt", "-A -t", 1, "-t: missing argument", 255},
		{"bad weight", "-A -t 1.2.3.4:80\n-a -t 1.2.3.4:80 -r 1.1.1.1 -w x", 2, "illegal weight specified", 2},
		{"comment inside a word", "-A -t 1.2.3.4:80 -s rr#x", 1, "Scheduler or persistence engine not found", ExitKernel},
		{"leftover", "-A -t 1.2.3.4:80 rr", 1, "unexpected argument rr", 2},
		{"no command", "-t 1.2.3.4:80", 1, "Try `ipvsadm -h' or 'ipvsadm --help' for more information.", 255},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseRules(strings.NewReader(tc.in))
			if cfg != nil {
				t.Errorf("ParseRules(%q) returned a config with error %v", tc.in, err)
			}
			var re *RulesError
			if !errors.As(err, &re) {
				t.Fatalf("ParseRules(%q) error = %v, want a *RulesError", tc.in, err)
			}
			if re.Line != tc.line || re.Text != strings.Split(tc.in, "\n")[tc.line-1] {
				t.Errorf("ParseRules(%q) line = %d %q, want %d", tc.in, re.Line, re.Text, tc.line)
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Msg != tc.msg || ae.Code != tc.code {
				t.Errorf("ParseRules(%q) error = %#v, want %q with code %d", tc.in, ae, tc.msg, tc.code)
			}
		})
	}
}

func TestRestoreAllOrNothing(t *testing.T) {
	cfg := &ipvs.Config{Timeouts: ipvs.DefaultTimeouts}
	if err := Restore(cfg, strings.NewReader("-A -t 1.2.3.4:80\n")); err != nil {
		t.Fatal(err)
	}
	before := cfg.Clone()
	err := Restore(cfg, strings.NewReader("-C\n-A -t 5.6.7.8:80\n--set 1 2 3\n-a -t 9.9.9.9:80 -r 1.1.1.1\n"))
	if err == nil {
		t.Fatal("Restore with a bad last line succeeded")
	}
	if !reflect.DeepEqual(cfg, before) {
		t.Errorf("Restore changed the config on error: %+v, want %+v", cfg, before)
	}
}

func TestTokenize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  \t\r\n", nil},
		{"# -A -t 1.2.3.4:80", nil},
		{"ipvsadm", nil},
		{"ipvsadm -A  -t\t1.2.3.4:80\r\n", []string{"-A", "-t", "1.2.3.4:80"}},
		{"-A -t 1.2.3.4:80 ipvsadm -s rr", []string{"-A", "-t", "1.2.3.4:80", "-s", "rr"}},
		{"-A -t 1.2.3.4:80 #-s rr", []string{"-A", "-t", "1.2.3.4:80"}},
		{"-A -s a#b", []string{"-A", "-s", "a#b"}},
		{"-A\v-C", []string{"-A\v-C"}},
	} {
		if got := Tokenize(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Tokenize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRulesErrorText(t *testing.T) {
	_, err := ParseRules(strings.NewReader("-A -t 1.2.3.4:80\n-a -t 1.2.3.4:80 -r 1.1.1.1 -x 1 -y 5\n"))
	const want = `line 2 "-a -t 1.2.3.4:80 -r 1.1.1.1 -x 1 -y 5": Numerical result out of range (lower threshold 5 is higher than upper threshold 1)`
	if err == nil || err.Error() != want {
		t.Errorf("ParseRules error = %v, want %s", err, want)
	}
	_, err = ParseRules(strings.NewReader("\n-A -t 1.2.3.4:80 -w 1\n"))
	const want2 = `line 2 "-A -t 1.2.3.4:80 -w 1": Illegal 'weight' option with the 'add-service' command`
	if err == nil || err.Error() != want2 {
		t.Errorf("ParseRules error = %v, want %s", err, want2)
	}
}

func TestUsage(t *testing.T) {
	u := Usage("xlb")
	for _, want := range []string{
		"ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\nUsage:\n  xlb -A|E virtual-service [-s scheduler]",
		"\n  xlb -h\n\nCommands:\n",
		"  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh,\n" +
			"                                      the default scheduler is wlc.\n",
		"  --mcast-ttl ttl                     Multicast TTL (default=1)\n",
	} {
		if !strings.Contains(u, want) {
			t.Errorf("Usage lacks %q", want)
		}
	}
	if strings.Contains(u, "%s") || !strings.HasSuffix(u, "(default=1)\n") {
		t.Error("Usage has an unreplaced program placeholder or a wrong end")
	}
}
