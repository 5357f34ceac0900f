//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// scaleOutRules is one DR service on the VIP, TCP port 80 and UDP port
// 53, over every real server of so, with sched (and its -b flags).
func scaleOutRules(so *testenv.ScaleOut, sched, flags string) string {
	var b strings.Builder
	vip := testenv.ScaleOutVIP
	for _, svc := range []struct {
		proto string
		port  int
	}{{"-t", 80}, {"-u", 53}} {
		fmt.Fprintf(&b, "-A %s %v:%d -s %s %s\n", svc.proto, vip, svc.port, sched, flags)
		for j := range so.Reals {
			fmt.Fprintf(&b, "-a %s %v:%d -r %v:%d -g -w 1\n", svc.proto, vip, svc.port, testenv.ScaleOutRealAddr(j+1), svc.port)
		}
	}
	return b.String()
}

// startScaleOutDirector runs `xlb run` on director i (0-based), serving
// eth0 (from the router) and eth1 (the server LAN), announcing the VIP to
// the router over BGP (hold time 3 s) when bgp is set.
func startScaleOutDirector(t *testing.T, so *testenv.ScaleOut, i int, rules string, bgp bool, extra ...string) *xlbProc {
	t.Helper()
	var args []string
	if bgp {
		args = []string{"--bgp-as", "65001", "--bgp-router-id", testenv.ScaleOutDirectorAddr(i + 1).String(),
			"--bgp-peer", fmt.Sprintf("%v:65000", testenv.ScaleOutRouterLinkAddr(i+1)), "--bgp-hold-time", "3"}
	}
	return startXLBOn(t, so.Directors[i], []string{"eth0", "eth1"}, rules, append(args, extra...)...)
}

// soConn is a long-lived keep-alive HTTP connection from the client to
// the VIP.
type soConn struct {
	c   net.Conn
	r   *bufio.Reader
	src netip.AddrPort
	rs  string // the real server that answered the first request
}

// get sends one request on the connection and returns the answering
// real server's name.
func (c *soConn) get(timeout time.Duration) (string, error) {
	c.c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c.c, "GET / HTTP/1.1\r\nHost: %v\r\n\r\n", testenv.ScaleOutVIP); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(b), nil
}

// parallel runs f(i) for i in [0, n) on par goroutines.
func parallel(n, par int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// openSOConns opens n keep-alive connections from the client (each from
// a new source port), each with one request answered.
func openSOConns(t *testing.T, so *testenv.ScaleOut, n int) []*soConn {
	t.Helper()
	conns := make([]*soConn, n)
	errs := make([]error, n)
	vip := netip.AddrPortFrom(testenv.ScaleOutVIP, 80).String()
	parallel(n, 64, func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := so.Client.DialContext(ctx, "tcp4", vip)
		if err != nil {
			errs[i] = err
			return
		}
		sc := &soConn{c: c, r: bufio.NewReader(c), src: c.LocalAddr().(*net.TCPAddr).AddrPort()}
		if sc.rs, err = sc.get(5 * time.Second); err != nil {
			c.Close()
			errs[i] = err
			return
		}
		conns[i] = sc
	})
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		t.Fatalf("open %d connections: %d failed, first: %v", n, len(failed), failed[0])
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.c.Close()
		}
	})
	return conns
}

// checkSOConns sends one request on every connection in conns and
// returns which ones broke (no answer within timeout, or from another
// real server than the first time).
func checkSOConns(conns []*soConn, timeout time.Duration) (broken []bool, n int) {
	broken = make([]bool, len(conns))
	// Wide: a broken connection holds its goroutine for the whole
	// timeout.
	parallel(len(conns), 1024, func(i int) {
		if rs, err := conns[i].get(timeout); err != nil || rs != conns[i].rs {
			broken[i] = true
		}
	})
	for _, b := range broken {
		if b {
			n++
		}
	}
	return broken, n
}

// pickConns returns the connections i of conns for which keep(i).
func pickConns(conns []*soConn, keep func(i int) bool) []*soConn {
	var out []*soConn
	for i, c := range conns {
		if keep(i) {
			out = append(out, c)
		}
	}
	return out
}

