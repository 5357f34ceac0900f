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
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// Flood test sizes: a small table and a SYN flood of at least ten times as
// many distinct flows (trafgen, in a namespace of its own on the bridge,
// as fast as one CPU sends, for floodFor)
// from 256 spoofed /24 prefixes of 198.19.0.0/16: the half of RFC 2544's
// 198.18.0.0/15 that the topology does not use, so the real servers have
// no route back and drop the SYNs quietly, as a server drops SYNs from an
// unreachable spoofed source.
const (
	floodConns = 2000
	floodFlows = 10 * floodConns
	floodFor   = 5 * time.Second
)

// A SYN flood of ten times the connection table: established keep-alive
// connections keep being served without a stall, new connections from a
// legitimate client keep succeeding, the XDP program drops the flood's
// SYNs (not the legitimate frames) once the worker is under pressure, and
// afterwards the daemon is alive, bounded in memory, configured as before
// and serves 300 TCP and 300 UDP requests without a failure.
//
// The stall bound also measures CPU scheduling: the flood generator runs
// on the same 2-core VM as the director, its worker and the clients, and
// a run where every keep-alive connection paused at the same instant, with
// no frame lost anywhere, has been seen under load. So a run that fails
// only that bound is made once more, in a new topology; every other
// assertion must hold in every run, and the stall bound in the second.
func TestSYNFlood(t *testing.T) {
	testenv.RequireRoot(t)
	for attempt := 1; attempt <= 2; attempt++ {
		var stall string
		if !t.Run(fmt.Sprintf("run%d", attempt), func(t *testing.T) { stall = synFlood(t) }) || stall == "" {
			return
		}
		if attempt == 2 {
			t.Error(stall)
			return
		}
		t.Logf("run %d: %s; once more", attempt, stall)
	}
}

