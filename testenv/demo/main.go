//go:build linux

// Command demo shows xlb balancing real TCP and UDP traffic in each of
// IPVS's forwarding methods on namespace topologies: a client, a director
// running `xlb run`, and three real servers set up for direct routing,
// NAT, tunneling (decapsulated by `xlb decap`) and full NAT in turn. For
// each it prints where the connections went and the ipvsadm listing, then
// a table of all four, tears everything down, and exits 0 only if every
// request succeeded.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

func main() {
	xlb := flag.String("xlb", "bin/xlb", "path to the xlb binary")
	reqs := flag.Int("requests", 300, "HTTP requests per method, each on a new connection")
	queries := flag.Int("queries", 300, "UDP queries per method, each from a new socket")
	sched := flag.String("s", "rr", "scheduler")
	flag.Parse()
	if err := demo(*xlb, *sched, *reqs, *queries); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

// method is one forwarding method of the demo.
type method struct {
	name  string
	reals testenv.RealKind
	opt   string // ipvsadm's option for it
}

var methods = []method{
	{"DR", testenv.RealDR, "-g"},
	{"NAT", testenv.RealNAT, "-m"},
	{"TUN", testenv.RealTUN, "-i"},
	{"FULLNAT", testenv.RealFullNAT, "--fullnat"},
}

// result is where one method's connections went.
type result struct {
	tcp, udp       map[string]int
	tcpErr, udpErr int
}

func demo(xlb, sched string, reqs, queries int) (err error) {
	start := time.Now()
	xlb, err = filepath.Abs(xlb)
	if err != nil {
		return err
	}
	var results []result
	for _, m := range methods {
		r, err := runMethod(xlb, sched, m, reqs, queries)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		results = append(results, r)
	}
	fmt.Printf("== where the connections went (%d HTTP GETs on new connections, %d UDP queries from new sockets, per method)\n", reqs, queries)
	fmt.Printf("%-8s", "method")
	for i := 1; i <= 3; i++ {
		fmt.Printf(" %13s", fmt.Sprintf("rs%d TCP/UDP", i))
	}
	fmt.Printf(" %13s\n", "failed")
	failed := 0
	for i, r := range results {
		fmt.Printf("%-8s", methods[i].name)
		for j := 1; j <= 3; j++ {
			n := fmt.Sprintf("rs%d", j)
			fmt.Printf(" %13s", fmt.Sprintf("%d/%d", r.tcp[n], r.udp[n]))
		}
		fmt.Printf(" %13s\n", fmt.Sprintf("%d/%d", r.tcpErr, r.udpErr))
		failed += r.tcpErr + r.udpErr
	}
	fmt.Printf("== done in %v\n", time.Since(start).Round(time.Millisecond))
	if failed > 0 {
		return fmt.Errorf("%d requests failed", failed)
	}
	return nil
}

// runMethod builds a topology for m, runs xlb on it with an rr service
// per protocol, sends the traffic and tears it down.
func runMethod(xlb, sched string, m method, reqs, queries int) (res result, err error) {
	fmt.Printf("== %s: client, director, 3 real servers set up for %s (namespaces xlbdemo-*)\n", m.name, m.reals)
	env, err := testenv.Setup(testenv.Options{Name: "xlbdemo", RealServers: 3, Servers: true, Reals: m.reals, XLB: xlb,
		HTTPPort: 80, UDPPort: 53})
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := env.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	// Tear down on ^C too.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			env.Close()
			os.Exit(130)
		}
	}()

	dir, err := os.MkdirTemp("", "xlbdemo")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	var rules strings.Builder
	vip := env.VIP
	for _, svc := range []struct {
		flag string
		port uint16
	}{{"-t", 80}, {"-u", 53}} {
		fmt.Fprintf(&rules, "-A %s %v:%d -s %s\n", svc.flag, vip, svc.port, sched)
		if m.reals == testenv.RealFullNAT {
			fmt.Fprintf(&rules, "-P %s %v:%d -z %v\n", svc.flag, vip, svc.port, env.LAddr)
		}
		for _, rs := range env.Reals {
			fmt.Fprintf(&rules, "-a %s %v:%d -r %v:%d %s -w 1\n", svc.flag, vip, svc.port, rs.Addr, svc.port, m.opt)
		}
	}
	rulesFile := filepath.Join(dir, "rules")
	if err := os.WriteFile(rulesFile, []byte(rules.String()), 0o644); err != nil {
		return res, err
	}
	fmt.Printf("== rules (ipvsadm save format)\n%s", rules.String())

	sock := filepath.Join(dir, "xlb.sock")
	xp, err := env.Director.Start(xlb, "run", "--iface", "eth0", "--rules", rulesFile, "--socket", sock, "--conns", "65536")
	if err != nil {
		return res, fmt.Errorf("start xlb: %w", err)
	}
	stop := func() error { return xp.Stop(syscall.SIGTERM, 10*time.Second) }
	defer stop()
	if err := waitReady(xlb, sock, 10*time.Second); err != nil {
		stop()
		return res, fmt.Errorf("%w\n%s", err, xp.Output.String())
	}
	fmt.Printf("== xlb running on the director: %s", firstLine(xp.Output.String(), "xdp attached"))

	t0 := time.Now()
	res.tcp, res.tcpErr = httpRequests(env, reqs)
	tcpTime := time.Since(t0)
	t0 = time.Now()
	res.udp, res.udpErr = udpQueries(env, queries)
	fmt.Printf("== %d HTTP GETs (%v) and %d UDP queries (%v) to %v: %d and %d failed\n", reqs, tcpTime.Round(time.Millisecond),
		queries, time.Since(t0).Round(time.Millisecond), vip, res.tcpErr, res.udpErr)
	if m.reals == testenv.RealDR {
		ping := env.Client.Command("ping", "-c1", "-W2", testenv.DirectorAddr.String())
		fmt.Printf("== director still answers ping while xlb runs: %v\n", ping.Run() == nil)
	}
	fmt.Println("== xlb -L -n")
	list, _ := exec.Command(xlb, "--socket", sock, "-L", "-n").CombinedOutput()
	os.Stdout.Write(list)
	if m.reals == testenv.RealFullNAT {
		fmt.Println("== xlb -G (FULLNAT local addresses)")
		list, _ = exec.Command(xlb, "--socket", sock, "-G").CombinedOutput()
		os.Stdout.Write(list)
	}
	werr := stop()
	fmt.Printf("== xlb counters: %s\n", compactCounters(xp.Stdout.String()))
	if werr != nil {
		return res, fmt.Errorf("xlb exited: %v\n%s", werr, xp.Output.String())
	}
	return res, nil
}

