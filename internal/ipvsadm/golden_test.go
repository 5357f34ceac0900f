package ipvsadm

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// fakeStats are the runtime figures of the golden listings; derive.py has
// the same numbers. They exercise print_largenum's K, M, G and T.
type fakeStats struct{}

func (fakeStats) Service(k ipvs.ServiceKey) Counters {
	if k == tcpKey("10.0.0.100:80") {
		return Counters{Conns: 123, InPkts: 99_999_999, OutPkts: 100_000_000,
			InBytes: 123_456_789_012, OutBytes: 1_000_000_000_000_000,
			CPS: 1, InPPS: 2, OutPPS: 3, InBPS: 999_999_999, OutBPS: 1_000_000_000}
	}
	return Counters{}
}

func (fakeStats) Dest(k ipvs.ServiceKey, d *ipvs.Dest) DestStats {
	if k == tcpKey("10.0.0.100:80") && d.AddrPort() == netip.MustParseAddrPort("192.168.0.1:8080") {
		return DestStats{ActiveConns: 7, InactConns: 1234567890, PersistConns: 3,
			Counters: Counters{Conns: 42, InPkts: 1, OutPkts: 2, InBytes: 3, OutBytes: 4,
				CPS: 123456789, InPPS: 5, OutPPS: 6, InBPS: 100_000_000_000}}
	}
	return DestStats{}
}

// useBuiltinServices makes port names independent of /etc/services.
func useBuiltinServices(t *testing.T) {
	old := services
	services = func() []servEntry { return builtinServices }
	t.Cleanup(func() { services = old })
}

// runListing runs a listing command line as the daemon would.
func runListing(t *testing.T, cfg *ipvs.Config, stats Stats, line string) string {
	t.Helper()
	c, err := Parse(strings.Fields(line))
	if err != nil {
		t.Fatalf("Parse(%q): %v", line, err)
	}
	var b bytes.Buffer
	switch c.Kind {
	case KindList:
		err = WriteList(&b, cfg, stats, c.List)
	case KindSave:
		err = WriteSave(&b, cfg, c.List.Numeric)
	default:
		t.Fatalf("Parse(%q) = %v, want a listing", line, c.Kind)
	}
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return b.String()
}

func goldenConfig(t *testing.T) *ipvs.Config {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "list", "rules.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := ParseRules(f)
	if err != nil {
		t.Fatalf("ParseRules(rules.txt): %v", err)
	}
	return cfg
}

// TestGoldenListings compares listings byte for byte with the files
// derive.py wrote from ipvsadm's printf formats (trailing spaces
// included).
func TestGoldenListings(t *testing.T) {
	useBuiltinServices(t)
	cfg := goldenConfig(t)
	for _, tc := range []struct{ file, line string }{
		{"list_numeric.txt", "-L -n"},
		{"list_names.txt", "-L"},
		{"list_stats.txt", "-Ln --stats"},
		{"list_stats_exact.txt", "-L -n --stats -X"},
		{"list_rate.txt", "--list --numeric --rate"},
		{"list_thresholds.txt", "-l -n --thresholds"},
		{"list_persistent_conn.txt", "-L -n --persistent-conn"},
		{"list_tun_info.txt", "-L -n --tun-info"},
		{"list_nosort.txt", "-L -n --nosort"},
		{"list_service.txt", "-L -n -t 10.0.0.100:80 --stats"},
		{"list_timeout.txt", "-L --timeout"},
		{"save_numeric.txt", "-S -n"},
		{"save_names.txt", "-S"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("testdata", "list", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got := runListing(t, cfg, fakeStats{}, tc.line)
			if got != string(want) {
				t.Errorf("%q:\n%s\nwant:\n%s", tc.line, showSpaces(got), showSpaces(string(want)))
			}
		})
	}
}

func showSpaces(s string) string { return strings.ReplaceAll(s, " \n", "·\n") }

