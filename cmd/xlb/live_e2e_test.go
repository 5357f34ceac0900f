//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// The live-update test under load (issue 8): a client keeps a steady
// stream of new TCP and UDP requests and 16 long-lived TCP connections
// through the VIP, each exchanging a request every 200 ms, while the
// configuration changes 100 times: a real server removed and added
// back, another's weight changed (0 included, which drains it), the
// scheduler switched, and the whole configuration restored with -R.
// Result: no failed request, no broken long-lived connection (each stays
// on its real server and answers before, during and after the churn), and
// no frame dropped by XDP, the workers or the AF_XDP sockets, by the
// daemon's own counters. The rules file is written back on every change
// (--save) and ends equal to -S -n.
func TestLiveUpdatesUnderLoad(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	r := func(i int) netip.AddrPort { return netip.AddrPortFrom(env.Reals[i].Addr, 80) }
	vip := netip.AddrPortFrom(testenv.VIP, 80)
	rules := drRules(env, "rr")
	d := startXLB(t, env, rules, "--save")
	var took []time.Duration // of each change, as the client sees it
	ctl := func(stdin string, args ...string) error {
		t0 := time.Now()
		resp, err := call(d.sock, request{Args: args, Stdin: stdin})
		took = append(took, time.Since(t0))
		if err == nil && resp.Code != 0 {
			err = fmt.Errorf("exit %d: %s", resp.Code, resp.Stderr)
		}
		if err != nil {
			return fmt.Errorf("xlb %s: %w", strings.Join(args, " "), err)
		}
		return nil
	}
	requireTraffic(t, env, d.Output.String) // every MAC resolved, every path warm

	// 16 long-lived connections, spread by rr over the three servers.
	const nLong = 16
	longs := make([]*keepAlive, nLong)
	owners := map[string]int{}
	for i := range longs {
		c, err := env.Client.DialContext(context.Background(), "tcp4", vip.String())
		if err != nil {
			t.Fatalf("long-lived connection %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		longs[i] = &keepAlive{c: c, br: bufio.NewReader(c)}
		if _, err := longs[i].get(3 * time.Second); err != nil {
			t.Fatalf("long-lived connection %d before the churn: %v", i, err)
		}
		owners[longs[i].owner]++
	}
	if len(owners) != 3 {
		t.Fatalf("long-lived connections on %v, want all three servers", owners)
	}

	before := daemonStats(t, d)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var requests, failed atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	// The steady stream: new TCP connections and new UDP flows, one after
	// the other.
	wg.Add(1)
	go func() {
		defer wg.Done()
		hc := env.Client.HTTPClient(false, 3*time.Second)
		url := fmt.Sprintf("http://%v/", testenv.VIP)
		vip53 := netip.AddrPortFrom(testenv.VIP, 53)
		for ctx.Err() == nil {
			requests.Add(2)
			if _, err := testenv.Get(hc, url); err != nil {
				fail(fmt.Errorf("TCP request %d: %w", requests.Load()/2, err))
			}
			if _, err := env.Client.QueryUDP(vip53, 2*time.Second); err != nil {
				fail(fmt.Errorf("UDP request %d: %w", requests.Load()/2, err))
			}
		}
	}()
	// The long-lived connections keep talking (the servers close a
	// keep-alive connection idle for 5 s).
	var broken atomic.Int64
	for i, l := range longs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := l.get(3 * time.Second); err != nil {
					broken.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("long-lived connection %d during the churn: %w", i, err))
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
	}

	// The churn. r(0) always serves with weight 1, so every scheduler
	// always has a destination; r(1)'s weight goes to 0 (a drain) only
	// under schedulers that then pick another server (the hash schedulers
	// without fallback do not: IPVS refuses a client whose bucket is a
	// weight-0 server, and so does xlb, counted as no_dest).
	scheds := []string{"rr", "wrr", "lc", "wlc", "sed", "nq", "lblc", "lblcr", "fo", "twos", "sh", "dh", "mh"}
	hashed := map[string]bool{"sh": true, "dh": true, "mh": true}
	start := time.Now()
	var churnErr error
	changes := 0
	for i := 0; i < 100 && churnErr == nil; i++ {
		s := scheds[i%len(scheds)]
		w := 1 + i%4
		if i%5 == 4 && !hashed[s] {
			w = 0
		}
		weight := []string{"-e", "-t", vip.String(), "-r", r(1).String(), "-g", "-w", strconv.Itoa(w)}
		edit := []string{"-E", "-t", vip.String(), "-s", s}
		// Every state in between must be servable too: a hash scheduler
		// only once r(1) has a weight, weight 0 only once the scheduler
		// is not a hash one.
		steps := [][]string{edit, weight}
		if hashed[s] {
			steps = [][]string{weight, edit}
		}
		if i%2 == 0 {
			steps = append(steps, []string{"-d", "-t", vip.String(), "-r", r(2).String()})
		} else {
			steps = append(steps, []string{"-a", "-t", vip.String(), "-r", r(2).String(), "-g", "-w", "2"})
		}
		for _, a := range steps {
			if churnErr = ctl("", a...); churnErr != nil {
				break
			}
			changes++
		}
		if churnErr != nil {
			break
		}
		// -R the rules in force: the whole configuration replaced by
		// itself in one change.
		resp, err := call(d.sock, request{Args: []string{"-S", "-n"}})
		if err != nil {
			churnErr = err
			break
		}
		if churnErr = ctl("-C\n"+resp.Stdout, "-R"); churnErr != nil {
			break
		}
		changes++
		time.Sleep(10 * time.Millisecond)
	}
	churn := time.Since(start)
	slices.Sort(took)
	// Keep the load a little past the last change, then stop it.
	time.Sleep(300 * time.Millisecond)
	stop()
	wg.Wait()
	if churnErr != nil {
		t.Fatalf("churn: %v\nlogs:\n%s", churnErr, d.Output.String())
	}

	// After: every long-lived connection still answers, from its server.
	for i, l := range longs {
		if _, err := l.get(3 * time.Second); err != nil {
			broken.Add(1)
			t.Errorf("long-lived connection %d after the churn: %v", i, err)
		}
	}
	after := daemonStats(t, d)
	t.Logf("%d changes in %v (each %v median, %v max, --save included); %d requests, %d failed; %d long-lived connections, %d broken",
		changes, churn.Round(time.Millisecond), took[len(took)/2].Round(10*time.Microsecond), took[len(took)-1].Round(10*time.Microsecond),
		requests.Load(), failed.Load(), nLong, broken.Load())
	if failed.Load() != 0 || broken.Load() != 0 {
		t.Errorf("%d of %d requests failed, %d of %d long-lived connections broke; first: %v",
			failed.Load(), requests.Load(), broken.Load(), nLong, firstErr.Load())
	}
	if requests.Load() < 50 {
		t.Errorf("only %d requests during the churn: no load", requests.Load())
	}
	for _, l := range longs {
		if l.n < 3 {
			t.Errorf("a long-lived connection exchanged only %d requests", l.n)
		}
	}
	// The dataplane's counters: frames went through, none was dropped.
	if n := after["workers.rx_frames"] - before["workers.rx_frames"]; n < 1000 {
		t.Errorf("workers took %d frames during the churn, want many", n)
	}
	for _, c := range dropCounters {
		if n := after[c] - before[c]; n != 0 {
			t.Errorf("%s: %d frames dropped during the churn", c, n)
		}
	}
	t.Logf("frames: rx %d, tx %d, held %d (sent %d)",
		after["workers.rx_frames"]-before["workers.rx_frames"], after["workers.tx_frames"]-before["workers.tx_frames"],
		after["workers.held"]-before["workers.held"], after["workers.held_sent"]-before["workers.held_sent"])

	// --save kept the rules file equal to the configuration.
	resp, err := call(d.sock, request{Args: []string{"-S", "-n"}})
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(rulesFileOf(t, d))
	if err != nil {
		t.Fatal(err)
	}
	if string(file) != resp.Stdout {
		t.Errorf("rules file after the churn:\n%s\nwant -S -n:\n%s", file, resp.Stdout)
	}
	for _, want := range []string{`msg="real server added"`, `msg="real server removed`, `msg="real server drained: weight 0"`,
		`msg="service edited"`, `msg="rules saved"`} {
		if !strings.Contains(d.Output.String(), want) {
			t.Errorf("no %s in the daemon's log", want)
		}
	}

	// A restart from the saved file comes back the same.
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	d2 := startXLB(t, env, string(file))
	again, err := call(d2.sock, request{Args: []string{"-S", "-n"}})
	if err != nil || again.Stdout != resp.Stdout {
		t.Errorf("after a restart from the saved rules (%v):\n%s\nwant\n%s", err, again.Stdout, resp.Stdout)
	}
}

// dropCounters are every counter of `xlb --xlb-stats` that counts a
// dropped or refused frame.
var dropCounters = []string{
	"xdp.malformed", "xdp.drop_other_host", "xdp.drop_l2_multicast", "xdp.drop_bad_checksum", "xdp.drop_martian",
	"xdp.drop_syn_rate", "xdp.drop_syn_pressure", "xdp.pass_no_service",
	"workers.malformed", "workers.no_service", "workers.no_dest", "workers.not_new", "workers.no_neighbour",
	"workers.bad_desc", "workers.kick_errors", "workers.hold_expired", "workers.hold_full", "workers.link_down",
	"workers.no_local_port", "workers.xmit_dropped", "workers.copy_no_frame", "workers.icmp_no_conn",
	"workers.nodest_expired",
	"sockets.rx_dropped", "sockets.rx_ring_full", "sockets.fill_ring_empty", "sockets.rx_invalid", "sockets.tx_invalid",
}

// daemonStats reads `xlb --xlb-stats` as section.name → value
// ("workers.rx_frames", "xdp.redirect", "sockets.rx_dropped").
func daemonStats(t *testing.T, d *xlbProc) map[string]uint64 {
	t.Helper()
	resp, err := call(d.sock, request{Args: []string{"--xlb-stats"}})
	if err != nil || resp.Code != 0 {
		t.Fatalf("--xlb-stats: %v %+v", err, resp)
	}
	m := map[string]uint64{}
	section := ""
	for _, l := range strings.Split(resp.Stdout, "\n") {
		if l != "" && l[0] != ' ' {
			section, _, _ = strings.Cut(l, " ")
			section = strings.TrimSuffix(section, ":")
			if section == "af_xdp" {
				section = "sockets"
			}
			continue
		}
		f := strings.Fields(strings.ReplaceAll(l, ",", ""))
		for i := 0; i+1 < len(f); i += 2 {
			if n, err := strconv.ParseUint(f[i+1], 10, 64); err == nil {
				m[section+"."+f[i]] = n
			}
		}
	}
	if _, ok := m["sockets.rx_dropped"]; !ok {
		t.Fatalf("--xlb-stats without socket counters:\n%s", resp.Stdout)
	}
	return m
}

// rulesFileOf is the --rules file startXLBOn wrote for d.
func rulesFileOf(t *testing.T, d *xlbProc) string {
	t.Helper()
	return strings.TrimSuffix(d.sock, "xlb.sock") + "rules"
}

// Weight 0 drains a real server: new connections go elsewhere, its
// established ones continue. Removing one keeps its established
// connections too, until `xlb sysctl net.ipv4.vs.expire_nodest_conn=1`:
// then their next packet expires them (and is dropped), as in IPVS.
func TestDrainAndExpireNodestConn(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	d := startXLB(t, env, drRules(env, "rr"))
	if failed, err := checkTraffic(env, 10); failed != 0 {
		t.Fatalf("%d requests failed: %v", failed, err)
	}
	vip := netip.AddrPortFrom(testenv.VIP, 80).String()
	name := func(i int) string { return env.Reals[i].Name }
	rs := func(i int) string { return netip.AddrPortFrom(env.Reals[i].Addr, 80).String() }
	byOwner := map[string][]*keepAlive{}
	for range 6 {
		h := mustKeepAlive(t, env, netip.AddrPortFrom(testenv.VIP, 80))
		byOwner[h.owner] = append(byOwner[h.owner], h)
	}
	for i := range 3 {
		if len(byOwner[name(i)]) == 0 {
			t.Fatalf("no connection on %s: %v", name(i), byOwner)
		}
	}
	newOwners := func() map[string]int {
		m := map[string]int{}
		c := env.Client.HTTPClient(false, 3*time.Second)
		for i := 0; i < 12; i++ {
			s, err := testenv.Get(c, "http://"+vip+"/")
			if err != nil {
				t.Fatalf("new request %d: %v", i, err)
			}
			m[s]++
		}
		return m
	}
	mustAnswer := func(when string, owners ...int) {
		t.Helper()
		for _, o := range owners {
			for j, h := range byOwner[name(o)] {
				if _, err := h.get(3 * time.Second); err != nil {
					t.Fatalf("%s: connection %d on %s: %v", when, j, name(o), err)
				}
			}
		}
	}

	if _, err := d.ctl("-e", "-t", vip, "-r", rs(1), "-g", "-w", "0"); err != nil {
		t.Fatal(err)
	}
	if m := newOwners(); m[name(1)] != 0 || m[name(0)] == 0 || m[name(2)] == 0 {
		t.Errorf("new connections with %s at weight 0: %v", name(1), m)
	}
	mustAnswer("drained", 0, 1, 2)

	if _, err := d.ctl("-d", "-t", vip, "-r", rs(2)); err != nil {
		t.Fatal(err)
	}
	if m := newOwners(); m[name(2)] != 0 || m[name(1)] != 0 || m[name(0)] != 12 {
		t.Errorf("new connections with %s removed and %s drained: %v", name(2), name(1), m)
	}
	mustAnswer("removed, expire_nodest_conn off", 0, 1, 2)

	out, err := d.ctl("sysctl", "net.ipv4.vs.expire_nodest_conn=1")
	if err != nil || out != "net.ipv4.vs.expire_nodest_conn = 1\n" {
		t.Fatalf("xlb sysctl: %q, %v", out, err)
	}
	before := daemonStats(t, d)["workers.nodest_expired"]
	for j, h := range byOwner[name(2)] {
		if _, err := h.get(time.Second); err == nil {
			t.Errorf("connection %d on removed %s still answered with expire_nodest_conn on", j, name(2))
		}
	}
	if n := daemonStats(t, d)["workers.nodest_expired"] - before; n < uint64(len(byOwner[name(2)])) {
		t.Errorf("nodest_expired grew by %d, want at least %d", n, len(byOwner[name(2)]))
	}
	mustAnswer("expire_nodest_conn on", 0, 1) // weight 0 is not removed
	if l, err := d.ctl("-L", "-n", "-c"); err != nil {
		t.Error(err)
	} else {
		for _, line := range strings.Split(l, "\n") {
			if strings.Contains(line, "ESTABLISHED") && strings.HasSuffix(strings.TrimSpace(line), " "+rs(2)) {
				t.Errorf("expired connection still listed: %s", line)
			}
		}
	}
	out, err = d.ctl("sysctl")
	if err != nil || !strings.Contains(out, "net.ipv4.vs.expire_nodest_conn = 1\nnet.ipv4.vs.expire_quiescent_template = 0\n") {
		t.Errorf("xlb sysctl: %q, %v", out, err)
	}
	if !strings.Contains(d.Output.String(), "expire_nodest_conn=true") {
		t.Error("the sysctl change is not logged")
	}
}