// connDirectors reads each running director's connection table (-L -c
// -n) and returns which director (0-based) holds each client address:port.
func connDirectors(t *testing.T, xlbs []*xlbProc) map[netip.AddrPort]int {
	t.Helper()
	where := make(map[netip.AddrPort]int)
	for i, x := range xlbs {
		if x == nil || x.Exited() {
			continue
		}
		out, err := x.ctl("-L", "-c", "-n")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if len(f) < 6 || f[0] != "TCP" {
				continue
			}
			if a, err := netip.ParseAddrPort(f[3]); err == nil {
				where[a] = i
			}
		}
	}
	return where
}

// routeOrder is the router's nexthops to the VIP in the order the kernel
// holds them: the order hash-threshold (RFC 2992) gives out the hash
// space in, 1/n of it each.
func routeOrder(t *testing.T, so *testenv.ScaleOut) []netip.Addr {
	t.Helper()
	out, err := so.Router.Command("ip", "route", "show", "exact", testenv.ScaleOutVIP.String()+"/32").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route show: %v: %s", err, out)
	}
	var order []netip.Addr
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if a, err := netip.ParseAddr(f[i+1]); f[i] == "via" && err == nil {
			order = append(order, a)
		}
	}
	return order
}

// stream is a request stream of new connections (one request each, 3 s
// timeout, a new one every 20 ms) from the client to the VIP, running
// until stop.
type soStream struct {
	mu       sync.Mutex
	ok       int
	failures []time.Time
	done     chan struct{}
	stopc    chan struct{}
}

func startSOStream(so *testenv.ScaleOut) *soStream {
	s := &soStream{done: make(chan struct{}), stopc: make(chan struct{})}
	c := so.Client.HTTPClient(false, 3*time.Second)
	url := "http://" + netip.AddrPortFrom(testenv.ScaleOutVIP, 80).String() + "/"
	var wg sync.WaitGroup
	go func() {
		defer close(s.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stopc:
				wg.Wait()
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				_, err := testenv.Get(c, url)
				s.mu.Lock()
				if err != nil {
					s.failures = append(s.failures, start)
				} else {
					s.ok++
				}
				s.mu.Unlock()
			}()
		}
	}()
	return s
}

// stop ends the stream and returns its counts: failures started after
// since are counted in late.
func (s *soStream) stop(since time.Time) (ok, failed, late int) {
	close(s.stopc)
	<-s.done
	for _, f := range s.failures {
		if f.After(since) {
			late++
		}
	}
	return s.ok, len(s.failures), late
}

