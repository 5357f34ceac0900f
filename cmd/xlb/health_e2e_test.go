//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/testenv"
)

// The health checks of these tests: delay_loop 1 s, retry 1,
// delay_before_retry 0.5 s, connect_timeout 0.5 s. keepalived's bound
// for taking a refused server out, delay_loop × retry +
// delay_before_retry + 1 s, is then 2.5 s; a server that drops the
// packets also costs the probes' connect_timeout, (retry+1) × 0.5 s.
const (
	hcDelayLoop = time.Second
	hcRetry     = 1
	hcTimeout   = 500 * time.Millisecond
	hcBound     = hcDelayLoop*hcRetry + 500*time.Millisecond + time.Second
	hcBoundTmo  = hcBound + (hcRetry+1)*hcTimeout
	hcPort      = 8080
)

const httpCheck = `        HTTP_GET {
            url {
                path /
                status_code 200
            }
            connect_timeout 0.5
            retry 1
            delay_before_retry 0.5
        }
`

const tcpCheck = `        TCP_CHECK {
            connect_timeout 0.5
            retry 1
            delay_before_retry 0.5
        }
`

type kaReal struct {
	addr   netip.Addr
	port   int
	weight int
	checks string
}

// kaConf is a keepalived.conf with one virtual server on vip:vport.
func kaConf(vip netip.Addr, vport int, kind, extra string, reals ...kaReal) string {
	var b strings.Builder
	if kind == "FNAT" {
		fmt.Fprintf(&b, "local_address_group laddrs {\n    %v\n}\n\n", testenv.LAddr)
	}
	fmt.Fprintf(&b, "virtual_server %v %d {\n    delay_loop 1\n    lb_algo rr\n    lb_kind %s\n    protocol TCP\n", vip, vport, kind)
	if kind == "FNAT" {
		b.WriteString("    laddr_group_name laddrs\n")
	}
	b.WriteString(extra)
	for _, r := range reals {
		fmt.Fprintf(&b, "    real_server %v %d {\n        weight %d\n%s    }\n", r.addr, r.port, r.weight, r.checks)
	}
	b.WriteString("}\n")
	return b.String()
}

// startKeepalived runs `xlb run --keepalived` with conf on the
// director's eth0; the file is conf's path, for a reload.
func startKeepalived(t *testing.T, env *testenv.Env, conf string, extra ...string) (*xlbProc, string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "xlb.sock")
	args := append([]string{"run", "--iface", "eth0", "--keepalived", file, "--socket", sock, "--conns", "65536"}, extra...)
	p, err := env.Director.Start(xlbBin, args...)
	if err != nil {
		t.Fatal(err)
	}
	d := &xlbProc{Proc: p, sock: sock}
	t.Cleanup(func() { d.stop() })
	for deadline := time.Now().Add(15 * time.Second); ; {
		if _, err := d.ctl("-L", "-n"); err == nil {
			return d, file
		}
		if time.Now().After(deadline) || d.Exited() {
			d.stop()
			t.Fatalf("xlb did not come up: %v\nlogs:\n%s", d.Err(), d.Output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// healthOf is `xlb health -o json`.
func healthOf(t *testing.T, d *xlbProc) health.Status {
	t.Helper()
	out, err := d.ctl("health", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var st health.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("xlb health -o json: %v\n%s", err, out)
	}
	return st
}

func realOf(t *testing.T, st health.Status, ap netip.AddrPort) health.RealStatus {
	t.Helper()
	for _, s := range st.Services {
		for _, r := range s.Reals {
			if r.Dest == ap {
				return r
			}
		}
	}
	t.Fatalf("%v not in xlb health", ap)
	return health.RealStatus{}
}

// listed is `-L -n`: each destination and its weight.
func listed(t *testing.T, d *xlbProc) map[netip.AddrPort]int {
	t.Helper()
	out, err := d.ctl("-L", "-n")
	if err != nil {
		t.Fatal(err)
	}
	m := map[netip.AddrPort]int{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || f[0] != "->" {
			continue
		}
		ap, err := netip.ParseAddrPort(f[1])
		if err != nil {
			continue // the header
		}
		w, _ := strconv.Atoi(f[3])
		m[ap] = w
	}
	return m
}

// until polls ok every 50 ms for at most limit, and returns when it
// held.
func until(t *testing.T, limit time.Duration, what string, ok func() bool) time.Time {
	t.Helper()
	for end := time.Now().Add(limit); ; {
		if ok() {
			return time.Now()
		}
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rsServer is an HTTP server on a real server, answering with its name,
// that a test stops and starts (the topology's own servers run for its
// lifetime). stop closes the listener only: connections it accepted
// keep being served, as by a server whose new process is starting.
type rsServer struct {
	h    *testenv.Host
	port int
	mu   sync.Mutex
	ln   net.Listener // the current one; nil while stopped
	all  []io.Closer  // everything to close at the end
}

func newRS(t *testing.T, h *testenv.Host, port int) *rsServer {
	s := &rsServer{h: h, port: port}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.all {
			c.Close()
		}
	})
	return s
}

func (s *rsServer) listen(t *testing.T) net.Listener {
	t.Helper()
	var ln net.Listener
	err := s.h.Do(func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", s.port))
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s: %v", s.h.Name, err)
	}
	s.mu.Lock()
	s.ln = ln
	s.all = append(s.all, ln)
	s.mu.Unlock()
	return ln
}

// start serves HTTP.
func (s *rsServer) start(t *testing.T) {
	t.Helper()
	ln := s.listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, s.h.Name)
	})}
	s.mu.Lock()
	s.all = append(s.all, srv)
	s.mu.Unlock()
	go srv.Serve(ln)
}

