//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/keepalived"
)

// keepalived.conf → director → health engine → `xlb health`, without
// privileges: a TCP_CHECK of a listener on the loopback that closes takes
// its real server out of what the dataplane runs, `xlb health -o json`
// says so, and it comes back when the listener does.
func TestHealthWiring(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	go acceptAll(ln)
	conf := fmt.Sprintf(`virtual_server 198.18.0.100 80 {
    lb_algo rr
    lb_kind NAT
    delay_loop 0.2
    real_server 127.0.0.1 %d {
        weight 2
        TCP_CHECK {
            connect_timeout 0.5
            retry 1
            delay_before_retry 0.1
            warmup 0
        }
    }
    real_server 198.18.0.12 80 {
        weight 1
    }
    vrrp_whatever 1
}
`, port)
	res, err := keepalived.Parse("keepalived.conf", []byte(conf), keepalived.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || !strings.HasPrefix(res.Warnings[0].String(), "keepalived.conf:17:") {
		t.Errorf("warnings %v, want one at keepalived.conf:17", res.Warnings)
	}
	s := newServer(t, &fakeDataplane{}, res.IPVS, -1)
	if r := s.handle(request{Args: []string{"health"}}); r.Code == 0 {
		t.Errorf("xlb health without an engine: %+v", r)
	}
	hopts := health.DefaultOptions()
	hopts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	eng, err := health.New(res.Health, s.dir, hopts)
	if err != nil {
		t.Fatal(err)
	}
	s.hc = eng
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { eng.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	rs := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	k := res.IPVS.Services[0].Key
	inService := func() bool { return s.dir.Applied().Service(k).Dest(rs) != nil }
	state := func() health.RealStatus {
		t.Helper()
		r := s.handle(request{Args: []string{"health", "-o", "json"}})
		var st health.Status
		if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil || r.Code != 0 {
			t.Fatalf("xlb health -o json: %v %+v", err, r)
		}
		for _, r := range st.Services[0].Reals {
			if r.Dest == rs {
				return r
			}
		}
		t.Fatalf("%v not in %s", rs, r.Stdout)
		return health.RealStatus{}
	}
	waitFor(t, 3*time.Second, "first check passed", func() bool { return state().Checks[0].Result == "ok" })
	ln.Close()
	start := time.Now()
	waitFor(t, 3*time.Second, "real server out", func() bool { return !inService() })
	t.Logf("taken out %v after the listener closed", time.Since(start).Round(time.Millisecond))
	st := state()
	if st.Healthy || st.Checks[0].Result != "failed" || st.Checks[0].Error == "" || st.Checks[0].Transition.IsZero() {
		t.Errorf("down server's status: %+v", st)
	}
	if r := s.handle(request{Args: []string{"-S", "-n"}}); strings.Contains(r.Stdout, rs.String()) {
		t.Errorf("-S -n lists the failed server:\n%s", r.Stdout)
	}
	if r := s.handle(request{Args: []string{"health"}}); !strings.Contains(r.Stdout, "down") || !strings.Contains(r.Stdout, "TCP_CHECK") {
		t.Errorf("xlb health:\n%s", r.Stdout)
	}
	if r := s.handle(request{Args: []string{"health", "-o", "yaml"}}); r.Code == 0 {
		t.Error("xlb health -o yaml accepted")
	}

	ln2, err := net.Listen("tcp", rs.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	go acceptAll(ln2)
	waitFor(t, 3*time.Second, "real server back", inService)
	if w := s.dir.Applied().Service(k).Dest(rs).Weight; w != 2 {
		t.Errorf("back with weight %d, want 2", w)
	}
}

func acceptAll(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !ok(); {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// --keepalived is refused with --rules, and a keepalived.conf that does
// not load refuses the start, before anything is attached.
func TestKeepalivedFlag(t *testing.T) {
	dir := t.TempDir()
	bad := dir + "/bad.conf"
	if err := os.WriteFile(bad, []byte("virtual_server 10.0.0.1 80 {\n lb_kind FOO\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--iface", "lo", "--keepalived", bad, "--rules", "r"}, "--keepalived and --rules are exclusive"},
		{[]string{"--iface", "lo", "--keepalived", bad, "--save"}, "--save needs --rules"},
		{[]string{"--iface", "lo", "--keepalived", dir + "/none.conf"}, "load keepalived configuration"},
		{[]string{"--iface", "lo", "--keepalived", bad}, bad + ":2: lb_kind FOO"},
	} {
		err := daemon(tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("xlb run %v = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
