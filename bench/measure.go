//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/testenv"
)

// sample is one measurement of one dataplane: values by row key (see
// rows), and a line of details for the log.
type sample struct {
	values map[string]float64
	detail string
}

// check proves that a freshly started dataplane forwards before it is
// measured: UDP queries from new sockets and one HTTP request through
// the VIP must be answered by real servers.
func (b *bench) check(ctx context.Context, dp dataplane) error {
	if _, ok := dp.(*sinkDP); ok {
		return nil // forwards nothing by design
	}
	names := map[string]bool{}
	for _, h := range b.env.Reals {
		names[h.Name] = true
	}
	for i := 0; i < 6 && ctx.Err() == nil; i++ {
		got, err := b.env.Client.QueryUDP(netip.AddrPortFrom(testenv.VIP, portEcho), 3*time.Second)
		if err != nil {
			return fmt.Errorf("udp query through the vip: %w", err)
		}
		if !names[got] {
			return fmt.Errorf("udp query through the vip answered %q, not a real server", got)
		}
	}
	got, err := testenv.Get(b.env.Client.HTTPClient(false, 3*time.Second), fmt.Sprintf("http://%v/", testenv.VIP))
	if err != nil {
		return fmt.Errorf("http request through the vip: %w", err)
	}
	if !names[got] {
		return fmt.Errorf("http request through the vip answered %q, not a real server", got)
	}
	return ctx.Err()
}

// counters are the interface counters the packet-rate test reads.
type counters struct {
	at          time.Time
	clientTx    uint64 // frames the client's veth handed to the bridge side
	directorRx  uint64 // frames that reached the director's eth0
	directorTx  uint64 // frames the director sent out of eth0
	realsRx     uint64 // frames that reached the real servers' eth0, summed
	realsEach   []uint64
	clientTxDrp uint64
}

func linkStats(h *testenv.Host) (st netlink.LinkStatistics, err error) {
	err = h.Do(func() error {
		l, err := netlink.LinkByName(h.Ifname)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", h.Ifname, h.NSName, err)
		}
		if l.Attrs().Statistics == nil {
			return fmt.Errorf("no statistics for %s in %s", h.Ifname, h.NSName)
		}
		st = *l.Attrs().Statistics
		return nil
	})
	return st, err
}

// readCounters reads every host's eth0 counters over netlink (sysfs
// shows the namespace it was mounted in, not the thread's). A veth's
// rx_packets counts frames its peer delivered into this side's receive
// queue, before any hook of this host runs.
func readCounters(env *testenv.Env) (c counters, err error) {
	c.at = time.Now()
	st, err := linkStats(env.Client)
	if err != nil {
		return c, err
	}
	c.clientTx, c.clientTxDrp = st.TxPackets, st.TxDropped
	if st, err = linkStats(env.Director); err != nil {
		return c, err
	}
	c.directorRx, c.directorTx = st.RxPackets, st.TxPackets
	for _, h := range env.Reals {
		if st, err = linkStats(h); err != nil {
			return c, err
		}
		c.realsRx += st.RxPackets
		c.realsEach = append(c.realsEach, st.RxPackets)
	}
	return c, nil
}