// compactCounters keeps the worker counters that tell the story, on one
// line.
func compactCounters(out string) string {
	keep := map[string]bool{"redirect": true, "redirect_reply": true, "rx_frames": true, "tx_frames": true,
		"conn_new": true, "conn_hit": true, "reply_hit": true, "too_big_sent": true, "held": true}
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && keep[f[0]] {
			fmt.Fprintf(&b, "%s %s  ", f[0], f[1])
		}
	}
	return strings.TrimSpace(b.String())
}

func waitReady(xlb, sock string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if exec.Command(xlb, "--socket", sock, "-L", "-n").Run() == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("xlb did not answer on %s within %v", sock, timeout)
}

// httpRequests makes n GETs to the VIP, each on a new connection, four at
// a time, and counts answers per real server.
func httpRequests(env *testenv.Env, n int) (map[string]int, int) {
	c := env.Client.HTTPClient(false, 5*time.Second)
	url := fmt.Sprintf("http://%v/", env.VIP)
	return parallel(n, 4, func() (string, error) { return testenv.Get(c, url) })
}

// udpQueries sends n queries to the VIP, each from a new socket (a new
// flow), and counts answers per real server.
func udpQueries(env *testenv.Env, n int) (map[string]int, int) {
	addr := netip.AddrPortFrom(env.VIP, 53)
	return parallel(n, 4, func() (string, error) { return env.Client.QueryUDP(addr, 3*time.Second) })
}

func parallel(n, width int, fn func() (string, error)) (map[string]int, int) {
	var mu sync.Mutex
	got := map[string]int{}
	failed := 0
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < width; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				name, err := fn()
				mu.Lock()
				if err != nil {
					failed++
					if failed <= 3 {
						fmt.Fprintf(os.Stderr, "request failed: %v\n", err)
					}
				} else {
					got[name]++
				}
				mu.Unlock()
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	return got, failed
}

func firstLine(s, substr string) string {
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return "\n"
}
