package health

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/ipvs"
)

var svcKey = ipvs.ServiceKey{Proto: ipvs.TCP, Addr: netip.MustParseAddr("10.0.0.100"), Port: 80}

// recSink records every batch and the latest state of each destination.
type recSink struct {
	mu      sync.Mutex
	batches [][]Transition
	last    map[netip.AddrPort]Transition
	fail    int // refuse this many batches first
	changed chan struct{}
}

func newRecSink() *recSink {
	return &recSink{last: map[netip.AddrPort]Transition{}, changed: make(chan struct{}, 1)}
}

func (s *recSink) ApplyHealth(_ context.Context, b []Transition) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return errors.New("refused")
	}
	s.batches = append(s.batches, b)
	for _, t := range b {
		s.last[t.Dest] = t
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return nil
}

func (s *recSink) get(d netip.AddrPort) (Transition, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.last[d]
	return t, ok
}

// wait waits up to limit for d's latest state to satisfy f and returns
// how long it took.
func (s *recSink) wait(t *testing.T, d netip.AddrPort, limit time.Duration, what string, f func(Transition) bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(limit)
	for {
		if tr, ok := s.get(d); ok && f(tr) {
			return time.Since(start)
		}
		select {
		case <-s.changed:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			tr, _ := s.get(d)
			t.Fatalf("%s: %s not reached within %v; last %+v", d, what, limit, tr)
		}
	}
}

func in(w int32) func(Transition) bool {
	return func(t Transition) bool { return t.Present && t.Weight == w }
}

func out(t Transition) bool { return !t.Present }

// fast is a checker of kind k with short timings.
func fast(k Kind) Check {
	c := NewCheck(k)
	c.ConnectTimeout = 300 * time.Millisecond
	c.DelayLoop = 100 * time.Millisecond
	c.DelayBeforeRetry = 50 * time.Millisecond
	c.Warmup = 0
	// A script started on a loaded machine can take longer than the
	// 100 ms delay_loop that misc_timeout defaults to.
	c.MiscTimeout = 2 * time.Second
	return c
}

func quiet() Options {
	o := DefaultOptions()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return o
}

func start(t *testing.T, cfg Config, sink Sink) *Engine {
	t.Helper()
	e, err := New(cfg, sink, quiet())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	})
	return e
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

func apOf(a net.Addr) netip.AddrPort { return netip.MustParseAddrPort(a.String()) }

// TestTCPCheckOutAndBack stops a real server's listener: it must be
// taken out within delay_loop × retry + delay_before_retry + 1 s, and
// come back with its weight when the listener returns.
func TestTCPCheckOutAndBack(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	rs := apOf(ln.Addr())
	other := listen(t, "127.0.0.1:0")
	defer other.Close()
	c := fast(TCPCheck)
	c.Retry = 2
	cfg := Config{Services: []VirtualService{{Key: svcKey, Reals: []RealServer{
		{Addr: rs, Weight: 3, Checks: []Check{c}},
		{Addr: apOf(other.Addr()), Weight: 1, Checks: []Check{c}},
	}}}}
	sink := newRecSink()
	e := start(t, cfg, sink)
	sink.wait(t, rs, time.Second, "initially in", in(3))
	ln.Close()
	bound := c.DelayLoop*time.Duration(c.Retry) + c.DelayBeforeRetry + time.Second
	took := sink.wait(t, rs, bound, "taken out", out)
	t.Logf("taken out after %v (bound %v)", took, bound)
	if tr, _ := sink.get(rs); tr.Healthy || !strings.Contains(tr.Reason, "TCP_CHECK failed") {
		t.Errorf("out transition = %+v, want unhealthy with a TCP_CHECK reason", tr)
	}
	if tr, _ := sink.get(apOf(other.Addr())); !tr.Present || tr.Weight != 1 {
		t.Errorf("other server = %+v, want still in with weight 1", tr)
	}
	ln2 := listen(t, rs.String())
	defer ln2.Close()
	sink.wait(t, rs, time.Second, "back in", in(3))
	if n := e.Status().Services[0].Reals[0].Transitions; n != 2 {
		t.Errorf("%d transitions counted, want 2 (down, up)", n)
	}
}

func TestInhibitOnFailure(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	rs := apOf(ln.Addr())
	cfg := Config{Services: []VirtualService{{Key: svcKey, Reals: []RealServer{
		{Addr: rs, Weight: 5, InhibitOnFailure: true, Checks: []Check{fast(TCPCheck)}},
	}}}}
	sink := newRecSink()
	start(t, cfg, sink)
	sink.wait(t, rs, time.Second, "in", in(5))
	ln.Close()
	sink.wait(t, rs, 2*time.Second, "inhibited (weight 0, kept)", func(t Transition) bool {
		return t.Present && t.Weight == 0 && !t.Healthy
	})
}

