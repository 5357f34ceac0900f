//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// floodDst is where every generated frame goes: the VIP's UDP port 9,
// which the real servers drop at ingress.
var floodDst = netip.AddrPortFrom(testenv.VIP, portPPS)

// gen sends count frames over flows at rate (0: as fast as possible)
// from the client to the director, bounded in time.
func (b *bench) gen(ctx context.Context, flows int, rate float64, count uint64, limit time.Duration) (genResult, error) {
	return b.generate(ctx, genSpec{
		flows: flows, rate: rate, count: count, threads: b.o.threads, limit: limit, dst: floodDst,
	})
}

// generate sends spec's traffic from the client to the director with
// the generator -gen chose.
func (b *bench) generate(ctx context.Context, spec genSpec) (genResult, error) {
	if b.o.gen == "xdp" {
		return generateXDP(ctx, b.env.Client, b.env.Director.MAC, spec)
	}
	return generate(ctx, b.env.Client, b.env.Director.MAC, spec)
}

// delivered counts frames past the dataplane: at the real servers, or
// for the sink at the director, which drops them.
func delivered(c counters, sink bool) uint64 {
	if sink {
		return c.directorRx
	}
	return c.realsRx
}

// trial offers target pps over flows for the trial time and counts what
// arrived (the counters are read before and 50 ms after, so frames
// still in rings count).
func (b *bench) trial(ctx context.Context, flows int, target float64, sink bool) (trial, error) {
	if err := sleep(ctx, 50*time.Millisecond); err != nil {
		return trial{}, err
	}
	c0, err := readCounters(b.env)
	if err != nil {
		return trial{}, err
	}
	count := uint64(target * b.o.trialTime.Seconds())
	if target == 0 { // the ceiling: unpaced, 10 Mpps bounds the count only
		count = uint64(10e6 * b.o.trialTime.Seconds())
	}
	limit := b.o.trialTime
	if target != 0 {
		limit = b.o.trialTime*3/2 + 100*time.Millisecond
	}
	g, err := b.gen(ctx, flows, target, count, limit)
	if err != nil {
		return trial{}, err
	}
	if err := sleep(ctx, 50*time.Millisecond); err != nil {
		return trial{}, err
	}
	c1, err := readCounters(b.env)
	if err != nil {
		return trial{}, err
	}
	secs := g.elapsed.Seconds()
	got := delivered(c1, sink) - delivered(c0, sink)
	t := trial{target: target, offered: g.rate(), delivered: min(float64(got), float64(g.sent)) / secs}
	if target == 0 {
		t.target = t.offered
	}
	return t, nil
}

// warm sends every flow once (at least 0.1 s of traffic), so that the
// search measures established flows; bounded by the flow count.
func (b *bench) warm(ctx context.Context, flows int) error {
	rate := 250e3
	n := uint64(max(flows, 25000))
	_, err := b.gen(ctx, flows, rate, n, time.Duration(float64(n)/rate*2e9)+time.Second)
	return err
}

// measureSink runs the generator against the director dropping the
// flood at its ingress: the ceiling of the generator and the path to
// the director (unpaced, 1000 flows), and the CPU that costs at each
// fixed rate, which the director's share subtracts.
func (b *bench) measureSink(ctx context.Context, round int, sink *sinkDP) (err error) {
	if err := sink.Start(ctx); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sink.Stop()) }()
	if err := b.warm(ctx, 1000); err != nil {
		return err
	}
	var best trial
	for i := 0; i < 2; i++ { // the better of two: the machine is shared
		t, err := b.trial(ctx, 1000, 0, true)
		if err != nil {
			return err
		}
		if t.delivered > best.delivered {
			best = t
		}
	}
	b.ceiling = best.delivered
	b.record("sink", "ceiling", best.delivered/1e6)
	fmt.Fprintf(b.log, "round %d sink     ceiling: generator sent %.3f Mpps, director received %.3f Mpps (%d threads)\n",
		round, best.offered/1e6, best.delivered/1e6, b.o.threads)
	if best.delivered <= 0 {
		b.failures = append(b.failures, "sink: no frame reached the director")
	}
	for _, rate := range b.o.cpuRates {
		if err := b.cpuRun(ctx, "sink", rate, true, 0); err != nil {
			return err
		}
	}
	return nil
}

