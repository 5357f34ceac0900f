package keepalived

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// TestImportMatchesIpvsadm imports keepalived.conf samples and compares
// the rules with what `ipvsadm -S -n` prints for the same services,
// written by hand in the .save files.
func TestImportMatchesIpvsadm(t *testing.T) {
	for _, name := range []string{"nat", "dr", "group", "fnat"} {
		t.Run(name, func(t *testing.T) {
			res, err := Load(filepath.Join("testdata", name+".conf"))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			var got bytes.Buffer
			if err := ipvsadm.WriteSave(&got, res.IPVS, true); err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join("testdata", name+".save"))
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != string(want) {
				t.Errorf("ipvsadm -S -n of %s.conf:\n%s\nwant:\n%s", name, got.String(), want)
			}
			// The .save text restores to the same configuration.
			back, err := ipvsadm.ParseRules(bytes.NewReader(want))
			if err != nil {
				t.Fatalf("ParseRules(%s.save): %v", name, err)
			}
			var again bytes.Buffer
			ipvsadm.WriteSave(&again, back, true)
			if again.String() != got.String() {
				t.Errorf("%s.save does not restore to the imported rules:\n%s", name, again.String())
			}
		})
	}
}

func service(t *testing.T, res *Result, key string) *health.VirtualService {
	t.Helper()
	for i := range res.Health.Services {
		if health.KeyString(res.Health.Services[i].Key) == key {
			return &res.Health.Services[i]
		}
	}
	t.Fatalf("no health service %s", key)
	return nil
}

func TestImportNATChecks(t *testing.T) {
	res, err := Load("testdata/nat.conf")
	if err != nil {
		t.Fatal(err)
	}
	if res.IPVS.Timeouts != (ipvs.Timeouts{TCP: 7200, TCPFin: 120, UDP: 300}) {
		t.Errorf("timeouts %+v, want lvs_timeouts 7200 120 300", res.IPVS.Timeouts)
	}
	ssl := service(t, res, "tcp 192.168.200.100:443")
	if ssl.DelayLoop != 6*time.Second || len(ssl.Reals) != 1 {
		t.Fatalf("ssl service %+v", ssl)
	}
	c := ssl.Reals[0].Checks[0]
	want := health.NewCheck(health.SSLGet)
	want.ConnectTimeout, want.Retry, want.DelayBeforeRetry = 3*time.Second, 3, 3*time.Second
	want.URLs = []health.URL{{Path: "/", Digest: "ff20ad2481f97b1754ef3e12ecd3a9cc"}, {Path: "/mrtg/", Digest: "9b3a0c85a887a256d6939da88aabd8cd"}}
	if !equalCheck(c, want) {
		t.Errorf("SSL_GET = %+v, want %+v", c, want)
	}
	web := service(t, res, "tcp 10.10.10.2:1358")
	if web.Sorry != netip.MustParseAddrPort("192.168.200.200:1358") || web.SorryFwd != ipvs.FwdMasq || web.SorryWeight != 1 {
		t.Errorf("sorry server %v %v %d, want 192.168.200.200:1358 NAT weight 1", web.Sorry, web.SorryFwd, web.SorryWeight)
	}
	h := web.Reals[0].Checks[0]
	if h.Kind != health.HTTPGet || len(h.URLs) != 2 || h.URLs[1].StatusCodes[1] != (health.StatusRange{Min: 301, Max: 302}) {
		t.Errorf("HTTP_GET = %+v", h)
	}
	tcp := web.Reals[1]
	if !tcp.InhibitOnFailure || tcp.Weight != 2 || tcp.Checks[0].ConnectPort != 8081 || tcp.Checks[0].Retry != health.DefaultRetry ||
		tcp.Checks[0].ConnectTimeout != 2*time.Second || tcp.Checks[0].Warmup != health.WarmupDelayLoop {
		t.Errorf("TCP_CHECK real server = %+v", tcp)
	}
	var kws []string
	for _, w := range res.Warnings {
		kws = append(kws, w.String())
	}
	got := strings.Join(kws, "\n")
	for _, want := range []string{
		"testdata/nat.conf:5: global_defs notification_email: not used by xlb (block ignored)",
		"testdata/nat.conf:8: global_defs notification_email_from: not used by xlb (ignored)",
		"testdata/nat.conf:15: vrrp_instance: VRRP is not supported",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings:\n%s\nlack %q", got, want)
		}
	}
	if len(res.Warnings) != 6 {
		t.Errorf("%d warnings, want 6 (5 global_defs keywords, 1 vrrp_instance):\n%s", len(res.Warnings), got)
	}
}

