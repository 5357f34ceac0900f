//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/testenv"
)

// xlbBin is the xlb binary the end-to-end tests run, built by TestMain.
var xlbBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xlb-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	xlbBin = filepath.Join(dir, "xlb")
	if out, err := exec.Command("go", "build", "-o", xlbBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build xlb: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// xlbProc is an `xlb run` process in a topology's director namespace.
// Its Stdout has the counters it prints on exit; Output has its logs too.
type xlbProc struct {
	*testenv.Proc
	sock string
}

// startXLB runs xlb with rules (and extra arguments to `xlb run`, which
// may override --conns) on the director's eth0 and waits until it answers
// on its control socket. It is stopped in t.Cleanup.
func startXLB(t *testing.T, env *testenv.Env, rules string, extra ...string) *xlbProc {
	t.Helper()
	return startXLBOn(t, env.Director, []string{"eth0"}, rules, extra...)
}

// startXLBOn is startXLB on host, serving every interface in ifaces
// (--iface once each).
func startXLBOn(t *testing.T, host *testenv.Host, ifaces []string, rules string, extra ...string) *xlbProc {
	t.Helper()
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules")
	if err := os.WriteFile(rulesFile, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "xlb.sock")
	args := []string{"run"}
	for _, i := range ifaces {
		args = append(args, "--iface", i)
	}
	args = append(args, "--rules", rulesFile, "--socket", sock, "--conns", "65536")
	p, err := host.Start(xlbBin, append(args, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	d := &xlbProc{Proc: p, sock: sock}
	t.Cleanup(func() { d.stop() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := d.ctl("-L", "-n"); err == nil {
			return d
		}
		if time.Now().After(deadline) || d.Exited() {
			d.stop()
			t.Fatalf("xlb did not come up: %v\nlogs:\n%s", d.Err(), d.Output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ctl runs an ipvsadm command against the daemon.
func (d *xlbProc) ctl(args ...string) (string, error) {
	out, err := exec.Command(xlbBin, append([]string{"--socket", d.sock}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("xlb %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// stop sends SIGTERM and waits for a clean exit.
func (d *xlbProc) stop() error { return d.Stop(syscall.SIGTERM, 10*time.Second) }

func drRules(env *testenv.Env, sched string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "-A -t %v:80 -s %s\n", testenv.VIP, sched)
	for i := range env.Reals {
		fmt.Fprintf(&b, "-a -t %v:80 -r %v:80 -g -w 1\n", testenv.VIP, testenv.RealAddr(i))
	}
	fmt.Fprintf(&b, "-A -u %v:53 -s %s\n", testenv.VIP, sched)
	for i := range env.Reals {
		fmt.Fprintf(&b, "-a -u %v:53 -r %v:53 -g -w 1\n", testenv.VIP, testenv.RealAddr(i))
	}
	return b.String()
}

// The foundation's promise: in DR mode with rr, 300 new TCP connections
// and 300 new UDP flows through the VIP all succeed and split 100/100/100;
// a connection or flow that carries several requests stays on one server.
func TestDRRoundRobin(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	d := startXLB(t, env, drRules(env, "rr"))

	url := fmt.Sprintf("http://%v/", testenv.VIP)
	fresh := env.Client.HTTPClient(false, 5*time.Second)
	tcp := map[string]int{}
	for i := 0; i < 300; i++ {
		name, err := testenv.Get(fresh, url)
		if err != nil {
			t.Fatalf("request %d: %v\nxlb logs:\n%s", i, err, d.Output.String())
		}
		tcp[name]++
	}
	for _, rs := range env.Reals {
		if tcp[rs.Name] != 100 {
			t.Errorf("TCP connections per real server = %v, want 100 each", tcp)
			break
		}
	}

	keep := env.Client.HTTPClient(true, 5*time.Second)
	first := ""
	defer keep.CloseIdleConnections()
	for i := 0; i < 20; i++ {
		name, err := testenv.Get(keep, url)
		if err != nil {
			t.Fatalf("keep-alive request %d: %v", i, err)
		}
		if first == "" {
			first = name
		} else if name != first {
			t.Fatalf("keep-alive request %d went to %s, earlier ones to %s", i, name, first)
		}
	}

	keepName := first
	vip53 := netip.AddrPortFrom(testenv.VIP, 53)
	udp := map[string]int{}
	for i := 0; i < 300; i++ {
		name, err := env.Client.QueryUDP(vip53, 3*time.Second)
		if err != nil {
			t.Fatalf("UDP query %d: %v", i, err)
		}
		udp[name]++
	}
	for _, rs := range env.Reals {
		if udp[rs.Name] != 100 {
			t.Errorf("UDP flows per real server = %v, want 100 each", udp)
			break
		}
	}
	c, err := env.Client.UDPConn(vip53)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first = ""
	for i := 0; i < 20; i++ {
		name, err := testenv.ExchangeUDP(c, 3*time.Second)
		if err != nil {
			t.Fatalf("UDP query %d on one flow: %v", i, err)
		}
		if first == "" {
			first = name
		} else if name != first {
			t.Fatalf("UDP query %d on one flow went to %s, earlier ones to %s", i, name, first)
		}
	}

	list, err := d.ctl("-L", "-n")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list, fmt.Sprintf("TCP  %v:80 rr", testenv.VIP)) {
		t.Errorf("xlb -L -n lacks the TCP service:\n%s", list)
	}
	// Connection entries: every flow is listed with its IPVS state.
	conns, err := d.ctl("-L", "-n", "-c")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(conns), "\n")
	if len(lines) < 2+600 || lines[0] != "IPVS connection entries" {
		t.Errorf("-L -n -c listed %d lines, want the header and 600+ entries:\n%.600s", len(lines), conns)
	}
	for _, want := range []string{"UDP ", fmt.Sprintf("%v:53", testenv.VIP), fmt.Sprintf("%v:80", testenv.RealAddr(0))} {
		if !strings.Contains(conns, want) {
			t.Errorf("-L -n -c lacks %q:\n%.600s", want, conns)
		}
	}

	// Statistics: the connections each real server got (300 new ones and
	// the keep-alive one); -Z clears them.
	tcp[keepName]++
	stats, err := d.ctl("-L", "-n", "--stats", "-t", fmt.Sprintf("%v:80", testenv.VIP))
	if err != nil {
		t.Fatal(err)
	}
	for i, rs := range env.Reals {
		if c, want := statsConns(stats, fmt.Sprintf("%v:80", testenv.RealAddr(i))), fmt.Sprint(tcp[rs.Name]); c != want {
			t.Errorf("--stats Conns of %v = %q, want %s:\n%s", testenv.RealAddr(i), c, want, stats)
		}
	}
	if c := statsConns(stats, fmt.Sprintf("TCP  %v:80", testenv.VIP)); c != "301" {
		t.Errorf("--stats Conns of the service = %q, want 301:\n%s", c, stats)
	}
	if _, err := d.ctl("-Z"); err != nil {
		t.Fatal(err)
	}
	stats, _ = d.ctl("-L", "-n", "--stats")
	if c := statsConns(stats, fmt.Sprintf("%v:80", testenv.RealAddr(0))); c != "0" {
		t.Errorf("after -Z, Conns = %q, want 0:\n%s", c, stats)
	}
	if err := d.stop(); err != nil {
		t.Fatalf("xlb exit: %v\n%s", err, d.Output.String())
	}
	t.Logf("xlb counters:\n%s", d.Stdout.String())
	if !strings.Contains(d.Stdout.String(), "conn_new") {
		t.Errorf("xlb printed no counters on exit:\n%s", d.Stdout.String())
	}
	// A clean exit detaches XDP from the interface.
	out, err := env.Director.Command("ip", "link", "show", "dev", "eth0").CombinedOutput()
	if err != nil || strings.Contains(string(out), "xdp") {
		t.Errorf("after xlb stopped, eth0 still has XDP (err %v):\n%s", err, out)
	}
}

// statsConns returns the Conns column of the --stats line that contains
// what.
func statsConns(list, what string) string {
	for _, l := range strings.Split(list, "\n") {
		if strings.Contains(l, what) {
			f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(l), "->"))
			if strings.HasPrefix(what, "TCP") || strings.HasPrefix(what, "UDP") {
				f = f[1:] // "TCP" "addr:port" ...
			}
			if len(f) > 1 {
				return f[1]
			}
		}
	}
	return ""
}

// While xlb runs, the director is still a host: it answers ping and ARP,
// and traffic to a VIP port that is not a virtual service reaches its own
// stack.
func TestDirectorStillAHost(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	startXLB(t, env, drRules(env, "rr"))

	for _, a := range []netip.Addr{testenv.DirectorAddr, testenv.VIP} {
		if out, err := env.Client.Command("ping", "-c2", "-i0.2", "-W2", a.String()).CombinedOutput(); err != nil {
			t.Errorf("ping %v: %v\n%s", a, err, out)
		}
	}
	// The client learnt the VIP's MAC from the director's ARP reply.
	out, err := env.Client.Command("ip", "neigh", "show", testenv.VIP.String()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), env.Director.MAC.String()) {
		t.Errorf("client's neighbour entry for the VIP = %q (%v), want the director's MAC %v", out, err, env.Director.MAC)
	}

	var ln net.Listener
	if err := env.Director.Do(func() (err error) {
		ln, err = net.Listen("tcp4", ":8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("director"))
			c.Close()
		}
	}()
	for _, a := range []netip.Addr{testenv.VIP, testenv.DirectorAddr} {
		c, err := env.Client.DialContext(context.Background(), "tcp4", netip.AddrPortFrom(a, 8080).String())
		if err != nil {
			t.Fatalf("connect to %v:8080 (not a service): %v", a, err)
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		b := make([]byte, 16)
		n, _ := c.Read(b)
		c.Close()
		if string(b[:n]) != "director" {
			t.Errorf("%v:8080 answered %q, want the director's own stack", a, b[:n])
		}
	}
}

// Malformed frames sent at the VIP are counted and dropped or passed;
// xlb keeps forwarding.
func TestMalformedFrames(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	d := startXLB(t, env, drRules(env, "rr"))

	frames := malformedFrames(t, env)
	if err := sendRaw(env.Client, frames, 10); err != nil {
		t.Fatal(err)
	}
	name, err := testenv.Get(env.Client.HTTPClient(false, 5*time.Second), fmt.Sprintf("http://%v/", testenv.VIP))
	if err != nil {
		t.Fatalf("after malformed frames: %v\n%s", err, d.Output.String())
	}
	t.Logf("served by %s after %d malformed frames", name, 10*len(frames))
	if err := d.stop(); err != nil {
		t.Fatalf("xlb exit: %v\n%s", err, d.Output.String())
	}
	if !strings.Contains(d.Stdout.String(), "malformed") {
		t.Errorf("no malformed-frame counter after sending malformed frames:\n%s", d.Stdout.String())
	}
	t.Logf("counters:\n%s", d.Stdout.String())
}

// malformedFrames builds frames from the client to the VIP's port 80 that
// no parser may trust.
func malformedFrames(t *testing.T, env *testenv.Env) [][]byte {
	t.Helper()
	// The VIP's MAC is the director's (it answers ARP for it).
	eth := layers.Ethernet{SrcMAC: env.Client.MAC, DstMAC: env.Director.MAC, EthernetType: layers.EthernetTypeIPv4}
	ip := layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: testenv.ClientAddr.AsSlice(), DstIP: testenv.VIP.AsSlice()}
	tcp := layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Window: 1000}
	tcp.SetNetworkLayerForChecksum(&ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, &eth, &ip, &tcp); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	var out [][]byte
	out = append(out, append([]byte(nil), good[:14+20+10]...)) // truncated TCP header
	badIHL := append([]byte(nil), good...)
	badIHL[14] = 0x43 // IHL 3
	out = append(out, badIHL)
	longLen := append([]byte(nil), good...)
	longLen[14+2], longLen[14+3] = 0x05, 0xdc // total length 1500 > frame
	out = append(out, longLen)
	return out
}

// sendRaw writes frames from h's eth0 through an AF_PACKET socket.
func sendRaw(h *testenv.Host, frames [][]byte, times int) error {
	return h.Do(func() error {
		ifc, err := net.InterfaceByName(h.Ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return fmt.Errorf("open packet socket: %w", err)
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Ifindex: ifc.Index, Halen: 6}
		for i := 0; i < times; i++ {
			for _, f := range frames {
				if err := unix.Sendto(fd, f, 0, sa); err != nil {
					return fmt.Errorf("send raw frame: %w", err)
				}
			}
		}
		return nil
	})
}

// A bad rules file names the line and the problem, and xlb does not start
// (nothing is attached).
func TestBadRulesDoNotStart(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.Options{RealServers: 1})
	rules := fmt.Sprintf("-A -t %v:80 -s rr\n-a -t %v:80 -r %v:80 -g -w 1\n-a -t %v:80 -r 198.18.0.12:80 -g -w 70000\n",
		testenv.VIP, testenv.VIP, testenv.RealAddr(0), testenv.VIP)
	f := filepath.Join(t.TempDir(), "rules")
	os.WriteFile(f, []byte(rules), 0o644)
	out, err := env.Director.Command(xlbBin, "run", "--iface", "eth0", "--rules", f, "--socket", filepath.Join(t.TempDir(), "s")).CombinedOutput()
	if err == nil {
		t.Fatalf("xlb run with a bad weight succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "line 3") {
		t.Errorf("error does not name line 3:\n%s", out)
	}
	link, _ := env.Director.Command("ip", "link", "show", "dev", "eth0").CombinedOutput()
	if strings.Contains(string(link), "xdp") {
		t.Errorf("xlb left XDP attached after refusing its rules:\n%s", link)
	}
}

// ipvsadm commands change the running daemon: weight 0 quiesces a real
// server (no new connections; the rest share them), -d removes one, -a
// brings it back; a bad command fails with ipvsadm's error and exit code
// and changes nothing.
func TestRuntimeCommands(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	d := startXLB(t, env, drRules(env, "rr"))
	vip := fmt.Sprintf("%v:80", testenv.VIP)
	rs := func(i int) string { return fmt.Sprintf("%v:80", testenv.RealAddr(i)) }
	count := func(n int) map[string]int {
		t.Helper()
		c := env.Client.HTTPClient(false, 5*time.Second)
		got := map[string]int{}
		for i := 0; i < n; i++ {
			name, err := testenv.Get(c, "http://"+vip+"/")
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			got[name]++
		}
		return got
	}

	if out, err := d.ctl("-e", "-t", vip, "-r", rs(2), "-g", "-w", "0"); err != nil {
		t.Fatalf("quiesce rs3: %v %s", err, out)
	}
	if got := count(60); got["rs3"] != 0 || got["rs1"] != 30 || got["rs2"] != 30 {
		t.Errorf("with rs3 at weight 0: %v, want rs1 30, rs2 30", got)
	}
	if out, err := d.ctl("-d", "-t", vip, "-r", rs(0)); err != nil {
		t.Fatalf("delete rs1: %v %s", err, out)
	}
	if got := count(20); got["rs2"] != 20 {
		t.Errorf("with rs1 deleted and rs3 quiesced: %v, want all 20 on rs2", got)
	}
	if out, err := d.ctl("-a", "-t", vip, "-r", rs(0), "-g", "-w", "1"); err != nil {
		t.Fatalf("add rs1 back: %v %s", err, out)
	}
	if got := count(20); got["rs1"] != 10 || got["rs2"] != 10 {
		t.Errorf("with rs1 back: %v, want rs1 10, rs2 10", got)
	}

	before, _ := d.ctl("-S", "-n")
	out, err := exec.Command(xlbBin, "--socket", d.sock, "-a", "-t", "198.18.0.200:80", "-r", rs(0)).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 255 || strings.TrimSpace(string(out)) != "Service not defined" {
		t.Errorf("adding a server to a missing service: exit %v, output %q; want exit 255, \"Service not defined\"", err, out)
	}
	out, err = exec.Command(xlbBin, "--socket", d.sock, "-a", "-t", vip, "-r", rs(1), "-w", "70000").CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("weight 70000: exit %v, output %q; want exit 2", err, out)
	}
	if after, _ := d.ctl("-S", "-n"); after != before {
		t.Errorf("refused commands changed the configuration:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	t.Logf("xlb -S -n:\n%s", before)
}