// startHanging accepts connections and never answers.
func (s *rsServer) startHanging(t *testing.T) {
	t.Helper()
	ln := s.listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.all = append(s.all, c)
			s.mu.Unlock()
		}
	}()
}

// stop closes the listener: new connections are refused.
func (s *rsServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
}

// stream is a client sending one request per new connection to url, one
// after the other, recording each.
type stream struct {
	stop context.CancelFunc
	done chan struct{}
	mu   sync.Mutex
	res  []reqResult
}

type reqResult struct {
	start  time.Time
	server string
	err    error
}

func startStream(t *testing.T, env *testenv.Env, url string) *stream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		hc := env.Client.HTTPClient(false, 2*time.Second)
		for ctx.Err() == nil {
			start := time.Now()
			name, err := testenv.Get(hc, url)
			s.mu.Lock()
			s.res = append(s.res, reqResult{start, name, err})
			s.mu.Unlock()
		}
	}()
	t.Cleanup(s.end)
	return s
}

// wait waits until n requests started at or after t0 have ended (a
// request still stuck on the server that went down, started before,
// holds the stream up to its 2 s timeout).
func (s *stream) wait(t *testing.T, t0 time.Time, n int) {
	t.Helper()
	until(t, 6*time.Second, fmt.Sprintf("%d requests", n), func() bool {
		got, _, _, _ := s.since(t0)
		return got >= n
	})
}

func (s *stream) end() {
	s.stop()
	<-s.done
}

// since counts the requests started at or after t0: all, failed, and
// per answering server, with the first error.
func (s *stream) since(t0 time.Time) (n, failed int, by map[string]int, first error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	by = map[string]int{}
	for _, r := range s.res {
		if r.start.Before(t0) {
			continue
		}
		n++
		if r.err != nil {
			failed++
			if first == nil {
				first = r.err
			}
			continue
		}
		by[r.server]++
	}
	return n, failed, by, first
}

// hcTopology is a DR topology of n real servers each running an rsServer
// on hcPort.
func hcTopology(t *testing.T, n int) (*testenv.Env, []*rsServer, []netip.AddrPort) {
	testenv.RequireRoot(t)
	opts := testenv.DefaultOptions()
	opts.RealServers = n
	env := testenv.New(t, opts)
	var rss []*rsServer
	var aps []netip.AddrPort
	for _, h := range env.Reals {
		s := newRS(t, h, hcPort)
		rss = append(rss, s)
		aps = append(aps, netip.AddrPortFrom(h.Addr, hcPort))
	}
	return env, rss, aps
}