func equalCheck(a, b health.Check) bool {
	return a.Kind == b.Kind && a.ConnectTimeout == b.ConnectTimeout && a.Retry == b.Retry && a.DelayBeforeRetry == b.DelayBeforeRetry &&
		a.Warmup == b.Warmup && a.Rise == b.Rise && a.DelayLoop == b.DelayLoop && len(a.URLs) == len(b.URLs) &&
		(len(a.URLs) == 0 || a.URLs[0].Path == b.URLs[0].Path && a.URLs[0].Digest == b.URLs[0].Digest &&
			a.URLs[len(a.URLs)-1].Path == b.URLs[len(b.URLs)-1].Path && a.URLs[len(a.URLs)-1].Digest == b.URLs[len(b.URLs)-1].Digest)
}

func TestImportDRChecks(t *testing.T) {
	res, err := Load("testdata/dr.conf")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings %v, want none", res.Warnings)
	}
	web := service(t, res, "tcp 192.168.100.10:80")
	if web.Quorum != 2 || web.Hysteresis != 1 || web.QuorumUp != "/usr/local/bin/quorum.sh up" || web.QuorumDown != "/usr/local/bin/quorum.sh down" {
		t.Errorf("quorum %+v", web)
	}
	if !web.Reals[0].InhibitOnFailure || !web.Reals[1].InhibitOnFailure {
		t.Errorf("inhibit_on_failure of the virtual server not applied to its real servers")
	}
	if got := web.Reals[1].NotifyDown; got != "/usr/local/bin/notify.sh 192.168.100.12 down" {
		t.Errorf("notify_down %q", got)
	}
	// ipvsadm -S does not save thresholds; the model has them.
	if d := res.IPVS.Services[0].Dest(netip.MustParseAddrPort("192.168.100.12:80")); d == nil || d.UThreshold != 1000 || d.LThreshold != 100 {
		t.Errorf("thresholds of 192.168.100.12: %+v, want 1000 and 100", d)
	}
	tc := web.Reals[1].Checks[0]
	if tc.Retry != 2 || tc.DelayBeforeRetry != 2*time.Second || tc.Warmup != 0 || tc.ConnectTimeout != 3*time.Second {
		t.Errorf("TCP_CHECK %+v", tc)
	}
	dns := service(t, res, "udp 192.168.100.20:53")
	u := dns.Reals[0].Checks[0]
	if u.Kind != health.UDPCheck || !bytes.Equal(u.Payload, []byte{0, 1}) || !u.RequireReply || !bytes.Equal(u.ReplyPrefix, []byte{0, 1}) {
		t.Errorf("UDP_CHECK %+v", u)
	}
	if p := dns.Reals[1].Checks[0]; p.Kind != health.PingCheck || p.Retry != 4 {
		t.Errorf("PING_CHECK %+v", p)
	}
	fw := service(t, res, "fwmark 7")
	m := fw.Reals[0].Checks[0]
	if m.Kind != health.MiscCheck || m.MiscPath != "/usr/local/bin/check_app --host 192.168.100.31" || m.MiscTimeout != 4*time.Second ||
		!m.MiscDynamic || m.Retry != health.DefaultMiscRetry {
		t.Errorf("MISC_CHECK %+v", m)
	}
	if fw.Reals[0].Addr != netip.MustParseAddrPort("192.168.100.31:0") {
		t.Errorf("fwmark real server %v", fw.Reals[0].Addr)
	}
}

func TestImportGroupAndInclude(t *testing.T) {
	res, err := Load("testdata/group.conf")
	if err != nil {
		t.Fatal(err)
	}
	web := service(t, res, "tcp 10.0.0.1:80")
	var also []string
	for _, k := range web.Also {
		also = append(also, health.KeyString(k))
	}
	if got := strings.Join(also, ","); got != "tcp 10.0.0.2:80,tcp 10.0.0.3:80,tcp 10.0.1.1:8080,fwmark 9" {
		t.Errorf("group members %s", got)
	}
	// connect_timeout 4 of the virtual server, 1 of the second real
	// server; retry 5 of its checker.
	if c := web.Reals[0].Checks[0]; c.ConnectTimeout != 4*time.Second || c.Retry != 1 {
		t.Errorf("first checker %+v, want the virtual server's connect_timeout 4", c)
	}
	if c := web.Reals[1].Checks[0]; c.ConnectTimeout != time.Second || c.Retry != 5 {
		t.Errorf("second checker %+v, want the real server's connect_timeout 1 and its own retry 5", c)
	}
	if web.DelayLoop != 2*time.Second {
		t.Errorf("delay_loop %v, want 2s", web.DelayLoop)
	}
	if len(res.Health.Services) != 2 {
		t.Errorf("%d health services, want 2 (the group once, the included TUN one)", len(res.Health.Services))
	}
}