// measure starts dp, checks that it forwards, runs every test once,
// records the values and stops dp (also on error).
func (b *bench) measure(ctx context.Context, round int, dp dataplane) (err error) {
	name := dp.Name()
	if err := dp.Start(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer func() {
		if serr := dp.Stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("stop: %w", serr))
		}
	}()
	if err := b.check(ctx, dp); err != nil {
		if os.Getenv("XLB_BENCH_HOLD") != "" {
			fmt.Fprintf(b.log, "holding the topology for 60s (XLB_BENCH_HOLD)\n")
			sleep(ctx, 60*time.Second)
		}
		return fmt.Errorf("%s does not forward: %w", name, err)
	}
	xlbPid := 0
	if x, ok := dp.(*xlbDP); ok && x.p != nil {
		xlbPid = x.p.Cmd.Process.Pid
	}
	flows := b.o.flows
	if b.o.scaleFlows > 0 && b.flowScaling(name) {
		flows = append(flows[:len(flows):len(flows)], b.o.scaleFlows)
	}
	for _, f := range flows {
		t0 := time.Now()
		if err := b.warm(ctx, f); err != nil {
			return err
		}
		setup := time.Since(t0)
		best, trials, err := searchLossless(b.ceiling, b.o.steps, func(target float64) (trial, error) {
			return b.trial(ctx, f, target, false)
		})
		if err != nil {
			return err
		}
		if b.trials[name] == nil {
			b.trials[name] = map[int][]trial{}
		}
		b.trials[name][f] = append(b.trials[name][f], trials...)
		b.record(name, fmt.Sprintf("lossless_%d", f), best/1e6)
		top := 0.0
		for _, t := range trials {
			top = max(top, t.delivered)
		}
		b.record(name, fmt.Sprintf("maxdeliv_%d", f), top/1e6)
		fmt.Fprintf(b.log, "round %d %-11s %7d flows (set up in %v): lossless %.3f Mpps, most delivered %.3f Mpps; trials (target/offered/delivered Mpps):",
			round, name, f, setup.Round(time.Millisecond), best/1e6, top/1e6)
		for _, t := range trials {
			fmt.Fprintf(b.log, " %.3f/%.3f/%.3f", t.target/1e6, t.offered/1e6, t.delivered/1e6)
		}
		fmt.Fprintln(b.log)
		if top <= 0 {
			b.failures = append(b.failures, fmt.Sprintf("%s: no frame of the %d-flow flood delivered", name, f))
		}
		if b.flowScaling(name) && f != 1000 {
			// CPU per packet with these flows established (1000 flows:
			// the -cpu-rates runs below).
			if _, err := b.cpuRunOn(ctx, name, cpuSpec{rate: b.o.cpuRates[0], flows: f, key: fmt.Sprintf("_f%d", f)}, false, xlbPid); err != nil {
				return err
			}
		}
	}
	if x, ok := dp.(*xlbDP); ok && x.method == "fullnat" && slices.Max(flows) > lAddrPorts/2 {
		// The local addresses have lAddrPorts ports: with a flood of
		// more than half as many flows, few are left for the tests
		// below (none beyond lAddrPorts: those flows stay untranslated)
		// until the flood's entries expire (minutes). Start afresh, so
		// that they measure FULLNAT rather than a full table.
		if raw, st, err := x.Stats(); err == nil {
			b.noteXLB(name, raw, st)
		}
		if err := x.Stop(); err != nil {
			return err
		}
		if err := x.Start(ctx); err != nil {
			return err
		}
		if err := b.check(ctx, dp); err != nil {
			return fmt.Errorf("%s does not forward after a restart: %w", name, err)
		}
		xlbPid = x.p.Cmd.Process.Pid
		if err := b.warm(ctx, 1000); err != nil {
			return err
		}
	}
	for _, rate := range b.o.cpuRates {
		if err := b.cpuRun(ctx, name, rate, false, xlbPid); err != nil {
			return err
		}
	}
	if b.o.trickleRate > 0 && b.flowScaling(name) {
		// A trickle: one frame per sendmmsg, evenly spaced. What the
		// worker's spin-before-sleep policy costs when traffic is sparse.
		if _, err := b.cpuRunOn(ctx, name, cpuSpec{rate: b.o.trickleRate, flows: 1000, key: "_trickle"}, false, xlbPid); err != nil {
			return err
		}
	}
	// From here a test that fails is reported and the others still run:
	// the run's other figures are worth keeping.
	if err := b.latency(ctx, name); err != nil {
		b.fail(name, err)
	}
	// The flood of the round trips under load leaves xlb's SYN guard
	// raised (bench/RESULTS.md, "iperf3 after the flood"): the TCP tests
	// start when it is down again, and every SYN it drops during them is
	// counted and shown.
	for _, streams := range []int{1, 8} {
		b.settle(ctx, dp)
		g0 := b.guardState(dp)
		s, err := b.throughput(ctx, streams)
		b.noteGuard(name, fmt.Sprintf("iperf3 -P %d", streams), fmt.Sprintf("syn_drops_iperf_%d", streams), g0, b.guardState(dp))
		if err != nil {
			b.fail(name, fmt.Errorf("iperf3 -P %d: %w", streams, err))
			continue
		}
		b.record(name, fmt.Sprintf("gbps_%d", streams), s.values["gbps"])
		fmt.Fprintf(b.log, "round %d %-11s iperf3 -P %d: %s\n", round, name, streams, s.detail)
		if s.values["gbps"] < minGbps {
			// A stalled connection still moves its first window: a
			// few kbit/s, "0.00" in the table (the offload with TCP
			// segments that a bridge port's GRO had merged).
			b.failures = append(b.failures, fmt.Sprintf("%s: iperf3 -P %d moved %.4f Gbit/s, under %.2f", name, streams, s.values["gbps"], minGbps))
		}
	}
	// One stream again with the client's TX offload on (testenv turns it
	// off): its TCP stack then hands the director GSO skbs of up to 64
	// KB, as a container's or the host's own sender does.
	b.settle(ctx, dp)
	g0 := b.guardState(dp)
	s, err := b.throughputTSO(ctx)
	b.noteGuard(name, "iperf3 -P 1, client TSO on", "syn_drops_iperf_tso", g0, b.guardState(dp))
	if err != nil {
		b.fail(name, fmt.Errorf("iperf3 -P 1, client TSO on: %w", err))
	} else {
		b.record(name, "gbps_1_tso", s.values["gbps"])
		fmt.Fprintf(b.log, "round %d %-11s iperf3 -P 1, client TSO on: %s\n", round, name, s.detail)
		if s.values["gbps"] < minGbps {
			b.failures = append(b.failures, fmt.Sprintf("%s: iperf3 -P 1 with client TSO moved %.4f Gbit/s, under %.2f", name, s.values["gbps"], minGbps))
		}
	}
	for _, ka := range []bool{false, true} {
		b.settle(ctx, dp)
		g0 := b.guardState(dp)
		s, err := b.connRate(ctx, ka)
		b.noteGuard(name, fmt.Sprintf("wrk keep-alive=%v", ka), fmt.Sprintf("syn_drops_wrk_%v", ka), g0, b.guardState(dp))
		if err != nil {
			b.fail(name, fmt.Errorf("wrk (keep-alive %v): %w", ka, err))
			continue
		}
		key := "conn_rate"
		if ka {
			key = "req_rate"
		}
		b.record(name, key, s.values["conn_rate"])
		b.record(name, key+"_errors", s.values["conn_errors"])
		fmt.Fprintf(b.log, "round %d %-11s wrk keep-alive=%v: %s\n", round, name, ka, s.detail)
		if s.values["conn_rate"] <= 0 {
			b.failures = append(b.failures, fmt.Sprintf("%s: wrk (keep-alive %v) got no answer", name, ka))
		}
	}
	if x, ok := dp.(*xlbDP); ok {
		raw, st, err := x.Stats()
		if err != nil {
			return err
		}
		b.noteXLB(name, raw, st)
	}
	return nil
}