func reals(aps []netip.AddrPort, checks string) []kaReal {
	var out []kaReal
	for _, ap := range aps {
		out = append(out, kaReal{addr: ap.Addr(), port: int(ap.Port()), weight: 1, checks: checks})
	}
	return out
}

// failover stops rs (by fail), waits until -L -n no longer lists it,
// and checks the bound, the client stream after it (0 failed, none to
// rs), and the established connections to the other servers. It returns
// how long the mark-down took.
func failover(t *testing.T, d *xlbProc, st *stream, ap netip.AddrPort, name string, longs []*keepAlive, bound time.Duration, fail func()) time.Duration {
	t.Helper()
	fail()
	t0 := time.Now() // the server has failed: fail may take time (nft)
	tDown := until(t, bound+2*time.Second, name+" out of -L -n", func() bool {
		_, in := listed(t, d)[ap]
		return !in
	})
	took := tDown.Sub(t0)
	if took > bound {
		t.Errorf("%s taken out after %v, want within %v", name, took, bound)
	}
	st.wait(t, tDown, 5)
	n, failed, by, first := st.since(tDown)
	if failed > 0 || by[name] > 0 || n < 5 {
		t.Errorf("after %s was marked down: %d requests, %d failed (first: %v), answered by %v", name, n, failed, first, by)
	}
	for _, k := range longs {
		if k.owner == name {
			continue
		}
		if _, err := k.get(3 * time.Second); err != nil {
			t.Errorf("established connection to %s after %s went down: %v", k.owner, name, err)
		}
	}
	return took
}

// recovered waits until ap is listed again with weight w and the stream
// gets answers from it.
func recovered(t *testing.T, d *xlbProc, st *stream, ap netip.AddrPort, name string, w int) {
	t.Helper()
	tUp := until(t, 5*time.Second, name+" back in -L -n", func() bool { return listed(t, d)[ap] == w })
	until(t, 3*time.Second, name+" answering again", func() bool {
		_, _, by, _ := st.since(tUp)
		return by[name] > 0
	})
}

// A real server whose HTTP listener stops is taken out within keepalived's
// bound; from then on new connections all go to the others, without a
// failure, and the established connections to the others carry on; when
// it listens again it is put back. A server that accepts and never
// answers times out, without stalling the other servers' checks.
func TestHealthStoppedListener(t *testing.T) {
	env, rss, aps := hcTopology(t, 3)
	for _, s := range rss {
		s.start(t)
	}
	vip := netip.AddrPortFrom(env.VIP, hcPort)
	d, _ := startKeepalived(t, env, kaConf(env.VIP, hcPort, "DR", "", reals(aps, httpCheck)...))
	until(t, 5*time.Second, "every server checked", func() bool {
		for _, r := range healthOf(t, d).Services[0].Reals {
			if !r.Healthy || r.Checks[0].Result != "ok" {
				return false
			}
		}
		return true
	})
	var longs []*keepAlive
	for range 6 {
		longs = append(longs, mustKeepAlive(t, env, vip))
	}
	st := startStream(t, env, "http://"+vip.String()+"/")

	took := failover(t, d, st, aps[0], "rs1", longs, hcBound, rss[0].stop)
	t.Logf("stopped listener: marked down after %v (bound %v)", took.Round(time.Millisecond), hcBound)
	r := realOf(t, healthOf(t, d), aps[0])
	if r.Healthy || r.Present || r.Checks[0].Result != "failed" || !strings.Contains(r.Checks[0].Error, "refused") || r.Checks[0].Transition.IsZero() {
		t.Errorf("xlb health of the stopped server: %+v", r)
	}
	if out, _ := d.ctl("health"); !strings.Contains(out, "rs1") && !strings.Contains(out, aps[0].String()) {
		t.Errorf("xlb health:\n%s", out)
	}
	rss[0].start(t)
	recovered(t, d, st, aps[0], "rs1", 1)

	// A hung server: accepts, never answers.
	before := healthOf(t, d)
	took = failover(t, d, st, aps[1], "rs2", longs, hcBoundTmo, func() {
		rss[1].stop()
		rss[1].startHanging(t)
	})
	t.Logf("hung server: marked down after %v (bound %v)", took.Round(time.Millisecond), hcBoundTmo)
	after := healthOf(t, d)
	r = realOf(t, after, aps[1])
	if r.Healthy || r.Checks[0].Result != "failed" || r.Checks[0].Error == "" {
		t.Errorf("xlb health of the hung server: %+v", r)
	}
	for _, i := range []int{0, 2} {
		b, a := realOf(t, before, aps[i]), realOf(t, after, aps[i])
		if !a.Healthy || a.Checks[0].Checks <= b.Checks[0].Checks {
			t.Errorf("%v's checks while rs2 hung: %d then %d, healthy %v", aps[i], b.Checks[0].Checks, a.Checks[0].Checks, a.Healthy)
		}
	}
	rss[1].stop()
	rss[1].start(t)
	recovered(t, d, st, aps[1], "rs2", 1)
	st.end()
	if n, failed, by, _ := st.since(time.Time{}); n == 0 || len(by) != 3 {
		t.Errorf("whole stream: %d requests, %d failed, by %v", n, failed, by)
	}
}

