package ipvsadm

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvs"
)

func TestParseMarkSelector(t *testing.T) {
	pfx := netip.MustParsePrefix
	for _, tc := range []struct {
		in     string
		prefix netip.Prefix
		lo, hi uint16
		err    string // a substring of the error; "" for none
	}{
		{in: "10.0.0.1", prefix: pfx("10.0.0.1/32"), lo: 0, hi: 65535},
		{in: "10.0.0.1:80", prefix: pfx("10.0.0.1/32"), lo: 80, hi: 80},
		{in: "10.0.0.0/24:80-90", prefix: pfx("10.0.0.0/24"), lo: 80, hi: 90},
		{in: "0.0.0.0/0:0-65535", prefix: pfx("0.0.0.0/0"), lo: 0, hi: 65535},
		{in: "10.0.0.0/8", prefix: pfx("10.0.0.0/8"), lo: 0, hi: 65535},
		{in: "[2001:db8::1]:443", prefix: pfx("2001:db8::1/128"), lo: 443, hi: 443},
		{in: "[2001:db8::]/64:80-81", prefix: pfx("2001:db8::/64"), lo: 80, hi: 81},
		{in: "[2001:db8::/64]:80", prefix: pfx("2001:db8::/64"), lo: 80, hi: 80},
		{in: "[2001:db8::]/64", prefix: pfx("2001:db8::/64"), lo: 0, hi: 65535},
		{in: "2001:db8::/32", prefix: pfx("2001:db8::/32"), lo: 0, hi: 65535},
		{in: "[::]/0", prefix: pfx("::/0"), lo: 0, hi: 65535},
		{in: "10.0.0.1/24", err: "host bits set: did you mean 10.0.0.0/24"},
		{in: "10.0.0.1/33", err: "invalid address or prefix"},
		{in: "10.0.0.1:", err: "empty port"},
		{in: "10.0.0.1:90-80", err: "first port above the last"},
		{in: "10.0.0.1:65536", err: "ports are 0-65535"},
		{in: "10.0.0.1:http", err: "ports are 0-65535"},
		{in: "[10.0.0.1]:80", err: "brackets around an IPv4"},
		{in: "[2001:db8::1:80", err: "missing ']'"},
		{in: "[2001:db8::1]80", err: "want '/' or ':'"},
		{in: "[2001:db8::1/128]/64", err: "two prefix lengths"},
		{in: "[::ffff:10.0.0.1]:80", err: "IPv4-mapped"},
		{in: "[fe80::1%eth0]:80", err: "zone"},
		{in: "", err: "invalid address"},
		{in: "host.example:80", err: "invalid address"},
	} {
		r, err := ParseMarkSelector(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseMarkSelector(%q) = %v, %v; want error with %q", tc.in, r, err, tc.err)
			}
			continue
		}
		if err != nil || r.Prefix != tc.prefix || r.PortLo != tc.lo || r.PortHi != tc.hi {
			t.Errorf("ParseMarkSelector(%q) = %v %d-%d, %v; want %v %d-%d", tc.in, r.Prefix, r.PortLo, r.PortHi, err, tc.prefix, tc.lo, tc.hi)
		}
	}
}

