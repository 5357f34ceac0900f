package ipvsadm

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvs"
)

func TestParseFullNAT(t *testing.T) {
	web := tcpKey("10.0.0.1:80")
	v6 := ipvs.ServiceKey{Proto: ipvs.UDP, Addr: addr("2001:db8::1"), Port: 53}
	la := func(a, ifname string) ipvs.LocalAddr { return ipvs.LocalAddr{Addr: addr(a), Ifname: ifname} }
	for _, tc := range []struct {
		line string
		want Command
	}{
		// --fullnat keeps the destination's own port (no forcing, as DPVS).
		{"-a -t 10.0.0.1:80 -r 10.1.1.1:8080 --fullnat -w 3", Command{Kind: KindAddServer,
			Options: OptService | OptServer | OptForward | OptWeight, Service: bare(web),
			Dest: dst("10.1.1.1:8080", ipvs.FwdFullNAT, 3)}},
		{"-a -t 10.0.0.1:80 -r 10.1.1.1 --fullnat", Command{Kind: KindAddServer,
			Options: OptService | OptServer | OptForward, Service: bare(web),
			Dest: dst("10.1.1.1:80", ipvs.FwdFullNAT, 1)}},
		{"--edit-server -t 10.0.0.1:80 -r 10.1.1.1:81 --fullnat", Command{Kind: KindEditServer,
			Options: OptService | OptServer | OptForward, Service: bare(web),
			Dest: dst("10.1.1.1:81", ipvs.FwdFullNAT, 1)}},
		{"-P -t 10.0.0.1:80 -z 192.168.100.1 -F dpdk0", Command{Kind: KindAddLaddr,
			Options: OptService | OptLocalAddress | OptIfname, Service: bare(web), LocalAddr: la("192.168.100.1", "dpdk0")}},
		// -z is read as a service address; its port is dropped.
		{"--add-laddr --tcp-service=10.0.0.1:80 --laddr=192.168.100.1:99", Command{Kind: KindAddLaddr,
			Options: OptService | OptLocalAddress, Service: bare(web), LocalAddr: la("192.168.100.1", "")}},
		{"-Pt10.0.0.1:80 -z192.168.100.1 -Feth1", Command{Kind: KindAddLaddr,
			Options: OptService | OptLocalAddress | OptIfname, Service: bare(web), LocalAddr: la("192.168.100.1", "eth1")}},
		{"-P -u [2001:db8::1]:53 -z 2001:db8:1::1", Command{Kind: KindAddLaddr,
			Options: OptService | OptLocalAddress, Service: bare(v6), LocalAddr: la("2001:db8:1::1", "")}},
		{"-P -u [2001:db8::1]:53 -z [2001:db8:1::1]:0", Command{Kind: KindAddLaddr,
			Options: OptService | OptLocalAddress, Service: bare(v6), LocalAddr: la("2001:db8:1::1", "")}},
		// An interface name is cut to IFNAMSIZ-1 bytes, as DPVS's snprintf does.
		{"-P -t 10.0.0.1:80 -z 192.168.100.1 -F abcdefghijklmnopq", Command{Kind: KindAddLaddr,
			Options: OptService | OptLocalAddress | OptIfname, Service: bare(web), LocalAddr: la("192.168.100.1", "abcdefghijklmno")}},
		{"-Q -t 10.0.0.1:80 -z 192.168.100.1", Command{Kind: KindDelLaddr,
			Options: OptService | OptLocalAddress, Service: bare(web), LocalAddr: la("192.168.100.1", "")}},
		{"--del-laddr -t 10.0.0.1:80 -z 192.168.100.1 -F eth0", Command{Kind: KindDelLaddr,
			Options: OptService | OptLocalAddress | OptIfname, Service: bare(web), LocalAddr: la("192.168.100.1", "eth0")}},
		{"-G", Command{Kind: KindGetLaddr}},
		{"--get-laddr -t 10.0.0.1:80", Command{Kind: KindGetLaddr, Options: OptService, Service: bare(web),
			List: ListOptions{Service: &web}}},
	} {
		t.Run(tc.line, func(t *testing.T) {
			got, err := Parse(strings.Fields(tc.line))
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.line, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q) =\n%+v\nwant\n%+v", tc.line, got, tc.want)
			}
		})
	}
}