// files is an in-memory file system for include tests.
type files map[string]string

func (f files) opts() Options {
	return Options{
		ReadFile: func(name string) ([]byte, error) {
			if s, ok := f[name]; ok {
				return []byte(s), nil
			}
			return nil, os.ErrNotExist
		},
		Glob: func(pat string) ([]string, error) {
			var out []string
			for name := range f {
				if ok, _ := filepath.Match(pat, name); ok {
					out = append(out, name)
				}
			}
			return out, nil
		},
	}
}

func TestErrors(t *testing.T) {
	const vs = "virtual_server 10.0.0.1 80 {\n"
	tests := []struct {
		name, src, want string
	}{
		{"unclosed", vs + "  lb_algo rr\n", "k.conf:1: virtual_server block not closed"},
		{"stray close", "}\n", "k.conf:1: unexpected }"},
		{"stray open", "{\n}\n", "k.conf:1: unexpected {"},
		{"bad address", "virtual_server 10.0.0.x 80 {\n}\n", `k.conf:1: virtual_server: address "10.0.0.x"`},
		{"bad port", "virtual_server 10.0.0.1 99999 {\n}\n", `port "99999"`},
		{"no port", "virtual_server 10.0.0.1 {\n}\n", "k.conf:1: virtual_server takes ADDRESS PORT"},
		{"unknown scheduler", vs + " lb_algo fastest\n}\n", "k.conf:1: virtual_server 10.0.0.1 80: Scheduler or persistence engine not found"},
		{"bad kind", vs + " lb_kind FOO\n}\n", "k.conf:2: lb_kind FOO: want NAT, DR, TUN or FNAT"},
		{"no laddr group", vs + " lb_kind FNAT\n laddr_group_name g\n}\n", "k.conf:3: laddr_group_name g: no such local_address_group"},
		{"bad laddr", "local_address_group g {\n 10.0.0.x\n}\n", "k.conf:2: local_address_group entry 10.0.0.x: not an address"},
		{"empty laddr", "local_address_group g {\n}\n", "local_address_group g has no address"},
		{"weight", vs + " real_server 10.0.1.1 80 {\n  weight 70000\n }\n}\n", `k.conf:3: weight "70000"`},
		{"dr group ports", "virtual_server_group g {\n 10.0.0.1 80\n 10.0.0.2 81\n}\nvirtual_server group g {\n lb_kind DR\n real_server 10.0.1.1 80 {\n }\n}\n", "k.conf:7: real_server 10.0.1.1 80: the services of the group have different ports"},
		{"dup rs", vs + " real_server 10.0.1.1 80 {\n }\n real_server 10.0.1.1 80 {\n }\n}\n", "k.conf:4: real_server 10.0.1.1 80: Destination already exists"},
		{"dup vs", vs + "}\n" + vs + "}\n", "k.conf:3: virtual_server 10.0.0.1 80: Service already exists"},
		{"no group", "virtual_server group nope {\n}\n", "no such virtual_server_group"},
		{"bad digest", vs + " real_server 10.0.1.1 80 {\n  HTTP_GET {\n   url {\n    path /\n    digest xyz\n   }\n  }\n }\n}\n", `k.conf:6: digest "xyz"`},
		{"no url", vs + " real_server 10.0.1.1 80 {\n  HTTP_GET {\n  }\n }\n}\n", "k.conf:3: HTTP_GET needs at least one url"},
		{"no misc path", vs + " real_server 10.0.1.1 80 {\n  MISC_CHECK {\n  }\n }\n}\n", "MISC_CHECK needs misc_path"},
		{"negative time", vs + " delay_loop -1\n}\n", `k.conf:2: delay_loop "-1"`},
		{"hex time", vs + " delay_loop 0x10\n}\n", `delay_loop "0x10"`},
		{"quote", vs + " quorum_up \"/bin/x\n}\n", "k.conf:2: unterminated quoted string"},
		{"range", "virtual_server_group g {\n 10.0.0.5-2 80\n}\n", "ends before it starts"},
		{"mask", vs + " persistence_granularity 255.0.255.0\n}\n", "not contiguous"},
		{"missing include", "include nothere.conf\n", "k.conf:1: include nothere.conf"},
		{"include cycle", "include k.conf\n", "include cycle"},
		{"sorry is real", vs + " sorry_server 10.0.1.1 80\n real_server 10.0.1.1 80 {\n }\n}\n", "k.conf:1: sorry_server 10.0.1.1:80 is also a real_server"},
		{"zero timeout", vs + " real_server 10.0.1.1 80 {\n  TCP_CHECK {\n   connect_timeout 0\n  }\n }\n}\n", "k.conf:3: TCP_CHECK: invalid health check: connect_timeout 0s: must be positive"},
		{"pe", vs + " persistence_engine sip\n}\n", "no persistence engines"},
		{"status", vs + " real_server 10.0.1.1 80 {\n  HTTP_GET {\n   url {\n    path /\n    status_code 2000\n   }\n  }\n }\n}\n", "status_code 2000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := files{"k.conf": tt.src}
			_, err := Parse("k.conf", []byte(tt.src), fs.opts())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) = %v, want an error containing %q", tt.src, err, tt.want)
			}
		})
	}
}