func TestParseMark(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // the rules' String()s, or the error's substring after "!"
	}{
		{[]string{"add", "1", "-t", "10.0.0.1:80", "-t", "10.0.0.1:443"}, "1 -t 10.0.0.1/32:80-80,1 -t 10.0.0.1/32:443-443"},
		{[]string{"add", "0x10", "-u", "[2001:db8::]/48:53"}, "16 -u [2001:db8::]/48:53-53"},
		{[]string{"del", "7"}, ""},
		{[]string{"list"}, ""},
		{[]string{"add", "1"}, "!no selector"},
		{[]string{"add", "0", "-t", "10.0.0.1"}, "!invalid mark \"0\""},
		{[]string{"add", "4294967296", "-t", "10.0.0.1"}, "!invalid mark"},
		{[]string{"add", "1", "-x", "10.0.0.1"}, "!want -t or -u"},
		{[]string{"add", "1", "-t"}, "!missing ADDR"},
		{[]string{"add"}, "!no mark"},
		{[]string{"flush"}, "!unknown command"},
		{[]string{"list", "x"}, "!no arguments"},
		{nil, "!no command"},
	} {
		c, err := ParseMark(tc.args)
		if e, ok := strings.CutPrefix(tc.want, "!"); ok {
			var ie *Error
			if err == nil || !strings.Contains(err.Error(), e) || !errors.As(err, &ie) || ie.Code != ExitUsage {
				t.Errorf("ParseMark(%q) = %v; want usage error with %q", tc.args, err, e)
			}
			continue
		}
		var got []string
		for _, r := range c.Rules {
			got = append(got, r.String())
		}
		if err != nil || strings.Join(got, ",") != tc.want {
			t.Errorf("ParseMark(%q) = %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
}

// TestMarkApply: add and del are all or nothing, and a refusal says why.
func TestMarkApply(t *testing.T) {
	cfg := &ipvs.Config{}
	do := func(args ...string) error {
		t.Helper()
		c, err := ParseMark(args)
		if err != nil {
			t.Fatalf("ParseMark(%q): %v", args, err)
		}
		return c.Apply(cfg)
	}
	if err := do("add", "1", "-t", "10.0.0.1:80", "-t", "10.0.0.1:443"); err != nil {
		t.Fatal(err)
	}
	// The second selector overlaps the first rule: nothing is added.
	err := do("add", "2", "-t", "10.0.0.0/24:80", "-t", "10.0.0.1:400-500")
	if err == nil || !strings.Contains(err.Error(), "overlaps") || len(cfg.Marks) != 2 {
		t.Errorf("overlapping add = %v, %d rules; want an overlap error and 2 rules", err, len(cfg.Marks))
	}
	// Another protocol or prefix does not overlap.
	if err := do("add", "2", "-u", "10.0.0.1:80", "-t", "10.0.0.0/24:80"); err != nil {
		t.Fatal(err)
	}
	if err := do("del", "1", "-t", "10.0.0.1:80", "-t", "10.0.0.9:80"); err == nil || len(cfg.Marks) != 4 {
		t.Errorf("del of a missing rule = %v, %d rules; want an error and 4 rules", err, len(cfg.Marks))
	}
	if err := do("del", "1", "-t", "10.0.0.1:80"); err != nil || len(cfg.Marks) != 3 {
		t.Errorf("del = %v, %d rules; want 3 rules", err, len(cfg.Marks))
	}
	if err := do("del", "2"); err != nil || len(cfg.Marks) != 1 {
		t.Errorf("del of a whole mark = %v, %d rules; want 1 rule", err, len(cfg.Marks))
	}
	if err := do("del", "2"); err == nil || !strings.Contains(err.Error(), "No such mark rule") {
		t.Errorf("del of a mark with no rules = %v; want No such mark rule", err)
	}
}

// TestSaveRestoreMarks: -S writes the marks as --xlb-mark lines that -R
// and the rules file read back; restoring them again changes nothing.
func TestSaveRestoreMarks(t *testing.T) {
	rules := "-A -f 1 -s rr -p 300\n" +
		"-a -f 1 -r 10.0.0.11:0 -g -w 1\n" +
		"-A -f 2 -6 -s rr\n" +
		"--xlb-mark 1 -t 10.0.0.100/32:80-80 -t 10.0.0.100/32:443-443\n" +
		"--xlb-mark 2 -u [2001:db8::]/64:53-53\n"
	cfg, err := ParseRules(strings.NewReader(rules))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Marks) != 3 {
		t.Fatalf("ParseRules: %d mark rules, want 3", len(cfg.Marks))
	}
	var b bytes.Buffer
	if err := WriteSave(&b, cfg, true); err != nil {
		t.Fatal(err)
	}
	want := "-A -f 1 -s rr -p 300\n" +
		"-a -f 1 -r 10.0.0.11:0 -g -w 1\n" +
		"-A -f 2 -6 -s rr\n" +
		"--xlb-mark 1 -t 10.0.0.100/32:80-80 -t 10.0.0.100/32:443-443\n" +
		"--xlb-mark 2 -u [2001:db8::]/64:53-53\n"
	if b.String() != want {
		t.Errorf("WriteSave = \n%s\nwant\n%s", b.String(), want)
	}
	again := cfg.Clone()
	again.Clear()
	if err := Restore(again, strings.NewReader(b.String())); err != nil {
		t.Fatalf("restore after -C: %v", err)
	}
	if len(again.Marks) != 3 || len(again.Services) != 2 {
		t.Errorf("restore after -C: %d marks, %d services; want 3, 2", len(again.Marks), len(again.Services))
	}
	for _, bad := range []string{
		"--xlb-mark 1 -t 10.0.0.1/24:80\n",  // host bits
		"--xlb-mark\n",                      // no mark
		"--xlb-mark 3 -t 10.0.0.100:80\n",   // overlaps mark 1's rule
		"--xlb-mark 3 -t 10.0.0.100:80 #\n", // still overlapping: the comment goes
	} {
		c := cfg.Clone()
		if err := Restore(c, strings.NewReader(bad)); err == nil || len(c.Marks) != 3 {
			t.Errorf("Restore(%q) = %v, %d marks; want an error and 3 marks", bad, err, len(c.Marks))
		}
	}
	var list bytes.Buffer
	if err := WriteMarks(&list, cfg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list.String(), "2          UDP  2001:db8::/64") {
		t.Errorf("WriteMarks =\n%s", list.String())
	}
}

// FuzzParseMarkSelector: any input is refused or parses to a valid rule
// whose own form parses back to it.
func FuzzParseMarkSelector(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "10.0.0.0/24:80-90", "[2001:db8::]/64:80", "[2001:db8::/64]:1-2",
		"2001:db8::/32", "[::]/0", "10.0.0.1:", "[::1", "1.2.3.4/0:0-65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseMarkSelector(s)
		if err != nil {
			return
		}
		r.Mark, r.Proto = 1, ipvs.TCP
		if err := (&ipvs.Config{}).AddMarks([]ipvs.MarkRule{r}); err != nil {
			t.Fatalf("ParseMarkSelector(%q) = %v, which AddMarks refuses: %v", s, r, err)
		}
		sel := strings.TrimPrefix(r.Selector(), "-t ")
		back, err := ParseMarkSelector(sel)
		back.Mark, back.Proto = 1, ipvs.TCP
		if err != nil || back != r {
			t.Fatalf("ParseMarkSelector(%q) = %v; its form %q parses to %v, %v", s, r, sel, back, err)
		}
	})
}