func TestParseFullNATErrors(t *testing.T) {
	for _, tc := range []struct {
		line string
		msg  string
		code int
	}{
		// DPVS's commands_v_options rows and option names.
		{"-P -t 10.0.0.1:80", "You need to supply the 'local-address' option for the 'add-laddr' command", 2},
		{"-P -z 192.168.100.1", "You need to supply the 'service-address' option for the 'add-laddr' command", 2},
		{"-Q -t 10.0.0.1:80 -F eth0", "You need to supply the 'local-address' option for the 'del-laddr' command", 2},
		{"-P -t 10.0.0.1:80 -z 192.168.100.1 -n", "Illegal 'numeric' option with the 'add-laddr' command", 2},
		{"-P -t 10.0.0.1:80 -z 192.168.100.1 -r 10.1.1.1", "Illegal 'real-server' option with the 'add-laddr' command", 2},
		{"-G -n", "Illegal 'numeric' option with the 'get-laddr' command", 2},
		{"-G -z 192.168.100.1", "Illegal 'local-address' option with the 'get-laddr' command", 2},
		{"-A -t 10.0.0.1:80 -z 192.168.100.1", "Illegal 'local-address' option with the 'add-service' command", 2},
		{"-a -t 10.0.0.1:80 -r 10.1.1.1 -F eth0", "Illegal 'ifname' option with the 'add-server' command", 2},
		{"-L -z 192.168.100.1", "Illegal 'local-address' option with the 'list' command", 2},
		{"-S -F eth0", "Illegal 'ifname' option with the 'save' command", 2},
		{"-A -t 10.0.0.1:80 --fullnat", "Illegal 'forwarding-method' option with the 'add-service' command", 2},
		{"-d -t 10.0.0.1:80 -r 10.1.1.1 --fullnat", "Illegal 'forwarding-method' option with the 'delete-server' command", 2},
		// Values.
		{"-P -t 10.0.0.1:80 -z host.example", "illegal local address", 2},
		{"-P -t 10.0.0.1:80 -z [2001:db8::1]", "illegal local address", 2},
		{"-P -t 10.0.0.1:80 -z 80", "illegal local address", 2},
		{"-P -t 10.0.0.1:80 -z 1.2.3.4 -z 1.2.3.5", "multiple 'local-address' options specified", 2},
		{"-P -t 10.0.0.1:80 -z 1.2.3.4 -F a -F b", "multiple 'ifname' options specified", 2},
		{"-a -t 10.0.0.1:80 -r 10.1.1.1 --fullnat -m", "multiple 'forwarding-method' options specified", 2},
		{"-a -t 10.0.0.1:80 -r 2001:db8::1 --fullnat", "Different address family is allowed only for tunneling servers", 2},
		{"-a -t 10.0.0.1:80 -r 10.1.1.1 --fullnat --tun-type ipip", "Tunnel options conflict with forward method", 2},
		{"-P -t 10.0.0.1:80 -z", "-z: missing argument", 255},
		{"-a -t 10.0.0.1:80 -r 10.1.1.1 --fullnat=1", "--fullnat=1: option does not take an argument", 255},
		// -P after the command is a second command.
		{"-A -t 10.0.0.1:80 -P", "invalid option `-P'", 2},
	} {
		t.Run(tc.line, func(t *testing.T) {
			_, err := Parse(strings.Fields(tc.line))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse(%q) error = %v, want *Error %q", tc.line, err, tc.msg)
			}
			if e.Msg != tc.msg || e.Code != tc.code {
				t.Errorf("Parse(%q) error = %q (code %d), want %q (code %d)", tc.line, e.Msg, e.Code, tc.msg, tc.code)
			}
		})
	}
}

// run parses and applies lines in order, failing the test on any error.
func run(t *testing.T, cfg *ipvs.Config, lines ...string) {
	t.Helper()
	for _, l := range lines {
		c, err := Parse(strings.Fields(l))
		if err != nil {
			t.Fatalf("Parse(%q): %v", l, err)
		}
		if err := c.Apply(cfg); err != nil {
			t.Fatalf("Apply(%q): %v", l, err)
		}
	}
}