func TestIncludeRelative(t *testing.T) {
	fs := files{
		"/etc/keepalived/keepalived.conf": "include conf.d/*.conf\ninclude /etc/other/x.conf\ninclude none/*.conf\n",
		"/etc/keepalived/conf.d/a.conf":   "virtual_server 10.0.0.1 80 {\n include ../b.inc\n}\n",
		"/etc/keepalived/b.inc":           "real_server 10.0.1.1 80 {\n}\nvrrp_script x {\n}\n",
		"/etc/other/x.conf":               "virtual_server 10.0.0.2 80 {\n}\n",
	}
	res, err := Parse("/etc/keepalived/keepalived.conf", []byte(fs["/etc/keepalived/keepalived.conf"]), fs.opts())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.IPVS.Services); n != 2 {
		t.Fatalf("%d services, want 2", n)
	}
	if s := res.IPVS.Service(ipvs.ServiceKey{Proto: ipvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}); s == nil || len(s.Dests) != 1 {
		t.Errorf("included real server missing: %+v", s)
	}
	var got []string
	for _, w := range res.Warnings {
		got = append(got, w.String())
	}
	// A keyword unknown inside a virtual_server (the included
	// vrrp_script lands there) and a glob that matches nothing.
	want := []string{
		"/etc/keepalived/keepalived.conf:3: include none/*.conf matches no file",
		"/etc/keepalived/b.inc:3: virtual_server vrrp_script: unknown keyword (block ignored)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestWarningsOnce(t *testing.T) {
	src := "vrrp_instance a {\n}\nvrrp_instance b {\n}\nvrrp_instance c {\n}\nfoo\n"
	res, err := Parse("k.conf", []byte(src), files{}.opts())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 2 || res.Warnings[0].More != 2 || res.Warnings[0].Pos.Line != 1 || res.Warnings[1].Keyword != "foo" {
		t.Errorf("warnings %+v, want vrrp_instance once (line 1, 2 more) and foo", res.Warnings)
	}
	if !strings.Contains(res.Warnings[0].String(), "(and 2 more)") {
		t.Errorf("warning %q does not count the others", res.Warnings[0])
	}
}

func TestSyntax(t *testing.T) {
	// Braces against words, the opening brace on its own line, comments,
	// continuation lines and quoted words.
	src := `virtual_server 10.0.0.1 80
{
    lb_algo rr   # round robin
    real_server 10.0.1.1 80{ weight 3 }
    real_server 10.0.1.2 \
        80 {
        MISC_CHECK {
            misc_path "/bin/check \"a b\""
        }
    }
}
`
	res, err := Parse("k.conf", []byte(src), files{}.opts())
	if err != nil {
		t.Fatal(err)
	}
	s := res.IPVS.Services[0]
	if s.Sched != "rr" || len(s.Dests) != 2 || s.Dests[0].Weight != 3 {
		t.Errorf("service %+v", s)
	}
	if got := res.Health.Services[0].Reals[1].Checks[0].MiscPath; got != `/bin/check "a b"` {
		t.Errorf("misc_path %q", got)
	}
}

// TestDRPort: a DR destination keeps the virtual port, as ipvsadm
// stores it, and its checker still probes the port of the real_server
// line, as keepalived's.
func TestDRPort(t *testing.T) {
	src := "virtual_server 10.0.0.1 80 {\n lb_kind DR\n real_server 10.0.1.1 8080 {\n  TCP_CHECK {\n  }\n }\n}\n"
	res, err := Parse("k.conf", []byte(src), files{}.opts())
	if err != nil {
		t.Fatal(err)
	}
	if d := res.IPVS.Services[0].Dests[0]; d.Port != 80 {
		t.Errorf("DR destination port %d, want the service's 80", d.Port)
	}
	rs := res.Health.Services[0].Reals[0]
	if rs.Addr != netip.MustParseAddrPort("10.0.1.1:80") || rs.Checks[0].ConnectPort != 8080 {
		t.Errorf("real server %v checked on port %d, want 10.0.1.1:80 checked on 8080", rs.Addr, rs.Checks[0].ConnectPort)
	}
}