// synFlood is one run of TestSYNFlood. It fails t for every assertion
// but the stall bound, which it returns broken ("" if kept).
func synFlood(t *testing.T) (stall string) {
	env := testenv.New(t, testenv.DefaultOptions())
	d := startXLB(t, env, drRules(env, "rr"), "--conns", strconv.Itoa(floodConns))
	url := fmt.Sprintf("http://%v/", testenv.VIP)
	before, err := d.ctl("-S", "-n")
	if err != nil {
		t.Fatal(err)
	}
	trafgen, err := exec.LookPath("trafgen")
	if err != nil {
		t.Fatalf("trafgen (netsniff-ng) is needed to flood: %v", err)
	}
	flooder := newFlooder(t, env)
	conf := filepath.Join(t.TempDir(), "syn.cfg")
	if err := os.WriteFile(conf, []byte(synFloodConf(env, flooder.MAC)), 0o644); err != nil {
		t.Fatal(err)
	}
	rss0 := vmRSS(t, d.Cmd.Process.Pid)

	// Established connections: each requests back to back and records the
	// longest gap between two answers.
	const keepers = 4
	var (
		stop atomic.Bool
		wg   sync.WaitGroup
		// The flood's start and end in ns since t0 (0: not yet). A gap
		// between two answers counts as the flood's if it overlaps the
		// flood, as calm if it ends before.
		t0, floodStart, floodEnd = time.Now(), atomic.Int64{}, atomic.Int64{}
		gaps                     [keepers]time.Duration // during the flood
		gapAt                    [keepers]time.Duration // when the longest began, from the flood's start
		calmGaps                 [keepers]time.Duration // before it: what this machine's scheduling alone costs
		kreqs                    [keepers]int
		kerrs                    [keepers]error
		newOK                    int
		newFail                  int
		newSlow                  int // succeeded, but only after a SYN retransmission (> 900 ms)
	)
	for i := range keepers {
		// One TCP connection each, never redialled: a gap is the network's.
		c, err := env.Client.DialContext(context.Background(), "tcp4", netip.AddrPortFrom(testenv.VIP, 80).String())
		if err != nil {
			t.Fatalf("keep-alive connection %d: %v", i, err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := time.Now()
			for !stop.Load() {
				if err := keepAliveGet(c, r); err != nil {
					kerrs[i] = err
					return
				}
				now := time.Now()
				fs, fe := floodStart.Load(), floodEnd.Load()
				switch {
				case fs == 0 || now.Sub(t0) < time.Duration(fs):
					calmGaps[i] = max(calmGaps[i], now.Sub(last))
				case fe == 0 || last.Sub(t0) < time.Duration(fe):
					if now.Sub(last) > gaps[i] {
						gaps[i] = now.Sub(last)
						gapAt[i] = last.Sub(t0) - time.Duration(fs)
					}
				}
				kreqs[i]++
				last = now
				time.Sleep(keepAlivePace)
			}
		}()
	}
	t.Cleanup(func() { stop.Store(true); wg.Wait() }) // also when the test fails early
	// A legitimate client opens new connections one after another.
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := env.Client.HTTPClient(false, 3*time.Second)
		for !stop.Load() {
			start := time.Now()
			if _, err := testenv.Get(c, url); err != nil {
				newFail++
			} else {
				newOK++
				if time.Since(start) > 900*time.Millisecond {
					newSlow++
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	time.Sleep(time.Second) // the legitimate traffic runs before the flood
	stats0 := floodStats(t, d)
	vethDrops0 := linkStat(t, env.Bridge, env.Director.Peer, "tx_dropped")
	ext0, _ := env.Client.Command("cat", "/proc/net/netstat").Output()
	floodStart.Store(int64(time.Since(t0)))
	trafgenOut, floodErr := floodSYN(flooder, trafgen, conf, floodFor)
	floodEnd.Store(int64(time.Since(t0)))
	stats1 := floodStats(t, d)
	vethDrops := linkStat(t, env.Bridge, env.Director.Peer, "tx_dropped") - vethDrops0
	ext1, _ := env.Client.Command("cat", "/proc/net/netstat").Output()
	time.Sleep(200 * time.Millisecond) // and after it
	stop.Store(true)
	wg.Wait()
	if floodErr != nil {
		t.Fatal(floodErr)
	}
	rss1 := vmRSS(t, d.Cmd.Process.Pid)
	if d.Exited() {
		t.Fatalf("xlb died during the flood: %v\n%s", d.Err(), d.Output.String())
	}

	delta := func(k string) uint64 { return stats1[k] - stats0[k] }
	// Every frame to the service the XDP program saw: the flood's and the
	// few thousand legitimate ones.
	seen := delta("redirect") + delta("drop_syn_rate") + delta("drop_syn_pressure")
	guarded := delta("drop_syn_rate") + delta("drop_syn_pressure")
	lost := delta("rx_ring_full") + delta("fill_ring_empty") // by the kernel, before the worker
	maxGap, calmGap, reqs := time.Duration(0), time.Duration(0), 0
	for i := range keepers {
		maxGap = max(maxGap, gaps[i])
		calmGap = max(calmGap, calmGaps[i])
		reqs += kreqs[i]
		if kerrs[i] != nil {
			t.Errorf("keep-alive connection %d failed during the flood: %v", i, kerrs[i])
		}
	}
	attempts := newOK + newFail
	pct := func(a, b uint64) float64 { return 100 * float64(a) / float64(max(b, 1)) }
	sent, runs := trafgenSent(trafgenOut)
	t.Logf("flood: %d frames to the service in %v (%.0f/s), table %d; trafgen sent %d in %d runs", seen, floodFor,
		float64(seen)/floodFor.Seconds(), floodConns, sent, runs)
	t.Logf("xdp: dropped %d SYNs (%.1f%%: drop_syn_rate %d, drop_syn_pressure %d), redirected %d; worker: %d level raises, level now %d",
		guarded, pct(guarded, seen), delta("drop_syn_rate"), delta("drop_syn_pressure"), delta("redirect"),
		delta("syn_guard_raises"), stats1["syn_guard_level"])
	t.Logf("lost before the worker: %d (%.2f%%: rx_ring_full %d, fill_ring_empty %d); worker rx %d, conn_new %d, kick_errors %d",
		lost, pct(lost, seen), delta("rx_ring_full"), delta("fill_ring_empty"), delta("rx_frames"), delta("conn_new"), delta("kick_errors"))
	t.Logf("lost before XDP (the director veth's queue, like a NIC's RX ring): %d", vethDrops)
	t.Logf("established: %d requests on %d connections, max gap %v (%v before the flood); client TCP: %s",
		reqs, keepers, maxGap, calmGap, netstatDelta(ext0, ext1, "TCPTimeouts", "TCPDSACKRecv", "TCPLossUndo", "TCPLostRetransmit"))
	t.Logf("longest gaps began at %v after the flood started", gapAt)
	t.Logf("new connections: %d of %d succeeded (%.1f%%), %d after a SYN retransmission",
		newOK, attempts, pct(uint64(newOK), uint64(attempts)), newSlow)
	t.Logf("RSS %d kB before, %d kB after", rss0, rss1)

	if seen < floodFlows {
		t.Errorf("the flood brought %d frames, fewer than the %d flows wanted: not a flood", seen, floodFlows)
	}
	if float64(lost) > floodMaxLost*float64(seen) {
		t.Errorf("the kernel dropped %d frames (%.2f%%) before the worker, want at most %.0f%%: the flood reached the rings",
			lost, pct(lost, seen), 100*floodMaxLost)
	}
	if float64(guarded) < 0.5*float64(seen) {
		t.Errorf("the XDP program dropped %d of %d frames to the service, want at least half: the flood reached the worker", guarded, seen)
	}
	if maxGap > calmGap+floodMaxStall {
		stall = fmt.Sprintf("an established connection stalled for %v during the flood, want at most %v more than the %v before it",
			maxGap, floodMaxStall, calmGap)
	}
	if attempts == 0 || float64(newOK) < floodMinNewOK*float64(attempts) {
		t.Errorf("new connections during the flood: %d of %d succeeded, want at least %.0f%%", newOK, attempts, 100*floodMinNewOK)
	}
	if rss1 > rss0+64<<10 {
		t.Errorf("RSS grew from %d kB to %d kB during the flood: not bounded", rss0, rss1)
	}
	if after, err := d.ctl("-S", "-n"); err != nil || after != before {
		t.Errorf("-S -n changed by the flood (err %v):\nbefore:\n%s\nafter:\n%s", err, before, after)
	}

	// Recovery: fresh TCP connections and UDP flows all succeed.
	fresh := env.Client.HTTPClient(false, 5*time.Second)
	for i := 0; i < 300; i++ {
		if _, err := testenv.Get(fresh, url); err != nil {
			t.Fatalf("after the flood, TCP request %d: %v", i, err)
		}
	}
	vip53 := netip.AddrPortFrom(testenv.VIP, 53)
	for i := 0; i < 300; i++ {
		if _, err := env.Client.QueryUDP(vip53, 3*time.Second); err != nil {
			t.Fatalf("after the flood, UDP query %d: %v", i, err)
		}
	}
	return stall
}

// keepAlivePace spaces the requests on each established connection: the
// gap between two answers is the pace plus the request's latency, and the
// connections do not take the CPU the flood and the daemon need.
const keepAlivePace = 5 * time.Millisecond

// Bounds asserted during the flood; see TestSYNFlood's log for the
// figures measured on the 2-core VM (shared, load 4-12). With the SYN
// guard off, floods of 206k and 438k frames/s lost 8% and 17% of the
// frames at the AF_XDP rings, the established connections' too (23 RTOs,
// no DSACK), which stalled for 1.5 and 1.8 s and served a third of the
// requests. With it, at 330k-580k frames/s, none was lost there.
const (
	// floodMaxLost: frames the kernel may drop before the worker
	// (measured: 0).
	floodMaxLost = 0.01
	// floodMinNewOK: the share of new connections that must succeed
	// (3 s timeout; measured 100%, 96% without the guard).
	floodMinNewOK = 0.9
	// floodMaxStall bounds how much longer the longest wait between two
	// answers on an established connection may be during the flood than
	// before it, when it is the machine's own scheduling (12-32 ms here,
	// 370 ms once at load 15). Less than TCP's minimum retransmission
	// timeout (200 ms): no segment of these connections may have been
	// lost. Measured: 14-31 ms in all, 0 retransmission timeouts.
	floodMaxStall = 200 * time.Millisecond
)

// keepAliveGet sends one HTTP/1.1 request on c and reads the answer.
func keepAliveGet(c net.Conn, r *bufio.Reader) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %s", resp.Status)
	}
	return err
}

// floodStats reads the daemon's counters (xlb --xlb-stats) by name: the
// XDP reasons, the workers' counters and the AF_XDP socket statistics.
func floodStats(t *testing.T, d *xlbProc) map[string]uint64 {
	t.Helper()
	out, err := d.ctl("--xlb-stats")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(strings.ReplaceAll(l, ",", ""))
		for i := 0; i+1 < len(f); i += 2 {
			if n, err := strconv.ParseUint(f[i+1], 10, 64); err == nil {
				m[f[i]] = n
			}
		}
	}
	return m
}

// linkStat reads a counter of a link in h's namespace from sysfs.
func linkStat(t *testing.T, h *testenv.Host, link, name string) uint64 {
	t.Helper()
	out, err := h.Command("cat", "/sys/class/net/"+link+"/statistics/"+name).Output()
	if err != nil {
		t.Fatalf("read %s of %s in %s: %v", name, link, h.Name, err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("parse %s of %s: %v", name, link, err)
	}
	return n
}

// vmRSS returns the resident set of a process in kB.
func vmRSS(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("parse VmRSS %q: %v", l, err)
			}
			return n
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// newFlooder adds a host with no address to env's bridge, for a flood
// that shares no link with the legitimate client (whose veth the flood
// would otherwise stop: its TX queue fills). It is removed in t.Cleanup.
func newFlooder(t *testing.T, env *testenv.Env) *testenv.Host {
	t.Helper()
	h := &testenv.Host{Name: "flood", NSName: env.Name + "-fl", Ifname: "eth0",
		MAC: net.HardwareAddr{0x02, 0x18, 0, 0, 0, 0xfe}, Peer: "v-fl"}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	exec.Command("ip", "netns", "del", h.NSName).Run() // left by a crashed run
	run("netns", "add", h.NSName)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", h.NSName).Run() })
	run("link", "add", "eth0", "netns", h.NSName, "address", h.MAC.String(), "numtxqueues", "1", "numrxqueues", "1",
		"type", "veth", "peer", "name", h.Peer, "netns", env.Bridge.NSName)
	run("-n", env.Bridge.NSName, "link", "set", h.Peer, "master", "br0", "up")
	run("-n", h.NSName, "link", "set", "eth0", "up")
	return h
}

// synFloodConf is a trafgen configuration: TCP SYNs from MAC src to the
// VIP's port 80, from random addresses in 198.19.0.0/16 and
// random ports (2^32 flows: any number sent is that many distinct flows,
// give or take the birthday bound), with valid checksums.
func synFloodConf(env *testenv.Env, src net.HardwareAddr) string {
	mac := func(m net.HardwareAddr) string {
		var b []string
		for _, x := range m {
			b = append(b, fmt.Sprintf("0x%02x", x))
		}
		return strings.Join(b, ", ")
	}
	vip := testenv.VIP.As4()
	return fmt.Sprintf(`{
  %s, %s, c16(0x0800),
  0x45, 0x00, c16(40), drnd(2), c16(0), 64, 6, csumip(14, 33),
  198, 19, drnd(2), %d, %d, %d, %d,
  drnd(2), c16(80), drnd(4), c32(0), 0x50, 0x02, c16(64240), csumtcp(14, 34), c16(0)
}
`, mac(env.Director.MAC), mac(src), vip[0], vip[1], vip[2], vip[3])
}

// floodSYN runs trafgen with conf on h's eth0 for d, on one CPU, at the
// lowest priority (its frames' softirq work runs on its time, as a NIC's
// would on the director's other cores) and leaving the host's socket
// memory and IRQ affinity alone. It returns trafgen's output. trafgen
// gives up when the veth pushes back (EAGAIN on its TX ring); it is then
// started again, at most 100 times.
func floodSYN(h *testenv.Host, trafgen, conf string, d time.Duration) (string, error) {
	end := time.Now().Add(d)
	var out strings.Builder
	for range 100 {
		p, err := h.Start("nice", "-n", "19", trafgen, "--dev", h.Ifname, "--conf", conf, "--cpus", "1",
			"--num", "20000000", "--no-sock-mem", "--notouch-irq")
		if err != nil {
			return out.String(), err
		}
		for time.Now().Before(end) && !p.Exited() {
			time.Sleep(10 * time.Millisecond)
		}
		p.Stop(syscall.SIGINT, 5*time.Second)
		out.WriteString(p.Output.String())
		if !time.Now().Before(end) {
			return out.String(), nil
		}
		if !strings.Contains(p.Output.String(), "Resource temporarily unavailable") {
			return out.String(), fmt.Errorf("trafgen exited early: %v\n%s", p.Err(), p.Output.String())
		}
	}
	return out.String(), fmt.Errorf("trafgen gave up 100 times:\n%s", out.String())
}

// netstatDelta returns how much the named TcpExt counters of
// /proc/net/netstat moved between a and b, as "Name=delta ...".
func netstatDelta(a, b []byte, names ...string) string {
	parse := func(x []byte) map[string]int64 {
		m := map[string]int64{}
		ls := strings.Split(string(x), "\n")
		for i := 0; i+1 < len(ls); i += 2 {
			k, v := strings.Fields(ls[i]), strings.Fields(ls[i+1])
			if len(k) == 0 || k[0] != "TcpExt:" {
				continue
			}
			for j := 1; j < len(k) && j < len(v); j++ {
				n, _ := strconv.ParseInt(v[j], 10, 64)
				m[k[j]] = n
			}
		}
		return m
	}
	ma, mb := parse(a), parse(b)
	var out []string
	for _, n := range names {
		out = append(out, fmt.Sprintf("%s=%d", n, mb[n]-ma[n]))
	}
	return strings.Join(out, " ")
}

// trafgenSent sums the frames trafgen's runs say they sent, and counts
// the runs.
func trafgenSent(out string) (sent uint64, runs int) {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[1] == "packets" && f[2] == "outgoing" {
			n, _ := strconv.ParseUint(f[0], 10, 64)
			sent += n
			runs++
		}
	}
	return sent, runs
}