func TestApplyFullNAT(t *testing.T) {
	cfg := &ipvs.Config{Timeouts: ipvs.DefaultTimeouts}
	run(t, cfg,
		"-A -t 10.0.0.1:80 -s rr",
		// A FULLNAT destination before any local address is accepted, as
		// DPVS accepts it; the dataplane drops its connections.
		"-a -t 10.0.0.1:80 -r 10.1.1.1:8080 --fullnat",
		"-P -t 10.0.0.1:80 -z 192.168.100.1 -F eth1",
		"-P -t 10.0.0.1:80 -z 192.168.100.2",
	)
	s := cfg.Service(tcpKey("10.0.0.1:80"))
	want := []ipvs.LocalAddr{{Addr: addr("192.168.100.1"), Ifname: "eth1"}, {Addr: addr("192.168.100.2")}}
	if !reflect.DeepEqual(s.LocalAddrs, want) {
		t.Errorf("LocalAddrs = %v, want %v", s.LocalAddrs, want)
	}
	if d := s.Dests[0]; d.Fwd != ipvs.FwdFullNAT || d.Port != 8080 {
		t.Errorf("dest = %+v, want FullNAT on port 8080", d)
	}
	for _, tc := range []struct {
		line string
		msg  string
		code int
	}{
		{"-P -t 10.0.0.1:80 -z 192.168.100.1", "Local address already exists", ExitKernel},
		{"-P -t 10.0.0.2:80 -z 192.168.100.1", "Service not defined", ExitKernel},
		{"-P -t 10.0.0.1:80 -z 2001:db8::1", "Operation not supported with specified address family", ExitKernel},
		{"-P -t 10.0.0.1:80 -z 224.0.0.1", ipvs.ErrInvalid.Msg, ExitKernel},
		{"-P -t 10.0.0.1:80 -z 192.168.100.3 -F a/b", ipvs.ErrInvalid.Msg, ExitKernel},
		{"-Q -t 10.0.0.1:80 -z 192.168.100.3", "No such Local address", ExitKernel},
		{"-Q -t 10.0.0.2:80 -z 192.168.100.1", "Service not defined", ExitKernel},
		{"-G", "the 'get-laddr' command does not change the configuration", 2},
	} {
		before := cfg.Clone()
		c, err := Parse(strings.Fields(tc.line))
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.line, err)
		}
		err = c.Apply(cfg)
		var e *Error
		if !errors.As(err, &e) || e.Msg != tc.msg || e.Code != tc.code {
			t.Errorf("Apply(%q) = %v, want %q (code %d)", tc.line, err, tc.msg, tc.code)
		}
		if !reflect.DeepEqual(cfg, before) {
			t.Errorf("refused %q changed the configuration", tc.line)
		}
	}
	run(t, cfg, "-Q -t 10.0.0.1:80 -z 192.168.100.1 -F other")
	if got := cfg.Service(tcpKey("10.0.0.1:80")).LocalAddrs; !reflect.DeepEqual(got, want[1:]) {
		t.Errorf("after -Q LocalAddrs = %v, want %v", got, want[1:])
	}
}

// fullnatRules is a FULLNAT configuration in the save format, as WriteSave
// prints it with -n: services sorted, -P lines after -A in the order added.
const fullnatRules = `-A -t 10.0.0.100:80 -s rr
-P -t 10.0.0.100:80 -z 192.168.100.2 -F eth1
-P -t 10.0.0.100:80 -z 192.168.100.1
-a -t 10.0.0.100:80 -r 192.168.0.1:8080 --fullnat -w 1
-a -t 10.0.0.100:80 -r 192.168.0.2:80 -g -w 2
-A -u [2001:db8::1]:53 -s wlc
-P -u [2001:db8::1]:53 -z 2001:db8:100::1
-a -u [2001:db8::1]:53 -r [2001:db8::10]:5353 --fullnat -w 1
-A -f 7 -s rr
-P -f 7 -z 192.168.100.1
-a -f 7 -r 192.168.0.3:0 --fullnat -w 1
`