// flowScaling says whether name is measured at -scale-flows flows and
// at a fixed rate over every flow count.
func (b *bench) flowScaling(name string) bool {
	return name == "xlb-dr" || name == "xlb-dr-base" || name == "nft-fwd" || name == "ip-forward"
}

func (b *bench) fail(name string, err error) {
	fmt.Fprintf(b.log, "        %-11s FAILED: %v\n", name, err)
	b.failures = append(b.failures, fmt.Sprintf("%s: %v", name, err))
}

// cpuRun offers rate pps over 1000 flows and reads, over a window after
// a warm-up, /proc/stat's busy time of all CPUs and the frames
// delivered; the machine's busy time just before, with no traffic, is
// the background the figure subtracts. Its values are recorded under
// "cpu_ns_<rate>" etc.
func (b *bench) cpuRun(ctx context.Context, name string, rate float64, sink bool, xlbPid int) error {
	_, err := b.cpuRunOn(ctx, name, cpuSpec{rate: rate, flows: 1000, key: fmt.Sprintf("_%d", int(rate))}, sink, xlbPid)
	return err
}

// cpuSpec is the traffic of one CPU-per-packet run and the suffix of its
// result keys.
type cpuSpec struct {
	rate         float64
	flows, first int // genSpec's
	key          string
}