// processCPU returns the user+system time the process pid has used
// (all its threads), from /proc/pid/stat; 0 for pid 0. Softirq work done
// on the process's behalf in other contexts (the XDP program, the copy
// into the UMEM) is not in it.
func processCPU(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14, stime 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	// USER_HZ is 100 on every Linux architecture Go supports.
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// wrk's summary lines.
var (
	wrkRate   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkErrors = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// connRate runs wrk against the VIP's HTTP service, every request on a
// new connection (Connection: close; the real server closes first, so
// TIME_WAIT stays on the servers and the client's ports are reusable).
// With keepAlive the connections stay open: requests per second.
func (b *bench) connRate(ctx context.Context, keepAlive bool) (sample, error) {
	d := b.o.httpTime
	args := []string{"-t1", fmt.Sprintf("-c%d", b.o.conns), fmt.Sprintf("-d%ds", int(d.Seconds())), "--timeout", "2s"}
	if !keepAlive {
		args = append(args, "-H", "Connection: close")
	}
	out, err := b.env.Client.Run(ctx, d+10*time.Second, "wrk", append(args, fmt.Sprintf("http://%v/", testenv.VIP))...)
	if err != nil {
		return sample{}, err
	}
	m := wrkRate.FindStringSubmatch(out)
	if m == nil {
		return sample{}, fmt.Errorf("no Requests/sec in wrk's output:\n%s", out)
	}
	rate, _ := strconv.ParseFloat(m[1], 64)
	errs := 0
	if e := wrkErrors.FindStringSubmatch(out); e != nil {
		for _, f := range e[1:] {
			n, _ := strconv.Atoi(f)
			errs += n
		}
	}
	if e := wrkNon2xx.FindStringSubmatch(out); e != nil {
		n, _ := strconv.Atoi(e[1])
		errs += n
	}
	return sample{
		values: map[string]float64{"conn_rate": rate, "conn_errors": float64(errs)},
		detail: fmt.Sprintf("%.0f connections/s, %d errors", rate, errs),
	}, nil
}

// minGbps is the least an iperf3 run must move for the bench to count
// the configuration as forwarding TCP: every configuration moves more
// than a Gbit/s here.
const minGbps = 0.01

// throughput runs iperf3 TCP streams from the client to the VIP's
// port 5201, served by the first real server only.
func (b *bench) throughput(ctx context.Context, streams int) (sample, error) {
	return b.throughputFor(ctx, streams, b.o.iperfTime)
}

// throughputFor is throughput for d (whole seconds).
func (b *bench) throughputFor(ctx context.Context, streams int, d time.Duration) (sample, error) {
	out, err := b.env.Client.Run(ctx, d+15*time.Second, "iperf3", "-c", testenv.VIP.String(),
		"-p", strconv.Itoa(portIperf), "-t", strconv.Itoa(int(d.Seconds())), "-P", strconv.Itoa(streams),
		"-J", "--connect-timeout", "3000")
	if err != nil {
		return sample{}, err
	}
	var res struct {
		End struct {
			SumSent struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return sample{}, fmt.Errorf("parse iperf3 -J output: %w\n%s", err, out)
	}
	if res.Error != "" {
		return sample{}, fmt.Errorf("iperf3: %s", res.Error)
	}
	g := res.End.SumReceived.BitsPerSecond / 1e9
	return sample{values: map[string]float64{"gbps": g}, detail: fmt.Sprintf("%.2f Gbit/s received", g)}, nil
}

// throughputTSO is throughput with one stream for half of -iperf-time (at
// least a second: make bench stays under 15 minutes) and the client's TX
// checksum offload, TSO and GSO on for the run, off again after it.
func (b *bench) throughputTSO(ctx context.Context) (sample, error) {
	c := b.env.Client
	if err := c.Ethtool("-K", c.Ifname, "tx", "on", "tso", "on", "gso", "on"); err != nil {
		return sample{}, err
	}
	s, err := b.throughputFor(ctx, 1, max(time.Second, b.o.iperfTime/2))
	if oerr := c.Ethtool("-K", c.Ifname, "tx", "off"); oerr != nil && err == nil {
		err = oerr
	}
	return s, err
}

// roundTrip sends UDP requests one at a time on one flow to the VIP's
// echo service and times each answer (in DR and TUN the answer returns
// directly from the real server, so only the request crosses the
// dataplane). A probe not answered within timeout is lost and counts as
// an infinite round trip in the percentiles, so a p99 over more than
// 1% lost probes is +Inf. It stops after 15 s.
func (b *bench) roundTrip(ctx context.Context, timeout time.Duration) (sample, error) {
	c, err := b.env.Client.UDPConn(netip.AddrPortFrom(testenv.VIP, portEcho))
	if err != nil {
		return sample{}, err
	}
	defer c.Close()
	buf := make([]byte, 64)
	const warm = 100
	var rtts []time.Duration
	lost := 0
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; i < warm+b.o.pings && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		t0 := time.Now()
		if _, err := c.Write([]byte("who")); err != nil {
			return sample{}, fmt.Errorf("send udp probe: %w", err)
		}
		c.SetReadDeadline(t0.Add(timeout))
		_, err := c.Read(buf)
		if i < warm {
			continue
		}
		if err != nil {
			lost++
			continue
		}
		rtts = append(rtts, time.Since(t0))
	}
	n := len(rtts) + lost
	if n == 0 {
		return sample{}, errors.New("udp round trips: no probe sent")
	}
	slices.Sort(rtts)
	q := func(p float64) float64 {
		i := int(p * float64(n-1))
		if i >= len(rtts) {
			return math.Inf(1)
		}
		return float64(rtts[i].Nanoseconds()) / 1e3
	}
	lostPct := 100 * float64(lost) / float64(n)
	s := sample{values: map[string]float64{"rtt_p50": q(0.50), "rtt_p99": q(0.99), "rtt_p999": q(0.999), "rtt_lost": lostPct}}
	s.detail = fmt.Sprintf("%d probes, %d lost (%.2f%%), p50 %.1f µs, p99 %.1f µs, p99.9 %.1f µs", n, lost, lostPct, q(0.5), q(0.99), q(0.999))
	return s, nil
}
