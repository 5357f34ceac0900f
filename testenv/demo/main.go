//go:build linux

// Command demo shows xlb balancing real TCP and UDP traffic in direct
// routing mode on a namespace topology: a client, a director running
// `xlb run`, and three real servers. It prints where the connections went,
// the ipvsadm listing and xlb's counters, tears everything down, and
// exits 0 only if every request succeeded.
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
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

func main() {
	xlb := flag.String("xlb", "bin/xlb", "path to the xlb binary")
	reqs := flag.Int("requests", 300, "HTTP requests, each on a new connection")
	queries := flag.Int("queries", 300, "UDP queries, each from a new socket")
	sched := flag.String("s", "rr", "scheduler")
	flag.Parse()
	if err := demo(*xlb, *sched, *reqs, *queries); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func demo(xlb, sched string, reqs, queries int) (err error) {
	start := time.Now()
	xlb, err = filepath.Abs(xlb)
	if err != nil {
		return err
	}
	fmt.Println("== topology: client, director, 3 real servers (namespaces xlbdemo-*)")
	env, err := testenv.Setup(testenv.Options{Name: "xlbdemo", RealServers: 3, Servers: true})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := env.Close(); cerr != nil && err == nil {
			err = cerr
		}
		fmt.Println("== torn down: every namespace removed")
	}()
	// Tear down on ^C too.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() { <-sigs; env.Close(); os.Exit(130) }()

	dir, err := os.MkdirTemp("", "xlbdemo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var rules strings.Builder
	vip := testenv.VIP
	fmt.Fprintf(&rules, "-A -t %v:80 -s %s\n", vip, sched)
	for i := range env.Reals {
		fmt.Fprintf(&rules, "-a -t %v:80 -r %v:80 -g -w 1\n", vip, testenv.RealAddr(i))
	}
	fmt.Fprintf(&rules, "-A -u %v:53 -s %s\n", vip, sched)
	for i := range env.Reals {
		fmt.Fprintf(&rules, "-a -u %v:53 -r %v:53 -g -w 1\n", vip, testenv.RealAddr(i))
	}
	rulesFile := filepath.Join(dir, "rules")
	if err := os.WriteFile(rulesFile, []byte(rules.String()), 0o644); err != nil {
		return err
	}
	fmt.Printf("== rules (ipvsadm save format)\n%s", rules.String())

	sock := filepath.Join(dir, "xlb.sock")
	xp, err := env.Director.Start(xlb, "run", "--iface", "eth0", "--rules", rulesFile, "--socket", sock, "--conns", "65536")
	if err != nil {
		return fmt.Errorf("start xlb: %w", err)
	}
	stop := func() error { return xp.Stop(syscall.SIGTERM, 10*time.Second) }
	defer stop()
	if err := waitReady(xlb, sock, 10*time.Second); err != nil {
		stop()
		return fmt.Errorf("%w\n%s", err, xp.Output.String())
	}
	fmt.Printf("== xlb running on the director: %s", firstLine(xp.Output.String(), "xdp attached"))

	t0 := time.Now()
	tcp, tcpErr := httpRequests(env, reqs)
	tcpTime := time.Since(t0)
	t0 = time.Now()
	udp, udpErr := udpQueries(env, queries)
	udpTime := time.Since(t0)

	fmt.Printf("== %d HTTP GETs on new connections (%v) and %d UDP queries from new sockets (%v) to %v\n",
		reqs, tcpTime.Round(time.Millisecond), queries, udpTime.Round(time.Millisecond), vip)
	fmt.Printf("%-12s %10s %10s\n", "real server", "TCP conns", "UDP flows")
	names := map[string]bool{}
	for n := range tcp {
		names[n] = true
	}
	for n := range udp {
		names[n] = true
	}
	var sorted []string
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		fmt.Printf("%-12s %10d %10d\n", n, tcp[n], udp[n])
	}
	fmt.Printf("%-12s %10d %10d\n", "failed", tcpErr, udpErr)

	ping := env.Client.Command("ping", "-c1", "-W2", testenv.DirectorAddr.String())
	pingErr := ping.Run()
	fmt.Printf("== director still answers ping while xlb runs: %v\n", pingErr == nil)

	fmt.Println("== xlb -L -n")
	list, _ := exec.Command(xlb, "--socket", sock, "-L", "-n").CombinedOutput()
	os.Stdout.Write(list)
	fmt.Println("== xlb -L -n --stats")
	list, _ = exec.Command(xlb, "--socket", sock, "-L", "-n", "--stats").CombinedOutput()
	os.Stdout.Write(list)

	werr := stop()
	fmt.Println("== xlb counters (printed by the daemon on SIGTERM)")
	fmt.Print(xp.Stdout.String())
	if werr != nil {
		return fmt.Errorf("xlb exited: %v\n%s", werr, xp.Output.String())
	}
	fmt.Printf("== done in %v\n", time.Since(start).Round(time.Millisecond))
	switch {
	case tcpErr > 0 || udpErr > 0:
		return fmt.Errorf("%d HTTP requests and %d UDP queries failed", tcpErr, udpErr)
	case pingErr != nil:
		return fmt.Errorf("director did not answer ping: %v", pingErr)
	}
	return nil
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
	url := fmt.Sprintf("http://%v/", testenv.VIP)
	return parallel(n, 4, func() (string, error) { return testenv.Get(c, url) })
}

// udpQueries sends n queries to the VIP, each from a new socket (a new
// flow), and counts answers per real server.
func udpQueries(env *testenv.Env, n int) (map[string]int, int) {
	addr := netip.AddrPortFrom(testenv.VIP, 53)
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