// TestListFWMark: -L -n lists firewall-mark services as ipvsadm 1.31
// does (print_service_entry: "FWM  %u", "FWM  %u IPv6"; destinations
// without a port as :0), after the address and port services.
func TestListFWMark(t *testing.T) {
	cfg, err := ParseRules(strings.NewReader("-A -f 2 -6 -s rr\n" +
		"-a -f 2 -6 -r 2001:db8::11 -g -w 1\n" +
		"-A -f 1 -s rr -p 300\n" +
		"-a -f 1 -r 10.0.0.11 -g -w 1\n" +
		"-a -f 1 -r 10.0.0.12 -i -w 2\n" +
		"-A -t 10.0.0.100:80 -s wlc\n"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteList(&b, cfg, nil, ListOptions{Numeric: true}); err != nil {
		t.Fatal(err)
	}
	want := "IP Virtual Server version 1.2.1 (size=4096)\n" +
		"Prot LocalAddress:Port Scheduler Flags\n" +
		"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
		"TCP  10.0.0.100:80 wlc\n" +
		"FWM  1 rr persistent 300\n" +
		"  -> 10.0.0.11:0                  Route   1      0          0         \n" +
		"  -> 10.0.0.12:0                  Tunnel  2      0          0         \n" +
		"FWM  2 IPv6 rr\n" +
		"  -> [2001:db8::11]:0             Route   1      0          0         \n"
	if b.String() != want {
		t.Errorf("-L -n =\n%q\nwant\n%q", b.String(), want)
	}
}

// FuzzRestoreMarks: rules files with --xlb-mark lines are refused with a
// *RulesError or parse to a configuration whose marks -S writes back
// unchanged.
func FuzzRestoreMarks(f *testing.F) {
	for _, s := range []string{
		"--xlb-mark 1 -t 10.0.0.1/32:80-80 -t 10.0.0.1:443\n-A -f 1 -s rr -p 300\n",
		"--xlb-mark 0x10 -u [2001:db8::]/64:53 -u 2001:db8:1::/48\n--xlb-mark 0x10 -u [2001:db8::]/64:53\n",
		"--xlb-mark 2 -t 0.0.0.0/0:8000-8999\n--xlb-mark 3 -t 10.0.0.0/8:8000\n",
		"--xlb-mark 1 -t 10.0.0.1/24\n",
		"--xlb-mark\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseRules(bytes.NewReader(data))
		if err != nil {
			var re *RulesError
			if !errors.As(err, &re) {
				t.Fatalf("ParseRules error %T %v, want a *RulesError", err, err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("ParseRules made an invalid config: %v", err)
		}
		var b bytes.Buffer
		if err := WriteSave(&b, cfg, true); err != nil {
			t.Fatal(err)
		}
		back, err := ParseRules(&b)
		if err != nil {
			t.Fatalf("ParseRules(WriteSave(cfg)): %v\n%s", err, b.String())
		}
		if len(back.Marks) != len(cfg.Marks) {
			t.Fatalf("save and parse: %d marks, want %d\n%s", len(back.Marks), len(cfg.Marks), b.String())
		}
		for _, r := range cfg.Marks {
			if !slices.Contains(back.Marks, r) {
				t.Fatalf("save and parse lost %v\n%s", r, b.String())
			}
		}
	})
}
