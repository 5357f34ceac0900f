package ipvsadm

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// TestApply runs command lines in order against one configuration, as a
// shell session of ipvsadm commands would, checking each one's outcome.
func TestApply(t *testing.T) {
	cfg := &ipvs.Config{Timeouts: ipvs.DefaultTimeouts}
	for _, tc := range []struct {
		line string
		msg  string // "" for success
		code int    // ExitKernel (255): main returns process_options's -1
	}{
		{"-E -t 10.0.0.1:80", "No such service", ExitKernel},
		{"-D -t 10.0.0.1:80", "No such service", ExitKernel},
		{"-Z -t 10.0.0.1:80", "No such service", ExitKernel},
		{"-a -t 10.0.0.1:80 -r 10.0.1.1", "Service not defined", ExitKernel},
		{"-e -t 10.0.0.1:80 -r 10.0.1.1", "Service not defined", ExitKernel},
		{"-d -t 10.0.0.1:80 -r 10.0.1.1", "Service not defined", ExitKernel},
		{"-A -t 10.0.0.1:80 -s nosuch", "Scheduler or persistence engine not found", ExitKernel},
		{"-A -t 10.0.0.1:80 --pe sip", "Scheduler or persistence engine not found", ExitKernel},
		{"-A -t 10.0.0.1:80 -s rr", "", 0},
		{"-A -t 10.0.0.1:80", "Service already exists", ExitKernel},
		{"-Z -t 10.0.0.1:80", "", 0},
		{"-Z", "", 0},
		{"-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -w 2", "", 0},
		{"-a -t 10.0.0.1:80 -r 10.0.1.1", "Destination already exists", ExitKernel},
		{"-a -t 10.0.0.1:80 -r 10.0.1.2 -y 5", "Numerical result out of range", ExitKernel},
		{"-a -t 10.0.0.1:80 -r 224.0.0.1", "Invalid operation.  Possibly wrong module version, address not unicast, ...", ExitKernel},
		{"-a -t 10.0.0.1:80 -r 10.0.1.2:8080 -m -x 10 -y 5", "", 0},
		{"-e -t 10.0.0.1:80 -r 10.0.1.3", "No such destination", ExitKernel},
		// The masquerading destination is 10.0.1.2:8080, not :80.
		{"-d -t 10.0.0.1:80 -r 10.0.1.2", "No such destination", ExitKernel},
		{"-e -t 10.0.0.1:80 -r 10.0.1.2:8080 -m -w 9", "", 0},
		{"-a -t 10.0.0.1:80 -r 10.0.1.4 -i --tun-type gue --tun-port 6080", "", 0},
		{"-d -t 10.0.0.1:80 -r 10.0.1.4", "", 0},
		{"--set 0 30 0", "", 0},
		{"-E -t 10.0.0.1:80 -s sh -b sh-port -p 60", "", 0},
		{"-A -u 10.0.0.1:53 -o", "", 0},
		{"-L -n", "the 'list' command does not change the configuration", 2},
		{"-S", "the 'save' command does not change the configuration", 2},
		{"-R", "the 'restore' command does not change the configuration", 2},
	} {
		c, err := Parse(strings.Fields(tc.line))
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.line, err)
		}
		before := cfg.Clone()
		err = c.Apply(cfg)
		if tc.msg == "" {
			if err != nil {
				t.Errorf("Apply(%q) = %v, want success", tc.line, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Msg != tc.msg || e.Code != tc.code {
			t.Errorf("Apply(%q) = %#v, want %q with code %d", tc.line, err, tc.msg, tc.code)
		}
		if !reflect.DeepEqual(cfg, before) {
			t.Errorf("Apply(%q) failed but changed the config", tc.line)
		}
	}

	useBuiltinServices(t)
	const want = `-A -t 10.0.0.1:80 -s sh -p 60 -b sh-port
-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 2
-a -t 10.0.0.1:80 -r 10.0.1.2:8080 -m -w 9
-A -u 10.0.0.1:53 -s wlc -o
`
	var b bytes.Buffer
	if err := WriteSave(&b, cfg, true); err != nil {
		t.Fatal(err)
	}
	if b.String() != want {
		t.Errorf("after the session, -S -n =\n%s\nwant\n%s", b.String(), want)
	}
	if cfg.Timeouts != (ipvs.Timeouts{TCP: 900, TCPFin: 30, UDP: 300}) {
		t.Errorf("timeouts %+v", cfg.Timeouts)
	}
	// -e sets every field: thresholds not given are 0 again.
	if d := cfg.Services[0].Dests[1]; d.UThreshold != 0 || d.LThreshold != 0 {
		t.Errorf("after -e without -x/-y: %+v", d)
	}

	c, _ := Parse([]string{"-C"})
	if err := c.Apply(cfg); err != nil || len(cfg.Services) != 0 {
		t.Errorf("-C: %v, %d services left", err, len(cfg.Services))
	}
}

// The sync daemons are not configuration: the xlb daemon runs them.
func TestApplyDaemon(t *testing.T) {
	for _, k := range []Kind{KindStartDaemon, KindStopDaemon} {
		c := Command{Kind: k, Daemon: Daemon{State: "master"}}
		cfg := &ipvs.Config{}
		err := c.Apply(cfg)
		var e *Error
		if !errors.As(err, &e) || e.Code != ExitUsage || len(cfg.Services) != 0 {
			t.Errorf("Apply(%v) = %v, want a usage error", k, err)
		}
	}
}

func TestWriteListErrors(t *testing.T) {
	cfg := &ipvs.Config{Timeouts: ipvs.DefaultTimeouts}
	k := tcpKey("10.0.0.1:80")
	var b bytes.Buffer
	err := WriteList(&b, cfg, nil, ListOptions{Numeric: true, Service: &k})
	if err == nil || err.Error() != "No such service" || b.Len() != 0 {
		t.Errorf("WriteList(missing service) = %v, %q, want No such service and nothing written", err, b.String())
	}
	if err := cfg.AddService(ipvs.NewService(k)); err != nil {
		t.Fatal(err)
	}
	if err := cfg.AddDest(k, ipvs.Dest{Addr: addr("10.1.1.1"), Port: 80, Fwd: ipvs.FwdFullNAT, Weight: 1}); err != nil {
		t.Fatal(err)
	}
	if err := WriteSave(&b, cfg, true); err != nil || b.String() != "-A -t 10.0.0.1:80 -s wlc\n-a -t 10.0.0.1:80 -r 10.1.1.1:80 --fullnat -w 1\n" {
		t.Errorf("WriteSave(FullNAT) = %v, %q", err, b.String())
	}
	b.Reset()
	if err := WriteList(&b, cfg, nil, ListOptions{Numeric: true}); err != nil {
		t.Fatal(err)
	}
	// DPVS's fwd_name spelling.
	if !strings.Contains(b.String(), "  -> "+fmtPad("10.1.1.1:80", 28)+" FullNat 1      0          0         \n") {
		t.Errorf("FullNat listing:\n%s", b.String())
	}
	if err := WriteList(failWriter{}, cfg, nil, ListOptions{}); err == nil {
		t.Error("WriteList to a failing writer succeeded")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteListEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := WriteList(&b, &ipvs.Config{}, nil, ListOptions{TableSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	const want = "IP Virtual Server version 1.2.1 (size=1048576)\n" +
		"Prot LocalAddress:Port Scheduler Flags\n" +
		"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
	if b.String() != want {
		t.Errorf("empty listing =\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	if err := WriteList(&b, &ipvs.Config{}, nil, ListOptions{Daemon: true}); err == nil || b.Len() != 0 {
		t.Errorf("--daemon: %v, %q, want an error (the sync daemons list themselves) and nothing", err, b.String())
	}
}

func TestLargeNum(t *testing.T) {
	for _, tc := range []struct {
		n     uint64
		exact bool
		want  string
	}{
		{0, false, "        0"},
		{99_999_999, false, " 99999999"},
		{100_000_000, false, "  100000K"},
		{999_999_999, false, "  999999K"},
		{1_000_000_000, false, "    1000M"},
		{99_999_999_999, false, "   99999M"},
		{100_000_000_000, false, "     100G"},
		{99_999_999_999_999, false, "   99999G"},
		{100_000_000_000_000, false, "     100T"},
		{18446744073709551615, false, "18446744T"},
		{12345678, true, " 12345678"},
		{123456789, true, " 123456789"},
		{18446744073709551615, true, " 18446744073709551615"},
	} {
		if got := largeNum(tc.n, tc.exact); got != tc.want {
			t.Errorf("largeNum(%d, %v) = %q, want %q", tc.n, tc.exact, got, tc.want)
		}
	}
}

func TestWriteConns(t *testing.T) {
	useBuiltinServices(t)
	conns := []Conn{
		{Proto: "TCP", Client: ap("192.168.1.20:55746"), Virtual: ap("192.168.1.10:80"), Dest: ap("192.168.1.15:80"),
			State: "SYN_RECV", Expires: 37},
		{Proto: "UDP", Client: ap("[2001:db8::5]:5000"), Virtual: ap("[2001:db8::1]:53"), Dest: ap("[2001:db8::10]:53"),
			State: "UDP", Expires: 3 * 60, PEName: "sip", PEData: "abc"},
	}
	var b bytes.Buffer
	if err := WriteConns(&b, conns, ListOptions{Numeric: true}); err != nil {
		t.Fatal(err)
	}
	// The first row is keepalived issue #98's real output.
	want := "IPVS connection entries\n" +
		"pro expire state       source             virtual            destination\n" +
		"TCP 00:37  SYN_RECV    192.168.1.20:55746 192.168.1.10:80    192.168.1.15:80\n" +
		"UDP 03:00  UDP         [2001:db8::5]:5000 [2001:db8::1]:53   [2001:db8::10]:53\n"
	if b.String() != want {
		t.Errorf("WriteConns -n =\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	if err := WriteConns(&b, conns, ListOptions{PersistentConn: true}); err != nil {
		t.Fatal(err)
	}
	want = "IPVS connection entries\n" +
		"pro expire state       source             virtual            destination        pe name          pe_data\n" +
		"TCP 00:37  SYN_RECV    192.168.1.20:55746 192.168.1.10:http  192.168.1.15:http\n" +
		"UDP 03:00  UDP         [2001:db8::5]:5000 [2001:db8::1]:domain [2001:db8::10]:domain sip                abc\n"
	if b.String() != want {
		t.Errorf("WriteConns --persistent-conn =\n%q\nwant\n%q", b.String(), want)
	}
}

// fmtPad is C's %-*s.
func fmtPad(s string, n int) string { return s + strings.Repeat(" ", n-len(s)) }
