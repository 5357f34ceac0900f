package ipvsadm

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// saveView is what ipvsadm -S keeps of a configuration: services and
// destinations in a canonical order (save lists them sorted), without the
// thresholds, the netmask of a service that is not persistent, and the
// timeouts.
func saveView(c *ipvs.Config) []ipvs.Service {
	svcs := c.Clone().Services
	for i := range svcs {
		s := &svcs[i]
		if !s.Persistent {
			s.Netmask = ipvs.NewService(s.Key).Netmask
		}
		for j := range s.Dests {
			s.Dests[j].UThreshold, s.Dests[j].LThreshold = 0, 0
		}
		slices.SortFunc(s.Dests, func(a, b ipvs.Dest) int { return a.AddrPort().Compare(b.AddrPort()) })
		if len(s.Dests) == 0 {
			s.Dests = nil // deleting the last one leaves an empty slice
		}
		if len(s.LocalAddrs) == 0 {
			s.LocalAddrs = nil
		}
		if len(s.SchedFlags) == 0 {
			s.SchedFlags = nil
		}
	}
	slices.SortFunc(svcs, func(a, b ipvs.Service) int {
		return cmp.Compare(fmt.Sprint(a.Key), fmt.Sprint(b.Key))
	})
	if len(svcs) == 0 {
		return nil
	}
	return svcs
}

// roundTrip saves cfg, parses the result and checks it is the same
// configuration, as far as the save format carries it.
func roundTrip(t testing.TB, cfg *ipvs.Config, numeric bool) {
	t.Helper()
	var b bytes.Buffer
	if err := WriteSave(&b, cfg, numeric); err != nil {
		t.Fatalf("WriteSave: %v", err)
	}
	saved := b.String()
	back, err := ParseRules(&b)
	if err != nil {
		t.Fatalf("ParseRules(WriteSave(cfg)): %v\nsaved:\n%s", err, saved)
	}
	if got, want := saveView(back), saveView(cfg); !reflect.DeepEqual(got, want) {
		t.Fatalf("save and parse changed the configuration:\n%+v\nwant\n%+v\nsaved:\n%s", got, want, saved)
	}
}

func TestSaveRoundTrip(t *testing.T) {
	useBuiltinServices(t)
	cfg := goldenConfig(t)
	roundTrip(t, cfg, true)
	roundTrip(t, cfg, false)
}

func FuzzParseRules(f *testing.F) {
	for _, s := range []string{
		"-A -t 10.0.0.100:80 -s rr\n-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g -w 1\n",
		"-A -u [2001:db8::1]:53 -o -p -M 64\n-a -u [2001:db8::1]:53 -r 10.1.1.1 -i --tun-type gue --tun-port 1 --tun-csum\n",
		"# c\nipvsadm -A -f 7 -6 -s mh -b mh-port -p 60\n-a -f 7 -6 -r [2001:db8::2]:0 -m -x 10 -y 1\n--set 1 2 3\n",
		"-A -t 10.1:0 -p -M 255.255.0.0 -s sh -b flag-1\n-E -t 10.0.0.1:0 -s wrr -p 5\n-C\n",
		"-A --sctp-service 1.2.3.4:5 -s lc\n-a --sctp-service 1.2.3.4:5 -r 5.6.7.8 -i --tun-type gre --tun-nocsum\n-d --sctp-service 1.2.3.4:5 -r 5.6.7.8:5\n",
		"-At1.2.3.4:80 -p=5\n-at1.2.3.4:80 -r1.1.1.1 -mw5\n",
		"-A -t 1.2.3.4:80 -s nosuch\n",
		"-L -n\n",
		"-A -t 10.0.0.1:80\n-P -t 10.0.0.1:80 -z 192.168.1.1 -F eth1\n-a -t 10.0.0.1:80 -r 10.1.1.1:8080 --fullnat\n-Q -t 10.0.0.1:80 -z 192.168.1.1\n",
		"-A -u [2001:db8::1]:53\n-P -u [2001:db8::1]:53 -z 2001:db8::5\n-P -u [2001:db8::1]:53 -z 10.0.0.1\n",
		"-G\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseRules(bytes.NewReader(data))
		if err != nil {
			var re *RulesError
			if !errors.As(err, &re) || cfg != nil {
				t.Fatalf("ParseRules error %T %v with config %v", err, err, cfg)
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Code == 0 || ae.Msg == "" {
				t.Fatalf("ParseRules error %v: not an *Error with a code", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("ParseRules made an invalid config: %v (%s)", err, err.(*ipvs.Error).Detail)
		}
		roundTrip(t, cfg, true)
	})
}

// FuzzParse checks that Parse never panics, that its errors carry an exit
// status, and that a command it accepts can be applied and listed.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"-A\x00-t\x0010.0.0.1:80\x00-s\x00sh\x00-b\x00sh-port\x00-p",
		"-a\x00-t\x0010.0.0.1:80\x00-r\x0010.0.0.2\x00-i\x00--tun-type\x00gue\x00--tun-port\x001",
		"-L\x00-n\x00--stats\x00-t\x00[::1]:53",
		"--set\x001\x002\x003",
		"--start-daemon\x00master\x00--mcast-group\x00224.0.0.81",
		"-Ln",
		"-P\x00-t\x0010.0.0.1:80\x00-z\x00192.168.1.1\x00-F\x00eth1",
		"-Q\x00-u\x00[2001:db8::1]:53\x00-z\x00[2001:db8::5]:0",
		"-G\x00-t\x0010.0.0.1:80",
		"-a\x00-t\x0010.0.0.1:80\x00-r\x0010.0.0.2:8080\x00--fullnat\x00-w\x002",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, "\x00")
		c, err := Parse(args)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code == 0 || e.Msg == "" {
				t.Fatalf("Parse(%q) error %#v: not an *Error with a code", args, err)
			}
			return
		}
		cfg := &ipvs.Config{Timeouts: ipvs.DefaultTimeouts}
		c.Apply(cfg)
		var b bytes.Buffer
		switch c.Kind {
		case KindList:
			if !c.List.Connection {
				WriteList(&b, cfg, nil, c.List)
			}
		case KindSave:
			if err := WriteSave(&b, cfg, c.List.Numeric); err != nil {
				t.Fatal(err)
			}
		case KindGetLaddr:
			WriteLaddrs(&b, cfg, nil, c.List)
		}
	})
}