// TestScaleOutECMP is issue 11's scale-out proof: three directors, each
// `xlb run` with BGP to the FRR router (multipath, L4 hash), the same DR
// service with mh (mh-port), 3000 keep-alive connections spread over
// them by the router's ECMP.
//
//  1. sloppy_tcp off: SIGKILL one director. The router drops it when its
//     BGP session closes; its connections land on directors that never
//     saw them start and drop their mid-stream segments: they break, and
//     only they. A stream of new connections fails nowhere after the
//     route converged.
//  2. sloppy_tcp on: the killed director comes back, the router rehashes
//     a share of the flows onto it; mh sends them to the same real
//     server, so none breaks.
//  3. xlb drain on one director: its route goes, new connections avoid
//     it with 0 failed requests, its existing connections go on through
//     the others (sloppy_tcp + mh).
//  4. sloppy_tcp on: SIGKILL the director whose removal makes
//     hash-threshold move flows between the survivors too: none breaks.
func TestScaleOutECMP(t *testing.T) {
	so := testenv.NewScaleOut(t, testenv.ScaleOutOptions{Directors: 3, RealServers: 3})
	vip := testenv.ScaleOutVIP
	d := testenv.ScaleOutDirectorAddr
	rules := scaleOutRules(so, "mh", "-b mh-port")
	xlbs := make([]*xlbProc, 3)
	for i := range xlbs {
		xlbs[i] = startScaleOutDirector(t, so, i, rules, true)
	}
	logs := func() string {
		var b strings.Builder
		for i, x := range xlbs {
			fmt.Fprintf(&b, "--- xlb %d:\n%s", i+1, x.Output.String())
		}
		return b.String()
	}
	index := func(a netip.Addr) int {
		for i := range xlbs {
			if d(i+1) == a {
				return i
			}
		}
		return -1
	}
	converge := func(name string, want ...netip.Addr) time.Duration {
		t.Helper()
		took, err := so.WaitNexthops(vip, want, 30*time.Second)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, logs())
		}
		t.Logf("%s: router's route to %v over %v after %v", name, vip, want, took.Round(time.Millisecond))
		return took
	}
	converge("three directors announce", d(1), d(2), d(3))
	t.Logf("load: %s", loadavg())

	const n = 3000
	start := time.Now()
	conns := openSOConns(t, so, n)
	t.Logf("%d connections open in %v", n, time.Since(start).Round(time.Millisecond))
	srcs := make([]netip.AddrPort, n)
	byRS := map[string]int{}
	for i, c := range conns {
		srcs[i] = c.src
		byRS[c.rs]++
	}
	where := connDirectors(t, xlbs)
	per := make([]int, 3)
	for _, c := range conns {
		if i, ok := where[c.src]; ok {
			per[i]++
		}
	}
	t.Logf("spread over the directors (-L -c): %v; over the real servers: %v", per, byRS)
	for i := range xlbs {
		st, _ := xlbs[i].ctl("-L", "-n", "--stats")
		t.Logf("director %d, -L -n --stats:\n%s", i+1, st)
	}
	if sum := per[0] + per[1] + per[2]; sum != n {
		t.Errorf("directors hold %d of the %d connections", sum, n)
	}
	for i, p := range per {
		if p < n/5 || p > n/2 {
			t.Errorf("director %d carries %d of %d connections: ECMP did not spread them", i+1, p, n)
		}
	}
	if len(byRS) != 3 {
		t.Errorf("connections over the real servers: %v, want all three used", byRS)
	}
	route := func() []netip.Addr {
		t.Helper()
		nhs, err := so.RouteFlows("tcp", netip.AddrPortFrom(vip, 80), srcs)
		if err != nil {
			t.Fatal(err)
		}
		return nhs
	}
	before := route()
	mismatch := 0
	for i, c := range conns {
		if where[c.src] != index(before[i]) {
			mismatch++
		}
	}
	if mismatch > 0 {
		t.Errorf("%d connections are on another director than the router's FIB says (ip route get)", mismatch)
	}

	// 1. sloppy_tcp off: kill the director in the middle of the router's
	// order. Hash-threshold gives nexthop k of n the hash range
	// [k/n, (k+1)/n); from 3 to 2 the ranges become [0, 1/2) and
	// [1/2, 1), which moves only the middle one's flows (removing the
	// first or the last moves another 1/6 between the survivors: step 4).
	order := routeOrder(t, so)
	victim := index(order[1])
	survivors := slices.DeleteFunc(slices.Clone(order), func(a netip.Addr) bool { return a == d(victim+1) })
	s := startSOStream(so)
	time.Sleep(200 * time.Millisecond)
	killed := time.Now()
	xlbs[victim].Stop(syscall.SIGKILL, 5*time.Second)
	took := converge(fmt.Sprintf("director %d killed (SIGKILL)", victim+1), survivors...)
	converged := killed.Add(took)
	after := route()
	carried, movedOthers := tallyMoves(before, after, len(conns), func(a netip.Addr) bool { return index(a) == victim })
	broken, nb := checkSOConns(conns, 2*time.Second)
	brokenCarried, brokenStayed := 0, 0
	for i := range conns {
		if !broken[i] {
			continue
		}
		switch {
		case index(before[i]) == victim:
			brokenCarried++
		case before[i] == after[i]:
			brokenStayed++
		}
	}
	time.Sleep(300 * time.Millisecond)
	ok, failed, late := s.stop(converged)
	t.Logf("sloppy_tcp off, director %d killed: it carried %d of %d connections (%.1f%%), the rehash moved %d others; "+
		"%d broke (%.1f%%): %d it carried, %d moved, %d that stayed on their director; "+
		"new connections during the kill: %d ok, %d failed (%d after the route converged %v after the kill); load %s",
		victim+1, carried, n, 100*float64(carried)/n, movedOthers, nb, 100*float64(nb)/n, brokenCarried, nb-brokenCarried-brokenStayed, brokenStayed,
		ok, failed, late, took.Round(time.Millisecond), loadavg())
	if brokenStayed > 0 {
		t.Errorf("%d connections broke that stayed on their (surviving) director", brokenStayed)
	}
	if nb > carried+movedOthers {
		t.Errorf("%d connections broke, more than the %d the router moved", nb, carried+movedOthers)
	}
	if nb > n/3+n/20 || nb > carried {
		t.Errorf("%d of %d connections broke, want at most the killed director's %d (about 1/3)", nb, n, carried)
	}
	if late > 0 {
		t.Errorf("%d new connections failed after the route converged", late)
	}
	// Go on with the connections that survived.
	var live []*soConn
	for i, c := range conns {
		if broken[i] {
			c.c.Close()
		} else {
			live = append(live, c)
		}
	}
	srcs = srcs[:0]
	for _, c := range live {
		srcs = append(srcs, c.src)
	}

	// 2. sloppy_tcp on everywhere; the killed director comes back. The
	// connections that survived step 1 are those the router kept on
	// their director, and going back to three directors moves none of
	// them: open as many new ones, on two directors, for the rehash to
	// move.
	for i, x := range xlbs {
		if i != victim {
			if _, err := x.ctl("sysctl", "net.ipv4.vs.sloppy_tcp=1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	fresh := openSOConns(t, so, n/3)
	live = append(live, fresh...)
	for _, c := range fresh {
		srcs = append(srcs, c.src)
	}
	before = route()
	s = startSOStream(so)
	xlbs[victim] = startScaleOutDirector(t, so, victim, rules, true, "--sloppy-tcp")
	joinAt := time.Now()
	took = converge(fmt.Sprintf("director %d back, sloppy_tcp on", victim+1), d(1), d(2), d(3))
	after = route()
	moved := 0
	for i := range live {
		if before[i] != after[i] {
			moved++
		}
	}
	// Every connection the router moved, and a quarter of the others.
	_, nb = checkSOConns(pickConns(live, func(i int) bool { return before[i] != after[i] || i%4 == 0 }), 3*time.Second)
	time.Sleep(300 * time.Millisecond)
	ok, failed, late = s.stop(joinAt.Add(took))
	t.Logf("sloppy_tcp on, director %d rejoins: the router moved %d of %d connections (%.1f%%) onto it, %d broke (of those and a quarter of the others); new connections: %d ok, %d failed (%d after the route converged)",
		victim+1, moved, len(live), 100*float64(moved)/float64(len(live)), nb, ok, failed, late)
	if moved == 0 {
		t.Error("no connection moved onto the rejoined director: nothing was shown")
	}
	if nb > 0 || failed > 0 {
		t.Errorf("sloppy_tcp + mh: %d connections broke and %d new ones failed when a director joined, want 0", nb, failed)
	}

	// 3. Drain the director first in the router's order.
	order = routeOrder(t, so)
	drained := index(order[0])
	rest := slices.DeleteFunc(slices.Clone(order), func(a netip.Addr) bool { return a == d(drained+1) })
	before = route()
	s = startSOStream(so)
	time.Sleep(200 * time.Millisecond)
	if _, err := xlbs[drained].ctl("drain"); err != nil {
		t.Fatal(err)
	}
	converge(fmt.Sprintf("xlb drain on director %d", drained+1), rest...)
	// New connections now: none reaches the drained director.
	conns2 := openSOConns(t, so, 300)
	where = connDirectors(t, xlbs[drained:drained+1])
	onDrained := 0
	for _, c := range conns2 {
		if _, ok := where[c.src]; ok {
			onDrained++
		}
	}
	_, nb = checkSOConns(pickConns(live, func(i int) bool { return before[i] == d(drained+1) || i%4 == 0 }), 3*time.Second)
	ok, failed, _ = s.stop(time.Time{})
	onIt := 0
	for _, a := range before {
		if a == d(drained+1) {
			onIt++
		}
	}
	t.Logf("xlb drain on director %d: %d new requests ok, %d failed; %d of 300 new connections after the drain reached it; of the %d existing connections, %d on it, %d broke (of those and a quarter of the others)",
		drained+1, ok, failed, onDrained, len(live), onIt, nb)
	for _, c := range conns2 {
		c.c.Close()
	}
	if failed > 0 || onDrained > 0 || nb > 0 {
		t.Errorf("drain: %d failed requests, %d new connections on the drained director, %d existing connections broke; want 0, 0, 0", failed, onDrained, nb)
	}
	if _, err := xlbs[drained].ctl("undrain"); err != nil {
		t.Fatal(err)
	}
	converge(fmt.Sprintf("xlb undrain on director %d", drained+1), d(1), d(2), d(3))

	// 4. sloppy_tcp on: kill the director first in the router's order,
	// whose removal also moves flows between the survivors.
	order = routeOrder(t, so)
	victim = index(order[0])
	survivors = slices.DeleteFunc(slices.Clone(order), func(a netip.Addr) bool { return a == d(victim+1) })
	before = route()
	s = startSOStream(so)
	time.Sleep(200 * time.Millisecond)
	killed = time.Now()
	xlbs[victim].Stop(syscall.SIGKILL, 5*time.Second)
	took = converge(fmt.Sprintf("director %d killed (SIGKILL), sloppy_tcp on", victim+1), survivors...)
	after = route()
	carried, movedOthers = tallyMoves(before, after, len(live), func(a netip.Addr) bool { return index(a) == victim })
	_, nb = checkSOConns(pickConns(live, func(i int) bool { return before[i] != after[i] || i%4 == 0 }), 3*time.Second)
	time.Sleep(300 * time.Millisecond)
	ok, failed, late = s.stop(killed.Add(took))
	t.Logf("sloppy_tcp on, director %d killed: it carried %d of %d connections, the rehash moved %d others, %d of those (and a quarter of the rest) broke (%d survived); new connections: %d ok, %d failed (%d after the route converged %v after the kill)",
		victim+1, carried, len(live), movedOthers, nb, carried+movedOthers-nb, ok, failed, late, took.Round(time.Millisecond))
	if nb > 0 {
		t.Errorf("sloppy_tcp + mh: %d connections broke when a director died, want 0", nb)
	}
	if late > 0 {
		t.Errorf("%d new connections failed after the route converged", late)
	}
}

// loadavg is /proc/loadavg's three load averages, to read a figure by.
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// TestScaleOutSameRealServer sends one flow, a fixed client address and
// port, through each of three directors in turn (the router's route to
// the VIP pinned to one director at a time) and reads which real server
// answers: with mh every director picks the same one, for TCP and UDP,
// whatever else it scheduled before (director i first schedules i other
// flows); rr, the negative control, picks by each director's own
// history, so they differ.
func TestScaleOutSameRealServer(t *testing.T) {
	so := testenv.NewScaleOut(t, testenv.ScaleOutOptions{Directors: 3, RealServers: 4})
	vip := testenv.ScaleOutVIP
	xlbs := make([]*xlbProc, 3)
	for i := range xlbs {
		xlbs[i] = startScaleOutDirector(t, so, i, scaleOutRules(so, "mh", "-b mh-port"), false)
	}
	pin := func(i int) {
		t.Helper()
		if err := so.Router.IP("route", "replace", vip.String()+"/32", "via", testenv.ScaleOutDirectorAddr(i+1).String()); err != nil {
			t.Fatal(err)
		}
	}
	// oneFlow runs the fixed flow: a TCP connection from port, one
	// request, closed with a RST (no TIME_WAIT, so the same port dials
	// again at once), and a UDP query from port+1.
	oneFlow := func(port uint16) (tcp, udp string, err error) {
		err = so.Client.Do(func() error {
			d := net.Dialer{LocalAddr: &net.TCPAddr{Port: int(port)}, Timeout: 3 * time.Second}
			c, err := d.Dial("tcp4", netip.AddrPortFrom(vip, 80).String())
			if err != nil {
				return fmt.Errorf("dial from port %d: %w", port, err)
			}
			sc := &soConn{c: c, r: bufio.NewReader(c)}
			tcp, err = sc.get(3 * time.Second)
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			if err != nil {
				return fmt.Errorf("tcp from port %d: %w", port, err)
			}
			u, err := net.DialUDP("udp4", &net.UDPAddr{Port: int(port + 1)}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(vip, 53)))
			if err != nil {
				return err
			}
			defer u.Close()
			udp, err = testenv.ExchangeUDP(u, 3*time.Second)
			return err
		})
		return tcp, udp, err
	}
	hc := so.Client.HTTPClient(false, 3*time.Second)
	defer hc.CloseIdleConnections()
	for k, sched := range []string{"mh", "rr"} {
		if sched != "mh" {
			for _, x := range xlbs {
				for _, svc := range []string{"-t", "-u"} {
					port := map[string]int{"-t": 80, "-u": 53}[svc]
					if _, err := x.ctl("-E", svc, fmt.Sprintf("%v:%d", vip, port), "-s", sched); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		port := uint16(40000 + 10*k) // a flow no director has an entry for
		var tcps, udps []string
		for i := range xlbs {
			pin(i)
			for range i {
				if _, err := testenv.Get(hc, "http://"+vip.String()+"/"); err != nil {
					t.Fatalf("%s: warm-up request through director %d: %v", sched, i+1, err)
				}
				if _, err := so.Client.QueryUDP(netip.AddrPortFrom(vip, 53), 3*time.Second); err != nil {
					t.Fatalf("%s: warm-up query through director %d: %v", sched, i+1, err)
				}
			}
			tcp, udp, err := oneFlow(port)
			if err != nil {
				t.Fatalf("%s: the flow through director %d: %v", sched, i+1, err)
			}
			tcps, udps = append(tcps, tcp), append(udps, udp)
		}
		// Each director scheduled the flow itself: each holds it.
		for i, x := range xlbs {
			out, _ := x.ctl("-L", "-c", "-n")
			if !strings.Contains(out, fmt.Sprintf("%v:%d ", testenv.ScaleOutClientAddr, port+1)) {
				t.Errorf("%s: director %d has no entry for the UDP flow from port %d:\n%s", sched, i+1, port+1, out)
			}
		}
		same := func(s []string) bool { return !slices.ContainsFunc(s, func(x string) bool { return x != s[0] }) }
		t.Logf("%s: %v:%d -> VIP through directors 1, 2, 3: TCP to %v, UDP (port %d) to %v", sched, testenv.ScaleOutClientAddr, port, tcps, port+1, udps)
		if sched == "mh" && (!same(tcps) || !same(udps)) {
			t.Errorf("mh: the same flow went to different real servers: TCP %v, UDP %v", tcps, udps)
		}
		if sched == "rr" && (same(tcps) || same(udps)) {
			t.Errorf("rr: every director picked the same real server (TCP %v, UDP %v): the control shows nothing", tcps, udps)
		}
	}
}

// TestScaleOutECMPSync is TestScaleOutECMP's kill with connection sync
// between the three directors instead of sloppy_tcp (which stays off):
// every director runs a sync master and a backup (`ipvsadm
// --start-daemon`) on the server LAN, by multicast or to the two others
// as unicast peers, so each holds every director's connections. Killing
// a director (the first nexthop, whose removal also makes hash-threshold
// move flows between the survivors) then breaks none of the 3000.
func TestScaleOutECMPSync(t *testing.T) {
	testenv.RequireRoot(t)
	for _, unicast := range []bool{false, true} {
		name := map[bool]string{false: "multicast", true: "unicast"}[unicast]
		t.Run(name, func(t *testing.T) { scaleOutSync(t, unicast) })
	}
}

func scaleOutSync(t *testing.T, unicast bool) {
	so := testenv.NewScaleOut(t, testenv.ScaleOutOptions{Directors: 3, RealServers: 3})
	vip := testenv.ScaleOutVIP
	d := testenv.ScaleOutDirectorAddr
	rules := scaleOutRules(so, "mh", "-b mh-port")
	xlbs := make([]*xlbProc, 3)
	for i := range xlbs {
		var extra []string
		if unicast {
			for j := range xlbs {
				if j != i {
					extra = append(extra, "--sync-peer", testenv.ScaleOutDirectorServerAddr(j+1).String())
				}
			}
		}
		xlbs[i] = startScaleOutDirector(t, so, i, rules, true, extra...)
		for _, role := range []string{"backup", "master"} {
			if out, err := xlbs[i].ctl("--start-daemon", role, "--mcast-interface", "eth1", "--syncid", "11"); err != nil {
				t.Fatalf("director %d --start-daemon %s: %v %s", i+1, role, err, out)
			}
		}
	}
	out, _ := xlbs[0].ctl("-L", "--daemon")
	t.Logf("director 1, -L --daemon:\n%s", out)
	index := func(a netip.Addr) int {
		for i := range xlbs {
			if d(i+1) == a {
				return i
			}
		}
		return -1
	}
	if _, err := so.WaitNexthops(vip, []netip.Addr{d(1), d(2), d(3)}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	conns := openSOConns(t, so, n)
	srcs := make([]netip.AddrPort, n)
	for i, c := range conns {
		srcs[i] = c.src
	}
	// Each director lists all 3000: its own and the others', synced.
	start := time.Now()
	var sizes []int
	for {
		sizes = sizes[:0]
		for _, x := range xlbs {
			out, err := x.ctl("-L", "-c", "-n")
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, strings.Count(out, "\nTCP "))
		}
		if !slices.ContainsFunc(sizes, func(s int) bool { return s < n }) || time.Since(start) > 15*time.Second {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("connection table sizes (own + synced) %v, %v after the 3000 opened", sizes, time.Since(start).Round(time.Millisecond))
	if slices.ContainsFunc(sizes, func(s int) bool { return s < n }) {
		t.Fatalf("directors list %v connections, want every one of the %d on each", sizes, n)
	}
	route := func() []netip.Addr {
		t.Helper()
		nhs, err := so.RouteFlows("tcp", netip.AddrPortFrom(vip, 80), srcs)
		if err != nil {
			t.Fatal(err)
		}
		return nhs
	}
	order := routeOrder(t, so)
	victim := index(order[0])
	survivors := slices.DeleteFunc(slices.Clone(order), func(a netip.Addr) bool { return a == d(victim+1) })
	before := route()
	s := startSOStream(so)
	time.Sleep(200 * time.Millisecond)
	killed := time.Now()
	xlbs[victim].Stop(syscall.SIGKILL, 5*time.Second)
	took, err := so.WaitNexthops(vip, survivors, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	after := route()
	carried, moved := tallyMoves(before, after, len(conns), func(a netip.Addr) bool { return index(a) == victim })
	_, nb := checkSOConns(conns, 3*time.Second)
	time.Sleep(300 * time.Millisecond)
	ok, failed, late := s.stop(killed.Add(took))
	var st strings.Builder
	for i, x := range xlbs {
		if i != victim {
			o, _ := x.ctl("--xlb-stats")
			for _, l := range strings.Split(o, "\n") {
				if l = strings.TrimSpace(l); strings.HasPrefix(l, "sync_") || strings.HasPrefix(l, "backup ") {
					fmt.Fprintf(&st, "director %d: %s\n", i+1, l)
				}
			}
		}
	}
	t.Logf("sync (%s), sloppy_tcp off, director %d killed: it carried %d of %d connections, the rehash moved %d others; %d broke; "+
		"new connections: %d ok, %d failed (%d after the route converged %v after the kill); load %s\n%s",
		map[bool]string{false: "multicast", true: "unicast"}[unicast], victim+1, carried, n, moved, nb, ok, failed, late, took.Round(time.Millisecond), loadavg(), st.String())
	if carried == 0 {
		t.Error("the killed director carried no connection: nothing was shown")
	}
	if nb > 0 {
		t.Errorf("with sync, %d of %d connections broke when a director died, want 0", nb, n)
	}
	if late > 0 {
		t.Errorf("%d new connections failed after the route converged", late)
	}
}

// tallyMoves counts, over the first n flows, those the router sent to
// the lost director before (carried) and the others whose director
// changed from before to after (moved: the router's rehash).
func tallyMoves(before, after []netip.Addr, n int, lost func(netip.Addr) bool) (carried, moved int) {
	for i := range n {
		switch {
		case lost(before[i]):
			carried++
		case before[i] != after[i]:
			moved++
		}
	}
	return carried, moved
}