// hangListener accepts connections and never answers.
func hangListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln
}

func TestProbeHTTP(t *testing.T) {
	body := "hello from the real server\n"
	sum := md5.Sum([]byte(body))
	digest := hex.EncodeToString(sum[:])
	var gotUA, gotHost string
	var mu sync.Mutex
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotUA, gotHost = r.UserAgent(), r.Host
		mu.Unlock()
		switch r.URL.Path {
		case "/ok":
			io.WriteString(w, body)
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusFound)
		default:
			http.Error(w, "broken", http.StatusInternalServerError)
		}
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	tls := httptest.NewTLSServer(h)
	defer tls.Close()
	hang := hangListener(t)
	refused := listen(t, "127.0.0.1:0")
	refused.Close()

	tests := []struct {
		name  string
		kind  Kind
		addr  net.Addr
		urls  []URL
		vhost string
		want  string // "" passes, else a substring of the error
	}{
		{"ok", HTTPGet, srv.Listener.Addr(), []URL{{Path: "/ok"}}, "", ""},
		{"digest", HTTPGet, srv.Listener.Addr(), []URL{{Path: "/ok", Digest: digest}}, "", ""},
		{"digest mismatch", HTTPGet, srv.Listener.Addr(), []URL{{Path: "/ok", Digest: strings.Repeat("0", 32)}}, "", "digest " + digest},
		{"status 500", HTTPGet, srv.Listener.Addr(), []URL{{Path: "/fail"}}, "", "status 500"},
		{"status 500 expected", HTTPGet, srv.Listener.Addr(), []URL{{Path: "/fail", StatusCodes: []StatusRange{{500, 500}}}}, "", ""},
		{"302 not 2xx", HTTPGet, srv.Listener.Addr(), []URL{{Path: "/redirect"}}, "", "status 302"},
		{"second url fails", HTTPGet, srv.Listener.Addr(), []URL{{Path: "/ok"}, {Path: "/fail"}}, "", "status 500"},
		{"virtualhost", HTTPGet, srv.Listener.Addr(), []URL{{Path: "/ok"}}, "www.example.org", ""},
		{"ssl", SSLGet, tls.Listener.Addr(), []URL{{Path: "/ok", Digest: digest}}, "", ""},
		{"ssl to plain", SSLGet, srv.Listener.Addr(), []URL{{Path: "/ok"}}, "", "tls handshake"},
		{"hung", HTTPGet, hang.Addr(), []URL{{Path: "/ok"}}, "", "timeout"},
		{"ssl hung", SSLGet, hang.Addr(), []URL{{Path: "/ok"}}, "", "timeout"},
		{"refused", HTTPGet, refused.Addr(), []URL{{Path: "/ok"}}, "", "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fast(tt.kind)
			c.ConnectTimeout = time.Second // the hung cases wait for it; others must not hit it on a loaded machine
			c.URLs, c.VirtualHost = tt.urls, tt.vhost
			if err := (&Config{Services: []VirtualService{{Key: svcKey, Reals: []RealServer{{Addr: apOf(tt.addr), Checks: []Check{c}}}}}}).Validate(); err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			_, err := c.probe(context.Background(), apOf(tt.addr))
			if took := time.Since(begin); took > c.ConnectTimeout*time.Duration(len(tt.urls))+time.Second {
				t.Errorf("probe took %v, want at most connect_timeout %v per url", took, c.ConnectTimeout)
			}
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("probe = %v, want success", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("probe = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if gotUA != "KeepAliveClient" {
		t.Errorf("User-Agent %q, want keepalived's KeepAliveClient", gotUA)
	}
	if gotHost == "" {
		t.Errorf("no Host header")
	}
}

// TestHungServerStallsNoOne runs a hung HTTP server next to a healthy
// one: the hung one is taken out, the healthy one keeps being checked at
// its own pace.
func TestHungServerStallsNoOne(t *testing.T) {
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer good.Close()
	hang := hangListener(t)
	c := fast(HTTPGet)
	c.URLs = []URL{{Path: "/"}}
	c.ConnectTimeout = time.Second // ten delay_loops
	cfg := Config{Services: []VirtualService{{Key: svcKey, Reals: []RealServer{
		{Addr: apOf(hang.Addr()), Weight: 1, Checks: []Check{c}},
		{Addr: apOf(good.Listener.Addr()), Weight: 1, Checks: []Check{c}},
	}}}}
	sink := newRecSink()
	e := start(t, cfg, sink)
	sink.wait(t, apOf(hang.Addr()), 4*time.Second, "hung server out", out)
	st := e.Status()
	hung, ok := st.Services[0].Reals[0], st.Services[0].Reals[1]
	if hung.Checks[0].Error == "" || !strings.Contains(hung.Checks[0].Error, "timeout") {
		t.Errorf("hung server's error %q, want a timeout", hung.Checks[0].Error)
	}
	// 2 s at least passed (two timeouts); at a 100 ms period the good
	// server has been checked about 20 times.
	if n := ok.Checks[0].Checks; n < 10 {
		t.Errorf("good server checked %d times while the other hung, want >= 10", n)
	}
	if !ok.Healthy || !ok.Present {
		t.Errorf("good server %+v, want healthy and in", ok)
	}
}

func udpServer(t *testing.T, reply func([]byte) []byte) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if r := reply(buf[:n]); r != nil {
				pc.WriteTo(r, from)
			}
		}
	}()
	return apOf(pc.LocalAddr())
}

