//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// Two daemons in two network namespaces of one host, both with the
// default control socket, both run, and each namespace's client sees its
// own daemon's configuration (they used to share /run/xlb.sock: the
// second refused only after attaching XDP, and a client configured
// whichever held the path).
func TestTwoDaemonsTwoNamespaces(t *testing.T) {
	testenv.RequireRoot(t)
	opts := testenv.Options{RealServers: 1, HTTPPort: 80, UDPPort: 53, Servers: true}
	opts.Name = fmt.Sprintf("xa%d", os.Getpid()%100000)
	a := testenv.New(t, opts)
	opts.Name = fmt.Sprintf("xb%d", os.Getpid()%100000)
	b := testenv.New(t, opts)
	da := startDaemon(t, a, writeRules(t, t.TempDir(), drRules(a, "rr")), "")
	db := startDaemon(t, b, writeRules(t, t.TempDir(), drRules(b, "wlc")), "")
	if out, err := da.ctl("-A", "-t", "198.18.0.101:80", "-s", "sh"); err != nil {
		t.Fatal(out, err)
	}
	sa, sb := da.mustSave(t), db.mustSave(t)
	if !strings.Contains(sa, "-s rr") || !strings.Contains(sa, "198.18.0.101:80 -s sh") || strings.Contains(sa, "wlc") {
		t.Errorf("namespace a's daemon has:\n%s", sa)
	}
	if !strings.Contains(sb, "-s wlc") || strings.Contains(sb, "198.18.0.101") || strings.Contains(sb, "-s rr") {
		t.Errorf("namespace b's daemon has:\n%s", sb)
	}
	for _, env := range []*testenv.Env{a, b} {
		if failed, err := checkTraffic(env, 20); failed != 0 {
			t.Errorf("%s: %d of 20+20 requests failed: %v", env.Name, failed, err)
		}
	}
}