// modesStats are the runtime figures of the *_modes.txt listings; derive.py
// has the same numbers.
type modesStats struct{}

var modesV6 = ipvs.ServiceKey{Proto: ipvs.TCP, Addr: netip.MustParseAddr("2001:db8:aaaa:bbbb:cccc:dddd:eeee:1"), Port: 8443}

func (modesStats) Service(k ipvs.ServiceKey) Counters {
	switch k {
	case tcpKey("198.51.100.1:80"):
		return Counters{Conns: 100_000_000, InPkts: 5, InBytes: 99_999_999_999,
			CPS: 7, InPPS: 8, OutPPS: 9, InBPS: 12345, OutBPS: 100_000_000_000_000}
	case modesV6:
		return Counters{Conns: 3, InPkts: 4, OutPkts: 5, InBytes: 6, OutBytes: 7}
	}
	return Counters{}
}

func (modesStats) Dest(k ipvs.ServiceKey, d *ipvs.Dest) DestStats {
	switch {
	case k == tcpKey("198.51.100.1:80") && d.AddrPort() == netip.MustParseAddrPort("10.1.0.1:8080"):
		return DestStats{ActiveConns: 12, InactConns: 3,
			Counters: Counters{Conns: 1_000_000_000, InPkts: 999_999_999, OutPkts: 1, InBytes: 2, OutBytes: 3,
				CPS: 4_294_967_296, InPPS: 1, OutPPS: 2, OutBPS: 1}}
	case k == modesV6 && d.Addr.Is6():
		return DestStats{ActiveConns: 1, InactConns: 2, PersistConns: 5,
			Counters: Counters{Conns: 3, InPkts: 4, OutPkts: 5, InBytes: 6, OutBytes: 7}}
	case k == modesV6:
		return DestStats{InactConns: 4, PersistConns: 1}
	}
	return DestStats{}
}

// modesConns are the connection entries of the conns_*_modes.txt listings,
// as derive.py's CONNS.
var modesConns = []Conn{
	{Proto: "TCP", Client: ap("203.0.113.5:40000"), Virtual: ap("198.51.100.1:80"), Dest: ap("10.1.0.1:8080"), State: "ESTABLISHED", Expires: 899},
	{Proto: "UDP", Client: ap("203.0.113.6:5353"), Virtual: ap("198.51.100.1:53"), Dest: ap("10.1.0.11:53"), State: "UDP", Expires: 299},
	{Proto: "TCP", Client: ap("[2001:db8:cafe::5]:51000"), Virtual: netip.AddrPortFrom(modesV6.Addr, 8443),
		Dest: ap("[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ff01]:8443"), State: "SYN_RECV", Expires: 59},
	{Proto: "TCP", Client: ap("203.0.113.7:443"), Virtual: ap("198.51.100.1:80"), Dest: ap("10.1.0.2:80"), State: "FIN_WAIT", Expires: 120},
	{Proto: "SCTP", Client: ap("203.0.113.9:2905"), Virtual: ap("198.51.100.1:2905"), Dest: ap("10.1.0.3:2905"), State: "ESTABLISHED", Expires: 6000},
	{Proto: "UDP", Client: ap("203.0.113.8:5060"), Virtual: ap("198.51.100.1:53"), Dest: ap("10.1.0.13:5353"), State: "UDP", Expires: 3,
		PEName: "sip", PEData: "call-1@example.org"},
}