func TestSaveFullNAT(t *testing.T) {
	useBuiltinServices(t)
	cfg, err := ParseRules(strings.NewReader(fullnatRules))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteSave(&b, cfg, true); err != nil {
		t.Fatal(err)
	}
	if b.String() != fullnatRules {
		t.Errorf("WriteSave =\n%s\nwant\n%s", b.String(), fullnatRules)
	}
	roundTrip(t, cfg, true)
	roundTrip(t, cfg, false)

	// -L -n shows DPVS's "FullNat" and no local addresses.
	b.Reset()
	if err := WriteList(&b, cfg, nil, ListOptions{Numeric: true, Service: &ipvs.ServiceKey{Proto: ipvs.TCP,
		Addr: addr("10.0.0.100"), Port: 80}}); err != nil {
		t.Fatal(err)
	}
	const wantList = "Prot LocalAddress:Port Scheduler Flags\n" +
		"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
		"TCP  10.0.0.100:80 rr\n" +
		"  -> 192.168.0.1:8080             FullNat 1      0          0         \n" +
		"  -> 192.168.0.2:80               Route   2      0          0         \n"
	if b.String() != wantList {
		t.Errorf("WriteList =\n%q\nwant\n%q", b.String(), wantList)
	}
}

type fakeLaddrStats struct{}

func (fakeLaddrStats) LocalAddr(k ipvs.ServiceKey, a netip.Addr) LaddrCounters {
	if a == addr("192.168.100.1") && k.Port == 80 {
		return LaddrCounters{Conflicts: 12, Conns: 345}
	}
	return LaddrCounters{}
}

func TestWriteLaddrs(t *testing.T) {
	cfg, err := ParseRules(strings.NewReader(fullnatRules + "-A -t 10.0.0.5:443\n"))
	if err != nil {
		t.Fatal(err)
	}
	// DPVS's formats: "%-20s %-8s %-20s %-10s %-10s\n" (title),
	// "%-20s %-8u \n" (service), "%-20s %-8s %-20s %-10lu %-10u\n" (laddr).
	const title = "VIP:VPORT            TOTAL    SNAT_IP              CONFLICTS  CONNS     \n"
	const web = "10.0.0.100:80        2        \n" +
		"                              192.168.100.2        0          0         \n" +
		"                              192.168.100.1        12         345       \n"
	var b bytes.Buffer
	k := tcpKey("10.0.0.100:80")
	if err := WriteLaddrs(&b, cfg, fakeLaddrStats{}, ListOptions{Service: &k}); err != nil {
		t.Fatal(err)
	}
	if b.String() != title+web {
		t.Errorf("-G -t =\n%q\nwant\n%q", b.String(), title+web)
	}

	b.Reset()
	if err := WriteLaddrs(&b, cfg, nil, ListOptions{}); err != nil {
		t.Fatal(err)
	}
	want := title +
		"10.0.0.5:443         0        \n" +
		strings.ReplaceAll(web, "12         345       ", "0          0         ") +
		"[2001:db8::1]:53     1        \n" +
		"                              2001:db8:100::1      0          0         \n" +
		"FWM  7               1        \n" +
		"                              192.168.100.1        0          0         \n"
	if b.String() != want {
		t.Errorf("-G =\n%s\nwant\n%s", b.String(), want)
	}

	b.Reset()
	missing := tcpKey("10.9.9.9:80")
	err = WriteLaddrs(&b, cfg, nil, ListOptions{Service: &missing})
	var e *Error
	if !errors.As(err, &e) || e.Msg != "No such service" || e.Code != ExitRuntime || b.Len() != 0 {
		t.Errorf("-G -t missing = %v, %q, want No such service and nothing written", err, b.String())
	}
	b.Reset()
	if err := WriteLaddrs(&b, &ipvs.Config{}, nil, ListOptions{}); err != nil || b.Len() != 0 {
		t.Errorf("-G with no services = %v, %q, want nothing (DPVS prints no title)", err, b.String())
	}
}