// A second xlb run on a served interface is refused with a clear
// message, before it touches anything: the first keeps serving, with the
// same XDP program and configuration (it used to panic in socket.close).
func TestSecondDaemonRefused(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	rules := writeRules(t, t.TempDir(), drRules(env, "rr"))
	d := startDaemon(t, env, rules, "")
	before := d.mustSave(t)
	link := func() string {
		out, _ := env.Director.Command("ip", "link", "show", "dev", "eth0").CombinedOutput()
		return regexp.MustCompile(`prog/xdp id \d+`).FindString(string(out))
	}
	prog := link()
	if prog == "" {
		t.Fatal("no XDP program on eth0")
	}
	bg := startBackground(env)
	time.Sleep(200 * time.Millisecond)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"same socket", nil, "another xlb daemon is running in this network namespace"},
		{"other socket", []string{"--socket", "@xlb-second"}, "interface eth0 is busy: another xlb (or AF_XDP program) is attached"},
	} {
		args := append([]string{"run", "--iface", "eth0", "--rules", rules}, tc.args...)
		out, err := env.Director.Run(context.Background(), 10*time.Second, xlbBin, args...)
		if err == nil || !strings.Contains(out, tc.want) || strings.Contains(out, "panic") {
			t.Errorf("%s: second xlb run: %v\n%s\nwant a refusal with %q", tc.name, err, out, tc.want)
		}
	}
	time.Sleep(200 * time.Millisecond)
	ok, failed := bg.end()
	if failed != 0 || ok == 0 {
		t.Errorf("traffic while a second xlb was refused: %d ok, %d failed", ok, failed)
	}
	if d.Exited() {
		t.Fatalf("the first xlb died: %v\n%s", d.Err(), d.Output.String())
	}
	if got := link(); got != prog {
		t.Errorf("eth0's XDP program changed from %q to %q", prog, got)
	}
	if after := d.mustSave(t); after != before {
		t.Errorf("-S -n changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	requireTraffic(t, env, d.Output.String)
}

// serveTime starts xlb and returns how long it takes until a new TCP
// connection through the VIP succeeds; the control socket must answer
// then too.
func serveTime(t *testing.T, env *testenv.Env, rules, sock string) (*nsDaemon, time.Duration) {
	t.Helper()
	start := time.Now()
	d, err := launchDaemon(env, rules, sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(syscall.SIGTERM, 10*time.Second) })
	c := env.Client.HTTPClient(false, 50*time.Millisecond)
	url := fmt.Sprintf("http://%v/", testenv.VIP)
	for time.Since(start) < 10*time.Second && !d.Exited() {
		if _, err := testenv.Get(c, url); err == nil {
			took := time.Since(start)
			if err := d.waitUp(5 * time.Second); err != nil {
				t.Fatalf("xlb serves traffic but not its control socket: %v", err)
			}
			return d, took
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("xlb does not serve 10 s after start: %v\n%s", d.Err(), d.Output.String())
	return nil, 0
}

// SIGKILL leaves no XDP program (the bpf_link closes with the process)
// and no socket that blocks a restart: the stale socket file is replaced
// and the restarted daemon serves within a second.
func TestSIGKILLRestart(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	dir := t.TempDir()
	rules := writeRules(t, dir, drRules(env, "rr"))
	sock := filepath.Join(dir, "xlb.sock")
	d := startDaemon(t, env, rules, sock)
	before := d.mustSave(t)
	requireTraffic(t, env, d.Output.String)
	bg := startBackground(env)
	time.Sleep(200 * time.Millisecond)
	d.Stop(syscall.SIGKILL, time.Second)
	if xdpAttached(t, env) {
		t.Error("XDP still attached after SIGKILL")
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("SIGKILL left no stale socket file (%v): the test needs one", err)
	}
	d2, took := serveTime(t, env, rules, sock)
	t.Logf("after SIGKILL, a restart with the same rules serves in %v", took)
	if took > time.Second {
		t.Errorf("restart after SIGKILL served after %v, want < 1s\n%s", took, d2.Output.String())
	}
	ok, failed := bg.end()
	t.Logf("background traffic across the SIGKILL and restart: %d ok, %d failed", ok, failed)
	if after := d2.mustSave(t); after != before {
		t.Errorf("-S -n after restart:\n%s\nwant:\n%s", after, before)
	}
	requireTraffic(t, env, d2.Output.String)
}

// A clean restart (SIGTERM, then xlb run with the same rules file)
// serves again within a second.
func TestRestartWithinASecond(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	rules := writeRules(t, t.TempDir(), drRules(env, "rr"))
	d := startDaemon(t, env, rules, "")
	before := d.mustSave(t)
	if err := d.Stop(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, d.Output.String())
	}
	d2, took := serveTime(t, env, rules, "")
	t.Logf("a restart with the same rules serves in %v", took)
	if took > time.Second {
		t.Errorf("restart served after %v, want < 1s\n%s", took, d2.Output.String())
	}
	if after := d2.mustSave(t); after != before {
		t.Errorf("-S -n after restart:\n%s\nwant:\n%s", after, before)
	}
	requireTraffic(t, env, d2.Output.String)
}

// connEntries lists -L -n -c entries without their expiry, those with
// more than min left.
func connEntries(t *testing.T, d *nsDaemon, min time.Duration) map[string]bool {
	t.Helper()
	out, err := d.ctl("-L", "-n", "-c")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, l := range strings.Split(out, "\n")[2:] {
		f := strings.Fields(l)
		if len(f) < 6 {
			continue
		}
		var mm, ss int
		if _, err := fmt.Sscanf(f[1], "%d:%d", &mm, &ss); err != nil {
			continue
		}
		if time.Duration(mm*60+ss)*time.Second > min {
			m[strings.Join(append([]string{f[0]}, f[2:]...), " ")] = true
		}
	}
	return m
}

// SIGSTOP for 5 s and SIGCONT lose no state: the configuration and the
// connection entries are unchanged, an established connection carries on,
// and a command and a new connection issued during the stop are answered
// after it.
func TestSIGSTOPKeepsState(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	d := startDaemon(t, env, writeRules(t, t.TempDir(), drRules(env, "rr")), "")
	url := fmt.Sprintf("http://%v/", testenv.VIP)
	keep := env.Client.HTTPClient(true, 15*time.Second)
	defer keep.CloseIdleConnections()
	first, err := testenv.Get(keep, url)
	if err != nil {
		t.Fatal(err)
	}
	requireTraffic(t, env, d.Output.String)
	before := d.mustSave(t)
	conns := connEntries(t, d, 20*time.Second)
	if len(conns) == 0 {
		t.Fatal("no connection entries before the stop")
	}

	if err := syscall.Kill(d.Cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	during := make(chan error, 2)
	go func() {
		_, err := d.ctl("-L", "-n")
		during <- err
	}()
	go func() {
		_, err := testenv.Get(env.Client.HTTPClient(false, 15*time.Second), url)
		during <- err
	}()
	time.Sleep(5 * time.Second)
	syscall.Kill(d.Cmd.Process.Pid, syscall.SIGCONT)
	for i := 0; i < 2; i++ {
		if err := <-during; err != nil {
			t.Errorf("a request made during SIGSTOP failed after SIGCONT: %v", err)
		}
	}
	if d.Exited() {
		t.Fatalf("xlb died: %v\n%s", d.Err(), d.Output.String())
	}
	if after := d.mustSave(t); after != before {
		t.Errorf("-S -n changed across SIGSTOP:\n%s\nwant:\n%s", after, before)
	}
	now := connEntries(t, d, 0)
	for c := range conns {
		if !now[c] {
			t.Errorf("connection entry lost across SIGSTOP: %s", c)
		}
	}
	if name, err := testenv.Get(keep, url); err != nil || name != first {
		t.Errorf("keep-alive connection after SIGCONT: %q, %v; want %s", name, err, first)
	}
	requireTraffic(t, env, d.Output.String)
}

// SIGHUP reloads the rules file through the same all-or-nothing path as
// -R: a changed file is applied, a broken one is logged and changes
// nothing, and the daemon lives on (SIGHUP used to kill it silently).
func TestSIGHUPReload(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	dir := t.TempDir()
	rules := writeRules(t, dir, drRules(env, "rr"))
	d := startDaemon(t, env, rules, "")
	bg := startBackground(env)

	writeRules(t, dir, drRules(env, "wlc")+"-A -t 198.18.0.101:80 -s sh\n")
	d.Cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(3 * time.Second)
	var got string
	for {
		got = d.mustSave(t)
		if strings.Contains(got, "198.18.0.101:80 -s sh") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(got, "198.18.0.101:80 -s sh") || !strings.Contains(got, "-s wlc") || strings.Contains(got, "-s rr") {
		t.Fatalf("after SIGHUP with a changed file, -S -n is:\n%s\nlogs:\n%s", got, d.Output.String())
	}

	writeRules(t, dir, "-A -t 198.18.0.102:80 -s rr\n-A -t nonsense\n")
	d.Cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(3 * time.Second)
	for !strings.Contains(d.Output.String(), "rules not reloaded") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(d.Output.String(), "rules not reloaded") {
		t.Errorf("a broken rules file on SIGHUP was not logged:\n%s", d.Output.String())
	}
	if d.Exited() {
		t.Fatalf("xlb died on SIGHUP: %v\n%s", d.Err(), d.Output.String())
	}
	if after := d.mustSave(t); after != got {
		t.Errorf("a broken rules file changed the configuration:\n%s\nwant:\n%s", after, got)
	}
	ok, failed := bg.end()
	if failed != 0 || ok == 0 {
		t.Errorf("traffic across the reloads: %d ok, %d failed", ok, failed)
	}
	requireTraffic(t, env, d.Output.String)
}

// SIGQUIT (and SIGINT) leave the state SIGTERM does: XDP detached,
// counters printed, socket file removed, exit 0 (SIGQUIT used to dump
// goroutines and leave the socket; SIGHUP killed xlb silently).
func TestFatalSignalsCleanUp(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.Options{RealServers: 1, HTTPPort: 80, UDPPort: 53, Servers: true})
	dir := t.TempDir()
	rules := writeRules(t, dir, drRules(env, "rr"))
	for _, sig := range []syscall.Signal{syscall.SIGQUIT, syscall.SIGINT, syscall.SIGABRT} {
		sock := filepath.Join(dir, "xlb.sock")
		d := startDaemon(t, env, rules, sock)
		if failed, err := checkTraffic(env, 10); failed != 0 {
			t.Fatalf("%d requests failed: %v", failed, err)
		}
		if err := d.Stop(sig, 10*time.Second); err != nil {
			t.Errorf("%v: exit %v\n%s", sig, err, d.Output.String())
		}
		if strings.Contains(d.Output.String(), "goroutine ") {
			t.Errorf("%v: goroutine dump:\n%.2000s", sig, d.Output.String())
		}
		if !strings.Contains(d.Stdout.String(), "conn_new") {
			t.Errorf("%v: no counters printed:\n%s", sig, d.Stdout.String())
		}
		if xdpAttached(t, env) {
			t.Errorf("%v: XDP still attached", sig)
		}
		if _, err := os.Lstat(sock); !os.IsNotExist(err) {
			t.Errorf("%v: socket file left behind (%v)", sig, err)
		}
	}
}

// Every precondition is checked before anything is attached: each bad
// start exits non-zero with a clear message and leaves eth0 without XDP.
func TestStartPreconditions(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.Options{RealServers: 1})
	dir := t.TempDir()
	rules := writeRules(t, dir, drRules(env, "rr"))
	precious := filepath.Join(dir, "precious")
	os.WriteFile(precious, []byte("keep me"), 0o644)
	if out, err := env.Director.Command("ip", "tuntap", "add", "dev", "tun0", "mode", "tun").CombinedOutput(); err != nil {
		t.Fatalf("add tun0: %v %s", err, out)
	}
	env.Director.Command("ip", "link", "set", "tun0", "up").Run()
	sock := filepath.Join(dir, "xlb.sock")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no such interface", []string{"--iface", "eth9"}, "interface eth9 does not exist"},
		{"loopback", []string{"--iface", "lo"}, "interface lo is the loopback device"},
		{"not ethernet", []string{"--iface", "tun0"}, "interface tun0 is not an Ethernet device"},
		{"conns 0", []string{"--iface", "eth0", "--conns", "0"}, "--conns 0: must be positive"},
		{"conns negative", []string{"--iface", "eth0", "--conns", "-1"}, "--conns -1: must be positive"},
		{"conns 10^9", []string{"--iface", "eth0", "--conns", "1000000000"}, "--conns 1000000000: needs "},
		{"socket is a file", []string{"--iface", "eth0", "--socket", precious}, "exists and is not a socket"},
		{"bad group", []string{"--iface", "eth0", "--socket-group", "no-such-group-xlb"}, "socket group no-such-group-xlb"},
		{"bad offload", []string{"--iface", "eth0", "--offload", "maybe"}, `--offload "maybe": must be on or off`},
		{"max flows negative", []string{"--iface", "eth0", "--offload=on", "--max-flows", "-1"}, "--max-flows -1: must be 0-16777216"},
		{"bad xdp mode", []string{"--iface", "eth0", "--xdp-mode", "skb"}, `--xdp-mode "skb": must be auto, native or generic`},
	} {
		args := append([]string{"run", "--rules", rules, "--socket", sock}, tc.args...)
		out, err := env.Director.Run(context.Background(), 10*time.Second, xlbBin, args...)
		if err == nil || !strings.Contains(out, tc.want) || strings.Contains(out, "panic") {
			t.Errorf("%s: xlb run: %v\n%s\nwant an error with %q", tc.name, err, out, tc.want)
		}
		if xdpAttached(t, env) {
			t.Errorf("%s: XDP attached after a refused start", tc.name)
		}
		if _, err := os.Lstat(sock); !os.IsNotExist(err) {
			t.Errorf("%s: a refused start left its control socket (%v)", tc.name, err)
		}
		t.Logf("%s: %s", tc.name, strings.TrimSpace(out))
	}
	// Under RLIMIT_AS the limit, not the host's memory, is what counts.
	out, err := env.Director.Run(context.Background(), 10*time.Second, "prlimit", "--as=3000000000", "--",
		xlbBin, "run", "--iface", "eth0", "--rules", rules, "--socket", sock, "--conns", "20000000")
	if err == nil || !strings.Contains(out, "--conns 20000000: needs 3.1 GB for 1 queue") || !strings.Contains(out, "(RLIMIT_AS)") {
		t.Errorf("--conns 2e7 under a 3 GB RLIMIT_AS: %v\n%s", err, out)
	}
	if xdpAttached(t, env) {
		t.Error("XDP attached after a refused start under RLIMIT_AS")
	}
	if b, err := os.ReadFile(precious); err != nil || string(b) != "keep me" {
		t.Errorf("--socket at a regular file changed it: %q %v", b, err)
	}
}