func TestProbeUDP(t *testing.T) {
	echo := udpServer(t, func(b []byte) []byte { return append([]byte("PONG "), b...) })
	silent := udpServer(t, func([]byte) []byte { return nil })
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	closed := apOf(pc.LocalAddr())
	pc.Close()
	tests := []struct {
		name    string
		dst     netip.AddrPort
		require bool
		prefix  string
		min     int
		max     int
		want    string
	}{
		{"echo", echo, true, "", 0, 0, ""},
		{"echo prefix", echo, true, "PONG", 0, 0, ""},
		{"echo wrong prefix", echo, true, "PING", 0, 0, "does not start with"},
		{"echo too short", echo, true, "", 100, 0, "want at least 100"},
		{"echo too long", echo, true, "", 0, 4, "want at most 4"},
		{"silent without require_reply", silent, false, "", 0, 0, ""},
		{"silent with require_reply", silent, true, "", 0, 0, "no reply"},
		{"port unreachable", closed, false, "", 0, 0, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fast(UDPCheck)
			c.ConnectTimeout = time.Second
			c.Payload = []byte("hello")
			c.RequireReply, c.ReplyPrefix, c.MinReplyLen, c.MaxReplyLen = tt.require, []byte(tt.prefix), tt.min, tt.max
			_, err := c.probe(context.Background(), tt.dst)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("probe = %v, want success", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("probe = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestProbePing(t *testing.T) {
	for _, a := range []string{"127.0.0.1", "::1"} {
		t.Run(a, func(t *testing.T) {
			if a == "::1" {
				if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				} else {
					ln.Close()
				}
			}
			c := fast(PingCheck)
			if _, err := c.probe(context.Background(), netip.AddrPortFrom(netip.MustParseAddr(a), 0)); err != nil {
				t.Errorf("ping %s = %v, want success", a, err)
			}
		})
	}
	// An address bound to nothing on an interface that does not exist
	// fails at once, without sending anything anywhere.
	c := fast(PingCheck)
	c.BindIf = "xlb-no-such-if"
	if _, err := c.probe(context.Background(), netip.MustParseAddrPort("127.0.0.1:0")); err == nil {
		t.Errorf("ping bound to a missing interface succeeded")
	}
}

func TestIcmpChecksum(t *testing.T) {
	// RFC 1071 §3's example: the sum of 0001 f203 f4f5 f6f7 is ddf2,
	// whose complement is 220d.
	if got := icmpChecksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != 0x220d {
		t.Errorf("icmpChecksum = %#x, want 0x220d", got)
	}
}

func TestProbeMisc(t *testing.T) {
	tests := []struct {
		script  string
		dynamic bool
		weight  int32
		want    string
	}{
		{"true", false, noWeight, ""},
		{"false", false, noWeight, "exit status 1"},
		{"sh -c 'exit 7'", false, noWeight, "exit status 7"},
		{"sh -c 'exit 7'", true, 5, ""},
		{"sh -c 'exit 2'", true, 0, ""},
		{"sh -c 'exit 255'", true, 253, ""},
		{"sh -c 'exit 1'", true, noWeight, "exit status 1"},
		{"sh -c 'exit 0'", true, noWeight, ""},
		{"sh -c 'sleep 10'", false, noWeight, "timeout"},
		{"/nonexistent/script", false, noWeight, "no such file"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%v", tt.script, tt.dynamic), func(t *testing.T) {
			c := fast(MiscCheck)
			c.MiscPath, c.MiscDynamic, c.MiscTimeout = tt.script, tt.dynamic, time.Second
			begin := time.Now()
			w, err := c.probe(context.Background(), netip.AddrPort{})
			if took := time.Since(begin); took > 3*time.Second {
				t.Errorf("probe took %v, want the script killed after misc_timeout", took)
			}
			if w != tt.weight {
				t.Errorf("weight = %d, want %d", w, tt.weight)
			}
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("probe = %v, want success", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("probe = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// script writes a MISC_CHECK script that exits with the code in a file.
func exitFile(t *testing.T, code int) (script, file string) {
	t.Helper()
	dir := t.TempDir()
	file = filepath.Join(dir, "code")
	setCode(t, file, code)
	return "sh -c 'exit $(cat " + file + ")'", file
}

func setCode(t *testing.T, file string, code int) {
	t.Helper()
	if err := os.WriteFile(file+".tmp", []byte(fmt.Sprint(code)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file+".tmp", file); err != nil {
		t.Fatal(err)
	}
}

func TestMiscDynamicWeight(t *testing.T) {
	script, file := exitFile(t, 0)
	rs := netip.MustParseAddrPort("10.0.0.1:80")
	c := fast(MiscCheck)
	c.MiscPath, c.MiscDynamic = script, true
	cfg := Config{Services: []VirtualService{{Key: svcKey, Reals: []RealServer{{Addr: rs, Weight: 4, Checks: []Check{c}}}}}}
	sink := newRecSink()
	start(t, cfg, sink)
	sink.wait(t, rs, time.Second, "configured weight", in(4))
	setCode(t, file, 12)
	sink.wait(t, rs, 2*time.Second, "dynamic weight 10", in(10))
	setCode(t, file, 1)
	sink.wait(t, rs, 2*time.Second, "out", out)
	setCode(t, file, 0)
	// keepalived keeps the last dynamic weight: exit 0 leaves it.
	sink.wait(t, rs, 2*time.Second, "back with weight 10", in(10))
}

// TestRise brings a failed server back only after rise successes in a
// row, and takes a healthy one out only after retry+1 failures.
func TestRise(t *testing.T) {
	script, file := exitFile(t, 1)
	rs := netip.MustParseAddrPort("10.0.0.1:80")
	c := fast(MiscCheck)
	c.MiscPath, c.Rise, c.Retry = script, 3, 2
	cfg := Config{Services: []VirtualService{{Key: svcKey, Alpha: true, Reals: []RealServer{{Addr: rs, Weight: 1, Checks: []Check{c}}}}}}
	sink := newRecSink()
	e := start(t, cfg, sink)
	sink.wait(t, rs, time.Second, "out (alpha)", out)
	setCode(t, file, 0)
	sink.wait(t, rs, 3*time.Second, "in", in(1))
	cs := e.Status().Services[0].Reals[0].Checks[0]
	if cs.Successes < 3 {
		t.Errorf("in after %d successes, want rise 3", cs.Successes)
	}
	setCode(t, file, 1)
	sink.wait(t, rs, 3*time.Second, "out again", out)
	cs = e.Status().Services[0].Reals[0].Checks[0]
	if cs.Failures != 3 {
		t.Errorf("out after %d failures, want retry+1 = 3", cs.Failures)
	}
}

// TestQuorumAndSorry loses quorum when one of two servers fails: the
// sorry server is added, the other real server taken out, quorum_down
// runs; quorum is regained with hysteresis and quorum_up runs.
func TestQuorumAndSorry(t *testing.T) {
	dir := t.TempDir()
	s1, f1 := exitFile(t, 0)
	s2, f2 := exitFile(t, 0)
	r1 := netip.MustParseAddrPort("10.0.0.1:80")
	r2 := netip.MustParseAddrPort("10.0.0.2:80")
	r3 := netip.MustParseAddrPort("10.0.0.3:80")
	sorry := netip.MustParseAddrPort("10.0.0.9:80")
	c1, c2 := fast(MiscCheck), fast(MiscCheck)
	c1.MiscPath, c2.MiscPath = s1, s2
	cfg := Config{Services: []VirtualService{{
		Key: svcKey, Quorum: 3, Hysteresis: 1,
		QuorumUp:   "touch " + filepath.Join(dir, "up"),
		QuorumDown: "touch " + filepath.Join(dir, "down"),
		Sorry:      sorry, SorryFwd: ipvs.FwdMasq,
		Reals: []RealServer{
			{Addr: r1, Weight: 2, Checks: []Check{c1}},
			{Addr: r2, Weight: 1, Checks: []Check{c2}},
			{Addr: r3, Weight: 1, InhibitOnFailure: true}, // no checker: always healthy
		},
	}}}
	sink := newRecSink()
	e := start(t, cfg, sink)
	sink.wait(t, sorry, time.Second, "sorry server out", out)
	sink.wait(t, r1, time.Second, "r1 in", in(2))
	// 4 → 2 (r1 fails): below quorum-hysteresis = 2? No: 2 is not below 2.
	setCode(t, f1, 1)
	sink.wait(t, r1, 2*time.Second, "r1 out", out)
	if tr, _ := sink.get(sorry); tr.Present {
		t.Fatalf("sorry server added at weight 2 >= quorum-hysteresis 2")
	}
	// 2 → 1 (r2 fails): quorum lost.
	setCode(t, f2, 1)
	sink.wait(t, sorry, 2*time.Second, "sorry server in", func(t Transition) bool {
		return t.Present && t.Sorry && t.Fwd == ipvs.FwdMasq && t.Weight == 1
	})
	// r3 is healthy but out while the sorry server serves; inhibited, so kept at 0.
	sink.wait(t, r3, time.Second, "r3 inhibited", func(t Transition) bool { return t.Present && t.Weight == 0 && t.Healthy })
	waitFile(t, filepath.Join(dir, "down"))
	if st := e.Status().Services[0]; st.QuorumUp || !st.SorryActive || st.Weight != 1 {
		t.Errorf("status %+v, want quorum lost, sorry active, weight 1", st)
	}
	// 1 → 2 (r2 back): below quorum+hysteresis = 4, still lost.
	setCode(t, f2, 0)
	time.Sleep(500 * time.Millisecond)
	if tr, _ := sink.get(sorry); !tr.Present {
		t.Fatalf("sorry server removed at weight 2 < quorum+hysteresis 4")
	}
	// 2 → 4 (r1 back): regained.
	setCode(t, f1, 0)
	sink.wait(t, sorry, 2*time.Second, "sorry server out", out)
	sink.wait(t, r1, time.Second, "r1 in", in(2))
	sink.wait(t, r3, time.Second, "r3 in", in(1))
	waitFile(t, filepath.Join(dir, "up"))
}

// TestAllDownSorry: with the default quorum, the sorry server serves
// once no real server is healthy.
func TestAllDownSorry(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	rs := apOf(ln.Addr())
	sorry := netip.MustParseAddrPort("10.0.0.9:80")
	cfg := Config{Services: []VirtualService{{Key: svcKey, Sorry: sorry, SorryFwd: ipvs.FwdRoute, SorryInhibit: true,
		Reals: []RealServer{{Addr: rs, Weight: 1, Checks: []Check{fast(TCPCheck)}}}}}}
	sink := newRecSink()
	start(t, cfg, sink)
	sink.wait(t, sorry, time.Second, "sorry server inhibited", in(0))
	ln.Close()
	sink.wait(t, sorry, 2*time.Second, "sorry server in", in(1))
	sink.wait(t, rs, time.Second, "real server out", out)
}

func waitFile(t *testing.T, f string) {
	t.Helper()
	for range 100 {
		if _, err := os.Stat(f); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("script did not create %s", f)
}

// TestThousandChecks runs 1000 TCP checks side by side against loopback
// listeners and bounds each one's drift from its period.
func TestThousandChecks(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const n = 1000
	// 1000 connects a second; under the race detector, which makes
	// each several times dearer on two shared cores, one every 2 ms.
	period := time.Second
	if raceEnabled {
		period = 2 * time.Second
	}
	var lns []net.Listener
	for range 4 {
		ln := listen(t, "127.0.0.1:0")
		defer ln.Close()
		lns = append(lns, ln)
	}
	var reals []RealServer
	for i := range n {
		c := NewCheck(TCPCheck)
		c.DelayLoop = period
		c.Warmup = WarmupDelayLoop
		tgt := apOf(lns[i%len(lns)].Addr())
		c.ConnectIP, c.ConnectPort = tgt.Addr(), tgt.Port()
		reals = append(reals, RealServer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 80), Weight: 1, Checks: []Check{c}})
	}
	var mu sync.Mutex
	starts := map[netip.AddrPort][]time.Time{}
	e, err := New(Config{Services: []VirtualService{{Key: svcKey, Reals: reals}}}, newRecSink(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	e.observe = func(rs netip.AddrPort, at time.Time) {
		mu.Lock()
		starts[rs] = append(starts[rs], at)
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	begin := time.Now()
	go func() { e.Run(ctx); close(done) }()
	// A lone timer next to the checkers measures how late the machine
	// itself wakes goroutines (the tests share their cores); checks may
	// be late by that much more than the bound.
	var machineLate time.Duration
	ctlDone := make(chan struct{})
	go func() {
		defer close(ctlDone)
		for ctx.Err() == nil {
			at := time.Now()
			time.Sleep(period / 20)
			mu.Lock()
			machineLate = max(machineLate, time.Since(at)-period/20)
			mu.Unlock()
		}
	}()
	// Wait until every server has had 4 checks (1.5 periods after the
	// last first start, unless the machine is overloaded).
	const runs = 3
	for deadline := time.Now().Add(20 * period); ; time.Sleep(period / 10) {
		mu.Lock()
		fewest := runs
		for _, rs := range reals {
			fewest = min(fewest, len(starts[rs.Addr]))
		}
		mu.Unlock()
		if fewest == runs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v a server has had only %d checks, want %d", 20*period, fewest, runs)
		}
	}
	elapsed := time.Since(begin)
	cancel()
	<-done
	<-ctlDone
	mu.Lock()
	defer mu.Unlock()
	var worst time.Duration
	var firstMin, firstMax time.Duration = time.Hour, 0
	for _, rs := range reals {
		s := starts[rs.Addr][:runs]
		f := s[0].Sub(begin)
		firstMin, firstMax = min(firstMin, f), max(firstMax, f)
		// Planned starts are s[0] + k*period: drift is the lateness of
		// the k-th start against that plan.
		for k, at := range s {
			worst = max(worst, at.Sub(s[0].Add(time.Duration(k)*period)))
		}
	}
	var slowest time.Duration
	for _, r := range e.Status().Services[0].Reals {
		slowest = max(slowest, r.Checks[0].Duration)
	}
	t.Logf("%d servers checked %d times each in %v; slowest last probe %v", n, runs, elapsed, slowest)
	t.Logf("%d checks; first starts spread over %v..%v; worst drift %v; a lone timer was up to %v late", n, firstMin, firstMax, worst, machineLate)
	if bound := 150*time.Millisecond + 2*machineLate; worst > bound {
		t.Errorf("worst drift %v, want at most 150ms + twice the lone timer's lateness = %v", worst, bound)
	}
	if firstMax-firstMin < period/2 {
		t.Errorf("first starts spread over %v, want jitter over most of warmup %v", firstMax-firstMin, period)
	}
	for _, r := range e.Status().Services[0].Reals {
		if !r.Healthy || r.Checks[0].Result != "ok" {
			t.Errorf("%s: %+v, want healthy with a passing last check", r.Dest, r)
			break
		}
	}
}

// TestUpdateKeepsState reloads a configuration: the failed server stays
// failed with its counters, a new server is added, a removed one is
// released, and a changed checker starts afresh.
func TestUpdateKeepsState(t *testing.T) {
	script, _ := exitFile(t, 1)
	ok, _ := exitFile(t, 0)
	failed := netip.MustParseAddrPort("10.0.0.1:80")
	gone := netip.MustParseAddrPort("10.0.0.2:80")
	added := netip.MustParseAddrPort("10.0.0.3:80")
	cf, cok := fast(MiscCheck), fast(MiscCheck)
	cf.MiscPath, cok.MiscPath = script, ok
	cf.DelayLoop = time.Hour // checked once only: a fresh start would check again at once and so fail later
	cf.Retry = 0
	cfg := Config{Services: []VirtualService{{Key: svcKey, Reals: []RealServer{
		{Addr: failed, Weight: 1, Checks: []Check{cf}},
		{Addr: gone, Weight: 1, Checks: []Check{cok}},
	}}}}
	sink := newRecSink()
	e := start(t, cfg, sink)
	sink.wait(t, failed, 2*time.Second, "out", out)
	before := e.Status().Services[0].Reals[0]
	cfg.Services[0].Reals = []RealServer{
		{Addr: failed, Weight: 7, Checks: []Check{cf}},
		{Addr: added, Weight: 2, Checks: []Check{cok}},
	}
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}
	sink.wait(t, gone, time.Second, "released", func(t Transition) bool { return t.Release })
	sink.wait(t, added, time.Second, "added", in(2))
	after := e.Status().Services[0].Reals[0]
	if after.Healthy || after.Checks[0].Checks != before.Checks[0].Checks || !after.Since.Equal(before.Since) {
		t.Errorf("failed server after reload %+v, want unchanged from %+v", after, before)
	}
	if tr, _ := sink.get(failed); tr.Present {
		t.Errorf("failed server back in after reload: %+v", tr)
	}
	// Bad configurations change nothing.
	bad := cfg
	bad.Services = []VirtualService{{Key: svcKey, Reals: []RealServer{{Addr: failed, Weight: -1}}}}
	if err := e.Update(bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("Update(weight -1) = %v, want ErrInvalid", err)
	}
	if n := len(e.Status().Services[0].Reals); n != 2 {
		t.Errorf("after a refused update %d reals, want 2", n)
	}
}

func TestSinkRetry(t *testing.T) {
	rs := netip.MustParseAddrPort("10.0.0.1:80")
	sink := newRecSink()
	sink.fail = 1
	cfg := Config{Services: []VirtualService{{Key: svcKey, Reals: []RealServer{{Addr: rs, Weight: 1}}}}}
	e, err := New(cfg, sink, Options{Logger: quiet().Logger, RetryDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Run(ctx)
	sink.wait(t, rs, time.Second, "in after a retry", in(1))
}

func TestStatusJSON(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	defer ln.Close()
	rs := apOf(ln.Addr())
	cfg := Config{Services: []VirtualService{{Key: svcKey, Reals: []RealServer{{Addr: rs, Weight: 1, Checks: []Check{fast(TCPCheck)}}}}}}
	sink := newRecSink()
	e := start(t, cfg, sink)
	for e.Status().Services[0].Reals[0].Checks[0].Checks == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	b, err := json.Marshal(e.Status())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"service":"tcp 10.0.0.100:80"`, `"kind":"TCP_CHECK"`, `"dest":"` + rs.String() + `"`, `"result":"ok"`, `"healthy":true`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("status JSON %s lacks %s", b, want)
		}
	}
}

func TestStatusText(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	st := Status{Services: []ServiceStatus{{
		Service: "tcp 10.0.0.100:80", QuorumUp: false, Sorry: netip.MustParseAddrPort("10.0.0.9:80"), SorryActive: true,
		Reals: []RealStatus{
			{Dest: netip.MustParseAddrPort("10.0.0.1:80"), Healthy: false, Present: true, Weight: 0, Since: at.Add(-90 * time.Second),
				Checks: []CheckStatus{{Kind: HTTPGet, Description: "HTTP_GET /", Target: netip.MustParseAddrPort("10.0.0.1:80"),
					Result: "failed", Error: "GET / from 10.0.0.1:80: status 500", LastCheck: at.Add(-2 * time.Second)}}},
			{Dest: netip.MustParseAddrPort("10.0.0.2:80"), Healthy: true, Since: at.Add(-time.Hour)},
		},
	}}}
	var b strings.Builder
	if err := st.WriteText(&b, at); err != nil {
		t.Fatal(err)
	}
	want := `SERVICE                          DEST         STATE    WEIGHT  CHECKER       TARGET       RESULT  LAST CHECK  SINCE       ERROR
tcp 10.0.0.100:80 (quorum lost)  10.0.0.1:80  down     0       HTTP_GET /    10.0.0.1:80  failed  2s ago      1m30s ago   GET / from 10.0.0.1:80: status 500
tcp 10.0.0.100:80 (quorum lost)  10.0.0.2:80  up       -       -             -            -       -           1h0m0s ago  
tcp 10.0.0.100:80 (quorum lost)  10.0.0.9:80  serving  -       sorry_server  -            -       -           -           
`
	if b.String() != want {
		t.Errorf("WriteText:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestValidate(t *testing.T) {
	rs := netip.MustParseAddrPort("10.0.0.1:80")
	mk := func(f func(*Check)) Config {
		c := NewCheck(HTTPGet)
		c.URLs = []URL{{Path: "/"}}
		f(&c)
		return Config{Services: []VirtualService{{Key: svcKey, Reals: []RealServer{{Addr: rs, Checks: []Check{c}}}}}}
	}
	for name, cfg := range map[string]Config{
		"no url":        mk(func(c *Check) { c.URLs = nil }),
		"relative path": mk(func(c *Check) { c.URLs[0].Path = "x" }),
		"bad digest":    mk(func(c *Check) { c.URLs[0].Digest = "XYZ" }),
		"bad status":    mk(func(c *Check) { c.URLs[0].StatusCodes = []StatusRange{{300, 200}} }),
		"rise 0":        mk(func(c *Check) { c.Rise = 0 }),
		"timeout 0":     mk(func(c *Check) { c.ConnectTimeout = 0 }),
		"retry -1":      mk(func(c *Check) { c.Retry = -1 }),
		"two services":  {Services: []VirtualService{{Key: svcKey}, {Key: svcKey}}},
		"sorry is real": {Services: []VirtualService{{Key: svcKey, Sorry: rs, Reals: []RealServer{{Addr: rs}}}}},
	} {
		if err := cfg.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", name, err)
		}
	}
	if good := mk(func(*Check) {}); good.Validate() != nil {
		err := good.Validate()
		t.Errorf("Validate(good) = %v", err)
	}
}

func TestSplitWords(t *testing.T) {
	got := splitWords(`/bin/check "a b" 'c d' e\ f  g`)
	want := []string{"/bin/check", "a b", "c d", "e f", "g"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("splitWords = %q, want %q", got, want)
	}
}

// TestGroupMembers: the services of a virtual_server_group (Also) get
// every transition of the checked one.
func TestGroupMembers(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	rs := apOf(ln.Addr())
	mark := ipvs.FWMarkKey(5, false)
	cfg := Config{Services: []VirtualService{{Key: svcKey, Also: []ipvs.ServiceKey{mark},
		Reals: []RealServer{{Addr: rs, Weight: 1, Checks: []Check{fast(TCPCheck)}}}}}}
	sink := newRecSink()
	start(t, cfg, sink)
	ln.Close()
	sink.wait(t, rs, 2*time.Second, "out", out)
	time.Sleep(100 * time.Millisecond)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	seen := map[ipvs.ServiceKey][]bool{}
	for _, b := range sink.batches {
		for _, tr := range b {
			seen[tr.Service] = append(seen[tr.Service], tr.Present)
		}
	}
	for _, k := range []ipvs.ServiceKey{svcKey, mark} {
		if fmt.Sprint(seen[k]) != "[true false]" {
			t.Errorf("%s got presence %v, want [true false]", KeyString(k), seen[k])
		}
	}
	if err := (&Config{Services: []VirtualService{{Key: svcKey}, {Key: mark, Also: []ipvs.ServiceKey{svcKey}}}}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("a service in two groups: Validate = %v, want ErrInvalid", err)
	}
}

// blackhole returns a loopback address whose SYNs are dropped: a
// listening socket with a full accept queue that never accepts (Linux
// drops a SYN when the queue is full).
func blackhole(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.AddrPortFrom(netip.AddrFrom4(sa.(*unix.SockaddrInet4).Addr), uint16(sa.(*unix.SockaddrInet4).Port))
	// Fill the queue (backlog 0 holds one connection).
	for range 2 {
		c, err := net.DialTimeout("tcp", ap.String(), 200*time.Millisecond)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	c := fast(TCPCheck)
	if _, err := c.probe(context.Background(), ap); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("connect to a full queue = %v, want a timeout", err)
	}
	return ap
}

// TestTCPCheckBlackhole takes out a server whose packets are dropped, not
// refused, within delay_loop × retry + delay_before_retry + 1 s when
// connect_timeout is short; the other server is unaffected.
func TestTCPCheckBlackhole(t *testing.T) {
	hole := blackhole(t)
	good := listen(t, "127.0.0.1:0")
	defer good.Close()
	c := fast(TCPCheck)
	c.ConnectTimeout = 200 * time.Millisecond
	cfg := Config{Services: []VirtualService{{Key: svcKey, Reals: []RealServer{
		{Addr: hole, Weight: 1, Checks: []Check{c}},
		{Addr: apOf(good.Addr()), Weight: 1, Checks: []Check{c}},
	}}}}
	sink := newRecSink()
	e := start(t, cfg, sink)
	bound := c.DelayLoop*time.Duration(c.Retry) + c.DelayBeforeRetry + time.Second
	took := sink.wait(t, hole, bound, "blackholed server out", func(t Transition) bool { return !t.Present && !t.Healthy })
	t.Logf("blackholed server out after %v (bound %v)", took, bound)
	if r := e.Status().Services[0].Reals[1]; !r.Healthy || !r.Present {
		t.Errorf("the other server %+v, want healthy and in", r)
	}
}

// FuzzSplitWords: any words, quoted one by one, split back into
// themselves; and no input panics.
func FuzzSplitWords(f *testing.F) {
	f.Add("/bin/check", "a b", `it's "x"`)
	f.Add("", "\\", "\t")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		splitWords(a + b + c)
		words := []string{a, b, c}
		var line []string
		for _, w := range words {
			line = append(line, "'"+strings.ReplaceAll(w, "'", `'\''`)+"'")
		}
		got := splitWords(strings.Join(line, " "))
		if fmt.Sprint(got) != fmt.Sprint(words) || len(got) != 3 {
			t.Errorf("splitWords(%q) = %q, want %q", strings.Join(line, " "), got, words)
		}
	})
}

// TestRetryTiming: after the first failure, the retries come
// delay_before_retry apart, not delay_loop apart, so a server is out
// within delay_loop + retry × delay_before_retry of failing.
func TestRetryTiming(t *testing.T) {
	script, file := exitFile(t, 0)
	rs := netip.MustParseAddrPort("10.0.0.1:80")
	c := fast(MiscCheck)
	c.MiscPath, c.Retry, c.DelayLoop, c.DelayBeforeRetry = script, 3, time.Second, 50*time.Millisecond
	cfg := Config{Services: []VirtualService{{Key: svcKey, Reals: []RealServer{{Addr: rs, Weight: 1, Checks: []Check{c}}}}}}
	sink := newRecSink()
	e := start(t, cfg, sink)
	sink.wait(t, rs, time.Second, "in", in(1))
	for e.Status().Services[0].Reals[0].Checks[0].Checks == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	setCode(t, file, 1)
	// Retrying at delay_loop would take 3 s more; at delay_before_retry
	// 150 ms plus the scripts' run time.
	bound := c.DelayLoop + time.Duration(c.Retry)*c.DelayBeforeRetry + time.Second
	took := sink.wait(t, rs, bound, "out", out)
	cs := e.Status().Services[0].Reals[0].Checks[0]
	t.Logf("out %v after the failure began (bound %v)", took, bound)
	if cs.Failures != c.Retry+1 {
		t.Errorf("out after %d failures, want retry+1 = %d", cs.Failures, c.Retry+1)
	}
}