// TestGoldenListingsModes compares every listing form, byte for byte,
// with what derive.py wrote from ipvsadm 1.31's printf formats for
// rules_modes.txt: FULLNAT (DPVS's "FullNat" and -P lines), NAT, ipip, gue
// and gre tunnels (an IPv4 ipip destination of an IPv6 service), an IPv6
// service and destination longer than the 33 and 28 columns, firewall-mark
// services (IPv4 and -6), and connection entries (-L -c).
func TestGoldenListingsModes(t *testing.T) {
	useBuiltinServices(t)
	f, err := os.Open(filepath.Join("testdata", "list", "rules_modes.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := ParseRules(f)
	if err != nil {
		t.Fatalf("ParseRules(rules_modes.txt): %v", err)
	}
	for _, tc := range []struct{ file, line string }{
		{"list_numeric_modes.txt", "-L -n"},
		{"list_names_modes.txt", "-L"},
		{"list_stats_modes.txt", "-L -n --stats"},
		{"list_stats_exact_modes.txt", "-L -n --stats --exact"},
		{"list_rate_modes.txt", "-L -n --rate"},
		{"list_rate_exact_modes.txt", "-L -n --rate -X"},
		{"list_thresholds_modes.txt", "-L -n --thresholds"},
		{"list_persistent_conn_modes.txt", "-L -n --persistent-conn"},
		{"list_tun_info_modes.txt", "-L -n --tun-info"},
		{"list_nosort_modes.txt", "-L -n --nosort"},
		{"list_service_modes.txt", "-L -n -t [2001:db8:aaaa:bbbb:cccc:dddd:eeee:1]:8443"},
		{"list_fwmark_modes.txt", "-L -n -f 200 -6 --tun-info"},
		{"list_timeout_modes.txt", "-L --timeout"},
		{"save_numeric_modes.txt", "-S -n"},
		{"save_names_modes.txt", "-S"},
		{"conns_numeric_modes.txt", "-L -n -c"},
		{"conns_names_modes.txt", "-L -c"},
		{"conns_persistent_modes.txt", "-L -n -c --persistent-conn"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("testdata", "list", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			var got string
			if strings.HasPrefix(tc.file, "conns_") {
				c, err := Parse(strings.Fields(tc.line))
				if err != nil || !c.List.Connection {
					t.Fatalf("Parse(%q) = %+v, %v, want a connection listing", tc.line, c, err)
				}
				var b bytes.Buffer
				if err := WriteConns(&b, modesConns, c.List); err != nil {
					t.Fatal(err)
				}
				got = b.String()
			} else {
				got = runListing(t, cfg, modesStats{}, tc.line)
			}
			if got != string(want) {
				t.Errorf("%q:\n%s\nwant:\n%s", tc.line, showSpaces(got), showSpaces(string(want)))
			}
		})
	}
}

// TestGoldenLocal: a destination on one of the director's own addresses
// lists as fwd_name's "Local" and saves as fwd_switch's "-g"
// (IP_VS_CONN_F_LOCALNODE shares DR's switch). Rows written from
// "  -> %-28s %-7s %-6d %-10u %-10u\n" and "-a %s -r %s %s -w %d\n".
func TestGoldenLocal(t *testing.T) {
	cfg := &ipvs.Config{Timeouts: ipvs.DefaultTimeouts, Services: []ipvs.Service{{
		Key: tcpKey("198.51.100.1:80"), Sched: "rr",
		Dests: []ipvs.Dest{{Addr: netip.MustParseAddr("198.51.100.1"), Port: 80, Weight: 1, Fwd: ipvs.FwdLocal}},
	}}}
	if got, want := runListing(t, cfg, nil, "-L -n"), "IP Virtual Server version 1.2.1 (size=4096)\n"+
		"Prot LocalAddress:Port Scheduler Flags\n"+
		"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"+
		"TCP  198.51.100.1:80 rr\n"+
		"  -> 198.51.100.1:80              Local   1      0          0         \n"; got != want {
		t.Errorf("-L -n:\n%s\nwant:\n%s", showSpaces(got), showSpaces(want))
	}
	if got, want := runListing(t, cfg, nil, "-S -n"), "-A -t 198.51.100.1:80 -s rr\n"+
		"-a -t 198.51.100.1:80 -r 198.51.100.1:80 -g -w 1\n"; got != want {
		t.Errorf("-S -n:\n%s\nwant:\n%s", got, want)
	}
}