// Bad input on the real daemon's control socket, while traffic flows:
// garbage, a 20 MiB request, silent clients and 200 concurrent clients
// are each answered or closed; the daemon lives, -S -n is unchanged and
// traffic is not disturbed.
func TestControlSocketAbuse(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	dir := t.TempDir()
	sock := filepath.Join(dir, "xlb.sock")
	d := startDaemon(t, env, writeRules(t, dir, drRules(env, "rr")), sock)
	before := d.mustSave(t)
	bg := startBackground(env)

	for i := 0; i < 3; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	start := time.Now()
	if _, err := d.ctl("-L", "-n"); err != nil || time.Since(start) > time.Second {
		t.Errorf("-L -n with 3 silent clients: %v after %v, want an answer in < 1s", err, time.Since(start))
	}
	for _, in := range [][]byte{
		[]byte("\x00\x01garbage\xff"),
		[]byte(`{"args":["-A","-t","198.18.0.200:80"],"stdin":` + strings.Repeat("[", 1000)),
		append([]byte(`{"args":["-R"],"stdin":"`), bytes.Repeat([]byte("-A -t 198.18.0.201:80 -s rr\\n"), 20<<20/30)...),
	} {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go c.Write(in)
		var r response
		if err := json.NewDecoder(c).Decode(&r); err != nil || r.Code == 0 {
			t.Errorf("%.20q...: answer %+v, %v; want an error answer", in, r, err)
		}
		c.Close()
	}
	var wg sync.WaitGroup
	var answered, refused atomic.Int64
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := call(sock, request{Args: []string{"-L", "-n"}})
			switch {
			case err == nil && resp.Code == 0:
				answered.Add(1)
			case err == nil && strings.Contains(resp.Stderr, "too many control clients"):
				refused.Add(1)
			default:
				t.Errorf("concurrent client %d: %+v, %v", i, resp, err)
			}
		}()
	}
	wg.Wait()
	t.Logf("200 concurrent clients: %d answered, %d told to retry", answered.Load(), refused.Load())
	ok, failed := bg.end()
	if failed != 0 || ok == 0 {
		t.Errorf("traffic during the abuse: %d ok, %d failed", ok, failed)
	}
	if d.Exited() {
		t.Fatalf("xlb died: %v\n%s", d.Err(), d.Output.String())
	}
	if after := d.mustSave(t); after != before {
		t.Errorf("-S -n changed:\n%s\nwant:\n%s", after, before)
	}
	requireTraffic(t, env, d.Output.String)
}