// nftDrop makes h drop (not refuse) every TCP packet to port; undo
// takes the rule away. The table goes with the namespace.
func nftDrop(t *testing.T, h *testenv.Host, port int) (undo func()) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "drop.nft")
	rules := fmt.Sprintf("table inet xlbtest {\n chain in {\n  type filter hook input priority 0; policy accept;\n  tcp dport %d drop\n }\n}\n", port)
	if err := os.WriteFile(file, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := h.Run(context.Background(), 5*time.Second, "nft", "-f", file); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}
	return func() {
		if out, err := h.Run(context.Background(), 5*time.Second, "nft", "delete", "table", "inet", "xlbtest"); err != nil {
			t.Errorf("nft delete: %v %s", err, out)
		}
	}
}

// A blackholed real server (its packets dropped) is taken out like a
// stopped one, after its probes' timeouts; with every real server down
// the sorry server answers, and the first to recover takes over again.
func TestHealthBlackholeAndSorryServer(t *testing.T) {
	env, rss, aps := hcTopology(t, 4)
	for _, s := range rss {
		s.start(t)
	}
	vip := netip.AddrPortFrom(env.VIP, hcPort)
	sorry := fmt.Sprintf("    sorry_server %v %d\n", aps[3].Addr(), hcPort)
	const metricsAddr = "127.0.0.1:9109" // in the director's namespace
	d, _ := startKeepalived(t, env, kaConf(env.VIP, hcPort, "DR", sorry, reals(aps[:3], tcpCheck)...), "--metrics", metricsAddr)
	scrape := func() string {
		t.Helper()
		body, err := testenv.Get(env.Director.HTTPClient(false, 3*time.Second), "http://"+metricsAddr+"/metrics")
		if err != nil {
			t.Fatalf("scrape: %v", err)
		}
		return body
	}
	until(t, 5*time.Second, "every server checked", func() bool {
		for _, r := range healthOf(t, d).Services[0].Reals {
			if !r.Healthy || r.Checks[0].Result != "ok" {
				return false
			}
		}
		return true
	})
	if _, in := listed(t, d)[aps[3]]; in {
		t.Fatal("the sorry server is listed while the real servers are healthy")
	}
	var longs []*keepAlive
	for range 6 {
		longs = append(longs, mustKeepAlive(t, env, vip))
	}
	st := startStream(t, env, "http://"+vip.String()+"/")
	var undo func()
	took := failover(t, d, st, aps[0], "rs1", longs, hcBoundTmo, func() { undo = nftDrop(t, env.Reals[0], hcPort) })
	t.Logf("blackholed server: marked down after %v (bound %v)", took.Round(time.Millisecond), hcBoundTmo)
	if r := realOf(t, healthOf(t, d), aps[0]); !strings.Contains(r.Checks[0].Error, "timeout") {
		t.Errorf("blackholed server's error %q, want a timeout", r.Checks[0].Error)
	}
	m := scrape()
	svc := healthOf(t, d).Services[0].Service
	for _, want := range []string{
		fmt.Sprintf("xlb_health_real_server_up{dest=%q,service=%q} 0", aps[0], svc),
		fmt.Sprintf("xlb_health_real_server_up{dest=%q,service=%q} 1", aps[1], svc),
		fmt.Sprintf("xlb_health_transitions_total{dest=%q,service=%q} 1", aps[0], svc),
		fmt.Sprintf("xlb_health_sorry_server_active{service=%q} 0", svc),
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "xlb_health_"))
		}
	}
	undo()
	recovered(t, d, st, aps[0], "rs1", 1)

	// Every real server down: the sorry server takes the new connections.
	t0 := time.Now()
	for _, s := range rss[:3] {
		s.stop()
	}
	tSorry := until(t, hcBound+2*time.Second, "sorry server listed", func() bool {
		l := listed(t, d)
		return l[aps[3]] == 1 && l[aps[0]] == 0 && l[aps[1]] == 0 && l[aps[2]] == 0
	})
	t.Logf("all down: sorry server serving after %v", tSorry.Sub(t0).Round(time.Millisecond))
	st.wait(t, tSorry, 5)
	if n, failed, by, first := st.since(tSorry); failed > 0 || by["rs4"] != n || n < 5 {
		t.Errorf("while the sorry server serves: %d requests, %d failed (%v), by %v", n, failed, first, by)
	}
	if s := healthOf(t, d).Services[0]; !s.SorryActive || s.QuorumUp {
		t.Errorf("xlb health: sorry active %v, quorum up %v", s.SorryActive, s.QuorumUp)
	}
	if m := scrape(); !strings.Contains(m, fmt.Sprintf("xlb_health_sorry_server_active{service=%q} 1", svc)) {
		t.Errorf("metrics: sorry server not active:\n%s", grepLines(m, "xlb_health_"))
	}
	rss[1].start(t)
	recovered(t, d, st, aps[1], "rs2", 1)
	until(t, 2*time.Second, "sorry server removed", func() bool { _, in := listed(t, d)[aps[3]]; return !in })
}