// cpuRunOn is cpuRun for any traffic; it returns the frames each real
// server received in the window.
func (b *bench) cpuRunOn(ctx context.Context, name string, cs cpuSpec, sink bool, xlbPid int) ([]uint64, error) {
	rate := cs.rate
	const warm = 200 * time.Millisecond
	bg := b.o.cpuTime / 3
	s0, err := readProcStat()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := sleep(ctx, bg); err != nil {
		return nil, err
	}
	s1, err := readProcStat()
	if err != nil {
		return nil, err
	}
	background := busyCores(s0, s1, time.Since(t0))
	b.cpuRuns++

	var wg sync.WaitGroup
	var g genResult
	var gerr error
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	total := warm + b.o.cpuTime + 200*time.Millisecond
	wg.Add(1)
	go func() {
		defer wg.Done()
		g, gerr = b.generate(gctx, genSpec{flows: cs.flows, first: cs.first,
			rate: rate, count: uint64(rate * total.Seconds()), threads: b.o.threads, limit: total + time.Second, dst: floodDst})
	}()
	defer wg.Wait()
	if err := sleep(ctx, warm); err != nil {
		return nil, err
	}
	c0, err := readCounters(b.env)
	if err != nil {
		return nil, err
	}
	st0, _ := readProcStat()
	p0, _ := processCPU(xlbPid)
	o0 := b.ownCPU(xlbPid)
	t1 := time.Now()
	if err := sleep(ctx, b.o.cpuTime); err != nil {
		return nil, err
	}
	c1, err := readCounters(b.env)
	if err != nil {
		return nil, err
	}
	st1, _ := readProcStat()
	p1, _ := processCPU(xlbPid)
	o1 := b.ownCPU(xlbPid)
	d := time.Since(t1)
	cancel()
	wg.Wait()
	if gerr != nil {
		return nil, gerr
	}
	cores := busyCores(st0, st1, d)
	sent := float64(c1.clientTx-c0.clientTx) / d.Seconds()
	deliv := float64(delivered(c1, sink)-delivered(c0, sink)) / d.Seconds()
	ns := cpuPerPacket(cores, background, deliv)
	k := cs.key
	// With the machine already saturated by other work before the
	// traffic, /proc/stat cannot tell what the traffic cost: no figure.
	saturated := background >= 0.9*float64(runtime.NumCPU())
	if saturated {
		b.saturated++
		ns = math.NaN() // kept, so that rounds still pair up
	}
	b.record(name, "cpu_ns"+k, ns)
	b.record(name, "cpu_deliv"+k, deliv/1e6)
	b.record(name, "cpu_cores"+k, cores-background)
	own := (o1 - o0).Seconds() / d.Seconds()
	b.record(name, "own_ns"+k, cpuPerPacket(own, 0, deliv))
	xlbNote := ""
	if xlbPid != 0 {
		xc := (p1 - p0).Seconds() / d.Seconds()
		b.record(name, "xlb_cores"+k, xc)
		xlbNote = fmt.Sprintf(", of which xlb %.3f cores", xc)
	}
	fmt.Fprintf(b.log, "        %-11s at %.0f kpps over %s flows: offered %.3f Mpps (generator %.3f), delivered %.3f Mpps, %.2f cores busy (%.2f before, without traffic): %.0f CPU-ns per packet; own processes %.2f cores%s: %.0f CPU-ns per packet\n",
		name, rate/1e3, flowsLabel(cs.flows), sent/1e6, g.rate()/1e6, deliv/1e6, cores, background, ns, own, xlbNote, cpuPerPacket(own, 0, deliv))
	if deliv <= 0 {
		b.failures = append(b.failures, fmt.Sprintf("%s: nothing delivered at %.0f pps", name, rate))
	}
	each := make([]uint64, len(c1.realsEach))
	for i := range each {
		each[i] = c1.realsEach[i] - c0.realsEach[i]
	}
	return each, nil
}