func TestUsageFullNAT(t *testing.T) {
	u := Usage("xlb")
	for _, want := range []string{
		"  xlb -P|Q virtual-service -z local-address [-F ifname]\n  xlb -G [virtual-service]\n",
		"  --add-laddr       -P        add local address\n",
		"  --del-laddr       -Q        del local address\n",
		"  --get-laddr       -G        get local address\n",
		"  --fullnat                           fullnat mode",
		"  --laddr        -z local-address     local IP of fullnat connections\n",
		"  --ifname       -F ifname            nic interface for laddrs\n",
	} {
		if !strings.Contains(u, want) {
			t.Errorf("Usage lacks %q", want)
		}
	}
}

type dpvsDocStats map[netip.Addr]LaddrCounters

func (s dpvsDocStats) LocalAddr(_ ipvs.ServiceKey, a netip.Addr) LaddrCounters { return s[a] }

type dpvsDocDestStats map[netip.AddrPort]uint32

func (dpvsDocDestStats) Service(ipvs.ServiceKey) Counters { return Counters{} }
func (s dpvsDocDestStats) Dest(_ ipvs.ServiceKey, d *ipvs.Dest) DestStats {
	return DestStats{InactConns: s[d.AddrPort()]}
}

// TestDPVSDocOutput compares with DPVS's own output, from its
// doc/containerized/README.md (commit 4582d20d): the IPv4 service of its
// "ipvsadm -G" and "ipvsadm -ln" examples. The README's last -G line has
// lost its trailing spaces, which the printf format prints.
func TestDPVSDocOutput(t *testing.T) {
	cfg, err := ParseRules(strings.NewReader("-A -t 192.168.88.1:80 -s rr\n" +
		"-P -t 192.168.88.1:80 -z 192.168.88.240 -F dpdk0\n" +
		"-P -t 192.168.88.1:80 -z 192.168.88.241 -F dpdk0\n" +
		"-a -t 192.168.88.1:80 -r 192.168.88.30:80 --fullnat -w 100\n" +
		"-a -t 192.168.88.1:80 -r 192.168.88.130:80 --fullnat -w 100\n"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	stats := dpvsDocStats{addr("192.168.88.240"): {Conns: 41}, addr("192.168.88.241"): {Conns: 39}}
	if err := WriteLaddrs(&b, cfg, stats, ListOptions{}); err != nil {
		t.Fatal(err)
	}
	const wantG = "VIP:VPORT            TOTAL    SNAT_IP              CONFLICTS  CONNS     \n" +
		"192.168.88.1:80      2        \n" +
		"                              192.168.88.240       0          41        \n" +
		"                              192.168.88.241       0          39        \n"
	if b.String() != wantG {
		t.Errorf("-G =\n%q\nwant DPVS's\n%q", b.String(), wantG)
	}
	b.Reset()
	ds := dpvsDocDestStats{ap("192.168.88.30:80"): 42, ap("192.168.88.130:80"): 40}
	if err := WriteList(&b, cfg, ds, ListOptions{Numeric: true}); err != nil {
		t.Fatal(err)
	}
	// DPVS sorts destinations by its own comparison; these two lines are
	// its, in xlb's (ipvsadm's) order.
	for _, want := range []string{
		"  -> 192.168.88.30:80             FullNat 100    0          42        \n",
		"  -> 192.168.88.130:80            FullNat 100    0          40        \n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("-L -n lacks DPVS's line %q:\n%s", want, b.String())
		}
	}
}

// TestOptionTable checks that every row of commands_v_options has a
// column per option, and every option a name.
func TestOptionTable(t *testing.T) {
	for k, row := range commandsVOptions {
		if row != "" && len(row) != numOptions {
			t.Errorf("row %v has %d columns, want %d", Kind(k), len(row), numOptions)
		}
	}
	for j, n := range optNames {
		if n == "" {
			t.Errorf("option %d has no name", j)
		}
	}
	for _, k := range []Kind{KindAddLaddr, KindDelLaddr, KindGetLaddr} {
		if commandsVOptions[k] == "" {
			t.Errorf("no row for %v", k)
		}
	}
}