// SIGHUP under load: the reload changes a weight and adds a real server;
// not one request fails, the established connections carry on, and the
// real server that had failed stays out with its checker state.
func TestHealthReloadUnderLoad(t *testing.T) {
	env, rss, aps := hcTopology(t, 4)
	for _, s := range rss[:2] {
		s.start(t)
	}
	rss[3].start(t)
	vip := netip.AddrPortFrom(env.VIP, hcPort)
	const vrrp = "vrrp_instance VI_1 {\n    state MASTER\n    interface eth0\n}\n"
	conf1 := vrrp + kaConf(env.VIP, hcPort, "DR", "", reals(aps[:3], httpCheck)...)
	d, file := startKeepalived(t, env, conf1)
	until(t, hcBound+2*time.Second, "rs3 (not listening) out", func() bool { _, in := listed(t, d)[aps[2]]; return !in })
	failedAt := realOf(t, healthOf(t, d), aps[2])
	var longs []*keepAlive
	for range 4 {
		longs = append(longs, mustKeepAlive(t, env, vip))
	}
	tStart := time.Now()
	st := startStream(t, env, "http://"+vip.String()+"/")
	time.Sleep(500 * time.Millisecond)

	next := reals(aps, httpCheck)
	next[0].weight = 2
	if err := os.WriteFile(file, []byte(vrrp+kaConf(env.VIP, hcPort, "DR", "", next...)), 0o644); err != nil {
		t.Fatal(err)
	}
	tHUP := time.Now()
	if err := syscall.Kill(d.Cmd.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var rs3Listed bool
	until(t, 3*time.Second, "reload in force", func() bool {
		l := listed(t, d)
		if _, in := l[aps[2]]; in {
			rs3Listed = true
		}
		return l[aps[0]] == 2 && l[aps[3]] == 1
	})
	t.Logf("reload in force after %v", time.Since(tHUP).Round(time.Millisecond))
	until(t, 3*time.Second, "rs4 answering", func() bool { _, _, by, _ := st.since(tHUP); return by["rs4"] > 0 })
	for range 10 {
		if _, in := listed(t, d)[aps[2]]; in {
			rs3Listed = true
		}
		time.Sleep(100 * time.Millisecond)
	}
	st.end()
	if rs3Listed {
		t.Error("the failed rs3 was listed after the reload")
	}
	n, failed, by, first := st.since(tStart)
	t.Logf("reload under load: %d requests, %d failed, by %v", n, failed, by)
	if failed > 0 || by["rs3"] > 0 || n < 5 {
		t.Errorf("reload under load: %d requests, %d failed (first: %v), by %v", n, failed, first, by)
	}
	for _, k := range longs {
		if _, err := k.get(3 * time.Second); err != nil {
			t.Errorf("established connection to %s across the reload: %v", k.owner, err)
		}
	}
	r := realOf(t, healthOf(t, d), aps[2])
	if r.Healthy || r.Present || r.Transitions != failedAt.Transitions || !r.Since.Equal(failedAt.Since) {
		t.Errorf("rs3 after the reload: %+v, before %+v (its state must be kept)", r, failedAt)
	}
	if !strings.Contains(d.Output.String(), "SIGHUP: keepalived configuration reloaded") {
		t.Errorf("no reload logged:\n%s", d.Output.String())
	}
	// The VRRP block: reported with its file and line, once per load.
	if n := strings.Count(d.Output.String(), `"keepalived.conf: ignored" at=`+file+":1 keyword=vrrp_instance"); n != 2 {
		t.Errorf("vrrp_instance reported %d times, want once per load (2):\n%s", n, d.Output.String())
	}
}

// NAT and FULLNAT: the XDP program steers frames from real servers to
// the workers, yet the director's own health checks (TCP_CHECK and
// HTTP_GET) of those real servers reach the kernel and pass, and a
// blackholed one is found out and taken out.
func TestHealthChecksThroughNATAndFullNAT(t *testing.T) {
	for _, c := range []struct {
		name string
		kind testenv.RealKind
		lb   string
	}{{"nat", testenv.RealNAT, "NAT"}, {"fullnat", testenv.RealFullNAT, "FNAT"}} {
		t.Run(c.name, func(t *testing.T) {
			testenv.RequireRoot(t)
			opts := testenv.DefaultOptions()
			opts.RealServers = 2
			opts.Reals = c.kind
			env := testenv.New(t, opts)
			var aps []netip.AddrPort
			for _, h := range env.Reals {
				aps = append(aps, netip.AddrPortFrom(h.Addr, 80))
			}
			d, _ := startKeepalived(t, env, kaConf(env.VIP, 80, c.lb, "", reals(aps, tcpCheck+httpCheck)...))
			until(t, 6*time.Second, "every checker passed twice", func() bool {
				for _, r := range healthOf(t, d).Services[0].Reals {
					for _, k := range r.Checks {
						if !r.Healthy || k.Result != "ok" || k.Checks < 2 {
							return false
						}
					}
				}
				return true
			})
			if n := counter(stats(d), "pass_local"); n == 0 {
				t.Errorf("pass_local = 0: the checks' answers did not come through XDP to the kernel")
			}
			vip := netip.AddrPortFrom(env.VIP, 80)
			st := startStream(t, env, "http://"+vip.String()+"/")
			undo := nftDrop(t, env.Reals[0], 80)
			t0 := time.Now()
			tDown := until(t, hcBoundTmo+2*time.Second, "rs1 out", func() bool { _, in := listed(t, d)[aps[0]]; return !in })
			t.Logf("%s: blackholed server marked down after %v", c.name, tDown.Sub(t0).Round(time.Millisecond))
			st.wait(t, tDown, 5)
			if n, failed, by, first := st.since(tDown); failed > 0 || by["rs2"] != n || n < 5 {
				t.Errorf("after rs1 was marked down: %d requests, %d failed (%v), by %v", n, failed, first, by)
			}
			undo()
			recovered(t, d, st, aps[0], "rs1", 1)
		})
	}
}

// grepLines is the lines of s that start with prefix.
func grepLines(s, prefix string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