// latency times UDP round trips without other traffic, then under a
// background flood of -load-rate pps.
func (b *bench) latency(ctx context.Context, name string) error {
	s, err := b.roundTrip(ctx, 200*time.Millisecond)
	if err != nil {
		return err
	}
	for k, v := range s.values {
		b.record(name, k, v)
	}
	fmt.Fprintf(b.log, "        %-11s rtt idle: %s\n", name, s.detail)

	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.gen(gctx, 1000, b.o.loadRate, uint64(b.o.loadRate*20), 20*time.Second)
	}()
	defer wg.Wait()
	if err := sleep(ctx, 200*time.Millisecond); err != nil {
		return err
	}
	s, err = b.roundTrip(ctx, 50*time.Millisecond)
	cancel()
	if err != nil {
		return fmt.Errorf("round trips under load: %w", err)
	}
	for k, v := range s.values {
		b.record(name, k+"_load", v)
	}
	fmt.Fprintf(b.log, "        %-11s rtt under %.0f kpps: %s\n", name, b.o.loadRate/1e3, s.detail)
	return nil
}

// ownCPU is the CPU time used so far by the processes that carry the
// bench's traffic: this one (the generator's threads, in whose system
// calls the kernel forwards the frames they send; the real servers'
// servers), xlb's (0: none) and the ksoftirqd threads, which run the
// softirq work deferred from them. With tick-based accounting and no
// IRQ time accounting (this kernel) softirq time is charged to the task
// it interrupted, so this leaves out other users of the machine.
func (b *bench) ownCPU(xlbPid int) time.Duration {
	var t time.Duration
	for _, pid := range append([]int{os.Getpid(), xlbPid}, b.softirqd...) {
		if c, err := processCPU(pid); err == nil {
			t += c
		}
	}
	return t
}

// ksoftirqds lists the ksoftirqd threads' process IDs.
func ksoftirqds() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if c, err := os.ReadFile("/proc/" + e.Name() + "/comm"); err == nil && strings.HasPrefix(string(c), "ksoftirqd/") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// guard is xlb's SYN guard as its counters show it: the workers' level
// (summed) and the SYNs the XDP program dropped for it.
type guard struct {
	ok            bool // read from a running xlb
	level, raises uint64
	dropped       uint64 // drop_syn_rate + drop_syn_pressure
}

func (b *bench) guardState(dp dataplane) guard {
	x, ok := dp.(*xlbDP)
	if !ok || x.p == nil {
		return guard{}
	}
	_, st, err := x.Stats()
	if err != nil {
		return guard{}
	}
	return guard{ok: true, level: st["syn_guard_level"], raises: st["syn_guard_raises"],
		dropped: st["xdp.drop_syn_rate"] + st["xdp.drop_syn_pressure"]}
}

// noteGuard records and prints the SYNs xlb's guard dropped during a TCP
// test (key: the result's key).
func (b *bench) noteGuard(name, test, key string, g0, g1 guard) {
	if !g0.ok || !g1.ok {
		return
	}
	d := g1.dropped - g0.dropped
	b.record(name, key, float64(d))
	if d > 0 || g0.level > 0 || g1.raises > g0.raises {
		fmt.Fprintf(b.log, "        %-11s %s: SYN guard at level %d before, raised %d times during it, %d SYNs dropped by it\n",
			name, test, g0.level, g1.raises-g0.raises, d)
	}
}

// settle waits, at most 3 s, until xlb's SYN guard is down (every worker
// at level 0) after the flood, and records how long that took: the
// guard holds each level 500 ms after the overload ends
// (dataplane/pressure.go).
func (b *bench) settle(ctx context.Context, dp dataplane) {
	x, ok := dp.(*xlbDP)
	if !ok {
		return
	}
	t0 := time.Now()
	g := b.guardState(x)
	level0 := g.level
	for g.ok && g.level > 0 && time.Since(t0) < 3*time.Second && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		g = b.guardState(x)
	}
	w := time.Since(t0)
	if level0 > 0 {
		b.guardWaits[x.Name()] = append(b.guardWaits[x.Name()], w)
		fmt.Fprintf(b.log, "        %-11s SYN guard at level %d before a TCP test: down after %v (now %d)\n", x.Name(), level0, w.Round(time.Millisecond), g.level)
	}
}