func TestErrorUnwraps(t *testing.T) {
	_, err := Parse("k.conf", []byte("virtual_server 10.0.0.1 80 {\n lb_algo nope\n}\n"), files{}.opts())
	var e *Error
	if !errors.As(err, &e) || e.Pos.Line != 1 || !errors.Is(err, ipvs.ErrSchedNotFound) {
		t.Errorf("error %v: want an *Error at line 1 wrapping ipvs.ErrSchedNotFound", err)
	}
}

func TestIPv6AndMarks(t *testing.T) {
	src := `virtual_server 2001:db8::1 443 {
    lb_algo sed
    lb_kind DR
    persistence_timeout 30
    persistence_granularity 64
    protocol SCTP
    real_server 2001:db8::10 443 {
        weight 7
        PING_CHECK {
        }
    }
}
virtual_server fwmark 3 {
    ip_family inet6
    lb_algo rr
    lb_kind TUN
    real_server 2001:db8::20 0 {
    }
}
virtual_server 10.0.0.1 53 {
    protocol UDP
    ops
    lb_algo rr
    real_server 10.0.1.1 5353 {
    }
}
`
	res, err := Parse("k.conf", []byte(src), files{}.opts())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	ipvsadm.WriteSave(&b, res.IPVS, true)
	want := `-A -u 10.0.0.1:53 -s rr -o
-a -u 10.0.0.1:53 -r 10.0.1.1:5353 -m -w 1
-A --sctp-service [2001:db8::1]:443 -s sed -p 30 -M 64
-a --sctp-service [2001:db8::1]:443 -r [2001:db8::10]:443 -g -w 7
-A -f 3 -6 -s rr
-a -f 3 -6 -r [2001:db8::20]:0 -i -w 1 --tun-type ipip
`
	if b.String() != want {
		t.Errorf("ipvsadm -S -n:\n%s\nwant:\n%s", b.String(), want)
	}
	if k := res.Health.Services[1].Key; k != ipvs.FWMarkKey(3, true) {
		t.Errorf("fwmark key %+v, want mark 3 IPv6", k)
	}
}

func TestLVSSyncDaemon(t *testing.T) {
	for _, tc := range []struct {
		conf string
		want *ipvsadm.Daemon
		warn int
		err  string
	}{
		{"global_defs {\n lvs_sync_daemon sync0\n}\n", &ipvsadm.Daemon{State: "backup", McastInterface: "sync0"}, 0, ""},
		{"global_defs {\n lvs_sync_daemon sync0 VI_1 id 9 maxlen 1400 port 8849 ttl 2 group 224.0.0.82\n}\n",
			&ipvsadm.Daemon{State: "backup", McastInterface: "sync0", SyncID: 9, SyncMaxLen: 1400, McastPort: 8849, McastTTL: 2,
				McastGroup: netip.MustParseAddr("224.0.0.82")}, 1, ""},
		{"global_defs {\n lvs_sync_daemon sync0 id 7\n}\n", &ipvsadm.Daemon{State: "backup", McastInterface: "sync0", SyncID: 7}, 0, ""},
		{"global_defs {\n}\n", nil, 0, ""},
		{"global_defs {\n lvs_sync_daemon\n}\n", nil, 0, "needs an interface"},
		{"global_defs {\n lvs_sync_daemon sync0 id\n}\n", nil, 0, "needs a value"},
		{"global_defs {\n lvs_sync_daemon sync0 VI_1 id\n}\n", nil, 0, "needs a value"},
		{"global_defs {\n lvs_sync_daemon sync0 id 256\n}\n", nil, 0, "0..255"},
		{"global_defs {\n lvs_sync_daemon sync0 group 10.0.0.1\n}\n", nil, 0, "multicast"},
		{"global_defs {\n lvs_sync_daemon sync0 VI_1 color red\n}\n", nil, 0, "want id, maxlen"},
	} {
		res, err := Parse("k.conf", []byte(tc.conf), DefaultOptions())
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q) error = %v, want one with %q", tc.conf, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.conf, err)
			continue
		}
		if (res.SyncDaemon == nil) != (tc.want == nil) || tc.want != nil && *res.SyncDaemon != *tc.want || len(res.Warnings) != tc.warn {
			t.Errorf("Parse(%q) = %+v, %v, want %+v and %d warnings", tc.conf, res.SyncDaemon, res.Warnings, tc.want, tc.warn)
		}
	}
}
